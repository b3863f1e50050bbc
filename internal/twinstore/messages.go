package twinstore

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/klauspost/compress/s2"
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

// messageRecordMax is the most bytes a message's record takes.
func messageRecordMax(m *Message) int {
	return 26 + len(m.Gateway) + len(m.Kind) + max(len(m.Raw), s2.MaxEncodedLen(len(m.Raw)))
}

// Record layout: recorded(8) time(8) seq(8) len(gw)(1) gw flags|len(kind)(1)
// kind raw. With compressedRaw set in the kind's length byte, raw is
// S2-compressed (github.com/klauspost/compress/s2, block format): an 8-GPU
// telemetry envelope's 2.9 KB take ~0.6 KB, so several messages share a
// bbolt page where each took a page of its own. Envelopes shorter than
// compressMin are stored as they are, like every record before format 3.
const (
	compressedRaw = 0x80
	compressMin   = 1024
)

func appendMessageRecord(dst []byte, m *Message) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Recorded.UnixNano()))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Time.UnixNano()))
	dst = binary.BigEndian.AppendUint64(dst, m.Seq)
	dst = append(dst, byte(len(m.Gateway)))
	dst = append(dst, m.Gateway...)
	flag := len(dst)
	dst = append(dst, byte(len(m.Kind)))
	dst = append(dst, m.Kind...)
	if len(m.Raw) >= compressMin {
		if c := s2.Encode(dst[len(dst):cap(dst)], m.Raw); len(c) < len(m.Raw) {
			dst[flag] |= compressedRaw
			return append(dst, c...) // in place when dst had room (a copy onto itself)
		}
	}
	return append(dst, m.Raw...)
}

// decodeMessageRecord decodes the record of the message at pos, its
// envelope (Raw) only when needRaw (nil: always) reports the message needs it.
func decodeMessageRecord(pos uint64, v []byte, needRaw func(pos uint64, kind wire.Kind) bool) (Message, error) {
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
	k := int(v[0] &^ compressedRaw)
	if len(v) < 1+k {
		return m, fmt.Errorf("message %d: short record", pos)
	}
	m.Kind = wire.Kind(v[1 : 1+k])
	if needRaw != nil && !needRaw(pos, m.Kind) {
		return m, nil
	}
	if v[0]&compressedRaw == 0 {
		m.Raw = append([]byte(nil), v[1+k:]...)
		return m, nil
	}
	var err error
	if m.Raw, err = s2.Decode(nil, v[1+k:]); err != nil {
		return m, fmt.Errorf("message %d: compressed envelope: %w", pos, err)
	}
	return m, nil
}

// MaxBatchBytes bounds the envelope bytes one MessagesAfter call returns, so
// a consumer's batch of 10-sample messages from a backlog is not 50 MB.
const MaxBatchBytes = 8 << 20

// MessagesAfter returns up to limit messages with positions above pos, in
// order, and stops early once they hold MaxBatchBytes (at least one message).
// BatchFull tells a consumer whether more may be waiting.
func (s *Store) MessagesAfter(pos uint64, limit int) ([]Message, error) {
	return s.MessagesAfterFor(pos, limit, nil)
}

// MessagesAfterFor is MessagesAfter for a consumer that needs the envelopes
// of only some messages (it holds the others decoded, from the ingest's
// ring, or reads one kind): a message needRaw reports false for comes
// without Raw, neither copied out of the store nor decompressed (26 KB a
// 10-sample telemetry message). nil needs every one.
func (s *Store) MessagesAfterFor(pos uint64, limit int, needRaw func(pos uint64, kind wire.Kind) bool) ([]Message, error) {
	if limit <= 0 {
		limit = 1000
	}
	var out []Message
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		size := 0
		for k, v := c.Seek(u64key(pos + 1)); k != nil && len(out) < limit && size < MaxBatchBytes; k, v = c.Next() {
			m, err := decodeMessageRecord(binary.BigEndian.Uint64(k), v, needRaw)
			if err != nil {
				return err
			}
			out = append(out, m)
			size += len(m.Raw)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("messages after %d: %w", pos, err)
	}
	return out, nil
}

// BatchFull reports whether msgs, from MessagesAfter with limit, stopped at
// a bound (count or bytes) rather than at the end of the log.
func BatchFull(msgs []Message, limit int) bool {
	if len(msgs) >= limit {
		return true
	}
	size := 0
	for i := range msgs {
		size += len(msgs[i].Raw)
	}
	return size >= MaxBatchBytes
}
