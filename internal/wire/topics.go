package wire

import (
	"fmt"
	"strings"
)

// TopicRoot is the first level of every twinchain topic.
const TopicRoot = "twinchain"

// topicPrefix is "twinchain/v1/".
var topicPrefix = TopicRoot + "/v" + fmt.Sprint(Version) + "/"

// Topic is where gateway gw publishes messages of kind k:
// twinchain/v1/gw/{gw}/{kind}. A broker ACL of the form
// "twinchain/v1/gw/%u/#" (Mosquitto's pattern) confines a gateway to its subtree.
func Topic(gw string, k Kind) string {
	return topicPrefix + "gw/" + gw + "/" + string(k)
}

// GatewayFilter is the subscription filter that matches every gateway message.
func GatewayFilter() string { return topicPrefix + "gw/+/+" }

// GatewayACLPattern is the Mosquitto ACL pattern that confines a client whose
// username is its gateway id to its own subtree.
func GatewayACLPattern() string { return topicPrefix + "gw/%u/#" }

// ProbeTopic is where a twin-service connected to an external broker as
// client sends its readiness probe, twinchain/v1/gw/~probe/{client}: under
// GatewayFilter, so that receiving it proves the gateway subscription works,
// and never a gateway's ("~" is in no gateway id).
func ProbeTopic(client string) string { return topicPrefix + "gw/~probe/" + client }

// ProbeACLPattern is the Mosquitto ACL pattern that lets a service client
// whose username is its client id write its probe.
func ProbeACLPattern() string { return ProbeTopic("%u") }

// AlertTopic is where twin-service publishes an alert: twinchain/v1/alerts/{site}/{type}.
func AlertTopic(site, alertType string) string {
	return topicPrefix + "alerts/" + site + "/" + alertType
}

// AlertFilter matches every alert topic.
func AlertFilter() string { return topicPrefix + "alerts/#" }

// ParseTopic splits a gateway topic into its gateway id and kind.
func ParseTopic(topic string) (gw string, k Kind, err error) {
	rest, ok := strings.CutPrefix(topic, topicPrefix+"gw/")
	if !ok {
		return "", "", fmt.Errorf("topic %q: not under %sgw/: %w", topic, topicPrefix, ErrMalformed)
	}
	gw, kind, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(kind, "/") {
		return "", "", fmt.Errorf("topic %q: want %sgw/{gateway}/{kind}: %w", topic, topicPrefix, ErrMalformed)
	}
	if !ValidGatewayID(gw) {
		return "", "", fmt.Errorf("topic %q: %w", topic, ErrBadGatewayID)
	}
	if k = Kind(kind); !k.Valid() {
		return "", "", fmt.Errorf("topic %q: unknown kind %q: %w", topic, kind, ErrMalformed)
	}
	return gw, k, nil
}
