// Package fabricca enrolls, registers and re-enrolls Fabric identities with
// a Fabric CA through fabric-sdk-go's pkg/client/msp. Users and gateways are
// registered with their twinchain role in the ECert attribute twin.role,
// which the chaincode reads on every transaction.
//
// fabric-sdk-go registers the old github.com/hyperledger/fabric-protos-go
// messages, and fabric-gateway (package fabricledger) registers the same
// names from fabric-protos-go-apiv2: one binary linking both panics at
// start-up with a protobuf namespace conflict. So this package is kept apart
// from fabricledger; identities it enrolls are written as PEM files
// (WriteIdentity) that fabricledger loads. twin-service does not link it.
package fabricca

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/hyperledger/fabric-sdk-go/pkg/client/msp"
	"github.com/hyperledger/fabric-sdk-go/pkg/core/config"
	"github.com/hyperledger/fabric-sdk-go/pkg/fabsdk"
)

// RoleAttr is the ECert attribute that carries a caller's twinchain role;
// the chaincode reads it from the certificate of every transaction.
const RoleAttr = "twin.role"

// CAConfig says how to reach a Fabric CA and where to keep enrolled keys.
type CAConfig struct {
	URL         string // e.g. http://127.0.0.1:7054
	Name        string // the CA's name (--ca.name)
	TLSCACert   string // PEM file; fabric-sdk-go wants one even over plain http
	Registrar   string // bootstrap admin id
	RegistrarPW string // and secret
	Org         string // organisation name in the SDK config
	MSPID       string // e.g. Org1MSP
	StoreDir    string // where the SDK keeps keys and certificates
	Affiliation string // affiliation for registered identities ("" = none)
}

