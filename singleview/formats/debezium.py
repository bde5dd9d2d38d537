"""Debezium MySQL change events for Magento `sales_order` and `sales_order_item`."""
from __future__ import annotations

import re
from typing import Any, NamedTuple

from singleview.formats._common import (
    as_id, as_int, as_object, decode_decimal_bytes, guarded, load_json, millis_to_iso, normalise_time,
    require, rescale_decimal)
from singleview.model import DELETE, UPSERT, ChangeEvent, DecodeError, RawMessage, Version, normalise_email

DECIMAL = "org.apache.kafka.connect.data.Decimal"
ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"
TIMESTAMP = "io.debezium.time.Timestamp"
MICRO_TIMESTAMP = "io.debezium.time.MicroTimestamp"
NANO_TIMESTAMP = "io.debezium.time.NanoTimestamp"
UPSERT_OPS = ("c", "u", "r")
# Without a schema, these Magento column names hold DECIMAL values.
MAGENTO_DECIMAL_COLUMN = re.compile(
    r"^(?:.*_)?(?:total|subtotal|amount|price|qty|weight|rate|percent|refunded|invoiced|paid|due|canceled|cost)"
    r"(?:_.*)?$")
NOT_DECIMAL_COLUMN = re.compile(r"_(?:id|ids|count|code|type|name|description|method)$")


class Table(NamedTuple):
    name: str
    id_column: str
    parent_column: str | None


TABLES = {
    "orders": Table("sales_order", "entity_id", None),
    "order_items": Table("sales_order_item", "item_id", "order_id"),
}


def _list(value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DecodeError(f"schema fields must be a list, got {value!r}")
    return value


def _column_schemas(schema: Any) -> dict[str, dict]:
    """Column name -> Connect field schema, from the envelope's `after` (or `before`) struct."""
    if not isinstance(schema, dict):
        return {}
    columns: dict[str, dict] = {}
    for part in _list(schema.get("fields")):
        if isinstance(part, dict) and part.get("field") in ("before", "after"):
            for column in _list(part.get("fields")):
                if isinstance(column, dict) and isinstance(column.get("field"), str):
                    columns.setdefault(column["field"], column)
    return columns


def _scale(column: dict, config: Any) -> int:
    parameters = column.get("parameters") or {}
    scale = parameters.get("scale") if isinstance(parameters, dict) else None
    if scale is None:
        return config.decimal_scale
    try:
        return int(scale)
    except (TypeError, ValueError) as error:
        raise DecodeError(f"bad decimal scale {scale!r} for column {column.get('field')!r}") from error


def _with_schema(name: str, value: Any, column: dict, config: Any) -> Any:
    logical = column.get("name")
    if logical == DECIMAL:
        scale = _scale(column, config)
        if column.get("type", "bytes") == "bytes":
            return decode_decimal_bytes(value, scale, name)
        return rescale_decimal(value, scale, name)
    if logical == ZONED_TIMESTAMP:
        return normalise_time(value, name)
    if logical == TIMESTAMP:
        return millis_to_iso(value, name)
    if logical in (MICRO_TIMESTAMP, NANO_TIMESTAMP):
        divisor = 1000 if logical == MICRO_TIMESTAMP else 1_000_000
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeError(f"{name}: expected an integer time, got {value!r}")
        return millis_to_iso(value // divisor, name)
    return value


def _without_schema(name: str, value: Any, config: Any) -> Any:
    if name.endswith("_at"):
        if isinstance(value, int) and not isinstance(value, bool):
            return millis_to_iso(value, name)
        if isinstance(value, str):
            return normalise_time(value, name)
    if isinstance(value, str) and MAGENTO_DECIMAL_COLUMN.match(name) and not NOT_DECIMAL_COLUMN.search(name):
        try:
            return decode_decimal_bytes(value, config.decimal_scale, name)
        except DecodeError:
            return rescale_decimal(value, config.decimal_scale, name)
    return value


def _row(image: dict, columns: dict[str, dict], config: Any) -> dict:
    row = {}
    for name, value in image.items():
        if value is not None:
            column = columns.get(name)
            value = _with_schema(name, value, column, config) if column else _without_schema(name, value, config)
        row[name] = value
    return row


def _envelope(document: Any) -> tuple[dict | None, dict]:
    """(payload, column schemas); payload None for a tombstone."""
    if document is None:
        return None, {}
    document = as_object(document, "Debezium message")
    if "op" not in document and "payload" in document:
        payload = document["payload"]
        if payload is None:
            return None, {}
        return as_object(payload, "Debezium payload"), _column_schemas(document.get("schema"))
    return document, {}


@guarded
def decode_debezium(message: RawMessage, config: Any) -> list[ChangeEvent]:
    """On Kafka the record key holds the row's primary key: it is checked against
    the row, or names the row of a delete without a `before` image. A tombstone
    (null value) only tells Kafka compaction to drop the key, so it is skipped."""
    payload, columns = _envelope(load_json(message.data))
    if payload is None:
        return []
    table = TABLES.get(message.source)
    if table is None:
        raise DecodeError(f"no Debezium table known for source {message.source!r}")
    source = as_object(require(payload, "source", "Debezium payload"), "source")
    if source.get("table") != table.name:
        raise DecodeError(f"wrong table {source.get('table')!r} for source {message.source!r}: "
                          f"expected {table.name!r}")
    op = require(payload, "op", "Debezium payload")
    if op in UPSERT_OPS:
        image, event_op = payload.get("after"), UPSERT
    elif op == "d":
        image, event_op = payload.get("before"), DELETE
    else:
        raise DecodeError(f"unknown op {op!r}")
    key_id = _key_id(message, table)
    if image is None and event_op == DELETE and key_id is not None:
        image = {}
    image = as_object(image, "after" if event_op == UPSERT else "before (needed for a delete)")
    version = Version(
        as_int(require(source, "ts_ms", "source"), "source.ts_ms"),
        _binlog_file(require(source, "file", "source")),
        as_int(require(source, "pos", "source"), "source.pos"),
        as_int(source.get("row", 0), "source.row"))
    if image.get(table.id_column) is None and key_id is not None:
        entity_id = key_id
    else:
        entity_id = as_id(image.get(table.id_column), table.id_column)
        if key_id not in (None, entity_id):
            raise DecodeError(f"record key {table.id_column}={key_id!r} does not match the row's {entity_id!r}")
    parent_id = as_id(image.get(table.parent_column), table.parent_column) if table.parent_column else None
    fields: dict[str, Any] = {}
    if event_op == UPSERT:
        fields = _row(image, columns, config)
        fields[table.id_column] = entity_id
        if table.parent_column:
            fields[table.parent_column] = parent_id
        if "customer_email" in fields:
            fields["customer_email"] = normalise_email(fields["customer_email"])
    return [ChangeEvent(message.source, entity_id, event_op, version, fields,
                        full_image=event_op == UPSERT, parent_id=parent_id)]


def _key_id(message: RawMessage, table: Table) -> str | None:
    """The row's primary key from the Kafka record key, Debezium's key struct
    (with or without the schema wrapper); None when the message has no key."""
    if not message.key:
        return None
    document = load_json(message.key)
    if isinstance(document, dict) and table.id_column not in document and "payload" in document:
        document = document["payload"]
    document = as_object(document, "Debezium record key")
    return as_id(require(document, table.id_column, "Debezium record key"), f"record key {table.id_column}")


def _binlog_file(value: Any) -> str:
    if not isinstance(value, str) or not value or "|" in value:
        raise DecodeError(f"source.file must be a binlog file name, got {value!r}")
    return value
