"""Contributions from projections, and the single-view document (pure).

A contribution is recomputed from the projection it comes from every time
(never accumulated), so a retried bundle cannot count twice; the document
is a function of its contributions only, with a total order on every list,
so the same events always give the same document.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

from singleview.formats._common import iso_utc
from singleview.merge import Contribution, entity_email, is_alive

DEFAULT_HISTORY_CAP = 100
CANCELLED = {"canceled", "cancelled", "closed"}


def version_time(version: str) -> str | None:
    """Every format's version starts with epoch millis: the change time."""
    head = version.split("|", 1)[0].split("#", 1)[0]
    if not head.isdigit():
        return None
    return iso_utc(datetime.fromtimestamp(int(head) / 1000, timezone.utc))


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


def _live_children(children: Mapping[str, Mapping] | None) -> list[tuple[str, Mapping]]:
    return sorted((cid, e["fields"]) for cid, e in (children or {}).items() if is_alive(e))


def crm_data(contact_id: str, contact: Mapping) -> dict:
    return {"crm_id": contact_id, **contact["fields"], "changed_at": version_time(contact["version"])}


def order_data(order_id: str, order: Mapping, items_doc: Mapping | None) -> dict:
    items = [{"item_id": item_id, **fields} for item_id, fields in _live_children((items_doc or {}).get("items"))]
    times = [order["version"]] + [e["version"] for e in ((items_doc or {}).get("items") or {}).values()]
    return {"order_id": order_id, **order["fields"], "items": items, "changed_at": version_time(max(times))}


def marketing_data(contact_id: str, contact: Mapping, views_docs: list[Mapping], cap: int) -> dict:
    """A contact's page views, with those of the contacts merged into it."""
    every = {vid: e for doc in views_docs for vid, e in (doc.get("views") or {}).items()}
    views = [fields for _, fields in _live_children(every)]
    views.sort(key=lambda v: (v.get("viewed_at") or "", v.get("url") or ""), reverse=True)
    categories: dict[str, dict] = {}
    for view in views:
        name = view.get("category")
        if not name:
            continue
        entry = categories.setdefault(name, {"category": name, "views": 0, "last_viewed_at": view.get("viewed_at")})
        entry["views"] += 1
        entry["last_viewed_at"] = max(entry["last_viewed_at"] or "", view.get("viewed_at") or "") or None
    times = [contact["version"]] + [e["version"] for e in every.values()]
    return {"hubspot_id": contact_id, "properties": dict(contact["fields"]),
            "browsing_history": views[:cap], "viewed_categories": list(categories.values()),
            "changed_at": version_time(max(times))}


def contribution(source: str, entity_id: str, parent: Mapping | None, children: list[Mapping],
                 old_email: str | None, history_cap: int = DEFAULT_HISTORY_CAP) -> list[Contribution]:
    """The contributions one parent entity (with its child documents) makes now.

    An assertion on its current email and, when the email changed, a
    retraction from the one it had before.
    """
    email = entity_email(source, parent)
    rev = ((parent or {}).get("_rev", 0), sum(child.get("_rev", 0) for child in children))
    out = []
    if old_email and old_email != email:
        out.append(Contribution(source, entity_id, old_email, rev, False))
    if email:
        if source == "crm":
            data = crm_data(entity_id, parent)
        elif source == "orders":
            data = order_data(entity_id, parent, children[0] if children else None)
        else:
            data = marketing_data(entity_id, parent, children, history_cap)
        out.append(Contribution(source, entity_id, email, rev, True, data))
    return out


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def _dates(record: Mapping, *names: str) -> dict:
    return {name: as_datetime(record.get(name)) for name in names}


