#!/usr/bin/env bash
# network.sh: a small Hyperledger Fabric 2.5 network on loopback, without
# Docker, running the twinchain chaincode as a service.
#
#   scripts/fabric/network.sh up      generate, start, create the channel, deploy the chaincode
#   scripts/fabric/network.sh down    stop every process this script started
#   scripts/fabric/network.sh clean   down, then remove the state directory
#   scripts/fabric/network.sh env     print the client settings (also in $STATE/network.env)
#   scripts/fabric/network.sh status  which of its processes run (exit 1 if one does not)
#   scripts/fabric/network.sh restart-chaincode  start the chaincode process again (it died,
#                                     or ./chaincode changed in ways that keep its interface)
#
# Inputs (environment):
#   FABRIC_BIN          directory with peer, orderer, configtxgen, osnadmin, cryptogen
#                       (a Fabric 2.5 release's bin/)
#   FABRIC_CFG_PATH     directory with the release's core.yaml and orderer.yaml (its config/)
#   FABRIC_CCAAS_BUILDER  directory holding bin/{detect,build,release} of the ccaas builder;
#                       default: $FABRIC_BIN/../builders/ccaas, else the three files in $FABRIC_BIN
#   TWINCHAIN_FABRIC_STATE  where everything is written (default .run/fabric)
#   TWINCHAIN_FABRIC_PORT   base port (default 17000): orderer +50 (admin +53, operations +43);
#                       org N peer +100N+51, its chaincode listener +100N+52, operations +100N+43;
#                       the chaincode server +99; Fabric CA +100N+54
#   TWINCHAIN_FABRIC_ORGS   number of peer organisations, 1 or 2 (default 2)
#   TWINCHAIN_FABRIC_CA     optional fabric-ca-server binary: when set, org1's CA runs as a
#                       Fabric CA holding cryptogen's CA key, so identities enrolled there
#                       (with a twin.role attribute) are members of Org1MSP
#   TWINCHAIN_FABRIC_CA_CLIENT  fabric-ca-client for enrolling identities (default: next to
#                       TWINCHAIN_FABRIC_CA, on PATH, or built once into ~/.cache/twinchain/bin)
#   TWINCHAIN_FABRIC_TEST_CHANNELS  extra channels twinchain1..N for tests (default 12: each
#                       test takes one no earlier test used, so the suite runs twice)
#   TWINCHAIN_CC_BIN        optional prebuilt twinchain-cc; default: built from ./chaincode
#
# With a Fabric CA, up enrolls (without one, issues from Org1's cryptogen CA key with
# tools/fabric-enroll issue) Org1 identities whose certificates carry twin.role: the
# service identity (TWINCHAIN_FABRIC_CERT/KEY) and test-<role> for every role in
# $STATE/identities/<id>.<role>/{cert.pem,key.pem} (the layout fabricledger reads);
# with two orgs, Org2's (from its cryptogen CA key) in $STATE/identities-org2.
# Then `. $STATE/network.env && go test ./internal/ledger/fabricledger` runs the ledger
# contract suite on this network.
#
# The chaincode definition carries one private data collection per org, <MSP>Private
# (collections_config; private dataset metadata, chaincode/core/private.go).
#
# Everything listens on 127.0.0.1. Modelled on fabric-samples' test-network-nano-bash:
# an orderer using the channel participation API (no system channel; osnadmin channel
# join), peers whose core.yaml has vm.endpoint "" (an empty CORE_VM_ENDPOINT is ignored,
# and a configured endpoint makes the health check report Docker down) and the ccaas
# external builder, anchor peers in the channel's genesis block, gossip external
# endpoints and a short reconnect interval, and the chaincode packaged as ccaas
# (metadata.json + code.tar.gz holding connection.json) and run as a local process.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
STATE="${TWINCHAIN_FABRIC_STATE:-$repo/.run/fabric}"
BASE="${TWINCHAIN_FABRIC_PORT:-17000}"
NORGS="${TWINCHAIN_FABRIC_ORGS:-2}"
CHANNEL=twinchain
# The suite of internal/ledger/fabricledger wants an empty ledger per subtest, so
# the network also has channels twinchain1..N with the chaincode on each.
NTEST="${TWINCHAIN_FABRIC_TEST_CHANNELS:-12}"
channels() { echo "$CHANNEL"; for i in $(seq 1 "$NTEST"); do echo "$CHANNEL$i"; done; }
CC_NAME=twinchain
CC_VERSION=1.0
CC_LABEL="${CC_NAME}_${CC_VERSION}"
HOST=127.0.0.1

