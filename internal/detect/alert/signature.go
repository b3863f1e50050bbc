package alert

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Webhook headers.
const (
	HeaderSignature = "X-Twinchain-Signature" // "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body)
	HeaderTimestamp = "X-Twinchain-Timestamp" // unix seconds
	HeaderDelivery  = "X-Twinchain-Delivery"  // unique per delivery, for the receiver's deduplication
	HeaderEvent     = "X-Twinchain-Event"
)

// Sign returns the signature header value for body sent at timestamp ts.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a webhook's signature header in constant time.
func VerifySignature(secret []byte, ts string, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(header))
}
