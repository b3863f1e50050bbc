package twinstore

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/fastjson"
	"twinchain/internal/registry"
	"twinchain/internal/twin"
)

// EventsAfter returns up to limit events with ids above id, in order.
func (s *Store) EventsAfter(id uint64, limit int) ([]twin.Event, error) {
	if limit <= 0 {
		limit = 1000
	}
	var out []twin.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(u64key(id + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var e twin.Event
			if err := fastjson.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("events after %d: %w", id, err)
	}
	return out, nil
}

// AssetEvents returns up to limit events of one asset with ids above after,
// oldest first.
func (s *Store) AssetEvents(asset string, after uint64, limit int) ([]twin.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []twin.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketTwins).Get([]byte(asset)) == nil {
			return fmt.Errorf("asset %s: %w", asset, ErrNotFound)
		}
		prefix := append([]byte(asset), 0)
		events := tx.Bucket(bucketEvents)
		c := tx.Bucket(bucketAssetEvents).Cursor()
		for k, _ := c.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), after+1)); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Next() {
			v := events.Get(k[len(prefix):])
			var e twin.Event
			if err := fastjson.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(k[len(prefix):]), err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("events of %s: %w", asset, err)
	}
	return out, nil
}

// Asset returns the current twin of one asset.
func (s *Store) Asset(id string) (twin.Asset, error) {
	var a twin.Asset
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTwins).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		pos, err := decodeTwin(v, &a)
		if err == nil {
			s.observed(&a, pos)
		}
		return err
	})
	if err != nil {
		return a, fmt.Errorf("asset %s: %w", id, err)
	}
	return a, nil
}

// AssetFilter selects assets. Empty fields match everything. Q is the
// dashboard's search: every whitespace-separated term, case-insensitive,
// is a substring of one of the asset's searchable fields (SearchText).
type AssetFilter struct {
	Site   string
	Kind   twin.Kind
	Status twin.Status
	Parent string // the asset that holds it, e.g. a GPU's server
	Q      string
	Cursor string // from a previous page's next cursor
	Limit  int    // default 100
}

func (f *AssetFilter) match(a *twin.Asset) bool {
	if f.Site != "" && a.Site != f.Site || f.Kind != "" && a.Kind != f.Kind || f.Status != "" && a.Custody.Status != f.Status ||
		f.Parent != "" && a.Parent != f.Parent {
		return false
	}
	if f.Q == "" {
		return true
	}
	hay := SearchText(a)
	for _, term := range strings.Fields(strings.ToLower(f.Q)) {
		if !strings.Contains(hay, term) {
			return false
		}
	}
	return true
}

// SearchText is what a search looks in, lower case: the id, name, serial,
// UUID, RFID tag, PCI bus id, site, zone, read point, parent, gateway,
// VBIOS and driver. The dashboard's fleet search (web/src/views/fleet.js,
// toRow) reads the same fields.
func SearchText(a *twin.Asset) string {
	idn, loc, fw := &a.Identity, &a.Location, &a.Firmware
	var b strings.Builder
	for _, s := range []string{a.ID, idn.Name, idn.Hostname, idn.Serial, idn.UUID, idn.RFIDTag, idn.PCIBusID, a.Site, loc.Zone, loc.ReadPoint, a.Parent, a.Gateway, fw.VBIOS, fw.Driver} {
		if s != "" {
			b.WriteString(strings.ToLower(s))
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// mayMatch is a cheap test on a twin's stored JSON before decoding it: a
// twin that lacks the filter's exact "kind":"gpu" (site, status, parent) text
// cannot match. Values with characters JSON might escape skip the shortcut.
func (f *AssetFilter) mayMatch(v []byte) bool {
	for _, kv := range [...]struct{ key, val string }{{`"kind":`, string(f.Kind)}, {`"site":`, f.Site}, {`"status":`, string(f.Status)}, {`"parent":`, f.Parent}} {
		if kv.val == "" || !plain(kv.val) {
			continue
		}
		if !bytes.Contains(v, []byte(kv.key+`"`+kv.val+`"`)) {
			return false
		}
	}
	return true
}

// plain reports whether JSON writes s without escapes.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':' || c == ' ') {
			return false
		}
	}
	return true
}

