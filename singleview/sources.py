"""What each source is, in one place (pure: no Beam, no pymongo).

A source is one feed of change events from a system of record. Everything
that depends on which source an event came from (its decoder, its projection
collection, its parent, where its email is, which part of the single view it
feeds) reads it from here, so adding a source is adding an entry.

Sources come in sections: a section is one parent source (its entities carry
the customer's email) and at most one child source whose entities belong to
a parent entity (an order's items, a contact's page views). A section is
projected as a unit keyed by the parent's id, and feeds one part of the
single view.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    name: str
    format: str                      # its default decoder, a key of singleview.formats.FORMATS
    projection: str                  # the collection of its projection
    section: str                     # the section it belongs to (and the part of the view it feeds)
    email_field: str | None = None   # a parent's field that holds the customer's email
    parent_field: str | None = None  # a child's field that names its parent entity

    @property
    def is_child(self) -> bool:
        return self.parent_field is not None


@dataclass(frozen=True)
class Section:
    name: str
    parent: Source
    child: Source | None = None
    children_key: str | None = None  # where the child projection document keeps its entities


SOURCES: dict[str, Source] = {source.name: source for source in (
    Source("crm", "salesforce", "crm_customers_projection", "crm", email_field="email"),
    Source("orders", "debezium", "ecommerce_orders_projection", "orders", email_field="customer_email"),
    Source("order_items", "debezium", "ecommerce_order_items_projection", "orders", parent_field="order_id"),
    Source("marketing", "hubspot", "marketing_preferences_projection", "marketing", email_field="email"),
    Source("pageviews", "hubspot_events", "marketing_pageviews_projection", "marketing", parent_field="contact_id"),
)}

SECTIONS: dict[str, Section] = {
    "crm": Section("crm", SOURCES["crm"]),
    "orders": Section("orders", SOURCES["orders"], SOURCES["order_items"], "items"),
    "marketing": Section("marketing", SOURCES["marketing"], SOURCES["pageviews"], "views"),
}


def section_of(source: str) -> Section:
    return SECTIONS[SOURCES[source].section]


def unknown_source(name: str) -> ValueError:
    return ValueError(f"unknown source {name!r}; expected one of {', '.join(SOURCES)}")
