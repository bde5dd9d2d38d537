"""Windowing only batches writes: panes early, on time and late all apply."""
from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from singleview.formats import DecoderConfig
from singleview.io.mongodb import MongoTarget
from singleview.model import RawMessage
from singleview.pipelines.single_view import SingleViewPipeline


def salesforce(record: str, commit: int, **fields) -> RawMessage:
    header = {"entityName": "Contact", "recordIds": [record], "changeType": "CREATE" if commit == 1 else "UPDATE",
              "commitTimestamp": 1_717_000_000_000 + commit, "commitNumber": commit, "sequenceNumber": 1,
              "changedFields": list(fields)}
    return RawMessage("crm", json.dumps({"payload": {"ChangeEventHeader": header, **fields}}).encode())


def test_late_out_of_order_and_duplicate_events_are_applied(mongo_uri, database_name, database):
    create = salesforce("003L", 1, Email="Late@Example.com", Phone="1")
    newer = salesforce("003L", 3, Phone="3")
    older = salesforce("003L", 2, Phone="2", Name={"FirstName": "Lena"})
    stream = (TestStream()
              .advance_watermark_to(0)
              .add_elements([TimestampedValue(create, 10), TimestampedValue(newer, 11)])
              .advance_processing_time(5)
              .advance_watermark_to(100)
              # behind the watermark: late, out of order, and delivered twice
              .add_elements([TimestampedValue(older, 12), TimestampedValue(older, 12)])
              .advance_watermark_to_infinity())
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as p:
        ({"crm": p | stream}
         | SingleViewPipeline(MongoTarget(mongo_uri, database_name), DecoderConfig(), window_seconds=1))
    view = database["customer_sv"].find_one({"_id": "late@example.com"})
    assert view is not None
    assert view["crm_info"]["phone"] == "3"
    assert view["crm_info"]["first_name"] == "Lena"
