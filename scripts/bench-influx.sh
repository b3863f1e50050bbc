#!/usr/bin/env bash
# `make bench-influx`: twin-service's InfluxDB backend against Telegraf, the
# same load through the same Mosquitto into the same influxd, one after the
# other (issue 15; docs/performance.md, "Against Telegraf").
# Usage: scripts/bench-influx.sh BIN_DIR RATE GATEWAYS SECONDS
#
# One influxd 1.8 (TWINCHAIN_INFLUXD, else ~/.cache/twinchain/bin/influxd:
# scripts/test-deps.sh builds it) for the whole run, a database per
# consumer run. For each SAMPLES value (sampling instants per message,
# default "1 10") and each consumer (twin-service with the influxdb
# telemetry backend and Mosquitto as its external broker, then Telegraf
# 1.36.4 with mqtt_consumer, json_v2 and outputs.influxdb_v2; built from
# the Go module proxy into ~/.cache/twinchain/bin on first use):
#   1. a fresh Mosquitto; the consumer starts, subscribes (QoS 1, a
#      persistent session) and is then stopped with SIGSTOP;
#   2. firmware-sim load publishes RATE host samples/s (RATE/SAMPLES
#      messages/s, 8 GPUs each) from GATEWAYS gateways for SECONDS into
#      Mosquitto, which queues them for the stopped consumer;
#   3. SIGCONT: the consumer drains the backlog into influxd. Its points/s
#      is the points stored over the time from SIGCONT to the last one
#      stored, its CPU per point is its utime+stime over that time
#      (/proc/PID/stat), lost = points Mosquitto acknowledged - points in
#      influxd (count(temp_c) in measurement gpu).
# SERVICE_BIN runs other builds of twin-service, each in turn before
# Telegraf (a space-separated list: a before/after comparison in one run);
# PROFILE=1 writes each one's CPU profile and prints its top 25.
# Draining a backlog measures each consumer's capacity without the load
# generator on the same 2 cores, and with the same bytes waiting for both.
# Keep the publishing phase under ~40 s (RATE/SAMPLES x SECONDS messages
# are pre-signed first): Mosquitto drops a stopped client after 1.5 x its
# keep-alive (twin-service 30 s); it then reconnects to its session, so
# nothing is lost, but its drain starts later.
set -euo pipefail
bin="${1:-bin}" rate="${2:-3000}" gateways="${3:-500}" seconds="${4:-15}"
samples_list="${SAMPLES:-1 10}" gpus=8
cache="${TWINCHAIN_CACHE:-$HOME/.cache/twinchain}"
influxd="${TWINCHAIN_INFLUXD:-$cache/bin/influxd}"
mosquitto="${TWINCHAIN_MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"
telegraf_version=1.36.4
telegraf="${TWINCHAIN_TELEGRAF:-$cache/bin/telegraf-$telegraf_version}"
mqtt="${BENCH_MQTT:-127.0.0.1:18840}" http="${BENCH_HTTP:-127.0.0.1:18081}"
influx="${BENCH_INFLUX:-127.0.0.1:18086}" influx_rpc="${BENCH_INFLUX_RPC:-127.0.0.1:18088}"
stall="${STALL_SECONDS:-30}" drain_timeout="${DRAIN_TIMEOUT:-600}"
dir="${BENCH_DIR:-$(mktemp -d /tmp/bench-influx.XXXXXX)}"
mkdir -p "$dir"
out="$dir/results"
: >"$out"
tick=$(getconf CLK_TCK)

say() { echo "bench-influx: $*"; }
fail() { echo "bench-influx: $*" >&2; exit 1; }

for b in "$influxd" "$mosquitto" "$bin/twin-service" "$bin/firmware-sim"; do
  [ -x "$b" ] || fail "$b is missing (influxd and mosquitto: scripts/test-deps.sh; the rest: make build)"
done

# Telegraf with only the plugins used here (its custom build tags), built
# once from the Go module proxy in a throwaway module.
if [ ! -x "$telegraf" ]; then
  say "building Telegraf $telegraf_version (mqtt_consumer, json_v2, influxdb_v2) into $telegraf (minutes, once)"
  tmp=$(mktemp -d)
  (cd "$tmp" && GOBIN="$tmp/bin" GOFLAGS=-mod=mod go install \
    -tags "custom,inputs.mqtt_consumer,parsers.json_v2,outputs.influxdb_v2" \
    -ldflags "-X github.com/influxdata/telegraf/internal.Version=$telegraf_version" \
    "github.com/influxdata/telegraf/cmd/telegraf@v$telegraf_version")
  mkdir -p "$(dirname "$telegraf")" && mv "$tmp/bin/telegraf" "$telegraf" && rm -rf "$tmp"
