"""Nothing is lost when the server restarts under a run, or a streaming job restarts without its state.

Each test stops and starts a real server process (a FerretDB of its own, or
the job itself) in the middle of a run and compares what the run ends with
against the single views of one clean batch run of the same events.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymongo

from singleview.io.files import split_line
from singleview.io.pubsub import ensure_topic_and_subscription, publish
from singleview.samples import generate

from tests.test_pipeline import SOURCES, projections, run_into, views
from tests.test_streaming import PROJECT, batch_views, pubsub_host, wait_for_views  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]


def pipeline(args: list[str], log: Path, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run_pipeline.py"), *args], stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, env={**os.environ, **env})


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_batch_run_rides_out_a_server_restart_and_a_rerun_changes_nothing(tmp_path, own_server, mongo_uri,
                                                                            mongo_client, database_name):
    generated = generate(customers=150, seed=21)
    expected = batch_views(tmp_path, generated, mongo_uri, mongo_client, database_name)
    inputs = [f"--input={s}={tmp_path / f'{s}.jsonl'}" for s in SOURCES]
    args = [*inputs, "--mongo_uri", own_server.uri, "--database", "restarted"]
    run = pipeline(args, tmp_path / "run.log")
    own = pymongo.MongoClient(own_server.uri, tz_aware=True)
    wait_until(lambda: own["restarted"]["ecommerce_orders_projection"].estimated_document_count() > 0
               or run.poll() is not None, 120, "the run wrote nothing")
    assert run.poll() is None, "the run ended before the server could be restarted"
    own_server.stop()
    time.sleep(3)
    own_server.start()
    assert run.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert views(own["restarted"]) == expected
    again = run_into(own_server.uri, "restarted", inputs)
    assert again.applied == 0 and again.get("views_written") == 0 and again.get("views_removed") == 0
    assert views(own["restarted"]) == expected


def stream_args(suffix: str, uri: str, database: str) -> list[str]:
    args = ["--streaming", "--mongo_uri", uri, "--database", database]
    for source in SOURCES:
        ensure_topic_and_subscription(PROJECT, f"{source}-{suffix}", f"{source}-{suffix}")
        args.append(f"--input={source}=pubsub://projects/{PROJECT}/subscriptions/{source}-{suffix}")
    return args


def halves(generated: dict) -> list[dict]:
    """The messages (HubSpot's batches split) in two halves."""
    messages = {source: [m.data for line in lines for m in split_line(source, line)]
                for source, lines in generated.items()}
    return [{source: data[half::2] for source, data in messages.items()} for half in (0, 1)]


def publish_all(messages: dict, suffix: str) -> None:
    for source, data in messages.items():
        publish(PROJECT, f"{source}-{suffix}", data)


def test_a_streaming_job_rides_out_a_server_restart(tmp_path, pubsub_host, own_server, mongo_uri, mongo_client,
                                                    database_name):
    generated = generate(customers=12, seed=22)
    expected = batch_views(tmp_path, generated, mongo_uri, mongo_client, database_name)
    suffix = f"restart-{database_name[-10:]}"
    job = pipeline(stream_args(suffix, own_server.uri, "streamed"), tmp_path / "stream.log",
                   PUBSUB_EMULATOR_HOST=pubsub_host)
    own = pymongo.MongoClient(own_server.uri, tz_aware=True)
    first, second = halves(generated)
    try:
        publish_all(first, suffix)
        wait_until(lambda: own["streamed"]["customer_sv"].estimated_document_count() > 0, 120,
                   "nothing streamed into the views")
        own_server.stop()
        publish_all(second, suffix)
        time.sleep(3)
        own_server.start()
        assert wait_for_views(job, own["streamed"], expected, 180, tmp_path / "stream.log") == expected
    finally:
        job.terminate()
        job.wait(timeout=30)


def test_a_streaming_job_restarted_without_its_state_ends_with_the_same_views(tmp_path, pubsub_host, mongo_uri,
                                                                             mongo_client, database_name):
    """The second job knows nothing the first kept in Beam's state: it reads what it needs from MongoDB."""
    generated = generate(customers=12, seed=23)
    expected = batch_views(tmp_path, generated, mongo_uri, mongo_client, database_name)
    first_half, second_half = halves(generated)
    (tmp_path / "half").mkdir()
    expected_first, applied_first = batch_views(tmp_path / "half", first_half, mongo_uri, mongo_client,
                                                database_name, with_projections=True)
    suffix = f"again-{database_name[-10:]}"
    args = stream_args(suffix, mongo_uri, database_name)
    first = pipeline(args, tmp_path / "first.log", PUBSUB_EMULATOR_HOST=pubsub_host)
    database = mongo_client[database_name]
    try:
        publish_all(first_half, suffix)
        assert wait_for_views(first, database, expected_first, 180, tmp_path / "first.log") == expected_first
        # The DirectRunner acknowledges a pull before it processes it, and page views of a contact with no
        # email yet show in no view: stop the job only when its projections hold all it was sent.
        wait_until(lambda: projections(database) == applied_first, 60, "the first job never applied the first half")
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 128 + signal.SIGTERM
    assert database["sv_lease"].count_documents({}) == 0, "a stopped job releases its lease"
    second = pipeline(args, tmp_path / "second.log", PUBSUB_EMULATOR_HOST=pubsub_host)
    try:
        publish_all(second_half, suffix)
        assert wait_for_views(second, database, expected, 180, tmp_path / "second.log") == expected
    finally:
        second.terminate()
        second.wait(timeout=30)
