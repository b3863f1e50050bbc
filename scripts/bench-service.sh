#!/usr/bin/env bash
# `make bench-service`: the whole service under load (docs/performance.md).
# Usage: scripts/bench-service.sh BIN_DIR RATE GATEWAYS SECONDS
#
# 1. the bare mochi broker (no hooks) with the same load generator, at
#    BARE_RATE offered (default 60000 msg/s, above its ceiling), for
#    BARE_SECONDS (default 5), from BARE_GATEWAYS (default GATEWAYS up to
#    3,000: both ends of every connection are in one process, under its
#    open-file limit, and 9,000 connections offered 60,000 msg/s collapse
#    the bare broker to ~1,000 msg/s); it signs 4 messages per gateway and repeats copies
#    (the bare broker checks nothing): the baseline of the ratio;
# 2. the built twin-service with `make run`'s configuration (embedded broker,
#    embedded telemetry store, detectors, file ledger, fsync on) in a fresh
#    data directory with the load's registry, offered RATE msg/s from
#    GATEWAYS gateways for SECONDS.
#    The load generator also times the API meanwhile (-api: a page of
#    assets, one GPU, the fleet counts, each every 200 ms) for its p99s.
# Each prints a line per interval and a RESULT line; the last lines are
# the table. PROFILE=1 writes the service's CPU profile (BENCH_DIR/cpuN.pprof)
# and heap profiles (memN.pprof at stop, memN.pprof.peak at its peak) and
# prints their tops with the runtime's memory figures (from serviceN.log);
# SERVICE_BIN runs other builds of twin-service, one after the other, each
# in a fresh data directory (a space-separated list: a before/after
# comparison with the same load generator and baseline); SKIP_BARE=1 leaves the baseline out.
# WARMUP (default 5s) is left out of each run's rate, percentiles and maxima:
# a fresh fleet's first contact (each asset's first telemetry makes events,
# which are anchored, and registers the asset on the ledger) takes ~20 s at
# 12,500 gateways.
# LOAD_MAX_MIB (default 6144) is the memory the load generator's pre-signed
# messages may take, held compressed: a 10-minute run at 100% (12,500
# gateways, 1,250 msg/s of 10 samples) needs ~2,300.
# SAMPLES (default 1) is a space-separated list of sampling instants per
# telemetry message: each build runs once per value, offered RATE/SAMPLES
# msg/s, so RATE is host samples per second (8 GPU samples each) and every
# run has the same GPU sample rate (e.g. SAMPLES="1 5 10").
# SERVICE_CONFIG is YAML added to the service's configuration file (e.g.
# "store: {retention: {max_age: 2m, interval: 20s}}").
# The data directory's entries (twins.db, telemetry, ledger, ...) are sized
# every 10 s (BENCH_DIR/diskN); each run reports how fast each grew over
# its second half, as MB per day at the offered rate (disk_day_mb_*): with
# retention on, the message log has stopped growing by then.
set -euo pipefail
bin="${1:-bin}" rate="${2:-1000}" gateways="${3:-1000}" seconds="${4:-60}"
bare_rate="${BARE_RATE:-60000}" bare_seconds="${BARE_SECONDS:-5}"
bare_gateways="${BARE_GATEWAYS:-$(( gateways < 3000 ? gateways : 3000 ))}"
mqtt="${BENCH_MQTT:-127.0.0.1:18830}" http="${BENCH_HTTP:-127.0.0.1:18080}" bare="${BENCH_BARE:-127.0.0.1:18831}"
dir="${BENCH_DIR:-$(mktemp -d /tmp/bench-service.XXXXXX)}"
mkdir -p "$dir"
data="$dir/data" out="$dir/results"
mkdir -p "$data"
: >"$out"

echo "bench-service: $gateways gateways, $rate host samples/s (SAMPLES=${SAMPLES:-1} per message) for ${seconds}s; load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; work in $dir"

