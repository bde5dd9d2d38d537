"""The pipeline graph: read, decode, project, key, window, CoGroupByKey, merge, write."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Iterable

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo, FnApiRunner
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.runners.runner import PipelineRunner

from singleview.feed import NO_PAYLOAD
from singleview.formats import DecoderConfig
from singleview.io.changes import ChangeLog
from singleview.io.lease import Holder, LeaseHeld, Renewal, acquire
from singleview.io.mongodb import MongoTarget, ReadCollection, WriteDeadLettersFn, prepare
from singleview.io.files import ReadSourceFiles
from singleview.io.store import SINGLE_VIEWS, TOMBSTONES
from singleview.pipelines.options import SingleViewOptions, decoder_config, parse_inputs
from singleview.pipelines.portable import with_runner_defaults
from singleview.sources import SECTIONS, SOURCES
from singleview.transforms.decode import DEAD_LETTERS, DecodeMessages
from singleview.transforms.feed import PublishViewChanges
from singleview.transforms.merge import MergeSingleViews
from singleview.transforms.project import ProjectSection, ResolveOwners
from singleview.transforms.rebuild import RebuildSingleViews
from singleview.transforms.stages import BATCH
from singleview.transforms.window import ARRIVAL

COLLECTIONS = (*(s.projection for s in SOURCES.values()), SINGLE_VIEWS, TOMBSTONES)


class SingleViewPipeline(beam.PTransform):
    """The RawMessages of `sources` -> single views and dead letters in MongoDB; yields the ViewChanges.

    The messages come as one PCollection of every source's (batch) or as a
    dict of one per source (streaming). One PCollection gets one decode, so
    that a section's events go to their grouping from the stage that decoded
    them: what a Flatten or a CoGroupByKey joins from several stages the
    FnApiRunner writes and reads once more.
    """

    def __init__(self, target: MongoTarget, config: DecoderConfig, sources: Iterable[str],
                 history_cap: int = 100, streaming: bool = False, window_seconds: float | None = None,
                 window_by: str = ARRIVAL, changes_topic: str | None = None, changes_payload: str = NO_PAYLOAD):
        super().__init__()
        self.feed = PublishViewChanges(changes_topic, changes_payload) if changes_topic else None
        self.target = target
        self.config = config
        self.sources = set(sources)
        self.history_cap = history_cap
        self.streaming = streaming
        self.window_seconds = window_seconds if streaming else None
        self.window_by = window_by
        self.change_log = ChangeLog()

    def expand(self, messages):
        present = [s for s in SECTIONS.values() if any(SOURCES[m].section == s.name for m in self.sources)]
        events, dead = (self._decoded_per_source(messages, present) if isinstance(messages, dict)
                        else self._decoded_together(messages, present))
        streams = {section.name: events[section.name] | f"Project {section.name}" >> ProjectSection(
            section, self.target, self.streaming, self.window_seconds, self.window_by, self.history_cap)
            for section in present}
        if "marketing" in streams:
            streams["marketing"] |= "ResolveOwners" >> ResolveOwners(self.target, self.streaming, self.history_cap)
        changes = streams | "Merge" >> MergeSingleViews(self.target, self.streaming, self.history_cap,
                                                         change_log=self.change_log)
        if self.feed is not None:
            changes | "PublishViewChanges" >> self.feed
        (dead | "BatchDeadLetters" >> beam.BatchElements(**BATCH)
         | "WriteDeadLetters" >> beam.ParDo(WriteDeadLettersFn(self.target)))
        return changes

    def _decoded_together(self, messages, present):
        """Batch: one decode, its events partitioned by section."""
        decoded = messages | "Decode" >> DecodeMessages(self.config)
        order = {section.name: i for i, section in enumerate(present)}
        by_section = decoded.events | "BySection" >> beam.Partition(
            lambda e, _: order[SOURCES[e.source].section], len(present))
        return {section.name: by_section[i] for i, section in enumerate(present)}, decoded[DEAD_LETTERS]

    def _decoded_per_source(self, messages: dict, present):
        """Streaming: a decode per source, its events flattened only with the other source of
        their section (if any), not with every source and partitioned again: the streaming
        DirectRunner pays each step once per bundle."""
        decoded = {source: pcoll | f"Decode {source}" >> DecodeMessages(self.config)
                   for source, pcoll in messages.items()}
        events = {}
        for section in present:
            mine = [d.events for source, d in decoded.items() if SOURCES[source].section == section.name]
            events[section.name] = mine[0] if len(mine) == 1 else mine | f"Events {section.name}" >> beam.Flatten()
        dead = [d[DEAD_LETTERS] for d in decoded.values()] | "DeadLetters" >> beam.Flatten()
        return events, dead


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
                f" single views written: {self.get('views_written')}, removed: {self.get('views_removed')}"
                + (f"; changes published: {self.get('changes_published')}" if "changes_published" in self.counters
                   else ""))


def summarise(result) -> Summary:
    query = result.metrics().query(MetricsFilter().with_namespace("singleview"))
    counters: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + (value or 0)
    return Summary(counters)


def build(pipeline: beam.Pipeline, options: SingleViewOptions, target: MongoTarget):
    """The graph of a run: rebuild, or read each input and merge."""
    if options.mode == "rebuild":
        changes = pipeline | "Rebuild" >> RebuildSingleViews(target, options.history_cap)
        if options.sv_changes_topic:
            changes | "PublishViewChanges" >> PublishViewChanges(options.sv_changes_topic, options.sv_changes_payload)
        return changes
    inputs = parse_inputs(options.input)
    config = decoder_config(options)
    streaming = options.view_as(StandardOptions).streaming
    reading = contextlib.nullcontext()
    if streaming and any(pattern.startswith("kafka://") for pattern in inputs.values()):
        from singleview.io.kafka import one_expansion_service
        reading = one_expansion_service(options.kafka_expansion_service)
    if streaming:
        with reading:
            messages = {source: pipeline | f"Read {source}" >> read(source, pattern, streaming, options)
                        for source, pattern in inputs.items()}
    else:
        for source, pattern in inputs.items():
            input_scheme(source, pattern, streaming)
        messages = pipeline | "Read files" >> ReadSourceFiles(inputs)
    view = SingleViewPipeline(target, config, inputs, options.history_cap, streaming, options.window_seconds,
                              options.window_by, options.sv_changes_topic, options.sv_changes_payload)
    return messages | "SingleView" >> view


def read(source: str, location: str, streaming: bool, options: SingleViewOptions) -> beam.PTransform:
    """Files by glob in batch; when streaming, `pubsub://projects/P/subscriptions/S`
    (or topics/T) or `kafka://HOST:PORT/TOPIC`."""
    scheme = input_scheme(source, location, streaming)
    if scheme == "pubsub":
        from singleview.io.pubsub import ReadPubSubMessages, parse_pubsub_url
        _, path = parse_pubsub_url(location)
        return ReadPubSubMessages(source, path)
    if scheme == "kafka":
        from singleview.io.kafka import ReadKafkaMessages
        return ReadKafkaMessages(source, location, options.kafka_expansion_service)
    return ReadSourceFiles({source: location})


def input_scheme(source: str, location: str, streaming: bool) -> str | None:
    """pubsub, kafka, or None (files); an input the mode cannot read is refused."""
    scheme = location.partition("://")[0] if "://" in location else None
    if scheme in ("pubsub", "kafka") and not streaming:
        raise ValueError(f"{source}: a {scheme}:// input needs --streaming")
    if streaming and scheme not in ("pubsub", "kafka"):
        raise ValueError(f"{source}: --streaming reads pubsub:// or kafka:// inputs, got {location!r}")
    return scheme


def local_runner(options) -> PipelineRunner | None:
    """On the DirectRunner, the runner the tests and benchmarks use, whatever the network:
    Beam 2.77's DirectRunner first tries Prism, downloading it where GitHub answers.
    Streaming: the BundleBasedDirectRunner, the one that streams; batch: the FnApiRunner."""
    standard = options.view_as(StandardOptions)
    if standard.runner not in (None, "DirectRunner", "SwitchingDirectRunner"):
        return None
    if standard.streaming:
        return BundleBasedDirectRunner()
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return FnApiRunner(provision_info=ExtendedProvisionInfo(provision))


def run(argv=None) -> Summary:
    """Take the database's writer lease, run the pipeline, release the lease."""
    options = SingleViewOptions(with_runner_defaults(sys.argv[1:] if argv is None else list(argv)))
    if options.mode != "rebuild" and not parse_inputs(options.input):
        raise ValueError("give at least one --input SOURCE=GLOB")
    streaming = options.view_as(StandardOptions).streaming
    target = MongoTarget.from_env(options.mongo_uri, options.database)
    holder = Holder(uuid.uuid4().hex, options.mode if options.mode == "rebuild" else
                    "streaming" if streaming else "batch")
    with target.connect() as client:
        db = client[target.database]
        acquire(db, holder, options.lease_wait)
        with Renewal(db, holder):
            target = dataclasses.replace(target, holder=holder, known_empty=prepare(target, COLLECTIONS))
            pipeline = beam.Pipeline(runner=local_runner(options), options=options)
            build(pipeline, options, target)
            result = pipeline.run()
            result.wait_until_finish()
    summary = summarise(result)
    print(summary)
    return summary


def stop_on_sigterm() -> None:
    """A stopped run (SIGTERM, as from a supervisor) releases its writer lease on the way out."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def main(argv=None) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    stop_on_sigterm()
    try:
        run(argv)
    except (ValueError, LeaseHeld) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
