package main

import (
	"fmt"
	"path/filepath"

	"twinchain/internal/detect"
	"twinchain/internal/detect/alertstore"
	"twinchain/internal/detect/detectsvc"
	"twinchain/internal/httpapi"
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
	return nil
}
