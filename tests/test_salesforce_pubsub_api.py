"""Salesforce Pub/Sub API events through the pipeline, against the real servers:
a binary archive in batch and binary messages on the local Pub/Sub server give
the single views that the CometD JSON of the same changes gives."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

from singleview.io.pubsub import ensure_topic_and_subscription, publish
from singleview.model import BASE64
from singleview.samples import generate
from singleview.samples.__main__ import SALESFORCE_AVRO, SCHEMA_DIR, write
from singleview.samples.salesforce import SCHEMA_ID, pubsub_api_record, write_schema_dir

from tests.test_pipeline import ROOT, SOURCES, run_into, views
from tests.test_salesforce_avro import header
from tests.test_streaming import PROJECT, pubsub_host, wait_for_views  # noqa: F401 - pubsub_host is a fixture

GAP = json.dumps({"schema": SCHEMA_ID, "payload": {"ChangeEventHeader": header("GAP_UPDATE", record_ids=["003X"])},
                  "event": {"replayId": 99}}).encode()


def test_binary_archive_gives_the_same_views_as_the_json_lines(tmp_path, mongo_uri, mongo_client, database_name):
    generated = generate(customers=15, seed=5)
    generated["crm"].append(GAP)
    results, summaries = {}, {}
    for fmt in ("jsonl", SALESFORCE_AVRO):
        out = tmp_path / fmt
        write(out, generated, fmt)
        binary = fmt == SALESFORCE_AVRO
        args = [f"--input={s}={out / s}.{'avro' if binary and s == 'crm' else 'jsonl'}" for s in SOURCES]
        args += ["--salesforce_schema_dir", str(out / SCHEMA_DIR)] if binary else []
        name = f"{database_name}_{'binary' if binary else 'json'}"
        try:
            summaries[fmt] = run_into(mongo_uri, name, args)
            results[fmt] = views(mongo_client[name])
            [dead] = mongo_client[name]["sv_errors"].find()
            assert "GAP_UPDATE" in dead["reason"] and "resync" in dead["reason"]
        finally:
            mongo_client.drop_database(name)
    assert results["jsonl"] and any(doc.get("crm_info") for doc in results["jsonl"].values())
    assert results[SALESFORCE_AVRO] == results["jsonl"]
    outcomes = {fmt: (s.get("events_decoded"), s.get("messages_skipped"), s.get("dead_lettered"),
                      s.applied + s.superseded) for fmt, s in summaries.items()}  # the split depends on bundling
    assert outcomes[SALESFORCE_AVRO] == outcomes["jsonl"]


def test_binary_events_on_pubsub_stream_into_the_views_of_their_json(tmp_path, pubsub_host, mongo_uri,  # noqa: F811
                                                                      mongo_client, database_name):
    crm = generate(customers=12, seed=21)["crm"]
    batch_file = tmp_path / "crm.jsonl"
    batch_file.write_bytes(b"\n".join(crm) + b"\n")
    batch_db = f"{database_name}_batch"
    try:
        run_into(mongo_uri, batch_db, [f"--input=crm={batch_file}"])
        expected = views(mongo_client[batch_db])
    finally:
        mongo_client.drop_database(batch_db)
    assert expected and all(doc.get("crm_info") for doc in expected.values())

    topic = f"sfbin-{database_name[-10:]}"
    ensure_topic_and_subscription(PROJECT, topic, topic)
    log_path = tmp_path / "stream.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "run_pipeline.py"), "--streaming", "--mongo_uri", mongo_uri,
             "--database", database_name, "--salesforce_schema_dir", str(write_schema_dir(tmp_path / "schemas")),
             f"--input=crm=pubsub://projects/{PROJECT}/subscriptions/{topic}"],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PUBSUB_EMULATOR_HOST=pubsub_host))
    records = [pubsub_api_record(message) for message in crm]
    try:
        publish(PROJECT, topic, [record["payload"] for record in records], {"schema_id": SCHEMA_ID})
        publish(PROJECT, topic, [records[0]["payload"]], {"schema_id": "0Xnotfetched"})
        assert wait_for_views(worker, mongo_client[database_name], expected, 120, log_path,
                              dead_letters=1) == expected
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    [dead] = mongo_client[database_name]["sv_errors"].find()
    assert "'0Xnotfetched'" in dead["reason"] and dead["payload_encoding"] == BASE64
    assert base64.b64decode(dead["payload"]) == records[0]["payload"]
    assert dead["attributes"] == [{"name": "schema_id", "value": "0Xnotfetched"}]