log() { printf '[fabric] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

orderer_port=$((BASE + 50))
orderer_admin=$((BASE + 53))
orderer_ops=$((BASE + 43))
cc_port=$((BASE + 99))
peer_port() { echo $((BASE + 100 * $1 + 51)); }
peer_cc_port() { echo $((BASE + 100 * $1 + 52)); }
peer_ops() { echo $((BASE + 100 * $1 + 43)); }
ca_port() { echo $((BASE + 100 * $1 + 54)); }
orgs() { seq 1 "$NORGS"; }

crypto="$STATE/crypto"
ord_dir="$crypto/ordererOrganizations/example.com/orderers/orderer.example.com"
ord_tlsca="$ord_dir/tls/ca.crt"
org_dom() { echo "org$1.example.com"; }
peer_dir() { echo "$crypto/peerOrganizations/$(org_dom "$1")/peers/peer0.$(org_dom "$1")"; }
admin_msp() { echo "$crypto/peerOrganizations/$(org_dom "$1")/users/Admin@$(org_dom "$1")/msp"; }

check_inputs() {
  [ -n "${FABRIC_BIN:-}" ] || die "FABRIC_BIN is not set (a Fabric 2.5 release's bin/ directory)"
  [ -n "${FABRIC_CFG_PATH:-}" ] || die "FABRIC_CFG_PATH is not set (the release's config/ directory)"
  for b in peer orderer configtxgen osnadmin cryptogen; do
    [ -x "$FABRIC_BIN/$b" ] || die "$FABRIC_BIN/$b is missing"
  done
  for f in core.yaml orderer.yaml; do
    [ -f "$FABRIC_CFG_PATH/$f" ] || die "$FABRIC_CFG_PATH/$f is missing"
  done
  case "$NORGS" in 1|2) ;; *) die "TWINCHAIN_FABRIC_ORGS must be 1 or 2" ;; esac
  command -v tar >/dev/null || die "tar is needed"
}

# ccaas_builder finds the builder and returns a directory whose bin/ holds it.
ccaas_builder() {
  local d
  for d in "${FABRIC_CCAAS_BUILDER:-}" "$FABRIC_BIN/../builders/ccaas"; do
    if [ -n "$d" ] && [ -x "$d/bin/detect" ] && [ -x "$d/bin/build" ] && [ -x "$d/bin/release" ]; then
      (cd "$d" && pwd); return
    fi
  done
  if [ -x "$FABRIC_BIN/detect" ] && [ -x "$FABRIC_BIN/build" ] && [ -x "$FABRIC_BIN/release" ]; then
    mkdir -p "$STATE/ccaas_builder/bin"
    for s in detect build release; do ln -sf "$FABRIC_BIN/$s" "$STATE/ccaas_builder/bin/$s"; done
    echo "$STATE/ccaas_builder"; return
  fi
  die "no ccaas builder: set FABRIC_CCAAS_BUILDER to a directory holding bin/{detect,build,release}"
}

# start NAME CMD...: runs a long-lived process in its own session, logging to
# $STATE/logs/NAME.log, and records its pid for down.
start() {
  local name="$1"; shift
  mkdir -p "$STATE/logs" "$STATE/pids"
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/pids/$name.pid"
  log "started $name (pid $!)"
}

