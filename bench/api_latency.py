"""API latency: the serving layer against raw pymongo, same queries, same rate.

Fills a database with N synthetic customer_sv documents (docs/design.md section 4),
starts the API with uvicorn in a subprocess on a free 127.0.0.1 port, then, for
each of two queries,

  email:   GET /customers-sv/{email}                vs  find_one({"_id": email})
  segment: GET /customers-sv?viewed_category=shoes  vs  the same filter, sort,
           &no_purchase_days=30&limit=50                projection and limit in pymongo

drives it open-loop at a fixed rate (--rate, --segment-rate per second) for
a fixed time (--duration seconds) after a short warm-up. The segment is
answered from the API's segment read model (serving/segments.py); raw
pymongo runs the same filter, a scan on FerretDB, at --baseline-segment-rate.
The fill is insert_many of generated documents with an empty change log (no
writer yet: consistent, the read model loads them from customer_sv); during
the segment phases --segment-writes customers per second are rewritten the
way the pipeline writes (change log entry, then the views), so every query
has log entries to catch up on. Before driving, the API's count of the
segment must equal MongoDB's. Latency is measured from the
*scheduled* send time, so a server that falls behind shows it (no coordinated
omission). Bounded: rate x duration requests per phase, at most --max-inflight
outstanding (beyond that a request is counted as dropped), a per-request timeout.
Everything stays on the loopback interface.

    .venv/bin/python bench/api_latency.py --customers 100000 --rate 200 --segment-rate 2 --duration 20
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import httpx
import pymongo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from singleview.io.changes import ChangeLog  # noqa: E402
from singleview.io.store import SINGLE_VIEWS, Store, Write  # noqa: E402
from singleview.serving.config import Settings  # noqa: E402
from singleview.io.indexes import ensure_segment_indexes  # noqa: E402
from singleview.serving.queries import HIDDEN, Segment, combine, segment_filter  # noqa: E402
from singleview.view import ViewChange  # noqa: E402

KEY = "bench-api-latency-key"
CATEGORIES = ["shoes", "hats", "bags", "shirts", "jackets", "socks", "watches", "toys", "books", "garden"]
SEGMENT = {"viewed_category": "shoes", "no_purchase_days": 30, "limit": 50}


# --- data ---------------------------------------------------------------------

def email_of(i: int) -> str:
    return f"customer{i:07d}@example.com"


def synthetic_customer(i: int, rng: random.Random, now: datetime) -> dict:
    email = email_of(i)
    doc = {"_id": email, "email": email, "name": f"Customer {i}", "sources": ["crm"],
           "updated_at": now - timedelta(minutes=rng.randrange(60 * 24 * 90)), "_rev": 1,
           "_meta": {"versions": {f"crm:003{i:012d}": [1, 1, 0]}},
           "crm_info": {"crm_id": f"003{i:012d}", "crm_ids": [f"003{i:012d}"],
                        "first_name": "Customer", "last_name": str(i), "phone": f"+1 555 {i % 10000:04d}",
                        "mailing_address": {"street": f"{i} Main St", "city": "Springfield",
                                            "postal_code": f"{i % 100000:05d}", "country": "US"},
                        "last_modified_at": now - timedelta(days=rng.randrange(365))}}
    orders = []
    for k in range(rng.choice((0, 0, 1, 1, 2, 3))):
        at = now - timedelta(hours=rng.randrange(24 * 400))
        total = f"{rng.randrange(500, 50000) / 100:.2f}"
        orders.append({"order_id": f"{i}-{k}", "increment_id": f"{i:09d}{k}", "status": "complete",
                       "state": "complete", "grand_total": total, "currency": "USD",
                       "created_at": at, "updated_at": at,
                       "items": [{"item_id": f"{i}-{k}-1", "sku": "TS-RED-M", "name": "Red Tee", "qty": "1",
                                  "price": total, "row_total": total}]})
    if orders:
        orders.sort(key=lambda o: o["created_at"], reverse=True)
        cents = sum(int(o["grand_total"].replace(".", "")) for o in orders)
        doc["order_history"] = orders
        doc["stats"] = {"order_count": len(orders), "lifetime_value": {"USD": f"{cents // 100}.{cents % 100:02d}"},
                        "first_order_at": orders[-1]["created_at"], "last_order_at": orders[0]["created_at"]}
        doc["sources"].append("orders")
    if rng.random() < 0.7:
        cats = rng.sample(CATEGORIES, rng.randrange(1, 4))
        views = [{"url": f"https://shop.example/c/{c}", "title": c.title(), "category": c,
                  "viewed_at": now - timedelta(hours=rng.randrange(24 * 60))} for c in cats]
        views.sort(key=lambda v: v["viewed_at"], reverse=True)
        doc["marketing_preferences"] = {
            "hubspot_id": str(100000 + i), "email_opt_out": rng.random() < 0.2,
            "properties": {"lifecyclestage": "customer"}, "browsing_history": views,
            "viewed_categories": sorted(({"category": v["category"], "views": 1, "last_viewed_at": v["viewed_at"]}
                                         for v in views), key=lambda c: c["category"])}
        doc["stats"] = {**doc.get("stats", {}), "last_viewed_at": views[0]["viewed_at"]}
        doc["sources"].append("marketing")
    doc["sources"].sort()
    return doc


def fill(coll, customers: int, seed: int) -> float:
    """Insert customers 0..N-1 (only the missing tail when re-run). Returns seconds."""
    have = coll.estimated_document_count()
    if have == customers:
        print(f"  {coll.full_name}: already holds {customers} customers, reusing", flush=True)
        return 0.0
    if have:
        coll.drop()
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    t0 = time.perf_counter()
    batch = []
    for i in range(customers):
        batch.append(synthetic_customer(i, rng, now))
        if len(batch) == 1000 or i == customers - 1:
            coll.insert_many(batch, ordered=False)
            batch = []
            if (i + 1) % 10000 == 0:
                print(f"  inserted {i + 1:,} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return time.perf_counter() - t0


class Rewrites(threading.Thread):
    """Customers rewritten as the pipeline writes them (change log, then the views), `rate` per
    second in batches every half second, so each segment query has entries to catch up on."""

    PERIOD = 0.5

    def __init__(self, db, customers: int, rate: float, seed: int):
        super().__init__(daemon=True)
        self.db, self.customers, self.rate, self.rng = db, customers, rate, random.Random(seed)
        self.log, self.store = ChangeLog(), Store(db)
        self.stopped = threading.Event()
        self.written = 0
        self.rev = 1_000_000  # above every generated revision

    def run(self) -> None:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        per_batch = max(1, round(self.rate * self.PERIOD))
        while not self.stopped.wait(self.PERIOD):
            docs = []
            for i in self.rng.sample(range(self.customers), per_batch):
                self.rev += 1
                docs.append(dict(synthetic_customer(i, self.rng, now), _rev=self.rev))
            self.log.append(self.db, [ViewChange(d["_id"], d["_rev"], d, (), ()) for d in docs])
            self.store.write([Write(SINGLE_VIEWS, d["_id"], d) for d in docs])
            self.written += len(docs)


# --- the API in a subprocess --------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(mongo_uri: str, database: str, log_path: Path, ready_timeout: float) -> tuple[subprocess.Popen, str]:
    """Start the API and wait for /readyz: indexes made and the segment read model loaded."""
    port = free_port()
    env = dict(os.environ, SINGLEVIEW_API_KEYS=KEY)
    env.pop("SINGLEVIEW_DEV", None)
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "singleview.serving", "--host", "127.0.0.1", "--port", str(port),
         "--mongo_uri", mongo_uri, "--database", database, "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"the API did not become ready in {ready_timeout:g} s; see {log_path}")


# --- open-loop driver -----------------------------------------------------------

class Result:
    def __init__(self, name: str):
        self.name = name
        self.latencies: list[float] = []
        self.errors = 0
        self.dropped = 0
        self.elapsed = 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))] * 1000


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (Linux): steadier than latency on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(name: str, call, args_for, rate: float, duration: float, warmup: float,
          max_inflight: int) -> Result:
    """Call call(args_for(i)) at `rate` per second for warmup + duration seconds;
    latency is completion minus scheduled start; warm-up calls are not recorded."""
    result = Result(name)
    lock = threading.Lock()
    inflight = threading.BoundedSemaphore(max_inflight)
    total = int((warmup + duration) * rate)
    n_warm = int(warmup * rate)

    def job(i: int, scheduled: float) -> None:
        try:
            ok = call(args_for(i))
        except Exception:
            ok = False
        done = time.perf_counter()
        with lock:
            if i >= n_warm:
                if ok:
                    result.latencies.append(done - scheduled)
                else:
                    result.errors += 1
        inflight.release()

    with ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix=name) as pool:
        start = time.perf_counter() + 0.05
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if not inflight.acquire(blocking=False):
                if i >= n_warm:
                    result.dropped += 1
                continue
            pool.submit(job, i, scheduled)
        pool.shutdown(wait=True)
    result.elapsed = time.perf_counter() - start - warmup
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=200.0, help="requests per second, per phase")
    p.add_argument("--segment-rate", type=float, default=2.0, help="segment queries per second (API)")
    p.add_argument("--baseline-segment-rate", type=float, default=0.05,
                   help="segment queries per second for raw pymongo (a scan on FerretDB: keep it low)")
    p.add_argument("--baseline-timeout", type=float, default=180.0, help="per-query timeout of that baseline")
    p.add_argument("--segment-writes", type=float, default=20.0,
                   help="customers rewritten per second through the change log during the segment phases")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--max-inflight", type=int, default=64)
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    p.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for /readyz")
    p.add_argument("--mongo_uri", default=os.environ.get("MONGODB_URI", "mongodb://"
                   + os.environ.get("SINGLEVIEW_MONGO_ADDR", "127.0.0.1:27017")))
    p.add_argument("--database", default=None, help="default singleview_bench_api_<N>")
    p.add_argument("--keep", action="store_true", help="keep the database for a re-run (it is reused)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if min(args.rate, args.segment_rate, args.baseline_segment_rate, args.duration, args.customers) <= 0:
        p.error("rates, --duration and --customers must be positive")
    return args


def prepare(args, coll) -> tuple[dict, int]:
    """Fill, index, and count the segment with pymongo: (its filter, how many match)."""
    print(f"filling {coll.full_name} with {args.customers:,} customers ...", flush=True)
    secs = fill(coll, args.customers, args.seed)
    if secs:
        print(f"  filled in {secs:.1f} s ({args.customers / secs:,.0f} docs/s)", flush=True)
    t0 = time.perf_counter()
    ensure_segment_indexes(coll, Settings().index_currencies)
    print(f"  indexes ensured in {time.perf_counter() - t0:.1f} s", flush=True)
    # The API's own filter for the segment, so both sides run the identical query.
    seg_filter = combine(segment_filter(Segment(viewed_category=SEGMENT["viewed_category"],
                                                no_purchase_days=SEGMENT["no_purchase_days"])))
    t0 = time.perf_counter()
    matching = coll.count_documents(seg_filter)
    print(f"  segment {SEGMENT}: {matching:,} matching customers (pymongo count: {time.perf_counter() - t0:.1f} s)",
          flush=True)
    return seg_filter, matching


def phases(args, coll, http: httpx.Client, api_pid: int, seg_filter: dict, matching: int, rewrites: Rewrites):
    """Each query, API then raw pymongo, open-loop: [(api Result, pymongo Result)], API CPU ms per request."""
    rng = random.Random(args.seed + 1)
    emails = [email_of(rng.randrange(args.customers)) for _ in range(4096)]
    pick = lambda i: emails[i % len(emails)]  # noqa: E731
    seg_query = "&".join(f"{k}={v}" for k, v in SEGMENT.items())

    def api_email(email: str) -> bool:
        return http.get(f"/customers-sv/{quote(email, safe='@')}").status_code == 200

    def api_segment(_: object) -> bool:
        r = http.get(f"/customers-sv?{seg_query}")
        return r.status_code == 200 and r.json()["count"] == min(matching, SEGMENT["limit"])

    def mongo_email(email: str) -> bool:
        return coll.find_one({"_id": email}, {HIDDEN: 0}, max_time_ms=int(args.timeout * 1000)) is not None

    def mongo_segment(_: object) -> bool:
        docs = list(coll.find(seg_filter, {HIDDEN: 0}, max_time_ms=int(args.baseline_timeout * 1000))
                    .sort([("_id", 1)]).limit(SEGMENT["limit"]))
        return len(docs) == min(matching, SEGMENT["limit"])

    results, api_cpu_ms = [], {}
    plan = (("email", ((args.rate, api_email), (args.rate, mongo_email))),
            ("segment", ((args.segment_rate, api_segment), (args.baseline_segment_rate, mongo_segment))))
    for label, sides in plan:
        if label == "segment" and args.segment_writes > 0:
            rewrites.start()
        pair = []
        for side, (rate, call) in zip(("api", "pymongo"), sides):
            print(f"driving {label}/{side} at {rate:g}/s for {args.duration:g} s ...", flush=True)
            cpu_before = cpu_seconds(api_pid)
            result = drive(f"{label}-{side}", call, pick, rate, args.duration, args.warmup, args.max_inflight)
            calls = int((args.warmup + args.duration) * rate) - result.dropped
            if side == "api" and calls > 0:
                api_cpu_ms[label] = (cpu_seconds(api_pid) - cpu_before) / calls * 1000
            pair.append(result)
        results.append(tuple(pair))
    return results, api_cpu_ms


def report(args, results, api_cpu_ms, ready_s: float, rewrites: Rewrites) -> None:
    print()
    print(f"customers={args.customers:,} rate={args.rate:g}/s segment-rate={args.segment_rate:g}/s "
          f"baseline-segment-rate={args.baseline_segment_rate:g}/s duration={args.duration:g}s "
          f"(latency from scheduled send; ms)")
    print(f"API ready (indexes, segment read model loaded) {ready_s:.1f} s after start; "
          f"{rewrites.written:,} customers rewritten through the change log during the segment phases")
    print(f"{'query':<9} {'side':<8} {'ok':>6} {'err':>4} {'drop':>5} {'achieved/s':>10} "
          f"{'p50':>8} {'p99':>8} {'max':>8}")
    for api_r, mongo_r in results:
        for r in (api_r, mongo_r):
            q, side = r.name.split("-")
            achieved = len(r.latencies) / r.elapsed if r.elapsed > 0 else float("nan")
            mx = max(r.latencies) * 1000 if r.latencies else float("nan")
            print(f"{q:<9} {side:<8} {len(r.latencies):>6} {r.errors:>4} {r.dropped:>5} {achieved:>10.1f} "
                  f"{r.pct(50):>8.2f} {r.pct(99):>8.2f} {mx:>8.2f}")
        print(f"{'':<9} {'api/pymongo':<8} p50 x{api_r.pct(50) / mongo_r.pct(50):.3f}, "
              f"p99 x{api_r.pct(99) / mongo_r.pct(99):.3f}")
    print("API process CPU per request (warm-up included): "
          + ", ".join(f"{label} {ms:.2f} ms" for label, ms in api_cpu_ms.items()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    database = args.database or f"singleview_bench_api_{args.customers}"
    client = pymongo.MongoClient(args.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000,
                                 maxPoolSize=args.max_inflight + 4)
    coll = client[database][SINGLE_VIEWS]
    seg_filter, matching = prepare(args, coll)
    log_path = ROOT / ".data" / "bench_api_latency.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    api, base = start_api(args.mongo_uri, database, log_path, args.ready_timeout)
    ready_s = time.perf_counter() - t0
    print(f"  API ready in {ready_s:.1f} s (segment read model loaded)", flush=True)
    rewrites = Rewrites(client[database], args.customers, args.segment_writes, args.seed + 2)
    try:
        limits = httpx.Limits(max_connections=args.max_inflight, max_keepalive_connections=args.max_inflight)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"},
                          timeout=args.timeout, limits=limits) as http:
            counted = http.get(f"/customers-sv/count?viewed_category={SEGMENT['viewed_category']}"
                               f"&no_purchase_days={SEGMENT['no_purchase_days']}").json()["count"]
            print(f"  exact count: API {counted:,}, pymongo {matching:,}", flush=True)
            if counted != matching:
                raise SystemExit("the API's count differs from MongoDB's")
            results, api_cpu_ms = phases(args, coll, http, api.pid, seg_filter, matching, rewrites)
    finally:
        rewrites.stopped.set()
        api.terminate()
        try:
            api.wait(timeout=10)
        except subprocess.TimeoutExpired:
            api.kill()
        if not args.keep:
            client.drop_database(database)
        client.close()
    report(args, results, api_cpu_ms, ready_s, rewrites)
    return 0


if __name__ == "__main__":
    sys.exit(main())
