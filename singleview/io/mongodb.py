"""MongoDB reads and writes for the pipeline: projections, single views, dead letters.

Every step reads the documents of a whole batch in one query and writes
them back in one unordered bulk operation: never a round trip per event.
Only operations that both MongoDB 6+ and FerretDB 1.24 support are used.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import apache_beam as beam
import pymongo
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared
from pymongo import DeleteOne, InsertOne, ReplaceOne
from pymongo.errors import BulkWriteError

from singleview.io.indexes import ensure_segment_indexes, index_currencies
from singleview.merge import (APPLIED, CHILD_OF, Contribution, apply_event, entity_email, is_alive,
                              in_fold_order, merge_contributions, new_entity)
from singleview.model import ERASE, ChangeEvent
from singleview.view import DEFAULT_HISTORY_CAP, contribution, render

PROJECTIONS = {
    "crm": "crm_customers_projection",
    "orders": "ecommerce_orders_projection",
    "order_items": "ecommerce_order_items_projection",
    "marketing": "marketing_preferences_projection",
    "pageviews": "marketing_pageviews_projection",
}
SINGLE_VIEWS = "customer_sv"
RETIRED_VIEWS = "customer_sv_tombstones"
DEAD_LETTERS = "sv_errors"
PARENT_CHILD = {parent: child for child, (parent, _) in CHILD_OF.items()}
READ_CHUNK = 1000
# FerretDB 1.24 (embedded, SQLite) hangs on a write command of more than 100
# updates; MongoDB is indifferent to the split.
WRITE_CHUNK = 100
MAX_ATTEMPTS = 5
DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class MongoTarget:
    """Where the pipeline keeps its collections."""

    uri: str = "mongodb://127.0.0.1:27017"
    database: str = "singleview"
    # Copies of a target (one per DoFn, after pickling) share one client per process.
    clients: Shared = field(default_factory=Shared, compare=False, repr=False)

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


def find_by_ids(collection, ids: Iterable[str]) -> dict[str, dict]:
    ids = sorted(set(ids))
    found: dict[str, dict] = {}
    for start in range(0, len(ids), READ_CHUNK):
        for doc in collection.find({"_id": {"$in": ids[start:start + READ_CHUNK]}}):
            found[doc["_id"]] = doc
    return found


def by_key(batch: Iterable[tuple[str, Iterable]]) -> dict[str, list]:
    """A batch of (key, values) with one entry per key. A bundle can hold
    several panes of one key and window (early, on-time and late firings,
    several at once on Flink), and every one of them counts."""
    grouped: dict[str, list] = {}
    for key, values in batch:
        grouped.setdefault(key, []).extend(values)
    return grouped


def bulk_write(collection, operations: list) -> None:
    for start in range(0, len(operations), WRITE_CHUNK):
        collection.bulk_write(operations[start:start + WRITE_CHUNK], ordered=False)


class ConflictError(RuntimeError):
    """Compare-and-swap kept losing; the runner retries the bundle."""


def compare_and_swap(collection, writes: Iterable[tuple[dict | None, dict]]) -> set[str]:
    """Write each (before, after) pair only if the stored document is still `before`.

    New documents are inserted (a concurrent insert makes it a duplicate
    key), existing ones replaced on their `_rev`. Returns the ids that lost
    and must be folded again from a fresh read.
    """
    writes = list(writes)
    suspects: set[str] = set()
    for start in range(0, len(writes), WRITE_CHUNK):
        chunk = writes[start:start + WRITE_CHUNK]
        operations = [InsertOne(after) if before is None
                      else ReplaceOne({"_id": after["_id"], "_rev": before["_rev"]}, after)
                      for before, after in chunk]
        replaces = [after["_id"] for before, after in chunk if before is not None]
        try:
            result = collection.bulk_write(operations, ordered=False).bulk_api_result
        except BulkWriteError as error:
            result = error.details
            for failure in result.get("writeErrors", []):
                if failure.get("code") != DUPLICATE_KEY:
                    raise
                suspects.add(chunk[failure["index"]][1]["_id"])
        if result.get("nMatched", 0) < len(replaces):
            suspects.update(replaces)
    if not suspects:
        return set()
    ours = {after["_id"]: after for _, after in writes}
    stored = find_by_ids(collection, suspects)
    return {doc_id for doc_id in suspects if stored.get(doc_id) != ours[doc_id]}


def retired_id(email: str) -> str:
    """Retractions outlive a view, keyed by a hash so no email is kept."""
    return hashlib.sha256(email.encode()).hexdigest()


def ensure_indexes(target: MongoTarget) -> None:
    """Dead-letter lookups and the API's segment filters (idempotent)."""
    with target.connect() as client:
        db = client[target.database]
        db[DEAD_LETTERS].create_index([("source", 1), ("at", -1)])
        ensure_segment_indexes(db[SINGLE_VIEWS], index_currencies())


