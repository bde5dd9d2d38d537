"""Keyed stages: state per key, kept by Beam, read from MongoDB once.

Each stage of the pipeline folds what arrives for a key into that key's
state: a section's parent entity and its children (`ProjectionStage`), a
HubSpot contact's merged contacts (`OwnerStage`), a customer's single view
(`ViewStage`). A stage step is a pure function of the state and the input;
what it changes goes out as a `Staged` record, written before its emits go on.

Streaming, the state lives in a stateful DoFn in the global window
(checkpointed by Flink and Dataflow, one key at a time, in order): MongoDB
is read the first time a worker sees a key, by exact `_id`, and only
written after that. In batch every key arrives once, so there is no state
to keep: a bundle's keys are read in one go, then stepped.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms import window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from singleview.io.documents import children_doc, contribution_doc, packed, parent_doc, retired_id
from singleview.io.mongodb import MongoTarget, Staged, StagedWriter, StoreFn, WriteStagedFn, WritesInFlight
from singleview.io.store import SINGLE_VIEWS, TOMBSTONES, Store, Write
from singleview.fold import entity_email
from singleview.model import ChangeEvent
from singleview.projection import Group, Part, marketing_parts, project, resolve_owner
from singleview.sources import SECTIONS, Section
from singleview.view import DEFAULT_HISTORY_CAP, ViewChange, ViewState, merge_view, newest

BATCH = dict(min_batch_size=50, max_batch_size=1000)
PARENT, CHILD = "parent", "child"


class ProjectionStage:
    """Key: a section's parent id. Input: the parent's events and its children's. Emits
    (email, Contribution), or, for the marketing section, (owner id, Part)."""

    writes = True

    def __init__(self, section: Section, history_cap: int = DEFAULT_HISTORY_CAP):
        self.section, self.history_cap = section, history_cap

    def new(self, key: str) -> Group:
        return Group(key)

    def load(self, store: Store, items: list[tuple[str, Any]]) -> dict:
        return store.groups(self.section, [key for key, _ in items])

    def step(self, key: str, group: Group, events: Iterable[ChangeEvent]) -> tuple[Group, Staged]:
        section = self.section
        parents, children = [], []
        for event in events:
            (children if event.source != section.parent.name else parents).append(event)
        done = project(section, group, parents, children, self.history_cap)
        new = done.group
        staged = Staged(counts=Counter(f"{source}_{outcome}" for source, outcome in done.outcomes))
        if done.parent_changed:
            email = entity_email(section.parent.name, new.parent)
            staged.writes.append(Write(section.parent.projection, key, parent_doc(section, new, email),
                                       new=group.parent_rev == 0))
        if done.children_changed:
            staged.writes.append(Write(section.child.projection, key, children_doc(section, new),
                                       new=group.children_rev == 0))
        staged.emits = [(c.owner_id if isinstance(c, Part) else c.email, c) for c in done.contributions]
        return new, staged


class OwnerStage:
    """Key: the HubSpot contact that owns page views (itself, or the one it was merged into).
    Input: its contacts' Parts. Emits (email, marketing Contribution)."""

    section = SECTIONS["marketing"]
    writes = False

    def __init__(self, history_cap: int = DEFAULT_HISTORY_CAP):
        self.history_cap = history_cap

    def new(self, key: str) -> dict:
        return {}

    def load(self, store: Store, items: list[tuple[str, Iterable[Part]]]) -> dict:
        """The parts that did not arrive: the owner's own, then those of the contacts merged into it."""
        arrived = {owner: {p.contact_id: p for p in parts} for owner, parts in items}
        states = {owner: {} for owner in arrived}
        missing = {owner: [owner] for owner, parts in arrived.items() if owner not in parts}
        for _ in range(2):
            groups = store.groups(self.section, {i for ids in missing.values() for i in ids})
            for owner, ids in missing.items():
                for contact in ids:
                    if contact in groups:
                        states[owner].update(self._parts_for(owner, groups[contact]))
            missing = {owner: [m for m in self._merged(owner, states[owner], arrived[owner])
                               if m not in arrived[owner] and m not in states[owner]] for owner in arrived}
            missing = {owner: ids for owner, ids in missing.items() if ids}
        return {owner: state for owner, state in states.items() if state}

    def _parts_for(self, owner: str, group: Group) -> dict:
        email = entity_email("marketing", group.parent)
        return {p.contact_id: p for p in marketing_parts(group, email) if p.owner_id == owner}

    @staticmethod
    def _merged(owner: str, loaded: dict, arrived: dict) -> list[str]:
        own = arrived.get(owner) or loaded.get(owner)
        return sorted((own.properties or {}).get("merged_ids") or {}) if own else []

    def step(self, key: str, parts: dict, incoming: Iterable[Part]) -> tuple[dict, Staged]:
        merged = newest([*parts.values(), *incoming])
        return merged, Staged(emits=[(c.email, c) for c in resolve_owner(key, merged, self.history_cap)])


class ViewStage:
    """Key: a customer's email. Input: {crm, orders, marketing: Contributions}. Writes the single view
    (or removes it, keeping its retractions under a hash of the email) and emits the ViewChange."""

    writes = True

    def __init__(self, history_cap: int = DEFAULT_HISTORY_CAP, rebuild: bool = False):
        self.history_cap, self.rebuild = history_cap, rebuild

    def new(self, key: str) -> ViewState:
        return ViewState(key)

    def load(self, store: Store, items: list[tuple[str, Any]]) -> dict:
        return store.views([key for key, _ in items])

    def step(self, key: str, state: ViewState, grouped: dict) -> tuple[ViewState, Staged]:
        incoming = [c for section in SECTIONS for c in grouped.get(section, ())]
        new, change = merge_view(state, incoming, self.history_cap, complete=self.rebuild)
        if change is None:
            return new, Staged()
        return new, Staged(writes=view_writes(state, change), emits=[change], changes=[change],
                           counts=Counter({"views_written" if change.doc else "views_removed": 1}))


