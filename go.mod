module twinchain

go 1.26.0

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1
	go.etcd.io/bbolt v1.5.0
	golang.org/x/sync v0.25.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
