"""The `{key, op, ts, data}` format, for sources without a CDC tool."""
from __future__ import annotations

from typing import Any

from singleview.formats._common import as_id, as_int, as_object, guarded, load_json, require
from singleview.model import MERGE, OPS, UPSERT, ChangeEvent, DecodeError, RawMessage, Version
from singleview.sources import SOURCES

# A merge needs the ids it merges, which this format cannot say.
BASIC_OPS = tuple(op for op in OPS if op != MERGE)


@guarded
def decode_basic(message: RawMessage, config: Any = None) -> list[ChangeEvent]:
    """`data` is the full image; a child names its parent with `parent` (or its usual column)."""
    document = as_object(load_json(message.data), "basic message")
    entity_id = as_id(require(document, "key", "basic message"), "key")
    op = require(document, "op", "basic message")
    if op not in BASIC_OPS:
        raise DecodeError(f"unknown op {op!r}: expected one of {', '.join(BASIC_OPS)}")
    version = Version(as_int(require(document, "ts", "basic message"), "ts"))
    data = as_object(document.get("data") or {}, "data") if op == UPSERT else {}
    if not all(isinstance(k, str) for k in data):
        raise DecodeError("data field names must be strings")
    parent = document.get("parent")
    source = SOURCES.get(message.source)
    if parent is None and source is not None and source.is_child:
        parent = data.get(source.parent_field)
    parent_id = as_id(parent, "parent") if parent is not None else None
    return [ChangeEvent(message.source, entity_id, op, version, dict(data), full_image=op == UPSERT,
                        parent_id=parent_id)]
