"""Response models: the customer_sv document of DESIGN.md section 4, as the API shows it."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


# The driver hands out UTC-aware datetimes (db.make_client), which pydantic
# writes as ISO 8601 with "Z" natively, with no Python call per value.
UtcDatetime = datetime


class _Model(BaseModel):
    # Unknown fields the pipeline adds later are passed through, not dropped.
    model_config = ConfigDict(extra="allow")


class MailingAddress(_Model):
    street: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


class CrmInfo(_Model):
    crm_id: str | None = None
    crm_ids: list[str] | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    mailing_address: MailingAddress | None = None
    last_modified_at: UtcDatetime | None = None


class OrderItem(_Model):
    item_id: str | None = None
    sku: str | None = None
    name: str | None = None
    qty: str | None = Field(None, description="decimal string")
    price: str | None = Field(None, description="decimal string")
    row_total: str | None = Field(None, description="decimal string")


class Order(_Model):
    order_id: str | None = None
    increment_id: str | None = None
    status: str | None = None
    state: str | None = None
    grand_total: str | None = Field(None, description="decimal string, exact")
    currency: str | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    items: list[OrderItem] | None = None


class PageView(_Model):
    url: str | None = None
    title: str | None = None
    category: str | None = None
    viewed_at: UtcDatetime | None = None


class ViewedCategory(_Model):
    category: str | None = None
    views: int | None = None
    last_viewed_at: UtcDatetime | None = None


class MarketingPreferences(_Model):
    hubspot_id: str | None = None
    email_opt_out: bool | None = None
    properties: dict[str, Any] | None = None
    browsing_history: list[PageView] | None = None
    viewed_categories: list[ViewedCategory] | None = None


class Stats(_Model):
    order_count: int | None = None
    lifetime_value: dict[str, str] | None = Field(None, description="currency -> decimal string")
    first_order_at: UtcDatetime | None = None
    last_order_at: UtcDatetime | None = None
    last_viewed_at: UtcDatetime | None = None


class CustomerSV(_Model):
    id: str | None = Field(None, alias="_id", description="normalised email")
    email: str | None = None
    name: str | None = None
    crm_info: CrmInfo | None = None
    order_history: list[Order] | None = None
    marketing_preferences: MarketingPreferences | None = None
    stats: Stats | None = None
    sources: list[str] | None = None
    updated_at: UtcDatetime | None = None
    rev: int | None = Field(None, alias="_rev")

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)


class CustomerPage(BaseModel):
    items: list[CustomerSV]
    count: int = Field(description="number of items in this page")
    limit: int
    skip: int


class CountBody(BaseModel):
    count: int


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    mongodb: bool
    segments: bool = Field(description="the segment read model is loaded")
