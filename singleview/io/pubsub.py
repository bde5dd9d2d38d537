"""Pub/Sub: the streaming source, and the admin and publish helpers around it.

Everything honours PUBSUB_EMULATOR_HOST (the project's pstest server or the
official emulator).
"""
from __future__ import annotations

from datetime import timezone
from typing import Iterable, Mapping

import apache_beam as beam

from singleview.io.urls import parse_pubsub_url
from singleview.model import RawMessage

def to_raw_message(source: str, message) -> RawMessage:
    published = message.publish_time
    if published is not None and published.tzinfo is None:
        published = published.replace(tzinfo=timezone.utc)
    return RawMessage(source, bytes(message.data or b""), dict(message.attributes or {}), published)


class ReadPubSubMessages(beam.PTransform):
    """A subscription (or a topic, for which the runner makes a subscription)."""

    def __init__(self, source: str, path: str):
        super().__init__()
        self.source = source
        self.kind, self.path = parse_pubsub_url(f"pubsub://{path}")

    def expand(self, pbegin):
        source = self.source
        read = beam.io.ReadFromPubSub(with_attributes=True, **{self.kind: self.path})
        return (pbegin | "ReadPubSub" >> read
                | "ToMessage" >> beam.Map(lambda m: to_raw_message(source, m)))


def ensure_topic_and_subscription(project: str, topic: str, subscription: str | None = None) -> None:
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
                                           topic=topic_path, ack_deadline_seconds=60)
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
