"""Windowing only batches writes: panes early, on time and late all apply.

Each streaming run below feeds one generated data set through TestStream in a
different shape (panes of every kind, duplicates, out of order) and must end
with exactly the single views the batch path gives for the same events.
"""
from __future__ import annotations

import json
import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.trigger import AccumulationMode
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.windowed_value import PaneInfoTiming

from singleview.formats import DecoderConfig
from singleview.io.mongodb import MongoTarget
from singleview.io.files import split_line
from singleview.model import RawMessage
from singleview.sources import SOURCES
from singleview.pipelines.single_view import SingleViewPipeline
from singleview.samples import generate
from singleview.transforms.window import ALLOWED_LATENESS_SECONDS, PUBLISH, WindowChanges

from tests.test_pipeline import run_into, views

START = 100  # event time (s) of the first message; windows are 1 s
PER_WINDOW = 20


def salesforce(record: str, commit: int, **fields) -> RawMessage:
    header = {"entityName": "Contact", "recordIds": [record], "changeType": "CREATE" if commit == 1 else "UPDATE",
              "commitTimestamp": 1_717_000_000_000 + commit, "commitNumber": commit, "sequenceNumber": 1,
              "changedFields": list(fields)}
    return RawMessage("crm", json.dumps({"payload": {"ChangeEventHeader": header, **fields}}).encode())


def streaming_options() -> PipelineOptions:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return options


def run_stream(stream: test_stream.TestStream, target: MongoTarget):
    """Run the streaming graph on one TestStream of RawMessages, windowed by
    their (TestStream) timestamps so that panes come early, on time and late as scripted."""
    with beam.Pipeline(options=streaming_options()) as p:
        (p | stream
         | SingleViewPipeline(target, DecoderConfig(), SOURCES, streaming=True, window_seconds=1, window_by=PUBLISH))


