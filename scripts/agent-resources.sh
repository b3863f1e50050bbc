#!/usr/bin/env bash
# Measures edge-agent's memory and CPU under the load of a busy gateway:
# 8 simulated GPUs sampled at 1 Hz, a GPS at 1 Hz and 10 RFID reads/s
# (firmware-sim serial on pseudo-terminals), publishing to a real Mosquitto.
# Usage: scripts/agent-resources.sh [seconds]   (default 60)
# Prints VmRSS / VmHWM (peak) and the CPU used over the window, in % of one core.
set -euo pipefail
secs="${1:-60}"
mosq="${TWINCHAIN_MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/" ./edge-agent ./firmware-sim
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$work/mosquitto.conf"
"$mosq" -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" & pids+=($!)

"$work/firmware-sim" serial --paths-file "$work/paths.json" --gpu-socket "$work/gpus.sock" \
  --gpus 8 --gpu-interval 1s --gps-interval 1s --rfid-rate 10 2>"$work/sim.log" & pids+=($!)
for _ in $(seq 50); do [ -s "$work/paths.json" ] && break; sleep 0.1; done
python3 - "$work" "$port" <<'PY'
import json, sys
work, port = sys.argv[1], sys.argv[2]
p = json.load(open(f"{work}/paths.json"))
open(f"{work}/agent.yaml", "w").write(f"""gateway_id: gw-bench
state_dir: {work}/state
host: {{asset: srv-bench-001, rfid_tag: E2801160600002084D6B1A3F}}
mqtt: {{broker: tcp://127.0.0.1:{port}}}
rfid:
  readers:
    - {{name: em, protocol: rdm6300, port: {p['rdm6300']}, read_point: rack-door, zone: hall}}
    - {{name: uhf, protocol: uhf-line, port: {p['uhf']}, read_point: dock, zone: dock}}
gps: {{receivers: [{{name: ublox, port: {p['gps']}}}]}}
gpu: {{source: auto, sim: "{p['gpu']}", interval: 1s}}
""")
PY
"$work/edge-agent" run --config "$work/agent.yaml" 2>"$work/agent.log" & agent=$!; pids+=($agent)
sleep 5 # warm up: connect, open ports, first inventory
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
c0=$(cpu); t0=$(date +%s.%N)
sleep "$secs"
c1=$(cpu); t1=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
kill -TERM "$agent"; wait "$agent" || true
python3 - "$c0" "$c1" "$t0" "$t1" "$tck" "$rss" "$hwm" "$secs" <<'PY'
import sys
c0, c1, t0, t1, tck, rss, hwm, secs = sys.argv[1:]
cpu = (float(c1) - float(c0)) / float(tck) / (float(t1) - float(t0)) * 100
print(f"edge-agent over {secs}s (8 GPUs at 1 Hz, GPS 1 Hz, 10 RFID reads/s):")
print(f"  RSS {int(rss)/1024:.1f} MiB (peak {int(hwm)/1024:.1f} MiB), CPU {cpu:.2f}% of one core")
PY
grep -o 'msg="edge-agent stopped".*' "$work/agent.log" || true
