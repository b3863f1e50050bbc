package fabric

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"twinchain/chaincode/core"
)

// fakeStub is a test double for the peer's side of the chaincode stub: no
// Fabric peer can run on this machine. It holds a world state with Fabric's
// semantics (a transaction's reads see committed state only, its writes are
// a write set applied on commit) and answers the calls the contract makes;
// any other stub method panics through the nil embedded interface.
type fakeStub struct {
	shim.ChaincodeStubInterface
	state   map[string][]byte
	writes  map[string][]byte
	args    [][]byte
	txID    string
	ts      time.Time
	creator []byte
	// policies are the key-level endorsement policies set
	policies map[string][]byte
}

func newFakeStub() *fakeStub { return &fakeStub{state: map[string][]byte{}} }

func (s *fakeStub) GetTransient() (map[string][]byte, error) { return nil, nil }

func (s *fakeStub) begin(txID string, ts time.Time, creator []byte, fn string, arg any) {
	b, err := json.Marshal(arg)
	if err != nil {
		panic(err)
	}
	s.txID, s.ts, s.creator, s.writes = txID, ts, creator, map[string][]byte{}
	s.args = [][]byte{[]byte(fn), b}
}

func (s *fakeStub) commit() {
	for k, v := range s.writes {
		if v == nil {
			delete(s.state, k)
		} else {
			s.state[k] = v
		}
	}
	s.writes = nil
}

func (s *fakeStub) GetArgs() [][]byte { return s.args }
func (s *fakeStub) GetStringArgs() []string {
	var out []string
	for _, a := range s.args {
		out = append(out, string(a))
	}
	return out
}
func (s *fakeStub) GetFunctionAndParameters() (string, []string) {
	a := s.GetStringArgs()
	return a[0], a[1:]
}
func (s *fakeStub) GetTxID() string             { return s.txID }
func (s *fakeStub) GetChannelID() string        { return "twinchain" }
func (s *fakeStub) GetCreator() ([]byte, error) { return s.creator, nil }
func (s *fakeStub) GetTxTimestamp() (*timestamppb.Timestamp, error) {
	return timestamppb.New(s.ts), nil
}
func (s *fakeStub) GetState(key string) ([]byte, error) { return s.state[key], nil }

// SetStateValidationParameter records a key's endorsement policy.
func (s *fakeStub) SetStateValidationParameter(key string, ep []byte) error {
	if s.policies == nil {
		s.policies = map[string][]byte{}
	}
	s.policies[key] = ep
	return nil
}
func (s *fakeStub) PutState(key string, value []byte) error {
	if len(value) == 0 {
		panic("PutState with an empty value deletes on a peer")
	}
	s.writes[key] = bytes.Clone(value)
	return nil
}
func (s *fakeStub) DelState(key string) error { s.writes[key] = nil; return nil }

func (s *fakeStub) GetStateByRange(start, end string) (shim.StateQueryIteratorInterface, error) {
	var kvs []*queryresult.KV
	for k, v := range s.state {
		if k >= start && (end == "" || k < end) {
			kvs = append(kvs, &queryresult.KV{Namespace: "twinchain", Key: k, Value: v})
		}
	}
	slices.SortFunc(kvs, func(a, b *queryresult.KV) int { return strings.Compare(a.Key, b.Key) })
	return &kvIter{kvs: kvs}, nil
}

type kvIter struct{ kvs []*queryresult.KV }

func (it *kvIter) HasNext() bool { return len(it.kvs) > 0 }
func (it *kvIter) Close() error  { return nil }
func (it *kvIter) Next() (*queryresult.KV, error) {
	kv := it.kvs[0]
	it.kvs = it.kvs[1:]
	return kv, nil
}

