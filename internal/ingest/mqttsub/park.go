package mqttsub

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"twinchain/internal/atomicfile"
	"twinchain/internal/ingest"
	"twinchain/internal/wire"
)

// An external broker acknowledged each message to its gateway before
// twin-service saw it, so the agent has deleted it: a message rejected for
// a reason that can go away (ingest.Reason.Retry: unknown_gateway,
// unbound_asset, seq_too_far, clock_ahead) cannot be left to the agent to
// send again. It is parked: written to a folder of the data directory
// (one file per message), and submitted again when the registry changes
// (Recheck: a gateway enrolled, re-keyed or bound) and every
// ParkRetryInterval (the stream caught up, the clock moved on). A parked
// message leaves the folder when it is stored or rejected for a final
// reason. The folder holds at most ParkMaxMessages and ParkMaxBytes; a
// message beyond them is dropped, counted (Stats.ParkDropped) and logged
// once per run.
const (
	ParkMaxMessages = 50_000
	ParkMaxBytes    = 128 << 20
)

// parking is the parked messages' folder.
type parking struct {
	dir     string
	log     *slog.Logger
	mu      sync.Mutex // serializes put, remove and retry passes
	n       int
	bytes   int64
	dropped atomic.Uint64
	warned  atomic.Bool
	gauge   atomic.Int64 // n, for Stats without the lock
}

// openParking opens (creates) dir and counts what it holds.
func openParking(dir string, log *slog.Logger) (*parking, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mqtt external: parking: %w", err)
	}
	p := &parking{dir: dir, log: log}
	err := p.each(func(name string, size int64) error {
		p.n++
		p.bytes += size
		return nil
	})
	p.gauge.Store(int64(p.n))
	return p, err
}

// each calls fn for every parked file.
func (p *parking) each(fn func(name string, size int64) error) error {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return fmt.Errorf("mqtt external: parking: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".msg") {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(e.Name(), info.Size()); err != nil {
			return err
		}
	}
	return nil
}

// put parks one message (topic and payload) rejected for reason and
// reports whether it is parked (false: the folder is full or cannot be
// written; counted). Its file is named {reason}.{gateway}.{hash}.msg.
func (p *parking) put(reason ingest.Reason, topic string, payload []byte) bool {
	gw, _, err := wire.ParseTopic(topic)
	if err != nil {
		return false
	}
	rec := make([]byte, 0, len(topic)+1+len(payload))
	rec = append(append(append(rec, topic...), '\n'), payload...)
	sum := sha256.Sum256(rec)
	name := string(reason) + "." + gw + "." + hex.EncodeToString(sum[:16]) + ".msg"
	p.mu.Lock()
	defer p.mu.Unlock()
	path := filepath.Join(p.dir, name)
	if _, err := os.Stat(path); err == nil {
		return true // the same message, parked before
	}
	if p.n >= ParkMaxMessages || p.bytes+int64(len(rec)) > ParkMaxBytes {
		p.drop("the parking folder is full", topic, nil)
		return false
	}
	if err := atomicfile.Write(path, rec, 0o600); err != nil {
		p.drop("cannot write the parking folder", topic, err)
		return false
	}
	p.n++
	p.bytes += int64(len(rec))
	p.gauge.Store(int64(p.n))
	return true
}

func (p *parking) drop(why, topic string, err error) {
	p.dropped.Add(1)
	if p.warned.CompareAndSwap(false, true) {
		p.log.Error("a message to retry was dropped: "+why+" (counted in twinchain_mqtt_parked_dropped_total; logged once)",
			"dir", p.dir, "max_messages", ParkMaxMessages, "max_bytes", ParkMaxBytes, "topic", topic, "err", err)
	}
}

// retry submits again every parked message whose reason and gateway match
// want. A message stored or rejected for a final reason leaves the folder;
// one rejected for another retry reason is renamed to it; one the store
// failed stays. It returns how many left the folder.
func (p *parking) retry(want func(reason ingest.Reason, gw string) bool, submit func(topic string, payload []byte) (ingest.Reason, error)) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	done := 0
	err := p.each(func(name string, size int64) error {
		reason, rest, _ := strings.Cut(name, ".")
		gw, hash, _ := strings.Cut(rest, ".")
		if !want(ingest.Reason(reason), gw) {
			return nil
		}
		path := filepath.Join(p.dir, name)
		rec, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if topic, payload, ok := bytes.Cut(rec, []byte{'\n'}); ok {
			got, err := submit(string(topic), payload)
			switch {
			case err != nil:
				return nil
			case got == ingest.Reason(reason):
				return nil
			case got.Retry():
				return os.Rename(path, filepath.Join(p.dir, string(got)+"."+gw+"."+hash))
			}
		}
		if err := os.Remove(path); err != nil {
			return err
		}
		p.n--
		p.bytes -= size
		done++
		return nil
	})
	p.gauge.Store(int64(p.n))
	if err != nil {
		p.log.Error("retrying parked messages", "dir", p.dir, "err", err)
	}
	return done
}
