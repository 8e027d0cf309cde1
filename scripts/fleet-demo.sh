#!/usr/bin/env bash
# Fleet demo: build the relay, the supervisor and the stand-in TTS server,
# start etcd and three relays A, B and C in one fleet on free loopback ports,
# connect a supervisor to relay A only, then send TTS requests through C and
# B: each is handed over to A, which has the tunnel's session. Shows the
# nodes' admin /health (the session is at A alone) and C's fleet hop count,
# and stops everything. Output and logs go to demo-out/fleet/.
#
# FLEET_PROVIDER=automanaged runs the same fleet without etcd: the nodes
# poll one another at their internal addresses (-cluster-peers).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN_DIR=${BIN:-bin}
OUT=demo-out/fleet
PROVIDER=${FLEET_PROVIDER:-etcd}

case $PROVIDER in
etcd)
  if ! command -v etcd >/dev/null 2>&1; then
    echo "fleet-demo: etcd is not installed; install it (apt-get install etcd-server)" >&2
    echo "or run the demo without etcd: FLEET_PROVIDER=automanaged make run-fleet" >&2
    exit 1
  fi
  ;;
automanaged) ;;
*)
  echo "fleet-demo: FLEET_PROVIDER must be etcd or automanaged, got \"$PROVIDER\"" >&2
  exit 2
  ;;
esac

mkdir -p "$BIN_DIR" "$OUT"

pids=()  # the processes started, in order
names=() # and their names
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
DEMO_TITLE="The fleet demo"

step "Building tunnel-relay, tunnel-supervisor and tts-demo into $BIN_DIR/"
go build -o "$BIN_DIR/" ./cmd/tunnel-relay ./cmd/tunnel-supervisor ./cmd/tts-demo

# The relays' addresses: public, admin, cluster (gRPC) and internal (the
# node-to-node HTTP hop). All are chosen up front: the automanaged
# provider's -cluster-peers lists every node's internal address.
NODES=(A B C)
declare -A LISTEN ADMIN CLUSTER INTERNAL
for n in "${NODES[@]}"; do
  LISTEN[$n]=127.0.0.1:$(free_port)
  ADMIN[$n]=127.0.0.1:$(free_port)
  CLUSTER[$n]=127.0.0.1:$(free_port)
  INTERNAL[$n]=127.0.0.1:$(free_port)
done
PEERS=${INTERNAL[A]},${INTERNAL[B]},${INTERNAL[C]}
TTS=127.0.0.1:$(free_port)
SUPERVISOR=127.0.0.1:$(free_port)
if [[ $PROVIDER == etcd ]]; then
  ETCD_CLIENT=127.0.0.1:$(free_port)
  ETCD_PEER=127.0.0.1:$(free_port)
  ETCD_DATA=$(mktemp -d "${TMPDIR:-/tmp}/fleet-demo-etcd.XXXXXX")
fi
# 192 random bits each; the relay refuses keys and secrets under 128.
TOKEN=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
SECRET=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')

trap stop_all EXIT
trap 'exit 130' INT TERM

# fail prints its arguments and makes the demo fail (the trap prints the logs).
fail() {
  echo "$*" >&2
  exit 1
}

# tunnels_at NODE prints the "tunnels" list of NODE's admin /health.
tunnels_at() {
  curl -fsS "http://${ADMIN[$1]}/health" | sed -n 's/.*"tunnels":\(\[[^]]*\]\|null\).*/\1/p'
}

# has_default NODE succeeds when NODE's admin /health lists the tunnel "default".
has_default() {
  [[ $(tunnels_at "$1") == *'"default"'* ]]
}

# hops NODE prints NODE's tunnel_relay_fleet_hops_total.
hops() {
  curl -fsS "http://${ADMIN[$1]}/metrics" | awk '$1 == "tunnel_relay_fleet_hops_total" { print $2 }'
}

# tts NODE FILE sends a TTS request to NODE's public address and checks
# that the answer saved in FILE is a WAV file.
tts() {
  local node=$1 file=$2
  curl -fsS -X POST "http://${LISTEN[$node]}/v1/tts" -H 'Content-Type: application/json' \
    -d "{\"text\":\"hello from the fleet, through node $node\"}" -o "$file" \
    -w "HTTP %{http_code}, first byte after %{time_starttransfer}s, last after %{time_total}s\n" ||
    fail "the request through node $node failed"
  if [[ $(head -c 4 "$file") != RIFF ]]; then
    fail "$file is not a WAV file"
  fi
  echo "Saved $file: $(wc -c <"$file") bytes"
}

