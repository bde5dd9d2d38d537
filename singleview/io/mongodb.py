"""Beam's way into MongoDB: staged writes, dead letters, and whole collections read in `_id` ranges.

The stages of the pipeline (transforms/stages.py) keep their state in Beam
and read MongoDB only the first time they see a key; what they change leaves
as `Staged` records, which `WriteStagedFn` writes in bulk, whole documents by
`_id`, before it lets their contributions go on: whatever is downstream of a
write can count on it being stored.
"""
from __future__ import annotations

import os
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import apache_beam as beam
import pymongo
from apache_beam.metrics import Metrics
from apache_beam.transforms import window
from apache_beam.utils.shared import Shared

from singleview.io.changes import drop_idle_writers
from singleview.io.indexes import ensure_indexes
from singleview.io.lease import Holder, LeaseGuard
from singleview.io.store import DEAD_LETTERS, Store, Write, is_ferretdb, through_outages


@dataclass(frozen=True)
class MongoTarget:
    """Where the pipeline keeps its collections, and the run that writes them."""

    uri: str = "mongodb://127.0.0.1:27017"
    database: str = "singleview"
    holder: Holder | None = None
    known_empty: frozenset[str] = frozenset()
    # Copies of a target (one per DoFn, after pickling) share one client per process.
    clients: Shared = field(default_factory=Shared, compare=False, repr=False)
    guards: Shared = field(default_factory=Shared, compare=False, repr=False)

    @classmethod
    def from_env(cls, uri: str | None = None, database: str | None = None) -> "MongoTarget":
        return cls(uri or os.environ.get("MONGODB_URI") or cls.uri,
                   database or os.environ.get("SINGLEVIEW_DATABASE") or cls.database)

    def connect(self) -> pymongo.MongoClient:
        return pymongo.MongoClient(self.uri, tz_aware=True, serverSelectionTimeoutMS=10000)

    def shared_client(self) -> pymongo.MongoClient:
        """The streaming DirectRunner sets a DoFn up and tears it down for every
        bundle; connecting each time cost more than the bundle's own work."""
        return self.clients.acquire(self.connect)

    def shared_guard(self, db) -> LeaseGuard:
        """One lease guard per process: made at every set-up, it would read the lease before every
        write instead of every few seconds."""
        return self.guards.acquire(lambda: LeaseGuard(db, self.holder), tag=(db.name, self.holder.job))


class StoreFn(beam.DoFn):
    """A DoFn that reads or writes through a `Store` of its target."""

    def __init__(self, target: MongoTarget):
        self.target = target
        self.store: Store | None = None

    def setup(self):
        self.store = Store(self.target.shared_client()[self.target.database], self.target.known_empty)

    def teardown(self):
        self.store = None


@dataclass
class Staged:
    """What one step of a stage decided for one key: the documents to write, the
    (key, value) pairs to pass on once they are written, the view changes to log
    before them, and the counters to count once they are done."""

    writes: list[Write] = field(default_factory=list)
    emits: list = field(default_factory=list)
    changes: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


class StagedWriter:
    """Writes staged records (the lease checked, the view changes logged, then the documents)
    and counts them once written. One per DoFn copy; the lease guard is one per process."""

    def __init__(self, store: Store, target: MongoTarget, change_log=None):
        self.store, self.change_log = store, change_log
        self.guard = target.shared_guard(store.db) if target.holder else None
        self._counters: dict[str, object] = {}

    def write(self, batch: list[Staged]) -> None:
        writes = [w for staged in batch for w in staged.writes]
        changes = [c for staged in batch for c in staged.changes]
        if not (writes or changes):
            return
        if self.guard:
            through_outages(self.guard.check, "check the writer lease")
        if changes and self.change_log is not None:
            self.change_log.append(self.store.db, changes)
        self.store.write(writes)

    def written(self, staged: Staged) -> list:
        """Count a written record; what it passes on."""
        for name, count in staged.counts.items():
            if name not in self._counters:
                self._counters[name] = Metrics.counter("singleview", name)
            self._counters[name].inc(count)
        return staged.emits