class _MongoDoFn(beam.DoFn):
    def __init__(self, target: MongoTarget):
        self.target = target
        self._client = None

    def setup(self):
        self._client = self.target.shared_client()
        self.db = self._client[self.target.database]

    def teardown(self):
        self._client = self.db = None


def child_ids(parent: Mapping) -> list[str]:
    """The child documents a parent reads: its own and its merged contacts'."""
    return [parent["_id"], *sorted(parent["state"]["fields"].get("merged_ids") or {})]


def merged_owner(state: Mapping) -> str | None:
    """The contact a merged-away HubSpot contact now lives in."""
    return None if is_alive(state) else state["fields"].get("merged_into")


class ApplyToProjectionFn(_MongoDoFn):
    """Fold a batch of (document id, events) into one projection collection.

    Yields the contributions that the changed entities now make. A child
    (order item, page view) is written first and its parent read after, and
    a parent is written first and its children read after, so whichever
    side is written second sees the first.
    """

    def __init__(self, source: str, target: MongoTarget, history_cap: int = DEFAULT_HISTORY_CAP):
        super().__init__(target)
        self.source = source
        self.history_cap = history_cap
        self.applied = Metrics.counter("singleview", f"{source}_applied")
        self.superseded = Metrics.counter("singleview", f"{source}_superseded")
        self.retries = Metrics.counter("singleview", "cas_retries")

    def process(self, batch: list[tuple[str, Iterable[ChangeEvent]]]):
        collection = self.db[PROJECTIONS[self.source]]
        pending = by_key(batch)
        changed, old_emails, erased = {}, {}, []
        for _ in range(MAX_ATTEMPTS):
            stored = find_by_ids(collection, pending)
            planned, counts = {}, {}
            for doc_id, events in pending.items():
                before = stored.get(doc_id)
                doc, outcomes = self._fold(doc_id, before, events)
                counts[doc_id] = outcomes
                if APPLIED in outcomes:
                    planned[doc_id] = (before, doc)
            losers = compare_and_swap(collection, planned.values())
            self.retries.inc(len(losers))
            for doc_id, outcomes in counts.items():
                if doc_id in losers:
                    continue
                self.applied.inc(outcomes.count(APPLIED))
                self.superseded.inc(len(outcomes) - outcomes.count(APPLIED))
                if doc_id in planned:
                    before, doc = planned[doc_id]
                    changed[doc_id] = doc
                    if self.source not in CHILD_OF:
                        old_emails[doc_id] = entity_email(self.source, (before or {}).get("state"))
                        if any(e.op == ERASE for e in pending[doc_id]):
                            erased.append(doc_id)
            pending = {doc_id: pending[doc_id] for doc_id in losers}
            if not pending:
                break
        else:
            raise ConflictError(f"{self.source}: {len(pending)} documents lost {MAX_ATTEMPTS} compare-and-swaps")
        if erased:
            self.db[PROJECTIONS[PARENT_CHILD[self.source]]].delete_many({"_id": {"$in": erased}})
        if changed:
            yield from self._contributions(changed, old_emails, erased)

    def _fold(self, doc_id: str, before: dict | None, events: list[ChangeEvent]) -> tuple[dict, list[str]]:
        doc = copy.deepcopy(before) if before else {"_id": doc_id, "_rev": 0}
        ordered = in_fold_order(events)
        if self.source in CHILD_OF:
            children = doc.setdefault(CHILD_OF[self.source][1], {})
            outcomes = []
            for e in ordered:
                child = children.get(e.entity_id)
                if child is None:
                    child = children[e.entity_id] = new_entity()
                outcomes.append(apply_event(child, e))
        else:
            entity = doc.setdefault("state", new_entity())
            outcomes = [apply_event(entity, e) for e in ordered]
            doc["email"] = entity_email(self.source, entity)
        doc["_rev"] += 1
        return doc, outcomes

    def _contributions(self, changed: dict, old_emails: dict, erased: list):
        if self.source not in CHILD_OF:
            yield from self._emit(self.source, changed, old_emails, erased)
            return
        parent_source = CHILD_OF[self.source][0]
        collection = self.db[PROJECTIONS[parent_source]]
        parents = find_by_ids(collection, changed)
        changed = self._forget_erased(changed, parents)
        owners = {merged_owner(parents[i]["state"]) or i for i in changed if i in parents}
        parents.update(find_by_ids(collection, owners - set(parents)))
        yield from self._emit(parent_source, {i: parents[i] for i in sorted(owners) if i in parents}, {}, [])

    def _emit(self, source: str, parents: dict, old_emails: dict, erased: list):
        """Contributions of parents, each read with its children and its merged contacts' children."""
        child_source = PARENT_CHILD.get(source)
        wanted = {pid: child_ids(parent) for pid, parent in parents.items()}
        children = (find_by_ids(self.db[PROJECTIONS[child_source]], [c for ids in wanted.values() for c in ids])
                    if child_source else {})
        for pid, parent in parents.items():
            docs = [] if pid in erased else [children[c] for c in wanted[pid] if c in children]
            yield from contribution(source, pid, parent["state"] | {"_rev": parent["_rev"]}, docs,
                                    old_emails.get(pid), self.history_cap)

    def _forget_erased(self, changed: dict, parents: Mapping[str, dict]) -> dict:
        """Page views no newer than their contact's privacy erasure are dropped."""
        rewrites = {}
        for doc_id, child in changed.items():
            erased_at = ((parents.get(doc_id) or {}).get("state") or {}).get("erased")
            if not erased_at:
                continue
            views = child.get("views", {})
            kept = {vid: v for vid, v in views.items() if v["version"] > erased_at}
            if len(kept) != len(views):
                rewrites[doc_id] = dict(child, views=kept, _rev=child["_rev"] + 1)
        if rewrites:
            bulk_write(self.db[PROJECTIONS[self.source]],
                       [ReplaceOne({"_id": i}, d) for i, d in rewrites.items()])
            self.superseded.inc(sum(len(changed[i]["views"]) - len(d["views"]) for i, d in rewrites.items()))
            self.applied.inc(-sum(len(changed[i]["views"]) - len(d["views"]) for i, d in rewrites.items()))
        return {**changed, **rewrites}


