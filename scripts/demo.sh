#!/usr/bin/env bash
# One-command demo: build the relay, the supervisor and the stand-in TTS
# server, start them on free loopback ports, send a TTS request through the
# relay and the tunnel, save the audio, show the tunnel's status, and stop
# everything. Output and logs go to demo-out/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN_DIR=${BIN:-bin}
OUT=demo-out
mkdir -p "$BIN_DIR" "$OUT"

pids=()  # the processes started, in order
names=() # and their names
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

step "Building tunnel-relay, tunnel-supervisor and tts-demo into $BIN_DIR/"
go build -o "$BIN_DIR/" ./cmd/tunnel-relay ./cmd/tunnel-supervisor ./cmd/tts-demo

TTS=127.0.0.1:$(free_port)
RELAY=127.0.0.1:$(free_port)
RELAY_ADMIN=127.0.0.1:$(free_port)
SUPERVISOR=127.0.0.1:$(free_port)
# 192 random bits; the relay refuses keys under 128.
TOKEN=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')

trap stop_all EXIT
trap 'exit 130' INT TERM

step "Starting tts-demo on $TTS, tunnel-relay on $RELAY (admin $RELAY_ADMIN), tunnel-supervisor on $SUPERVISOR"
start tts-demo "$BIN_DIR/tts-demo" -listen "$TTS"
wait_for tts-demo 50 curl -fsS "http://$TTS/healthz"
# The key goes through the environment: flags show in ps.
AUTH_TOKEN=$TOKEN start tunnel-relay "$BIN_DIR/tunnel-relay" -listen "$RELAY" -admin-listen "$RELAY_ADMIN"
wait_for tunnel-relay 50 bash -c "exec 3<>/dev/tcp/${RELAY%:*}/${RELAY#*:}"
TUNNEL_API_KEY=$TOKEN start tunnel-supervisor "$BIN_DIR/tunnel-supervisor" \
  -relay-url "ws://$RELAY/tunnel" -forward "http://$TTS" -listen "$SUPERVISOR" -retry-delay 1s

step "Waiting for the tunnel to be healthy"
wait_for "a healthy tunnel" 100 curl -fsS "http://$SUPERVISOR/health"
curl -sS "http://$SUPERVISOR/health"

step "POST http://$RELAY/v1/tts through the tunnel"
# The audio streams: its first bytes arrive long before the last.
curl -fsS -X POST "http://$RELAY/v1/tts" -H 'Content-Type: application/json' \
  -d '{"text":"hello from the tunnel"}' -o "$OUT/hello.wav" \
  -w 'first byte after %{time_starttransfer}s, last after %{time_total}s\n'
if [[ $(head -c 4 "$OUT/hello.wav") != RIFF ]]; then
  echo "$OUT/hello.wav is not a WAV file" >&2
  exit 1
fi
echo "Saved $OUT/hello.wav: $(wc -c <"$OUT/hello.wav") bytes"

step "The relay's admin /health (on its own listener, not the public one)"
curl -fsS "http://$RELAY_ADMIN/health"

step "tunnel-supervisor status"
"$BIN_DIR/tunnel-supervisor" status -addr "$SUPERVISOR"
