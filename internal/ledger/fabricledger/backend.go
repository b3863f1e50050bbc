package fabricledger

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/hash"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"twinchain/chaincode/core"
	"twinchain/internal/ledger"
)

// Config says how to reach the peer gateway and who the service is.
type Config struct {
	PeerEndpoint     string `yaml:"peer_endpoint"`      // host:port of a peer with the gateway service
	PeerHostOverride string `yaml:"peer_host_override"` // TLS server name, e.g. peer0.org1.example.com
	TLSCACert        string `yaml:"tls_ca_cert"`        // PEM of the peer's TLS CA
	Channel          string `yaml:"channel"`
	Chaincode        string `yaml:"chaincode"` // default "twinchain"
	MSPID            string `yaml:"msp_id"`
	CertFile         string `yaml:"cert_file"` // the service identity's enrolled certificate (twin.role=service)
	KeyFile          string `yaml:"key_file"`  // and its private key
	// IdentityDir, when set, holds <caller id>.<role>/{cert.pem,key.pem} for
	// every other caller (enrolled by internal/ledger/fabricca with the role in
	// twin.role), so the chaincode sees the real caller; without it every
	// call is signed by the service identity.
	IdentityDir string        `yaml:"identity_dir"`
	Timeout     time.Duration `yaml:"timeout"` // per call; default 30s
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var missing []string
	for _, f := range []struct{ name, v string }{{"peer_endpoint", c.PeerEndpoint}, {"tls_ca_cert", c.TLSCACert},
		{"channel", c.Channel}, {"msp_id", c.MSPID}, {"cert_file", c.CertFile}, {"key_file", c.KeyFile}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("fabric ledger config: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Backend is a ledger.Backend over a Fabric peer's gateway service.
type Backend struct {
	cfg     Config
	conn    *grpc.ClientConn
	service *client.Gateway

	mu    sync.Mutex
	users map[string]*client.Gateway // caller id + role -> gateway signed by that caller's identity
}

// Dial connects to the peer. gRPC connects lazily, so an unreachable peer
// shows as ErrUnavailable on the first call, not here.
func Dial(cfg Config) (*Backend, error) {
	if cfg.Chaincode == "" {
		cfg.Chaincode = "twinchain"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(cfg.TLSCACert)
	if err != nil {
		return nil, fmt.Errorf("fabric: peer tls ca: %w", err)
	}
	ca, err := identity.CertificateFromPEM(pem)
	if err != nil {
		return nil, fmt.Errorf("fabric: peer tls ca: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	conn, err := grpc.NewClient(cfg.PeerEndpoint, grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, cfg.PeerHostOverride)))
	if err != nil {
		return nil, fmt.Errorf("fabric: peer %s: %w", cfg.PeerEndpoint, err)
	}
	b := &Backend{cfg: cfg, conn: conn, users: map[string]*client.Gateway{}}
	if b.service, err = b.connect(cfg.CertFile, cfg.KeyFile); err != nil {
		_ = b.Close() // the error being returned says more
		return nil, fmt.Errorf("fabric: %w", err)
	}
	return b, nil
}

// connect opens a gateway signed by the identity in certFile and keyFile.
func (b *Backend) connect(certFile, keyFile string) (*client.Gateway, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	cert, err := identity.CertificateFromPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	xid, err := identity.NewX509Identity(b.cfg.MSPID, cert)
	if err != nil {
		return nil, err
	}
	key, err := identity.PrivateKeyFromPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	sign, err := identity.NewPrivateKeySign(key)
	if err != nil {
		return nil, err
	}
	return client.Connect(xid, client.WithSign(sign), client.WithHash(hash.SHA256), client.WithClientConnection(b.conn),
		client.WithEvaluateTimeout(b.cfg.Timeout), client.WithEndorseTimeout(b.cfg.Timeout),
		client.WithSubmitTimeout(b.cfg.Timeout), client.WithCommitStatusTimeout(b.cfg.Timeout))
}

// gateway picks the identity that signs for caller: the service identity for
// the service (or for everyone without an identity directory), otherwise
// the caller's own enrolled identity.
func (b *Backend) gateway(caller core.Caller) (*client.Gateway, error) {
	if b.cfg.IdentityDir == "" || caller.Role == core.RoleService {
		return b.service, nil
	}
	if !caller.Role.Valid() || !core.ValidID(caller.ID) {
		return nil, fmt.Errorf("caller %q role %q: %w", caller.ID, caller.Role, ledger.ErrForbidden)
	}
	name := caller.ID + "." + string(caller.Role)
	b.mu.Lock()
	defer b.mu.Unlock()
	if gw, ok := b.users[name]; ok {
		return gw, nil
	}
	dir := filepath.Join(b.cfg.IdentityDir, name)
	gw, err := b.connect(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("caller %s has no enrolled Fabric identity in %s: %w", name, b.cfg.IdentityDir, ledger.ErrForbidden)
	}
	if err != nil {
		return nil, err
	}
	b.users[name] = gw
	return gw, nil
}

// Submit endorses, orders and commits a core function through the peer.
func (b *Backend) Submit(ctx context.Context, caller core.Caller, fn string, arg []byte) ([]byte, error) {
	gw, err := b.gateway(caller)
	if err != nil {
		return nil, err
	}
	opts := []client.ProposalOption{client.WithArguments(string(arg))}
	if t := ledger.TransientFrom(ctx); t != nil {
		// Private data: in the proposal's transient map, endorsed by this
		// organisation's peers only (the collection's own).
		opts = append(opts, client.WithTransient(t), client.WithEndorsingOrganizations(b.cfg.MSPID))
	}
	res, commit, err := gw.GetNetwork(b.cfg.Channel).GetContract(b.cfg.Chaincode).SubmitAsyncWithContext(ctx, fn, opts...)
	if err != nil {
		return nil, mapError(fn, err)
	}
	st, err := commit.StatusWithContext(ctx)
	if err != nil {
		return nil, mapError(fn, err)
	}
	if !st.Successful {
		return nil, fmt.Errorf("%s: transaction %s did not commit (%v): %w", fn, st.TransactionID, st.Code, ledger.ErrConflict)
	}
	if r := ledger.ReceiptFrom(ctx); r != nil {
		*r = ledger.Receipt{TxID: st.TransactionID, Block: st.BlockNumber, Channel: b.cfg.Channel, Chaincode: b.cfg.Chaincode}
	}
	return res, nil
}

// Evaluate runs a reading core function on the peer.
func (b *Backend) Evaluate(ctx context.Context, caller core.Caller, fn string, arg []byte) ([]byte, error) {
	gw, err := b.gateway(caller)
	if err != nil {
		return nil, err
	}
	res, err := gw.GetNetwork(b.cfg.Channel).GetContract(b.cfg.Chaincode).EvaluateWithContext(ctx, fn, client.WithArguments(string(arg)))
	return res, mapError(fn, err)
}

// Height is the channel's block height as the peer reports it (qscc
// GetChainInfo, read with the service identity): the number of blocks, so
// the newest is Height-1.
func (b *Backend) Height(ctx context.Context) (uint64, error) {
	res, err := b.service.GetNetwork(b.cfg.Channel).GetContract("qscc").EvaluateWithContext(ctx, "GetChainInfo", client.WithArguments(b.cfg.Channel))
	if err != nil {
		return 0, mapError("GetChainInfo", err)
	}
	var info common.BlockchainInfo
	if err := proto.Unmarshal(res, &info); err != nil {
		return 0, fmt.Errorf("GetChainInfo: %w", err)
	}
	return info.GetHeight(), nil
}

// Block is block number n of the channel, its protobuf bytes as the peer
// keeps it (qscc GetBlockByNumber, read with the service identity).
func (b *Backend) Block(ctx context.Context, n uint64) ([]byte, error) {
	res, err := b.service.GetNetwork(b.cfg.Channel).GetContract("qscc").EvaluateWithContext(ctx, "GetBlockByNumber",
		client.WithArguments(b.cfg.Channel, strconv.FormatUint(n, 10)))
	return res, mapError("GetBlockByNumber", err)
}

// BlockOfTx is the block holding transaction txID, its protobuf bytes (qscc
// GetBlockByTxID, read with the service identity).
func (b *Backend) BlockOfTx(ctx context.Context, txID string) ([]byte, error) {
	res, err := b.service.GetNetwork(b.cfg.Channel).GetContract("qscc").EvaluateWithContext(ctx, "GetBlockByTxID",
		client.WithArguments(b.cfg.Channel, txID))
	return res, mapError("GetBlockByTxID", err)
}

// Channel and Chaincode name where the backend's transactions go.
func (b *Backend) Channel() string { return b.cfg.Channel }

// Chaincode is the chaincode's name (its namespace in the channel's state).
func (b *Backend) Chaincode() string { return b.cfg.Chaincode }

// mapError recovers the core's sentinel from a chaincode error (the contract
// sends core.CodedMessage text, which the peers pass on in the gRPC status
// and its details) and marks transport failures unavailable.
func mapError(fn string, err error) error {
	if err == nil {
		return nil
	}
	msgs := []string{err.Error()}
	st, isStatus := status.FromError(err)
	if isStatus {
		for _, d := range st.Details() {
			if m, ok := d.(interface{ GetMessage() string }); ok {
				msgs = append(msgs, m.GetMessage())
			}
		}
	}
	for _, m := range msgs {
		if coded := core.ParseCodedMessage(m); core.Code(coded) != "internal" {
			return fmt.Errorf("%s: %w", fn, coded)
		}
	}
	if isStatus {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.ResourceExhausted:
			return fmt.Errorf("%s: %v: %w", fn, err, ledger.ErrUnavailable)
		}
	}
	var cerr *client.CommitError
	if errors.As(err, &cerr) {
		return fmt.Errorf("%s: transaction %s did not commit (%v): %w", fn, cerr.TransactionID, cerr.Code, ledger.ErrConflict)
	}
	return fmt.Errorf("%s: %w", fn, err)
}

// Close closes every gateway and the connection.
func (b *Backend) Close() error {
	var errs []error
	b.mu.Lock()
	for _, gw := range b.users {
		errs = append(errs, gw.Close())
	}
	b.mu.Unlock()
	if b.service != nil {
		errs = append(errs, b.service.Close())
	}
	return errors.Join(append(errs, b.conn.Close())...)
}

var _ ledger.Backend = (*Backend)(nil)