# wait_healthy NAME PORT: polls an operations /healthz endpoint.
wait_healthy() {
  local name="$1" port="$2" i
  for i in $(seq 1 120); do
    if command -v curl >/dev/null; then
      curl -fsS "http://$HOST:$port/healthz" 2>/dev/null | grep -q '"status":"OK"' && return 0
    elif (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
      return 0
    fi
    pid="$(cat "$STATE/pids/$name.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$STATE/logs/$name.log" >&2 || true
      die "$name exited; log: $STATE/logs/$name.log"
    fi
    sleep 0.5
  done
  tail -n 30 "$STATE/logs/$name.log" >&2 || true
  die "$name not healthy on port $port after 60s"
}

# retry N CMD...: runs CMD until it succeeds, N times at most, 2s apart.
retry() {
  local n="$1" i; shift
  for i in $(seq 1 "$n"); do
    if "$@"; then return 0; fi
    sleep 2
  done
  return 1
}

gen_crypto() {
  cat >"$STATE/crypto-config.yaml" <<EOF
OrdererOrgs:
  - Name: Orderer
    Domain: example.com
    EnableNodeOUs: true
    Specs:
      - Hostname: orderer
        SANS: [$HOST, localhost]
PeerOrgs:
EOF
  for o in $(orgs); do
    cat >>"$STATE/crypto-config.yaml" <<EOF
  - Name: Org$o
    Domain: $(org_dom "$o")
    EnableNodeOUs: true
    Template:
      Count: 1
      SANS: [$HOST, localhost]
    Users:
      Count: 1
EOF
  done
  "$FABRIC_BIN/cryptogen" generate --config="$STATE/crypto-config.yaml" --output="$crypto" >/dev/null
}

gen_channel_block() {
  local cfg="$STATE/configtx"
  mkdir -p "$cfg" "$STATE/artifacts"
  {
    cat <<EOF
Organizations:
  - &OrdererOrg
    Name: OrdererOrg
    ID: OrdererMSP
    MSPDir: $crypto/ordererOrganizations/example.com/msp
    Policies:
      Readers: {Type: Signature, Rule: "OR('OrdererMSP.member')"}
      Writers: {Type: Signature, Rule: "OR('OrdererMSP.member')"}
      Admins: {Type: Signature, Rule: "OR('OrdererMSP.admin')"}
    OrdererEndpoints:
      - $HOST:$orderer_port
EOF
    for o in $(orgs); do
      cat <<EOF
  - &Org$o
    Name: Org${o}MSP
    ID: Org${o}MSP
    MSPDir: $crypto/peerOrganizations/$(org_dom "$o")/msp
    Policies:
      Readers: {Type: Signature, Rule: "OR('Org${o}MSP.admin', 'Org${o}MSP.peer', 'Org${o}MSP.client')"}
      Writers: {Type: Signature, Rule: "OR('Org${o}MSP.admin', 'Org${o}MSP.client')"}
      Admins: {Type: Signature, Rule: "OR('Org${o}MSP.admin')"}
      Endorsement: {Type: Signature, Rule: "OR('Org${o}MSP.peer')"}
    AnchorPeers:
      - Host: $HOST
        Port: $(peer_port "$o")
EOF
    done
    cat <<EOF
Capabilities:
  Channel: &ChannelCapabilities {V2_0: true}
  Orderer: &OrdererCapabilities {V2_0: true}
  Application: &ApplicationCapabilities {V2_5: true}
Application: &ApplicationDefaults
  Organizations:
  Policies:
    Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
    Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
    Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
    LifecycleEndorsement: {Type: ImplicitMeta, Rule: "MAJORITY Endorsement"}
    Endorsement: {Type: ImplicitMeta, Rule: "MAJORITY Endorsement"}
  Capabilities:
    <<: *ApplicationCapabilities
Orderer: &OrdererDefaults
  BatchTimeout: 500ms
  BatchSize:
    MaxMessageCount: 100
    AbsoluteMaxBytes: 10 MB
    PreferredMaxBytes: 2 MB
  Organizations:
  Policies:
    Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
    Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
    Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
    BlockValidation: {Type: ImplicitMeta, Rule: "ANY Writers"}
Channel: &ChannelDefaults
  Policies:
    Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
    Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
    Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
  Capabilities:
    <<: *ChannelCapabilities
Profiles:
  TwinchainChannel:
    <<: *ChannelDefaults
    Orderer:
      <<: *OrdererDefaults
      Organizations: [*OrdererOrg]
      Capabilities:
        <<: *OrdererCapabilities
      OrdererType: etcdraft
      EtcdRaft:
        Consenters:
          - Host: $HOST
            Port: $orderer_port
            ClientTLSCert: $ord_dir/tls/server.crt
            ServerTLSCert: $ord_dir/tls/server.crt
        Options:
          TickInterval: 500ms
          ElectionTick: 10
          HeartbeatTick: 1
          MaxInflightBlocks: 5
          SnapshotIntervalSize: 16 MB
    Application:
      <<: *ApplicationDefaults
      Organizations: [$(for o in $(orgs); do printf '*Org%s, ' "$o"; done | sed 's/, $//')]
      Capabilities:
        <<: *ApplicationCapabilities
EOF
  } >"$cfg/configtx.yaml"
  for ch in $(channels); do
    FABRIC_CFG_PATH="$cfg" "$FABRIC_BIN/configtxgen" -profile TwinchainChannel \
      -outputBlock "$STATE/artifacts/$ch.block" -channelID "$ch"
  done
}

# peer_config writes the peers' core.yaml: the release's, with vm.endpoint ""
# and the ccaas builder as the only external builder.
peer_config() {
  local builder="$1"
  mkdir -p "$STATE/config"
  awk -v builder="$builder" '
    function indent(s) { match(s, /^ */); return RLENGTH }
    skip && (/^[ \t]*$/ || indent($0) <= skipind) { skip = 0 }
    skip { next }
    /^vm:/ { invm = 1; print; next }
    invm && /^[^ #]/ { invm = 0 }
    invm && /^[ \t]+endpoint:/ && !vmdone {
      sub(/endpoint:.*/, "endpoint: \"\""); print; vmdone = 1; next
    }
    /^[ \t]+externalBuilders:/ {
      ind = indent($0); pad = substr($0, 1, ind)
      print pad "externalBuilders:"
      print pad "  - name: ccaas_builder"
      print pad "    path: " builder
      print pad "    propagateEnvironment:"
      print pad "      - CHAINCODE_AS_A_SERVICE_BUILDER_CONFIG"
      skip = 1; skipind = ind; next
    }
    { print }
    END { if (!vmdone) exit 3 }
  ' "$FABRIC_CFG_PATH/core.yaml" >"$STATE/config/core.yaml" || die "could not rewrite core.yaml (no vm.endpoint?)"
  grep -q "path: $builder" "$STATE/config/core.yaml" || die "could not set externalBuilders in core.yaml"
}

start_orderer() {
  mkdir -p "$STATE/data/orderer"
  start orderer env \
    FABRIC_CFG_PATH="$FABRIC_CFG_PATH" \
    FABRIC_LOGGING_SPEC=info \
    ORDERER_GENERAL_LISTENADDRESS=$HOST \
    ORDERER_GENERAL_LISTENPORT=$orderer_port \
    ORDERER_GENERAL_LOCALMSPID=OrdererMSP \
    ORDERER_GENERAL_LOCALMSPDIR="$ord_dir/msp" \
    ORDERER_GENERAL_TLS_ENABLED=true \
    ORDERER_GENERAL_TLS_PRIVATEKEY="$ord_dir/tls/server.key" \
    ORDERER_GENERAL_TLS_CERTIFICATE="$ord_dir/tls/server.crt" \
    ORDERER_GENERAL_TLS_ROOTCAS="$ord_tlsca" \
    ORDERER_GENERAL_BOOTSTRAPMETHOD=none \
    ORDERER_CHANNELPARTICIPATION_ENABLED=true \
    ORDERER_FILELEDGER_LOCATION="$STATE/data/orderer" \
    ORDERER_CONSENSUS_WALDIR="$STATE/data/orderer/etcdraft/wal" \
    ORDERER_CONSENSUS_SNAPDIR="$STATE/data/orderer/etcdraft/snapshot" \
    ORDERER_OPERATIONS_LISTENADDRESS=$HOST:$orderer_ops \
    ORDERER_ADMIN_LISTENADDRESS=$HOST:$orderer_admin \
    ORDERER_METRICS_PROVIDER=disabled \
    "$FABRIC_BIN/orderer"
}

start_peer() {
  local o="$1" dir
  dir="$(peer_dir "$o")"
  mkdir -p "$STATE/data/peer$o"
  start "peer$o" env \
    FABRIC_CFG_PATH="$STATE/config" \
    FABRIC_LOGGING_SPEC=info \
    CORE_PEER_ID="peer0.$(org_dom "$o")" \
    CORE_PEER_ADDRESS=$HOST:"$(peer_port "$o")" \
    CORE_PEER_LISTENADDRESS=$HOST:"$(peer_port "$o")" \
    CORE_PEER_CHAINCODEADDRESS=$HOST:"$(peer_cc_port "$o")" \
    CORE_PEER_CHAINCODELISTENADDRESS=$HOST:"$(peer_cc_port "$o")" \
    CORE_PEER_GOSSIP_BOOTSTRAP=$HOST:"$(peer_port "$o")" \
    CORE_PEER_GOSSIP_EXTERNALENDPOINT=$HOST:"$(peer_port "$o")" \
    CORE_PEER_GOSSIP_USELEADERELECTION=false \
    CORE_PEER_GOSSIP_ORGLEADER=true \
    CORE_PEER_GOSSIP_ALIVETIMEINTERVAL=2s \
    CORE_PEER_GOSSIP_ALIVEEXPIRATIONTIMEOUT=10s \
    CORE_PEER_GOSSIP_RECONNECTINTERVAL=5s \
    CORE_PEER_LOCALMSPID="Org${o}MSP" \
    CORE_PEER_MSPCONFIGPATH="$dir/msp" \
    CORE_PEER_TLS_ENABLED=true \
    CORE_PEER_TLS_CERT_FILE="$dir/tls/server.crt" \
    CORE_PEER_TLS_KEY_FILE="$dir/tls/server.key" \
    CORE_PEER_TLS_ROOTCERT_FILE="$dir/tls/ca.crt" \
    CORE_PEER_FILESYSTEMPATH="$STATE/data/peer$o" \
    CORE_LEDGER_SNAPSHOTS_ROOTDIR="$STATE/data/peer$o/snapshots" \
    CORE_OPERATIONS_LISTENADDRESS=$HOST:"$(peer_ops "$o")" \
    CORE_METRICS_PROVIDER=disabled \
    "$FABRIC_BIN/peer" node start
}

# as_admin ORG CMD...: runs a peer CLI command as the org's admin.
as_admin() {
  local o="$1"; shift
  env FABRIC_CFG_PATH="$STATE/config" \
    FABRIC_LOGGING_SPEC=warning \
    CORE_PEER_TLS_ENABLED=true \
    CORE_PEER_TLS_ROOTCERT_FILE="$(peer_dir "$o")/tls/ca.crt" \
    CORE_PEER_ADDRESS=$HOST:"$(peer_port "$o")" \
    CORE_PEER_LOCALMSPID="Org${o}MSP" \
    CORE_PEER_MSPCONFIGPATH="$(admin_msp "$o")" \
    "$@"
}

orderer_flags=(-o "$HOST:$orderer_port" --tls --cafile "$ord_tlsca")

create_channel() {
  local ch="$1"
  "$FABRIC_BIN/osnadmin" channel join --channelID "$ch" \
    --config-block "$STATE/artifacts/$ch.block" -o "$HOST:$orderer_admin" >/dev/null
  joined() { as_admin "$1" "$FABRIC_BIN/peer" channel getinfo -c "$ch" >/dev/null 2>&1; }
  join() { joined "$1" || as_admin "$1" "$FABRIC_BIN/peer" channel join -b "$STATE/artifacts/$ch.block"; }
  for o in $(orgs); do
    retry 15 join "$o" || die "peer$o could not join $ch"
    retry 15 joined "$o" || die "peer$o has no block of $ch"
  done
  log "channel $ch created; anchor peers are in its genesis block"
}

# package_chaincode writes the ccaas package: metadata.json and code.tar.gz
# (holding connection.json), as the ccaas builder expects.
package_chaincode() {
  local p="$STATE/package"
  rm -rf "$p" && mkdir -p "$p/src"
  printf '{"address":"%s:%s","dial_timeout":"10s","tls_required":false}\n' "$HOST" "$cc_port" >"$p/src/connection.json"
  printf '{"type":"ccaas","label":"%s"}\n' "$CC_LABEL" >"$p/metadata.json"
  tar -C "$p/src" -czf "$p/code.tar.gz" connection.json
  tar -C "$p" -czf "$STATE/artifacts/$CC_NAME.tar.gz" metadata.json code.tar.gz
}

cc_binary() {
  if [ -n "${TWINCHAIN_CC_BIN:-}" ]; then echo "$TWINCHAIN_CC_BIN"; return; fi
  mkdir -p "$STATE/bin"
  (cd "$repo/chaincode" && go build -o "$STATE/bin/twinchain-cc" ./cmd/twinchain-cc) >&2
  echo "$STATE/bin/twinchain-cc"
}

install_chaincode() {
  local pkg="$STATE/artifacts/$CC_NAME.tar.gz" pkgid
  package_chaincode
  pkgid="$(as_admin 1 "$FABRIC_BIN/peer" lifecycle chaincode calculatepackageid "$pkg")"
  [ -n "$pkgid" ] || die "no package id"
  echo "$pkgid" >"$STATE/artifacts/package-id"
  for o in $(orgs); do
    as_admin "$o" "$FABRIC_BIN/peer" lifecycle chaincode install "$pkg" >/dev/null 2>"$STATE/logs/install$o.log" \
      || grep -q "already successfully installed" "$STATE/logs/install$o.log" \
      || { cat "$STATE/logs/install$o.log" >&2; die "install on peer$o failed"; }
  done
  log "installed $pkgid"
}

# collections_config writes the chaincode's private data collections: one
# per organisation, <MSP>Private, held and written by that organisation's
# peers alone (the chaincode core's core.PrivateCollection). Every peer
# keeps the hashes of its writes, so a partner can check a disclosed copy.
collections_config() {
  local f="$STATE/artifacts/collections.json" sep=""
  mkdir -p "$STATE/artifacts"
  {
    echo "["
    for o in $(orgs); do
      printf '%s  {"name": "Org%sMSPPrivate", "policy": "OR('"'"'Org%sMSP.member'"'"')", "requiredPeerCount": 0, "maxPeerCount": 0,\n' "$sep" "$o" "$o"
      printf '   "blockToLive": 0, "memberOnlyRead": true, "memberOnlyWrite": true,\n'
      printf '   "endorsementPolicy": {"signaturePolicy": "OR('"'"'Org%sMSP.peer'"'"')"}}' "$o"
      sep=$',\n'
    done
    printf '\n]\n'
  } >"$f"
  echo "$f"
}

# define_chaincode CHANNEL approves the chaincode for every org and commits it.
define_chaincode() {
  local ch="$1" pkgid policy collections commit_peers=()
  pkgid="$(cat "$STATE/artifacts/package-id")"
  policy="OR($(for o in $(orgs); do printf "'Org%sMSP.peer'," "$o"; done | sed 's/,$//'))"
  collections="$(collections_config)"
  # A repeated approval of the same definition is refused as "unchanged
  # content", and a repeated commit as a wrong sequence: both mean done.
  approve() {
    local out
    out="$(as_admin "$1" "$FABRIC_BIN/peer" lifecycle chaincode approveformyorg "${orderer_flags[@]}" \
      --channelID "$ch" --name "$CC_NAME" --version "$CC_VERSION" --package-id "$pkgid" \
      --sequence 1 --signature-policy "$policy" --collections-config "$collections" 2>&1)" && return 0
    case "$out" in *"unchanged content"*) return 0 ;; esac
    log "approve (Org$1MSP, $ch): $out"; return 1
  }
  committed() {
    as_admin "$1" "$FABRIC_BIN/peer" lifecycle chaincode querycommitted \
      --channelID "$ch" --name "$CC_NAME" >/dev/null 2>&1
  }
  commit() {
    committed 1 || as_admin 1 "$FABRIC_BIN/peer" lifecycle chaincode commit "${orderer_flags[@]}" \
      --channelID "$ch" --name "$CC_NAME" --version "$CC_VERSION" --sequence 1 \
      --signature-policy "$policy" --collections-config "$collections" "${commit_peers[@]}"
  }
  for o in $(orgs); do
    retry 10 approve "$o" || die "approve for Org${o}MSP failed"
    commit_peers+=(--peerAddresses "$HOST:$(peer_port "$o")" --tlsRootCertFiles "$(peer_dir "$o")/tls/ca.crt")
  done
  ready() {
    as_admin 1 "$FABRIC_BIN/peer" lifecycle chaincode checkcommitreadiness --channelID "$ch" \
      --name "$CC_NAME" --version "$CC_VERSION" --sequence 1 --signature-policy "$policy" --collections-config "$collections" --output json \
      | grep -c '": true' | grep -qx "$NORGS"
  }
  retry 15 ready || die "approvals never became visible on peer1"
  retry 5 commit || die "commit failed"
  for o in $(orgs); do
    retry 15 committed "$o" || die "chaincode not committed on peer$o"
  done
  log "chaincode $CC_NAME committed on $ch"
}

# smoke_test calls the chaincode through a peer. The cryptogen admin has no
# twin.role attribute, so the contract must refuse it with [forbidden]: that
# answer can only come from the running chaincode.
smoke_test() {
  local out
  out="$(as_admin 1 "$FABRIC_BIN/peer" chaincode query -C "$CHANNEL" -n "$CC_NAME" \
    -c '{"Args":["AnchorHead","{}"]}' 2>&1 || true)"
  case "$out" in
    *"[forbidden]"*) log "smoke test: the chaincode answered (an identity without twin.role is refused)" ;;
    *) log "smoke test output: $out"; die "the chaincode did not answer as expected" ;;
  esac
}

