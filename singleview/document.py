"""The customer_sv document (docs/design.md section 4), as the pipeline writes it and the API serves it.

TypedDicts, one per section: `view.render` builds them, the API validates and
documents its responses with them (pydantic reads TypedDicts), and the
pipeline's workers need neither FastAPI nor pydantic.

`segment_fields` is the part of a document the API's named segments filter
on: what the change log carries per written view, and what the API's read
model keeps per customer.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

# typing.TypedDict on Python 3.12+; before that pydantic (the API) needs this one.
from typing_extensions import TypedDict

# Every section is total=False: the API serves projections (`_p`) of a document,
# and a section the customer has no source for is absent. `view.render` writes
# every key of a section it writes (None where the source has no value).


class MailingAddress(TypedDict, total=False):
    """Salesforce's compound MailingAddress, its parts in snake_case."""

    street: str | None
    city: str | None
    state: str | None
    state_code: str | None
    postal_code: str | None
    country: str | None
    country_code: str | None
    latitude: float | None
    longitude: float | None
    geocode_accuracy: str | None


class CrmInfo(TypedDict, total=False):
    """The most recently changed live CRM contact with this email."""

    crm_id: str
    crm_ids: list[str]  # every live contact with this email
    salutation: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    mailing_address: MailingAddress | None
    last_modified_at: datetime | None


class OrderItem(TypedDict, total=False):
    item_id: str
    sku: str | None
    name: str | None
    qty: str | None  # decimal string
    price: str | None  # decimal string
    row_total: str | None  # decimal string


class Order(TypedDict, total=False):
    order_id: str
    increment_id: str | None
    status: str | None
    state: str | None
    grand_total: str | None  # decimal string, exact
    currency: str | None
    created_at: datetime | None
    updated_at: datetime | None
    items: list[OrderItem]  # by item_id


class PageView(TypedDict, total=False):
    url: str | None
    title: str | None
    category: str | None
    viewed_at: datetime | None


class ViewedCategory(TypedDict, total=False):
    category: str
    views: int
    last_viewed_at: datetime | None


class MarketingPreferences(TypedDict, total=False):
    """The most recently changed HubSpot contact's preferences, with every contact's page views."""

    hubspot_id: str
    hubspot_ids: list[str]
    email_opt_out: bool
    properties: dict[str, Any]
    browsing_history: list[PageView]  # newest first, capped
    viewed_categories: list[ViewedCategory]  # most viewed first, every category


class Stats(TypedDict, total=False):
    order_count: int
    lifetime_value: dict[str, str]  # currency -> exact decimal string, cancelled orders left out
    lifetime_value_num: dict[str, float]  # the same as floats, for range queries
    first_order_at: datetime | None
    last_order_at: datetime | None
    last_viewed_at: datetime | None


CustomerSV = TypedDict("CustomerSV", {
    "_id": str,  # the normalised email
    "email": str,
    "name": str | None,
    "crm_info": CrmInfo,
    "order_history": list[Order],  # newest first
    "marketing_preferences": MarketingPreferences,
    "stats": Stats,
    "sources": list[str],
    "updated_at": datetime | None,
    "_rev": int,  # grows with every change of the view
}, total=False)
CustomerSV.__doc__ = "One customer's single view, the customer_sv document (docs/design.md section 4); `_meta` is the pipeline's."

# The document's parts whose change a writer tracks (view.fingerprints).
DOCUMENT_SECTIONS = tuple(sorted(set(CustomerSV.__annotations__) - {"_id", "_rev"}))


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
