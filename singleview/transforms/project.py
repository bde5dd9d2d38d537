"""Projections: a section's change events folded into its stored parents and children."""
from __future__ import annotations

import apache_beam as beam

from singleview.io.mongodb import MongoTarget
from singleview.model import ChangeEvent
from singleview.sources import SOURCES, Section
from singleview.transforms.group import GroupPickled
from singleview.transforms.stages import OwnerStage, ProjectionStage, Step
from singleview.transforms.window import WindowChanges
from singleview.view import DEFAULT_HISTORY_CAP


def parent_id(event: ChangeEvent) -> str:
    """Children are projected with their parent."""
    return event.parent_id if SOURCES[event.source].is_child else event.entity_id


class ProjectSection(beam.PTransform):
    """A section's ChangeEvents (its parent's and its child's) -> (email, Contribution),
    or (owner, Part) for marketing.

    Windows (streaming) only batch the writes: each pane of a parent is
    folded into its state in turn, whenever it fires.
    """

    def __init__(self, section: Section, target: MongoTarget, streaming: bool = False,
                 window_seconds: float | None = None, window_by: str | None = None,
                 history_cap: int = DEFAULT_HISTORY_CAP):
        super().__init__()
        self.section, self.target, self.streaming = section, target, streaming
        self.window_seconds, self.window_by, self.history_cap = window_seconds, window_by, history_cap

    def expand(self, events):
        keyed = events | "KeyByParent" >> beam.Map(lambda e: (parent_id(e), e))
        if self.window_seconds:
            keyed = keyed | "Window" >> WindowChanges(self.window_seconds, self.window_by)
        stage = ProjectionStage(self.section, self.history_cap)
        return (keyed | "GroupByParent" >> GroupPickled()
                | "Project" >> Step(self.target, stage, self.streaming))


class ResolveOwners(beam.PTransform):
    """(owner, Part) -> (email, marketing Contribution): a HubSpot contact with the page views
    of every contact merged into it."""

    def __init__(self, target: MongoTarget, streaming: bool = False, history_cap: int = DEFAULT_HISTORY_CAP):
        super().__init__()
        self.target, self.streaming, self.history_cap = target, streaming, history_cap

    def expand(self, parts):
        grouped = (parts | "OnePartEach" >> beam.MapTuple(lambda owner, part: (owner, [part])) if self.streaming
                   else parts | "GroupByOwner" >> GroupPickled())
        return grouped | "Resolve" >> Step(self.target, OwnerStage(self.history_cap), self.streaming)
