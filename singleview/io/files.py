"""Files: every line of a JSON-lines file, or record of an Avro archive, becomes a `RawMessage`."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import apache_beam as beam

from singleview.formats.salesforce_avro import SCHEMA_ID
from singleview.model import RawMessage

REPLAY_ID = "replay_id"


def split_line(source: str, line: str | bytes):
    """One message per line; a line holding a JSON array is a batch of them."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    stripped = text.strip()
    if not stripped:
        return
    if stripped.startswith("["):
        try:
            batch = json.loads(stripped)
        except ValueError:
            batch = None
        if isinstance(batch, list):
            for item in batch:
                yield RawMessage(source, json.dumps(item, separators=(",", ":")).encode())
            return
    yield RawMessage(source, stripped.encode())


def from_archive_record(source: str, record: dict) -> RawMessage:
    """A record of a Pub/Sub archive (Avro: message, attributes, timestamp), or of
    an archive of Salesforce Pub/Sub API events (schema_id, payload, replay_id)."""
    if SCHEMA_ID in record:
        return from_pubsub_api_record(source, record)
    millis = record.get("timestamp")
    published = datetime.fromtimestamp(millis / 1000, timezone.utc) if millis is not None else None
    return RawMessage(source, bytes(record.get("message") or b""), dict(record.get("attributes") or {}), published)


def from_pubsub_api_record(source: str, record: dict) -> RawMessage:
    """The Avro-binary event with its schema id as an attribute, as it arrives on
    Pub/Sub or Kafka; the replay id (opaque bytes) is kept, in hex, to find the event by."""
    attributes = {SCHEMA_ID: str(record[SCHEMA_ID])}
    if record.get(REPLAY_ID) is not None:
        attributes[REPLAY_ID] = bytes(record[REPLAY_ID]).hex()
    return RawMessage(source, bytes(record.get("payload") or b""), attributes)


class ReadMessages(beam.PTransform):
    """Files by glob: `.avro` as Pub/Sub archives or Salesforce Pub/Sub API archives
    (told apart by each record's fields), anything else as JSON lines."""

    def __init__(self, source: str, pattern: str):
        super().__init__()
        self.source = source
        self.pattern = pattern

    def expand(self, pbegin):
        source = self.source
        if self.pattern.endswith(".avro"):
            return (pbegin
                    | "ReadAvro" >> beam.io.ReadFromAvro(self.pattern)
                    | "ToMessage" >> beam.Map(lambda r: from_archive_record(source, r)))
        return (pbegin
                | "ReadLines" >> beam.io.ReadFromText(self.pattern)
                | "SplitBatches" >> beam.FlatMap(lambda line: split_line(source, line)))