// Summary counts assets by kind, site, custody status and health state.
type Summary struct {
	Total    int            `json:"total"`
	ByKind   map[string]int `json:"by_kind"`
	BySite   map[string]int `json:"by_site"`
	ByStatus map[string]int `json:"by_status"`
	ByHealth map[string]int `json:"by_health"`
}

// Summarize counts every asset. The counts are kept as twins are written;
// the first call reads every twin once.
func (s *Store) Summarize() (Summary, error) {
	return s.summary.get(s.db)
}

// ErrBadCursor is returned for a paging cursor this store did not make.
var ErrBadCursor = fmt.Errorf("bad cursor")

// Assets lists assets in id order. next is the cursor of the next page, or
// empty on the last page.
func (s *Store) Assets(f AssetFilter) (items []twin.Asset, next string, err error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var after []byte
	if f.Cursor != "" {
		if after, err = base64.RawURLEncoding.DecodeString(f.Cursor); err != nil {
			return nil, "", fmt.Errorf("assets: %w", ErrBadCursor)
		}
	}
	items = []twin.Asset{}
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketTwins).Cursor()
		k, v := c.First()
		if after != nil {
			if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if !f.mayMatch(v) {
				continue
			}
			var a twin.Asset
			pos, err := decodeTwin(v, &a)
			if err != nil {
				return fmt.Errorf("twin %s: %w", k, err)
			}
			s.observed(&a, pos)
			if !f.match(&a) {
				continue
			}
			if len(items) == limit {
				next = base64.RawURLEncoding.EncodeToString([]byte(items[len(items)-1].ID))
				return nil
			}
			items = append(items, a)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("assets: %w", err)
	}
	return items, next, nil
}

// decodeTwin parses a twins bucket value: observed position, then JSON.
func decodeTwin(v []byte, a *twin.Asset) (observedPos uint64, err error) {
	if len(v) < 8 {
		return 0, fmt.Errorf("short twin record")
	}
	return binary.BigEndian.Uint64(v), fastjson.Unmarshal(v[8:], a)
}

// ForEachTwin calls fn with every stored twin, in id order, and the message
// position through which its observations are stored.
func (s *Store) ForEachTwin(fn func(a *twin.Asset, observedPos uint64) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTwins).ForEach(func(k, v []byte) error {
			var a twin.Asset
			pos, err := decodeTwin(v, &a)
			if err != nil {
				return fmt.Errorf("twin %s: %w", k, err)
			}
			return fn(&a, pos)
		})
	})
}

// GatewayStates returns every gateway's stream state, by gateway id.
func (s *Store) GatewayStates() ([]GatewayState, error) {
	var out []GatewayState
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGwState).ForEach(func(k, v []byte) error {
			var st GatewayState
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("gateway state %s: %w", k, err)
			}
			out = append(out, st)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("gateway states: %w", err)
	}
	return out, nil
}

// SeqsAbove calls fn with every stored sequence number of gateway gw's
// epoch above min, in increasing order.
func (s *Store) SeqsAbove(gw string, epoch, min uint64, fn func(seq uint64)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		seqsAbove(tx.Bucket(bucketSeqs), gw, epoch, min, fn)
		return nil
	})
}

// Gateways returns the stored registry, by gateway id.
func (s *Store) Gateways() ([]registry.Gateway, error) {
	out := []registry.Gateway{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGateways).ForEach(func(k, v []byte) error {
			var g registry.Gateway
			if err := json.Unmarshal(v, &g); err != nil {
				return fmt.Errorf("gateway %s: %w", k, err)
			}
			out = append(out, g)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("gateways: %w", err)
	}
	return out, nil
}

// PutGateways adds or replaces gateways in the stored registry, in one
// transaction, after validating each.
func (s *Store) PutGateways(gws ...registry.Gateway) error {
	for i := range gws {
		if err := gws[i].Validate(); err != nil {
			return err
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGateways)
		for i := range gws {
			data, err := json.Marshal(&gws[i])
			if err != nil {
				return err
			}
			if err := b.Put([]byte(gws[i].ID), data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put gateways: %w", err)
	}
	return nil
}

// DeleteGateway removes a gateway from the stored registry.
func (s *Store) DeleteGateway(id string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGateways)
		if b.Get([]byte(id)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete gateway %s: %w", id, err)
	}
	return nil
}
