"""Streaming from the local Pub/Sub server converges to the batch result."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from singleview.io.mongodb import ApplyToProjectionFn, MongoTarget, WriteSingleViewsFn
from singleview.io.pubsub import ensure_topic_and_subscription, parse_pubsub_url, publish
from singleview.io.sources import split_line
from singleview.merge import Contribution
from singleview.model import UPSERT, ChangeEvent, make_version
from singleview.samples import generate

from tests.test_pipeline import SOURCES, run_into, views

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "singleview-test"


@pytest.fixture(scope="module")
def pubsub_host():
    host = os.environ.get("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    subprocess.run([str(ROOT / "scripts" / "pubsub.sh"), "start"], check=True,
                   env=dict(os.environ, PUBSUB_EMULATOR_HOST=host))
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    return host


def batch_views(tmp_path, generated, mongo_uri, mongo_client, database_name) -> dict:
    """The single views a batch run writes for the generated events (its database dropped after)."""
    batch_db = f"{database_name}_batch"
    for source, lines in generated.items():
        (tmp_path / f"{source}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    try:
        run_into(mongo_uri, batch_db, [f"--input={s}={tmp_path / f'{s}.jsonl'}" for s in SOURCES])
        return views(mongo_client[batch_db])
    finally:
        mongo_client.drop_database(batch_db)


def wait_for_views(worker, database, expected, seconds, log_path) -> dict:
    """Poll the streaming run's views until they equal `expected` or time runs out; the run must stay up."""
    deadline = time.monotonic() + seconds
    got = {}
    while time.monotonic() < deadline and worker.poll() is None:
        got = views(database)
        if got == expected:
            break
        time.sleep(1)
    assert worker.poll() is None, log_path.read_text()[-3000:]
    return got


def run_batch(fn, batch) -> list:
    fn.setup()
    try:
        return list(fn.process(batch))
    finally:
        fn.teardown()


def test_a_batch_holding_several_panes_of_one_key_applies_every_pane(mongo_uri, database, database_name):
    """Flink fires the early, on-time and late panes of a key close together, so one bundle (and batch)
    can hold the same document id or email more than once: none of them may shadow another."""
    target = MongoTarget(mongo_uri, database_name)
    event = lambda v, **fields: ChangeEvent("crm", "c1", UPSERT, make_version(v), fields)
    run_batch(ApplyToProjectionFn("crm", target), [("c1", [event(1, email="a@x.com")]),
                                                   ("c1", [event(2, phone="1")]), ("c1", [])])
    stored = database["crm_customers_projection"].find_one({"_id": "c1"})["state"]["fields"]
    assert stored == {"email": "a@x.com", "phone": "1"}

    crm = lambda cid: Contribution("crm", cid, "a@x.com", (1, 0), True, {"crm_id": cid})
    written = run_batch(WriteSingleViewsFn(target), [("a@x.com", [crm("c1")]), ("a@x.com", [crm("c2")]),
                                                     ("a@x.com", [])])
    assert written == ["a@x.com"]
    assert database["customer_sv"].find_one({"_id": "a@x.com"})["crm_info"]["crm_ids"] == ["c1", "c2"]
    assert run_batch(WriteSingleViewsFn(target), [("b@x.com", [])]) == []
    assert database["customer_sv_tombstones"].count_documents({}) == 0, "an empty pane retires nothing"


def test_parse_pubsub_url():
    assert parse_pubsub_url("pubsub://projects/p/subscriptions/s") == ("subscription", "projects/p/subscriptions/s")
    assert parse_pubsub_url("pubsub://projects/p/topics/t") == ("topic", "projects/p/topics/t")
    for bad in ("projects/p/topics/t", "pubsub://projects/p/queues/q", "pubsub://projects/p/topics/"):
        with pytest.raises(ValueError, match="pubsub://"):
            parse_pubsub_url(bad)


def test_streaming_converges_to_batch(tmp_path, pubsub_host, mongo_uri, mongo_client, database_name):
    generated = generate(customers=12, seed=9)
    expected = batch_views(tmp_path, generated, mongo_uri, mongo_client, database_name)

    suffix = database_name[-10:]
    args = []
    for source in SOURCES:
        ensure_topic_and_subscription(PROJECT, f"{source}-{suffix}", f"{source}-{suffix}")
        args.append(f"--input={source}=pubsub://projects/{PROJECT}/subscriptions/{source}-{suffix}")
    log = open(tmp_path / "stream.log", "wb")
    worker = subprocess.Popen([sys.executable, str(ROOT / "run_pipeline.py"), "--streaming", "--mongo_uri", mongo_uri,
                               "--database", database_name, *args], stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PUBSUB_EMULATOR_HOST=pubsub_host))
    try:
        for source, lines in generated.items():
            publish(PROJECT, f"{source}-{suffix}", [m.data for line in lines for m in split_line(source, line)],
                    {"source": source})
        assert wait_for_views(worker, mongo_client[database_name], expected, 120, tmp_path / "stream.log") == expected
    finally:
        worker.terminate()
        worker.wait(timeout=30)
