"""Decoders: one raw message in, its change events out, or a DecodeError saying why not.

Pure functions (no Beam, no pymongo), one module per wire format
(docs/wire-formats.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from singleview.formats._common import snake_case
from singleview.formats.basic import decode_basic
from singleview.formats.debezium import decode_debezium
from singleview.formats.hubspot import decode_hubspot_page_view, decode_hubspot_webhook
from singleview.formats.salesforce import decode_salesforce_cdc
from singleview.model import ChangeEvent, DecodeError, RawMessage
from singleview.sources import SOURCES


@dataclass(frozen=True)
class DecoderConfig:
    """What the decoders need besides the message; pickled to the workers with the DoFns."""

    decimal_scale: int = 4
    category_pattern: str = r"/(?:category|c)/([^/?#]+)"
    # Salesforce Pub/Sub API event schemas as JSON text by schema id (`<schema_id>.avsc`, loaded at the edge).
    salesforce_schemas: Mapping[str, str] = field(default_factory=dict, hash=False)


Decoder = Callable[[RawMessage, DecoderConfig], "list[ChangeEvent]"]

FORMATS: dict[str, Decoder] = {
    "salesforce": decode_salesforce_cdc,
    "debezium": decode_debezium,
    "hubspot": decode_hubspot_webhook,
    "hubspot_events": decode_hubspot_page_view,
    "basic": decode_basic,
}


def decode(message: RawMessage, config: DecoderConfig, fmt: str | None = None) -> list[ChangeEvent]:
    """Decode with the named format, or the source's default one; a Kafka
    tombstone decodes to no events whatever the format (it is skipped)."""
    if message.is_tombstone:
        return []
    source = SOURCES.get(message.source)
    if fmt is None and source is None:
        raise DecodeError(f"no decoder for source {message.source!r}")
    decoder = FORMATS.get(fmt or source.format)
    if decoder is None:
        raise DecodeError(f"unknown format {fmt!r}")
    events = decoder(message, config)
    if source is not None and source.is_child and any(e.parent_id is None for e in events):
        raise DecodeError(f"a {source.name} change must name its parent ({source.parent_field})")
    return events


__all__ = ["FORMATS", "DecoderConfig", "decode", "decode_basic", "decode_debezium",
           "decode_hubspot_page_view", "decode_hubspot_webhook", "decode_salesforce_cdc", "snake_case"]
