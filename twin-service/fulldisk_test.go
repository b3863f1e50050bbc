package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"twinchain/internal/testsvc"
	"twinchain/internal/wire"
)

type ingestStats struct {
	Accepted       uint64 `json:"accepted"`
	CommitFailures uint64 `json:"commit_failures"`
}

// TestFullDisk runs twin-service on a real 24 MiB filesystem and fills it
// while a gateway keeps publishing: the service stays up, refuses the
// messages it cannot store (no acknowledgement), says so on /readyz, and
// takes messages again once space is freed; a restart afterwards finds
// nothing damaged (a full disk never reads as tampering).
func TestFullDisk(t *testing.T) {
	dir := testsvc.SmallDisk(t, "24m")
	s, err := startLedgerService(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	s.publish(t, 5)
	testsvc.Eventually(t, 60*time.Second, "the first messages anchored", func() bool { st := s.status(t); return st.TreeSize >= 6 && st.Anchoring.AnchoredTo == st.TreeSize })
	stats := func() ingestStats {
		var st ingestStats
		get(t, s.base+"/api/v1/stats/ingest", tamperToken, &st)
		return st
	}
	alive := func() {
		t.Helper()
		select {
		case err := <-s.done:
			s.cancel = nil
			t.Fatalf("twin-service ended on a full disk: %v", err)
		default:
		}
	}

	filler := testsvc.FillDisk(t, dir)
	// A gateway keeps sending telemetry of about 3 KB a message.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		body := wire.Telemetry{Host: "srv-s1-001"}
		for i := range 8 {
			body.GPUs = append(body.GPUs, wire.GPUSample{Asset: fmt.Sprintf("srv-s1-001.gpu%d", i), Index: i, UUID: fmt.Sprintf("GPU-%d", i), TempC: 60, PowerW: 400, UtilPct: 90})
		}
		for seq := uint64(1000); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			raw, err := wire.Seal(tamperGW, "gw-srv-s1-001", seq, time.Now(), wire.KindTelemetry, body)
			if err != nil {
				t.Error(err)
				return
			}
			tok := s.client.Publish(wire.Topic("gw-srv-s1-001", wire.KindTelemetry), 1, false, raw)
			tok.WaitTimeout(200 * time.Millisecond) // refused ones are not acknowledged: go on
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	testsvc.Eventually(t, 60*time.Second, "/readyz to report the store", func() bool {
		alive()
		code, body := s.ready()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "store")
	})
	full := stats()
	testsvc.Eventually(t, 60*time.Second, "more refused commits", func() bool { alive(); return stats().CommitFailures >= full.CommitFailures+5 })
	if m := metric(t, s.base, tamperToken, `twinchain_component_failing{component="store"}`); m != 1 {
		t.Errorf(`twinchain_component_failing{component="store"} = %v on a full disk, want 1`, m)
	}
	alive()

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := stats()
	testsvc.Eventually(t, 60*time.Second, "messages stored again and /readyz ready", func() bool {
		alive()
		code, _ := s.ready()
		return code == http.StatusOK && stats().Accepted > freed.Accepted+10
	})
	before := s.status(t)
	if before.Damage != "" {
		t.Errorf("ledger status after a full disk: damage %q, want none", before.Damage)
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	s.stop(t)

	// A restart finds everything whole.
	s, err = startLedgerService(t, dir)
	if err != nil {
		t.Fatalf("restart after a full disk: %v", err)
	}
	testsvc.Eventually(t, 60*time.Second, "ready after the restart", func() bool { code, _ := s.ready(); return code == http.StatusOK })
	s.seq = 100
	s.publish(t, 2)
	var last ledgerStatus
	testsvc.Eventually(t, 60*time.Second, "the ledger verified at start", func() bool {
		last = s.status(t)
		if last.Damage != "" {
			t.Fatalf("ledger damaged after a full disk and a restart: %s", last.Damage)
		}
		return last.Anchoring.AnchoredTo == last.TreeSize && last.TreeSize > before.TreeSize
	})
}
