#!/usr/bin/env bash
# `make run`: twin-service with everything embedded, fed by a small simulated
# fleet. Usage: scripts/run.sh BIN_DIR DATA_DIR HTTP_ADDR MQTT_ADDR
set -euo pipefail
bin="${1:-bin}" data="${2:-data}" http="${3:-127.0.0.1:8080}" mqtt="${4:-127.0.0.1:1883}"
mkdir -p "$data"

# Loopback is plaintext; any other address is HTTPS (self-signed in $data/tls/).
scheme=https
case "${http%:*}" in 127.*|localhost|"[::1]") scheme=http ;; esac

# The simulated fleet enrolls with twin-service the way real agents do
# (firmware-sim fleet -enroll: a one-time token per gateway, bound to its
# site and assets, then the gateway's request signed by its own key), with an
# API token of its own (role asset_manager). The demo (below) records
# an ML pipeline and a work order with four more (roles ml_engineer,
# ml_lead, compliance and maintenance). All are made once, random, kept in $data/demo-tokens
# (mode 0600); twin-service gets their SHA-256 in $data/run-config.yaml. A
# TWINCHAIN_CONFIG of your own wins: then the fleet's keys are seeded into
# $data/registry.json instead (the fleet's keys come from its seed), and the
# demo plays incidents only.
demo="${TWINCHAIN_DEMO:-3m}"
tokens="$data/demo-tokens"
config_args=() fleet_args=() demo_args=()
[ "$demo" = 0 ] || demo_args=(--demo "$demo")
if [ -z "${TWINCHAIN_CONFIG:-}" ]; then
  rnd() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
  for k in ml maint lead compliance fleet; do # an older data dir may lack a line
    grep -q "^$k=" "$tokens" 2>/dev/null || (umask 077; echo "$k=tc_demo_${k}_$(rnd)" >>"$tokens")
  done
  sum() { sed -n "s/^$1=//p" "$tokens" | tr -d '\n' | sha256sum | cut -d' ' -f1; }
  cat >"$data/run-config.yaml" <<EOF2
# Written by scripts/run.sh for make run's simulator and demo; remade every start.
auth:
  tokens:
    - {name: sim-fleet-enrollment, role: asset_manager, sha256: "$(sum fleet)"}
    - {name: demo-ml-pipeline, role: ml_engineer, sha256: "$(sum ml)"}
    - {name: demo-ml-lead, role: ml_lead, sha256: "$(sum lead)"}
    - {name: demo-compliance, role: compliance, sha256: "$(sum compliance)"}
    - {name: demo-maintenance, role: maintenance, sha256: "$(sum maint)"}
EOF2
  config_args=(-config "$data/run-config.yaml")
  api="$http" # a wildcard address: the fleet enrolls over loopback
  case "${http%:*}" in 0.0.0.0|""|"[::]") api="127.0.0.1:${http##*:}" ;; esac
  fleet_args=(--enroll "$scheme://$api" --enroll-tokens "$tokens")
  [ "$scheme" = http ] || fleet_args+=(--enroll-ca "$data/tls/cert.pem")
  [ "$demo" = 0 ] || demo_args+=(--demo-tokens "$tokens")
else
  "$bin/firmware-sim" fleet --registry "$data/registry.json" --registry-only
fi

pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

# The detection config names the fleet's sites and geofences (the map draws
# them) and no webhook sinks.
"$bin/twin-service" -data "$data" -http "$http" -mqtt-addr "$mqtt" "${config_args[@]}" \
  -detect-config "$(dirname "$0")/run-detect.yaml" ${TWINCHAIN_RUN_ARGS:-} &
pids+=($!)
for _ in $(seq 1 150); do
  if curl -fsSk "$scheme://$http/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then echo "run: twin-service exited" >&2; exit 1; fi
  sleep 0.2
done

# The demo: a simulated incident on the fleet's own hosts every 3 minutes
# (an XID, then a server's cooling failure), the first after 20 s, so the
# Alerts and Incidents views show detection at work, plus an ML pipeline
# (datasets, a federated training run during which the fleet swaps one of
# its GPUs, an evaluation, sign-offs, a deployment the gate refuses for that
# swap) and a work order. TWINCHAIN_DEMO=0 turns it off; TWINCHAIN_DEMO=1m plays
# one a minute.
[ "$demo" = 0 ] || [ "$scheme" != http ] || [ -n "${TWINCHAIN_CONFIG:-}" ] || demo_args+=(--demo-api "$scheme://$http") # a self-signed HTTPS service: incidents only
# The fleet takes scenario steps on $data/fleet.sock (mode 0600): `firmware-sim
# scenario FILE` plays a scenario file there, on the fleet's own gateways.
"$bin/firmware-sim" fleet --broker "tcp://$mqtt" --state "$data/fleet-state.json" -control "$data/fleet.sock" "${fleet_args[@]}" "${demo_args[@]}" &
pids+=($!)

echo
if [ "$demo" != 0 ]; then
  echo "demo: firmware-sim plays a SIMULATED incident every $demo on the fleet's own hosts (TWINCHAIN_DEMO=0 make run turns it off)"
fi
echo "twinchain is running: dashboard at $scheme://$http/   (API: $scheme://$http/api/v1/assets; Ctrl-C stops)"
echo "play a scripted incident on the fleet: $bin/firmware-sim scenario -fleet $data/fleet.sock internal/sim/scenario/testdata/scenarios/theft.yaml"
if [ -f "$data/admin-password" ]; then
  echo "sign in as admin with the password in $data/admin-password (delete the file once you have it)"
fi
echo
wait -n "${pids[@]}"
