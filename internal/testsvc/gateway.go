package testsvc

import (
	"crypto/ed25519"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"twinchain/internal/wire"
)

// GatewayOptions are paho options for gateway gw of twin-service's embedded
// broker at brokerURL: client id and username gw, and a fresh connect
// password signed by key at every (re)connect.
func GatewayOptions(brokerURL, gw string, key ed25519.PrivateKey) *paho.ClientOptions {
	return paho.NewClientOptions().AddBroker(brokerURL).SetClientID(gw).
		SetCredentialsProvider(func() (string, string) { return gw, wire.ConnectPassword(key, gw, time.Now()) })
}
