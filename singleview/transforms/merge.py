"""The merge: each customer's contributions from CRM, orders and marketing, joined by email."""
from __future__ import annotations

import apache_beam as beam

from singleview.io.changes import ChangeLog
from singleview.io.mongodb import MongoTarget
from singleview.transforms.stages import Step, ViewStage
from singleview.transforms.window import WindowForMerge
from singleview.view import DEFAULT_HISTORY_CAP


class MergeSingleViews(beam.PTransform):
    """{crm, orders, marketing: (email, Contribution)} -> ViewChanges, with the views written.

    The CoGroupByKey joins the three streams per email (per window when
    streaming); its tagged result is the input of the customer's merge.
    Every batch of view writes is logged first (io/changes.py), always: the
    API's segments read that log.
    """

    def __init__(self, target: MongoTarget, streaming: bool = False, window_seconds: float | None = None,
                 history_cap: int = DEFAULT_HISTORY_CAP, change_log: ChangeLog | None = None,
                 rebuild: bool = False):
        super().__init__()
        self.target, self.streaming, self.window_seconds = target, streaming, window_seconds
        self.history_cap, self.rebuild = history_cap, rebuild
        self.change_log = change_log if change_log is not None else ChangeLog()

    def expand(self, streams: dict):
        if self.window_seconds:
            streams = {name: pcoll | f"WindowForMerge {name}" >> WindowForMerge(self.window_seconds)
                       for name, pcoll in streams.items()}
        return (streams
                | "CoGroupByEmail" >> beam.CoGroupByKey()
                | "Merge" >> Step(self.target, ViewStage(self.history_cap, self.rebuild), self.streaming,
                                  self.change_log))
