package core

import (
	"fmt"
	"testing"
)

func TestListDatasets(t *testing.T) {
	l := mlWorld(t) // ds-raw, ds-lab
	for _, id := range []string{"ds-z", "ds-a"} {
		must(l, RoleMLEngineer, func(tx *Tx) (Dataset, error) { return RegisterDataset(tx, rootDataset(id)) })
	}
	tests := []struct {
		q       PageQuery
		ids     string
		next    string
		wantErr error
	}{
		{PageQuery{}, "[ds-a ds-lab ds-raw ds-z]", "", nil},
		{PageQuery{Limit: 2}, "[ds-a ds-lab]", "ds-lab", nil},
		{PageQuery{Limit: 2, After: "ds-lab"}, "[ds-raw ds-z]", "", nil},
		{PageQuery{Limit: 3, After: "ds-a"}, "[ds-lab ds-raw ds-z]", "", nil},
		{PageQuery{Limit: 4}, "[ds-a ds-lab ds-raw ds-z]", "", nil},
		{PageQuery{After: "ds-l"}, "[ds-lab ds-raw ds-z]", "", nil}, // a cursor need not exist
		{PageQuery{After: "ds-z"}, "[]", "", nil},
		{PageQuery{Limit: -1}, "[]", "", ErrInvalid},
		{PageQuery{Limit: MaxPageLimit + 1}, "[]", "", ErrInvalid},
		{PageQuery{After: "a/b"}, "[]", "", ErrInvalid},
	}
	for _, tt := range tests {
		p, err := do(l, RoleAuditor, func(tx *Tx) (Page[Dataset], error) { return ListDatasets(tx, tt.q) })
		wantErr(t, fmt.Sprintf("ListDatasets(%+v)", tt.q), err, tt.wantErr)
		var ids []string
		for _, d := range p.Items {
			ids = append(ids, d.ID)
		}
		if got := fmt.Sprint(ids); got != tt.ids || p.Next != tt.next {
			t.Errorf("ListDatasets(%+v) = %s next %q, want %s next %q", tt.q, got, p.Next, tt.ids, tt.next)
		}
	}
	if _, err := ListDatasets(&Tx{State: l.st, Caller: Caller{ID: "x"}}, PageQuery{}); err == nil {
		t.Errorf("ListDatasets without a role = nil error, want ErrForbidden")
	}
}

func TestListModels(t *testing.T) {
	l := mlWorld(t) // m1 on ds-lab
	must(l, RoleMLEngineer, func(tx *Tx) (Model, error) { return RegisterModel(tx, modelInput("m0", "ds-raw")) })
	for _, tt := range []struct {
		q    PageQuery
		ids  string
		next string
	}{
		{PageQuery{}, "[m0 m1]", ""},
		{PageQuery{Limit: 1}, "[m0]", "m0"},
		{PageQuery{Limit: 1, After: "m0"}, "[m1]", ""},
	} {
		p := must(l, RoleAuditor, func(tx *Tx) (Page[Model], error) { return ListModels(tx, tt.q) })
		var ids []string
		for _, m := range p.Items {
			ids = append(ids, m.ID)
		}
		if got := fmt.Sprint(ids); got != tt.ids || p.Next != tt.next {
			t.Errorf("ListModels(%+v) = %s next %q, want %s next %q", tt.q, got, p.Next, tt.ids, tt.next)
		}
	}
}
