"""The customer_sv document (DESIGN.md section 4), as the pipeline writes it and the API reads it (pure, stdlib).

`segment_fields` is the part of a document the API's named segments filter
on: what the change log carries per written view, and what the API's read
model keeps per customer.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, TypedDict


class SegmentFields(TypedDict):
    """What the named segment filters read from one customer's document."""

    categories: list[str]
    last_order_at: datetime | None
    order_count: int | None
    email_opt_out: bool | None
    updated_at: datetime | None
    lifetime_value: dict[str, str]


# The fields a segment reads, as a MongoDB projection (the API's start-up read).
SEGMENT_PROJECTION = {
    "_rev": 1, "updated_at": 1, "stats.last_order_at": 1, "stats.order_count": 1, "stats.lifetime_value": 1,
    "marketing_preferences.email_opt_out": 1, "marketing_preferences.viewed_categories.category": 1,
}


def segment_fields(doc: Mapping[str, Any]) -> SegmentFields:
    """The segment fields of a whole document or of one read with SEGMENT_PROJECTION."""
    stats = doc.get("stats") or {}
    marketing = doc.get("marketing_preferences") or {}
    return {
        "categories": sorted({c["category"] for c in marketing.get("viewed_categories") or () if c.get("category")}),
        "last_order_at": stats.get("last_order_at"),
        "order_count": stats.get("order_count"),
        "email_opt_out": marketing.get("email_opt_out"),
        "updated_at": doc.get("updated_at"),
        "lifetime_value": dict(stats.get("lifetime_value") or {}),
    }
