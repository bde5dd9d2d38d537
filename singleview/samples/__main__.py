"""Write generated CDC as `<source>.jsonl`, or `<source>.avro` in the Pub/Sub archive shape;
`--format salesforce-avro` writes crm as Salesforce Pub/Sub API events (`crm.avro` of
schema_id/payload/replay_id, schemas in `salesforce-schemas/`) and the other sources as JSON lines."""
from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from singleview.samples.generator import BASE_MS, SOURCES, generate, stream

ARCHIVE_SCHEMA = {
    "type": "record", "name": "PubsubMessage", "namespace": "singleview",
    "fields": [{"name": "message", "type": "bytes"},
               {"name": "attributes", "type": {"type": "map", "values": "string"}},
               {"name": "timestamp", "type": "long"}],
}


SALESFORCE_AVRO = "salesforce-avro"
SCHEMA_DIR = "salesforce-schemas"


def write(out: Path, generated: dict[str, list[bytes]], fmt: str) -> dict[str, int]:
    """Write messages already in memory; see `write_stream`."""
    return write_stream(out, ((source, m) for source, messages in generated.items() for m in messages), fmt)


def write_stream(out: Path, messages: Iterable[tuple[str, bytes]], fmt: str) -> dict[str, int]:
    """Write (source, message) pairs as they come, one file per source: a million
    customers' files never sit in memory (but for crm in `salesforce-avro`)."""
    out.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(SOURCES, 0)
    with contextlib.ExitStack() as files:
        sinks = {source: _sink(files, out, source, fmt) for source in SOURCES}
        for source, message in messages:
            sinks[source](message)
            counts[source] += 1
    return counts


def _sink(files: contextlib.ExitStack, out: Path, source: str, fmt: str) -> Callable[[bytes], object]:
    """A function that appends one message to `source`'s file; `files` closes it."""
    if fmt == SALESFORCE_AVRO and source == "crm":
        from singleview.samples.salesforce import write_archive, write_schema_dir
        write_schema_dir(out / SCHEMA_DIR)
        crm: list[bytes] = []
        files.callback(lambda: write_archive(out / "crm.avro", crm))
        return crm.append
    if fmt in ("jsonl", SALESFORCE_AVRO):
        handle = files.enter_context(open(out / f"{source}.jsonl", "wb", buffering=1 << 20))
        return lambda message: handle.write(message + b"\n")
    from fastavro import parse_schema
    from fastavro.write import Writer
    handle = files.enter_context(open(out / f"{source}.avro", "wb"))
    writer = Writer(handle, parse_schema(ARCHIVE_SCHEMA))
    files.callback(writer.flush)
    sequence = itertools.count(BASE_MS)
    return lambda message: writer.write({"message": message, "attributes": {"source": source},
                                         "timestamp": next(sequence)})


def interleave(by_source: dict[str, list[bytes]]) -> list[tuple[str, bytes]]:
    """All sources side by side, each in its own order, as the systems would send
    them: a customer's contact, orders and page views arrive at about the same time."""
    tagged = [((i + 0.5) / len(messages), source, data)
              for source, messages in by_source.items() for i, data in enumerate(messages)]
    return [(source, data) for _, source, data in sorted(tagged, key=lambda item: item[:2])]


def publish_main(argv) -> int:
    """Publish generated CDC to one topic per source (`<prefix><source>`) at a fixed rate."""
    parser = argparse.ArgumentParser(prog="python -m singleview.samples publish", description=publish_main.__doc__)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--project", default="singleview-local")
    parser.add_argument("--topic_prefix", default="singleview-")
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second (all sources together)")
    args = parser.parse_args(argv)
    from singleview.io.pubsub import ensure_topic_and_subscription, publish
    from singleview.io.files import split_line

    generated = generate(args.customers, args.seed)
    queue = interleave({source: [m.data for line in lines for m in split_line(source, line)]
                        for source, lines in generated.items()})
    for source in generated:
        ensure_topic_and_subscription(args.project, f"{args.topic_prefix}{source}", f"{args.topic_prefix}{source}")
    start, sent, step = time.monotonic(), 0, max(1, int(args.rate // 10))
    for offset in range(0, len(queue), step):
        chunk = queue[offset:offset + step]
        for source in generated:
            data = [d for s, d in chunk if s == source]
            if data:
                publish(args.project, f"{args.topic_prefix}{source}", data, {"source": source})
        sent += len(chunk)
        time.sleep(max(0.0, start + sent / args.rate - time.monotonic()))
    print(f"published {sent} messages in {time.monotonic() - start:.1f} s to projects/{args.project}"
          f"/topics/{args.topic_prefix}<source>")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["publish"]:
        return publish_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m singleview.samples", description=__doc__)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", choices=["jsonl", "avro", SALESFORCE_AVRO], default="jsonl")
    args = parser.parse_args(argv)
    if args.customers < 1:
        parser.error("--customers must be at least 1")
    counts = write_stream(args.out, stream(args.customers, args.seed), args.format)
    print(" ".join(f"{source}={count}" for source, count in counts.items()), f"total={sum(counts.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
