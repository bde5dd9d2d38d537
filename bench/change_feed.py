"""The change feed's cost on a batch run: the same files run without a feed (the baseline),
then with `--sv_changes_topic` on the local Pub/Sub server and on Kafka, each into a fresh database.

Each configuration runs `--rounds` times in a rotating order; the best of
each is compared, and every run's time is printed, so a loaded machine shows.
Needs PUBSUB_EMULATOR_HOST and SINGLEVIEW_KAFKA_ADDR (scripts/pubsub.sh,
scripts/kafka.sh).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_throughput import write_files  # noqa: E402
from singleview.io.pubsub import ensure_topic_and_subscription  # noqa: E402
from singleview.pipelines.single_view import run  # noqa: E402

PROJECT = "singleview-bench"


def timed(mongo_uri: str, argv: list[str]) -> tuple[float, object]:
    database = f"singleview_bench_feed_{uuid.uuid4().hex[:6]}"
    client = pymongo.MongoClient(mongo_uri)
    try:
        start = time.perf_counter()
        summary = run(argv + ["--mongo_uri", mongo_uri, "--database", database])
        return time.perf_counter() - start, summary
    finally:
        client.drop_database(database)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="messages to generate (about)")
    parser.add_argument("--payload", choices=["none", "after"], default="after")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each configuration, in a rotating order")
    parser.add_argument("--mongo_uri", default=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017"))
    args = parser.parse_args()
    topic = f"feed-{uuid.uuid4().hex[:6]}"
    ensure_topic_and_subscription(PROJECT, topic)  # no subscription: the server keeps nothing
    kafka = os.environ.get("SINGLEVIEW_KAFKA_ADDR", "127.0.0.1:9092")
    feeds = {"pubsub": f"pubsub://projects/{PROJECT}/topics/{topic}", "kafka": f"kafka://{kafka}/{topic}"}

    with tempfile.TemporaryDirectory() as tmp:
        paths, customers = write_files(Path(tmp), args.events)
        argv = [f"--input={s}={p}" for s, p in paths.items()]
        lines = sum(p.read_bytes().count(b"\n") for p in paths.values())
        print(f"{lines} lines for {customers} customers")
        results: dict[str, list] = {name: [] for name in ("baseline", "pubsub", "kafka")}
        for round_ in range(args.rounds):
            for name in list(results)[round_ % 3:] + list(results)[:round_ % 3]:
                feed = feeds.get(name)
                extra = ["--sv_changes_topic", feed, "--sv_changes_payload", args.payload] if feed else []
                results[name].append(timed(args.mongo_uri, argv + extra))
    base = min(seconds for seconds, _ in results["baseline"])
    for name, runs in results.items():
        seconds, summary = min(runs, key=lambda run_: run_[0])
        print(f"{name:9} best {summary.read / seconds:6,.0f} events/s ({seconds:5.1f} s; all runs:"
              f" {', '.join(f'{s:.1f}' for s, _ in runs)} s)  published {summary.get('changes_published'):5}"
              f" in {summary.get('changes_publish_ms') / 1000:4.2f} s  time/baseline {seconds / base:.2f}")

if __name__ == "__main__":
    main()
