"""The change feed of single views (pure): one event per ViewChange, and the rule a consumer folds by.

Every event is keyed by the customer's `retired_id` (the SHA-256 of the
normalised email, the `_id` of its tombstone), never by the email: one
customer's upserts and deletes share an ordering key (a Kafka partition),
and a removal, which may be a privacy erasure, carries no PII at all. An
upsert names its customer (`email`), as the view it announces does.

Delivery is at least once and, per customer, mostly in `_rev` order: a
consumer keeps, per key, the event with the highest `_rev` (`fold`); a
redelivered or overtaken event has a lower or equal `_rev` and is dropped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from singleview.formats._common import iso_utc
from singleview.view import ViewChange, retired_id

UPSERT, DELETE = "upsert", "delete"
AFTER, NO_PAYLOAD = "after", "none"
PAYLOADS = (AFTER, NO_PAYLOAD)


@dataclass(frozen=True)
class FeedEvent:
    """What goes on the topic: the JSON body, its key and its attributes (headers on Kafka)."""

    key: str
    data: bytes
    attributes: dict[str, str]


def _plain(value: Any) -> Any:
    """Times as ISO 8601 UTC, the one time format of events; anything else unusual as text, never a crash."""
    return iso_utc(value) if isinstance(value, datetime) else str(value)


def to_json(value: Any) -> bytes:
    return json.dumps(value, default=_plain, separators=(",", ":"), ensure_ascii=False).encode()


def plain_document(doc: Mapping) -> dict:
    """A stored single view as a feed event carries it: without `_meta`, times as ISO strings."""
    return json.loads(to_json({k: v for k, v in doc.items() if k != "_meta"}))


def feed_event(change: ViewChange, payload: str = NO_PAYLOAD) -> FeedEvent | None:
    """The event for one change; None for the removal of a view that was never stored.

    Such a removal (retractions reaching an email that had no view yet) is kept
    in the tombstones, but no app has seen anything to remove.
    """
    if payload not in PAYLOADS:
        raise ValueError(f"payload must be one of {', '.join(PAYLOADS)}, got {payload!r}")
    op = UPSERT if change.doc is not None else DELETE
    if op == DELETE and not change.sections:
        return None
    key = retired_id(change.email)
    body: dict[str, Any] = {"key": key}
    if op == UPSERT:
        body["email"] = change.email
    body.update({"_rev": change.rev, "op": op, "sections": list(change.sections)})
    if op == UPSERT and payload == AFTER:
        body["doc"] = change.doc
    return FeedEvent(key, to_json(body), {"_rev": str(change.rev), "op": op})


def later(kept: Mapping | None, event: Mapping) -> bool:
    """Whether a consumer replaces what it kept for a customer by `event`.

    A higher `_rev` wins; an equal one is a redelivery and is dropped, except
    that a delete beats an upsert of the same `_rev`, as a retraction does in the merge.
    """
    if kept is None or event["_rev"] > kept["_rev"]:
        return True
    return event["_rev"] == kept["_rev"] and event["op"] == DELETE and kept["op"] != DELETE


def fold(events: Iterable[Mapping | bytes]) -> dict[str, dict]:
    """Per key, the event a consumer keeps (deletes included, so that an older upsert cannot revive a view)."""
    kept: dict[str, dict] = {}
    for event in events:
        event = json.loads(event) if isinstance(event, (bytes, str)) else dict(event)
        if later(kept.get(event["key"]), event):
            kept[event["key"]] = event
    return kept


def live(kept: Mapping[str, Mapping]) -> dict[str, dict]:
    """The views a folded feed holds: its upserts, by key."""
    return {key: dict(event) for key, event in kept.items() if event["op"] == UPSERT}
