#!/usr/bin/env bash
# End to end on local defaults: sample CDC -> batch pipeline -> customer_sv -> API.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DIR=.data/demo
DB="${DEMO_DB:-singleview_demo}"
CUSTOMERS="${DEMO_CUSTOMERS:-200}"
PORT="${DEMO_PORT:-8000}"
URI="${MONGODB_URI:-mongodb://${SINGLEVIEW_MONGO_ADDR:-127.0.0.1:27017}}"

echo "== 1. sample CDC for $CUSTOMERS customers in $DIR"
rm -rf "$DIR"
$PY -m singleview.samples --customers "$CUSTOMERS" --out "$DIR" --seed 7

echo "== 2. batch pipeline on the DirectRunner into $URI, database $DB"
$PY - "$URI" "$DB" <<'PYEOF'
import sys, pymongo
pymongo.MongoClient(sys.argv[1]).drop_database(sys.argv[2])
PYEOF
$PY run_pipeline.py --mongo_uri "$URI" --database "$DB" \
  --input crm="$DIR/crm.jsonl" --input orders="$DIR/orders.jsonl" \
  --input order_items="$DIR/order_items.jsonl" --input marketing="$DIR/marketing.jsonl" \
  --input pageviews="$DIR/pageviews.jsonl"

echo "== 3. API on http://127.0.0.1:$PORT (key: demo-key)"
SINGLEVIEW_API_KEYS=demo-key $PY -m singleview.serving --port "$PORT" --mongo_uri "$URI" --database "$DB" \
  > .data/demo-api.log 2>&1 &
API=$!
trap 'kill $API 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
EMAIL=$($PY - "$URI" "$DB" <<'PYEOF'
import sys, pymongo
doc = pymongo.MongoClient(sys.argv[1])[sys.argv[2]].customer_sv.find_one(
    {"crm_info": {"$exists": True}, "order_history.0": {"$exists": True}}, sort=[("_id", 1)])
print(doc["_id"] if doc else "")
PYEOF
)
show() {
  echo; echo "\$ curl -H 'Authorization: Bearer demo-key' 'http://127.0.0.1:$PORT$1'"
  curl -sS -H "Authorization: Bearer demo-key" "http://127.0.0.1:$PORT$1" | $PY -c '
import json, sys
text = json.dumps(json.load(sys.stdin), indent=2)
lines = text.splitlines()
print("\n".join(lines[:60]) + ("\n  ... (%d more lines)" % (len(lines) - 60) if len(lines) > 60 else ""))'
}
show "/readyz"
show "/customers-sv/count"
show "/customers-sv/$EMAIL"
show "/customers-sv?limit=2"
echo
echo "Demo done. The API keeps running only while this script does; start it yourself with:"
echo "  SINGLEVIEW_API_KEYS=demo-key $PY -m singleview.serving --database $DB"