if [ "${SKIP_BARE:-0}" != 1 ]; then
  "$bin/firmware-sim" load -bare -broker "$bare" -gateways "$bare_gateways" -distinct 4 -rate "$bare_rate" -duration "${bare_seconds}s" 2>&1 | tee "$dir/bare.log"
  grep '^RESULT' "$dir/bare.log" >>"$out"
fi

"$bin/firmware-sim" load -gateways "$gateways" -registry "$dir/registry.json" -registry-only
# /metrics needs sign-in: a viewer API token for the load generator's scrapes.
token="tc_bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'auth:\n  tokens:\n    - {name: bench, role: viewer, sha256: %s}\n%s\n' "$(printf %s "$token" | sha256sum | cut -d' ' -f1)" "${SERVICE_CONFIG:-}" >"$dir/service.yaml"
# the bytes of pages twins.db's commits wrote so far (0 if /metrics does not answer)
page_bytes() {
  curl -fsS -H "Authorization: Bearer $token" "http://$http/metrics" 2>/dev/null |
    awk '/^twinchain_store_page_bytes_total / {v = $2} END {printf "%.0f", v + 0}' || echo 0
}
runs=()
for svc_bin in ${SERVICE_BIN:-$bin/twin-service}; do for samples in ${SAMPLES:-1}; do runs+=("$svc_bin:$samples"); done; done
n=0
for run in "${runs[@]}"; do
svc_bin="${run%:*}" samples="${run##*:}"
msg_rate=$(awk -v r="$rate" -v s="$samples" 'BEGIN { printf "%g", r / s }')
n=$((n + 1))
rm -rf "$data" && mkdir -p "$data" && cp "$dir/registry.json" "$data/registry.json"
profile=()
if [ "${PROFILE:-0}" = 1 ]; then profile=(-cpu-profile "$dir/cpu$n.pprof" -mem-profile "$dir/mem$n.pprof"); fi
echo "bench-service: service $n: $svc_bin, $samples samples per message at $msg_rate msg/s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$svc_bin" -config "$dir/service.yaml" -data "$data" -http "$http" -mqtt-addr "$mqtt" \
  -detect-config "$(dirname "$0")/run-detect.yaml" -log-level warn "${profile[@]}" 2>"$dir/service$n.log" &
