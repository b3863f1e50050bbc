package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	"twinchain/chaincode/core"
	"twinchain/internal/detect"
	"twinchain/internal/detect/alertstore"
	"twinchain/internal/detect/detectsvc"
	"twinchain/internal/httpapi"
	"twinchain/internal/ledger/anchor"
	"twinchain/internal/twin"
	"twinchain/internal/twinstore"
)

// buildDetect opens the detection service (detectors, alerts, work orders)
// over the store's logs, with the configuration file named by
// detect_config (-detect-config), or the defaults.
func (s *service) buildDetect() error {
	cfg := detectsvc.Defaults()
	if s.cfg.DetectConfig != "" {
		var err error
		if cfg, err = detectsvc.LoadFile(s.cfg.DetectConfig); err != nil {
			return err
		}
	}
	pub, _ := s.mqtt.(alertstore.Publisher) // the embedded broker publishes alerts; an external client does not
	if err := twinstore.CheckFile(filepath.Join(s.cfg.DataDir, detectsvc.FileName)); err != nil {
		return fmt.Errorf("detection: %w", err)
	}
	var ap detect.Approvals // the run-time checks need the ledger's deployments
	if s.ledger != nil {
		ap = s.ledger.approvals
	}
	d, err := detectsvc.Open(s.cfg.DataDir, cfg, detectsvc.Deps{
		Approvals: ap,
		Logs:      s.store,
		Source:    s.in,
		Known:     s.reg,
		Custody:   s.in, // quarantine by policy: a custody_changed event by "detect"
		Events:    s.in, // alert_raised/acknowledged/resolved events, anchored with the log
		MQTT:      pub,
		Log:       s.log,
	})
	if err != nil {
		return fmt.Errorf("detection: %w", err)
	}
	s.detect = d
	for id, site := range cfg.Detect.Sites { // the map's geofences (GET /api/v1/sites)
		s.sites = append(s.sites, httpapi.Site{ID: id, Polygon: site.Geofence})
	}
	s.in.SetAnnotator(d.Annotate) // change events note the work order that covers them
	if s.ledger != nil {
		// A substitution in transit the ledger recorded is an alert like
		// the detectors' (anchored, in the inbox and incidents, notified).
		eng := d.Engine()
		s.ledger.anchorer.SetSubstitutionAlert(func(sub anchor.Substitution) error {
			_, err := eng.Raise(context.Background(), substitutionFinding(sub))
			return err
		})
	}
	return nil
}

// substitutionFinding is the critical substitution alert for an asset
// received with another fingerprint than its custody was transferred with:
// both fingerprints, the identity observed, the event and gateway-signed
// message that reported it, and where the ledger recorded it.
func substitutionFinding(sub anchor.Substitution) detect.Finding {
	v := map[string]string{
		"ledger_fingerprint":   sub.LedgerFingerprint,
		"observed_fingerprint": sub.ObservedFingerprint,
		"ledger_record":        "asset/" + sub.Asset + " history: " + string(core.ChangeSubstitution) + ", status quarantined",
	}
	put := func(k, val string) {
		if val != "" {
			v[k] = val
		}
	}
	put("registered_by", sub.Registrar)
	put("observed_uuid", sub.Observed.UUID)
	put("observed_serial", sub.Observed.Serial)
	put("observed_board_part", sub.Observed.BoardPart)
	put("observed_rfid_tag", sub.Observed.RFIDTag)
	put("fabric_tx_id", sub.Receipt.TxID)
	if sub.Receipt.TxID != "" {
		v["fabric_block"] = strconv.FormatUint(sub.Receipt.Block, 10)
	}
	f := detect.Finding{Type: detect.TypeSubstitution, Asset: sub.Asset, Site: sub.Site, Host: sub.Observed.Hostname, Rack: sub.Observed.Rack,
		Severity: detect.Critical, Time: sub.Time,
		Summary: fmt.Sprintf("substitution in transit: %s arrived with fingerprint %.12s…, not the %.12s… its custody was transferred with (registered by %s); quarantined on the ledger",
			sub.Asset, sub.ObservedFingerprint, sub.LedgerFingerprint, sub.Registrar),
		Evidence: detect.Evidence{Values: v}}
	if e := sub.Event; e != nil {
		f.Evidence.Events = []twin.Event{*e}
		if e.Source.Gateway != "" {
			f.Evidence.Messages = []detect.MessageRef{{Gateway: e.Source.Gateway, Seq: e.Source.Seq, Time: e.Time}}
		}
	}
	return f
}
