"""The one place that knows which queries a server answers from an index (pymongo only: no Beam, no FastAPI).

FerretDB 1.24 on SQLite serves only a filter that is exactly `{_id: value}`
from an index (with the launcher's index, tools/ferretdb) and scans the whole
collection for anything else, `$in` on `_id` included; MongoDB serves `$in`
on `_id` from its `_id` index. So a read of many documents by id is one `$in`
query on MongoDB and concurrent exact look-ups on FerretDB: index-served on
both, its cost proportional to the ids asked for, not to the collection.
"""
from __future__ import annotations

import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from pymongo import DeleteOne, ReplaceOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import AutoReconnect, BulkWriteError, ConnectionFailure

from singleview.io.documents import contribution_of, group_of, retired_id, unpacked
from singleview.projection import Group
from singleview.sources import Section
from singleview.view import ViewState, fingerprints, newest

T = TypeVar("T")
SINGLE_VIEWS = "customer_sv"
TOMBSTONES = "customer_sv_tombstones"
# The change log of customer_sv (io/changes.py): one entry per batch of view writes, and
# each writer's head (one document per pipeline worker process).
CHANGES = "customer_sv_changes"
WRITERS = "customer_sv_writers"
DEAD_LETTERS = "sv_errors"
IN_CHUNK = 1000
INSERT_CHUNK = 1000
DUPLICATE_KEY = 11000
# FerretDB 1.24 keeps a query cursor open per update of a write command until
# the command ends, out of a pool of 100 SQLite connections: a command of 100
# updates waits for itself forever. MongoDB is indifferent to the split.
WRITE_CHUNK = 50


_SERVER_IS_FERRETDB: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def is_ferretdb(database: Database) -> bool:
    """FerretDB says what it is in `buildInfo`; asked once per client (the streaming DirectRunner sets
    DoFns up for every bundle)."""
    client = database.client
    if client not in _SERVER_IS_FERRETDB:
        _SERVER_IS_FERRETDB[client] = "ferretdbVersion" in client.admin.command("buildInfo")
    return _SERVER_IS_FERRETDB[client]