fi

# Every process started here and still running is in pids; stop ends one
# (SIGCONT first: it may be stopped), bounded: SIGTERM, SIGKILL after 20 s.
pids=()
stop() {
  local pid=$1 p rest=()
  for p in "${pids[@]}"; do [ "$p" = "$pid" ] || rest+=("$p"); done
  pids=("${rest[@]}")
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() { while [ ${#pids[@]} -gt 0 ]; do stop "${pids[0]}"; done; }
trap cleanup EXIT

# wait_for SECONDS WHAT PID COMMAND...: run COMMAND every 0.2 s until it
# succeeds; fail, saying WHAT, after SECONDS or when PID exits.
wait_for() {
  local limit=$1 what=$2 pid=$3
  shift 3
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || fail "$what: the process exited (logs in $dir)"
    [ "$SECONDS" -lt "$deadline" ] || fail "$what: not after ${limit}s (logs in $dir)"
    sleep 0.2
  done
}
tcp_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# influxql DB QUERY prints influxd's JSON answer.
influxql() { curl -fsS --max-time 30 "http://$influx/query" --data-urlencode "db=$1" --data-urlencode "q=$2"; }
# count DB: points in measurement gpu (0 before the first).
count() {
  local n
  n=$(influxql "$1" 'SELECT count(temp_c) FROM gpu' | sed -n 's/.*"values":\[\["[^"]*",\([0-9]*\)\]\].*/\1/p')
  echo "${n:-0}"
}
# cpu_ticks PID: its user + system CPU time so far, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

mkdir -p "$dir/influxd"
cat >"$dir/influxd/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "$influx_rpc"
[meta]
  dir = "$dir/influxd/meta"
  logging-enabled = false
[data]
  dir = "$dir/influxd/data"
  wal-dir = "$dir/influxd/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  enabled = true
  bind-address = "$influx"
  log-enabled = false
  flux-enabled = true
  pprof-enabled = false
[logging]
  level = "error"
  suppress-logo = true
EOF
"$influxd" run -config "$dir/influxd/influxdb.conf" 2>"$dir/influxd.log" >/dev/null &
influxd_pid=$!
pids+=("$influxd_pid")
wait_for 60 "influxd answering http://$influx/ping" "$influxd_pid" curl -fsS --max-time 2 "http://$influx/ping"

"$bin/firmware-sim" load -gateways "$gateways" -gpus "$gpus" -registry "$dir/registry.json" -registry-only
say "$gateways gateways, $rate host samples/s ($gpus GPUs each) for ${seconds}s per run, SAMPLES=\"$samples_list\"; load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; work in $dir"

# start_mosquitto: a fresh broker for each run (no session or backlog of
# the previous consumer), queueing without limit for a stopped subscriber.
start_mosquitto() {
  cat >"$dir/mosquitto.conf" <<EOF
listener ${mqtt##*:} ${mqtt%:*}
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 1000
log_dest stderr
log_type error
log_type warning
EOF
  "$mosquitto" -c "$dir/mosquitto.conf" 2>>"$dir/mosquitto.log" &
  mosq_pid=$!
  pids+=("$mosq_pid")
  wait_for 10 "mosquitto listening on $mqtt" "$mosq_pid" tcp_open "$mqtt"
}

# start_twin_service DB: $svc_bin, make run's service (detectors, file ledger, fsync
# on) with Mosquitto as its external broker and influxd as its telemetry
# store; ready once its subscription receives its own probe.
start_twin_service() {
  local db=$1 data="$dir/data-$1"
  rm -rf "$data" && mkdir -p "$data" && cp "$dir/registry.json" "$data/registry.json"
  local profile=()
  if [ "${PROFILE:-0}" = 1 ]; then profile=(-cpu-profile "$dir/$db.pprof"); fi
  "$svc_bin" -data "$data" -http "$http" -log-level warn "${profile[@]}" \
    -mqtt-mode external -mqtt-url "tcp://$mqtt" -mqtt-username twin-service@bench \
    -telemetry-backend influxdb -telemetry-url "http://$influx" -telemetry-bucket "$db" \
    -detect-config "$(dirname "$0")/run-detect.yaml" 2>"$dir/$db.log" >/dev/null &
  consumer=$!
  pids+=("$consumer")
  wait_for 120 "twin-service ready (http://$http/readyz)" "$consumer" curl -fsS --max-time 2 "http://$http/readyz"
}

# start_telegraf DB SAMPLES: the same fields, tags asset, gateway (from the
# topic) and kind, each sample's own time. json_v2 needs a section per
# sample index: one object over every sample would lose each sample's
# time. Batches as twin-service's (5,000 points, flushed every second), a
# buffer that drops nothing, Mosquitto's in-flight window undelivered.
start_telegraf() {
  local db=$1 samples=$2 j
  {
    cat <<EOF
[agent]
  interval = "10s"
  flush_interval = "1s"
  metric_batch_size = 5000
  metric_buffer_limit = 10000000
  omit_hostname = true
[[outputs.influxdb_v2]]
  urls = ["http://$influx"]
  token = ""
  organization = ""
  bucket = "$db"
[[inputs.mqtt_consumer]]
  servers = ["tcp://$mqtt"]
  topics = ["twinchain/v1/gw/+/telemetry"]
  qos = 1
  persistent_session = true
  client_id = "telegraf-bench"
  max_undelivered_messages = 1000
  topic_tag = ""
  data_format = "json_v2"
  [inputs.mqtt_consumer.tags]
    kind = "gpu"
  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "twinchain/v1/gw/+/telemetry"
    tags = "_/_/_/gateway/_"
EOF
    for ((j = 0; j < samples; j++)); do
      # One sample: its GPUs are the body's, at the envelope's time (wire.Telemetry).
      local at="body.samples.$j.ts" gpus="body.samples.$j.gpus"
      if [ "$samples" = 1 ]; then at=ts gpus=body.gpus; fi
      cat <<EOF
  [[inputs.mqtt_consumer.json_v2]]
    measurement_name = "gpu"
    timestamp_path = "$at"
    timestamp_format = "2006-01-02T15:04:05.999999999Z07:00"
    [[inputs.mqtt_consumer.json_v2.object]]
      path = "$gpus"
      tags = ["asset"]
      included_keys = ["asset", "temp_c", "power_w", "util_pct", "mem_util_pct", "sm_clock_mhz", "mem_clock_mhz", "ecc_sbe", "ecc_dbe", "xid_count", "pcie_replays", "retired_pages", "remapped_rows", "mem_temp_c"]
EOF
    done
  } >"$dir/$db.conf"
  "$telegraf" --config "$dir/$db.conf" 2>"$dir/$db.log" >/dev/null &
  consumer=$!
  pids+=("$consumer")
  wait_for 60 "telegraf connected to $mqtt (\"Connected\" in $dir/$db.log)" "$consumer" grep -q 'Connected' "$dir/$db.log"
  sleep 2 # its subscription follows the connection
}

# run KIND NAME SAMPLES: one run of a consumer (KIND twin_service or
# telegraf); appends a RESULT line to $out.
run() {
  local kind=$1 name=$2 samples=$3 db="bench_$2_$3" msg_rate acked expected n last last_change t0 t1 c0 c1 i0 i1
  msg_rate=$(awk -v r="$rate" -v s="$samples" 'BEGIN { printf "%g", r / s }')
  say "$name, $samples samples per message: $msg_rate msg/s for ${seconds}s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  influxql "" "CREATE DATABASE $db" >/dev/null
  start_mosquitto
  "start_$kind" "$db" "$samples"
  kill -STOP "$consumer"
  "$bin/firmware-sim" load -broker "$mqtt" -gateways "$gateways" -gpus "$gpus" -rate "$msg_rate" \
    -samples-per-message "$samples" -duration "${seconds}s" -every 5s 2>&1 | tee "$dir/load-$db.log"
  acked=$(sed -n 's/^RESULT .* acked=\([0-9]*\).*/\1/p' "$dir/load-$db.log")
  expected=$((acked * samples * gpus))
  c0=$(cpu_ticks "$consumer") i0=$(cpu_ticks "$influxd_pid") t0=$(date +%s.%N)
  kill -CONT "$consumer"
  last=0 last_change=$t0
  while :; do
    sleep 0.5
    kill -0 "$consumer" 2>/dev/null || fail "$name exited while draining (log $dir/$db.log)"
    n=$(count "$db")
    t1=$(date +%s.%N)
    if [ "$n" != "$last" ]; then last=$n last_change=$t1 c1=$(cpu_ticks "$consumer") i1=$(cpu_ticks "$influxd_pid"); fi
    [ "$n" -lt "$expected" ] || break
    if awk -v a="$t1" -v b="$last_change" -v s="$stall" 'BEGIN { exit !(a - b > s) }'; then
      say "$name: $n of $expected points after no growth for ${stall}s: the rest counts as lost"
      break
    fi
    if awk -v a="$t1" -v b="$t0" -v s="$drain_timeout" 'BEGIN { exit !(a - b > s) }'; then
      say "$name: $n of $expected points after ${drain_timeout}s (DRAIN_TIMEOUT): the rest counts as lost"
      break
    fi
  done
  stop "$consumer"
  stop "$mosq_pid"
  awk -v name="$name" -v k="$samples" -v n="$last" -v e="$expected" -v t0="$t0" -v t1="$last_change" \
    -v cpu=$((${c1:-$c0} - c0)) -v icpu=$((${i1:-$i0} - i0)) -v tick="$tick" -v la="$(cut -d' ' -f1 /proc/loadavg)" -v bin="${svc_bin:-$telegraf}" \
    'BEGIN { us = 1e6 / tick / (n > 0 ? n : 1); printf "RESULT consumer=%s samples=%d points=%d expected=%d lost=%d seconds=%.1f points_per_s=%.0f cpu_us_per_point=%.1f influxd_cpu_us_per_point=%.1f load_average=%s bin=%s\n", name, k, n, e, e - n, t1 - t0, (t1 > t0 ? n / (t1 - t0) : 0), cpu * us, icpu * us, la, bin }' |
    tee -a "$out"
}

svc_bins=(${SERVICE_BIN:-$bin/twin-service})
for samples in $samples_list; do
  for n in "${!svc_bins[@]}"; do
    svc_bin=${svc_bins[$n]}
    run twin_service "twin_service$((n + 1))" "$samples"
  done
  svc_bin=
  run telegraf telegraf "$samples"
done

echo
say "results (load average now $(cut -d' ' -f1-3 /proc/loadavg)):"
cat "$out"
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
# sums DB: count and sums of a few fields: the same readings in both (times
# differ: each load is stamped when it is signed).
sums() {
  influxql "$1" 'SELECT count(temp_c), sum(temp_c), sum(power_w), sum(ecc_sbe), sum(xid_count), sum(sm_clock_mhz) FROM gpu' |
    sed -n 's/.*"values":\[\["[^"]*",\(.*\)\]\].*/\1/p'
}
for samples in $samples_list; do
  tg=$(grep "consumer=telegraf samples=$samples " "$out")
  b=$(sums "bench_telegraf_$samples")
  for n in "${!svc_bins[@]}"; do
    name="twin_service$((n + 1))"
    svc=$(grep "consumer=$name samples=$samples " "$out")
    awk -v name="$name (${svc_bins[$n]})" -v k="$samples" -v s="$(field points_per_s <<<"$svc")" -v t="$(field points_per_s <<<"$tg")" \
      -v sc="$(field cpu_us_per_point <<<"$svc")" -v tc="$(field cpu_us_per_point <<<"$tg")" \
      'BEGIN { printf "ratio %s / Telegraf, %d samples per message: points/s %d/%d = %.2f, CPU us per point %.1f/%.1f = %.2f\n", name, k, s, t, (t > 0 ? s / t : 0), sc, tc, (tc > 0 ? sc / tc : 0) }'
    a=$(sums "bench_${name}_$samples")
    if [ "$a" = "$b" ]; then
      echo "data, $name, $samples samples per message: the same count and sums as Telegraf's ($a)"
    else
      echo "data, $name, $samples samples per message: DIFFERENT: twin-service $a, Telegraf $b"
    fi
  done
  if [ "${PROFILE:-0}" = 1 ]; then
    for n in "${!svc_bins[@]}"; do
      go tool pprof -top -nodecount=25 "${svc_bins[$n]}" "$dir/bench_twin_service$((n + 1))_$samples.pprof" 2>/dev/null | head -35 || true # head ends pprof early: no failure
    done
  fi
done
