"""Decoding Salesforce change events: Pub/Sub API Avro binary against the CometD JSON of the same changes.

Both go through `decode` with the same configuration; the binary path reads
the Avro record (fastavro), expands the bitmaps and builds the CometD payload
before the shared path, so the ratio is what the binary edge costs on top.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singleview.formats import DecoderConfig, decode  # noqa: E402
from singleview.model import RawMessage  # noqa: E402
from singleview.samples import generate  # noqa: E402
from singleview.samples.salesforce import SCHEMA_ID, SCHEMA_TEXT, pubsub_api_record  # noqa: E402


def seconds(messages: list[RawMessage], config: DecoderConfig) -> float:
    start = time.perf_counter()
    for message in messages:
        decode(message, config)
    return time.perf_counter() - start


def rates(runs: dict[str, list[RawMessage]], config: DecoderConfig, repeat: int) -> dict[str, float]:
    """Messages decoded per second, best of `repeat`; the kinds take turns, so load on the machine hits both."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for kind, messages in runs.items():
            best[kind] = min(best[kind], seconds(messages, config))
    return {kind: len(runs[kind]) / best[kind] for kind in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    lines = generate(args.customers, seed=1)["crm"]
    config = DecoderConfig(salesforce_schemas={SCHEMA_ID: SCHEMA_TEXT})
    cometd = [RawMessage("crm", line) for line in lines]
    binary = [RawMessage("crm", r["payload"], {"schema_id": r["schema_id"]})
              for r in map(pubsub_api_record, lines)]
    measured = rates({"json": cometd, "binary": binary}, config, args.repeat)
    json_rate, binary_rate = measured["json"], measured["binary"]
    print(f"{len(lines)} crm events: CometD JSON {json_rate:,.0f} msg/s, Pub/Sub API Avro {binary_rate:,.0f} msg/s,"
          f" binary/json {binary_rate / json_rate:.2f}")


if __name__ == "__main__":
    main()
