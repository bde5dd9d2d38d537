"""Freshness: from publish to visible in `customer_sv` and through the API, beside a floor.

Starts the local Pub/Sub and MongoDB-wire servers (idempotent), then runs two
phases on fresh topics and databases, each with the same publisher, watchers
and API:

- floor: a trivial writer instead of the pipeline (pull, keep each customer's
  marks, replace its document by exact `_id`), so the transport, the API and
  the watchers' own delays;
- pipeline: the streaming pipeline (`run_pipeline.py --streaming`, the
  BundleBasedDirectRunner, the project's defaults).

Each phase seeds --customers customers (a Salesforce and a HubSpot contact
each) and waits until all are visible, then a publisher publishes at --rate
events/s for --duration s a mix of Salesforce phone updates, Magento orders
and HubSpot page views for random customers. Each event leaves a mark that
only grows per customer (phone = event number, order count, last viewed
time); two watchers poll the first --watched customers every --poll_ms, one
in `customer_sv` (exact `_id` look-ups), one through `GET /customers-sv/{email}`,
and record when each mark first shows. Publisher and watchers are processes
of their own, so neither slows the other nor the thing measured.

    .venv/bin/python bench/freshness.py --rate 500 --duration 60

A delay runs from just before the publish call to the end of the first poll
that shows the event (an upper bound, off by at most one poll). "Backlog"
is how long after the last publish every event of every customer was
visible.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import queue
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pymongo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from singleview.io.pubsub import delete_topic_and_subscription, ensure_topic_and_subscription  # noqa: E402
from singleview.io.store import IdReader, Store, Write  # noqa: E402
from singleview.samples.generator import ORDER_SCHEMA, decimal_bytes, dumps, iso  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from stacks import Sampler  # noqa: E402

PROJECT = "singleview-bench"
SOURCES = ("crm", "orders", "marketing", "pageviews")
KINDS = ("crm", "orders", "pageviews")
KEY = "bench-freshness-key"
PROJECTION = {"email": 1, "crm_info.phone": 1, "stats": 1, "marketing_preferences.hubspot_id": 1}
TARGET_P99_S = 2.0


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
            "pageviews": round(viewed.timestamp() * 1000) if viewed else -1}



def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": max(values)}


def shown(values: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f} s" for k, v in values.items()) or "n/a"


# --- the publisher, in a process of its own ---------------------------------------

def publish_events(topics: dict[str, str], customers: int, watched: int, rate: float, duration: float,
                   out: str) -> None:
    """Publish at `rate` for `duration`; write what was sent (timed for watched customers) to `out`."""
    from google.cloud import pubsub_v1
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=100, max_latency=0.005))
    paths = {kind: publisher.topic_path(PROJECT, topic) for kind, topic in topics.items()}
    rng, orders, futures = random.Random(1), defaultdict(int), []
    final: dict[str, dict[str, int]] = defaultdict(dict)
    timed, total, seq = [], int(rate * duration), 10 * customers
    began = time.time()
    for i in range(total):
        time.sleep(max(0.0, began + i / rate - time.time()))
        seq, n, kind = seq + 1, rng.randrange(customers), KINDS[i % len(KINDS)]
        if kind == "crm":
            data, mark = phone_update(n, seq)
        elif kind == "orders":
            orders[n] += 1
            data, mark = new_order(n, seq, orders[n])
        else:
            data, mark = page_view(n, seq)
        final[email_of(n)][kind] = mark
        t0 = time.time()
        if n < watched:
            timed.append((email_of(n), kind, mark, t0))
        futures.append(publisher.publish(paths[kind], data, source=kind, seq=str(seq), email=email_of(n),
                                         kind=kind, mark=str(mark)))
    published_in = time.time() - began
    for future in futures:
        future.result(timeout=60)
    Path(out).write_text(json.dumps({"timed": timed, "final": final, "total": total, "began": began,
                                     "published_in": published_in}))


# --- watchers, each in a process of its own ----------------------------------------

def watch(source: str, emails: list[str], mongo_uri: str, database: str, api_url: str, poll_s: float,
          ready, stop, out: str) -> None:
    """Poll the watched customers until `stop`; write when each mark value first showed to `out`."""
    fetch = views_in_db(mongo_uri, database, emails) if source == "db" else views_via_api(api_url, emails)
    seen: dict[str, dict[str, list]] = {e: {k: [] for k in KINDS} for e in emails}
    polls, errors = [], 0
    ready.set()
    while not stop.is_set():
        started = time.time()
        try:
            docs = fetch()
        except Exception:  # a slow or restarting server: not visible yet
            errors += 1
            time.sleep(poll_s)
            continue
        now = time.time()
        polls.append(now - started)
        for doc in docs:
            for kind, value in marks(doc).items():
                history = seen[doc["email"]][kind]
                if not history or value > history[-1][0]:
                    history.append((value, now))
        time.sleep(max(0.0, poll_s - (time.time() - started)))
    Path(out).write_text(json.dumps({"seen": seen, "polls": polls, "errors": errors}))


def views_in_db(mongo_uri: str, database: str, emails: list[str]):
    client = pymongo.MongoClient(mongo_uri, tz_aware=True, socketTimeoutMS=30000)
    reader, collection = IdReader(client[database]), client[database]["customer_sv"]
    return lambda: list(reader.find(collection, emails, PROJECTION).values())


def views_via_api(api_url: str, emails: list[str]):
    api = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)

    def fetch() -> list[dict]:
        responses = (api.get(f"/customers-sv/{email}") for email in emails)
        return [r.raise_for_status().json() for r in responses if r.status_code != 404]
    return fetch


def delays(timed: list, seen: dict) -> tuple[list[float], int]:
    """Publish -> first poll showing the mark, per timed event; and how many never showed."""
    found, missing = [], 0
    for email, kind, mark, t0 in timed:
        shown_at = next((t for value, t in seen[email][kind] if value >= mark), None)
        if shown_at is None:
            missing += 1
        else:
            found.append(shown_at - t0)
    return found, missing


# --- the floor's writer: pull, keep the marks, replace by exact _id ----------------

def floor_writer(subscriptions: list[str], mongo_uri: str, database: str, stop) -> None:
    """A trivial pipeline: every message's mark into its customer's document, written at once."""
    from google.cloud import pubsub_v1
    subscriber = pubsub_v1.SubscriberClient()
    arrived: queue.Queue = queue.Queue()

    def on_message(message) -> None:
        arrived.put(dict(message.attributes))
        message.ack()
    streams = [subscriber.subscribe(path, on_message) for path in subscriptions]
    # io/store.py's writes: by exact _id, in commands of at most 50 (FerretDB 1.24 deadlocks on 100).
    store = Store(pymongo.MongoClient(mongo_uri)[database])
    docs: dict[str, dict] = {}
    while not stop.is_set():
        try:
            batch = [arrived.get(timeout=0.1)]
        except queue.Empty:
            continue
        while not arrived.empty():
            batch.append(arrived.get())
        touched = {floor_apply(docs, attributes) for attributes in batch}
        store.write([Write("customer_sv", email, dict(docs[email])) for email in sorted(touched)])
    for stream in streams:
        stream.cancel()


def floor_apply(docs: dict[str, dict], attributes: dict) -> str:
    """One message's mark, in the shape `marks` reads; returns the customer's email."""
    email, kind, mark = attributes["email"], attributes["kind"], int(attributes["mark"])
    doc = docs.setdefault(email, {"_id": email, "email": email, "crm_info": {"phone": "+1 555 0"},
                                  "marketing_preferences": {}, "stats": {"order_count": 0}})
    if kind == "seed":
        doc["marketing_preferences"]["hubspot_id"] = str(mark)
    elif kind == "crm" and marks(doc)["crm"] < mark:
        doc["crm_info"]["phone"] = f"+1 555 {mark}"
    elif kind == "orders":
        doc["stats"]["order_count"] = max(doc["stats"]["order_count"], mark)
    elif kind == "pageviews" and marks(doc)["pageviews"] < mark:
        doc["stats"]["last_viewed_at"] = datetime.fromtimestamp(mark / 1000, timezone.utc)
    return email


# --- processes -------------------------------------------------------------------

def start(command: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def stop_all(processes: list) -> None:
    for proc in processes:
        if isinstance(proc, subprocess.Popen) and proc.poll() is None:
            proc.terminate()
    for proc in processes:
        if isinstance(proc, subprocess.Popen):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        else:
            proc.join(timeout=20)
            if proc.is_alive():
                proc.kill()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Phase:
    """One phase's set-up and what it measured."""

    name: str
    run_id: str
    topics: dict[str, str] = field(default_factory=dict)
    processes: list = field(default_factory=list)
    db: dict = field(default_factory=dict)  # watcher -> (delays, missing, poll p50)
    published_rate: float = 0.0
    backlog_s: float | None = None
    total: int = 0
    views: Views | None = None
    profile: str = ""

    @property
    def database(self) -> str:
        return f"bench_fresh_{self.run_id}_{self.name}"

    def subscriptions(self, suffix: str = "") -> list[str]:
        return [f"projects/{PROJECT}/subscriptions/{t}{suffix}" for t in self.topics.values()]


