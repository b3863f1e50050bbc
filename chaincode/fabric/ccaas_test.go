package fabric

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"twinchain/chaincode/core"
)

// fakePeer plays the peer's side of the chaincode-as-a-service protocol
// over gRPC: it connects to the real twinchain-cc process, as a peer's ccaas
// builder would, and answers the shim's state requests from a map. It is a
// test double because no Fabric peer can run on this machine; the server,
// shim, contract API and contract under test are the real ones.
type fakePeer struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[peer.ChaincodeMessage, peer.ChaincodeMessage]
	state  map[string][]byte
	meta   map[string]string // key -> metadata key set (PUT_STATE_METADATA)
}

func (p *fakePeer) send(m *peer.ChaincodeMessage) {
	p.t.Helper()
	if err := p.stream.Send(m); err != nil {
		p.t.Fatalf("send %s: %v", m.Type, err)
	}
}

func (p *fakePeer) recv() *peer.ChaincodeMessage {
	p.t.Helper()
	m, err := p.stream.Recv()
	if err != nil {
		p.t.Fatalf("recv: %v", err)
	}
	return m
}

func marshal(t *testing.T, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proposal builds the signed proposal a client would send: the shim reads
// the creator and the timestamp from it.
func proposal(t *testing.T, txID string, ts time.Time, creator []byte) *peer.SignedProposal {
	ch := marshal(t, &common.ChannelHeader{Type: int32(common.HeaderType_ENDORSER_TRANSACTION), Timestamp: timestamppb.New(ts), ChannelId: "twinchain", TxId: txID})
	sh := marshal(t, &common.SignatureHeader{Creator: creator, Nonce: []byte(txID)})
	hdr := marshal(t, &common.Header{ChannelHeader: ch, SignatureHeader: sh})
	prop := marshal(t, &peer.Proposal{Header: hdr, Payload: marshal(t, &peer.ChaincodeProposalPayload{})})
	return &peer.SignedProposal{ProposalBytes: prop}
}

// transact runs one transaction and applies its writes if it succeeds.
func (p *fakePeer) transact(txID string, ts time.Time, creator []byte, fn string, arg any) *peer.Response {
	p.t.Helper()
	a, _ := json.Marshal(arg)
	p.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_TRANSACTION, Txid: txID, ChannelId: "twinchain",
		Payload: marshal(p.t, &peer.ChaincodeInput{Args: [][]byte{[]byte(fn), a}}), Proposal: proposal(p.t, txID, ts, creator)})
	writes := map[string][]byte{}
	for {
		m := p.recv()
		reply := &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_RESPONSE, Txid: m.Txid, ChannelId: m.ChannelId}
		switch m.Type {
		case peer.ChaincodeMessage_COMPLETED:
			var res peer.Response
			if err := proto.Unmarshal(m.Payload, &res); err != nil {
				p.t.Fatal(err)
			}
			if res.Status == 200 {
				for k, v := range writes {
					p.state[k] = v
				}
			}
			return &res
		case peer.ChaincodeMessage_GET_STATE:
			var g peer.GetState
			_ = proto.Unmarshal(m.Payload, &g)
			reply.Payload = p.state[g.Key]
		case peer.ChaincodeMessage_PUT_STATE:
			var ps peer.PutState
			_ = proto.Unmarshal(m.Payload, &ps)
			writes[ps.Key] = ps.Value
		case peer.ChaincodeMessage_GET_STATE_BY_RANGE:
			var r peer.GetStateByRange
			_ = proto.Unmarshal(m.Payload, &r)
			var keys []string
			for k := range p.state {
				if k >= r.StartKey && (r.EndKey == "" || k < r.EndKey) {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			qr := &peer.QueryResponse{Id: "q-" + m.Txid}
			for _, k := range keys {
				qr.Results = append(qr.Results, &peer.QueryResultBytes{ResultBytes: marshal(p.t, &queryresult.KV{Key: k, Value: p.state[k]})})
			}
			reply.Payload = marshal(p.t, qr)
		case peer.ChaincodeMessage_PUT_STATE_METADATA:
			var pm peer.PutStateMetadata
			_ = proto.Unmarshal(m.Payload, &pm)
			if p.meta == nil {
				p.meta = map[string]string{}
			}
			p.meta[pm.Key] = pm.GetMetadata().GetMetakey()
		case peer.ChaincodeMessage_QUERY_STATE_CLOSE:
			reply.Payload = marshal(p.t, &peer.QueryResponse{})
		default:
			p.t.Fatalf("unexpected message %s from the chaincode", m.Type)
		}
		p.send(reply)
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestChaincodeAsAService builds and starts the real twinchain-cc server
// with CHAINCODE_ID and CHAINCODE_SERVER_ADDRESS, connects to it the way a
// peer does, and runs transactions through it.
func TestChaincodeAsAService(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "twinchain-cc")
	build := exec.Command("go", "build", "-o", bin, "../cmd/twinchain-cc")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build twinchain-cc: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	const ccid = "twinchain_1.0:0123456789abcdef"
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "CHAINCODE_ID="+ccid, "CHAINCODE_SERVER_ADDRESS="+addr)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("twinchain-cc never listened on %s: %s", addr, stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling for the listener (this module cannot import twinchain's testsvc)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := peer.NewChaincodeClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{t: t, stream: stream, state: map[string][]byte{}}
	reg := p.recv()
	var id peer.ChaincodeID
	if err := proto.Unmarshal(reg.Payload, &id); err != nil || reg.Type != peer.ChaincodeMessage_REGISTER || id.Name != ccid {
		t.Fatalf("first message = %s %q, want REGISTER as %s", reg.Type, id.Name, ccid)
	}
	p.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_REGISTERED})
	p.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_READY})

	ts := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	manager := identity(t, "Org1MSP", "am", map[string]string{RoleAttribute: string(core.RoleAssetManager)})
	auditor := identity(t, "Org2MSP", "aud", map[string]string{RoleAttribute: string(core.RoleAuditor)})
	res := p.transact("tx1", ts, manager, "RegisterAsset", core.AssetRegistration{ID: "gpu-1", Kind: "gpu", FingerprintHash: hashOf("1")})
	var a core.Asset
	if res.Status != 200 || json.Unmarshal(res.Payload, &a) != nil || !a.Registered.Time.Equal(ts) || a.Registered.TxID != "tx1" || a.OwnerOrg != "Org1MSP" {
		t.Fatalf("RegisterAsset = %d %s %s, want the asset stamped with tx1 at %s", res.Status, res.Message, res.Payload, ts)
	}
	// The asset's key carries its owner's endorsement policy.
	if p.meta["asset/gpu-1"] != "VALIDATION_PARAMETER" {
		t.Errorf("RegisterAsset set key metadata %v, want a validation parameter (key-level endorsement) on asset/gpu-1", p.meta)
	}
	res = p.transact("tx2", ts.Add(time.Second), auditor, "GetAssetHistory", core.IDQuery{ID: "gpu-1"})
	var h core.AssetHistory
	if res.Status != 200 || json.Unmarshal(res.Payload, &h) != nil || len(h.Changes) != 1 || h.Asset.ID != "gpu-1" {
		t.Errorf("GetAssetHistory = %d %s %s, want one change (range query over the stream)", res.Status, res.Message, res.Payload)
	}
	res = p.transact("tx3", ts.Add(2*time.Second), auditor, "RegisterAsset", core.AssetRegistration{ID: "gpu-2", Kind: "gpu", FingerprintHash: hashOf("2")})
	if res.Status == 200 || core.Code(core.ParseCodedMessage(res.Message)) != "forbidden" {
		t.Errorf("RegisterAsset as auditor = %d %q, want a forbidden error", res.Status, res.Message)
	}
	if len(p.state) != 2 {
		t.Errorf("state has %d keys, want the asset and its first history entry: %v", len(p.state), keys(p.state))
	}
}