start_ca() {
  [ -n "${TWINCHAIN_FABRIC_CA:-}" ] || return 0
  local cadir="$crypto/peerOrganizations/$(org_dom 1)/ca" home="$STATE/ca1"
  mkdir -p "$home"
  start ca1 env FABRIC_CA_SERVER_OPERATIONS_LISTENADDRESS=$HOST:$((BASE + 155)) \
    "$TWINCHAIN_FABRIC_CA" start -b admin:adminpw --address $HOST --port "$(ca_port 1)" \
    --home "$home" --ca.name ca-org1 \
    --ca.certfile "$(ls "$cadir"/*-cert.pem)" --ca.keyfile "$cadir/priv_sk"
  for i in $(seq 1 60); do
    (exec 3<>"/dev/tcp/$HOST/$(ca_port 1)") 2>/dev/null && return 0
    sleep 0.5
  done
  die "Fabric CA did not start; log: $STATE/logs/ca1.log"
}

# ca_client finds fabric-ca-client, building it once (from the fabric-ca
# module the Go proxy serves, as scripts/test-deps.sh builds the server).
ca_client() {
  local c cache="${XDG_CACHE_HOME:-$HOME/.cache}/twinchain/bin" tmp
  for c in "${TWINCHAIN_FABRIC_CA_CLIENT:-}" "$(dirname "$TWINCHAIN_FABRIC_CA")/fabric-ca-client" \
    "$(command -v fabric-ca-client || true)" "$cache/fabric-ca-client"; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return; fi
  done
  command -v go >/dev/null || return 1
  log "building fabric-ca-client 1.5.15 into $cache (once)"
  tmp="$(mktemp -d)"
  (
    cd "$tmp"
    printf 'module fabricca.build\n\ngo 1.26\n\nrequire github.com/hyperledger/fabric-ca v1.5.15\n' >go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/hyperledger/fabric-ca/cmd/fabric-ca-client"\n' >tools.go
    GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
    GOFLAGS=-mod=mod GOBIN="$cache" go install github.com/hyperledger/fabric-ca/cmd/fabric-ca-client
  ) >&2 || return 1
  rm -rf "$tmp"
  echo "$cache/fabric-ca-client"
}

