#!/usr/bin/env bash
# Start or stop the local MongoDB-wire server (FerretDB 1.24, SQLite backend).
# Idempotent. With MONGODB_URI set, there is nothing to start.
set -euo pipefail
cd "$(dirname "$0")/.."
ADDR="${SINGLEVIEW_MONGO_ADDR:-127.0.0.1:27017}"
# SINGLEVIEW_MONGO_DIR: where this instance keeps data, pid and log (a second
# instance, say for an outage test, needs its own).
STATE="${SINGLEVIEW_MONGO_DIR:-.data}"
DATA="$STATE/ferretdb"
BIN=".data/bin/ferretdb"
PIDFILE="$STATE/ferretdb.pid"
LOG="$STATE/ferretdb.log"
PY="${PYTHON:-.venv/bin/python}"
# SINGLEVIEW_FERRETDB_ARGS: extra launcher flags, e.g. -id-pushdown-index=false
# to measure without the _id index tools/ferretdb adds.
read -r -a EXTRA <<<"${SINGLEVIEW_FERRETDB_ARGS:-}"

ping() {
  "$PY" - "$ADDR" <<'PYEOF'
import sys, pymongo
try:
    pymongo.MongoClient(f"mongodb://{sys.argv[1]}", serverSelectionTimeoutMS=500).admin.command("ping")
except Exception:
    sys.exit(1)
PYEOF
}

build() {
  if [ ! -x "$BIN" ] || [ -n "$(find tools/ferretdb -newer "$BIN" -print -quit)" ]; then
    mkdir -p .data/bin
    (cd tools/ferretdb && go build -o "../../$BIN" .)
  fi
}

start() {
  if [ -n "${MONGODB_URI:-}" ]; then echo "MONGODB_URI is set; using $MONGODB_URI"; return; fi
  if ping; then echo "MongoDB-wire server already up on $ADDR"; return; fi
  build
  mkdir -p "$DATA"
  setsid "$BIN" -listen-addr "$ADDR" -sqlite-url "file:$DATA/?_pragma=synchronous(normal)" ${EXTRA[@]+"${EXTRA[@]}"} >"$LOG" 2>&1 </dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 100); do
    if ping; then echo "FerretDB up on mongodb://$ADDR (data in $DATA)"; return; fi
    sleep 0.1
  done
  echo "FerretDB did not answer ping; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1
}

stop() {
  if [ -f "$PIDFILE" ]; then
    pid="$(cat "$PIDFILE")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$PIDFILE"
    echo "FerretDB stopped"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  build) build ;;
  *) echo "usage: $0 start|stop|build" >&2; exit 2 ;;
esac