def view_writes(before: ViewState, change: ViewChange) -> list[Write]:
    if change.doc is not None:
        meta = {"contributions": [contribution_doc(c) for c in change.contributions]}
        doc = dict(change.doc, _meta=packed(meta))
        return [Write(SINGLE_VIEWS, change.email, doc, new=not before.exists)]
    tomb_id = retired_id(change.email)
    tomb = {"_id": tomb_id, "contributions": [contribution_doc(c.retracted()) for c in change.contributions]}
    writes = [Write(TOMBSTONES, tomb_id, tomb, new=not before.tombstoned)]
    if before.exists:
        writes.append(Write(SINGLE_VIEWS, change.email, None))
    return writes


class StepInBatchFn(StoreFn):
    """Batch: each key arrives once. Keys are stepped `KEYS` at a time, their stored states read
    together, and what they stage is written (`WritesInFlight`) before their emits go on.

    Gathering the keys here rather than in a BatchElements step keeps lists
    of records off Beam's edges: the runner estimates the size of sampled
    elements by encoding them, and a sampled list of a thousand events is a
    thousand events pickled.
    """

    KEYS = 500

    def __init__(self, target: MongoTarget, stage, change_log=None):
        super().__init__(target)
        self.stage, self.change_log = stage, change_log

    def setup(self):
        super().setup()
        self.staged = StagedWriter(self.store, self.target, self.change_log)
        self.in_flight = WritesInFlight(self.staged)

    def start_bundle(self):
        self.keys: list[tuple[str, Any]] = []

    def process(self, keyed):
        self.keys.append(keyed)
        if len(self.keys) >= self.KEYS:
            yield from self._stepped()

    def finish_bundle(self):
        for emit in [*self._stepped(), *self.in_flight.drain()]:
            yield window.GlobalWindows.windowed_value(emit)

    def teardown(self):
        self.in_flight.shutdown()
        super().teardown()

    def _stepped(self):
        batch, self.keys = self.keys, []
        if not batch:
            return
        stored = self.stage.load(self.store, batch)
        staged = []
        for key, inputs in batch:
            state = stored.get(key)
            staged.append(self.stage.step(key, self.stage.new(key) if state is None else state, inputs)[1])
        if self.stage.writes:
            yield from self.in_flight.submit(staged)
        else:
            for record in staged:
                yield from self.staged.written(record)


class StepWithStateFn(StoreFn):
    """Streaming: the key's state is Beam's; MongoDB is read the first time a worker sees the key.

    What the steps stage is written by this DoFn, in bulk, every `FLUSH`
    records and when the bundle ends, and only then do their emits go on: a
    bundle (its state changes included) is done whole or not at all. The
    streaming DirectRunner runs a bundle per key, and there a ParDo's cost
    per bundle (the DoFn pickled, set up, its signature read) is more than
    the write (BENCHMARKS.md, streaming freshness); Flink's bundles hold
    many keys, written together.
    """

    STATE = ReadModifyWriteStateSpec("state", PickleCoder())
    FLUSH = 200

    def __init__(self, target: MongoTarget, stage, change_log=None):
        super().__init__(target)
        self.stage, self.change_log = stage, change_log

    def setup(self):
        super().setup()
        self.staged = StagedWriter(self.store, self.target, self.change_log)

    def start_bundle(self):
        self.unwritten: list[Staged] = []

    def process(self, element, state=beam.DoFn.StateParam(STATE)):
        key, inputs = element
        current = state.read()
        if current is None:
            current = self.stage.load(self.store, [element]).get(key) or self.stage.new(key)
        new, staged = self.stage.step(key, current, inputs)
        state.write(new)
        self.unwritten.append(staged)
        if len(self.unwritten) >= self.FLUSH:
            yield from self._flushed()

    def finish_bundle(self):
        for emit in self._flushed():
            yield window.GlobalWindows.windowed_value(emit)

    def _flushed(self):
        batch, self.unwritten = self.unwritten, []
        self.staged.write(batch)
        for staged in batch:
            yield from self.staged.written(staged)


class Step(beam.PTransform):
    """Keyed inputs -> what the stage emits, once what it staged is written (the view changes
    logged in `change_log`): in batches, or with state when streaming."""

    def __init__(self, target: MongoTarget, stage, streaming: bool, change_log=None):
        super().__init__()
        self.target, self.stage, self.streaming, self.change_log = target, stage, streaming, change_log

    def expand(self, keyed):
        if self.streaming:
            return (keyed | "GlobalWindow" >> beam.WindowInto(window.GlobalWindows())
                    | "StepWithState" >> beam.ParDo(StepWithStateFn(self.target, self.stage, self.change_log)))
        return keyed | "StepInBatch" >> beam.ParDo(StepInBatchFn(self.target, self.stage, self.change_log))


class WriteStaged(beam.PTransform):
    """Staged records -> their writes in bulk, then what they emit."""

    def __init__(self, target: MongoTarget, change_log=None):
        super().__init__()
        self.target, self.change_log = target, change_log

    def expand(self, staged):
        return (staged | "Batch" >> beam.BatchElements(**BATCH)
                | "Write" >> beam.ParDo(WriteStagedFn(self.target, self.change_log)))