// Validate checks the configuration.
func (c *CAConfig) Validate() error {
	var missing []string
	for name, v := range map[string]string{"url": c.URL, "name": c.Name, "tls_ca_cert": c.TLSCACert,
		"registrar": c.Registrar, "registrar_secret": c.RegistrarPW, "msp_id": c.MSPID, "store_dir": c.StoreDir} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("fabric ca config: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Identity is an enrolled X.509 identity: what a Fabric gateway client needs
// to sign transactions.
type Identity struct {
	ID      string
	MSPID   string
	CertPEM []byte
	KeyPEM  []byte // PKCS#8 EC private key
}

// Certificate parses the identity's certificate.
func (id *Identity) Certificate() (*x509.Certificate, error) {
	b, _ := pem.Decode(id.CertPEM)
	if b == nil {
		return nil, errors.New("identity certificate is not PEM")
	}
	return x509.ParseCertificate(b.Bytes)
}

// CA enrolls and registers identities with a Fabric CA through
// fabric-sdk-go's msp client.
type CA struct {
	cfg    CAConfig
	sdk    *fabsdk.FabricSDK
	client *msp.Client
}

var sdkConfig = template.Must(template.New("sdk").Parse(`version: 1.0.0
client:
  organization: {{.Org}}
  logging:
    level: warning
  cryptoconfig:
    path: {{.StoreDir}}/crypto
  credentialStore:
    path: {{.StoreDir}}/state
    cryptoStore:
      path: {{.StoreDir}}/msp
  BCCSP:
    security:
      enabled: true
      default:
        provider: SW
      hashAlgorithm: SHA2
      softVerify: true
      level: 256
organizations:
  {{.Org}}:
    mspid: {{.MSPID}}
    cryptoPath: users/{username}/msp
    certificateAuthorities:
      - {{.Name}}
certificateAuthorities:
  {{.Name}}:
    url: {{.URL}}
    caName: {{.Name}}
    tlsCACerts:
      path: {{.TLSCACert}}
    registrar:
      enrollId: {{.Registrar}}
      enrollSecret: {{.RegistrarPW}}
`))

// DialCA builds the SDK for one CA. It does not contact the CA yet.
func DialCA(cfg CAConfig) (*CA, error) {
	if cfg.Org == "" {
		cfg.Org = "org"
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var b strings.Builder
	if err := sdkConfig.Execute(&b, &cfg); err != nil {
		return nil, err
	}
	sdk, err := fabsdk.New(config.FromRaw([]byte(b.String()), "yaml"))
	if err != nil {
		return nil, fmt.Errorf("fabric sdk: %w", err)
	}
	client, err := msp.New(sdk.Context(), msp.WithOrg(cfg.Org), msp.WithCAInstance(cfg.Name))
	if err != nil {
		sdk.Close()
		return nil, fmt.Errorf("fabric ca client: %w", err)
	}
	return &CA{cfg: cfg, sdk: sdk, client: client}, nil
}

// Close releases the SDK.
func (c *CA) Close() { c.sdk.Close() }

// EnrollAdmin enrolls the registrar, which Register needs.
func (c *CA) EnrollAdmin() (Identity, error) {
	return c.Enroll(c.cfg.Registrar, c.cfg.RegistrarPW)
}

// Register registers a client identity whose ECert carries role in the
// twin.role attribute, and returns its enrollment secret (secret if given).
func (c *CA) Register(id, secret, role string) (string, error) {
	s, err := c.client.Register(&msp.RegistrationRequest{
		Name: id, Secret: secret, Type: "client", Affiliation: c.cfg.Affiliation, MaxEnrollments: -1,
		Attributes: []msp.Attribute{{Name: RoleAttr, Value: role, ECert: true}},
	})
	if err != nil {
		return "", fmt.Errorf("register %s: %w", id, err)
	}
	return s, nil
}

// Enroll enrolls id and returns its identity.
func (c *CA) Enroll(id, secret string) (Identity, error) {
	if err := c.client.Enroll(id, msp.WithSecret(secret)); err != nil {
		return Identity{}, fmt.Errorf("enroll %s: %w", id, err)
	}
	return c.identity(id)
}

// Reenroll gets id a fresh certificate with its stored key pair.
func (c *CA) Reenroll(id string) (Identity, error) {
	if err := c.client.Reenroll(id); err != nil {
		return Identity{}, fmt.Errorf("reenroll %s: %w", id, err)
	}
	return c.identity(id)
}

func (c *CA) identity(id string) (Identity, error) {
	si, err := c.client.GetSigningIdentity(id)
	if err != nil {
		return Identity{}, fmt.Errorf("identity %s: %w", id, err)
	}
	key, err := c.findKey(si.PrivateKey().SKI())
	if err != nil {
		return Identity{}, fmt.Errorf("identity %s: %w", id, err)
	}
	return Identity{ID: id, MSPID: c.cfg.MSPID, CertPEM: si.EnrollmentCertificate(), KeyPEM: key}, nil
}

// findKey reads the private key the SDK's software keystore wrote as
// <hex SKI>_sk under the store directory.
func (c *CA) findKey(ski []byte) ([]byte, error) {
	name := hex.EncodeToString(ski) + "_sk"
	var found []byte
	err := filepath.WalkDir(c.cfg.StoreDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || found != nil {
			return err
		}
		if d.Name() == name {
			found, err = os.ReadFile(p)
		}
		return err
	})
	if err == nil && found == nil {
		err = fmt.Errorf("private key %s not in %s", name, c.cfg.StoreDir)
	}
	return found, err
}

// fabricAttrOID is the certificate extension where Fabric CA puts ECert
// attributes, as JSON {"attrs":{"name":"value"}}.
var fabricAttrOID = asn1.ObjectIdentifier{1, 2, 3, 4, 5, 6, 7, 8, 1}

// CertAttrs reads the Fabric CA attributes from a certificate.
func CertAttrs(cert *x509.Certificate) (map[string]string, error) {
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(fabricAttrOID) {
			var v struct {
				Attrs map[string]string `json:"attrs"`
			}
			if err := json.Unmarshal(ext.Value, &v); err != nil {
				return nil, fmt.Errorf("certificate attributes: %w", err)
			}
			return v.Attrs, nil
		}
	}
	return map[string]string{}, nil
}

// WriteIdentity writes an identity as dir/cert.pem and dir/key.pem (0600),
// the layout fabricledger's identity_dir expects (dir = <id>.<role>).
func WriteIdentity(dir string, id Identity) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), id.CertPEM, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "key.pem"), id.KeyPEM, 0o600)
}
