"""Write generated CDC as `<source>.jsonl`, or `<source>.avro` in the Pub/Sub archive shape."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from singleview.samples.generator import BASE_MS, generate

ARCHIVE_SCHEMA = {
    "type": "record", "name": "PubsubMessage", "namespace": "singleview",
    "fields": [{"name": "message", "type": "bytes"},
               {"name": "attributes", "type": {"type": "map", "values": "string"}},
               {"name": "timestamp", "type": "long"}],
}


def write(out: Path, generated: dict[str, list[bytes]], fmt: str) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for source, messages in generated.items():
        counts[source] = len(messages)
        if fmt == "jsonl":
            (out / f"{source}.jsonl").write_bytes(b"".join(m + b"\n" for m in messages))
            continue
        import fastavro
        records = ({"message": m, "attributes": {"source": source}, "timestamp": BASE_MS + i}
                   for i, m in enumerate(messages))
        with open(out / f"{source}.avro", "wb") as handle:
            fastavro.writer(handle, fastavro.parse_schema(ARCHIVE_SCHEMA), records)
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m singleview.samples", description=__doc__)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", choices=["jsonl", "avro"], default="jsonl")
    args = parser.parse_args(argv)
    if args.customers < 1:
        parser.error("--customers must be at least 1")
    counts = write(args.out, generate(args.customers, args.seed), args.format)
    print(" ".join(f"{source}={count}" for source, count in counts.items()), f"total={sum(counts.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
