"""Batch scaling: the pipeline on a small and a large input, each into a fresh database.

For each size (`--customers 10000,100000`, ~25 messages per customer) it
writes the generated files (streamed, timed), runs the Beam floor of
bench/batch_throughput.py on them (read + decode + CoGroupByKey + count, no
MongoDB), then the full pipeline (DirectRunner, the project's defaults) into
a database of its own, dropped first. It prints events/s for each, full/floor
at each size, and large/small: how much of its rate the pipeline keeps when
the input, and so the database, is ten times larger.

    .venv/bin/python bench/batch_scaling.py --customers 10000,100000
    .venv/bin/python bench/batch_scaling.py --customers 10000 --profile

`--profile` samples the full runs with py-spy (every thread, blocked ones
included; bench/stacks.py) and prints the cost per event by part: decode,
fold/projection, view merge, Beam, BSON, server round trips (threads blocked
in pymongo socket reads).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batch_throughput import floor  # noqa: E402  (bench/ is the script's own directory)
from stacks import Sampler  # noqa: E402
from singleview.pipelines.single_view import run  # noqa: E402
from singleview.samples.__main__ import write_stream  # noqa: E402
from singleview.samples.generator import SOURCES, stream  # noqa: E402

TARGET_LARGE_SMALL = 0.8
TARGET_FULL_FLOOR = 0.3


@dataclass
class Size:
    """What one input size measured."""

    customers: int
    messages: int = 0
    megabytes: float = 0.0
    generate_s: float = 0.0
    events: int = 0
    floor_s: float = 0.0
    full_s: float = 0.0
    profile: str = ""

    @property
    def floor_rate(self) -> float:
        return self.events / self.floor_s

    @property
    def full_rate(self) -> float:
        return self.events / self.full_s

    @property
    def full_floor(self) -> float:
        return self.floor_s / self.full_s


def default_mongo_uri() -> str:
    if os.environ.get("MONGODB_URI"):
        return os.environ["MONGODB_URI"]
    return f"mongodb://{os.environ.get('SINGLEVIEW_MONGO_ADDR', '127.0.0.1:27017')}"


def write_inputs(directory: Path, size: Size, seed: int) -> dict[str, Path]:
    """The generated files of `size.customers`, written as they are generated."""
    start = time.perf_counter()
    counts = write_stream(directory, stream(size.customers, seed), "jsonl")
    size.generate_s = time.perf_counter() - start
    paths = {source: directory / f"{source}.jsonl" for source in SOURCES}
    size.messages = sum(counts.values())
    size.megabytes = sum(p.stat().st_size for p in paths.values()) / 1e6
    return paths


def run_full(paths: dict[str, Path], mongo_uri: str, database: str) -> int:
    """The pipeline as `run_pipeline.py` runs it, into a fresh database; the events it read."""
    pymongo.MongoClient(mongo_uri).drop_database(database)
    summary = run([f"--input={s}={p}" for s, p in paths.items()] + ["--mongo_uri", mongo_uri, "--database", database])
    return summary.read


def measure(size: Size, args, workdir: Path) -> Size:
    directory = workdir / f"c{size.customers}"
    paths = write_inputs(directory, size, args.seed)
    print(f"{size.customers:,} customers: {size.messages:,} messages, {size.megabytes:,.0f} MB written in "
          f"{size.generate_s:.1f} s ({size.messages / size.generate_s:,.0f} messages/s; peak RSS so far "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB)", flush=True)
    start = time.perf_counter()
    floor(paths)
    size.floor_s = time.perf_counter() - start
    database = f"singleview_scale_{size.customers}"
    sampler = Sampler(workdir / f"profile-{size.customers}.txt") if args.profile else None
    with sampler or contextlib.nullcontext():
        start = time.perf_counter()
        size.events = run_full(paths, args.mongo_uri, database)
        size.full_s = time.perf_counter() - start
    if sampler:
        size.profile = sampler.report(size.events)
    if not args.keep:
        pymongo.MongoClient(args.mongo_uri).drop_database(database)
        shutil.rmtree(directory)
    print(f"  floor {size.floor_rate:,.0f} events/s ({size.floor_s:.1f} s), full {size.full_rate:,.0f} events/s "
          f"({size.full_s:.1f} s), full/floor {size.full_floor:.2f}", flush=True)
    return size


def report(sizes: list[Size]) -> str:
    lines = ["", "| customers | messages | events | generate | floor | full | full/floor |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in sizes:
        lines.append(f"| {s.customers:,} | {s.messages:,} | {s.events:,} | {s.generate_s:.1f} s | "
                     f"{s.floor_rate:,.0f} ev/s ({s.floor_s:.1f} s) | {s.full_rate:,.0f} ev/s ({s.full_s:.1f} s) | "
                     f"{s.full_floor:.2f} |")
    large, small = max(sizes, key=lambda s: s.customers), min(sizes, key=lambda s: s.customers)
    if large is not small:
        kept = large.full_rate / small.full_rate
        lines.append(f"large/small (full): {kept:.2f} (target >= {TARGET_LARGE_SMALL}: "
                     f"{'met' if kept >= TARGET_LARGE_SMALL else 'NOT met'}); floor's own: "
                     f"{large.floor_rate / small.floor_rate:.2f}")
    lines.append(f"full/floor at {large.customers:,}: {large.full_floor:.2f} (target >= {TARGET_FULL_FLOOR}: "
                 f"{'met' if large.full_floor >= TARGET_FULL_FLOOR else 'NOT met'})")
    lines.append(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", default="10000,100000", help="comma-separated sizes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mongo_uri", default=default_mongo_uri())
    parser.add_argument("--profile", action="store_true", help="sample the full runs with py-spy")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files (and the profile's raw samples) go; kept (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the files and databases")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.customers.split(",")]
    if args.profile and not Sampler.available():
        parser.error("--profile needs py-spy (pip install py-spy, as in requirements-test.txt)")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory() as tmp:
        measured = [measure(Size(n), args, Path(tmp)) for n in sizes]
        print(report(measured))
        for size in measured:
            if size.profile:
                print(f"\nprofile of the full run at {size.customers:,} customers ({size.events:,} events, "
                      f"{size.full_s:.1f} s):\n{size.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
