package twinnode

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AlertAcksSubject is where alerts' acknowledgements go in the changes
// stream: every node folds them in order, so all agree who was first.
const AlertAcksSubject = "twin.changes.acks"

// AlertAck acknowledges one alert of the read model: someone of the
// security team has seen it and takes it on.
type AlertAck struct {
	Alert string    `json:"alert"` // Alert.ID
	By    string    `json:"by"`
	At    time.Time `json:"at"`
	Note  string    `json:"note,omitempty"`
}

// AckAlert puts an acknowledgement into the changes stream (any node, or
// any client of the cluster, may), with now as its time if it has none.
// Whether it stood is in the read model once folded (Alert.Acked: the
// first of an alert stands). The same alert acknowledged again within
// ChangesDedupe is stored once.
func AckAlert(ctx context.Context, js jetstream.JetStream, k AlertAck) (AlertAck, error) {
	if k.Alert == "" || k.By == "" {
		return k, errors.New("alert acknowledgement: an alert id and who acknowledges it are needed")
	}
	if k.At.IsZero() {
		k.At = time.Now().UTC()
	}
	return k, putChange(ctx, js, AlertAcksSubject, "ack/"+k.Alert, Change{Kind: KindAlertAck, Time: k.At, Ack: &k})
}
