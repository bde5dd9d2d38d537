"""Salesforce Change Data Capture events for Contact: CometD JSON, the Pub/Sub API
record decoded to JSON, or the Pub/Sub API's Avro binary (a message with a `schema_id`)."""
from __future__ import annotations

from typing import Any

from singleview.formats._common import (
    as_id, as_int, as_object, guarded, load_json, normalise_time, require, snake_case)
from singleview.formats.salesforce_avro import SCHEMA_ID, pubsub_api_payload
from singleview.model import DELETE, RESTORE, UPSERT, ChangeEvent, DecodeError, RawMessage, Version, normalise_email

ENTITY = "Contact"
CHANGE_TYPES = {"CREATE": UPSERT, "UPDATE": UPSERT, "DELETE": DELETE, "UNDELETE": RESTORE}
GAPS = ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW")
# The Pub/Sub API sends datetimes as epoch millis; CometD as ISO strings.
DATETIME_FIELDS = frozenset({
    "CreatedDate", "LastModifiedDate", "SystemModstamp", "LastViewedDate", "LastReferencedDate",
    "EmailBouncedDate", "LastCURequestDate", "LastCUUpdateDate"})


def _payload(document: Any) -> dict:
    document = as_object(document, "Salesforce change event")
    for _ in range(3):
        if "ChangeEventHeader" in document:
            return document
        inner = document.get("payload", document.get("data"))
        if not isinstance(inner, dict):
            break
        document = inner
    raise DecodeError("Salesforce change event has no ChangeEventHeader")


def _field_value(name: str, value: Any) -> Any:
    if name in DATETIME_FIELDS and value is not None:
        return normalise_time(value, name)
    if name == "Email":
        return normalise_email(value)
    return value


def _fields(payload: dict) -> dict:
    """Nulls are dropped: in a partial update they mean "unchanged", explicit nulls come in nulledFields."""
    fields: dict[str, Any] = {}
    for name, value in payload.items():
        if name == "ChangeEventHeader" or value is None:
            continue
        if not isinstance(name, str):
            raise DecodeError(f"field name must be a string, got {name!r}")
        if name == "Name" and isinstance(value, dict):
            fields.update((snake_case(part), v) for part, v in value.items() if v is not None)
        elif isinstance(value, dict):
            fields[snake_case(name)] = {snake_case(part): v for part, v in value.items() if v is not None}
        else:
            fields[snake_case(name)] = _field_value(name, value)
    if "email" in fields and fields["email"] is None:
        del fields["email"]
    return fields


def _nulled(header: dict) -> tuple[str, ...]:
    names = header.get("nulledFields") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise DecodeError(f"nulledFields must be a list of field names, got {names!r}")
    paths = []
    for name in names:
        parts = name.split(".")
        if parts[0] == "Name" and len(parts) == 2:
            parts = parts[1:]
        paths.append(".".join(snake_case(p) for p in parts))
    return tuple(sorted(set(paths)))


@guarded
def decode_salesforce_cdc(message: RawMessage, config: Any = None) -> list[ChangeEvent]:
    """One event per record id; GAP_* events are refused so a resync is asked for, not guessed.

    Binary events are read into the payload CometD sends for the same change,
    so both take the one path below."""
    if SCHEMA_ID in message.attributes:
        payload = pubsub_api_payload(message.data, message.attributes[SCHEMA_ID],
                                     getattr(config, "salesforce_schemas", None) or {})
    else:
        document = load_json(message.data)
        if document is None:
            raise DecodeError("empty Salesforce change event")
        payload = _payload(document)
    header = as_object(payload["ChangeEventHeader"], "ChangeEventHeader")
    entity = header.get("entityName")
    if entity != ENTITY:
        raise DecodeError(f"wrong entity {entity!r}: expected {ENTITY!r}")
    change_type = require(header, "changeType", "ChangeEventHeader")
    if change_type in GAPS:
        raise DecodeError(f"{change_type} for {header.get('recordIds')!r}: the records must be resynced "
                          "from Salesforce (gap events carry no field values)")
    if not isinstance(change_type, str) or change_type not in CHANGE_TYPES:
        raise DecodeError(f"unknown changeType {change_type!r}")
    record_ids = require(header, "recordIds", "ChangeEventHeader")
    if not isinstance(record_ids, list) or not record_ids:
        raise DecodeError(f"recordIds must be a non-empty list, got {record_ids!r}")
    ids = [as_id(r, "recordIds entry") for r in record_ids]
    version = Version(
        as_int(require(header, "commitTimestamp", "ChangeEventHeader"), "commitTimestamp"),
        as_int(require(header, "commitNumber", "ChangeEventHeader"), "commitNumber"),
        as_int(header.get("sequenceNumber", 0), "sequenceNumber"))
    op = CHANGE_TYPES[change_type]
    fields = _fields(payload) if op != DELETE else {}
    nulled = _nulled(header) if op == UPSERT else ()
    full = change_type == "CREATE"
    return [ChangeEvent(message.source, record_id, op, version, dict(fields), full_image=full, nulled=nulled)
            for record_id in dict.fromkeys(ids)]
