"""The batch pipeline end to end on generated CDC, against the real server."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from singleview import sources
from singleview.formats import DecoderConfig
from singleview.io.documents import unpacked
from singleview.io.lease import Holder, acquire, release
from singleview.model import RawMessage
from singleview.pipelines.single_view import run
from singleview.samples import generate
from singleview.transforms.decode import DecodeMessages

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("crm", "orders", "order_items", "marketing", "pageviews")
GARBAGE = {"crm": b'{"payload": {"ChangeEventHeader": {"entityName": "Contact", "recordIds": ["003X"], '
                   b'"changeType": "GAP_UPDATE", "commitTimestamp": 1, "commitNumber": 1, "sequenceNumber": 1}}}',
           "orders": b"not json at all", "pageviews": b'{"eventType": "e_visited_page"}'}


@pytest.fixture(scope="module")
def messages():
    generated = generate(customers=40, seed=11)
    return {source: list(generated[source]) + ([GARBAGE[source]] if source in GARBAGE else [])
            for source in SOURCES}


def write_inputs(directory, messages, name="part"):
    args = []
    for source, lines in messages.items():
        path = directory / f"{source}-{name}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        args += ["--input", f"{source}={path}"]
    return args


def run_into(mongo_uri, database_name, args):
    return run(args + ["--mongo_uri", mongo_uri, "--database", database_name, "--runner", "DirectRunner"])


def views(database):
    """The single views without bookkeeping (revisions differ between runs)."""
    return {d["_id"]: {k: v for k, v in d.items() if k not in ("_rev", "_meta")}
            for d in database["customer_sv"].find()}


def projections(database) -> dict:
    """What each projection holds, unpacked, without the bookkeeping that depends on how events were
    batched (revisions, emails retired along the way): what a run has applied, including what no
    view shows yet (page views of a contact with no email)."""
    return {name: {d["_id"]: {k: unpacked(v) if isinstance(v, dict) else v for k, v in d.items()
                              if k not in ("_rev", "retired")}
                   for d in database[sources.SOURCES[name].projection].find()}
            for name in SOURCES}


def test_decode_transform_separates_dead_letters():
    good = json.dumps({"key": "1", "op": "upsert", "ts": 5, "data": {"email": "A@x.com"}}).encode()
    with TestPipeline() as p:
        decoded = (p | beam.Create([RawMessage("crm", good), RawMessage("crm", b"{")])
                   | DecodeMessages(DecoderConfig(), fmt="basic"))
        assert_that(decoded.events | beam.Map(lambda e: (e.entity_id, e.op)), equal_to([("1", "upsert")]),
                    label="events")
        assert_that(decoded.dead_letters | beam.Map(lambda d: d.source), equal_to(["crm"]), label="dead")


def test_batch_run_counts_add_up_and_writes_views(tmp_path, messages, mongo_uri, database, database_name):
    summary = run_into(mongo_uri, database_name, write_inputs(tmp_path, messages))
    assert summary.read > 0
    assert summary.read == summary.applied + summary.superseded + summary.get("messages_skipped") \
        + summary.get("dead_lettered")
    assert summary.get("dead_lettered") == len(GARBAGE)
    errors = list(database["sv_errors"].find())
    assert sorted(e["source"] for e in errors) == sorted(GARBAGE)
    assert all(e["reason"] and e["payload"] for e in errors)
    assert any("resync" in e["reason"].lower() for e in errors if e["source"] == "crm")

    docs = views(database)
    assert docs and summary.get("views_written") >= len(docs)
    assert all(doc["_id"] == doc["_id"].strip().lower() for doc in docs.values())
    assert any(doc.get("crm_info") and doc.get("order_history") and doc.get("marketing_preferences")
               for doc in docs.values())
    assert any(o["items"] for doc in docs.values() for o in doc.get("order_history", []))
    assert any(doc.get("marketing_preferences", {}).get("viewed_categories") for doc in docs.values())
    for doc in database["customer_sv"].find():
        assert "_meta" in doc and doc["_rev"] >= 1

    again = run_into(mongo_uri, database_name, write_inputs(tmp_path, messages, "again"))
    assert again.applied == 0 and again.get("views_written") == 0
    assert views(database) == docs


def test_same_views_all_at_once_shuffled_split_in_three_and_doubled(tmp_path, messages, mongo_uri, mongo_client,
                                                                     database_name):
    run_into(mongo_uri, database_name, write_inputs(tmp_path, messages, "whole"))
    expected = views(mongo_client[database_name])
    rnd = random.Random(3)
    shuffled = {s: rnd.sample(lines, len(lines)) for s, lines in messages.items()}
    ways = {
        "shuffled": [shuffled],
        "three": [{s: lines[i::3] for s, lines in shuffled.items()} for i in range(3)],
        "doubled": [{s: lines + lines for s, lines in shuffled.items()}],
    }
    for way, runs in ways.items():
        other = f"{database_name}_{way}"
        try:
            for i, part in enumerate(runs):
                run_into(mongo_uri, other, write_inputs(tmp_path, part, f"{way}{i}"))
            assert views(mongo_client[other]) == expected, way
        finally:
            mongo_client.drop_database(other)


def test_bad_input_argument_is_a_clear_error(mongo_uri, database_name):
    with pytest.raises(ValueError, match="unknown source"):
        run_into(mongo_uri, database_name, ["--input", "erp=/nowhere/*.jsonl"])


def test_a_glob_that_matches_no_file_is_a_clear_error(tmp_path, mongo_uri, database_name):
    (tmp_path / "orders.jsonl").write_text("")
    with pytest.raises(ValueError, match="crm: no file matches '/nowhere/"):
        run_into(mongo_uri, database_name, ["--input", "crm=/nowhere/*.jsonl",
                                            "--input", f"orders={tmp_path / 'orders.jsonl'}"])


def test_one_writer_at_a_time_and_two_pipelines_in_turn_end_where_one_would(tmp_path, messages, mongo_uri,
                                                                            mongo_client, database_name):
    """State is kept per key in one pipeline, so a database has one writer: a second pipeline
    refuses to start while another holds the lease, or waits for it (--lease_wait)."""
    run_into(mongo_uri, database_name, write_inputs(tmp_path, messages, "single"))
    expected = views(mongo_client[database_name])

    other = f"{database_name}_c"
    holder = Holder("someone-else", "streaming")
    acquire(mongo_client[other], holder)
    refused = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), "--mongo_uri", mongo_uri,
                              "--database", other, *write_inputs(tmp_path, messages, "refused")],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "being written by job someone-else (streaming" in refused.stderr
    release(mongo_client[other], holder)

    halves = [{s: lines[i::2] for s, lines in messages.items()} for i in (0, 1)]
    commands = [[sys.executable, str(ROOT / "run_pipeline.py"), "--mongo_uri", mongo_uri, "--database", other,
                 "--lease_wait", "300", *write_inputs(tmp_path, half, f"half{i}")] for i, half in enumerate(halves)]
    try:
        workers = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in commands]
        outputs = [w.communicate(timeout=300)[0].decode() for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        assert views(mongo_client[other]) == expected
        assert mongo_client[other]["sv_lease"].count_documents({}) == 0, "released at the end"
    finally:
        mongo_client.drop_database(other)


def test_pubsub_archive_avro_gives_the_same_views_as_jsonl(tmp_path, mongo_uri, mongo_client, database_name):
    from singleview.samples.__main__ import write
    generated = generate(customers=15, seed=4)
    results = []
    for fmt in ("jsonl", "avro"):
        write(tmp_path / fmt, generated, fmt)
        name = f"{database_name}_{fmt}"
        try:
            run_into(mongo_uri, name, [f"--input={s}={tmp_path / fmt / f'{s}.{fmt}'}" for s in SOURCES])
            results.append(views(mongo_client[name]))
        finally:
            mongo_client.drop_database(name)
    assert results[0] and results[0] == results[1]


def test_rebuild_from_projections_gives_the_incremental_views(tmp_path, messages, mongo_uri, database,
                                                              database_name):
    run_into(mongo_uri, database_name, write_inputs(tmp_path, messages))
    incremental = views(database)
    database["customer_sv"].insert_one({"_id": "orphan@example.com", "email": "orphan@example.com", "_rev": 1})
    database["customer_sv"].update_many({}, {"$set": {"name": "stale"}})
    summary = run(["--mode", "rebuild", "--mongo_uri", mongo_uri, "--database", database_name])
    assert summary.get("views_removed") == 1
    assert views(database) == incremental


def test_views_whose_meta_was_written_as_fields_still_merge(tmp_path, messages, mongo_uri, mongo_client,
                                                            database_name):
    """Views written before `_meta` was packed (io/documents.py) are read as they are, and merged."""
    from singleview.io.documents import unpacked
    run_into(mongo_uri, database_name, write_inputs(tmp_path, messages, "whole"))
    expected = views(mongo_client[database_name])
    other = f"{database_name}_legacy"
    try:
        halves = [{s: lines[i::2] for s, lines in messages.items()} for i in range(2)]
        run_into(mongo_uri, other, write_inputs(tmp_path, halves[0], "half0"))
        stored = mongo_client[other]["customer_sv"]
        legacy = 0
        for doc in stored.find():
            meta = unpacked(doc["_meta"], stored.codec_options)
            assert meta["contributions"] and "packed" in doc["_meta"]
            stored.replace_one({"_id": doc["_id"]}, dict(doc, _meta=meta))
            legacy += 1
        assert legacy and all("contributions" in d["_meta"] for d in stored.find())
        run_into(mongo_uri, other, write_inputs(tmp_path, halves[1], "half1"))
        assert views(mongo_client[other]) == expected
    finally:
        mongo_client.drop_database(other)
