"""Kafka: Debezium's key/value layout and tombstones, and streaming from a
local KRaft broker on Flink converging to the batch result."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from singleview.formats import decode, decode_debezium
from singleview.io.kafka import parse_kafka_url, publish, to_raw_message
from singleview.model import DELETE, DecodeError, RawMessage
from singleview.samples import generate, kafka_records

from tests.test_formats import CONFIG, dbz_payload, order_row
from tests.test_pipeline import SOURCES
from tests.test_streaming import batch_views, wait_for_views

ROOT = Path(__file__).resolve().parents[1]
Record = namedtuple("Record", "topic partition offset timestamp key value headers timestampTypeId timestampTypeName")
Header = namedtuple("Header", "key value")


def key_of(entity_id, wrapped=True) -> bytes:
    struct = {"entity_id": entity_id}
    return json.dumps({"schema": {"type": "struct", "fields": []}, "payload": struct} if wrapped else struct).encode()


def order_message(key, **payload) -> RawMessage:
    return RawMessage("orders", json.dumps(dbz_payload("sales_order", **payload)).encode(), key=key)


def test_parse_kafka_url():
    assert parse_kafka_url("kafka://127.0.0.1:9092/crm") == ("127.0.0.1:9092", "crm")
    assert parse_kafka_url("kafka://a:1,b:2/t.x") == ("a:1,b:2", "t.x")
    for bad in ("kafka://host/t", "kafka://h:1/", "kafka://h:1/a/b", "pubsub://projects/p/topics/t"):
        with pytest.raises(ValueError, match="kafka://"):
            parse_kafka_url(bad)


def test_kafka_record_becomes_raw_message_and_null_value_a_tombstone():
    record = Record("t", 0, 5, 1717000000000, b"k", b'{"a":1}', [Header("source", b"orders")], 0, "CreateTime")
    message = to_raw_message("orders", record)
    assert (message.data, message.key, dict(message.attributes)) == (b'{"a":1}', b"k", {"source": "orders"})
    assert message.publish_time.isoformat() == "2024-05-29T16:26:40+00:00" and not message.is_tombstone
    tombstone = to_raw_message("crm", record._replace(value=None, headers=None))
    assert tombstone.is_tombstone and tombstone.data == b""
    assert not to_raw_message("crm", record._replace(key=None, value=None)).is_tombstone


@pytest.mark.parametrize("source", SOURCES)
def test_tombstones_are_skipped_for_every_format(source):
    assert decode(RawMessage(source, b"", key=b'{"id": 1}'), CONFIG) == []


@pytest.mark.parametrize("wrapped", [True, False])
def test_debezium_key_is_checked_against_the_row(wrapped):
    [event] = decode_debezium(order_message(key_of(1001, wrapped), after=order_row()), CONFIG)
    assert event.entity_id == "1001"
    with pytest.raises(DecodeError, match="does not match"):
        decode_debezium(order_message(key_of(1002, wrapped), after=order_row()), CONFIG)


@pytest.mark.parametrize("key", [b"not json", b'{"payload": {"other": 1}}', b"[1]"])
def test_debezium_unusable_key_is_a_dead_letter(key):
    with pytest.raises(DecodeError):
        decode(order_message(key, after=order_row()), CONFIG)


def test_debezium_delete_without_before_image_takes_its_id_from_the_key():
    [event] = decode_debezium(order_message(key_of(1001), op="d"), CONFIG)
    assert (event.op, event.entity_id) == (DELETE, "1001")


def test_generated_debezium_deletes_are_followed_by_keyed_tombstones():
    generated = generate(customers=60, seed=3)
    records = kafka_records("orders", generated["orders"])
    assert len(records) == len(generated["orders"])
    tombstones = [i for i, (_, value) in enumerate(records) if value is None]
    assert tombstones and all(records[i][0] == records[i - 1][0] is not None for i in tombstones)
    assert all(key is not None for key, _ in records)
    assert all(key is None for key, _ in kafka_records("crm", generated["crm"]))


@pytest.fixture(scope="module")
def kafka_addr():
    addr = os.environ.get("SINGLEVIEW_KAFKA_ADDR", "127.0.0.1:9092")
    subprocess.run([str(ROOT / "scripts" / "kafka.sh"), "start"], check=True,
                   env=dict(os.environ, SINGLEVIEW_KAFKA_ADDR=addr))
    return addr


def test_streaming_from_kafka_on_flink_converges_to_batch(tmp_path, kafka_addr, mongo_uri, mongo_client,
                                                         database_name):
    generated = generate(customers=12, seed=9)
    expected = batch_views(tmp_path, generated, mongo_uri, mongo_client, database_name)

    suffix = database_name[-10:]
    for source, lines in generated.items():
        publish(kafka_addr, f"{source}-{suffix}", kafka_records(source, lines))
    log_path = tmp_path / "stream.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "run_pipeline.py"), "--streaming", "--runner", "FlinkRunner",
             "--mongo_uri", mongo_uri, "--database", database_name,
             *[f"--input={s}=kafka://{kafka_addr}/{s}-{suffix}" for s in SOURCES]],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_for_views(worker, mongo_client[database_name], expected, 120, log_path) == expected
        assert mongo_client[database_name]["sv_errors"].count_documents({}) == 0, "tombstones are skipped"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
