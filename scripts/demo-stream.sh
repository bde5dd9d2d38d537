#!/usr/bin/env bash
# Streaming end to end: local Pub/Sub + MongoDB-wire server, the streaming
# pipeline and the API; generated CDC published at RATE messages/s; the
# single views shown changing every second for DURATION seconds (or until
# Ctrl-C). Everything this script started is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RATE="${RATE:-50}"
DURATION="${DURATION:-60}"
CUSTOMERS="${DEMO_CUSTOMERS:-100}"
PORT="${DEMO_PORT:-8000}"
DB="${DEMO_DB:-singleview_stream_demo}"
PROJECT=singleview-local
PREFIX="demo-$$-"
LOGS=.data/demo-stream
export PUBSUB_EMULATOR_HOST="${PUBSUB_EMULATOR_HOST:-127.0.0.1:8085}"
MONGO_ADDR="${SINGLEVIEW_MONGO_ADDR:-127.0.0.1:27017}"
URI="${MONGODB_URI:-mongodb://$MONGO_ADDR}"
SOURCES=(crm orders order_items marketing pageviews)
mkdir -p "$LOGS"

answers() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
PIDS=()
STARTED=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "== stopping what the demo started"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for server in "${STARTED[@]}"; do "scripts/$server.sh" stop; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== 1. servers: Pub/Sub on $PUBSUB_EMULATOR_HOST, MongoDB wire at $URI"
answers "$PUBSUB_EMULATOR_HOST" || STARTED+=(pubsub)
scripts/pubsub.sh start >/dev/null
if [ -z "${MONGODB_URI:-}" ]; then
  answers "$MONGO_ADDR" || STARTED+=(mongo)
  scripts/mongo.sh start >/dev/null
fi
$PY - "$URI" "$DB" "$PROJECT" "$PREFIX" "${SOURCES[@]}" <<'PYEOF'
import sys
import pymongo
from singleview.io.pubsub import ensure_topic_and_subscription
uri, db, project, prefix, *sources = sys.argv[1:]
pymongo.MongoClient(uri).drop_database(db)
for source in sources:
    ensure_topic_and_subscription(project, f"{prefix}{source}", f"{prefix}{source}")
PYEOF

echo "== 2. streaming pipeline (logs: $LOGS/pipeline.log) and API on http://127.0.0.1:$PORT"
INPUTS=()
for s in "${SOURCES[@]}"; do INPUTS+=(--input "$s=pubsub://projects/$PROJECT/subscriptions/$PREFIX$s"); done
$PY run_pipeline.py --streaming --mongo_uri "$URI" --database "$DB" "${INPUTS[@]}" > "$LOGS/pipeline.log" 2>&1 &
PIDS+=($!)
SINGLEVIEW_API_KEYS=demo-key $PY -m singleview.serving --port "$PORT" --mongo_uri "$URI" --database "$DB" \
  --log-level warning > "$LOGS/api.log" 2>&1 &
PIDS+=($!)

echo "== 3. publishing CDC for $CUSTOMERS customers at $RATE messages/s"
$PY -m singleview.samples publish --customers "$CUSTOMERS" --rate "$RATE" --project "$PROJECT" \
  --topic_prefix "$PREFIX" > "$LOGS/publish.log" 2>&1 &
PIDS+=($!)

echo "   portal: http://127.0.0.1:$PORT/portal (API key: demo-key); Ctrl-C stops the demo"
$PY - "$URI" "$DB" "$DURATION" <<'PYEOF' &
import os
import signal
import sys
import time
import pymongo
for stop in (signal.SIGINT, signal.SIGTERM):
    signal.signal(stop, lambda *_: os._exit(0))
uri, db, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])
views = pymongo.MongoClient(uri, tz_aware=True)[db]["customer_sv"]
fields = {"name": 1, "_rev": 1, "stats.order_count": 1, "stats.lifetime_value": 1,
          "marketing_preferences.browsing_history": 1}
start = time.monotonic()
while time.monotonic() - start < duration:
    busiest = list(views.find({}, fields).sort([("_rev", -1), ("_id", 1)]).limit(3))
    print(f"\n[{time.monotonic() - start:5.0f} s] {views.count_documents({})} single views; most changed:")
    for doc in busiest:
        stats = doc.get("stats") or {}
        pages = len((doc.get("marketing_preferences") or {}).get("browsing_history") or [])
        print(f"  {doc['_id']:<42} rev {doc['_rev']:>3}  {doc.get('name') or '':<16} orders {stats.get('order_count', 0)}"
              f"  value {stats.get('lifetime_value') or {}}  pages viewed {pages}")
    time.sleep(1)
PYEOF
WATCH=$!
PIDS+=($WATCH)
wait "$WATCH"
