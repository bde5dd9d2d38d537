"""The records that flow between the parts (pure: no Beam, no pymongo).

A raw message is decoded into `ChangeEvent`s, each ordered by its `Version`;
each event is folded into the projection of its entity (singleview.fold,
singleview.projection); projections become `Contribution`s to the single view
of one customer, keyed by normalised email (singleview.view).
"""
from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

# What a ChangeEvent asks of its entity's projection.
UPSERT = "upsert"    # set the given fields (partial unless full_image)
DELETE = "delete"    # tombstone the entity
RESTORE = "restore"  # Salesforce UNDELETE, HubSpot contact.restore
ERASE = "erase"      # HubSpot privacy deletion: forget everything but the version
MERGE = "merge"      # HubSpot contact.merge: the contact now lives in another (parent_id)
# Every op, in the order that breaks a tie between life-cycle changes at one
# version: a delete beats the upsert it shares a commit with, an erasure everything.
OPS = (UPSERT, RESTORE, MERGE, DELETE, ERASE)

# What a dead letter keeps of its message. Text is cut at 16 KiB (readable
# without more). Bytes that are not UTF-8 are kept as base64 up to 1 MiB:
# Salesforce sends no change event over 1 MB (a bigger one becomes a gap event),
# so a binary event is kept whole and can be replayed once it can be decoded.
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_BINARY_PAYLOAD_BYTES = 1024 * 1024
TEXT = "utf-8"
BASE64 = "base64"


class DecodeError(ValueError):
    """Raised by a decoder for a message that becomes a dead letter."""


class Record:
    """A dataclass that pickles as its constructor's arguments, in field order: Beam
    pickles every record it moves between steps, and that is a third cheaper than
    the default (a dict of field names and values per record)."""

    def __reduce__(self):
        return type(self), tuple(self.__dict__.values())


@dataclass(frozen=True)
class RawMessage(Record):
    """A message as a source delivers it (file line, Pub/Sub or Kafka).

    Kafka records also carry their `key`; a null Kafka value arrives as empty
    `data`, so a keyed message without data is a tombstone.
    """

    source: str
    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    publish_time: datetime | None = None
    key: bytes | None = None

    @property
    def is_tombstone(self) -> bool:
        """Kafka's delete marker for log compaction: nothing to apply."""
        return self.key is not None and not self.data


class Version(tuple):
    """A source's version of a change: epoch milliseconds of the change, then
    the source's own tie-breakers (commit number, binlog position, event id).

    Versions order changes to one entity, so they compare as tuples; they are
    only compared within one source (whose versions all have one shape) or,
    across sources, by `millis`.
    """

    __slots__ = ()

    def __new__(cls, *parts: int | str) -> "Version":
        """Parts are non-negative integers and strings; the decoders check them (formats._common.as_int)."""
        return tuple.__new__(cls, parts)

    def __reduce__(self):
        return Version, tuple(self)

    @property
    def millis(self) -> int | None:
        """When the change happened (every format's version starts with it)."""
        return self[0] if self and isinstance(self[0], int) else None

    def __repr__(self) -> str:
        return f"Version{tuple.__repr__(self)}"


NO_VERSION = Version()


@dataclass(frozen=True)
class ChangeEvent(Record):
    """One change to one entity of one source, with the version that orders it.

    `fields` use snake_case names and JSON-safe values (decimal strings,
    ISO-8601 UTC times).
    """

    source: str
    entity_id: str
    op: str
    version: Version
    fields: Mapping[str, Any] = field(default_factory=dict)
    full_image: bool = False
    parent_id: str | None = None
    merged_ids: tuple[str, ...] = ()
    nulled: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """A deterministic tie-breaker between events with equal versions: equal only for equal events."""
        return json.dumps([getattr(self, f.name) for f in dataclasses.fields(self)],
                          sort_keys=True, default=str, separators=(",", ":"))

    def to_dict(self) -> dict:
        """The event as plain JSON-ready values (the version as a list)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {"version": list(self.version)}


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be used, kept with the reason and what the
    source said about it (attributes, publish time) so it can be found there."""

    source: str
    reason: str
    payload: str
    at: datetime
    attributes: Mapping[str, str] = field(default_factory=dict)
    published_at: datetime | None = None
    payload_encoding: str = TEXT
    payload_bytes: int = 0

    @classmethod
    def of(cls, message: RawMessage, reason: str) -> "DeadLetter":
        """`payload_bytes` is the message's whole size, so a cut payload says so."""
        data = bytes(message.data)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(data[:MAX_BINARY_PAYLOAD_BYTES]).decode("ascii"), BASE64
        else:
            payload, encoding = data[:MAX_PAYLOAD_BYTES].decode("utf-8", "replace"), TEXT
        return cls(message.source, reason, payload, utcnow(), dict(message.attributes), message.publish_time,
                   encoding, len(data))

    def payload_data(self) -> bytes:
        """The kept bytes of the message, as they arrived."""
        return base64.b64decode(self.payload) if self.payload_encoding == BASE64 else self.payload.encode("utf-8")

    def to_doc(self) -> dict:
        """Attribute names may hold `.` or start with `$`, so they are kept as name/value pairs."""
        doc = dataclasses.asdict(self)
        doc["attributes"] = [{"name": k, "value": v} for k, v in sorted(self.attributes.items())]
        return doc


def normalise_email(value: Any) -> str | None:
    """Trimmed, lower-cased email, or None when there is none."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email or None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
