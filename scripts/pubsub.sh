#!/usr/bin/env bash
# Start or stop the local Pub/Sub server (Google's pstest, built from tools/pubsub).
# Idempotent. When PUBSUB_EMULATOR_HOST already answers (the official
# emulator, say), there is nothing to start.
set -euo pipefail
cd "$(dirname "$0")/.."
ADDR="${PUBSUB_EMULATOR_HOST:-127.0.0.1:8085}"
BIN=".data/bin/pubsub"
PIDFILE=".data/pubsub.pid"
LOG=".data/pubsub.log"

answers() { (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}") 2>/dev/null; }

start() {
  if answers; then echo "Pub/Sub server already up on $ADDR"; echo "export PUBSUB_EMULATOR_HOST=$ADDR"; return; fi
  if [ ! -x "$BIN" ] || [ tools/pubsub/main.go -nt "$BIN" ] || [ tools/pubsub/go.mod -nt "$BIN" ]; then
    mkdir -p .data/bin
    (cd tools/pubsub && go build -o "../../$BIN" .)
  fi
  setsid "$BIN" -addr "$ADDR" >"$LOG" 2>&1 </dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 100); do
    if answers; then echo "export PUBSUB_EMULATOR_HOST=$ADDR"; return; fi
    sleep 0.1
  done
  echo "Pub/Sub server did not start; see $LOG" >&2; exit 1
}

stop() {
  if [ -f "$PIDFILE" ]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE"; echo "Pub/Sub server stopped"; fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
