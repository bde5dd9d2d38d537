"""Publishing to a Pub/Sub or Kafka topic named by URL: what leaves the project
(webhook bodies for the pipeline, the change feed for the apps on `customer_sv`).

`pubsub://projects/P/topics/T` or `kafka://HOST:PORT/TOPIC`. A publish
returns once the server has acknowledged every message, and keeps the order
of the messages that share a key (Pub/Sub ordering keys, Kafka partitions by
key with an idempotent producer).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from singleview.io.urls import check_topic_url, parse_kafka_url, parse_pubsub_url

ACK_SECONDS = 60


@dataclass(frozen=True)
class Message:
    data: bytes
    key: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


class Topic(Protocol):
    url: str

    def publish(self, messages: Iterable[Message]) -> int:
        """Publish and wait for the server to acknowledge every message; returns the count."""

    def close(self) -> None: ...


class PubSubTopic:
    def __init__(self, url: str):
        from google.cloud import pubsub_v1
        kind, self.path = parse_pubsub_url(url)
        if kind != "topic":
            raise ValueError(f"expected a topic, pubsub://projects/P/topics/T, got {url!r}")
        self.url = url
        self._client = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.01),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True))

    def publish(self, messages: Iterable[Message]) -> int:
        messages = list(messages)
        futures = [self._client.publish(self.path, m.data, ordering_key=m.key or "", **m.attributes)
                   for m in messages]
        try:
            for future in futures:
                future.result(timeout=ACK_SECONDS)
        except Exception:
            # Every key that fails is paused when its own batch fails: resume them once all have.
            concurrent.futures.wait(futures, timeout=ACK_SECONDS)
            for key in {m.key for m in messages if m.key}:
                with contextlib.suppress(RuntimeError):  # "Ordering key is not paused": that key did not fail
                    self._client.resume_publish(self.path, key)
            raise
        return len(futures)

    def close(self) -> None:
        self._client.stop()


class KafkaTopic:
    def __init__(self, url: str):
        from confluent_kafka import Producer
        bootstrap, self.topic = parse_kafka_url(url)
        self.url = url
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})

    def publish(self, messages: Iterable[Message]) -> int:
        failures, count = [], 0

        def delivered(error, _message):
            if error is not None:
                failures.append(error)

        for m in messages:
            headers = [(k, v.encode()) for k, v in m.attributes.items()]
            while True:
                try:
                    self._producer.produce(self.topic, key=m.key.encode() if m.key else None, value=m.data,
                                           headers=headers, on_delivery=delivered)
                    break
                except BufferError:
                    self._producer.poll(0.1)
            count += 1
        left = self._producer.flush(ACK_SECONDS)
        if left or failures:
            raise RuntimeError(f"{left + len(failures)} records to {self.url} not acknowledged: {failures[:3]}")
        return count

    def close(self) -> None:
        self._producer.flush(ACK_SECONDS)


def open_topic(url: str) -> Topic:
    return PubSubTopic(url) if check_topic_url(url).startswith("pubsub://") else KafkaTopic(url)


def is_permanent(error: Exception) -> bool:
    """An error a repeat cannot heal: the server refused the request itself (no such topic, no permission)."""
    try:
        from google.api_core.exceptions import ClientError
    except ImportError:  # pragma: no cover - google-cloud-pubsub is a pipeline dependency
        return False
    return isinstance(error, ClientError)


_SHARED: dict[str, Topic] = {}
_SHARED_LOCK = threading.Lock()


def shared_topic(url: str) -> Topic:
    """One open topic per URL per process, for DoFns to share: the streaming DirectRunner sets a DoFn
    up for every bundle, and an idempotent Kafka producer takes half a second to get its producer id.

    A cache of connections, not state: each process opens its own, and nothing
    is pending in one between publishes (a publish waits for its acks). Beam's
    `Shared` keeps only the last object acquired alive, which would drop the
    pipeline's MongoDB client between bundles.
    """
    with _SHARED_LOCK:
        if url not in _SHARED:
            _SHARED[url] = open_topic(url)
        return _SHARED[url]
