"""The API's own time per request, apart from the database's.

On FerretDB/SQLite the database dominates every latency figure (see
api_latency.py), so the API's share cannot be read from them. Here the ASGI
app is called in-process with FastAPI's thread hops run inline, so one
profiler sees the whole request, and it counts this process's CPU time only:
the database's work and the wait for it drop out, the driver's decoding and
everything the API adds remain. The same queries made with raw pymongo,
measured the same way in the same run, are the baseline: API minus pymongo is
the framework's and our code's share.

    .venv/bin/python bench/api_overhead.py --customers 2000 --requests 400
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

import pymongo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import fastapi.dependencies.utils  # noqa: E402
import fastapi.routing  # noqa: E402
import starlette.concurrency  # noqa: E402
from api_latency import email_of, fill  # noqa: E402

from singleview.serving import Settings, create_app  # noqa: E402
from singleview.serving.queries import HIDDEN  # noqa: E402

KEY = "bench-api-overhead-key"


async def _inline(func, *args, **kwargs):
    return func(*args, **kwargs)


for _module in (fastapi.routing, fastapi.dependencies.utils, starlette.concurrency):
    _module.run_in_threadpool = _inline


async def asgi_get(app, path: str, query: str = "") -> int:
    """One GET through the whole ASGI stack (middleware, auth, validation, JSON)."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
               "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
               "query_string": query.encode(), "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
               "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"host", b"bench")], "state": {}},
              receive, send)
    return sent[0]["status"]


def cpu_ms(run, requests: int, profile_top: int = 0) -> float:
    """CPU time of this process per request, in ms: the database's work, and
    waiting for it, do not count. With profile_top, where it went (cProfile)."""
    profile = cProfile.Profile(time.process_time) if profile_top else None
    start = time.process_time()
    if profile:
        profile.enable()
    run()
    if profile:
        profile.disable()
    spent = time.process_time() - start
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(profile_top)
    return spent / requests * 1e3


def measure(args) -> list[tuple[str, float, float]]:
    database = args.database or f"singleview_bench_api_{args.customers}"
    client = pymongo.MongoClient(args.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    coll = client[database]["customer_sv"]
    fill(coll, args.customers, args.seed)
    app = create_app(Settings(mongo_uri=args.mongo_uri, database=database, api_keys=(KEY,)))
    emails = [email_of(i * 7919 % args.customers) for i in range(args.requests)]
    pages = max(1, args.requests // 10)
    loop = asyncio.new_event_loop()
    lifespan = app.router.lifespan_context(app)
    get = lambda path, query="": loop.run_until_complete(asgi_get(app, path, query))  # noqa: E731

    def api_emails():
        for email in emails:
            assert get(f"/customers-sv/{email}") == 200

    def raw_emails():
        for email in emails:
            assert coll.find_one({"_id": email}, {HIDDEN: 0}) is not None

    def api_pages():
        for i in range(pages):
            assert get("/customers-sv", f"limit=50&skip={i}") == 200

    def raw_pages():
        for i in range(pages):
            assert len(list(coll.find({}, {HIDDEN: 0}).sort([("_id", 1)]).skip(i).limit(50))) == 50

    rows = []
    loop.run_until_complete(lifespan.__aenter__())
    try:
        for email in emails[:20]:  # warm-up: connections, caches
            assert get(f"/customers-sv/{email}") == 200
        for label, api_run, raw_run, n in (("GET by email", api_emails, raw_emails, len(emails)),
                                           ("list of 50", api_pages, raw_pages, pages)):
            rows.append((label, cpu_ms(api_run, n, args.profile), cpu_ms(raw_run, n)))
    finally:
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()
        if not args.keep:
            client.drop_database(database)
        client.close()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=2000)
    p.add_argument("--requests", type=int, default=400, help="GET-by-email requests; a tenth as many list pages")
    p.add_argument("--mongo_uri", default=os.environ.get("MONGODB_URI", "mongodb://"
                   + os.environ.get("SINGLEVIEW_MONGO_ADDR", "127.0.0.1:27017")))
    p.add_argument("--database", default=None, help="default singleview_bench_api_<N> (shared with api_latency)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="profile the API runs and print their N most expensive functions")
    args = p.parse_args(argv)
    rows = measure(args)
    print(f"customers={args.customers:,} requests={args.requests} (CPU ms per request in this process)")
    print(f"{'query':<13} {'API':>8} {'pymongo':>8} {'API - pymongo':>14} {'API/pymongo':>12}")
    for label, api, raw in rows:
        print(f"{label:<13} {api:>8.2f} {raw:>8.2f} {api - raw:>14.2f} {api / raw:>11.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
