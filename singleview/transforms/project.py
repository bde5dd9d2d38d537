"""Projections: fold each entity's events into its stored current image."""
from __future__ import annotations

import apache_beam as beam

from singleview.io.mongodb import ApplyToProjectionFn, MongoTarget
from singleview.merge import CHILD_OF
from singleview.view import DEFAULT_HISTORY_CAP

BATCH = dict(min_batch_size=50, max_batch_size=1000)


def document_id(event) -> str:
    """Children live in their parent's document (one document per parent)."""
    return event.parent_id if event.source in CHILD_OF else event.entity_id


class ProjectChanges(beam.PTransform):
    """ChangeEvent -> Contribution, through the source's projection collection."""

    def __init__(self, source: str, target: MongoTarget, history_cap: int = DEFAULT_HISTORY_CAP):
        super().__init__()
        self.source = source
        self.target = target
        self.history_cap = history_cap

    def expand(self, events):
        return (events
                | "KeyByDocument" >> beam.Map(lambda e: (document_id(e), e))
                | "GroupByDocument" >> beam.GroupByKey()
                | "Batch" >> beam.BatchElements(**BATCH)
                | "Apply" >> beam.ParDo(ApplyToProjectionFn(self.source, self.target, self.history_cap)))