class IdReader:
    """Reads documents by `_id` the way the server answers from an index."""

    def __init__(self, database: Database, threads: int = 8, exact_only: bool | None = None):
        """`exact_only`: whether the server is FerretDB, when the caller asked already."""
        if exact_only is None:
            exact_only = through_outages(lambda: is_ferretdb(database), "ask the server what it is")
        self.exact_only = exact_only
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="id-lookup") if self.exact_only else None

    def find(self, collection: Collection, ids: Iterable, projection: dict | None = None) -> dict:
        """`_id` -> document for those of `ids` that exist."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        if self._pool is None:
            found = {}
            for start in range(0, len(ids), IN_CHUNK):
                for doc in collection.find({"_id": {"$in": ids[start:start + IN_CHUNK]}}, projection):
                    found[doc["_id"]] = doc
            return found
        docs = self._pool.map(lambda i: collection.find_one({"_id": i}, projection), ids)
        return {doc["_id"]: doc for doc in docs if doc is not None}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)


TRANSIENT = (AutoReconnect, ConnectionFailure)
OUTAGE_SECONDS = 300
log = logging.getLogger(__name__)


def through_outages(action: Callable[[], T], what: str, seconds: float = OUTAGE_SECONDS) -> T:
    """Run `action` again while the server is unreachable (a restart, a failover), up to `seconds`.

    Everything the pipeline reads or writes is idempotent (reads, writes by
    `_id` of whole documents), so a repeat after a broken connection is safe.
    """
    deadline = time.monotonic() + seconds
    pause = 0.1
    while True:
        try:
            return action()
        except TRANSIENT as error:
            if time.monotonic() > deadline:
                raise
            log.warning("%s: MongoDB unreachable (%s); retrying in %.1f s", what, type(error).__name__, pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


@dataclass(frozen=True)
class Write:
    """One document written whole by `_id`, or deleted (`doc` None).

    `new` says the document is not stored yet (an insert, much cheaper than
    a replace on FerretDB); one that turns out to be there is replaced.
    """

    collection: str
    doc_id: str
    doc: dict | None
    new: bool = False


def last_writes(writes: Iterable[Write]) -> list[Write]:
    """One write per document: the last, as an insert if the first one was."""
    final: dict[tuple[str, str], Write] = {}
    for write in writes:
        key = (write.collection, write.doc_id)
        first = final.get(key)
        final[key] = write if first is None else Write(write.collection, write.doc_id, write.doc,
                                                       first.new and write.doc is not None)
    return list(final.values())


class Store:
    """The pipeline's database: reads by `_id` the server serves from an index, and
    whole-document writes by `_id`, each repeated over an outage.

    `known_empty` names collections that were empty when this run took the
    writer lease (io.lease): what this run has not written is not there, so
    looking it up is skipped.
    """

    def __init__(self, database: Database, known_empty: frozenset[str] = frozenset()):
        self.db = database
        self.known_empty = known_empty
        self.ids = IdReader(database)

    def find(self, collection: str, ids: Iterable) -> dict:
        ids = list(ids)
        if collection in self.known_empty or not ids:
            return {}
        return through_outages(lambda: self.ids.find(self.db[collection], ids), f"read {collection}")

    def write(self, writes: Iterable[Write]) -> None:
        by_collection: dict[str, list[Write]] = {}
        for write in last_writes(writes):
            by_collection.setdefault(write.collection, []).append(write)
        for name, batch in sorted(by_collection.items()):
            through_outages(lambda: self._write(self.db[name], batch), f"write {name}")

    @staticmethod
    def _write(collection: Collection, writes: list[Write]) -> None:
        inserts = [w.doc for w in writes if w.new]
        replaces = [ReplaceOne({"_id": w.doc_id}, w.doc, upsert=True) for w in writes if not w.new and w.doc is not None]
        deletes = [DeleteOne({"_id": w.doc_id}) for w in writes if w.doc is None]
        stored = {}
        for start in range(0, len(inserts), INSERT_CHUNK):
            chunk = inserts[start:start + INSERT_CHUNK]
            try:
                collection.insert_many(chunk, ordered=False)
            except BulkWriteError as error:
                failures = error.details.get("writeErrors", [])
                if any(f.get("code") != DUPLICATE_KEY for f in failures):
                    raise
                stored.update({chunk[f["index"]]["_id"]: chunk[f["index"]] for f in failures})
        replaces += [ReplaceOne({"_id": i}, doc, upsert=True) for i, doc in stored.items()]
        for operations in (replaces, deletes):
            for start in range(0, len(operations), WRITE_CHUNK):
                collection.bulk_write(operations[start:start + WRITE_CHUNK], ordered=False)

    def groups(self, section: Section, ids: Iterable[str]) -> dict[str, Group]:
        """The stored parents (with their children) of these ids, where any is stored."""
        ids = list(ids)
        parents = self.find(section.parent.projection, ids)
        children = self.find(section.child.projection, ids) if section.child else {}
        return {i: group_of(section, i, parents.get(i), children.get(i))
                for i in ids if i in parents or i in children}

    def views(self, emails: Iterable[str]) -> dict[str, ViewState]:
        """The stored views of these emails, with the retractions kept for removed ones."""
        emails = list(emails)
        views = self.find(SINGLE_VIEWS, emails)
        tombstones = self.find(TOMBSTONES, [retired_id(e) for e in emails])
        states = {}
        for email in emails:
            view, tomb = views.get(email), tombstones.get(retired_id(email))
            if view is None and tomb is None:
                continue
            meta = unpacked(view and view.get("_meta"), self.db.codec_options)
            known = [contribution_of(email, c) for doc in (meta, tomb) if doc for c in doc.get("contributions", [])]
            states[email] = ViewState(email, newest(known), exists=view is not None, tombstoned=tomb is not None,
                                      sections=fingerprints(view))
        return states
