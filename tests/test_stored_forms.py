"""Documents stored before versions were typed (zero-padded strings joined by `|`) are read as the
same projections that the typed form stores, and a run over them changes nothing that did not change.

The fixture is the database that the string-version code wrote for `generate(customers=8, seed=5)`.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from bson import json_util

from singleview.io.documents import group_of
from singleview.samples import generate
from singleview.sources import SECTIONS

from tests.test_pipeline import SOURCES, run_into, views, write_inputs

FIXTURE = Path(__file__).parent / "fixtures" / "stored-before-typed-versions.json.gz"
GENERATED = dict(customers=8, seed=5)


@pytest.fixture(scope="module")
def legacy() -> dict[str, list[dict]]:
    return json_util.loads(gzip.decompress(FIXTURE.read_bytes()), json_options=json_util.JSONOptions(tz_aware=True))


def groups(section, collections: dict[str, list[dict]]) -> dict:
    parents = {d["_id"]: d for d in collections.get(section.parent.projection, [])}
    children = {d["_id"]: d for d in collections.get(section.child.projection, [])} if section.child else {}
    return {i: group_of(section, i, parents.get(i), children.get(i)) for i in parents.keys() | children.keys()}


def typed_collections(database) -> dict[str, list[dict]]:
    return {name: list(database[name].find()) for name in database.list_collection_names()}


@pytest.fixture(scope="module")
def typed(tmp_path_factory, mongo_uri, mongo_client):
    """What the typed code stores for the same events."""
    name = "stored_forms_typed"
    mongo_client.drop_database(name)
    generated = generate(**GENERATED)
    run_into(mongo_uri, name, write_inputs(tmp_path_factory.mktemp("typed"), {s: generated[s] for s in SOURCES}))
    yield typed_collections(mongo_client[name])
    mongo_client.drop_database(name)


@pytest.mark.parametrize("section", list(SECTIONS.values()), ids=list(SECTIONS))
def test_string_versions_read_as_the_typed_projections(section, legacy, typed):
    old, new = groups(section, legacy), groups(section, typed)
    assert old and old.keys() == new.keys()
    for group_id in new:
        assert old[group_id].parent == new[group_id].parent, group_id
        assert old[group_id].children == new[group_id].children, group_id


def test_a_run_over_legacy_documents_changes_no_view_and_a_second_run_writes_nothing(tmp_path, legacy, mongo_uri,
                                                                                     mongo_client, database_name):
    """The first run may rewrite a view's bookkeeping in the new form (a merged HubSpot contact's
    revision is counted anew), never what the view shows."""
    database = mongo_client[database_name]
    for name, docs in legacy.items():
        if docs:
            database[name].insert_many(docs)
    generated = generate(**GENERATED)
    inputs = write_inputs(tmp_path, {s: generated[s] for s in SOURCES})
    first = run_into(mongo_uri, database_name, inputs)
    assert first.applied == 0 and first.get("views_removed") == 0
    assert views(database) == {d["_id"]: {k: v for k, v in d.items() if k not in ("_rev", "_meta")}
                               for d in legacy["customer_sv"]}
    second = run_into(mongo_uri, database_name, inputs)
    assert second.applied == 0 and second.get("views_written") == 0 and second.get("views_removed") == 0
