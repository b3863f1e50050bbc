// Package fabricledger is the Hyperledger Fabric backend of ledger.Ledger:
// transactions go to the twinchain chaincode over the peer's gateway
// (github.com/hyperledger/fabric-gateway), signed by X.509 identities that
// Fabric CA issued with a twin.role attribute.
//
// Identities are PEM files: the service's own (cert_file, key_file) and, in
// identity_dir, one folder per other caller named <id>.<role> holding
// cert.pem and key.pem, as internal/ledger/fabricca enrolls them. A caller without
// a folder is refused (ErrForbidden); without identity_dir every call is
// signed by the service identity.
//
// Only twin-service links this package; the edge-agent never does.
package fabricledger
