"""Freshness: from publish to visible in `customer_sv` and through the API.

Starts the local Pub/Sub and MongoDB-wire servers (idempotent), the streaming
pipeline (`run_pipeline.py --streaming`, BundleBasedDirectRunner) and the API
in subprocesses, on a fresh database and fresh topics. It seeds --customers
customers (a Salesforce contact and a HubSpot contact each) and waits until
every one is visible, then publishes at --rate events/s for --duration s a
mix of Salesforce phone updates, Magento orders and HubSpot page views for
random customers. Each event leaves a mark that only grows per customer
(phone number = event number, order count, last viewed time), so two
watchers polling every --poll_ms (one reading `customer_sv`, one the API's
list) see when each event became visible. Baseline, same run: a plain
subscriber on the same topics (the transport's own delay).

    .venv/bin/python bench/freshness.py --rate 500 --duration 30

Delays are measured from just before the publish call to the end of the
first poll that shows the event (an upper bound, off by at most one poll).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict, deque
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pymongo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from singleview.io.pubsub import ensure_topic_and_subscription  # noqa: E402
from singleview.samples.generator import ORDER_SCHEMA, decimal_bytes, dumps, iso  # noqa: E402

PROJECT = "singleview-bench"
SOURCES = ("crm", "orders", "marketing", "pageviews")
KINDS = ("crm", "orders", "pageviews")
KEY = "bench-freshness-key"


def email_of(n: int) -> str:
    return f"fresh{n:05d}@example.com"


def contact_id(n: int) -> str:
    return f"003F{n:011d}"


def hubspot_id(n: int) -> int:
    return 180000000000 + n


# --- events in the real wire formats, each with its mark -------------------------

def salesforce(n: int, seq: int, change: str, fields: dict) -> bytes:
    ms = int(time.time() * 1000)
    header = {"entityName": "Contact", "recordIds": [contact_id(n)], "changeType": change,
              "commitTimestamp": ms, "commitNumber": seq, "sequenceNumber": 1, "changedFields": list(fields)}
    return dumps({"payload": {"ChangeEventHeader": header, "LastModifiedDate": iso(ms), **fields}})


def phone_update(n: int, seq: int) -> tuple[bytes, int]:
    return salesforce(n, seq, "UPDATE", {"Phone": f"+1 555 {seq}"}), seq


def new_order(n: int, seq: int, count: int) -> tuple[bytes, int]:
    ms = int(time.time() * 1000)
    after = {"entity_id": seq, "increment_id": f"{seq:09d}", "customer_email": email_of(n),
             "customer_firstname": "Fresh", "customer_lastname": str(n), "status": "pending", "state": "new",
             "grand_total": decimal_bytes("19.9900"), "subtotal": decimal_bytes("19.9900"),
             "order_currency_code": "USD", "created_at": iso(ms)[:-5] + "Z", "updated_at": ms}
    payload = {"before": None, "after": after, "op": "c", "ts_ms": ms,
               "source": {"connector": "mysql", "name": "magento", "ts_ms": ms, "snapshot": "false",
                          "db": "magento", "table": "sales_order", "file": "mysql-bin.000001",
                          "pos": seq, "row": 0}}
    return dumps({"schema": ORDER_SCHEMA, "payload": payload}), count


def page_view(n: int, seq: int) -> tuple[bytes, int]:
    ms = int(time.time() * 1000)
    return dumps({"objectType": "CONTACT", "objectId": str(hubspot_id(n)), "eventType": "e_visited_page",
                  "occurredAt": iso(ms), "id": f"pv-{seq}",
                  "properties": {"hs_url": "https://shop.example.com/category/shoes/runner-2",
                                 "hs_title": "Runner 2"}}), ms


def seed_messages(n: int, seq: int) -> dict[str, bytes]:
    ms = int(time.time() * 1000)
    contact = {"eventId": seq, "subscriptionId": 1, "portalId": 1, "occurredAt": ms, "objectId": hubspot_id(n)}
    return {"crm": salesforce(n, seq, "CREATE", {"Email": email_of(n), "Phone": "+1 555 0",
                                                 "Name": {"FirstName": "Fresh", "LastName": str(n)}}),
            "marketing": dumps([dict(contact, subscriptionType="contact.creation"),
                                dict(contact, eventId=seq + 1, subscriptionType="contact.propertyChange",
                                     propertyName="email", propertyValue=email_of(n))])}


def marks(doc: dict) -> dict[str, int]:
    """The per-customer marks a view shows (API documents hold ISO strings, MongoDB datetimes)."""
    crm = doc.get("crm_info") or {}
    stats = doc.get("stats") or {}
    viewed = stats.get("last_viewed_at")
    if isinstance(viewed, str):
        viewed = datetime.fromisoformat(viewed.replace("Z", "+00:00"))
    phone = (crm.get("phone") or "").rsplit(" ", 1)[-1]
    return {"crm": int(phone) if phone.isdigit() else -1,
            "orders": stats.get("order_count") or 0,
            "pageviews": int(viewed.timestamp() * 1000) if viewed else -1}


# --- watchers --------------------------------------------------------------------

class Watcher(threading.Thread):
    """Polls all views, resolving pending events whose mark a view now shows."""

    def __init__(self, name: str, fetch, poll_s: float):
        super().__init__(daemon=True, name=name)
        self.fetch = fetch
        self.poll_s = poll_s
        self.pending: dict[tuple[str, str], deque] = defaultdict(deque)  # (email, kind) -> (mark, t0, seq)
        self.delays: dict[int, float] = {}
        self.seen: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.poll_times: list[float] = []

    def expect(self, email: str, kind: str, mark: int, t0: float, seq: int) -> None:
        with self.lock:
            self.pending[(email, kind)].append((mark, t0, seq))

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.time()
            try:
                docs = self.fetch()
            except Exception as error:  # a slow or restarting server: count it as not yet visible
                print(f"  {self.name}: {error!r}", flush=True)
                time.sleep(self.poll_s)
                continue
            now = time.time()
            self.poll_times.append(now - started)
            with self.lock:
                for doc in docs:
                    shown = marks(doc)
                    self.seen[doc["email"]] = shown
                    for kind in KINDS:
                        queue = self.pending.get((doc["email"], kind))
                        while queue and queue[0][0] <= shown[kind]:
                            _, t0, seq = queue.popleft()
                            self.delays[seq] = now - t0
            time.sleep(max(0.0, self.poll_s - (time.time() - started)))

    def missing(self) -> int:
        with self.lock:
            return sum(len(q) for q in self.pending.values())


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49]:.3f} s  p95 {q[94]:.3f} s  p99 {q[98]:.3f} s  max {max(values):.3f} s"


# --- processes -------------------------------------------------------------------

def start(command: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def stop(processes: list[subprocess.Popen]) -> None:
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of publishing")
    parser.add_argument("--customers", type=int, default=200, help="at most 200 (one API page)")
    parser.add_argument("--window_seconds", type=float, default=1.0)
    parser.add_argument("--watched", type=int, default=20,
                        help="customers whose events are timed (polling every view would load the server)")
    parser.add_argument("--poll_ms", type=float, default=100.0)
    parser.add_argument("--api_port", type=int, default=int(os.environ.get("SINGLEVIEW_BENCH_API_PORT", "8131")))
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last events")
    parser.add_argument("--logs", type=Path, default=Path("/tmp") / f"singleview-freshness-{os.getpid()}")
    parser.add_argument("--pipeline_arg", action="append", default=[], help="extra run_pipeline.py argument")
    args = parser.parse_args(argv)
    if not 1 <= args.customers <= 200:
        parser.error("--customers must be 1..200")

    env = dict(os.environ, PYTHON=sys.executable)
    env.setdefault("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    subprocess.run([str(ROOT / "scripts" / "pubsub.sh"), "start"], check=True, env=env, stdout=subprocess.DEVNULL)
    mongo_uri = os.environ.get("MONGODB_URI")
    if not mongo_uri:
        subprocess.run([str(ROOT / "scripts" / "mongo.sh"), "start"], check=True, env=env, stdout=subprocess.DEVNULL)
        mongo_uri = f"mongodb://{os.environ.get('SINGLEVIEW_MONGO_ADDR', '127.0.0.1:27017')}"
    args.logs.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    database = f"bench_fresh_{run_id}"
    topics = {s: f"fresh-{run_id}-{s}" for s in SOURCES}
    for source, topic in topics.items():
        ensure_topic_and_subscription(PROJECT, topic, topic)
        ensure_topic_and_subscription(PROJECT, topic, f"{topic}-floor")

    from google.cloud import pubsub_v1
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=100, max_latency=0.005))
    subscriber = pubsub_v1.SubscriberClient()
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    collection = client[database]["customer_sv"]
    api = httpx.Client(base_url=f"http://127.0.0.1:{args.api_port}", headers={"Authorization": f"Bearer {KEY}"},
                       timeout=10)
    watched = [email_of(n) for n in range(min(args.watched, args.customers))]
    projection = {"email": 1, "crm_info.phone": 1, "stats": 1}
    in_db = Watcher("customer_sv", lambda: list(collection.find({"_id": {"$in": watched}}, projection)),
                    args.poll_ms / 1000)
    query = {"_q": json.dumps({"_id": {"$in": watched}}), "_l": 200, "_p": "email,crm_info,stats"}
    via_api = Watcher("api", lambda: api.get("/customers-sv", params=query).raise_for_status().json()["items"],
                      args.poll_ms / 1000)
    floor: dict[int, float] = {}
    sent_at: dict[int, float] = {}

    def on_floor(message) -> None:
        seq = int(message.attributes.get("seq", "-1"))
        if seq in sent_at:
            floor[seq] = time.time() - sent_at[seq]
        message.ack()

    processes = []
    streams = []
    try:
        processes.append(start([sys.executable, "run_pipeline.py", "--streaming", "--mongo_uri", mongo_uri,
                                "--database", database, "--window_seconds", str(args.window_seconds),
                                *[f"--input={s}=pubsub://projects/{PROJECT}/subscriptions/{t}"
                                  for s, t in topics.items()], *args.pipeline_arg],
                               args.logs / "pipeline.log", env))
        processes.append(start([sys.executable, "-m", "singleview.serving", "--port", str(args.api_port),
                                "--mongo_uri", mongo_uri, "--database", database, "--log-level", "warning"],
                               args.logs / "api.log", dict(env, SINGLEVIEW_API_KEYS=KEY)))
        streams = [subscriber.subscribe(subscriber.subscription_path(PROJECT, f"{t}-floor"), on_floor)
                   for t in topics.values()]

        def send(source: str, data: bytes, seq: int):
            return publisher.publish(publisher.topic_path(PROJECT, topics[source]), data,
                                     source=source, seq=str(seq))

        seq = 0
        for n in range(args.customers):
            for source, data in seed_messages(n, seq).items():
                send(source, data, seq)
            seq += 2
        print(f"seeding {args.customers} customers into {database}; logs in {args.logs}", flush=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if collection.count_documents({"marketing_preferences.hubspot_id": {"$exists": True},
                                           "crm_info": {"$exists": True}}) == args.customers:
                break
            if any(p.poll() is not None for p in processes):
                raise SystemExit(f"a process ended early; see {args.logs}")
            time.sleep(0.5)
        else:
            raise SystemExit(f"seeded customers not all visible after 120 s; see {args.logs}")
        while True:
            try:
                api.get("/readyz").raise_for_status()
                break
            except httpx.HTTPError:
                if processes[1].poll() is not None or time.time() > deadline:
                    raise SystemExit(f"the API did not start; see {args.logs}/api.log")
                time.sleep(0.2)
        in_db.start()
        via_api.start()

        rng = random.Random(1)
        orders = defaultdict(int)
        final: dict[str, dict[str, int]] = defaultdict(dict)
        total = int(args.rate * args.duration)
        print(f"publishing {total} events at {args.rate:g}/s for {args.duration:g} s", flush=True)
        began = time.time()
        for i in range(total):
            time.sleep(max(0.0, began + i / args.rate - time.time()))
            seq += 1
            n = rng.randrange(args.customers)
            kind = KINDS[i % len(KINDS)]
            if kind == "crm":
                data, mark = phone_update(n, seq)
            elif kind == "orders":
                orders[n] += 1
                data, mark = new_order(n, seq, orders[n])
            else:
                data, mark = page_view(n, seq)
            final[email_of(n)][kind] = mark
            t0 = time.time()
            sent_at[seq] = t0
            if n < len(watched):
                for watcher in (in_db, via_api):
                    watcher.expect(email_of(n), kind, mark, t0, seq)
            send(kind, data, seq)
        published_in = time.time() - began
        print(f"published in {published_in:.1f} s; waiting up to {args.drain:g} s for the rest", flush=True)
        deadline = time.time() + args.drain
        all_visible = None
        while time.time() < deadline and processes[0].poll() is None:
            shown = {d["email"]: marks(d) for d in collection.find({}, projection)}
            if all(shown.get(e, {}).get(k, -1) >= m for e, kinds in final.items() for k, m in kinds.items()):
                all_visible = time.time()
                break
            time.sleep(0.5)
        while time.time() < deadline and (in_db.missing() or via_api.missing()):
            time.sleep(0.2)
        for watcher in (in_db, via_api):
            watcher.stop.set()
            watcher.join()

        print(f"\nrate {args.rate:g}/s, {args.duration:g} s, {args.customers} customers ({len(watched)} timed), window "
              f"{args.window_seconds:g} s, poll {args.poll_ms:g} ms; events {total} "
              f"(published at {total / published_in:.0f}/s)")
        print(f"  pubsub floor  : {percentiles(list(floor.values()))}  ({len(floor)} received)")
        for watcher in (in_db, via_api):
            print(f"  {watcher.name:<13} : {percentiles(list(watcher.delays.values()))}  ({len(watcher.delays)} "
                  f"visible, {watcher.missing()} not; poll p50 {statistics.median(watcher.poll_times) * 1000:.0f} ms)")
        for name in ("customer_sv", "ecommerce_orders_projection", "marketing_pageviews_projection"):
            stats = client[database].command("collStats", name)
            print(f"  {name}: {stats['count']} documents, {stats['size'] / max(stats['count'], 1) / 1024:.1f} KiB each")
        if all_visible is None:
            print(f"  sustained     : not every event visible {args.drain:g} s after the last publish")
            return 1
        print(f"  sustained     : {total / (all_visible - began):.0f} events/s (all {total} visible "
              f"{all_visible - began - published_in:.1f} s after the last publish)")
        return 0 if not in_db.missing() and not via_api.missing() else 1
    finally:
        for stream in streams:
            stream.cancel()
        stop(processes)
        subscriber.close()
        api.close()
        client.drop_database(database)
        client.close()


if __name__ == "__main__":
    sys.exit(main())
