"""HubSpot contact webhooks and Events API page views."""
from __future__ import annotations

import re
from typing import Any

from singleview.formats._common import (
    as_id, as_int, as_object, epoch_millis, guarded, load_json, normalise_time, require)
from singleview.model import (
    DELETE, ERASE, MERGE, RESTORE, UPSERT, ChangeEvent, DecodeError, RawMessage, Version, normalise_email)

SUBSCRIPTIONS = {
    "contact.creation": UPSERT, "contact.propertyChange": UPSERT, "contact.deletion": DELETE,
    "contact.restore": RESTORE, "contact.privacyDeletion": ERASE, "contact.merge": MERGE,
}
PAGE_VIEW = "e_visited_page"


def _each(document: Any, what: str) -> list[dict]:
    """HubSpot batches webhooks in arrays; a reader normally splits them first."""
    if document is None:
        raise DecodeError(f"empty {what}")
    items = document if isinstance(document, list) else [document]
    if not items:
        raise DecodeError(f"empty batch of {what}s")
    return [as_object(item, what) for item in items]


def _property_value(value: Any) -> str:
    """HubSpot sends every property value as a string; anything else is coerced the way HubSpot shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise DecodeError(f"propertyValue must be a string, got {value!r}")


def _webhook(source: str, event: dict) -> ChangeEvent:
    kind = require(event, "subscriptionType", "HubSpot webhook")
    op = SUBSCRIPTIONS.get(kind) if isinstance(kind, str) else None
    if op is None:
        raise DecodeError(f"unknown subscriptionType {kind!r}")
    version = Version(as_int(require(event, "occurredAt", "HubSpot webhook"), "occurredAt"),
                           as_int(require(event, "eventId", "HubSpot webhook"), "eventId"))
    if op == MERGE:
        primary = as_id(require(event, "primaryObjectId", "contact.merge"), "primaryObjectId")
        merged = require(event, "mergedObjectIds", "contact.merge")
        if not isinstance(merged, list):
            raise DecodeError(f"mergedObjectIds must be a list, got {merged!r}")
        ids = tuple(dict.fromkeys(i for i in (as_id(m, "mergedObjectIds entry") for m in merged) if i != primary))
        return ChangeEvent(source, primary, MERGE, version, merged_ids=ids)
    object_id = as_id(require(event, "objectId", "HubSpot webhook"), "objectId")
    if kind != "contact.propertyChange":
        return ChangeEvent(source, object_id, op, version)
    name = require(event, "propertyName", "contact.propertyChange")
    if not isinstance(name, str) or not name:
        raise DecodeError(f"propertyName must be a non-empty string, got {name!r}")
    value = _property_value(event.get("propertyValue"))
    return ChangeEvent(source, object_id, UPSERT, version, {name: normalise_email(value) if name == "email" else value})


@guarded
def decode_hubspot_webhook(message: RawMessage, config: Any = None) -> list[ChangeEvent]:
    """Contact webhooks; a merge names the surviving contact and the ones folded into it."""
    return [_webhook(message.source, e) for e in _each(load_json(message.data), "HubSpot webhook")]


def _page_view(source: str, event: dict, config: Any) -> ChangeEvent:
    kind = event.get("eventType")
    if kind != PAGE_VIEW:
        raise DecodeError(f"unknown eventType {kind!r}: expected {PAGE_VIEW!r}")
    if event.get("objectType", "CONTACT") != "CONTACT":
        raise DecodeError(f"wrong objectType {event.get('objectType')!r}: expected 'CONTACT'")
    view_id = as_id(require(event, "id", "page view"), "id")
    contact_id = as_id(require(event, "objectId", "page view"), "objectId")
    occurred = require(event, "occurredAt", "page view")
    properties = event.get("properties") or {}
    properties = as_object(properties, "page view properties")
    url, title = properties.get("hs_url"), properties.get("hs_title")
    if url is not None and not isinstance(url, str):
        raise DecodeError(f"hs_url must be a string, got {url!r}")
    match = re.search(config.category_pattern, url) if url else None
    fields = {"url": url, "title": title, "category": match.group(1) if match else None,
              "viewed_at": normalise_time(occurred, "occurredAt")}
    version = Version(epoch_millis(occurred, "occurredAt"), view_id)
    return ChangeEvent(source, view_id, UPSERT, version, fields, full_image=True, parent_id=contact_id)


@guarded
def decode_hubspot_page_view(message: RawMessage, config: Any) -> list[ChangeEvent]:
    """A page view belongs to its contact (`parent_id`) and never changes once seen."""
    return [_page_view(message.source, e, config) for e in _each(load_json(message.data), "HubSpot page view")]
