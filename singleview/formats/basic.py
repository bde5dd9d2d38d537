"""The `{key, op, ts, data}` format, for sources without a CDC tool."""
from __future__ import annotations

from typing import Any

from singleview.formats._common import as_id, as_int, as_object, guarded, load_json, require
from singleview.model import DELETE, ERASE, RESTORE, UPSERT, ChangeEvent, DecodeError, RawMessage, make_version

OPS = (UPSERT, DELETE, RESTORE, ERASE)
# Children need their parent's id; these are the columns that hold it.
PARENT_FIELD = {"order_items": "order_id", "pageviews": "contact_id"}


@guarded
def decode_basic(message: RawMessage, config: Any = None) -> list[ChangeEvent]:
    """`data` is the full image; a child names its parent with `parent` (or its usual column)."""
    document = as_object(load_json(message.data), "basic message")
    entity_id = as_id(require(document, "key", "basic message"), "key")
    op = require(document, "op", "basic message")
    if op not in OPS:
        raise DecodeError(f"unknown op {op!r}: expected one of {', '.join(OPS)}")
    version = make_version(as_int(require(document, "ts", "basic message"), "ts"))
    data = as_object(document.get("data") or {}, "data") if op == UPSERT else {}
    if not all(isinstance(k, str) for k in data):
        raise DecodeError("data field names must be strings")
    parent = document.get("parent")
    if parent is None and message.source in PARENT_FIELD:
        parent = data.get(PARENT_FIELD[message.source])
    parent_id = as_id(parent, "parent") if parent is not None else None
    return [ChangeEvent(message.source, entity_id, op, version, dict(data), full_image=op == UPSERT,
                        parent_id=parent_id)]