if [[ $PROVIDER == etcd ]]; then
  step "Starting etcd on $ETCD_CLIENT (peer $ETCD_PEER, data in $ETCD_DATA)"
  start etcd etcd --name fleet-demo --data-dir "$ETCD_DATA" \
    --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
    --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
    --initial-cluster "fleet-demo=http://$ETCD_PEER" --initial-cluster-state new \
    --log-level warn
  wait_for etcd 100 curl -fsS "http://$ETCD_CLIENT/health"
  FLEET_FLAGS=(-cluster-provider etcd -etcd-endpoints "$ETCD_CLIENT")
else
  step "No etcd: the automanaged provider, peers $PEERS"
  FLEET_FLAGS=(-cluster-provider automanaged -cluster-peers "$PEERS")
fi

step "Starting relays A, B and C as the fleet \"demo\" ($PROVIDER provider)"
for n in "${NODES[@]}"; do
  echo "relay $n: public ${LISTEN[$n]}, admin ${ADMIN[$n]}, cluster ${CLUSTER[$n]}, internal ${INTERNAL[$n]}"
done
# The key and the cluster secret go through the environment: flags show in ps.
for n in "${NODES[@]}"; do
  AUTH_TOKEN=$TOKEN RELAY_CLUSTER_SECRET=$SECRET start "relay-$n" "$BIN_DIR/tunnel-relay" \
    -listen "${LISTEN[$n]}" -admin-listen "${ADMIN[$n]}" \
    -cluster demo "${FLEET_FLAGS[@]}" \
    -cluster-listen "${CLUSTER[$n]}" -internal-listen "${INTERNAL[$n]}"
done
for n in "${NODES[@]}"; do
  wait_for "relay $n" 100 curl -fsS "http://${ADMIN[$n]}/health"
  grep -h 'msg="Relay listening"' "$OUT/relay-$n.log" | sed "s/^/relay $n: /" || true
done

step "Starting tts-demo on $TTS and tunnel-supervisor on $SUPERVISOR, connected to relay A only"
start tts-demo "$BIN_DIR/tts-demo" -listen "$TTS"
wait_for tts-demo 50 curl -fsS "http://$TTS/healthz"
TUNNEL_API_KEY=$TOKEN start tunnel-supervisor "$BIN_DIR/tunnel-supervisor" \
  -relay-url "ws://${LISTEN[A]}/tunnel" -forward "http://$TTS" -listen "$SUPERVISOR" -retry-delay 1s

step "Waiting for the tunnel \"default\" to be connected at relay A"
wait_for "a healthy tunnel" 100 curl -fsS "http://$SUPERVISOR/health"
wait_for "the tunnel at relay A" 100 has_default A
echo "relay A admin /health: $(curl -fsS "http://${ADMIN[A]}/health")"

step "POST http://${LISTEN[C]}/v1/tts at node C, which has no session: C hands it to A"
tts C "$OUT/hello-via-C.wav"

step "The nodes' admin /health: the session is at A; B and C list no tunnel"
for n in "${NODES[@]}"; do
  echo "relay $n: $(curl -fsS "http://${ADMIN[$n]}/health")"
done
for n in B C; do
  listed=$(tunnels_at "$n")
  [[ $listed == "[]" || $listed == null ]] || fail "relay $n lists tunnels $listed, expected none"
done

step "Node C's /metrics: tunnel_relay_fleet_hops_total (requests C handed to another node)"
HOPS_C=$(hops C)
echo "relay C: tunnel_relay_fleet_hops_total ${HOPS_C:-missing}"
awk -v h="${HOPS_C:-0}" 'BEGIN { exit !(h >= 1) }' || fail "relay C made no fleet hop"

step "POST http://${LISTEN[B]}/v1/tts at node B, which has no session either"
tts B "$OUT/hello-via-B.wav"
echo "relay B: tunnel_relay_fleet_hops_total $(hops B)"

step "tunnel-supervisor status"
"$BIN_DIR/tunnel-supervisor" status -addr "$SUPERVISOR"

step "The fleet served the tunnel connected at A through B and C ($PROVIDER provider)"