class RecordPane(beam.DoFn):
    def process(self, keyed, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        yield int(window.start), pane.timing, pane.index, sorted(keyed[1])


def test_window_changes_is_what_the_design_asks_for():
    windowing = (beam.Pipeline() | beam.Create([1]) | WindowChanges(2)).windowing
    assert windowing.windowfn.size == 2
    assert repr(windowing.triggerfn) == "AfterWatermark(early=AfterProcessingTime(delay=2), late=AfterCount(1))"
    assert windowing.allowed_lateness == ALLOWED_LATENESS_SECONDS
    assert windowing.accumulation_mode == AccumulationMode.DISCARDING


def test_panes_fire_early_on_time_and_late_and_each_holds_only_its_own_events():
    stream = (test_stream.TestStream()
              .advance_watermark_to(10)
              .add_elements([TimestampedValue("a", 10.1), TimestampedValue("b", 10.2)])
              .advance_processing_time(2)                    # early pane: a, b
              .add_elements([TimestampedValue("c", 10.5)])
              .advance_watermark_to(11)                      # on-time pane: c only (discarding)
              .advance_watermark_to(30)
              .add_elements([TimestampedValue("d", 10.7)])   # late: a pane of its own
              .add_elements([TimestampedValue("d", 10.7)])   # a duplicate, late again
              .add_elements([TimestampedValue("e", 25.0)])   # in a window already closed on time
              .advance_watermark_to_infinity())
    with beam.Pipeline(options=streaming_options()) as p:
        panes = (p | stream | WindowChanges(1, PUBLISH) | beam.Map(lambda change: ("customer", change))
                 | beam.GroupByKey() | beam.ParDo(RecordPane()))
        assert_that(panes, equal_to([
            (10, PaneInfoTiming.EARLY, 0, ["a", "b"]),
            (10, PaneInfoTiming.ON_TIME, 1, ["c"]),
            (10, PaneInfoTiming.LATE, 2, ["d"]),
            (10, PaneInfoTiming.LATE, 3, ["d"]),
            (25, PaneInfoTiming.LATE, 0, ["e"]),
        ]))


def test_windows_by_arrival_put_a_backlog_in_one_on_time_pane():
    """What the pipeline does by default: events published long ago are not late."""
    stream = (test_stream.TestStream()
              .advance_watermark_to(100)
              .add_elements([TimestampedValue("a", 10), TimestampedValue("b", 11)])
              .advance_watermark_to_infinity())
    with beam.Pipeline(options=streaming_options()) as p:
        panes = (p | stream | WindowChanges(3600) | beam.Map(lambda change: ("customer", change))
                 | beam.GroupByKey() | beam.ParDo(RecordPane()) | beam.MapTuple(lambda _, *rest: rest))
        assert_that(panes, equal_to([(PaneInfoTiming.ON_TIME, 0, ["a", "b"])]))


def test_window_by_is_checked():
    with pytest.raises(ValueError, match="arrival"):
        WindowChanges(1, "event")


@pytest.fixture(scope="module")
def published():
    """A generated data set as (event time, message), in publish order."""
    generated = generate(customers=6, seed=5)
    messages = [m for source, lines in generated.items() for line in lines for m in split_line(source, line)]
    random.Random(5).shuffle(messages)
    return [(START + i / PER_WINDOW, m) for i, m in enumerate(messages)]


@pytest.fixture(scope="module")
def batch_views(published, tmp_path_factory, mongo_uri, mongo_client):
    """What the batch path makes of the same events."""
    directory = tmp_path_factory.mktemp("batch")
    args = []
    for source in SOURCES:
        path = directory / f"{source}.jsonl"
        path.write_bytes(b"".join(m.data + b"\n" for _, m in published if m.source == source))
        args.append(f"--input={source}={path}")
    name = f"svtest_batch_{random.Random().getrandbits(40):010x}"
    try:
        run_into(mongo_uri, name, args)
        yield views(mongo_client[name])
    finally:
        mongo_client.drop_database(name)


def panes_of_every_kind(published):
    """Per window: an early pane, then the on-time pane; every fifth message held back and sent late."""
    late = published[::5]
    held = {id(m) for _, m in late}
    stream = test_stream.TestStream().advance_watermark_to(START)
    for offset in range(0, len(published), PER_WINDOW):
        window = [TimestampedValue(m, t) for t, m in published[offset:offset + PER_WINDOW] if id(m) not in held]
        half = len(window) // 2
        stream = (stream.add_elements(window[:half]) if window[:half] else stream).advance_processing_time(2)
        stream = stream.add_elements(window[half:]) if window[half:] else stream
        stream = stream.advance_watermark_to(START + (offset + PER_WINDOW) / PER_WINDOW)
    for t, m in late:
        stream = stream.add_elements([TimestampedValue(m, t)])
    return stream.advance_watermark_to_infinity()


def every_message_twice(published):
    """Each message on time, then again in a late pane (a redelivery)."""
    stream = test_stream.TestStream().advance_watermark_to(START)
    for offset in range(0, len(published), PER_WINDOW):
        stream = (stream.add_elements([TimestampedValue(m, t) for t, m in published[offset:offset + PER_WINDOW]])
                  .advance_watermark_to(START + (offset + PER_WINDOW) / PER_WINDOW))
    return stream.add_elements([TimestampedValue(m, t) for t, m in published]).advance_watermark_to_infinity()


def out_of_order(published):
    """Newest first, in bundles of ten, with the watermark far ahead: all but the first bundle late."""
    reverse = [TimestampedValue(m, t) for t, m in reversed(published)]
    stream = test_stream.TestStream().advance_watermark_to(START)
    for offset in range(0, len(reverse), 10):
        stream = stream.add_elements(reverse[offset:offset + 10]).advance_processing_time(1)
        if offset == 0:
            stream = stream.advance_watermark_to(START + len(published))
    return stream.advance_watermark_to_infinity()


@pytest.mark.parametrize("shape", [panes_of_every_kind, every_message_twice, out_of_order],
                         ids=lambda shape: shape.__name__)
def test_streaming_shapes_give_the_batch_views(shape, published, batch_views, mongo_uri, database_name, database):
    run_stream(shape(published), MongoTarget(mongo_uri, database_name))
    assert batch_views and views(database) == batch_views


def test_a_late_event_behind_the_watermark_is_applied(mongo_uri, database_name, database):
    create = salesforce("003L", 1, Email="Late@Example.com", Phone="1")
    newer = salesforce("003L", 3, Phone="3")
    older = salesforce("003L", 2, Phone="2", Name={"FirstName": "Lena"})
    stream = (test_stream.TestStream()
              .advance_watermark_to(0)
              .add_elements([TimestampedValue(create, 10), TimestampedValue(newer, 11)])
              .advance_processing_time(5)
              .advance_watermark_to(100)
              # behind the watermark: late, out of order, and delivered twice
              .add_elements([TimestampedValue(older, 12), TimestampedValue(older, 12)])
              .advance_watermark_to_infinity())
    run_stream(stream, MongoTarget(mongo_uri, database_name))
    view = database["customer_sv"].find_one({"_id": "late@example.com"})
    assert view is not None
    assert view["crm_info"]["phone"] == "3"
    assert view["crm_info"]["first_name"] == "Lena"
