// Package fabricledger is the Hyperledger Fabric backend of ledger.Ledger:
// transactions go to the twinchain chaincode over the peer's gateway
// (github.com/hyperledger/fabric-gateway), signed by an X.509 identity that
// Fabric CA issued with a twin.role attribute (enrolled, registered and
// re-enrolled through fabric-sdk-go's pkg/client/msp).
//
// fabric-sdk-go is large; only this package imports it, so only
// twin-service links it (the edge-agent never does).
package fabricledger
