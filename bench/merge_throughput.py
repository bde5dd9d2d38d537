"""The pure projection merge against a plain dict-update loop on the same events.

The loop (`state[id].update(fields)`) is the floor for this work in Python;
the merge adds versions per field, tombstones and tie-breaks.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singleview.formats import DecoderConfig, decode  # noqa: E402
from singleview.io.files import split_line  # noqa: E402
from singleview.fold import fold_event, new_entity  # noqa: E402
from singleview.model import DecodeError  # noqa: E402
from singleview.samples import generate  # noqa: E402


def decoded_events(customers: int) -> list:
    events = []
    for source, lines in generate(customers, seed=1).items():
        for line in lines:
            for message in split_line(source, line):
                try:
                    events.extend(decode(message, DecoderConfig()))
                except DecodeError:
                    pass
    return events


def dict_loop(events) -> float:
    start = time.perf_counter()
    state: dict = {}
    for e in events:
        state.setdefault((e.source, e.entity_id), {}).update(e.fields)
    return time.perf_counter() - start


def merge(events) -> float:
    start = time.perf_counter()
    state: dict = {}
    for e in events:
        key = (e.source, e.entity_id)
        entity = state.get(key)
        if entity is None:
            entity = state[key] = new_entity()
        fold_event(entity, e)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    events = decoded_events(args.customers)
    # The decoded input is fixture, not work: keep the collector from re-walking it in either loop.
    gc.collect()
    gc.freeze()
    loop_s = min(dict_loop(events) for _ in range(args.repeat))
    merge_s = min(merge(events) for _ in range(args.repeat))
    print(f"{len(events)} events")
    print(f"dict loop: {len(events) / loop_s:,.0f} events/s")
    print(f"merge:     {len(events) / merge_s:,.0f} events/s")
    print(f"merge/loop: {loop_s / merge_s:.2f}")


if __name__ == "__main__":
    main()
