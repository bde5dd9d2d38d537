"""Streaming from the local Pub/Sub server converges to the batch result."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import pytest
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

from singleview.io.files import split_line
from singleview.io.pubsub import ensure_topic_and_subscription, parse_pubsub_url, publish
from singleview.io.store import Store, Write
from singleview.pipelines.options import SingleViewOptions
from singleview.pipelines.portable import prism_binary
from singleview.pipelines.single_view import local_runner
from singleview.samples import generate
from singleview.samples.__main__ import ARCHIVE_SCHEMA

from tests.test_pipeline import SOURCES, projections, run_into, views

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "singleview-test"


@pytest.fixture(scope="module")
def pubsub_host():
    host = os.environ.get("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    subprocess.run([str(ROOT / "scripts" / "pubsub.sh"), "start"], check=True,
                   env=dict(os.environ, PUBSUB_EMULATOR_HOST=host))
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    return host


def batch_views(tmp_path, generated, mongo_uri, mongo_client, database_name, *, with_projections=False):
    """The single views a batch run writes for the generated events (its database dropped after),
    and its projections if asked."""
    batch_db = f"{database_name}_batch"
    for source, lines in generated.items():
        (tmp_path / f"{source}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    try:
        run_into(mongo_uri, batch_db, [f"--input={s}={tmp_path / f'{s}.jsonl'}" for s in SOURCES])
        batch = mongo_client[batch_db]
        return (views(batch), projections(batch)) if with_projections else views(batch)
    finally:
        mongo_client.drop_database(batch_db)


def wait_for_views(worker, database, expected, seconds, log_path, dead_letters: int = 0) -> dict:
    """Poll the streaming run's views until they equal `expected` (and as many dead letters are in)
    or time runs out; the run must stay up."""
    deadline = time.monotonic() + seconds
    got = {}
    while time.monotonic() < deadline and worker.poll() is None:
        got = views(database)
        if got == expected and database["sv_errors"].count_documents({}) >= dead_letters:
            break
        time.sleep(1)
    assert worker.poll() is None, log_path.read_text()[-3000:]
    return got


def test_a_write_batch_holding_one_document_several_times_writes_the_last(database):
    """Flink fires the early, on-time and late panes of a key close together, so one write batch can hold
    the same document more than once: the last one is what is stored, and a document that turns out to be
    stored already when it is inserted is replaced."""
    database["c"].insert_one({"_id": "old", "v": 0})
    Store(database).write([Write("c", "k", {"_id": "k", "v": 1}, new=True), Write("c", "k", {"_id": "k", "v": 2}),
                           Write("c", "j", {"_id": "j"}, new=True), Write("c", "j", None),
                           Write("c", "old", {"_id": "old", "v": 3}, new=True)])
    assert {d["_id"]: d.get("v") for d in database["c"].find()} == {"k": 2, "old": 3}


def test_parse_pubsub_url():
    assert parse_pubsub_url("pubsub://projects/p/subscriptions/s") == ("subscription", "projects/p/subscriptions/s")
    assert parse_pubsub_url("pubsub://projects/p/topics/t") == ("topic", "projects/p/topics/t")
    for bad in ("projects/p/topics/t", "pubsub://projects/p/queues/q", "pubsub://projects/p/topics/"):
        with pytest.raises(ValueError, match="pubsub://"):
            parse_pubsub_url(bad)


def archive(project: str, subscription: str, count: int, path: Path) -> list[dict]:
    """Drain a subscription into a Pub/Sub-archive Avro file, as a Cloud Storage subscription writes it."""
    from google.cloud import pubsub_v1
    subscriber = pubsub_v1.SubscriberClient()
    name = subscriber.subscription_path(project, subscription)
    records = []
    try:
        deadline = time.monotonic() + 60
        while len(records) < count and time.monotonic() < deadline:
            response = subscriber.pull(subscription=name, max_messages=1000, timeout=10)
            records += [{"message": r.message.data, "attributes": dict(r.message.attributes),
                         "timestamp": int(r.message.publish_time.timestamp() * 1000)}
                        for r in response.received_messages]
            if response.received_messages:
                subscriber.acknowledge(subscription=name, ack_ids=[r.ack_id for r in response.received_messages])
    finally:
        subscriber.close()
    with open(path, "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(ARCHIVE_SCHEMA), records)
    return records


def test_the_local_server_answers_an_empty_pull_quickly(pubsub_host, database_name):
    """Held at most 20 ms (tools/pubsub); pstest held it 500 ms, stalling the
    DirectRunner's one worker on every idle subscription."""
    from google.cloud import pubsub_v1
    name = f"empty-{database_name[-10:]}"
    ensure_topic_and_subscription(PROJECT, name, name)
    subscriber = pubsub_v1.SubscriberClient()
    try:
        path = subscriber.subscription_path(PROJECT, name)
        subscriber.pull(subscription=path, max_messages=10, timeout=10)  # connect
        started = time.monotonic()
        response = subscriber.pull(subscription=path, max_messages=10, timeout=10)
        assert not response.received_messages
        assert time.monotonic() - started < 0.4
    finally:
        subscriber.close()