def render(email: str, contributions: Iterable[Contribution], history_cap: int = DEFAULT_HISTORY_CAP) -> dict | None:
    """The `customer_sv` document for one email, or None when nothing is live."""
    contributions = sorted(contributions, key=lambda c: c.key)
    live = defaultdict(list)
    for c in contributions:
        if c.live:
            live[c.source].append(c.data)
    if not live:
        return None
    doc: dict[str, Any] = {"_id": email, "email": email}
    names = []

    contacts = sorted(live.get("crm", []), key=lambda d: (d.get("last_modified_date") or d.get("changed_at") or "", d["crm_id"]))
    if contacts:
        top = contacts[-1]
        doc["crm_info"] = {
            "crm_id": top["crm_id"], "crm_ids": sorted(d["crm_id"] for d in contacts),
            "salutation": top.get("salutation"), "first_name": top.get("first_name"),
            "last_name": top.get("last_name"), "phone": top.get("phone"),
            "mailing_address": top.get("mailing_address"),
            "last_modified_at": as_datetime(top.get("last_modified_date") or top.get("changed_at")),
        }
        names.append((top.get("first_name"), top.get("last_name")))

    orders = sorted(live.get("orders", []), key=lambda o: (o.get("created_at") or "", o["order_id"].zfill(20)), reverse=True)
    history, totals, order_times = [], defaultdict(Decimal), []
    for order in orders:
        history.append({
            "order_id": order["order_id"], "increment_id": order.get("increment_id"),
            "status": order.get("status"), "state": order.get("state"),
            "grand_total": order.get("grand_total"), "currency": order.get("order_currency_code"),
            **_dates(order, "created_at", "updated_at"),
            "items": [{"item_id": i["item_id"], "sku": i.get("sku"), "name": i.get("name"),
                       "qty": i.get("qty_ordered"), "price": i.get("price"), "row_total": i.get("row_total")}
                      for i in sorted(order["items"], key=lambda i: i["item_id"].zfill(20))],
        })
        amount = _decimal(order.get("grand_total"))
        if amount is not None and (order.get("status") or "").lower() not in CANCELLED:
            totals[order.get("order_currency_code") or "XXX"] += amount
        if order.get("created_at"):
            order_times.append(as_datetime(order["created_at"]))
        names.append((order.get("customer_firstname"), order.get("customer_lastname")))
    if history:
        doc["order_history"] = history

    marketing = sorted(live.get("marketing", []), key=lambda m: (m.get("changed_at") or "", m["hubspot_id"]))
    last_viewed = None
    if marketing:
        top = marketing[-1]
        views = sorted((v for m in marketing for v in m["browsing_history"]),
                       key=lambda v: (v.get("viewed_at") or "", v.get("url") or ""), reverse=True)
        categories: dict[str, dict] = {}
        for m in marketing:
            for entry in m["viewed_categories"]:
                merged = categories.setdefault(entry["category"], {"category": entry["category"], "views": 0, "last_viewed_at": ""})
                merged["views"] += entry["views"]
                merged["last_viewed_at"] = max(merged["last_viewed_at"], entry.get("last_viewed_at") or "")
        props = top["properties"]
        doc["marketing_preferences"] = {
            "hubspot_id": top["hubspot_id"], "hubspot_ids": sorted(m["hubspot_id"] for m in marketing),
            "email_opt_out": str(props.get("hs_email_optout", "false")).lower() == "true",
            "properties": {k: v for k, v in sorted(props.items()) if k not in ("merged_into", "merged_ids")},
            "browsing_history": [{"url": v.get("url"), "title": v.get("title"), "category": v.get("category"),
                                  "viewed_at": as_datetime(v.get("viewed_at"))} for v in views[:history_cap]],
            "viewed_categories": [{"category": c["category"], "views": c["views"],
                                   "last_viewed_at": as_datetime(c["last_viewed_at"])}
                                  for c in sorted(categories.values(), key=lambda c: (-c["views"], c["category"]))],
        }
        last_viewed = as_datetime(views[0].get("viewed_at")) if views else None
        names.append((props.get("firstname"), props.get("lastname")))

    doc["name"] = next((" ".join(p for p in pair if p) for pair in names if any(pair)), None)
    doc["stats"] = {
        "order_count": len(history),
        "lifetime_value": {cur: format(total, "f") for cur, total in sorted(totals.items())},
        "lifetime_value_num": {cur: float(total) for cur, total in sorted(totals.items())},
        "first_order_at": min(order_times) if order_times else None,
        "last_order_at": max(order_times) if order_times else None,
        "last_viewed_at": last_viewed,
    }
    doc["sources"] = sorted(live)
    changed = [d.get("changed_at") for c in contributions if c.live for d in [c.data] if d.get("changed_at")]
    doc["updated_at"] = as_datetime(max(changed)) if changed else None
    doc["_meta"] = {"contributions": [c.to_doc() for c in contributions]}
    return doc
