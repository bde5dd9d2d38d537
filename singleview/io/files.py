"""Files: every line of a JSON-lines file, or record of an Avro archive, becomes a `RawMessage`."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import apache_beam as beam
from apache_beam.io.avroio import ReadAllFromAvro
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.textio import ReadAllFromText

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


def matched_files(source_pattern: tuple[str, str]) -> list[tuple[str, str]]:
    """(source, glob) -> (path, source) for every file the glob matches."""
    source, pattern = source_pattern
    matched = FileSystems.match([pattern])[0].metadata_list
    if not matched:
        raise ValueError(f"{source}: no file matches {pattern!r}")
    return [(m.path, source) for m in matched]


def avro_messages(source: str, record: dict) -> list[RawMessage]:
    return [from_archive_record(source, record)]


class ReadSourceFiles(beam.PTransform):
    """{source: glob} -> the RawMessages of every source, read by one transform per file kind.

    What the FnApiRunner joins from several stages it writes and reads once
    more, so reading all the sources in one stage lets their messages go from
    the read to the first grouping without that. Each file's source comes from
    the glob that matched it (a side input).
    """

    KINDS = {"Avro": (ReadAllFromAvro, avro_messages), "Text": (ReadAllFromText, split_line)}

    def __init__(self, patterns: dict[str, str]):
        super().__init__()
        self.patterns = patterns

    def expand(self, pbegin):
        kinds = {kind: {s: p for s, p in self.patterns.items() if p.endswith(".avro") == (kind == "Avro")}
                 for kind in self.KINDS}
        parts = [self._read(pbegin, kind, patterns) for kind, patterns in kinds.items() if patterns]
        return parts[0] if len(parts) == 1 else parts | "Flatten" >> beam.Flatten()

    def _read(self, pbegin, kind: str, patterns: dict[str, str]):
        read_all, messages_of = self.KINDS[kind]
        globs = pbegin | f"{kind} globs" >> beam.Create(sorted(patterns.items()))
        sources = globs | f"{kind} files" >> beam.FlatMap(matched_files)
        return (globs | f"{kind} patterns" >> beam.Map(lambda source_pattern: source_pattern[1])
                | f"Read {kind}" >> read_all(with_filename=True)
                | f"{kind} messages" >> beam.FlatMap(
                    lambda item, by_path: [m for s in by_path[item[0]] for m in messages_of(s, item[1])],
                    by_path=beam.pvalue.AsMultiMap(sources)))
