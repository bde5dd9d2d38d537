"""The merge: each customer's contributions from CRM, orders and marketing, joined by email."""
from __future__ import annotations

import apache_beam as beam

from singleview.io.changes import ChangeLog
from singleview.io.mongodb import MongoTarget
from singleview.transforms.group import CoGroupPickled
from singleview.transforms.stages import Step, ViewStage
from singleview.view import DEFAULT_HISTORY_CAP


def tagged_alone(keyed: tuple, name: str) -> tuple:
    """(email, contribution) -> (email, {name: [contribution]}): the shape a CoGroupByKey gives."""
    email, contribution = keyed
    return email, {name: [contribution]}


class MergeSingleViews(beam.PTransform):
    """{crm, orders, marketing: (email, Contribution)} -> ViewChanges, with the views written.

    In batch a CoGroupByKey joins the three streams per email, and its tagged
    result is the input of the customer's merge. Streaming, each contribution
    goes to the customer's keyed state as it comes, tagged alone: a window
    here would make a change wait for a second window after the projection's
    (0.5-1.4 s more at 20 events/s, BENCHMARKS.md), and the writes are still
    batched, per bundle, with only the last write of a view sent.
    Every batch of view writes is logged first (io/changes.py), always: the
    API's segments read that log.
    """

    def __init__(self, target: MongoTarget, streaming: bool = False,
                 history_cap: int = DEFAULT_HISTORY_CAP, change_log: ChangeLog | None = None,
                 rebuild: bool = False):
        super().__init__()
        self.target, self.streaming = target, streaming
        self.history_cap, self.rebuild = history_cap, rebuild
        self.change_log = change_log if change_log is not None else ChangeLog()

    def expand(self, streams: dict):
        if self.streaming:
            grouped = ([pcoll | f"Tag {name}" >> beam.Map(tagged_alone, name) for name, pcoll in streams.items()]
                       | "ByEmail" >> beam.Flatten())
        else:
            grouped = streams | "CoGroupByEmail" >> CoGroupPickled()
        return (grouped
                | "Merge" >> Step(self.target, ViewStage(self.history_cap, self.rebuild), self.streaming,
                                  self.change_log))
