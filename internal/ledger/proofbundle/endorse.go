package proofbundle

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// LastConfigIndex is the number of the channel's config block in force
// when block raw was cut (the orderer's block metadata).
func LastConfigIndex(raw []byte) (uint64, error) {
	var b common.Block
	if err := proto.Unmarshal(raw, &b); err != nil {
		return 0, fmt.Errorf("fabric block: %w", err)
	}
	md := b.GetMetadata().GetMetadata()
	if len(md) <= int(common.BlockMetadataIndex_SIGNATURES) {
		return 0, errors.New("fabric block has no orderer metadata")
	}
	var m common.Metadata
	var om common.OrdererBlockMetadata
	if err := proto.Unmarshal(md[common.BlockMetadataIndex_SIGNATURES], &m); err != nil {
		return 0, fmt.Errorf("fabric block metadata: %w", err)
	}
	if err := proto.Unmarshal(m.GetValue(), &om); err != nil {
		return 0, fmt.Errorf("fabric block metadata: %w", err)
	}
	return om.GetLastConfig().GetIndex(), nil
}

// OrgCA is one application organisation of a channel config: its MSP id
// and root CA certificates.
type OrgCA struct {
	MSP   string
	Roots []*x509.Certificate
}

// ChannelOrgs reads the application organisations and their root CA
// certificates from a channel config block.
func ChannelOrgs(cfgBlock []byte) ([]OrgCA, error) {
	var b common.Block
	var env common.Envelope
	var pl common.Payload
	var ce common.ConfigEnvelope
	if err := proto.Unmarshal(cfgBlock, &b); err != nil || len(b.GetData().GetData()) != 1 {
		return nil, fmt.Errorf("fabric config block: not a block with one transaction (%v)", err)
	}
	if err := proto.Unmarshal(b.GetData().GetData()[0], &env); err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(env.GetPayload(), &pl); err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(pl.GetData(), &ce); err != nil {
		return nil, fmt.Errorf("fabric config block %d: %w", b.GetHeader().GetNumber(), err)
	}
	app := ce.GetConfig().GetChannelGroup().GetGroups()["Application"]
	if app == nil {
		return nil, fmt.Errorf("fabric config block %d has no application group", b.GetHeader().GetNumber())
	}
	var out []OrgCA
	for name, g := range app.GetGroups() {
		v := g.GetValues()["MSP"]
		var mc msp.MSPConfig
		var fc msp.FabricMSPConfig
		if v == nil || proto.Unmarshal(v.GetValue(), &mc) != nil || proto.Unmarshal(mc.GetConfig(), &fc) != nil {
			return nil, fmt.Errorf("fabric config: org %s has no readable MSP", name)
		}
		o := OrgCA{MSP: fc.GetName()}
		for _, p := range fc.GetRootCerts() {
			c, err := parsePEMCert(p)
			if err != nil {
				return nil, fmt.Errorf("fabric config: org %s root CA: %w", name, err)
			}
			o.Roots = append(o.Roots, c)
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MSP < out[j].MSP })
	return out, nil
}

func parsePEMCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not PEM")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// CheckEndorsements checks offline the endorsements of transaction txID in
// block raw against the org CAs of the channel config block cfgBlock: each
// endorser's certificate is issued by a root CA its MSP has in the config,
// and its ECDSA signature over the proposal response payload and the
// endorser is valid. It returns the MSP ids that endorsed, each once.
func CheckEndorsements(raw, cfgBlock []byte, txID string) ([]string, error) {
	orgs, err := ChannelOrgs(cfgBlock)
	if err != nil {
		return nil, err
	}
	roots := map[string]*x509.CertPool{}
	for _, o := range orgs {
		p := x509.NewCertPool()
		for _, c := range o.Roots {
			p.AddCert(c)
		}
		roots[o.MSP] = p
	}
	var b common.Block
	if err := proto.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("fabric block: %w", err)
	}
	for _, envBytes := range b.GetData().GetData() {
		var env common.Envelope
		var pl common.Payload
		var ch common.ChannelHeader
		var tx peer.Transaction
		if proto.Unmarshal(envBytes, &env) != nil || proto.Unmarshal(env.GetPayload(), &pl) != nil ||
			proto.Unmarshal(pl.GetHeader().GetChannelHeader(), &ch) != nil || ch.GetTxId() != txID {
			continue
		}
		if err := proto.Unmarshal(pl.GetData(), &tx); err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		var msps []string
		for _, act := range tx.GetActions() {
			var cp peer.ChaincodeActionPayload
			if err := proto.Unmarshal(act.GetPayload(), &cp); err != nil {
				return nil, err
			}
			prp := cp.GetAction().GetProposalResponsePayload()
			for _, e := range cp.GetAction().GetEndorsements() {
				var id msp.SerializedIdentity
				if err := proto.Unmarshal(e.GetEndorser(), &id); err != nil {
					return nil, fmt.Errorf("endorser: %w", err)
				}
				pool := roots[id.GetMspid()]
				if pool == nil {
					return nil, fmt.Errorf("endorser of %s is of %s, not an organisation of the channel config", short(txID), id.GetMspid())
				}
				cert, err := parsePEMCert(id.GetIdBytes())
				if err != nil {
					return nil, fmt.Errorf("endorser certificate of %s: %w", id.GetMspid(), err)
				}
				if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: cert.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
					return nil, fmt.Errorf("endorser %s of %s is not issued by its CA in the channel config: %w", cert.Subject.CommonName, id.GetMspid(), err)
				}
				pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
				digest := sha256.Sum256(append(append([]byte{}, prp...), e.GetEndorser()...))
				if !ok || !ecdsa.VerifyASN1(pub, digest[:], e.GetSignature()) {
					return nil, fmt.Errorf("endorsement by %s of %s: the signature does not verify", cert.Subject.CommonName, id.GetMspid())
				}
				if !seen[id.GetMspid()] {
					seen[id.GetMspid()] = true
					msps = append(msps, id.GetMspid())
				}
			}
		}
		if len(msps) == 0 {
			return nil, fmt.Errorf("transaction %s has no endorsements", short(txID))
		}
		return msps, nil
	}
	return nil, fmt.Errorf("fabric block does not hold transaction %s", short(txID))
}

// CAFingerprints names each org's root CAs by SHA-256 of the certificate,
// for an auditor to compare with the CAs they know.
func CAFingerprints(orgs []OrgCA) string {
	s := ""
	for _, o := range orgs {
		for _, c := range o.Roots {
			sum := sha256.Sum256(c.Raw)
			s += fmt.Sprintf(" %s=%s", o.MSP, hex.EncodeToString(sum[:8]))
		}
	}
	return s
}