def start_writer(phase: Phase, args, ctx, env: dict, stop) -> None:
    """The thing measured: the pipeline, or for the floor the trivial writer."""
    if phase.name == "floor":
        writer = ctx.Process(target=floor_writer, args=(phase.subscriptions(), args.mongo_uri, phase.database, stop))
        writer.start()
        phase.processes.append(writer)
        return
    phase.processes.append(start(
        [sys.executable, "run_pipeline.py", "--streaming", "--mongo_uri", args.mongo_uri, "--database",
         phase.database, "--window_seconds", str(args.window_seconds),
         *[f"--input={s}=pubsub://{p}" for s, p in zip(phase.topics, phase.subscriptions())], *args.pipeline_arg],
        args.logs / f"{phase.name}-pipeline.log", env))


def start_api(phase: Phase, args, env: dict) -> str:
    port = args.api_port or free_port()
    phase.processes.append(start(
        [sys.executable, "-m", "singleview.serving", "--port", str(port), "--mongo_uri", args.mongo_uri,
         "--database", phase.database, "--log-level", "warning"],
        args.logs / f"{phase.name}-api.log", dict(env, SINGLEVIEW_API_KEYS=KEY)))
    return f"http://127.0.0.1:{port}"


def seed(phase: Phase, args, deadline: float) -> None:
    """Every customer's contacts, published and visible before the clock starts."""
    from google.cloud import pubsub_v1
    publisher = pubsub_v1.PublisherClient()
    futures = []
    for n in range(args.customers):
        for source, data in seed_messages(n, 2 * n).items():
            futures.append(publisher.publish(publisher.topic_path(PROJECT, phase.topics[source]), data,
                                             source=source, email=email_of(n), kind="seed", mark=str(hubspot_id(n))))
    for future in futures:
        future.result(timeout=60)
    waiting = {email_of(n) for n in range(args.customers)}
    while time.time() < deadline:
        waiting -= {email for email, doc in phase.views.find(waiting).items()
                    if "crm_info" in doc and "hubspot_id" in (doc.get("marketing_preferences") or {})}
        if not waiting:
            return
        if any(p.poll() is not None if isinstance(p, subprocess.Popen) else not p.is_alive()
               for p in phase.processes):
            raise SystemExit(f"{phase.name}: a process ended early; see {args.logs}")
        time.sleep(0.5)
    raise SystemExit(f"{phase.name}: seeded customers not all visible in time; see {args.logs}")