svc=$!
cleanup() {
  kill -TERM "$svc" 2>/dev/null || true
  wait "$svc" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  if curl -fsS "http://$http/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$svc" 2>/dev/null; then echo "bench-service: twin-service exited:" >&2; cat "$dir/service$n.log" >&2; exit 1; fi
  sleep 0.2
done
before=$(du -sb "$data" | cut -f1)
written_before=$(awk '/^write_bytes/ {print $2}' "/proc/$svc/io")
pages_before=$(page_bytes)
# RSS is anonymous memory (Go's heap and stacks) and file pages mapped and
# touched (bbolt reads twins.db through mmap): sample both, for the maxima.
: >"$dir/rss$n"
(while kill -0 "$svc" 2>/dev/null; do awk '/^RssAnon|^RssFile/ {printf "%s ", $2} END {print ""}' "/proc/$svc/status" >>"$dir/rss$n" 2>/dev/null; sleep 1; done) &
rss_sampler=$!
: >"$dir/disk$n"
(while kill -0 "$svc" 2>/dev/null; do t=$(date +%s); du -sb "$data"/* 2>/dev/null | while read -r b f; do echo "$t ${f##*/} $b"; done >>"$dir/disk$n"; sleep 10; done) &
disk_sampler=$!
"$bin/firmware-sim" load -broker "$mqtt" -gateways "$gateways" -rate "$msg_rate" -samples-per-message "$samples" -duration "${seconds}s" \
  -metrics "http://$http/metrics" -api "http://$http" -metrics-token "$token" -every "${EVERY:-2s}" -warmup "${WARMUP:-5s}" -max-mib "${LOAD_MAX_MIB:-6144}" 2>&1 | tee "$dir/service-load$n.log" ||
  # A service that falls behind drops connections whose messages wait past
  # the keep-alive: the load generator says so and exits non-zero, but its
  # RESULT line stands, and the next build still runs.
  echo "bench-service: the load generator exited non-zero (above); its RESULT line is kept"
after=$(du -sb "$data" | cut -f1)
written_after=$(awk '/^write_bytes/ {print $2}' "/proc/$svc/io")
pages_after=$(page_bytes)
kill "$rss_sampler" "$disk_sampler" 2>/dev/null || true
# growth per entry from the sample nearest the run's middle to the last, in
# MB per day; entries under 1 MB/day are summed into disk_day_mb_other
disk_day=$(awk '{ t[NR] = $1; f[NR] = $2; b[NR] = $3; if (!first) first = $1; last = $1 }
  END { mid = first + (last - first) / 2
    for (i = 1; i <= NR; i++) { if (t[i] <= mid) { m[f[i]] = b[i]; mt[f[i]] = t[i] } if (t[i] == last) e[f[i]] = b[i] }
    for (k in e) if ((k in m) && last > mt[k]) { d = (e[k] - m[k]) / (last - mt[k]) * 86400 / 1e6; tot += d
      if (d >= 1 || d <= -1) printf "disk_day_mb_%s=%.0f ", k, d; else other += d }
    printf "disk_day_mb_other=%.0f disk_day_mb_total=%.0f", other, tot }' "$dir/disk$n")
rss_split=$(awk 'NF == 2 { if ($1 > a) a = $1; if ($2 > f) f = $2 } END { printf "svc_rss_anon_mb_max=%.0f svc_rss_file_mb_max=%.0f", a / 1024, f / 1024 }' "$dir/rss$n")
result=$(grep '^RESULT' "$dir/service-load$n.log")
acked=$(sed -n 's/.* acked=\([0-9]*\).*/\1/p' <<<"$result")
echo "$result $rss_split disk_bytes_per_msg=$(( (after - before) / (acked > 0 ? acked : 1) )) disk_written_per_msg=$(( (written_after - written_before) / (acked > 0 ? acked : 1) )) store_pages_per_msg=$(( (pages_after - pages_before) / (acked > 0 ? acked : 1) )) $disk_day bin=$svc_bin load_average=$(cut -d' ' -f1 /proc/loadavg)" >>"$out"
cleanup
trap - EXIT
done

echo
echo "bench-service results (load average now $(cut -d' ' -f1-3 /proc/loadavg)):"
cat "$out"
bare_sustained=$(sed -n 's/^RESULT target=bare .* throughput=\([0-9]*\).*/\1/p' "$out")
n=0
for run in "${runs[@]}"; do
  svc_bin="${run%:*}" samples="${run##*:}"
  n=$((n + 1))
  svc_sustained=$(grep '^RESULT target=service' "$out" | sed -n "${n}s/.* sustained=\([0-9]*\).*/\1/p")
  if [ -n "$bare_sustained" ] && [ -n "$svc_sustained" ]; then
    # messages of one sample against the bare broker's (same size) and, for
    # several samples, host samples against the bare broker's messages
    awk -v s="$svc_sustained" -v b="$bare_sustained" -v k="$samples" -v bin="$svc_bin" 'BEGIN { printf "ratio service sustained / bare throughput = %d/%d = %.3f messages, %d/%d = %.3f host samples (%s, %d samples per message)\n", s, b, s / b, s * k, b, s * k / b, bin, k }'
  fi
  if [ "${PROFILE:-0}" = 1 ]; then
    go tool pprof -top -nodecount=25 "$svc_bin" "$dir/cpu$n.pprof" 2>/dev/null | head -35 || true # head ends pprof early: no failure
    grep -e '-mem-profile' "$dir/service$n.log" || true
    for p in "$dir/mem$n.pprof.peak" "$dir/mem$n.pprof"; do
      echo "heap in use: $p"
      go tool pprof -top -sample_index=inuse_space -nodecount=20 "$svc_bin" "$p" 2>/dev/null | head -30 || true
    done
  fi
done
