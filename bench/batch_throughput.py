"""Batch throughput: the full pipeline against a Beam floor on the same files.

(a) floor: read + decode + key by entity + CoGroupByKey + count, no MongoDB, read and
    decoded as the pipeline does;
(b) full: the single-view pipeline into the local server.
Both run in this process on the DirectRunner; the ratio is what to compare
across machines.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singleview.formats import DecoderConfig  # noqa: E402
from singleview.io.files import ReadSourceFiles  # noqa: E402
from singleview.pipelines.single_view import run  # noqa: E402
from singleview.samples import generate  # noqa: E402
from singleview.transforms.decode import DecodeMessages  # noqa: E402

SOURCES = ("crm", "orders", "order_items", "marketing", "pageviews")


def write_files(directory: Path, events: int) -> tuple[dict[str, Path], int]:
    customers = 1
    while True:
        generated = generate(customers=customers, seed=1)
        total = sum(len(v) for v in generated.values())
        if total >= events:
            break
        customers = max(customers + 1, int(customers * events / max(total, 1) * 1.02))
    paths = {}
    for source in SOURCES:
        paths[source] = directory / f"{source}.jsonl"
        paths[source].write_bytes(b"\n".join(generated[source]) + b"\n")
    return paths, customers


def floor(paths: dict[str, Path]) -> int:
    """Read and decode as the pipeline does (every source's files in one read, one decode),
    then key by entity, CoGroupByKey the sources and count, on the pipeline's batch runner."""
    counted = []
    with beam.Pipeline(runner=FnApiRunner()) as p:
        events = (p | "Read" >> ReadSourceFiles({s: str(path) for s, path in paths.items()})
                  | "Decode" >> DecodeMessages(DecoderConfig())).events
        by_source = events | "BySource" >> beam.Partition(lambda e, _: SOURCES.index(e.source), len(SOURCES))
        streams = {source: by_source[i] | f"Key {source}" >> beam.Map(lambda e: (e.entity_id, 1))
                   for i, source in enumerate(SOURCES) if source in paths}
        (streams | beam.CoGroupByKey() | beam.combiners.Count.Globally()
         | beam.Map(counted.append))
    return counted[0] if counted else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="messages to generate (about)")
    parser.add_argument("--mongo_uri", default=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        paths, customers = write_files(Path(tmp), args.events)
        lines = sum(p.read_bytes().count(b"\n") for p in paths.values())
        print(f"{lines} lines for {customers} customers")

        start = time.perf_counter()
        floor(paths)
        floor_s = time.perf_counter() - start

        database = "singleview_bench"
        pymongo.MongoClient(args.mongo_uri).drop_database(database)
        argv = [f"--input={s}={p}" for s, p in paths.items()]
        start = time.perf_counter()
        summary = run(argv + ["--mongo_uri", args.mongo_uri, "--database", database])
        full_s = time.perf_counter() - start

    events = summary.read
    print(f"floor: {events / floor_s:,.0f} events/s ({floor_s:.1f} s)")
    print(f"full:  {events / full_s:,.0f} events/s ({full_s:.1f} s)")
    print(f"full/floor: {floor_s / full_s:.2f}")


if __name__ == "__main__":
    main()
