"""Rebuild: every single view recomputed from the stored projections (repair after a logic change)."""
from __future__ import annotations

from collections import Counter

import apache_beam as beam

from singleview.fold import entity_email
from singleview.io.changes import ChangeLog
from singleview.io.documents import group_of, parent_doc
from singleview.io.mongodb import MongoTarget, ReadCollection, Staged
from singleview.io.store import SINGLE_VIEWS, Write
from singleview.projection import Part, contributions_of
from singleview.sources import SECTIONS, Section
from singleview.transforms.merge import MergeSingleViews
from singleview.transforms.project import ResolveOwners
from singleview.transforms.stages import CHILD, PARENT, WriteStaged
from singleview.view import DEFAULT_HISTORY_CAP


def reassert(section: Section, parent_id: str, grouped: dict, history_cap: int) -> Staged:
    """A stored parent's contributions under a new revision of its document, so that they
    outrank whatever the views hold, however it was computed."""
    parents, children = list(grouped.get(PARENT, ())), list(grouped.get(CHILD, ()))
    group = group_of(section, parent_id, parents[0] if parents else None, children[0] if children else None)
    if group.parent is None:
        return Staged()
    group.parent_rev += 1
    email = entity_email(section.parent.name, group.parent)
    contributions = contributions_of(section, group, email, history_cap)
    return Staged(writes=[Write(section.parent.projection, parent_id, parent_doc(section, group, email))],
                  emits=[(c.owner_id if isinstance(c, Part) else c.email, c) for c in contributions],
                  counts=Counter({"projections_reasserted": 1}))


class RebuildSingleViews(beam.PTransform):
    def __init__(self, target: MongoTarget, history_cap: int = DEFAULT_HISTORY_CAP):
        super().__init__()
        self.target, self.history_cap = target, history_cap

    def expand(self, pbegin):
        streams = {}
        for section in SECTIONS.values():
            stored = {PARENT: section.parent.projection, **({CHILD: section.child.projection} if section.child else {})}
            docs = {role: (pbegin | f"Read {name}" >> ReadCollection(self.target, name)
                           | f"KeyById {name}" >> beam.Map(lambda d: (d["_id"], d)))
                    for role, name in stored.items()}
            staged = (docs | f"Join {section.name}" >> beam.CoGroupByKey()
                      | f"Reassert {section.name}" >> beam.MapTuple(
                          lambda key, grouped, s=section: reassert(s, key, grouped, self.history_cap)))
            streams[section.name] = staged | f"Write {section.name}" >> WriteStaged(self.target)
        streams["marketing"] |= "ResolveOwners" >> ResolveOwners(self.target, False, self.history_cap)
        streams["stored"] = (pbegin | "Read views" >> ReadCollection(self.target, SINGLE_VIEWS)
                             | "Emails" >> beam.Map(lambda d: (d["_id"], None)))
        return streams | "Merge" >> MergeSingleViews(self.target, history_cap=self.history_cap,
                                                     change_log=ChangeLog(), rebuild=True)
