"""The batch pipeline on Flink (the Beam job server's embedded mini-cluster)
writes exactly the single views the DirectRunner writes."""
from __future__ import annotations

from singleview.pipelines.single_view import run

from tests.test_pipeline import messages, run_into, views, write_inputs  # noqa: F401 (fixture)


def test_flink_batch_equals_direct_runner(tmp_path, messages, mongo_uri, mongo_client, database_name):
    args = write_inputs(tmp_path, messages)
    direct_db = f"{database_name}_direct"
    try:
        run_into(mongo_uri, direct_db, args)
        expected = views(mongo_client[direct_db])
    finally:
        mongo_client.drop_database(direct_db)

    summary = run(args + ["--mongo_uri", mongo_uri, "--database", database_name, "--runner", "FlinkRunner"])
    assert views(mongo_client[database_name]) == expected
    assert summary.get("dead_lettered") > 0 and summary.read == summary.applied + summary.superseded \
        + summary.get("messages_skipped") + summary.get("dead_lettered")