# enroll ID ROLE DIR: registers a client identity of Org1 whose ECert carries
# twin.role=ROLE and writes its certificate and key to DIR.
enroll() {
  local id="$1" role="$2" dir="$3" client="$4" url="http://$HOST:$(ca_port 1)" home="$STATE/ca-client"
  local out
  out="$("$client" register -u "$url" --caname ca-org1 -H "$home/registrar" --id.name "$id" \
    --id.secret "$id-pw" --id.type client --id.affiliation org1 --id.attrs "twin.role=$role:ecert" 2>&1)" \
    || case "$out" in *"already registered"*) ;; *) echo "$out" >>"$STATE/logs/enroll.log"; return 1 ;; esac
  rm -rf "$home/$id"
  "$client" enroll -u "http://$id:$id-pw@$HOST:$(ca_port 1)" --caname ca-org1 -H "$home/$id" \
    >>"$STATE/logs/enroll.log" 2>&1 || return 1
  mkdir -p "$dir"
  cp "$home/$id/msp/signcerts/cert.pem" "$dir/cert.pem"
  cp "$(ls "$home/$id"/msp/keystore/*_sk | head -n 1)" "$dir/key.pem"
  chmod 600 "$dir/key.pem"
}

# issue_identities: without a Fabric CA, the same identities signed by
# Org1's cryptogen CA key (fabric-enroll issue), carrying twin.role.
issue_identities() {
  local tool="$STATE/bin/fabric-enroll" cadir="$crypto/peerOrganizations/$(org_dom 1)/ca" role
  mkdir -p "$STATE/bin"
  (cd "$repo" && go build -o "$tool" ./tools/fabric-enroll) >&2 || die "could not build tools/fabric-enroll"
  for spec in twin-service:service $(for role in admin asset_manager security maintenance ml_engineer ml_lead compliance auditor service gateway; do echo "test-$role:$role"; done); do
    "$tool" issue -ca-cert "$(ls "$cadir"/*-cert.pem)" -ca-key "$cadir/priv_sk" -msp Org1MSP \
      -out "$STATE/identities" -id "${spec%%:*}" -role "${spec##*:}" >>"$STATE/logs/enroll.log" 2>&1 \
      || die "issue ${spec%%:*} failed; see $STATE/logs/enroll.log"
  done
  log "issued twin-service and test-<role> identities with twin.role from Org1's CA key in $STATE/identities"
  smoke_test_role
}

