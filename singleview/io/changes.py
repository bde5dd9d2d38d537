"""The change log of customer_sv, for readers that keep a copy of part of every view (the API's segments).

Writing (`ChangeLog.append`, called by WriteStagedFn before it writes a batch
of views): one entry per batch in customer_sv_changes,
`{_id: "<writer>:<seq>", writer, seq, at, changes: [{email, rev, op, fields}]}`
(`fields`: the segment fields of the new view, None for a removal), then the
writer's head `{_id: writer, seq, first, at}` in customer_sv_writers. Logged
before the views are written, so every stored view has its entry; a batch
that fails is retried by the runner and logged again. A writer keeps its
last `keep` entries, deleting the older ones as it goes; writers idle for
`IDLE` are dropped when a pipeline starts (`drop_idle_writers`).

Reading (`ChangeFeed`): the heads (customer_sv_writers read whole: one
document per pipeline worker process active in the last `IDLE`, a handful),
then the entries after a cursor. Every other query is by exact `_id`, which
FerretDB 1.24 serves from its index. pymongo only: no Beam, no FastAPI.
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable

from pymongo import DeleteOne, InsertOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from singleview.document import segment_fields
from singleview.view import as_datetime
from singleview.io.store import CHANGES, DUPLICATE_KEY, WRITE_CHUNK, WRITERS, IdReader, through_outages

KEEP = 50_000
IDLE = timedelta(hours=24)
WRITE, REMOVE = "write", "remove"
WALK_BACK = 16  # entries looked up at once when walking back from a head


def entry_id(writer: str, seq: int) -> str:
    return f"{writer}:{seq:012d}"


def change_doc(change) -> dict:
    """One ViewChange as the log keeps it: only what a segment reads."""
    removed = change.doc is None
    return {"email": change.email, "rev": change.rev, "op": REMOVE if removed else WRITE,
            "fields": None if removed else segment_fields(change.doc)}


@dataclass
class _Writer:
    id: str
    seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


# The writer of each log in this process. The DirectRunner unpickles a fresh copy of
# a DoFn for every bundle, so a writer kept on the copy would be a new writer per
# bundle; Beam's Shared keeps only its last object alive. A cache, not state: a new
# process is a new writer, and nothing but its own entries depends on it.
_WRITERS: dict[str, _Writer] = {}
_WRITERS_LOCK = threading.Lock()


class ChangeLog:
    """Picklable. Its copies in one process share one writer: a uuid made on first use, and its seq."""

    def __init__(self, keep: int = KEEP):
        self.name = uuid.uuid4().hex
        self.keep = keep

    def writer(self) -> _Writer:
        with _WRITERS_LOCK:
            if self.name not in _WRITERS:
                _WRITERS[self.name] = _Writer(uuid.uuid4().hex)
            return _WRITERS[self.name]

    def append(self, db: Database, changes: Iterable) -> None:
        """Log one batch of ViewChanges; the writer's head moves only once its entry is stored."""
        writer = self.writer()
        with writer.lock:
            seq = writer.seq + 1
            now = datetime.now(timezone.utc)
            entry = {"_id": entry_id(writer.id, seq), "writer": writer.id, "seq": seq, "at": now,
                     "changes": [change_doc(c) for c in changes]}
            through_outages(lambda: self._store(db, entry), "log view changes")
            head = {"_id": writer.id, "seq": seq, "first": max(1, seq - self.keep + 1), "at": now}
            through_outages(lambda: db[WRITERS].replace_one({"_id": writer.id}, head, upsert=True),
                            "move the change log's head")
            writer.seq = seq

    def _store(self, db: Database, entry: dict) -> None:
        operations = [InsertOne(entry)]
        if entry["seq"] > self.keep:
            operations.append(DeleteOne({"_id": entry_id(entry["writer"], entry["seq"] - self.keep)}))
        try:
            db[CHANGES].bulk_write(operations, ordered=False)
        except BulkWriteError as error:
            # Stored by an attempt whose head did not move (or whose reply was lost): this one stands.
            if any(f.get("code") != DUPLICATE_KEY for f in error.details.get("writeErrors", [])):
                raise
            db[CHANGES].replace_one({"_id": entry["_id"]}, entry)


def drop_idle_writers(db: Database, idle: timedelta = IDLE, now: datetime | None = None) -> list[str]:
    """Delete the entries and heads of writers silent for `idle` (at a pipeline's start)."""
    cutoff = (now or datetime.now(timezone.utc)) - idle
    dropped = []
    for head in db[WRITERS].find({}):
        if as_datetime(head["at"]) >= cutoff:
            continue
        deletes = [DeleteOne({"_id": entry_id(head["_id"], s)}) for s in range(head["first"], head["seq"] + 1)]
        for start in range(0, len(deletes), WRITE_CHUNK):
            db[CHANGES].bulk_write(deletes[start:start + WRITE_CHUNK], ordered=False)
        db[WRITERS].delete_one({"_id": head["_id"]})
        dropped.append(head["_id"])
    return dropped


class ChangeFeed:
    """Reads the log by exact `_id` (and the heads whole)."""

    def __init__(self, db: Database, ids: IdReader):
        self.db, self.ids = db, ids

    def heads(self) -> dict[str, dict]:
        return {head["_id"]: head for head in self.db[WRITERS].find({})}

    def entries(self, writer: str, after: int, upto: int) -> list[dict] | None:
        """Entries after..upto of `writer` in order, or None when any is gone (retention overtook the reader)."""
        wanted = [entry_id(writer, seq) for seq in range(after + 1, upto + 1)]
        found = self.ids.find(self.db[CHANGES], wanted)
        if len(found) < len(wanted):
            return None
        return [found[i] for i in wanted]

    def since(self, writer: str, head: int, moment: datetime) -> list[dict]:
        """The entries up to `head` logged at `moment` or later (walking back from the head)."""
        recent: list[dict] = []
        seq = head
        while seq >= 1:
            wanted = [entry_id(writer, s) for s in range(seq, max(0, seq - WALK_BACK), -1)]
            found = self.ids.find(self.db[CHANGES], wanted)
            for i in wanted:
                if i not in found or as_datetime(found[i]["at"]) < moment:
                    return recent
                recent.append(found[i])
            seq -= WALK_BACK
        return recent