class Views:
    """The phase's `customer_sv`, read by exact `_id` (io/store.py's IdReader)."""

    def __init__(self, mongo_uri: str, database: str):
        self.client = pymongo.MongoClient(mongo_uri, tz_aware=True, socketTimeoutMS=30000)
        self.collection = self.client[database]["customer_sv"]
        self.reader = IdReader(self.client[database])

    def find(self, emails) -> dict[str, dict]:
        return self.reader.find(self.collection, emails, PROJECTION)

    def close(self) -> None:
        self.reader.close()
        self.client.close()


def wait_ready(api_url: str, phase: Phase, deadline: float, args) -> None:
    while True:
        try:
            httpx.get(f"{api_url}/readyz", timeout=5).raise_for_status()
            return
        except httpx.HTTPError:
            if time.time() > deadline:
                raise SystemExit(f"the API did not start; see {args.logs}/{phase.name}-api.log")
            time.sleep(0.2)


def drain(args, phase: Phase, sent: dict) -> None:
    """Wait until every customer shows its last marks; the backlog is how long that took."""
    last_publish = sent["began"] + sent["published_in"]
    deadline = time.time() + args.drain
    waiting = dict(sent["final"])
    while time.time() < deadline:
        for email, doc in phase.views.find(waiting).items():
            if all(marks(doc)[kind] >= mark for kind, mark in waiting[email].items()):
                del waiting[email]
        if not waiting:
            phase.backlog_s = time.time() - last_publish
            return
        time.sleep(0.25)