# issue_org2_identities: with two orgs, Org2's twin-service and test-<role>
# identities (twin.role) from Org2's cryptogen CA key, in $STATE/identities-org2:
# the second organisation of the custody tests.
issue_org2_identities() {
  [ "$NORGS" -ge 2 ] || return 0
  local tool="$STATE/bin/fabric-enroll" cadir="$crypto/peerOrganizations/$(org_dom 2)/ca"
  mkdir -p "$STATE/bin"
  [ -x "$tool" ] || (cd "$repo" && go build -o "$tool" ./tools/fabric-enroll) >&2 || die "could not build tools/fabric-enroll"
  for spec in twin-service:service test-asset_manager:asset_manager test-service:service test-auditor:auditor test-security:security; do
    "$tool" issue -ca-cert "$(ls "$cadir"/*-cert.pem)" -ca-key "$cadir/priv_sk" -msp Org2MSP \
      -out "$STATE/identities-org2" -id "${spec%%:*}" -role "${spec##*:}" >>"$STATE/logs/enroll.log" 2>&1 \
      || die "issue Org2 ${spec%%:*} failed; see $STATE/logs/enroll.log"
  done
  log "issued Org2 identities with twin.role from Org2's CA key in $STATE/identities-org2"
}

enroll_identities() {
  issue_org2_identities
  [ -n "${TWINCHAIN_FABRIC_CA:-}" ] || { issue_identities; return 0; }
  local client role
  client="$(ca_client)" || { log "no fabric-ca-client: identities not enrolled"; return 0; }
  "$client" enroll -u "http://admin:adminpw@$HOST:$(ca_port 1)" --caname ca-org1 \
    -H "$STATE/ca-client/registrar" >>"$STATE/logs/enroll.log" 2>&1 || die "enroll the CA registrar failed; see $STATE/logs/enroll.log"
  enroll twin-service service "$STATE/identities/twin-service.service" "$client" || die "enroll twin-service failed; see $STATE/logs/enroll.log"
  for role in admin asset_manager security maintenance ml_engineer ml_lead compliance auditor service gateway; do
    enroll "test-$role" "$role" "$STATE/identities/test-$role.$role" "$client" || die "enroll test-$role failed"
  done
  log "enrolled twin-service and test-<role> identities with twin.role in $STATE/identities"
  smoke_test_role
}

