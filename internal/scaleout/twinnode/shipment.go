package twinnode

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ShipmentsSubject is where declared shipments go in the changes stream:
// every node folds them in order with the partitions' changes.
const ShipmentsSubject = "twin.changes.shipments"

// Shipment is a declared move of GPUs from one site to another. Without
// one, a GPU reported by gateways of two partitions is a clone; with one,
// its readings at the destination are its arrival (Model.shipped).
type Shipment struct {
	ID       string    `json:"id"`
	UUIDs    []string  `json:"uuids"`
	From     string    `json:"from"` // the origin's site
	To       string    `json:"to"`   // the destination's site
	Declared time.Time `json:"declared"`
	// Due is when every GPU of it should have arrived (zero: no date). A
	// GPU not arrived once the readings folded are newer than Due raises
	// one shipment_overdue (Model.tick).
	Due time.Time `json:"due,omitzero"`
	By  string    `json:"by,omitempty"` // who declared it
}

func (s *Shipment) check() error {
	switch {
	case s.ID == "":
		return errors.New("shipment: no id")
	case len(s.UUIDs) == 0 || slices.Contains(s.UUIDs, ""):
		return fmt.Errorf("shipment %s: no GPU, or an empty GPU id", s.ID)
	case s.From == "" || s.To == "" || s.From == s.To:
		return fmt.Errorf("shipment %s: from %q to %q: two different sites are needed", s.ID, s.From, s.To)
	case !s.Due.IsZero() && !s.Due.After(s.Declared):
		return fmt.Errorf("shipment %s: due %s, not after its declaration (%s)", s.ID, s.Due.Format(time.RFC3339), s.Declared.Format(time.RFC3339))
	}
	return nil
}

// ShipmentView is a shipment as the read model folded it.
type ShipmentView struct {
	Shipment
	// Departed are its GPUs gone from the inventory of the origin's
	// gateway that listed them, Arrived those reported at the
	// destination, each in the order folded. A GPU departed and not
	// arrived is on its way.
	Departed []Passage `json:"departed,omitempty"`
	Arrived  []Passage `json:"arrived,omitempty"`
	// Overdue: readings newer than Due were folded while some of its GPUs
	// had not arrived (each raised a shipment_overdue).
	Overdue bool `json:"overdue,omitempty"`
}

// Passage is a shipped GPU passing a gateway: in Arrived its first reading
// at the destination, in Departed the first inventory of the origin's
// gateway without it.
type Passage struct {
	UUID    string    `json:"uuid"`
	Gateway string    `json:"gateway"`
	At      time.Time `json:"at"`
}

// DeclareShipment puts a shipment into the changes stream (any node, or
// any client of the cluster, may), with a new id if it has none and now
// as its declaration time if it has none; it returns the shipment as
// declared. Its id is the message id, so declaring it again within
// ChangesDedupe stores it once (and the read model skips a known id
// after that).
func DeclareShipment(ctx context.Context, js jetstream.JetStream, s Shipment) (Shipment, error) {
	if s.ID == "" {
		s.ID = "shp-" + rand.Text()
	}
	if s.Declared.IsZero() {
		s.Declared = time.Now().UTC()
	}
	if err := s.check(); err != nil {
		return s, err
	}
	return s, putChange(ctx, js, ShipmentsSubject, "shipment/"+s.ID, Change{Kind: KindShipment, Time: s.Declared, Shipment: &s})
}

// putChange puts a change that no gateway made (a declared shipment, an
// acknowledgement) into the changes stream under its message id: JetStream
// stores it once within ChangesDedupe.
func putChange(ctx context.Context, js jetstream.JetStream, subject, id string, c Change) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if _, err := js.Publish(ctx, subject, data, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("twinnode: put %s: %w", id, err)
	}
	return nil
}
