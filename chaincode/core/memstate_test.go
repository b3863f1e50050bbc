package core

import (
	"slices"
	"strings"
)

// memState is a test double for the world state: Fabric's state database
// (or the embedded ledger's bbolt store) cannot run inside a unit test of
// the pure core. Like Fabric, a transaction's reads do not see its own
// writes: Puts and Deletes are buffered until commit.
type memState struct {
	kv      map[string][]byte
	keys    []string          // the keys of kv, sorted
	pending map[string][]byte // nil value: delete
	order   []string
	reads   int
}

func newMemState() *memState { return &memState{kv: map[string][]byte{}} }

func (m *memState) Get(key string) ([]byte, error) {
	m.reads++
	v, ok := m.kv[key]
	if !ok {
		return nil, nil
	}
	return slices.Clone(v), nil
}

func (m *memState) Put(key string, value []byte) error {
	if m.pending == nil {
		m.pending = map[string][]byte{}
	}
	if _, ok := m.pending[key]; !ok {
		m.order = append(m.order, key)
	}
	m.pending[key] = slices.Clone(value)
	return nil
}

func (m *memState) Delete(key string) error {
	if m.pending == nil {
		m.pending = map[string][]byte{}
	}
	if _, ok := m.pending[key]; !ok {
		m.order = append(m.order, key)
	}
	m.pending[key] = nil
	return nil
}

func (m *memState) Range(start, end string, fn func(key string, value []byte) bool) error {
	i, _ := slices.BinarySearch(m.keys, start)
	for _, k := range m.keys[i:] {
		if end != "" && k >= end || !fn(k, slices.Clone(m.kv[k])) {
			break
		}
	}
	return nil
}

// commit applies the buffered writes and returns the keys written, in order.
func (m *memState) commit() []string {
	for k, v := range m.pending {
		i, found := slices.BinarySearch(m.keys, k)
		switch {
		case v == nil && found:
			m.keys = slices.Delete(m.keys, i, i+1)
			delete(m.kv, k)
		case v != nil && !found:
			m.keys = slices.Insert(m.keys, i, k)
			fallthrough
		case v != nil:
			m.kv[k] = v
		}
	}
	written := m.order
	m.pending, m.order = nil, nil
	return written
}

// rollback drops the buffered writes, as a failed transaction's are.
func (m *memState) rollback() { m.pending, m.order = nil, nil }

// dump returns the committed state as sorted "key=value" lines.
func (m *memState) dump() string {
	var lines []string
	for k, v := range m.kv {
		lines = append(lines, k+"="+string(v))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
