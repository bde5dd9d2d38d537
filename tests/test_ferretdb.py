"""The local FerretDB launcher's `_id` index (tools/ferretdb/main.go).

FerretDB 1.24 finds a document by `_ferretdb_sjson->'$._id'` but indexes
`_ferretdb_sjson->"_id"`; the launcher adds an index on the first, which is
what turns a look-up by email from a table scan into an index search.
"""
from __future__ import annotations

import os
import sqlite3
import time
import uuid

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(bool(os.environ.get("MONGODB_URI")),
                                reason="MONGODB_URI names a real MongoDB: there is no local FerretDB")

LOOKUP = "EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM {table} WHERE _ferretdb_sjson->'$._id' = ?"


def data_dir() -> str:
    return os.path.join(ROOT, os.environ.get("SINGLEVIEW_MONGO_DIR") or ".data", "ferretdb")


def lookup_plan(database_name: str, collection: str, wait_s: float = 5.0) -> str:
    """SQLite's plan for FerretDB's look-up by `_id`, once the launcher had time to index."""
    path = os.path.join(data_dir(), f"{database_name}.sqlite")
    assert os.path.exists(path), f"no FerretDB data file at {path}: is the server this checkout's?"
    deadline = time.monotonic() + wait_s
    while True:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (table,) = con.execute("SELECT table_name FROM _ferretdb_collections WHERE name = ?",
                                   [collection]).fetchone()
            plan = " ".join(row[-1] for row in con.execute(LOOKUP.format(table=f'"{table}"'), ['"x"']))
        finally:
            con.close()
        if "USING INDEX" in plan or time.monotonic() > deadline:
            return plan
        time.sleep(0.1)


def test_lookup_by_id_uses_an_index(database, database_name):
    assert sqlite3.sqlite_version_info >= (3, 38), "the -> operator in FerretDB's schema needs SQLite 3.38+"
    database.people.insert_many([{"_id": f"p{i}@example.com", "n": i} for i in range(500)])
    plan = lookup_plan(database_name, "people")
    assert "SEARCH" in plan and "__id_pushdown" in plan, plan
    assert database.people.find_one({"_id": "p321@example.com"}) == {"_id": "p321@example.com", "n": 321}
    database.people.update_one({"_id": "p7@example.com"}, {"$set": {"n": -7}})
    database.people.delete_one({"_id": "p8@example.com"})
    assert database.people.find_one({"_id": "p7@example.com"})["n"] == -7
    assert database.people.count_documents({}) == 499
    # Invisible to clients: FerretDB lists only its own indexes.
    assert list(database.people.index_information()) == ["_id_"]


def test_a_recreated_collection_is_indexed_again(database, database_name):
    database.people.insert_one({"_id": "a@example.com"})
    assert "USING INDEX" in lookup_plan(database_name, "people")
    database.drop_collection("people")
    database.people.insert_one({"_id": "b@example.com"})
    assert "USING INDEX" in lookup_plan(database_name, "people")
    assert database.people.find_one({"_id": "b@example.com"}) == {"_id": "b@example.com"}


def test_the_wal_files_of_a_dropped_database_are_removed(mongo_client):
    """A database dropped while the launcher had its file open leaves <db>.sqlite-wal
    and -shm behind; a database re-created under that name would replay them."""
    mongo_client.admin.command("ping")
    orphans = [os.path.join(data_dir(), f"svtest_orphan_{uuid.uuid4().hex[:10]}.sqlite{suffix}")
               for suffix in ("-wal", "-shm")]
    for path in orphans:
        with open(path, "wb") as f:
            f.write(b"\0" * 32)
    deadline = time.monotonic() + 5
    while any(os.path.exists(p) for p in orphans) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(p) for p in orphans)