def run_phase(name: str, args, env: dict, ctx, run_id: str) -> Phase:
    phase = Phase(name, run_id)
    phase.topics = {s: f"fresh-{run_id}-{name}-{s}" for s in SOURCES}
    for topic in phase.topics.values():
        ensure_topic_and_subscription(PROJECT, topic, topic)
    stop, watchers_stop = ctx.Event(), ctx.Event()
    phase.views = Views(args.mongo_uri, phase.database)
    try:
        start_writer(phase, args, ctx, env, stop)
        api_url = start_api(phase, args, env)
        deadline = time.time() + 180
        seed(phase, args, deadline)
        wait_ready(api_url, phase, deadline, args)
        print(f"{name}: {args.customers} customers seeded into {phase.database}", flush=True)
        return measure(phase, args, ctx, api_url, watchers_stop)
    finally:
        stop.set()
        watchers_stop.set()
        stop_all(phase.processes)
        phase.views.client.drop_database(phase.database)
        phase.views.close()
        for topic in phase.topics.values():
            delete_topic_and_subscription(PROJECT, topic, topic)


def measure(phase: Phase, args, ctx, api_url: str, watchers_stop) -> Phase:
    emails = [email_of(n) for n in range(min(args.watched, args.customers))]
    outs = {w: args.logs / f"{phase.name}-{w}.json" for w in ("db", "api", "publisher")}
    readies, watchers = [], []
    for source in ("db", "api"):
        ready = ctx.Event()
        proc = ctx.Process(target=watch, args=(source, emails, args.mongo_uri, phase.database, api_url,
                                               args.poll_ms / 1000, ready, watchers_stop, str(outs[source])))
        proc.start()
        phase.processes.append(proc)
        watchers.append(proc)
        readies.append(ready)
    for ready in readies:
        ready.wait(60)
    publisher = ctx.Process(target=publish_events, args=(phase.topics, args.customers, len(emails), args.rate,
                                                         args.duration, str(outs["publisher"])))
    profiled = args.profile and phase.name == "pipeline"
    with Sampler(args.logs / "pipeline.raw", pid=phase.processes[0].pid) if profiled else contextlib.nullcontext():
        publisher.start()
        publisher.join(args.duration + 120)
        sent = json.loads(outs["publisher"].read_text())
        drain(args, phase, sent)
    if profiled:
        phase.profile = Sampler(args.logs / "pipeline.raw").report(sent["total"])
    time.sleep(2 * args.poll_ms / 1000)
    watchers_stop.set()
    for proc in watchers:
        proc.join(60)
    phase.total, phase.published_rate = sent["total"], sent["total"] / sent["published_in"]
    for source in ("db", "api"):
        watched = json.loads(outs[source].read_text())
        found, missing = delays(sent["timed"], watched["seen"])
        phase.db[source] = (found, missing, statistics.median(watched["polls"]) if watched["polls"] else 0.0)
    return phase