// identity returns a serialized X.509 identity of mspID whose certificate
// carries attrs in Fabric CA's attribute extension, as an enrolled ECert does.
func identity(t *testing.T, mspID, cn string, attrs map[string]string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn, OrganizationalUnit: []string{"client"}},
		Issuer:       pkix.Name{CommonName: "ca.org1"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	if attrs != nil {
		v, _ := json.Marshal(map[string]any{"attrs": attrs})
		tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4, 5, 6, 7, 8, 1}, Value: v}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	sid := &msp.SerializedIdentity{Mspid: mspID, IdBytes: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	b, err := proto.Marshal(sid)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

type env struct {
	t     *testing.T
	cc    shim.Chaincode
	stub  *fakeStub
	ids   map[core.Role][]byte
	n     int
	clock time.Time
}

func newEnv(t *testing.T) *env {
	cc, err := NewChaincode()
	if err != nil {
		t.Fatalf("NewChaincode() = %v", err)
	}
	e := &env{t: t, cc: cc, stub: newFakeStub(), ids: map[core.Role][]byte{}, clock: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	for _, r := range core.Roles {
		e.ids[r] = identity(t, "Org1MSP", "user-"+string(r), map[string]string{RoleAttribute: string(r), "hf.EnrollmentID": "user-" + string(r)})
	}
	return e
}

// invoke runs one transaction through the chaincode's Invoke, as the peer
// would, and commits its write set when it succeeds.
func (e *env) invoke(creator []byte, fn string, arg any) (status int32, payload, msg string) {
	e.n++
	e.clock = e.clock.Add(time.Second)
	e.stub.begin("tx"+string(rune('a'+e.n%26))+strings.Repeat("0", e.n/26), e.clock, creator, fn, arg)
	resp := e.cc.Invoke(e.stub)
	if resp.Status == shim.OK {
		e.stub.commit()
	}
	return resp.Status, string(resp.Payload), resp.Message
}

func (e *env) must(r core.Role, fn string, arg any, out any) {
	e.t.Helper()
	status, payload, msg := e.invoke(e.ids[r], fn, arg)
	if status != shim.OK {
		e.t.Fatalf("%s as %s = %d %s", fn, r, status, msg)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(payload), out); err != nil {
			e.t.Fatalf("%s payload %q: %v", fn, payload, err)
		}
	}
}

// TestEveryCoreFunctionIsATransaction keeps the contract and the core in step.
func TestEveryCoreFunctionIsATransaction(t *testing.T) {
	typ := reflect.TypeOf(&Contract{})
	var names []string
	for _, f := range core.Functions() {
		names = append(names, f.Name)
		m, ok := typ.MethodByName(f.Name)
		if !ok {
			t.Errorf("core function %s has no contract method", f.Name)
			continue
		}
		if m.Type.NumIn() != 3 || m.Type.In(2).Kind() != reflect.String {
			t.Errorf("contract method %s has signature %v, want (ctx, string)", f.Name, m.Type)
		}
	}
	e := newEnv(t)
	status, payload, msg := e.invoke(e.ids[core.RoleAuditor], "org.hyperledger.fabric:GetMetadata", nil)
	if status != shim.OK {
		t.Fatalf("GetMetadata = %d %s", status, msg)
	}
	var md struct {
		Contracts map[string]struct {
			Transactions []struct{ Name string } `json:"transactions"`
		} `json:"contracts"`
	}
	if err := json.Unmarshal([]byte(payload), &md); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tr := range md.Contracts[ContractName].Transactions {
		got = append(got, tr.Name)
	}
	slices.Sort(got)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Errorf("contract transactions = %v, want the core functions %v", got, names)
	}
}

