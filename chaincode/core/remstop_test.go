package core

import (
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"
)

// workloadsBodyOf is a workloads body listing gpu with processes serving
// the given artifacts (hex hashes; "" is a process no model matched).
func workloadsBodyOf(gpu string, artifacts ...string) string {
	procs := ""
	for i, a := range artifacts {
		if i > 0 {
			procs += ","
		}
		if a == "" {
			procs += fmt.Sprintf(`{"pid":%d,"name":"python3","mem_bytes":1,"skip":"no_model"}`, 100+i)
		} else {
			procs += fmt.Sprintf(`{"pid":%d,"name":"tritonserver","mem_bytes":1,"model":"m","artifact":"sha256:%s"}`, 100+i, a)
		}
	}
	return fmt.Sprintf(`{"host":%q,"gpus":[{"asset":%q,"processes":[%s]}]}`, server, gpu, procs)
}

// TestRemediationStop: a stop is refused before the remediation executed,
// for a GPU no paused deployment targets, for a message that still shows
// the model (or a model whose artifact is unread), for a message older than
// the execution and for a bad signature; a signed report of the GPU idle is
// recorded once, and the record checks offline.
func TestRemediationStop(t *testing.T) {
	l := mlWorld(t)
	l.approveAll("m1")
	if d := must(l, RoleMLEngineer, func(tx *Tx) (Deployment, error) { return RequestDeployment(tx, deployment("d1", "m1", gpu0)) }); !d.Allowed {
		t.Fatalf("d1 refused: %+v", d.Reasons)
	}
	must(l, RoleService, func(tx *Tx) (Remediation, error) {
		return ProposeRemediation(tx, RemediationInput{ID: "rem-s", Model: "m1", Reason: "xid 79", Steps: []RemediationStep{{Action: ActionPause, Deployment: "d1"}}})
	})
	stop := func(r Role, asset string, env []byte) (Remediation, error) {
		return do(l, r, func(tx *Tx) (Remediation, error) {
			return RecordRemediationStop(tx, RemediationStopInput{Remediation: "rem-s", Asset: asset, Envelope: env})
		})
	}
	key := gatewayKey()
	idle := func(seq uint64, at time.Time) []byte {
		return seal(t, key, gw, seq, at, "workloads", workloadsBodyOf(gpu0, ""))
	}
	_, err := stop(RoleService, gpu0, idle(1, l.now.Add(time.Hour)))
	wantErr(t, "stop before the execution", err, ErrConflict)
	for _, r := range []Role{RoleMLLead, RoleSecurity, RoleCompliance} {
		must(l, r, func(tx *Tx) (Remediation, error) {
			return DecideRemediation(tx, RemediationApproval{ID: "rem-s", Decision: Approve})
		})
	}
	ex := must(l, RoleService, func(tx *Tx) (Remediation, error) { return ExecuteRemediation(tx, "rem-s") })
	after := ex.Executed.Time.Add(time.Minute)

	_, err = stop(RoleAuditor, gpu0, idle(2, after))
	wantErr(t, "stop as auditor", err, ErrForbidden)
	_, err = stop(RoleService, gpu1, seal(t, key, gw, 3, after, "workloads", workloadsBodyOf(gpu1)))
	wantErr(t, "stop on a GPU no paused deployment targets", err, ErrInvalid)
	_, err = stop(RoleService, gpu0, seal(t, key, gw, 4, after, "workloads", workloadsBodyOf(gpu0, "", hashOf("m1"))))
	wantErr(t, "stop with the model still running", err, ErrInvalid)
	unread := seal(t, key, gw, 5, after, "workloads", fmt.Sprintf(`{"host":%q,"gpus":[{"asset":%q,"processes":[{"pid":7,"name":"t","mem_bytes":1,"model":"m1","skip":"model_unread"}]}]}`, server, gpu0))
	_, err = stop(RoleService, gpu0, unread)
	wantErr(t, "stop with a model whose artifact is unread", err, ErrInvalid)
	_, err = stop(RoleService, gpu0, seal(t, key, gw, 6, after, "workloads", workloadsBodyOf(gpu1)))
	wantErr(t, "stop by a message not listing the GPU", err, ErrInvalid)
	_, err = stop(RoleService, gpu0, seal(t, key, gw, 7, after, "telemetry", telemetry(gpu0, 0, 0, false)))
	wantErr(t, "stop by a telemetry message", err, ErrInvalid)
	_, err = stop(RoleService, gpu0, idle(8, ex.Executed.Time.Add(-time.Minute)))
	wantErr(t, "stop by a report older than the execution", err, ErrInvalid)
	other := ed25519.NewKeyFromSeed(make([]byte, 32))
	_, err = stop(RoleService, gpu0, seal(t, other, gw, 9, after, "workloads", workloadsBodyOf(gpu0, "")))
	wantErr(t, "stop signed by another key", err, ErrInvalid)
	if r := must(l, RoleAuditor, func(tx *Tx) (Remediation, error) { return GetRemediation(tx, "rem-s") }); len(r.Stops) != 0 {
		t.Fatalf("refused stops were recorded: %+v", r.Stops)
	}

	env := seal(t, key, gw, 10, after, "workloads", workloadsBodyOf(gpu0, "", hashOf("m0")))
	r, err := stop(RoleService, gpu0, env)
	if err != nil || len(r.Stops) != 1 {
		t.Fatalf("stop = %+v, %v; want one stop", r.Stops, err)
	}
	s := r.Stops[0]
	if s.Asset != gpu0 || s.Gateway != gw || s.Seq != 10 || s.ModelHash != hashOf("m1") || fmt.Sprint(s.Deployments) != "[d1]" || s.GatewayKey != pubHex(key) {
		t.Errorf("stop = %+v, want gpu0 by %s/10, d1's model, the gateway's key", s, gw)
	}
	if err := CheckRemediationStop(&s); err != nil {
		t.Errorf("CheckRemediationStop(recorded) = %v, want nil", err)
	}
	before := l.st.dump()
	again, err := stop(RoleService, gpu0, idle(11, after.Add(time.Minute)))
	if err != nil || len(again.Stops) != 1 || again.Stops[0].Seq != 10 || l.st.dump() != before {
		t.Errorf("second stop on gpu0 = %+v, %v; want the first kept and nothing written", again.Stops, err)
	}
	// An edited copy fails the offline check.
	for name, edit := range map[string]func(*RemediationStop){
		"seq":      func(s *RemediationStop) { s.Seq = 11 },
		"model":    func(s *RemediationStop) { s.ModelHash = hashOf("m0") },
		"envelope": func(s *RemediationStop) { s.Envelope = idle(12, after) },
		"key":      func(s *RemediationStop) { s.GatewayKey = pubHex(other) },
	} {
		c := s
		edit(&c)
		if err := CheckRemediationStop(&c); err == nil {
			t.Errorf("CheckRemediationStop(%s edited) = nil, want an error", name)
		}
	}
}
