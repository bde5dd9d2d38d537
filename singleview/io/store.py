"""The one place that knows which queries a server answers from an index (pymongo only: no Beam, no FastAPI).

FerretDB 1.24 on SQLite serves only a filter that is exactly `{_id: value}`
from an index (with the launcher's index, tools/ferretdb) and scans the whole
collection for anything else, `$in` on `_id` included; MongoDB serves `$in`
on `_id` from its `_id` index. So a read of many documents by id is one `$in`
query on MongoDB and concurrent exact look-ups on FerretDB: index-served on
both, its cost proportional to the ids asked for, not to the collection.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from pymongo.collection import Collection
from pymongo.database import Database

IN_CHUNK = 1000
# FerretDB 1.24 keeps a query cursor open per update of a write command until
# the command ends, out of a pool of 100 SQLite connections: a command of 100
# updates waits for itself forever. MongoDB is indifferent to the split.
WRITE_CHUNK = 50


def is_ferretdb(database: Database) -> bool:
    """FerretDB says what it is in `buildInfo`."""
    return "ferretdbVersion" in database.client.admin.command("buildInfo")


class IdReader:
    """Reads documents by `_id` the way the server answers from an index."""

    def __init__(self, database: Database, threads: int = 8):
        self.exact_only = is_ferretdb(database)
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
