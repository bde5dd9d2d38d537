"""Contributions, their merge per customer, and the single-view document (pure).

A contribution is what one entity (with its children) gives one customer's
single view. It is recomputed from the projection it comes from every time
(never accumulated), so a retried bundle cannot count twice; it carries the
revision of that projection, so an older observation never overwrites a
newer one, and a retraction (email change, delete, erasure) is a
contribution too. The document is a function of its contributions only, with
a total order on every list, so the same events always give the same document.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

import orjson

from singleview.document import (
    DOCUMENT_SECTIONS, CrmInfo, CustomerSV, MarketingPreferences, Order, OrderItem, PageView, Stats, ViewedCategory,
)
from singleview.fold import is_alive
from singleview.model import Record
from singleview.formats._common import iso_utc

DEFAULT_HISTORY_CAP = 100
CANCELLED = {"canceled", "cancelled", "closed"}


@dataclass(frozen=True)
class Contribution(Record):
    """What one entity of a section gives the single view of `email`.

    `rev` is (parent document revision, children document revision), both
    only ever growing: the parent decides the email, so it is compared first,
    which makes a retraction issued by an email change win over any
    assertion made before the change.
    """

    section: str
    entity_id: str
    email: str
    rev: tuple[int, int]
    live: bool
    data: Mapping[str, Any] | None = None

    @property
    def slot(self) -> tuple[str, str]:
        """Which entity this is an observation of."""
        return self.section, self.entity_id

    def retracted(self) -> "Contribution":
        return replace(self, live=False, data=None)


def newer(a, b):
    """The later of two observations of one entity (ties: the retraction wins)."""
    if a.rev != b.rev:
        return a if a.rev > b.rev else b
    return b if not b.live else a


def newest(observations: Iterable, slot=lambda c: c.slot) -> dict:
    """The newest observation per slot."""
    best: dict = {}
    for item in observations:
        key = slot(item)
        current = best.get(key)
        best[key] = item if current is None else newer(current, item)
    return best


def view_rev(contributions: Iterable[Contribution]) -> int:
    """A view's revision: the sum of its contributions' revisions.

    It grows whenever a contribution is replaced by a newer one or a new one
    joins, and equal revisions mean equal contributions, whichever worker
    computed them: a re-run after a crash writes the same revision for the
    same document.
    """
    return sum(c.rev[0] + c.rev[1] for c in contributions)


# --- times -----------------------------------------------------------------

def millis_time(millis: int | None) -> str | None:
    return None if millis is None else iso_utc(datetime.fromtimestamp(millis / 1000, timezone.utc))


def changed_millis(*entities: Mapping) -> int | None:
    """When the newest change among these entities happened (every version starts with its millis)."""
    times = [e["version"].millis for e in entities if e and e["version"].millis is not None]
    return max(times) if times else None


def as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# --- contribution data per section -------------------------------------------

def crm_data(contact_id: str, contact: Mapping) -> dict:
    return {"crm_id": contact_id, **contact["fields"], "changed_at": millis_time(changed_millis(contact))}


def live_fields(entities: Mapping[str, Mapping]) -> list[tuple[str, Mapping]]:
    return sorted((entity_id, e["fields"]) for entity_id, e in entities.items() if is_alive(e))


def order_data(order_id: str, order: Mapping, items: Mapping[str, Mapping]) -> dict:
    live = [{"item_id": item_id, **fields} for item_id, fields in live_fields(items)]
    return {"order_id": order_id, **order["fields"], "items": live,
            "changed_at": millis_time(changed_millis(order, *items.values()))}


def marketing_data(contact_id: str, contact: Mapping, views: Iterable[Mapping], changed: int | None,
                   cap: int) -> dict:
    """A contact's properties and page views (its own and its merged contacts')."""
    views = sorted(views, key=lambda v: (v.get("viewed_at") or "", v.get("url") or ""), reverse=True)
    categories: dict[str, dict] = {}
    for view in views:
        name = view.get("category")
        if not name:
            continue
        entry = categories.setdefault(name, {"category": name, "views": 0, "last_viewed_at": view.get("viewed_at")})
        entry["views"] += 1
        entry["last_viewed_at"] = max(entry["last_viewed_at"] or "", view.get("viewed_at") or "") or None
    return {"hubspot_id": contact_id, "properties": dict(contact["fields"]),
            "browsing_history": views[:cap], "viewed_categories": list(categories.values()),
            "changed_at": millis_time(changed)}


# --- the document ------------------------------------------------------------

def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def _changed_at(data: Mapping) -> str:
    return data.get("last_modified_date") or data.get("changed_at") or ""


def crm_section(contacts: list[Mapping]) -> CrmInfo:
    """The most recently changed of the customer's live CRM contacts, and every contact's id."""
    top = max(contacts, key=lambda d: (_changed_at(d), d["crm_id"]))
    return CrmInfo(
        crm_id=top["crm_id"], crm_ids=sorted(d["crm_id"] for d in contacts),
        salutation=top.get("salutation"), first_name=top.get("first_name"),
        last_name=top.get("last_name"), phone=top.get("phone"),
        mailing_address=top.get("mailing_address"),
        last_modified_at=as_datetime(_changed_at(top) or None),
    )


def _order(order: Mapping) -> Order:
    return Order(
        order_id=order["order_id"], increment_id=order.get("increment_id"),
        status=order.get("status"), state=order.get("state"),
        grand_total=order.get("grand_total"), currency=order.get("order_currency_code"),
        created_at=as_datetime(order.get("created_at")), updated_at=as_datetime(order.get("updated_at")),
        items=[OrderItem(item_id=i["item_id"], sku=i.get("sku"), name=i.get("name"), qty=i.get("qty_ordered"),
                         price=i.get("price"), row_total=i.get("row_total"))
               for i in sorted(order["items"], key=lambda i: i["item_id"].zfill(20))],
    )


def orders_section(orders: list[Mapping]) -> dict:
    """Newest order first; lifetime value per currency, exact, without cancelled orders."""
    orders = sorted(orders, key=lambda o: (o.get("created_at") or "", o["order_id"].zfill(20)), reverse=True)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for order in orders:
        amount = _decimal(order.get("grand_total"))
        if amount is not None and (order.get("status") or "").lower() not in CANCELLED:
            totals[order.get("order_currency_code") or "XXX"] += amount
    times = [as_datetime(o["created_at"]) for o in orders if o.get("created_at")]
    return {"order_history": [_order(o) for o in orders], "stats": Stats(
        order_count=len(orders),
        lifetime_value={cur: format(total, "f") for cur, total in sorted(totals.items())},
        lifetime_value_num={cur: float(total) for cur, total in sorted(totals.items())},
        first_order_at=min(times) if times else None,
        last_order_at=max(times) if times else None,
    )}


def marketing_section(contacts: list[Mapping], history_cap: int) -> dict:
    """The most recently changed HubSpot contact's preferences, with every contact's page views."""
    top = max(contacts, key=lambda m: (m.get("changed_at") or "", m["hubspot_id"]))
    views = sorted((v for m in contacts for v in m["browsing_history"]),
                   key=lambda v: (v.get("viewed_at") or "", v.get("url") or ""), reverse=True)
    categories: dict[str, dict] = {}
    for m in contacts:
        for entry in m["viewed_categories"]:
            merged = categories.setdefault(entry["category"], {"category": entry["category"], "views": 0,
                                                               "last_viewed_at": ""})
            merged["views"] += entry["views"]
            merged["last_viewed_at"] = max(merged["last_viewed_at"], entry.get("last_viewed_at") or "")
    props = top["properties"]
    return {"marketing_preferences": MarketingPreferences(
        hubspot_id=top["hubspot_id"], hubspot_ids=sorted(m["hubspot_id"] for m in contacts),
        email_opt_out=str(props.get("hs_email_optout", "false")).lower() == "true",
        properties={k: v for k, v in sorted(props.items()) if k not in ("merged_into", "merged_ids")},
        browsing_history=[PageView(url=v.get("url"), title=v.get("title"), category=v.get("category"),
                                   viewed_at=as_datetime(v.get("viewed_at"))) for v in views[:history_cap]],
        viewed_categories=[ViewedCategory(category=c["category"], views=c["views"],
                                          last_viewed_at=as_datetime(c["last_viewed_at"]))
                           for c in sorted(categories.values(), key=lambda c: (-c["views"], c["category"]))],
    ), "last_viewed_at": as_datetime(views[0].get("viewed_at")) if views else None}


def _name(live: Mapping[str, list[Mapping]]) -> str | None:
    """From the CRM contact, else the newest order, else HubSpot's properties."""
    pairs = []
    if live.get("crm"):
        top = max(live["crm"], key=lambda d: (_changed_at(d), d["crm_id"]))
        pairs.append((top.get("first_name"), top.get("last_name")))
    orders = sorted(live.get("orders", []), key=lambda o: (o.get("created_at") or "", o["order_id"].zfill(20)),
                    reverse=True)
    pairs += [(o.get("customer_firstname"), o.get("customer_lastname")) for o in orders]
    if live.get("marketing"):
        props = max(live["marketing"], key=lambda m: (m.get("changed_at") or "", m["hubspot_id"]))["properties"]
        pairs.append((props.get("firstname"), props.get("lastname")))
    return next((" ".join(p for p in pair if p) for pair in pairs if any(pair)), None)


