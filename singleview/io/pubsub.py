"""Pub/Sub: the streaming source, and the admin and publish helpers around it.

Everything honours PUBSUB_EMULATOR_HOST (the project's pstest server or the
official emulator).
"""
from __future__ import annotations

import logging
import sys
import time
import uuid
from datetime import timezone
from functools import partial
from typing import Iterable, Mapping

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration, Timestamp
from google.api_core.exceptions import DeadlineExceeded, ServiceUnavailable

from singleview.io.urls import parse_pubsub_url
from singleview.model import RawMessage

def to_raw_message(source: str, message) -> RawMessage:
    published = message.publish_time
    if published is not None and published.tzinfo is None:
        published = published.replace(tzinfo=timezone.utc)
    return RawMessage(source, bytes(message.data or b""), dict(message.attributes or {}), published)


class ReadPubSubMessages(beam.PTransform):
    """A subscription (or a topic, for which a subscription is made when the pipeline is built).

    Beam's own `ReadFromPubSub` where the runner implements it (Dataflow, the
    streaming DirectRunner); on portable runners (Prism, Flink), which know no
    Pub/Sub read of their own, `PullSubscription`, a splittable DoFn.
    """

    def __init__(self, source: str, path: str):
        super().__init__()
        self.source = source
        self.kind, self.path = parse_pubsub_url(f"pubsub://{path}")

    def expand(self, pbegin):
        source = self.source
        if not portable(pbegin.pipeline.runner):
            read = beam.io.ReadFromPubSub(with_attributes=True, **{self.kind: self.path})
            return (pbegin | "ReadPubSub" >> read
                    | "ToMessage" >> beam.Map(lambda m: to_raw_message(source, m)))
        subscription = self.path if self.kind == "subscription" else subscribe(self.path)
        return (pbegin | "Subscription" >> beam.Create([subscription])
                | "PullSubscription" >> beam.ParDo(PullSubscription(source)))


def portable(runner) -> bool:
    from apache_beam.runners.portability.portable_runner import PortableRunner
    return isinstance(runner, PortableRunner)


def subscribe(topic: str) -> str:
    """A subscription of the pipeline's own to `topic` (as Dataflow makes one for a topic read)."""
    from google.cloud import pubsub_v1
    parts = pubsub_v1.PublisherClient.parse_topic_path(topic)
    project, name = parts["project"], parts["topic"]
    subscription = f"{name}-singleview-{uuid.uuid4().hex[:12]}"
    ensure_topic_and_subscription(project, name, subscription)
    return f"projects/{project}/subscriptions/{subscription}"


class _Endless(RestrictionProvider):
    """One offset per pull, without end: the read stops only when the job does."""

    def initial_restriction(self, element):
        return OffsetRange(0, sys.maxsize)

    def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element, restriction):
        return 1

    def truncate(self, element, restriction):
        return None


class PullSubscription(beam.DoFn):
    """Pull a subscription, one batch per call, acknowledging a batch once the
    runner has committed the bundle that read it (bundle finalization): a
    job that dies before that has its messages delivered again.

    The watermark is the time of the last pull that came back short (the
    subscription was then drained up to it), else the oldest publish time of
    the batch."""

    MAX_MESSAGES = 1000
    IDLE = Duration(0.05)
    RETRY = Duration(1)

    def __init__(self, source: str):
        super().__init__()
        self.source = source

    def setup(self):
        from google.cloud import pubsub_v1
        self.subscriber = pubsub_v1.SubscriberClient()

    def teardown(self):
        self.subscriber.close()

    @beam.DoFn.unbounded_per_element()
    def process(self, subscription: str, finalizer=beam.DoFn.BundleFinalizerParam,
                tracker=beam.DoFn.RestrictionParam(_Endless()),
                watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider())):
        """The finalizer comes first: Beam passes it by position, the tracker and watermark by name."""
        position = tracker.current_restriction().start
        if not tracker.try_claim(position):
            return
        ack_ids: list[str] = []
        finalizer.register(partial(self.acknowledge, subscription, ack_ids))
        pulled_at = Timestamp.of(time.time())
        try:
            received = self.subscriber.pull(subscription=subscription, max_messages=self.MAX_MESSAGES,
                                            timeout=30).received_messages
        except (DeadlineExceeded, ServiceUnavailable) as error:
            logging.warning("pulling %s: %s; trying again in %s s", subscription, error, self.RETRY)
            tracker.defer_remainder(self.RETRY)
            return
        published = [Timestamp.from_utc_datetime(r.message.publish_time) for r in received]
        for r, at in zip(received, published):
            yield beam.window.TimestampedValue(to_raw_message(self.source, r.message), at)
        ack_ids += [r.ack_id for r in received]
        mark = pulled_at if len(received) < self.MAX_MESSAGES else min(published)
        if watermark.current_watermark() is None or mark > watermark.current_watermark():
            watermark.set_watermark(mark)
        tracker.defer_remainder(Duration(0) if received else self.IDLE)

    def acknowledge(self, subscription: str, ack_ids: list[str]) -> None:
        """Registered for every call, even one that reads nothing: Prism finalizes each bundle of a
        stage that asks for finalization, and the SDK keeps only those that registered something."""
        if ack_ids:
            self.subscriber.acknowledge(subscription=subscription, ack_ids=ack_ids)


def ensure_topic_and_subscription(project: str, topic: str, subscription: str | None = None,
                                  ack_deadline_seconds: int = 60) -> None:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1
    publisher = pubsub_v1.PublisherClient()
    topic_path = publisher.topic_path(project, topic)
    try:
        publisher.create_topic(name=topic_path)
    except AlreadyExists:
        pass
    if subscription:
        subscriber = pubsub_v1.SubscriberClient()
        try:
            subscriber.create_subscription(name=subscriber.subscription_path(project, subscription),
                                           topic=topic_path, ack_deadline_seconds=ack_deadline_seconds)
        except AlreadyExists:
            pass
        finally:
            subscriber.close()


def delete_topic_and_subscription(project: str, topic: str, subscription: str | None = None) -> None:
    """Remove what ensure_topic_and_subscription made (idempotent): a subscription left with a backlog
    keeps the local server busy long after its run."""
    from google.api_core.exceptions import NotFound
    from google.cloud import pubsub_v1
    if subscription:
        subscriber = pubsub_v1.SubscriberClient()
        try:
            subscriber.delete_subscription(subscription=subscriber.subscription_path(project, subscription))
        except NotFound:
            pass
        finally:
            subscriber.close()
    publisher = pubsub_v1.PublisherClient()
    try:
        publisher.delete_topic(topic=publisher.topic_path(project, topic))
    except NotFound:
        pass


def publish(project: str, topic: str, messages: Iterable[bytes],
            attributes: Mapping[str, str] | None = None) -> int:
    """Publish and wait for every message to be accepted; returns the count."""
    from google.cloud import pubsub_v1
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.05))
    futures = [publisher.publish(publisher.topic_path(project, topic), data, **dict(attributes or {}))
               for data in messages]
    for future in futures:
        future.result(timeout=60)
    return len(futures)
