#!/usr/bin/env bash
# Installs what `make test` needs and prints the environment that points the
# tests at it, as `export NAME=value` lines (the Makefile evals them).
# Idempotent: what is already there is kept. Built binaries are cached in
# $TWINCHAIN_CACHE (default ~/.cache/twinchain).
set -euo pipefail
cache="${TWINCHAIN_CACHE:-$HOME/.cache/twinchain}"
mkdir -p "$cache/bin"
log() { echo "test-deps: $*" >&2; }

apt_pkgs=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || apt_pkgs+=(mosquitto)
command -v chromium >/dev/null 2>&1 || apt_pkgs+=(chromium)
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || apt_pkgs+=(rsyslog)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  log "installing ${apt_pkgs[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${apt_pkgs[@]}" >&2
fi
mosq="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
rsyslogd="$(command -v rsyslogd || echo /usr/sbin/rsyslogd)"

# InfluxDB 1.8.10 with the v2 API (Debian's 1.6 lacks it).
if [ ! -x "$cache/bin/influxd" ]; then
  log "building influxd 1.8.10 into $cache/bin (takes minutes, once)"
  (cd "$(mktemp -d)" && GOBIN="$cache/bin" GOFLAGS=-mod=mod go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10) >&2
fi

# Fabric CA server: `go install ...@v1.5.15` is refused, so build it from a
# throwaway module that requires it.
if [ ! -x "$cache/bin/fabric-ca-server" ]; then
  log "building fabric-ca-server 1.5.15 into $cache/bin (takes minutes, once)"
  tmp="$(mktemp -d)"
  (
    cd "$tmp"
    cat > go.mod <<'MOD'
module fabricca.build

go 1.26

require github.com/hyperledger/fabric-ca v1.5.15
MOD
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/hyperledger/fabric-ca/cmd/fabric-ca-server"
GO
    GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
    GOFLAGS=-mod=mod GOBIN="$cache/bin" go install github.com/hyperledger/fabric-ca/cmd/fabric-ca-server
  ) >&2
fi

# Prometheus Alertmanager 0.35.0 from the Go module proxy. `go install
# github.com/prometheus/alertmanager/cmd/alertmanager@v0.35.0` fails: its ui
# package embeds app/dist, which the release build makes and the module zip
# lacks (so do 0.32-0.34). Build a copy of the module with a placeholder UI;
# the API the tests use is complete.
if [ ! -x "$cache/bin/alertmanager" ]; then
  log "building alertmanager 0.35.0 into $cache/bin (takes minutes, once)"
  (
    src="$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json github.com/prometheus/alertmanager@v0.35.0 | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
    tmp="$(mktemp -d)"
    cp -r "$src/." "$tmp/"
    chmod -R u+w "$tmp"
    mkdir -p "$tmp/ui/app/dist/elm" "$tmp/ui/app/dist/mantine"
    echo '<!doctype html><title>Alertmanager</title><p>UI not built; the API is at /api/v2/.' | tee "$tmp/ui/app/dist/elm/index.html" > "$tmp/ui/app/dist/mantine/index.html"
    cd "$tmp" && GOFLAGS=-mod=mod go build -o "$cache/bin/alertmanager" ./cmd/alertmanager
    rm -rf "$tmp"
  ) >&2
fi

echo "export TWINCHAIN_MOSQUITTO=$mosq"
echo "export TWINCHAIN_RSYSLOGD=$rsyslogd"
echo "export TWINCHAIN_ALERTMANAGER=$cache/bin/alertmanager"
echo "export TWINCHAIN_INFLUXD=$cache/bin/influxd"
echo "export TWINCHAIN_FABRIC_CA=$cache/bin/fabric-ca-server"
echo "export TWINCHAIN_CHROMIUM=$(command -v chromium)"
echo "export TWINCHAIN_REQUIRE_SERVICES=1"