def render(email: str, contributions: Iterable[Contribution],
           history_cap: int = DEFAULT_HISTORY_CAP) -> CustomerSV | None:
    """The `customer_sv` document for one email, or None when nothing is live."""
    contributions = sorted(contributions, key=lambda c: c.slot)
    live: dict[str, list[Mapping]] = defaultdict(list)
    for c in contributions:
        if c.live:
            live[c.section].append(c.data)
    if not live:
        return None
    doc = CustomerSV(_id=email, email=email)
    if live.get("crm"):
        doc["crm_info"] = crm_section(live["crm"])
    orders = orders_section(live.get("orders", []))
    if live.get("orders"):
        doc["order_history"] = orders["order_history"]
    marketing = marketing_section(live["marketing"], history_cap) if live.get("marketing") else {}
    if marketing:
        doc["marketing_preferences"] = marketing["marketing_preferences"]
    doc["name"] = _name(live)
    doc["stats"] = {**orders["stats"], "last_viewed_at": marketing.get("last_viewed_at")}
    doc["sources"] = sorted(live)
    changed = [d["changed_at"] for c in contributions if c.live for d in [c.data] if d.get("changed_at")]
    doc["updated_at"] = as_datetime(max(changed)) if changed else None
    doc["_rev"] = view_rev(contributions)
    return doc


