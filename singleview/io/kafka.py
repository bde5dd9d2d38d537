"""Kafka: the streaming source through Beam's cross-language KafkaIO, and a
publisher for samples and tests.

The read is Java: `ReadFromKafka`'s URN expanded by the expansion service of
the project's Java build (`scripts/beam-java.sh`), whose Kafka reader then
runs inside Flink's JVM (EMBEDDED environment). Every run reads each topic
from its earliest offset: the pipeline is idempotent, so a restart replays
into the same result. Records are stamped with processing time: windows
only batch writes, and a watermark that moves with the clock keeps panes
firing after a topic goes quiet.
"""
from __future__ import annotations

import contextlib
import functools
import typing
from datetime import datetime, timezone
from typing import Iterable

import apache_beam as beam
from apache_beam.io.kafka import ReadFromKafka
from apache_beam.transforms.external import ExternalTransform, JavaJarExpansionService, NamedTupleBasedPayloadBuilder

from singleview.io.urls import parse_kafka_url
from singleview.model import RawMessage

# The configuration fields that KafkaIO's external read of Beam Java 2.62
# knows (the Python SDK's own ReadFromKafka sends newer ones it rejects).
KafkaReadConfig = typing.NamedTuple("KafkaReadConfig", [
    ("consumer_config", typing.Mapping[str, str]), ("topics", list[str]),
    ("key_deserializer", str), ("value_deserializer", str),
    ("commit_offset_in_finalize", bool), ("timestamp_policy", str)])

# Legacy unbounded reads, which Flink drives itself: portable Flink never
# checkpoints a splittable DoFn, so the SDF Kafka read would hold its first bundle forever.
EXPANSION_ARGS = ["--defaultEnvironmentType=EMBEDDED", "--experiments=use_deprecated_read"]


def to_raw_message(source: str, record) -> RawMessage:
    """A KafkaIO record with metadata (key, value, headers, timestamp) as a RawMessage;
    a null value (tombstone) becomes empty data next to its key."""
    attributes = {header.key: bytes(header.value or b"").decode("utf-8", "replace")
                  for header in record.headers or ()}
    published = datetime.fromtimestamp(record.timestamp / 1000, timezone.utc) if record.timestamp >= 0 else None
    key = bytes(record.key) if record.key is not None else None
    return RawMessage(source, bytes(record.value or b""), attributes, published, key)


def expansion_service(address: str | None = None):
    """A running expansion service at HOST:PORT, else the project's jar, started for the expansion."""
    if address:
        return address
    return _jar_expansion_service()


@functools.lru_cache(maxsize=None)
def _jar_expansion_service() -> JavaJarExpansionService:
    from singleview.pipelines.portable import EXPANSION_SERVICE_JAR, beam_java_jar
    return JavaJarExpansionService(beam_java_jar(EXPANSION_SERVICE_JAR), append_args=EXPANSION_ARGS)


@contextlib.contextmanager
def one_expansion_service(address: str | None = None):
    """Keep the project's expansion service up while a pipeline's Kafka reads
    expand, so they share one JVM instead of starting one (seconds) each."""
    service = expansion_service(address)
    with service if isinstance(service, JavaJarExpansionService) else contextlib.nullcontext():
        yield


class ReadKafkaMessages(beam.PTransform):
    """One topic, from its earliest offset, as RawMessages (keys and tombstones kept)."""

    def __init__(self, source: str, url: str, expansion_service_address: str | None = None):
        super().__init__()
        self.source = source
        self.bootstrap, self.topic = parse_kafka_url(url)
        self.expansion_service_address = expansion_service_address

    def expand(self, pbegin):
        source = self.source
        config = KafkaReadConfig(
            consumer_config={"bootstrap.servers": self.bootstrap, "auto.offset.reset": "earliest"},
            topics=[self.topic], key_deserializer=ReadFromKafka.byte_array_deserializer,
            value_deserializer=ReadFromKafka.byte_array_deserializer,
            commit_offset_in_finalize=False, timestamp_policy=ReadFromKafka.processing_time_policy)
        read = ExternalTransform(ReadFromKafka.URN_WITH_METADATA, NamedTupleBasedPayloadBuilder(config),
                                 expansion_service(self.expansion_service_address))
        return (pbegin | "ReadKafka" >> read
                | "ToMessage" >> beam.Map(lambda record: to_raw_message(source, record)))


def publish(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    """Produce (key, value) records in order (a None value is a tombstone); returns the count."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    failures = []

    def delivered(error, _message):
        if error is not None:
            failures.append(error)

    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
    left = producer.flush(60)
    if left or failures:
        raise RuntimeError(f"{left + len(failures)} Kafka records to {topic} not delivered: {failures[:3]}")
    return count
