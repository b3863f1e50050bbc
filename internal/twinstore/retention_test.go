package twinstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"twinchain/internal/wire"
)

// storeRecorded stores n messages of gateway gw-r, seq 1..n, recorded one
// second apart from t0, with their sequence-index entries and the
// gateway's stream state.
func storeRecorded(t testing.TB, s *Store, n int, size int) {
	t.Helper()
	raw := make([]byte, size)
	for i := 0; i < n; i += 500 {
		err := s.Update(func(tx *Tx) error {
			for j := i; j < min(i+500, n); j++ {
				m := Message{Gateway: "gw-r", Seq: uint64(j + 1), Kind: wire.KindTelemetry, Time: t0, Recorded: t0.Add(time.Duration(j) * time.Second), Raw: raw}
				if err := tx.AppendMessage(&m); err != nil {
					return err
				}
				var sum [32]byte
				if err := tx.PutSeq("gw-r", 1, m.Seq, m.Pos, &sum); err != nil {
					return err
				}
			}
			return tx.PutGatewayState(&GatewayState{Gateway: "gw-r", Highest: uint64(min(i+500, n))})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// storeMore stores messages from..to of gateway gw-r, recorded one second
// apart after t0+from seconds, and moves its highest.
func storeMore(t *testing.T, s *Store, from, to int) {
	t.Helper()
	err := s.Update(func(tx *Tx) error {
		for j := from; j <= to; j++ {
			m := Message{Gateway: "gw-r", Seq: uint64(j), Kind: wire.KindTelemetry, Time: t0, Recorded: t0.Add(time.Duration(j) * time.Second), Raw: []byte("x")}
			if err := tx.AppendMessage(&m); err != nil {
				return err
			}
			var sum [32]byte
			if err := tx.PutSeq("gw-r", 1, m.Seq, m.Pos, &sum); err != nil {
				return err
			}
		}
		return tx.PutGatewayState(&GatewayState{Gateway: "gw-r", Highest: uint64(to)})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func seqStored(t *testing.T, s *Store, seq uint64) bool {
	t.Helper()
	found := false
	if err := s.SeqsAbove("gw-r", 1, seq-1, func(n uint64) { found = found || n == seq }); err != nil {
		t.Fatal(err)
	}
	return found
}

// TestRetention: the policy removes old messages only as far as every
// consumer has read, keeps the sequence-index entries the ingest's window
// needs, and never the newest message, so positions go on after a restart.
func TestRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "twins.db")
	s := open(t, path)
	storeRecorded(t, s, 1000, 100)
	now := t0.Add(1000 * time.Second)
	floor := uint64(300)
	p := &Pruner{Store: s, Retention: Retention{MaxAge: 10 * time.Minute}, KeepSeqs: 700,
		Floor: func() (uint64, error) { return floor, nil }, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now }}
	if cut, err := s.RetentionCut(p.Retention, now); err != nil || cut != 400 {
		t.Fatalf("RetentionCut(10m at t0+1000s) = %d, %v; want 400 (recorded before t0+400s)", cut, err)
	}
	st, err := p.Once(context.Background())
	if err != nil || st.Messages != 300 || s.FirstPos() != 301 {
		t.Fatalf("prune with consumers at 300 = %+v, %v, first %d; want 300 removed, first 301", st, err, s.FirstPos())
	}
	floor = 1000
	if st, err = p.Once(context.Background()); err != nil || st.Messages != 100 || s.FirstPos() != 401 {
		t.Fatalf("prune with consumers caught up = %+v, %v, first %d; want 100 more removed, first 401", st, err, s.FirstPos())
	}
	// Entries 300 or more below the highest (1000) go with their messages;
	// the rest stay for the ingest's window.
	if seqStored(t, s, 300) || !seqStored(t, s, 301) || !seqStored(t, s, 400) {
		t.Errorf("sequence index after pruning: 300 %v, 301 %v, 400 %v; want only 300 gone", seqStored(t, s, 300), seqStored(t, s, 301), seqStored(t, s, 400))
	}
	// Entries kept for the window go once the gateway has moved on.
	storeMore(t, s, 1001, 1500)
	floor = 1500
	if _, err := p.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if seqStored(t, s, 350) || !seqStored(t, s, 900) {
		t.Errorf("sequence index after the gateway moved on to 1500: 350 %v, 900 %v; want 350 gone (its message pruned), 900 kept (its message is)", seqStored(t, s, 350), seqStored(t, s, 900))
	}
	// Everything old: all but the newest message go; positions continue.
	now = now.Add(time.Hour)
	if _, err := p.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.FirstPos() != 1500 || s.LastPos() != 1500 {
		t.Errorf("after everything is due: first %d last %d, want the newest (1500) kept", s.FirstPos(), s.LastPos())
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	if s.LastPos() != 1500 {
		t.Errorf("LastPos() after reopen = %d, want 1500", s.LastPos())
	}
	if msgs, err := s.MessagesAfter(0, 10); err != nil || len(msgs) != 1 || msgs[0].Pos != 1500 {
		t.Errorf("MessagesAfter(0) = %d messages, %v; want only 1500", len(msgs), err)
	}
}

// BenchmarkRetention writes telemetry-sized messages (2 KiB, about one
// 8-GPU host's sample) at a simulated 50 messages/s for b.N simulated
// seconds, pruning every simulated minute as the service does, with a
// retention of 10 minutes on and off, and reports the store file's size:
// with retention it stops growing once 10 minutes of messages are kept.
//
//	go test -run '^$' -bench Retention -benchtime 3600x ./internal/twinstore
func BenchmarkRetention(b *testing.B) {
	const rate, size, keep = 50, 2048, 10 * time.Minute
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("retention=%v", on), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "twins.db")
			s, err := Open(path, Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			now := t0
			r := Retention{}
			if on {
				r.MaxAge = keep
			}
			p := &Pruner{Store: s, Retention: r, KeepSeqs: 4096, Floor: func() (uint64, error) { return s.LastPos(), nil },
				Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now }}
			raw := make([]byte, size)
			var seq uint64
			var half int64
			b.ResetTimer()
			for sec := range b.N {
				err := s.Update(func(tx *Tx) error {
					for range rate {
						seq++
						m := Message{Gateway: "gw-b", Seq: seq, Kind: wire.KindTelemetry, Time: now, Recorded: now, Raw: raw}
						if err := tx.AppendMessage(&m); err != nil {
							return err
						}
						var sum [32]byte
						if err := tx.PutSeq("gw-b", 1, seq, m.Pos, &sum); err != nil {
							return err
						}
					}
					return tx.PutGatewayState(&GatewayState{Gateway: "gw-b", Highest: seq})
				})
				if err != nil {
					b.Fatal(err)
				}
				now = now.Add(time.Second)
				if sec%60 == 59 {
					if _, err := p.Once(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
				if sec == b.N/2 {
					half = fileSize(b, path)
				}
			}
			b.StopTimer()
			end := fileSize(b, path)
			kept := s.LastPos() - s.FirstPos() + 1
			b.ReportMetric(float64(end)/(1<<20), "MiB-on-disk")
			b.ReportMetric(float64(end)/float64(seq), "disk-B/msg-written")
			b.ReportMetric(float64(end)/float64(kept), "disk-B/msg-kept")
			b.ReportMetric(float64(kept), "msgs-kept")
			if half > 0 {
				b.ReportMetric(100*float64(end-half)/float64(half), "%growth-2nd-half")
			}
		})
	}
}

func fileSize(b *testing.B, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

// TestSeqIndexPerEpoch: each gateway epoch is its own stream in the index,
// and the prune keeps an old epoch's newest entries (its messages stay
// replays if the key ever comes back).
func TestSeqIndexPerEpoch(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "twins.db"))
	put := func(epoch uint64, from, to int) {
		t.Helper()
		err := s.Update(func(tx *Tx) error {
			for seq := from; seq <= to; seq++ {
				m := Message{Gateway: "gw-e", Seq: uint64(seq), Kind: wire.KindStatus, Time: t0, Recorded: t0, Raw: []byte("x")}
				if err := tx.AppendMessage(&m); err != nil {
					return err
				}
				var sum [32]byte
				if err := tx.PutSeq("gw-e", epoch, m.Seq, m.Pos, &sum); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put(7, 1, 3000)
	put(math.MaxUint64, 1, 10) // the highest epoch: its keys end the gateway's range
	count := func(epoch uint64) (n int) {
		t.Helper()
		if err := s.SeqsAbove("gw-e", epoch, 0, func(uint64) { n++ }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	err := s.Update(func(tx *Tx) error {
		if h := tx.HighestSeq("gw-e", 7); h != 3000 {
			t.Errorf("HighestSeq(epoch 7) = %d, want 3000", h)
		}
		if h := tx.HighestSeq("gw-e", math.MaxUint64); h != 10 {
			t.Errorf("HighestSeq(epoch max) = %d, want 10", h)
		}
		if h := tx.HighestSeq("gw-e", 8); h != 0 {
			t.Errorf("HighestSeq(epoch 8, none stored) = %d, want 0", h)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(math.MaxUint64); n != 10 {
		t.Errorf("SeqsAbove(epoch max, 0) found %d, want 10", n)
	}
	st, err := s.PruneMessages(context.Background(), s.LastPos(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(7); n != 1000 || st.SeqEntries != 2000 {
		t.Errorf("after the prune: epoch 7 keeps %d entries (removed %d), want 1000 (2000)", n, st.SeqEntries)
	}
	if n := count(math.MaxUint64); n != 10 {
		t.Errorf("after the prune: epoch max keeps %d entries, want 10", n)
	}
}
