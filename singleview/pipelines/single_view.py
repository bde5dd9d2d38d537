"""The pipeline graph: read, decode, project, key, window, CoGroupByKey, merge, write."""
from __future__ import annotations

import contextlib
import logging
import sys
import uuid
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.runner import PipelineRunner

from singleview.formats import DecoderConfig
from singleview.io.mongodb import (MongoTarget, ScanProjectionsFn, WriteDeadLettersFn, ensure_indexes,
                                   remove_views_not_rebuilt)
from singleview.io.sources import ReadMessages
from singleview.merge import CHILD_OF
from singleview.pipelines.options import SingleViewOptions, decoder_config, parse_inputs
from singleview.pipelines.portable import with_runner_defaults
from singleview.transforms.decode import DEAD_LETTERS, DecodeMessages
from singleview.transforms.merge import STREAMS, MergeSingleViews
from singleview.transforms.project import BATCH, ProjectChanges
from singleview.transforms.window import ARRIVAL, WindowChanges, WindowForMerge


def stream_of(source: str) -> str:
    """Order items join the orders stream, page views the marketing stream."""
    return CHILD_OF[source][0] if source in CHILD_OF else source


class SingleViewPipeline(beam.PTransform):
    """Messages per source -> single views and dead letters in MongoDB."""

    def __init__(self, target: MongoTarget, config: DecoderConfig, history_cap: int = 100,
                 window_seconds: float | None = None, window_by: str = ARRIVAL):
        super().__init__()
        self.target = target
        self.config = config
        self.history_cap = history_cap
        self.window_seconds = window_seconds
        self.window_by = window_by

    def expand(self, messages: dict):
        contributions = {name: [] for name in STREAMS}
        dead = []
        for source, pcoll in messages.items():
            decoded = pcoll | f"Decode {source}" >> DecodeMessages(self.config)
            dead.append(decoded[DEAD_LETTERS])
            events = decoded.events
            if self.window_seconds:
                events = events | f"Window {source}" >> WindowChanges(self.window_seconds, self.window_by)
            contributions[stream_of(source)].append(
                events | f"Project {source}" >> ProjectChanges(source, self.target, self.history_cap))
        streams = {name: parts | f"Flatten {name}" >> beam.Flatten()
                   for name, parts in contributions.items() if parts}
        if self.window_seconds:
            streams = {name: pcoll | f"WindowForMerge {name}" >> WindowForMerge(self.window_seconds)
                       for name, pcoll in streams.items()}
        written = streams | "Merge" >> MergeSingleViews(self.target, self.history_cap)
        if dead:
            (dead | "FlattenDeadLetters" >> beam.Flatten()
             | "BatchDeadLetters" >> beam.BatchElements(**BATCH)
             | "WriteDeadLetters" >> beam.ParDo(WriteDeadLettersFn(self.target)))
        return written


@dataclass
class Summary:
    counters: dict

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)

    @property
    def applied(self) -> int:
        return sum(v for k, v in self.counters.items() if k.endswith("_applied"))

    @property
    def superseded(self) -> int:
        return sum(v for k, v in self.counters.items() if k.endswith("_superseded"))

    @property
    def read(self) -> int:
        return self.get("events_decoded") + self.get("messages_skipped") + self.get("dead_lettered")

    def __str__(self) -> str:
        return (f"events read: {self.read} = applied {self.applied} + superseded {self.superseded}"
                f" + skipped {self.get('messages_skipped')} + dead-lettered {self.get('dead_lettered')};"
                f" single views written: {self.get('views_written')}, removed: {self.get('views_removed')}")


def summarise(result) -> Summary:
    query = result.metrics().query(MetricsFilter().with_namespace("singleview"))
    counters: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + (value or 0)
    return Summary(counters)


class RebuildSingleViews(beam.PTransform):
    """Recompute every single view from the stored projections (repair after a logic change)."""

    def __init__(self, target: MongoTarget, rebuild_id: str, history_cap: int = 100):
        super().__init__()
        self.target = target
        self.rebuild_id = rebuild_id
        self.history_cap = history_cap

    def expand(self, pbegin):
        streams = {name: (pbegin | f"Source {name}" >> beam.Create([name])
                          | f"Scan {name}" >> beam.ParDo(ScanProjectionsFn(self.target, self.history_cap)))
                   for name in STREAMS}
        return streams | "Merge" >> MergeSingleViews(self.target, self.history_cap, self.rebuild_id)


def build(pipeline: beam.Pipeline, options: SingleViewOptions):
    if options.mode == "rebuild":
        target = MongoTarget.from_env(options.mongo_uri, options.database)
        rebuild_id = uuid.uuid4().hex
        return pipeline | "Rebuild" >> RebuildSingleViews(target, rebuild_id, options.history_cap), target, rebuild_id
    inputs = parse_inputs(options.input)
    if not inputs:
        raise ValueError("give at least one --input SOURCE=GLOB")
    target = MongoTarget.from_env(options.mongo_uri, options.database)
    config = decoder_config(options)
    streaming = options.view_as(StandardOptions).streaming
    reading = contextlib.nullcontext()
    if streaming and any(pattern.startswith("kafka://") for pattern in inputs.values()):
        from singleview.io.kafka import one_expansion_service
        reading = one_expansion_service(options.kafka_expansion_service)
    with reading:
        messages = {source: pipeline | f"Read {source}" >> read(source, pattern, streaming, options)
                    for source, pattern in inputs.items()}
    view = SingleViewPipeline(target, config, options.history_cap,
                              options.window_seconds if streaming else None, options.window_by)
    return messages | "SingleView" >> view, target, None


def read(source: str, location: str, streaming: bool, options: SingleViewOptions) -> beam.PTransform:
    """Files by glob in batch; when streaming, `pubsub://projects/P/subscriptions/S`
    (or topics/T) or `kafka://HOST:PORT/TOPIC`."""
    scheme = location.partition("://")[0] if "://" in location else None
    if scheme in ("pubsub", "kafka") and not streaming:
        raise ValueError(f"{source}: a {scheme}:// input needs --streaming")
    if scheme == "pubsub":
        from singleview.io.pubsub import ReadPubSubMessages, parse_pubsub_url
        _, path = parse_pubsub_url(location)
        return ReadPubSubMessages(source, path)
    if scheme == "kafka":
        from singleview.io.kafka import ReadKafkaMessages
        return ReadKafkaMessages(source, location, options.kafka_expansion_service)
    if streaming:
        raise ValueError(f"{source}: --streaming reads pubsub:// or kafka:// inputs, got {location!r}")
    return ReadMessages(source, location)


def streaming_runner(options) -> PipelineRunner | None:
    """Streaming on the DirectRunner is the BundleBasedDirectRunner: the one that streams.

    The plain DirectRunner would first try Prism, downloading its binary at start.
    """
    standard = options.view_as(StandardOptions)
    if standard.streaming and standard.runner in (None, "DirectRunner", "SwitchingDirectRunner"):
        return BundleBasedDirectRunner()
    return None


def run(argv=None) -> Summary:
    options = SingleViewOptions(with_runner_defaults(sys.argv[1:] if argv is None else list(argv)))
    pipeline = beam.Pipeline(runner=streaming_runner(options), options=options)
    _, target, rebuild_id = build(pipeline, options)
    ensure_indexes(target)
    result = pipeline.run()
    result.wait_until_finish()
    summary = summarise(result)
    if rebuild_id:
        summary.counters["views_removed"] = summary.get("views_removed") + remove_views_not_rebuilt(target, rebuild_id)
    print(summary)
    return summary


def main(argv=None) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    try:
        run(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