class WritesInFlight:
    """Batches of staged records written in order on a thread of their own, while the caller
    goes on with the next (at most `IN_FLIGHT` behind): the server's time and the pipeline's
    overlap. A batch's emits are passed on once its writes are stored."""

    IN_FLIGHT = 3

    def __init__(self, staged: StagedWriter):
        self.staged = staged
        self.writer = ThreadPoolExecutor(2, thread_name_prefix="staged-writes")
        self.pending: deque = deque()

    def submit(self, batch: list[Staged]) -> Iterator:
        """Write `batch`; the emits of the batches written by now."""
        self.pending.append((self.writer.submit(self.staged.write, batch), batch))
        while self.pending and (self.pending[0][0].done() or len(self.pending) > self.IN_FLIGHT):
            yield from self._passed_on(*self.pending.popleft())

    def drain(self) -> Iterator:
        """The emits of every batch, once all are written."""
        while self.pending:
            yield from self._passed_on(*self.pending.popleft())

    def shutdown(self) -> None:
        self.writer.shutdown()

    def _passed_on(self, written: Future, batch: list[Staged]) -> Iterator:
        written.result()
        for staged in batch:
            yield from self.staged.written(staged)


class WriteStagedFn(StoreFn):
    """Write batches of staged records in bulk (`WritesInFlight`), then pass on what they
    emit, the last ones when the bundle finishes."""

    def __init__(self, target: MongoTarget, change_log=None):
        super().__init__(target)
        self.change_log = change_log

    def setup(self):
        super().setup()
        self.in_flight = WritesInFlight(StagedWriter(self.store, self.target, self.change_log))

    def process(self, batch: list[Staged]):
        yield from self.in_flight.submit(batch)

    def finish_bundle(self):
        for emit in self.in_flight.drain():
            yield window.GlobalWindows.windowed_value(emit)

    def teardown(self):
        self.in_flight.shutdown()
        super().teardown()


class WriteDeadLettersFn(StoreFn):
    def process(self, batch):
        docs = [d.to_doc() for d in batch]
        through_outages(lambda: self.store.db[DEAD_LETTERS].insert_many(docs, ordered=False), "write dead letters")
        yield len(batch)


def id_ranges(sample: list, parts: int) -> list[tuple]:
    """`parts` contiguous `_id` ranges [low, high) covering everything, cut at quantiles of a sample (None: open)."""
    ids = sorted(set(sample))
    cuts = [ids[len(ids) * i // parts] for i in range(1, parts)] if ids and parts > 1 else []
    bounds = [None, *sorted(set(cuts)), None]
    return list(zip(bounds, bounds[1:]))


def range_filter(low, high) -> dict:
    bounds = {**({"$gte": low} if low is not None else {}), **({"$lt": high} if high is not None else {})}
    return {"_id": bounds} if bounds else {}


class ReadCollection(beam.PTransform):
    """Every document of a collection, read in `_id` ranges that workers read in parallel
    (as Beam's mongodbio does), on a server that answers a range from its `_id` index.

    FerretDB 1.24 answers a range by scanning the collection, so there the
    collection is one range, read once.
    """

    SAMPLE = 1000

    def __init__(self, target: MongoTarget, collection: str, parts: int = 16):
        super().__init__()
        self.target, self.collection, self.parts = target, collection, parts

    def expand(self, pbegin):
        target, name, parts = self.target, self.collection, self.parts

        def ranges(_):
            db = target.shared_client()[target.database]
            if is_ferretdb(db) or db[name].estimated_document_count() < self.SAMPLE * 10:
                return [(None, None)]
            sample = [d["_id"] for d in db[name].aggregate([{"$sample": {"size": self.SAMPLE}},
                                                            {"$project": {"_id": 1}}])]
            return id_ranges(sample, parts)

        def read(bounds):
            db = target.shared_client()[target.database]
            yield from db[name].find(range_filter(*bounds))

        return (pbegin | "Start" >> beam.Impulse() | "Split" >> beam.FlatMap(ranges)
                | "Spread" >> beam.Reshuffle() | "Read" >> beam.FlatMap(read))


def prepare(target: MongoTarget, collections: Iterable[str]) -> frozenset[str]:
    """Create the indexes, drop the change log's idle writers, and say which of the collections are empty."""
    with target.connect() as client:
        db = client[target.database]
        ensure_indexes(db)
        drop_idle_writers(db)
        return frozenset(name for name in collections if db[name].find_one({}, {"_id": 1}) is None)

