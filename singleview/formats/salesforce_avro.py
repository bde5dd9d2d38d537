"""Salesforce Pub/Sub API change events: Avro binary plus a `schema_id` (pure: no Beam, no pymongo, no file IO).

The Pub/Sub API sends each change event as the Avro binary encoding of a
record, without its schema; the schema is fetched once per id (GetSchema) and
handed in as JSON text. `pubsub_api_payload` reads an event into the payload
CometD would have delivered for the same change, so that one decoder
(`salesforce.decode_salesforce_cdc`) turns both into the same ChangeEvents:

- `changedFields`, `nulledFields` and `diffFields` arrive as bitmaps over the
  schema's field order and become field names (`expand_bitmap`);
- a field that is null is left out unless it was changed (set to null), as
  CometD leaves out null and unchanged fields;
- DateTime fields arrive as epoch millis and become ISO-8601 strings;
- a field sent as a data diff becomes `{"diff": ...}`, CometD's shape for it.

The rules are in docs/wire-formats.md, with the Salesforce sources they follow.
"""
from __future__ import annotations

import functools
import io
import json
import string
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import fastavro
from fastavro.schema import SchemaParseException, expand_schema

from singleview.formats._common import millis_to_iso
from singleview.model import DecodeError

SCHEMA_ID = "schema_id"  # the attribute (Pub/Sub) or header (Kafka) naming an event's schema
HEADER = "ChangeEventHeader"
BITMAPS = ("changedFields", "nulledFields", "diffFields")
_HEX = frozenset(string.hexdigits)


@dataclass(frozen=True)
class WriterSchema:
    """A parsed event schema and the field order its bitmaps count in."""

    parsed: Any
    fields: tuple[str, ...]
    children: Mapping[int, tuple[str, ...]]  # compound field position -> its nested fields, in order
    datetimes: frozenset[str]


def _record_branch(avro_type: Any) -> dict | None:
    """The record inside a field's type: itself, or the record branch of a union such as ["null", Address]."""
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    return next((b for b in branches if isinstance(b, dict) and b.get("type") == "record"), None)


@functools.lru_cache(maxsize=64)
def writer_schema(text: str) -> WriterSchema:
    """Parse once per schema (the text is the cache key); a bad schema is a DecodeError."""
    try:
        schema = json.loads(text)
        parsed = fastavro.parse_schema(schema)
        expanded = expand_schema(schema)
    except (ValueError, TypeError, KeyError, SchemaParseException) as error:
        raise DecodeError(f"not an Avro schema: {error}") from error
    if not isinstance(expanded, dict) or expanded.get("type") != "record":
        raise DecodeError("a Salesforce event schema must be an Avro record")
    fields = expanded["fields"]
    names = tuple(f["name"] for f in fields)
    if HEADER not in names:
        raise DecodeError(f"schema {expanded.get('name')!r} has no {HEADER}: not a change event schema")
    children = {position: tuple(child["name"] for child in record["fields"])
                for position, record in ((i, _record_branch(f["type"])) for i, f in enumerate(fields))
                if record is not None and names[position] != HEADER}
    datetimes = frozenset(f["name"] for f in schema["fields"] if str(f.get("doc", "")).split(":")[1:2] == ["DateTime"])
    return WriterSchema(parsed, names, children, datetimes)


def _positions(bitmap: str, what: str) -> list[int]:
    """Bit i (least significant first) of a "0x…" hex string, of any length."""
    digits = bitmap[2:]
    if bitmap[:2] not in ("0x", "0X") or not set(digits) <= _HEX:
        raise DecodeError(f"{what}: {bitmap!r} is not a hex bitmap like '0x1E0'")
    value, positions = int(digits, 16) if digits else 0, []
    while value:
        lowest = value & -value
        positions.append(lowest.bit_length() - 1)
        value ^= lowest
    return positions


def _named(names: tuple[str, ...], positions: list[int], what: str, entry: str) -> list[str]:
    if positions and positions[-1] >= len(names):
        raise DecodeError(f"{what}: {entry!r} sets bit {positions[-1]} but the schema has {len(names)} fields "
                          "there: the event was not written with this schema")
    return [names[i] for i in positions]


