package twinstore

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/wire"
)

// Message is one accepted envelope in the message log. Raw is the envelope
// exactly as received; decode it with wire.Decode.
type Message struct {
	Pos      uint64
	Gateway  string
	Seq      uint64
	Kind     wire.Kind
	Time     time.Time // the envelope's reading time
	Recorded time.Time // when the service stored it
	Raw      []byte
}

func messageRecordLen(m *Message) int { return 26 + len(m.Gateway) + len(m.Kind) + len(m.Raw) }

// record layout: recorded(8) time(8) seq(8) len(gw)(1) gw len(kind)(1) kind raw
func appendMessageRecord(dst []byte, m *Message) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Recorded.UnixNano()))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Time.UnixNano()))
	dst = binary.BigEndian.AppendUint64(dst, m.Seq)
	dst = append(dst, byte(len(m.Gateway)))
	dst = append(dst, m.Gateway...)
	dst = append(dst, byte(len(m.Kind)))
	dst = append(dst, m.Kind...)
	return append(dst, m.Raw...)
}

func decodeMessageRecord(pos uint64, v []byte) (Message, error) {
	m := Message{Pos: pos}
	if len(v) < 26 {
		return m, fmt.Errorf("message %d: short record", pos)
	}
	m.Recorded = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
	m.Time = time.Unix(0, int64(binary.BigEndian.Uint64(v[8:]))).UTC()
	m.Seq = binary.BigEndian.Uint64(v[16:])
	v = v[24:]
	n := int(v[0])
	if len(v) < 1+n+1 {
		return m, fmt.Errorf("message %d: short record", pos)
	}
	m.Gateway = string(v[1 : 1+n])
	v = v[1+n:]
	k := int(v[0])
	if len(v) < 1+k {
		return m, fmt.Errorf("message %d: short record", pos)
	}
	m.Kind = wire.Kind(v[1 : 1+k])
	m.Raw = append([]byte(nil), v[1+k:]...)
	return m, nil
}

// MessagesAfter returns up to limit messages with positions above pos, in order.
func (s *Store) MessagesAfter(pos uint64, limit int) ([]Message, error) {
	if limit <= 0 {
		limit = 1000
	}
	var out []Message
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		for k, v := c.Seek(u64key(pos + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			m, err := decodeMessageRecord(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("messages after %d: %w", pos, err)
	}
	return out, nil
}
