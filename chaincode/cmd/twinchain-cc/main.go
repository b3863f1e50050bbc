// Command twinchain-cc runs the twinchain chaincode as a service (ccaas):
// the peer's ccaas builder connects to CHAINCODE_SERVER_ADDRESS and the
// server answers as CHAINCODE_ID (the package id). No TLS: loopback only.
package main

import (
	"fmt"
	"os"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"

	"twinchain/chaincode/fabric"
)

func main() {
	if err := run(os.Getenv("CHAINCODE_ID"), os.Getenv("CHAINCODE_SERVER_ADDRESS")); err != nil {
		fmt.Fprintln(os.Stderr, "twinchain-cc:", err)
		os.Exit(1)
	}
}

func run(id, addr string) error {
	cc, err := fabric.NewChaincode()
	if err != nil {
		return err
	}
	server := &shim.ChaincodeServer{CCID: id, Address: addr, CC: cc, TLSProps: shim.TLSProperties{Disabled: true}}
	return server.Start()
}