def expand_bitmap(entries: Any, schema: WriterSchema, what: str) -> list[str]:
    """`["0x…", "P-0x…", ...]` -> field names: the first form counts top-level fields,
    "P-0x…" the fields nested in the compound field at position P (as "Parent.Child")."""
    if not isinstance(entries, list):
        raise DecodeError(f"{what} must be a list of bitmap strings, got {entries!r}")
    names: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise DecodeError(f"{what} must be a list of bitmap strings, got {entries!r}")
        parent, nested, bitmap = entry.partition("-")
        if not nested:
            names += _named(schema.fields, _positions(entry, what), what, entry)
            continue
        position = int(parent) if parent.isascii() and parent.isdigit() else None
        if position not in schema.children:
            raise DecodeError(f"{what}: {entry!r} points at position {parent}, which is not a compound field")
        prefix = schema.fields[position]
        names += [f"{prefix}.{child}" for child in
                  _named(schema.children[position], _positions(bitmap, what), what, entry)]
    return names


def _hex(bits: int) -> str:
    digits = f"{bits:X}"
    return "0x" + digits.rjust(len(digits) + len(digits) % 2, "0")


def encode_bitmap(paths: Iterable[str], schema: WriterSchema) -> list[str]:
    """The inverse of `expand_bitmap`, for samples and tests: field names ("Phone",
    "MailingAddress.City") as Salesforce sends them, whole bytes of hex, compound entries by position."""
    positions = {name: i for i, name in enumerate(schema.fields)}
    top, nested = 0, {}
    for path in paths:
        parent, dot, child = path.partition(".")
        if parent not in positions or (dot and child not in schema.children.get(positions[parent], ())):
            raise ValueError(f"{path!r} is not a field of the schema")
        if dot:
            bit = schema.children[positions[parent]].index(child)
            nested[positions[parent]] = nested.get(positions[parent], 0) | 1 << bit
        else:
            top |= 1 << positions[parent]
    return [_hex(top)] * bool(top) + [f"{position}-{_hex(bits)}" for position, bits in sorted(nested.items())]


def read_event(data: bytes, schema: WriterSchema, schema_id: str) -> dict:
    """One record, and all of the payload: bytes left over mean another schema wrote it."""
    stream = io.BytesIO(bytes(data))
    try:
        record = fastavro.schemaless_reader(stream, schema.parsed, None)
    except Exception as error:  # noqa: BLE001 - fastavro raises whatever a short or foreign payload trips
        raise DecodeError(f"payload is not an Avro record of schema {schema_id!r}: "
                          f"{type(error).__name__}: {error}") from error
    left = len(stream.getbuffer()) - stream.tell()
    if left:
        raise DecodeError(f"payload has {left} bytes after the record of schema {schema_id!r}: "
                          "the event was not written with this schema")
    return record


def _as_cometd(name: str, value: dict, changed: frozenset[str]) -> dict | None:
    """A compound field keeps its changed or non-null parts; None when nothing is left."""
    parts = {part: v for part, v in value.items() if v is not None or f"{name}.{part}" in changed}
    return parts or None


def pubsub_api_payload(data: bytes, schema_id: str, schemas: Mapping[str, str]) -> dict:
    """An Avro-binary change event as the payload CometD delivers for the same change."""
    text = schemas.get(schema_id)
    if text is None:
        raise DecodeError(f"unknown Salesforce schema_id {schema_id!r}: put its schema (GetSchema) in "
                          f"{schema_id}.avsc under --salesforce_schema_dir and replay this message")
    schema = writer_schema(text)
    record = read_event(data, schema, schema_id)
    header = record.get(HEADER)
    if not isinstance(header, dict):
        raise DecodeError(f"event of schema {schema_id!r} has no {HEADER}")
    expanded = {name: expand_bitmap(header.get(name) or [], schema, name) for name in BITMAPS}
    changed, diffed = frozenset(expanded["changedFields"]), frozenset(expanded["diffFields"])
    payload: dict[str, Any] = {HEADER: {**header, **expanded}}
    for name, value in record.items():
        if type(value) is dict and name != HEADER:
            value = _as_cometd(name, value, changed)
        if value is None:
            if name in changed:
                payload[name] = None
        elif name != HEADER:
            if name in schema.datetimes:
                value = millis_to_iso(value, name)
            payload[name] = {"diff": value} if name in diffed else value
    return payload