# smoke_test_role queries as the enrolled test-auditor: the chaincode must
# read its role from the ECert and answer (no anchor yet: [not_found]).
smoke_test_role() {
  local m="$STATE/msp-test-auditor" out
  rm -rf "$m"
  cp -r "$crypto/peerOrganizations/$(org_dom 1)/users/User1@$(org_dom 1)/msp" "$m"
  rm -f "$m"/signcerts/* "$m"/keystore/*
  cp "$STATE/identities/test-auditor.auditor/cert.pem" "$m/signcerts/cert.pem"
  cp "$STATE/identities/test-auditor.auditor/key.pem" "$m/keystore/priv_sk"
  out="$(as_admin 1 env CORE_PEER_MSPCONFIGPATH="$m" "$FABRIC_BIN/peer" chaincode query -C "$CHANNEL" \
    -n "$CC_NAME" -c '{"Args":["AnchorHead","{}"]}' 2>&1 || true)"
  case "$out" in
    *"[not_found]"*) log "smoke test: an enrolled auditor is recognised by its twin.role" ;;
    *) log "smoke test output: $out"; die "the chaincode did not recognise the enrolled auditor" ;;
  esac
}

# write_env records what a client needs, under the names the fabricledger
# tests read; `. network.env` exports them.
write_env() {
  local u1="$crypto/peerOrganizations/$(org_dom 1)/users/User1@$(org_dom 1)/msp" cert key
  cert="$(ls "$u1"/signcerts/*.pem)" key="$u1/keystore/priv_sk"
  if [ -f "$STATE/identities/twin-service.service/cert.pem" ]; then
    cert="$STATE/identities/twin-service.service/cert.pem" key="$STATE/identities/twin-service.service/key.pem"
  fi
  {
    echo "export FABRIC_BIN=$FABRIC_BIN"
    echo "export TWINCHAIN_FABRIC_CHANNEL=$CHANNEL"
    echo "export TWINCHAIN_FABRIC_CHANNEL_PREFIX=$CHANNEL"
    echo "export TWINCHAIN_FABRIC_TEST_CHANNELS=$NTEST"
    echo "export TWINCHAIN_FABRIC_CHAINCODE=$CC_NAME"
    echo "export TWINCHAIN_FABRIC_PEER=$HOST:$(peer_port 1)"
    echo "export TWINCHAIN_FABRIC_PEER_HOST=peer0.$(org_dom 1)"
    echo "export TWINCHAIN_FABRIC_TLS_CA=$(peer_dir 1)/tls/ca.crt"
    echo "export TWINCHAIN_FABRIC_MSP=Org1MSP"
    echo "export TWINCHAIN_FABRIC_CERT=$cert"
    echo "export TWINCHAIN_FABRIC_KEY=$key"
    echo "export TWINCHAIN_FABRIC_PACKAGE_ID=$(cat "$STATE/artifacts/package-id")"
    if [ -d "$STATE/identities" ]; then
      echo "export TWINCHAIN_FABRIC_IDENTITIES=$STATE/identities"
    fi
    if [ -d "$STATE/identities-org2" ]; then
      echo "export TWINCHAIN_FABRIC_ORG2_PEER=$HOST:$(peer_port 2)"
      echo "export TWINCHAIN_FABRIC_ORG2_PEER_HOST=peer0.$(org_dom 2)"
      echo "export TWINCHAIN_FABRIC_ORG2_TLS_CA=$(peer_dir 2)/tls/ca.crt"
      echo "export TWINCHAIN_FABRIC_ORG2_IDENTITIES=$STATE/identities-org2"
    fi
    if [ -n "${TWINCHAIN_FABRIC_CA:-}" ]; then
      echo "export TWINCHAIN_FABRIC_CA_URL=http://$HOST:$(ca_port 1)"
      echo "export TWINCHAIN_FABRIC_CA_NAME=ca-org1"
      echo "export TWINCHAIN_FABRIC_CA_CERT=$(ls "$crypto/peerOrganizations/$(org_dom 1)/ca/"*-cert.pem)"
    fi
  } >"$STATE/network.env"
}

up() {
  check_inputs
  [ ! -d "$STATE/pids" ] || [ -z "$(ls -A "$STATE/pids" 2>/dev/null)" ] || die "already up (run down first): $STATE"
  local fresh=true
  if [ -d "$crypto" ]; then
    [ -f "$STATE/deployed" ] || die "$STATE holds a network whose setup did not finish: run clean first"
    fresh=false
    log "reusing $STATE"
  fi
  mkdir -p "$STATE"
  # A failed up leaves nothing running (its state stays for a look).
  trap 'rc=$?; if [ "$rc" -ne 0 ]; then log "up failed: stopping what it started; clean starts over"; down; fi' EXIT
  if $fresh; then
    gen_crypto
    gen_channel_block
  fi
  peer_config "$(ccaas_builder)"
  start_orderer
  wait_healthy orderer "$orderer_ops"
  for o in $(orgs); do start_peer "$o"; done
  for o in $(orgs); do wait_healthy "peer$o" "$(peer_ops "$o")"; done
  if $fresh; then
    for ch in $(channels); do create_channel "$ch"; done
    install_chaincode
  fi
  start chaincode env CHAINCODE_ID="$(cat "$STATE/artifacts/package-id")" \
    CHAINCODE_SERVER_ADDRESS="$HOST:$cc_port" "$(cc_binary)"
  if $fresh; then
    for ch in $(channels); do define_chaincode "$ch"; done
  fi
  start_ca
  if $fresh; then
    enroll_identities
    touch "$STATE/deployed"
  fi
  smoke_test
  write_env
  trap - EXIT
  log "up; client settings in $STATE/network.env"
}

down() {
  local f pid
  [ -d "$STATE/pids" ] || { log "nothing running"; return 0; }
  for f in "$STATE"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f")"
    # Each process leads its own session (setsid); end that group only.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$f"
    log "stopped $(basename "$f" .pid)"
  done
}

# alive PID: the process runs (a zombie nobody reaped does not).
alive() {
  kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}

# status: one line per process this script started; 1 if one is not running.
status() {
  local f pid rc=0
  [ -d "$STATE/pids" ] && [ -n "$(ls -A "$STATE/pids" 2>/dev/null)" ] || { log "nothing running ($STATE)"; return 1; }
  for f in "$STATE"/pids/*.pid; do
    pid="$(cat "$f")"
    if alive "$pid"; then
      echo "$(basename "$f" .pid) running (pid $pid)"
    else
      echo "$(basename "$f" .pid) NOT running (was pid $pid; log $STATE/logs/$(basename "$f" .pid).log)"
      rc=1
    fi
  done
  return "$rc"
}

# restart_chaincode: stops the chaincode process if it runs and starts it
# again under the same package id (peers reconnect to it by address).
restart_chaincode() {
  [ -f "$STATE/artifacts/package-id" ] || die "no network in $STATE (run up first)"
  local f="$STATE/pids/chaincode.pid" pid
  if [ -f "$f" ]; then
    pid="$(cat "$f")"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$f"
  fi
  start chaincode env CHAINCODE_ID="$(cat "$STATE/artifacts/package-id")" \
    CHAINCODE_SERVER_ADDRESS="$HOST:$cc_port" "$(cc_binary)"
  smoke_test
}

# Sourcing the script (for a look at its functions) runs nothing.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

case "${1:-}" in
  up) up ;;
  down) down ;;
  clean) down; rm -rf "$STATE"; log "removed $STATE" ;;
  env) cat "$STATE/network.env" ;;
  status) status ;;
  restart-chaincode) restart_chaincode ;;
  *) echo "usage: $0 up|down|clean|env|status|restart-chaincode" >&2; exit 2 ;;
esac