def report(phases: list[Phase], args) -> int:
    print(f"\nrate {args.rate:g}/s, {args.duration:g} s, {args.customers} customers ({args.watched} timed), "
          f"window {args.window_seconds:g} s, poll {args.poll_ms:g} ms; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ok = True
    for phase in phases:
        backlog = (f"not all visible {args.drain:g} s" if phase.backlog_s is None
                   else f"all visible {phase.backlog_s:.1f} s")
        print(f"  {phase.name}: {phase.total} events published at {phase.published_rate:.0f}/s; "
              f"{backlog} after the last publish")
        for source, (found, missing, poll) in phase.db.items():
            stats = percentiles(found)
            print(f"    {'customer_sv' if source == 'db' else 'API':<12}: {shown(stats)}  ({len(found)} visible, "
                  f"{missing} not; poll p50 {poll * 1000:.0f} ms)")
            if phase.name == "pipeline":
                ok &= not missing and stats.get("p99", 1e9) <= TARGET_P99_S
        if phase.name == "pipeline":
            ok &= phase.backlog_s is not None and phase.backlog_s <= TARGET_P99_S
        if phase.profile:
            print("  the pipeline process, from the first publish to the end of the drain, " + phase.profile)
    print(f"  target (pipeline p99 <= {TARGET_P99_S:g} s, nothing left after {TARGET_P99_S:g} s): "
          f"{'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of publishing")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--window_seconds", type=float, default=1.0)
    parser.add_argument("--watched", type=int, default=20, help="customers whose events are timed")
    parser.add_argument("--poll_ms", type=float, default=100.0)
    parser.add_argument("--api_port", type=int, default=int(os.environ.get("SINGLEVIEW_BENCH_API_PORT", "0")),
                        help="default: a free port")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last events")
    parser.add_argument("--phases", default="floor,pipeline", help="which phases to run, in order")
    parser.add_argument("--logs", type=Path, default=Path("/tmp") / f"singleview-freshness-{os.getpid()}")
    parser.add_argument("--pipeline_arg", action="append", default=[], help="extra run_pipeline.py argument")
    parser.add_argument("--profile", action="store_true",
                        help="sample the pipeline process with py-spy while it is measured (bench/stacks.py)")
    args = parser.parse_args(argv)
    if args.profile and not Sampler.available():
        parser.error("--profile needs py-spy (pip install py-spy, as in requirements-test.txt)")
    if args.customers < 1 or args.watched < 1:
        parser.error("--customers and --watched must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    env = dict(os.environ, PYTHON=sys.executable)
    env.setdefault("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    subprocess.run([str(ROOT / "scripts" / "pubsub.sh"), "start"], check=True, env=env, stdout=subprocess.DEVNULL)
    args.mongo_uri = os.environ.get("MONGODB_URI")
    if not args.mongo_uri:
        subprocess.run([str(ROOT / "scripts" / "mongo.sh"), "start"], check=True, env=env, stdout=subprocess.DEVNULL)
        args.mongo_uri = f"mongodb://{os.environ.get('SINGLEVIEW_MONGO_ADDR', '127.0.0.1:27017')}"
    args.logs.mkdir(parents=True, exist_ok=True)
    print(f"logs in {args.logs}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    ctx, run_id = multiprocessing.get_context("spawn"), uuid.uuid4().hex[:8]
    phases = [run_phase(name, args, env, ctx, run_id) for name in args.phases.split(",")]
    return report(phases, args)


if __name__ == "__main__":
    sys.exit(main())
