package fabric

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"

	"twinchain/chaincode/core"
)

// startFabricCA runs the real fabric-ca-server (TWINCHAIN_FABRIC_CA, built by
// scripts/test-deps.sh) on a loopback port with identities preregistered
// with a twin.role attribute, and returns its URL.
func startFabricCA(t *testing.T, users map[string]core.Role) string {
	bin := os.Getenv("TWINCHAIN_FABRIC_CA")
	if bin == "" {
		if os.Getenv("TWINCHAIN_REQUIRE_SERVICES") != "" {
			t.Fatal("TWINCHAIN_FABRIC_CA is not set (run scripts/test-deps.sh)")
		}
		t.Skip("TWINCHAIN_FABRIC_CA is not set: no fabric-ca-server to issue ECerts")
	}
	home := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("registry:\n  maxenrollments: -1\n  identities:\n")
	cfg.WriteString("    - name: admin\n      pass: adminpw\n      type: client\n      affiliation: \"\"\n      attrs:\n        hf.Registrar.Roles: \"*\"\n")
	for name, role := range users {
		fmt.Fprintf(&cfg, "    - name: %s\n      pass: %s-pw\n      type: client\n      affiliation: org1\n      attrs:\n        %s: %s\n", name, name, RoleAttribute, role)
	}
	cfg.WriteString("affiliations:\n  org1: []\n")
	if err := os.WriteFile(filepath.Join(home, "fabric-ca-server-config.yaml"), []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, ops := freeAddr(t), freeAddr(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	cmd := exec.Command(bin, "start", "--home", home, "--address", "127.0.0.1", "--port", port)
	cmd.Env = append(os.Environ(), "FABRIC_CA_SERVER_OPERATIONS_LISTENADDRESS="+ops)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := "http://" + addr
	// Poll the server's readiness (this module cannot import twinchain's testsvc).
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/cainfo"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fabric-ca-server did not start:\n%s", out.String())
		}
	}
}

// enroll asks the CA for an ECert for name carrying the twin.role attribute,
// over the CA's REST API, and returns the certificate PEM.
func enroll(t *testing.T, url, name string) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"certificate_request": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		"attr_reqs":           []map[string]any{{"name": RoleAttribute}},
	})
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/enroll", bytes.NewReader(body))
	req.SetBasicAuth(name, name+"-pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct {
		Success bool
		Result  struct{ Cert string }
		Errors  []struct{ Message string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || !res.Success {
		t.Fatalf("enroll %s: %v %+v", name, err, res.Errors)
	}
	cert, err := base64.StdEncoding.DecodeString(res.Result.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestFabricCAECertRole enrolls identities at a real Fabric CA and calls the
// contract as each: the contract must read the role from the ECert's
// twin.role attribute (through cid) and apply it.
func TestFabricCAECertRole(t *testing.T) {
	url := startFabricCA(t, map[string]core.Role{"am-1": core.RoleAssetManager, "aud-1": core.RoleAuditor})
	e := newEnv(t)
	creator := func(name string) []byte {
		b, err := proto.Marshal(&msp.SerializedIdentity{Mspid: "Org1MSP", IdBytes: enroll(t, url, name)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	manager, auditor := creator("am-1"), creator("aud-1")
	reg := core.AssetRegistration{ID: "gpu-7", Kind: "gpu", FingerprintHash: hashOf("7")}
	if status, payload, msg := e.invoke(manager, "RegisterAsset", reg); status != shim.OK || !strings.Contains(payload, `"role":"asset_manager"`) ||
		!strings.Contains(payload, "CN=am-1") {
		t.Errorf("RegisterAsset as the enrolled asset manager = %d %s %s, want it stamped with role asset_manager and CN=am-1", status, payload, msg)
	}
	reg.ID = "gpu-8"
	if status, _, msg := e.invoke(auditor, "RegisterAsset", reg); status == shim.OK || !strings.HasPrefix(msg, "[forbidden]") {
		t.Errorf("RegisterAsset as the enrolled auditor = %d %q, want [forbidden]", status, msg)
	}
	if status, _, msg := e.invoke(auditor, "GetAsset", core.IDQuery{ID: "gpu-7"}); status != shim.OK {
		t.Errorf("GetAsset as the enrolled auditor = %d %q, want the asset", status, msg)
	}
}