class WriteSingleViewsFn(_MongoDoFn):
    """Merge a batch of customers' contributions into `customer_sv`."""

    def __init__(self, target: MongoTarget, history_cap: int = DEFAULT_HISTORY_CAP, rebuild_id: str | None = None):
        super().__init__(target)
        self.history_cap = history_cap
        self.rebuild_id = rebuild_id
        self.written = Metrics.counter("singleview", "views_written")
        self.removed = Metrics.counter("singleview", "views_removed")
        self.retries = Metrics.counter("singleview", "cas_retries")

    def process(self, batch: list[tuple[str, Iterable[Contribution]]]):
        pending = by_key(batch)
        for _ in range(MAX_ATTEMPTS):
            written, losers = self._write(pending)
            self.retries.inc(len(losers))
            yield from written
            pending = {email: pending[email] for email in losers}
            if not pending:
                return
        raise ConflictError(f"customer_sv: {len(pending)} views lost {MAX_ATTEMPTS} compare-and-swaps")

    def _write(self, pending: dict[str, list[Contribution]]) -> tuple[set[str], set[str]]:
        """One attempt: (emails whose view was written, emails that lost a swap)."""
        views, retired = self.db[SINGLE_VIEWS], self.db[RETIRED_VIEWS]
        stored = find_by_ids(views, pending)
        tombstones = find_by_ids(retired, [retired_id(e) for e in pending])
        upserts, deletes, retired_writes = [], {}, []
        for email, incoming in pending.items():
            before = stored.get(email)
            tomb = tombstones.get(retired_id(email))
            known = [] if self.rebuild_id else [
                Contribution.from_doc(email, c)
                for doc in (before and before.get("_meta"), tomb) if doc
                for c in doc.get("contributions", [])]
            merged = merge_contributions(known, incoming)
            if not merged:
                continue  # an empty pane for a customer never seen: nothing to write or retire
            doc = render(email, merged, self.history_cap)
            if doc is not None and self.rebuild_id:
                doc["_meta"]["rebuild"] = self.rebuild_id
            if doc is None:
                retractions = [dataclasses.replace(c, data=None).to_doc() for c in merged]
                if tomb is None or tomb.get("contributions") != retractions:
                    retired_writes.append(ReplaceOne({"_id": retired_id(email)},
                                                     {"contributions": retractions}, upsert=True))
                if before is not None:
                    deletes[email] = before["_rev"]
                continue
            if before is not None and {k: v for k, v in before.items() if k != "_rev"} == doc:
                continue
            doc["_rev"] = (before or {}).get("_rev", 0) + 1
            upserts.append((before, doc))
        if retired_writes:
            bulk_write(retired, retired_writes)
        losers = compare_and_swap(views, upserts)
        if deletes:
            bulk_write(views, [DeleteOne({"_id": e, "_rev": rev}) for e, rev in deletes.items()])
            losers |= set(find_by_ids(views, deletes))
        written = {d["_id"] for _, d in upserts} - losers
        self.written.inc(len(written))
        self.removed.inc(len(set(deletes) - losers))
        return written, losers


class ScanProjectionsFn(_MongoDoFn):
    """Every contribution the stored projections of one parent source make now."""

    def __init__(self, target: MongoTarget, history_cap: int = DEFAULT_HISTORY_CAP):
        super().__init__(target)
        self.history_cap = history_cap

    def process(self, source: str):
        child_source = PARENT_CHILD.get(source)
        children = ({d["_id"]: d for d in self.db[PROJECTIONS[child_source]].find()} if child_source else {})
        for parent in self.db[PROJECTIONS[source]].find():
            yield from contribution(source, parent["_id"], parent["state"] | {"_rev": parent["_rev"]},
                                    [children[i] for i in child_ids(parent) if i in children], None,
                                    self.history_cap)


def remove_views_not_rebuilt(target: MongoTarget, rebuild_id: str) -> int:
    """After a rebuild, a view that no projection asserts any more goes."""
    with target.connect() as client:
        return client[target.database][SINGLE_VIEWS].delete_many(
            {"_meta.rebuild": {"$ne": rebuild_id}}).deleted_count


class WriteDeadLettersFn(_MongoDoFn):
    def process(self, batch):
        self.db[DEAD_LETTERS].insert_many([d.to_doc() for d in batch], ordered=False)
        yield len(batch)
