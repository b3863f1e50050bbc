package twinstore

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/registry"
	"twinchain/internal/twin"
	"twinchain/internal/wire"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// commitAsset stores one message and the event that moves asset a from the
// stored state prev to its current value.
func commitAsset(t *testing.T, s *Store, gw string, seq uint64, prev twin.Asset, a *twin.Asset) (Message, twin.Event) {
	t.Helper()
	var m Message
	var e twin.Event
	err := s.Update(func(tx *Tx) error {
		m = Message{Gateway: gw, Seq: seq, Kind: wire.KindStatus, Time: t0.Add(time.Duration(seq) * time.Second), Recorded: t0, Raw: []byte(fmt.Sprintf(`{"seq":%d}`, seq))}
		if err := tx.AppendMessage(&m); err != nil {
			return err
		}
		sum := sha256.Sum256(m.Raw)
		if err := tx.PutSeq(gw, 1, seq, m.Pos, &sum); err != nil {
			return err
		}
		a.Revision = prev.Revision + 1
		e = twin.Event{Asset: a.ID, Revision: a.Revision, Type: twin.TypeOf(prev.Revision, twin.Diff(&prev, a)), Time: m.Time, Changes: twin.Diff(&prev, a)}
		if err := tx.AppendEvent(&e); err != nil {
			return err
		}
		if err := tx.PutTwin(a, tx.LastPos()); err != nil {
			return err
		}
		return tx.PutGatewayState(&GatewayState{Gateway: gw, Highest: seq, Accepted: seq})
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, e
}

// TestReopen: every log, index and position survives closing the file, and
// positions and revisions continue after it.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "twins.db")
	s := open(t, path)
	a := &twin.Asset{ID: "srv-1.gpu0", Kind: twin.KindGPU, Site: "s1", Custody: twin.Custody{Status: twin.StatusInService}}
	b := &twin.Asset{ID: "srv-2", Kind: twin.KindServer, Site: "s2", Custody: twin.Custody{Status: twin.StatusMaintenance}}
	m1, e1 := commitAsset(t, s, "gw-1", 1, twin.Asset{}, a)
	commitAsset(t, s, "gw-2", 1, twin.Asset{}, b)
	prev := *a
	a.Firmware.VBIOS = "96.0"
	commitAsset(t, s, "gw-1", 2, prev, a)
	if err := s.SetCursor("telemetry", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	defer s.Close()
	if s.LastPos() != 3 || s.LastEventID() != 3 {
		t.Fatalf("after reopen LastPos, LastEventID = %d, %d, want 3, 3", s.LastPos(), s.LastEventID())
	}
	msgs, err := s.MessagesAfter(0, 10)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("MessagesAfter(0) = %d messages, %v; want 3", len(msgs), err)
	}
	if !reflect.DeepEqual(msgs[0], m1) {
		t.Errorf("MessagesAfter(0)[0] = %+v, want %+v", msgs[0], m1)
	}
	if msgs, _ := s.MessagesAfter(2, 10); len(msgs) != 1 || msgs[0].Pos != 3 || msgs[0].Seq != 2 {
		t.Errorf("MessagesAfter(2) = %+v, want the message at position 3 (gw-1 seq 2)", msgs)
	}
	events, err := s.EventsAfter(0, 2)
	if err != nil || len(events) != 2 || events[0].ID != 1 || events[1].ID != 2 {
		t.Fatalf("EventsAfter(0, 2) = %+v, %v; want ids 1, 2", events, err)
	}
	e1.Recorded = events[0].Recorded
	if !reflect.DeepEqual(events[0], e1) {
		t.Errorf("EventsAfter(0)[0] = %+v, want %+v", events[0], e1)
	}
	ae, err := s.AssetEvents(a.ID, 0, 10)
	if err != nil || len(ae) != 2 || ae[1].Revision != 2 || ae[1].Type != twin.EventFirmwareChanged {
		t.Errorf("AssetEvents(%s) = %+v, %v; want 2 events ending with firmware_changed at revision 2", a.ID, ae, err)
	}
	if ae, _ := s.AssetEvents(a.ID, ae[0].ID, 10); len(ae) != 1 {
		t.Errorf("AssetEvents after the first = %d events, want 1", len(ae))
	}
	if _, err := s.AssetEvents("nope", 0, 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("AssetEvents(unknown) = %v, want ErrNotFound", err)
	}
	got, err := s.Asset(a.ID)
	if err != nil || got.Revision != 2 || got.Firmware.VBIOS != "96.0" {
		t.Errorf("Asset(%s) = %+v, %v; want revision 2 with vbios 96.0", a.ID, got, err)
	}
	if c, _ := s.Cursor("telemetry"); c != 2 {
		t.Errorf("Cursor(telemetry) = %d, want 2", c)
	}
	if c, _ := s.Cursor("never-set"); c != 0 {
		t.Errorf("Cursor(never-set) = %d, want 0", c)
	}
	// The next commit continues the positions and the revision.
	prev = *a
	a.Firmware.Driver = "550"
	m4, e4 := commitAsset(t, s, "gw-1", 3, prev, a)
	if m4.Pos != 4 || e4.ID != 4 || e4.Revision != 3 {
		t.Errorf("after reopen: message %d, event %d, revision %d; want 4, 4, 3", m4.Pos, e4.ID, e4.Revision)
	}
	var seqs []uint64
	if err := s.SeqsAbove("gw-1", 1, 1, func(seq uint64) { seqs = append(seqs, seq) }); err != nil || !reflect.DeepEqual(seqs, []uint64{2, 3}) {
		t.Errorf("SeqsAbove(gw-1, 1) = %v, %v; want [2 3]", seqs, err)
	}
	states, err := s.GatewayStates()
	if err != nil || len(states) != 2 || states[0].Gateway != "gw-1" || states[0].Highest != 3 {
		t.Errorf("GatewayStates = %+v, %v; want gw-1 at 3 and gw-2", states, err)
	}
}

// TestUpdateRollback: a failed transaction stores nothing and hands out its
// positions again.
func TestUpdateRollback(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "twins.db"))
	defer s.Close()
	boom := errors.New("boom")
	err := s.Update(func(tx *Tx) error {
		m := Message{Gateway: "gw", Seq: 1, Kind: wire.KindGPS, Raw: []byte("{}")}
		if err := tx.AppendMessage(&m); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if s.LastPos() != 0 {
		t.Errorf("LastPos after a failed Update = %d, want 0", s.LastPos())
	}
	a := &twin.Asset{ID: "x", Kind: twin.KindTag}
	if m, _ := commitAsset(t, s, "gw", 1, twin.Asset{}, a); m.Pos != 1 {
		t.Errorf("first stored message after the rollback at position %d, want 1", m.Pos)
	}
}

func TestAssetsFilterAndPaging(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "twins.db"))
	defer s.Close()
	for i := range 7 {
		kind, site := twin.KindGPU, "s1"
		if i%2 == 1 {
			kind, site = twin.KindServer, "s2"
		}
		name, parent := "NVIDIA H100 80GB HBM3", "a1"
		if kind == twin.KindServer {
			name, parent = "", ""
		}
		commitAsset(t, s, "gw", uint64(i+1), twin.Asset{}, &twin.Asset{ID: fmt.Sprintf("a%d", i), Kind: kind, Site: site, Parent: parent,
			Identity: twin.Identity{Serial: fmt.Sprintf("SN-%d", i), Name: name}, Custody: twin.Custody{Status: twin.StatusInService}})
	}
	for _, tc := range []struct {
		f    AssetFilter
		want int
	}{
		{AssetFilter{}, 7},
		{AssetFilter{Kind: twin.KindGPU}, 4},
		{AssetFilter{Site: "s2"}, 3},
		{AssetFilter{Site: "s2", Kind: twin.KindGPU}, 0},
		{AssetFilter{Q: "sn-3"}, 1},
		{AssetFilter{Q: "H100"}, 4},         // the name, as the dashboard's search finds it
		{AssetFilter{Q: "h100 s1 sn-2"}, 1}, // every term, each in any field
		{AssetFilter{Q: "h100 s2"}, 0},
		{AssetFilter{Parent: "a1"}, 4},
		{AssetFilter{Status: twin.StatusRetired}, 0},
	} {
		var ids []string
		f := tc.f
		f.Limit = 2
		for range 10 {
			items, next, err := s.Assets(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range items {
				ids = append(ids, a.ID)
			}
			if next == "" {
				break
			}
			f.Cursor = next
		}
		if len(ids) != tc.want {
			t.Errorf("Assets(%+v) in pages of 2 = %v, want %d assets", tc.f, ids, tc.want)
		}
	}
	sum, err := s.Summarize()
	if err != nil || sum.Total != 7 || sum.ByKind["gpu"] != 4 || sum.BySite["s2"] != 3 || sum.ByStatus["in_service"] != 7 {
		t.Errorf("Summarize = %+v, %v; want 7 assets, 4 gpus, 3 in s2, 7 in service", sum, err)
	}
	if _, _, err := s.Assets(AssetFilter{Cursor: "%%%"}); !errors.Is(err, ErrBadCursor) {
		t.Errorf("Assets(bad cursor) = %v, want ErrBadCursor", err)
	}
}

func TestGatewaysAndCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "twins.db")
	s := open(t, path)
	seed := sha256.Sum256([]byte("k"))
	g := registry.Gateway{ID: "gw-1", PublicKey: ed25519.NewKeyFromSeed(seed[:]).Public().(ed25519.PublicKey), Site: "s1", Assets: []string{"a"}}
	if err := s.PutGateways(g); err != nil {
		t.Fatal(err)
	}
	if err := s.PutGateways(registry.Gateway{ID: "bad id"}); err == nil {
		t.Errorf("PutGateways(invalid) = nil, want an error")
	}
	if err := s.Update(func(tx *Tx) error { return tx.SetCheckpoint(42) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	gws, err := s.Gateways()
	if err != nil || !reflect.DeepEqual(gws, []registry.Gateway{g}) {
		t.Errorf("Gateways after reopen = %+v, %v; want [%+v]", gws, err, g)
	}
	if c, _ := s.Checkpoint(); c != 42 {
		t.Errorf("Checkpoint = %d, want 42", c)
	}
	if err := s.DeleteGateway("gw-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGateway("gw-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteGateway twice = %v, want ErrNotFound", err)
	}
}

// TestOldFormatRefused: a store holding messages and no format mark is
// from before envelope v2 and sequence epochs; Open says so instead of
// reading its messages as damaged.
func TestOldFormatRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "twins.db")
	s := open(t, path)
	commitAsset(t, s, "gw-1", 1, twin.Asset{}, &twin.Asset{ID: "gw-1", Kind: twin.KindGateway})
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyFormat) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path, Options{NoSync: true}); !errors.Is(err, ErrOldFormat) {
		t.Errorf("Open(store without a format) = %v, want ErrOldFormat", err)
	}
	s = open(t, filepath.Join(t.TempDir(), "new.db")) // a new store is marked
	s.Close()
}