# --- one customer's view, from one pane of contributions to the next ----------


@dataclass
class ViewState:
    """What the merge keeps for one customer: the newest contribution per entity, whether
    the view and its tombstone are stored, and a fingerprint of each section of the view."""

    email: str
    contributions: dict = field(default_factory=dict)
    exists: bool = False
    tombstoned: bool = False
    sections: dict = field(default_factory=dict)


def fingerprints(doc: Mapping | None) -> dict:
    """A key per section that changes with the section; never stored, so only this process compares them."""
    if doc is None:
        return {}
    return {name: _fingerprint(doc.get(name)) for name in DOCUMENT_SECTIONS}


def _fingerprint(section: Any) -> bytes | str:
    try:
        return orjson.dumps(section, option=orjson.OPT_SORT_KEYS, default=str)
    except TypeError:
        return json.dumps(section, sort_keys=True, default=str)


def retired_id(email: str) -> str:
    """A customer's key where no email may be kept: its tombstone's `_id`, its change feed key."""
    return hashlib.sha256(email.encode()).hexdigest()


@dataclass(frozen=True)
class ViewChange(Record):
    """A customer's view was written (`doc`) or removed (`doc` None) at revision `rev`."""

    email: str
    rev: int
    doc: dict | None
    sections: tuple[str, ...]
    contributions: tuple[Contribution, ...]


def merge_view(state: ViewState, incoming: Iterable[Contribution], history_cap: int = DEFAULT_HISTORY_CAP,
               complete: bool = False) -> tuple[ViewState, ViewChange | None]:
    """Fold a pane of contributions into a customer's view; None when nothing changed.

    `complete` (a rebuild) says the pane holds every entity that contributes
    now: any other the view still shows is retracted, and a view nothing
    asserts is removed.
    """
    incoming = list(incoming)
    if complete:
        given = {c.slot for c in incoming}
        incoming += [replace(c.retracted(), rev=(c.rev[0] + 1, c.rev[1]))
                     for c in state.contributions.values() if c.live and c.slot not in given]
    merged = newest([*state.contributions.values(), *incoming])
    orphan = complete and state.exists and not any(c.live for c in merged.values())
    if merged == state.contributions and not orphan:
        return state, None
    contributions = tuple(merged[k] for k in sorted(merged))
    doc = render(state.email, contributions, history_cap)
    prints = fingerprints(doc)
    changed = tuple(name for name in DOCUMENT_SECTIONS if prints.get(name) != state.sections.get(name))
    new = ViewState(state.email, merged, exists=doc is not None, tombstoned=state.tombstoned or doc is None,
                    sections=prints)
    return new, ViewChange(state.email, view_rev(contributions), doc, changed, contributions)
