"""Key contributions by email, CoGroupByKey the three streams, write views."""
from __future__ import annotations

import itertools

import apache_beam as beam

from singleview.io.mongodb import MongoTarget, WriteSingleViewsFn
from singleview.transforms.project import BATCH
from singleview.view import DEFAULT_HISTORY_CAP

STREAMS = ("crm", "orders", "marketing")


class MergeSingleViews(beam.PTransform):
    """{crm, orders, marketing} contributions -> emails whose view changed."""

    def __init__(self, target: MongoTarget, history_cap: int = DEFAULT_HISTORY_CAP, rebuild_id: str | None = None):
        super().__init__()
        self.target = target
        self.history_cap = history_cap
        self.rebuild_id = rebuild_id

    def expand(self, streams: dict):
        keyed = {name: pcoll | f"KeyByEmail {name}" >> beam.Map(lambda c: (c.email, c))
                 for name, pcoll in streams.items()}
        return (keyed
                | "CoGroupByEmail" >> beam.CoGroupByKey()
                | "Contributions" >> beam.MapTuple(
                    lambda email, grouped: (email, list(itertools.chain.from_iterable(grouped.values()))))
                | "Batch" >> beam.BatchElements(**BATCH)
                | "Write" >> beam.ParDo(WriteSingleViewsFn(self.target, self.history_cap, self.rebuild_id)))
