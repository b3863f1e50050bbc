package workorderstore

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"twinchain/internal/detect/workorder"

	bolt "go.etcd.io/bbolt"

	"twinchain/internal/twin"
)

var bucket = []byte("workorders")

// maxCovered bounds the coverage records kept per order.
const maxCovered = 1000

// Store keeps work orders in a bbolt bucket and an in-memory copy for
// matching. It is safe for concurrent use.
type Store struct {
	db     *bolt.DB
	policy workorder.Policy
	now    func() time.Time
	mu     sync.RWMutex
	orders map[string]*workorder.Order
}

// NewStore loads the orders kept in db (creating its bucket).
func NewStore(db *bolt.DB, policy workorder.Policy, now func() time.Time) (*Store, error) {
	s := &Store{db: db, policy: policy, now: now, orders: map[string]*workorder.Order{}}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var o workorder.Order
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("order %s: %w", k, err)
			}
			s.orders[o.ID] = &o
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load work orders: %w", err)
	}
	return s, nil
}

func (s *Store) put(tx *bolt.Tx, o *workorder.Order) error {
	raw, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(o.ID), raw)
}

// Create stores a new pending order made by user acting in role.
func (s *Store) Create(o workorder.Order, user, role string) (workorder.Order, error) {
	if err := s.policy.CheckCreate(user, role); err != nil {
		return workorder.Order{}, err
	}
	if err := o.Validate(); err != nil {
		return workorder.Order{}, err
	}
	o.State, o.CreatedBy, o.CreatorRole, o.CreatedAt = workorder.Pending, user, role, s.now().UTC()
	o.ApprovedBy, o.ApproverRole, o.ApprovedAt, o.Covered = "", "", time.Time{}, nil
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		n, err := tx.Bucket(bucket).NextSequence()
		if err != nil {
			return err
		}
		o.ID = "WO-" + strconv.FormatUint(n, 10)
		return s.put(tx, &o)
	})
	if err != nil {
		return workorder.Order{}, fmt.Errorf("create work order: %w", err)
	}
	s.orders[o.ID] = &o
	return clone(&o), nil
}

func clone(o *workorder.Order) workorder.Order {
	c := *o
	c.Changes = slices.Clone(o.Changes)
	c.Covered = slices.Clone(o.Covered)
	return c
}

// update applies fn to a copy of order id and stores it.
func (s *Store) update(id string, fn func(*workorder.Order) error) (workorder.Order, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.orders[id]
	if !ok {
		return workorder.Order{}, fmt.Errorf("%s: %w", id, workorder.ErrNotFound)
	}
	next := clone(cur)
	if err := fn(&next); err != nil {
		return workorder.Order{}, err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return s.put(tx, &next) }); err != nil {
		return workorder.Order{}, fmt.Errorf("store %s: %w", id, err)
	}
	s.orders[id] = &next
	return clone(&next), nil
}

// Approve approves a pending order: user must not be its creator and must
// act in an approving role.
func (s *Store) Approve(id, user, role string) (workorder.Order, error) {
	return s.update(id, func(o *workorder.Order) error {
		if o.State != workorder.Pending {
			return fmt.Errorf("%s is %s, not pending: %w", id, o.State, workorder.ErrConflict)
		}
		if err := s.policy.CheckApprove(o, user, role); err != nil {
			return err
		}
		o.State, o.ApprovedBy, o.ApproverRole, o.ApprovedAt = workorder.Approved, user, role, s.now().UTC()
		return nil
	})
}

// Cancel withdraws an order; it covers nothing afterwards.
func (s *Store) Cancel(id, user string) (workorder.Order, error) {
	return s.update(id, func(o *workorder.Order) error {
		if user == "" {
			return fmt.Errorf("cancelling an order needs a user: %w", workorder.ErrForbidden)
		}
		if o.State == workorder.Cancelled {
			return fmt.Errorf("%s is already cancelled: %w", id, workorder.ErrConflict)
		}
		o.State = workorder.Cancelled
		return nil
	})
}

// Get returns one order.
func (s *Store) Get(id string) (workorder.Order, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.orders[id]
	if !ok {
		return workorder.Order{}, fmt.Errorf("%s: %w", id, workorder.ErrNotFound)
	}
	return clone(o), nil
}

// List returns the orders for asset (all when empty) in state (all when
// empty), oldest first.
func (s *Store) List(asset string, state workorder.State) []workorder.Order {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []workorder.Order
	for _, o := range s.orders {
		if (asset == "" || o.Asset == asset) && (state == "" || o.State == state) {
			out = append(out, clone(o))
		}
	}
	sort.Slice(out, func(i, j int) bool { return orderNum(out[i].ID) < orderNum(out[j].ID) })
	return out
}

func orderNum(id string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimPrefix(id, "WO-"), 10, 64)
	return n
}

// Match returns the id of an approved order that covers change c of asset
// at t (the oldest, when several do).
func (s *Store) Match(asset string, ancestors []string, c twin.Change, t time.Time) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	best := ""
	for id, o := range s.orders {
		if o.Covers(asset, ancestors, c, t) && (best == "" || orderNum(id) < orderNum(best)) {
			best = id
		}
	}
	return best, best != ""
}

// Record notes that order id covered a change.
func (s *Store) Record(id string, c workorder.Coverage) error {
	_, err := s.update(id, func(o *workorder.Order) error {
		o.Covered = append(o.Covered, c)
		if len(o.Covered) > maxCovered {
			o.Covered = o.Covered[len(o.Covered)-maxCovered:]
		}
		return nil
	})
	return err
}