func TestContractThroughInvoke(t *testing.T) {
	e := newEnv(t)
	keyHex, err := os.ReadFile(filepath.Join("..", "..", "internal", "wire", "testdata", "key.pub.hex"))
	if err != nil {
		t.Fatal(err)
	}
	var gw core.Asset
	e.must(core.RoleAssetManager, "RegisterAsset", core.AssetRegistration{ID: "gw-s1-01", Kind: core.AssetKindGateway,
		FingerprintHash: hashOf("gw"), PublicKey: strings.TrimSpace(string(keyHex))}, &gw)
	if gw.OwnerOrg != "Org1MSP" || gw.Registered.Role != core.RoleAssetManager || !gw.Registered.Time.Equal(e.clock) ||
		!strings.Contains(gw.Registered.By, "CN=user-asset_manager") || gw.Registered.TxID != e.stub.txID {
		t.Errorf("registered gateway %+v: want owner, role, time, tx id and caller from the Fabric transaction", gw)
	}
	e.must(core.RoleService, "RegisterAsset", core.AssetRegistration{ID: "srv-s1-001.gpu0", Kind: "gpu", FingerprintHash: hashOf("g")}, nil)

	// The contract verifies the gateway's signature on evidence itself.
	envelope, err := os.ReadFile(filepath.Join("..", "..", "internal", "wire", "testdata", "firmware.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev core.Evidence
	e.must(core.RoleService, "RecordEvidence", core.EvidenceInput{Asset: "srv-s1-001.gpu0", Kind: core.EvidenceFirmware, Envelope: bytes.TrimSpace(envelope)}, &ev)
	if ev.Gateway != "gw-s1-01" || ev.Seq != 42 {
		t.Errorf("evidence = %+v, want gateway gw-s1-01 seq 42", ev)
	}
	forged := bytes.Replace(envelope, []byte("550.54.15"), []byte("999.99.99"), 1)
	status, _, msg := e.invoke(e.ids[core.RoleService], "RecordEvidence", core.EvidenceInput{Asset: "srv-s1-001.gpu0", Kind: core.EvidenceFirmware, Envelope: forged})
	if status == shim.OK || !strings.HasPrefix(msg, "[invalid] ") {
		t.Errorf("RecordEvidence(forged) = %d %q, want an [invalid] error", status, msg)
	}

	anchor := core.AnchorInput{Root: hashOf("r"), FirstEvent: 1, LastEvent: 4, FirstTime: e.clock, LastTime: e.clock, Size: 4}
	var a1, a2 core.Anchor
	e.must(core.RoleService, "SubmitAnchor", anchor, &a1)
	e.must(core.RoleService, "SubmitAnchor", anchor, &a2)
	if a1.Hash != a2.Hash || a1.Stamp != a2.Stamp {
		t.Errorf("resubmitted anchor = %+v, want the first %+v", a2, a1)
	}
	var covering core.Anchor
	e.must(core.RoleAuditor, "AnchorForEvent", core.EventQuery{Event: 3}, &covering)
	if covering.Seq != 1 {
		t.Errorf("AnchorForEvent(3) = %d, want 1", covering.Seq)
	}
	// A named chain (one per twin-service node) starts its own count and
	// is found under its name, through the stub's range reads.
	named := anchor
	named.Chain, named.Root = "node-2", hashOf("n")
	var n1, head, onChain core.Anchor
	e.must(core.RoleService, "SubmitAnchor", named, &n1)
	e.must(core.RoleAuditor, "AnchorHead", core.ChainQuery{Chain: "node-2"}, &head)
	e.must(core.RoleAuditor, "AnchorForEvent", core.EventQuery{Event: 3, Chain: "node-2"}, &onChain)
	if n1.Seq != 1 || n1.Prev != "" || head.Hash != n1.Hash || onChain.Hash != n1.Hash || n1.Hash == a1.Hash {
		t.Errorf("node-2 anchor = %+v head %s for event 3 %s, want its own chain's anchor 1", n1, head.Hash, onChain.Hash)
	}
	var hist core.AssetHistory
	e.must(core.RoleAuditor, "GetAssetHistory", core.IDQuery{ID: "srv-s1-001.gpu0"}, &hist)
	if len(hist.Changes) != 1 || len(hist.Evidence) != 1 {
		t.Errorf("history = %d changes %d evidence, want 1 and 1 (range reads through the stub)", len(hist.Changes), len(hist.Evidence))
	}

	other := anchor
	other.Root = hashOf("other")
	noRole := identity(t, "Org1MSP", "nobody", nil)
	badRole := identity(t, "Org2MSP", "eve", map[string]string{RoleAttribute: "superuser"})
	for _, tt := range []struct {
		name    string
		creator []byte
		fn      string
		arg     any
		code    string
	}{
		{"no role attribute", noRole, "GetAsset", core.IDQuery{ID: "gw-s1-01"}, "forbidden"},
		{"unknown role", badRole, "GetAsset", core.IDQuery{ID: "gw-s1-01"}, "forbidden"},
		{"role refused", e.ids[core.RoleAuditor], "SubmitAnchor", anchor, "forbidden"},
		{"other anchor, same range", e.ids[core.RoleService], "SubmitAnchor", other, "conflict"},
		{"not found", e.ids[core.RoleAuditor], "GetModel", core.IDQuery{ID: "m1"}, "not_found"},
		{"bad argument", e.ids[core.RoleAuditor], "GetModel", map[string]string{"name": "m1"}, "invalid"},
	} {
		before := len(e.stub.state)
		status, _, msg := e.invoke(tt.creator, tt.fn, tt.arg)
		if status == shim.OK || !strings.HasPrefix(msg, "["+tt.code+"] ") {
			t.Errorf("%s: %s = %d %q, want [%s]", tt.name, tt.fn, status, msg, tt.code)
		}
		if core.Code(core.ParseCodedMessage(msg)) != tt.code {
			t.Errorf("%s: ParseCodedMessage(%q) lost the code %s", tt.name, msg, tt.code)
		}
		if len(e.stub.state) != before {
			t.Errorf("%s: a failed transaction changed the state", tt.name)
		}
	}
	if status, _, _ := e.invoke(e.ids[core.RoleAuditor], "DropTables", core.NoArgs{}); status == shim.OK {
		t.Errorf("an unknown function succeeded")
	}
}

// TestEndorsersAgree runs the same proposal on two peers' states and
// compares the write sets byte for byte.
func TestEndorsersAgree(t *testing.T) {
	a, b := newEnv(t), newEnv(t)
	b.ids = a.ids // the same signed proposal reaches both peers
	reg := core.AssetRegistration{ID: "gpu-1", Kind: "gpu", FingerprintHash: hashOf("1")}
	for _, e := range []*env{a, b} {
		e.stub.begin("tx1", time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), e.ids[core.RoleAdmin], "RegisterAsset", reg)
		if resp := e.cc.Invoke(e.stub); resp.Status != shim.OK {
			t.Fatalf("RegisterAsset = %s", resp.Message)
		}
	}
	if !reflect.DeepEqual(a.stub.writes, b.stub.writes) || len(a.stub.writes) != 2 {
		t.Errorf("write sets differ or are not the asset and its history: %v vs %v", keys(a.stub.writes), keys(b.stub.writes))
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
