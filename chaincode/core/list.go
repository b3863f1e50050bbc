package core

import (
	"encoding/json"
	"fmt"
)

// Page sizes of ListDatasets, ListModels and ListDeployments.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 500
)

// PageQuery is the argument of ListDatasets and ListModels: at most Limit
// records (0: DefaultPageLimit) whose ids sort after After ("" : from the
// first).
type PageQuery struct {
	Limit int    `json:"limit,omitempty"`
	After string `json:"after,omitempty"`
}

// Page is one page of a list in id order. Next is the After of the next
// page; empty on the last page.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// ListDatasets returns a page of the datasets in id order. Any role.
func ListDatasets(tx *Tx, q PageQuery) (Page[Dataset], error) {
	return listPage[Dataset](tx, "dataset", pfxDataset, q)
}

// ListModels returns a page of the models in id order. Any role.
func ListModels(tx *Tx, q PageQuery) (Page[Model], error) {
	return listPage[Model](tx, "model", pfxModel, q)
}

// ListDeployments returns a page of the recorded gate decisions (allowed
// and refused, deployments and rollbacks) in id order: what twin-service
// reads to know which models may run where. Any role.
func ListDeployments(tx *Tx, q PageQuery) (Page[Deployment], error) {
	return listPage[Deployment](tx, "deployment", pfxDeployment, q)
}

// listPage reads at most q.Limit records under prefix after q.After, in key
// (= id) order: a deterministic range read.
func listPage[T any](tx *Tx, what, prefix string, q PageQuery) (Page[T], error) {
	p := Page[T]{Items: []T{}}
	if err := beginRead(tx); err != nil {
		return p, err
	}
	limit := q.Limit
	switch {
	case limit == 0:
		limit = DefaultPageLimit
	case limit < 0 || limit > MaxPageLimit:
		return p, fmt.Errorf("%s list limit %d: want 1 to %d: %w", what, q.Limit, MaxPageLimit, ErrInvalid)
	}
	start := prefix
	if q.After != "" {
		if err := checkID(what+" cursor", q.After); err != nil {
			return p, err
		}
		start = prefix + q.After + "\x00" // the first key after prefix+After
	}
	var derr error
	last := ""
	err := tx.State.Range(start, prefixEnd(prefix), func(key string, value []byte) bool {
		if len(p.Items) == limit {
			p.Next = last
			return false
		}
		var v T
		if err := json.Unmarshal(value, &v); err != nil {
			derr = fmt.Errorf("decode %s: %w", key, err)
			return false
		}
		p.Items = append(p.Items, v)
		last = key[len(prefix):]
		return true
	})
	if err != nil {
		return Page[T]{Items: []T{}}, fmt.Errorf("range %s: %w", prefix, err)
	}
	if derr != nil {
		return Page[T]{Items: []T{}}, derr
	}
	return p, nil
}