def test_the_direct_runner_is_chosen_here_so_that_nothing_is_downloaded():
    assert isinstance(local_runner(SingleViewOptions(["--streaming"])), BundleBasedDirectRunner)
    assert isinstance(local_runner(SingleViewOptions(["--streaming", "--runner", "DirectRunner"])),
                      BundleBasedDirectRunner)
    assert isinstance(local_runner(SingleViewOptions(["--runner", "DirectRunner"])), FnApiRunner)
    assert isinstance(local_runner(SingleViewOptions([])), FnApiRunner)
    assert local_runner(SingleViewOptions(["--streaming", "--runner", "FlinkRunner"])) is None
    assert local_runner(SingleViewOptions(["--runner", "PrismRunner"])) is None


def start_streaming(tmp_path, pubsub_host, mongo_uri, database_name, runner_args=()) -> subprocess.Popen:
    log = open(tmp_path / "stream.log", "wb")
    suffix = database_name[-10:]
    inputs = [f"--input={source}=pubsub://projects/{PROJECT}/subscriptions/{source}-{suffix}" for source in SOURCES]
    return subprocess.Popen([sys.executable, str(ROOT / "run_pipeline.py"), "--streaming", "--mongo_uri", mongo_uri,
                             "--database", database_name, *inputs, *runner_args], stdout=log,
                            stderr=subprocess.STDOUT, env=dict(os.environ, PUBSUB_EMULATOR_HOST=pubsub_host))


def test_streaming_converges_to_batch_and_to_the_archive_replay(tmp_path, pubsub_host, mongo_uri, mongo_client,
                                                                 database_name):
    generated = generate(customers=12, seed=9)
    expected = batch_views(tmp_path, generated, mongo_uri, mongo_client, database_name)

    suffix = database_name[-10:]
    for source in SOURCES:
        ensure_topic_and_subscription(PROJECT, f"{source}-{suffix}", f"{source}-{suffix}")
        ensure_topic_and_subscription(PROJECT, f"{source}-{suffix}", f"{source}-{suffix}-archive")
    worker = start_streaming(tmp_path, pubsub_host, mongo_uri, database_name)
    published = {}
    try:
        for source, lines in generated.items():
            data = [m.data for line in lines for m in split_line(source, line)]
            published[source] = publish(PROJECT, f"{source}-{suffix}", data, {"source": source})
        published["crm"] += publish(PROJECT, f"crm-{suffix}", [b"not json"], {"source": "crm", "sf.org": "00D1"})
        assert wait_for_views(worker, mongo_client[database_name], expected, 120, tmp_path / "stream.log",
                              dead_letters=1) == expected
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    dead = mongo_client[database_name]["sv_errors"].find_one({"source": "crm"})
    assert dead["attributes"] == [{"name": "sf.org", "value": "00D1"}, {"name": "source", "value": "crm"}]
    assert dead["published_at"] is not None and dead["payload"] == "not json"

    replay_db = f"{database_name}_replay"
    inputs = []
    for source in SOURCES:
        path = tmp_path / f"{source}.avro"
        records = archive(PROJECT, f"{source}-{suffix}-archive", published[source], path)
        assert len(records) == published[source]
        assert all(r["attributes"]["source"] == source and r["timestamp"] > 0 for r in records)
        inputs.append(f"--input={source}={path}")
    try:
        run_into(mongo_uri, replay_db, inputs)
        assert views(mongo_client[replay_db]) == expected
    finally:
        mongo_client.drop_database(replay_db)


def test_streaming_on_prism_converges_to_batch_and_acknowledges_what_it_read(tmp_path, pubsub_host, mongo_uri,
                                                                             mongo_client, database_name):
    """Prism has no Pub/Sub read of its own: `PullSubscription` reads, and acknowledges a batch once
    Prism has finalized its bundle, so nothing is delivered again after the ack deadline."""
    from google.cloud import pubsub_v1
    prism_binary()
    generated = generate(customers=8, seed=4)
    expected = batch_views(tmp_path, generated, mongo_uri, mongo_client, database_name)
    suffix = database_name[-10:]
    for source in SOURCES:
        ensure_topic_and_subscription(PROJECT, f"{source}-{suffix}", f"{source}-{suffix}", ack_deadline_seconds=10)
    worker = start_streaming(tmp_path, pubsub_host, mongo_uri, database_name, ["--runner", "PrismRunner"])
    try:
        for source, lines in generated.items():
            publish(PROJECT, f"{source}-{suffix}", [m.data for line in lines for m in split_line(source, line)])
        assert wait_for_views(worker, mongo_client[database_name], expected, 180, tmp_path / "stream.log") == expected
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    time.sleep(11)
    subscriber = pubsub_v1.SubscriberClient()
    try:
        for source in SOURCES:
            again = subscriber.pull(subscription=subscriber.subscription_path(PROJECT, f"{source}-{suffix}"),
                                    max_messages=100, timeout=5).received_messages
            assert not again, f"{source}: {len(again)} messages delivered again"
    finally:
        subscriber.close()