// TestMessagesAfterBytes: a batch stops once it holds MaxBatchBytes of
// envelopes (a consumer behind by 10-sample messages reads bounded batches),
// and BatchFull tells the consumer that more is waiting.
func TestMessagesAfterBytes(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "twins.db"))
	defer s.Close()
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i*7919>>3) ^ byte(i>>11)
	}
	for seq := uint64(1); seq <= 5; seq++ {
		err := s.Update(func(tx *Tx) error {
			return tx.AppendMessage(&Message{Gateway: "gw-1", Seq: seq, Kind: wire.KindTelemetry, Time: t0, Recorded: t0, Raw: big})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := s.MessagesAfter(0, 10)
	if err != nil || len(msgs) != 3 || !BatchFull(msgs, 10) {
		t.Fatalf("MessagesAfter(0, 10) = %d messages of 3 MiB (%v), full %v; want 3 (9 MiB >= %d), full", len(msgs), err, BatchFull(msgs, 10), MaxBatchBytes)
	}
	msgs, err = s.MessagesAfter(msgs[2].Pos, 10)
	if err != nil || len(msgs) != 2 || msgs[0].Seq != 4 || BatchFull(msgs, 10) || len(msgs[1].Raw) != len(big) {
		t.Fatalf("MessagesAfter(3, 10) = %d messages (%v), full %v; want the last 2, not full", len(msgs), err, BatchFull(msgs, 10))
	}
	if msgs, _ := s.MessagesAfter(0, 2); len(msgs) != 2 || !BatchFull(msgs, 2) {
		t.Errorf("MessagesAfter(0, 2) = %d messages, want 2 and full by count", len(msgs))
	}
}

// TestMessagesAfterFor: a message needRaw reports false for comes with its
// record's fields and no envelope; the others, compressed or not, with
// theirs; needRaw is asked once per message with its position and kind.
func TestMessagesAfterFor(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "twins.db"))
	defer s.Close()
	big := bytes.Repeat([]byte(`{"gpus":[{"temp_c":61}]}`), 200) // stored compressed
	small := []byte(`{"state":"online"}`)                        // stored as it is
	kinds := []wire.Kind{wire.KindTelemetry, wire.KindStatus, wire.KindTelemetry, wire.KindStatus}
	for i, kind := range kinds {
		raw := big
		if kind == wire.KindStatus {
			raw = small
		}
		err := s.Update(func(tx *Tx) error {
			return tx.AppendMessage(&Message{Gateway: "gw-1", Seq: uint64(i + 1), Kind: kind, Time: t0, Recorded: t0, Raw: raw})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	asked := map[uint64]wire.Kind{}
	msgs, err := s.MessagesAfterFor(0, 10, func(pos uint64, kind wire.Kind) bool {
		asked[pos] = kind
		return pos == 1 || pos == 4 // one of each form
	})
	if err != nil || len(msgs) != 4 {
		t.Fatalf("MessagesAfterFor = %d messages, %v; want 4", len(msgs), err)
	}
	for i, m := range msgs {
		want := []byte(nil)
		if m.Pos == 1 {
			want = big
		} else if m.Pos == 4 {
			want = small
		}
		if m.Seq != uint64(i+1) || m.Kind != kinds[i] || m.Gateway != "gw-1" || !bytes.Equal(m.Raw, want) || asked[m.Pos] != kinds[i] {
			t.Errorf("message %d: seq %d kind %s (asked as %q) gw %s, %d bytes of envelope; want seq %d kind %s, %d bytes", m.Pos, m.Seq, m.Kind, asked[m.Pos], m.Gateway, len(m.Raw), i+1, kinds[i], len(want))
		}
	}
	if all, err := s.MessagesAfter(0, 10); err != nil || len(all) != 4 || !bytes.Equal(all[2].Raw, big) {
		t.Errorf("MessagesAfter = %d messages, %v; want 4 with their envelopes", len(all), err)
	}
}
