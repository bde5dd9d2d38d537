"""Deterministic sample CDC in the real wire formats (docs/wire-formats.md).

The data has what real CDC has: partial updates, deletes and undeletes,
email changes, two contacts sharing an email, Debezium snapshots and
tombstones, HubSpot batches, merges and a privacy erasure, page views, and
repeated deliveries.
"""
from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timezone
from decimal import Decimal

from singleview.formats._common import encode_decimal, iso_utc

BASE_MS = 1_717_000_000_000
FIRST = ["Jane", "John", "Ada", "Alan", "Grace", "Linus", "Maria", "Omar", "Yuki", "Zoe"]
LAST = ["Doe", "Smith", "Lovelace", "Turing", "Hopper", "Rossi", "Khan", "Sato", "Novak", "Berg"]
CITIES = [("Springfield", "IL", "US"), ("Rome", "RM", "IT"), ("Berlin", "BE", "DE"), ("Osaka", "27", "JP")]
PRODUCTS = [("TS-RED-M", "Red Tee", "19.9900"), ("SH-RUN-42", "Runner 2", "89.5000"),
            ("BG-TOTE", "Canvas Tote", "24.0000"), ("HT-CAP", "Cap", "15.2500")]
PAGES = [("/category/shoes/runner-2", "Runner 2"), ("/category/shoes/trail-x", "Trail X"),
         ("/c/bags/tote", "Canvas Tote"), ("/category/tees/red", "Red Tee"), ("/c/hats/cap", "Cap"),
         ("/about", "About us"), ("/", "Shop")]


def decimal_bytes(amount: str, scale: int = 4) -> str:
    """Debezium DECIMAL: base64 of big-endian two's-complement unscaled bytes."""
    return encode_decimal(amount, scale)


def iso(ms: int) -> str:
    return iso_utc(datetime.fromtimestamp(ms / 1000, timezone.utc))


def dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


ORDER_SCHEMA = {"type": "struct", "name": "magento.magento.sales_order.Envelope", "fields": [
    {"type": "struct", "field": side, "optional": True, "fields": [
        {"type": "int32", "field": "entity_id"}, {"type": "string", "field": "increment_id"},
        {"type": "string", "field": "customer_email"}, {"type": "string", "field": "customer_firstname"},
        {"type": "string", "field": "customer_lastname"}, {"type": "string", "field": "status"},
        {"type": "string", "field": "state"},
        {"type": "bytes", "field": "grand_total", "name": "org.apache.kafka.connect.data.Decimal",
         "parameters": {"scale": "4", "connect.decimal.precision": "20"}},
        {"type": "bytes", "field": "subtotal", "name": "org.apache.kafka.connect.data.Decimal",
         "parameters": {"scale": "4", "connect.decimal.precision": "20"}},
        {"type": "string", "field": "order_currency_code"},
        {"type": "string", "field": "created_at", "name": "io.debezium.time.ZonedTimestamp"},
        {"type": "int64", "field": "updated_at", "name": "io.debezium.time.Timestamp"}]}
    for side in ("before", "after")] + [
    {"type": "struct", "field": "source", "fields": []}, {"type": "string", "field": "op"},
    {"type": "int64", "field": "ts_ms"}]}


class _Clock:
    def __init__(self):
        self.ms = BASE_MS

    def tick(self, rng: random.Random) -> int:
        self.ms += rng.randint(1, 5000)
        return self.ms


def generate(customers: int, seed: int) -> dict[str, list[bytes]]:
    """source -> messages (one JSON message, or for HubSpot a JSON array, each)."""
    rng = random.Random(seed)
    clock = _Clock()
    out: dict[str, list[bytes]] = {s: [] for s in ("crm", "orders", "order_items", "marketing", "pageviews")}
    commit = [10_000_000_000]
    binlog = [4]
    event_id = [0]
    item_id = [5000]
    order_id = [1000]
    hubspot_ids = []

    def emit(source: str, message: bytes) -> None:
        out[source].append(message)
        if rng.random() < 0.02:
            out[source].append(message)

    def salesforce(ids, change, fields, changed=(), nulled=()):
        """CREATE and UPDATE stamp LastModifiedDate (and CREATE CreatedDate) with the commit time."""
        commit[0] += 1
        ts = clock.tick(rng)
        if change == "CREATE":
            fields = dict(fields, LastModifiedDate=iso(ts), CreatedDate=iso(ts))
        elif change == "UPDATE":
            fields, changed = dict(fields, LastModifiedDate=iso(ts)), [*changed, "LastModifiedDate"]
        payload = {"ChangeEventHeader": {
            "entityName": "Contact", "recordIds": ids, "changeType": change,
            "changeOrigin": "com/salesforce/api/rest/60.0", "transactionKey": f"tx-{commit[0]}",
            "sequenceNumber": 1, "commitTimestamp": ts, "commitNumber": commit[0],
            "commitUser": "005000000000001", "changedFields": list(changed), "nulledFields": list(nulled),
            "diffFields": []}, **fields}
        emit("crm", dumps({"schema": "0z-contact", "event": {"replayId": commit[0]}, "payload": payload}))

    def debezium(table, op, before, after, wrapped):
        binlog[0] += 1
        ts = clock.tick(rng)
        payload = {"before": before, "after": after, "op": op, "ts_ms": ts + 7,
                   "source": {"version": "2.6.0.Final", "connector": "mysql", "name": "magento", "ts_ms": ts,
                              "snapshot": "true" if op == "r" else "false", "db": "magento", "table": table,
                              "server_id": 1, "file": "mysql-bin.000003", "pos": binlog[0] * 100, "row": 0}}
        emit("orders" if table == "sales_order" else "order_items",
             dumps({"schema": ORDER_SCHEMA, "payload": payload} if wrapped else payload))

    def hubspot(events):
        batch = []
        for kind, object_id, extra in events:
            event_id[0] += 1
            batch.append({"eventId": event_id[0], "subscriptionId": 42, "portalId": 62515, "appId": 1160452,
                          "occurredAt": clock.tick(rng), "subscriptionType": kind, "attemptNumber": 0,
                          "objectId": int(object_id), "changeSource": "CRM", **extra})
        emit("marketing", dumps(batch))

    for n in range(customers):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first.lower()}.{last.lower()}{n}@example.com"
        shown = email if rng.random() < 0.7 else f"  {first}.{last}{n}@Example.com "
        contact = f"003{n:012d}"
        city, state, country = rng.choice(CITIES)
        salesforce([contact], "CREATE", {
            "Name": {"Salutation": None, "FirstName": first, "LastName": last}, "Email": shown,
            "Phone": f"+1 555 {rng.randint(1000, 9999)}",
            "MailingAddress": {"Street": f"{rng.randint(1, 99)} Main St", "City": city, "State": state,
                               "PostalCode": "00100", "Country": country}})
        for _ in range(rng.randint(0, 3)):
            change = rng.random()
            if change < 0.6:
                salesforce([contact], "UPDATE", {"Phone": f"+1 555 {rng.randint(1000, 9999)}"}, ["Phone"])
            elif change < 0.9:
                city, state, _ = rng.choice(CITIES)
                salesforce([contact], "UPDATE", {"MailingAddress": {"City": city, "State": state}},
                           ["MailingAddress.City", "MailingAddress.State"])
            else:
                salesforce([contact], "UPDATE", {"Phone": None}, ["Phone"], ["Phone"])
        if rng.random() < 0.05:
            email = f"{first.lower()}.{last.lower()}{n}@newmail.example.com"
            salesforce([contact], "UPDATE", {"Email": email}, ["Email"])
        if rng.random() < 0.03 or n % 50 == 7:
            salesforce([contact], "DELETE", {})
            if rng.random() < 0.5 or n % 50 == 7:
                salesforce([contact], "UNDELETE", {})
        if n % 25 == 3:
            twin = f"003T{n:011d}"
            salesforce([twin], "CREATE", {"Name": {"FirstName": first, "LastName": last}, "Email": email})
            salesforce([contact, twin], "UPDATE", {"Phone": "+1 555 0000"}, ["Phone"])

        for k in range(rng.randint(1 if n % 50 == 9 else 0, 4)):
            order_id[0] += 1
            order = order_id[0]
            currency = "USD" if rng.random() < 0.8 else "EUR"
            lines = [rng.choice(PRODUCTS) for _ in range(rng.randint(1, 3))]
            totals = [(sku, name, price, rng.randint(1, 3)) for sku, name, price in lines]
            grand = sum((Decimal(p) * q for _, _, p, q in totals), Decimal(0))
            created = clock.tick(rng)
            after = {"entity_id": order, "increment_id": f"{order:09d}", "customer_email": shown,
                     "customer_firstname": first, "customer_lastname": last, "status": "pending", "state": "new",
                     "grand_total": decimal_bytes(str(grand)), "subtotal": decimal_bytes(str(grand)),
                     "order_currency_code": currency, "created_at": iso(created)[:-5] + "Z", "updated_at": created}
            debezium("sales_order", "r" if rng.random() < 0.2 else "c", None, after, True)
            for sku, name, price, qty in totals:
                item_id[0] += 1
                item = {"item_id": item_id[0], "order_id": order, "sku": sku, "name": name,
                        "qty_ordered": decimal_bytes(str(qty)), "price": decimal_bytes(price),
                        "row_total": decimal_bytes(str(Decimal(price) * qty)), "created_at": created}
                debezium("sales_order_item", "c", None, item, False)
                if rng.random() < 0.1:
                    changed = dict(item, qty_ordered=decimal_bytes(str(qty + 1)),
                                   row_total=decimal_bytes(str(Decimal(price) * (qty + 1))))
                    debezium("sales_order_item", "u", item, changed, False)
            for status, state in (("processing", "processing"), ("complete", "complete")):
                if rng.random() >= 0.7:
                    break
                before, after = after, dict(after, status=status, state=state, updated_at=clock.tick(rng))
                debezium("sales_order", "u", before, after, True)
            if rng.random() < 0.03 or (n % 50 == 9 and k == 0):
                debezium("sales_order", "d", after, None, True)
                out["orders"].append(b"null")

        hubspot_id = str(173595200000 + n)
        hubspot_ids.append(hubspot_id)
        events = [("contact.creation", hubspot_id, {})]
        for name, value in (("email", shown), ("firstname", first), ("lastname", last),
                            ("hs_email_optout", rng.choice(["true", "false", "false"])),
                            ("lifecyclestage", rng.choice(["lead", "customer"]))):
            events.append(("contact.propertyChange", hubspot_id, {"propertyName": name, "propertyValue": value}))
        while events:
            size = rng.randint(1, 5)
            hubspot(events[:size])
            events = events[size:]
        if rng.random() < 0.02 or n % 50 == 8:
            hubspot([("contact.deletion", hubspot_id, {})])
            if rng.random() < 0.5 or n % 50 == 8:
                hubspot([("contact.restore", hubspot_id, {})])
        for _ in range(rng.randint(0, 15)):
            path, title = rng.choice(PAGES)
            emit("pageviews", dumps({
                "objectType": "CONTACT", "objectId": hubspot_id, "eventType": "e_visited_page",
                "occurredAt": iso(clock.tick(rng)), "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "properties": {"hs_url": f"https://shop.example.com{path}", "hs_title": title,
                               "hs_referrer": "https://www.example.org/", "hs_browser": "chrome"}}))

    merges = [(0, 1)] * (len(hubspot_ids) >= 4) + [(4, 5)] * (len(hubspot_ids) >= 50)
    for primary, merged in ((hubspot_ids[a], hubspot_ids[b]) for a, b in merges):
        hubspot([("contact.merge", primary, {"primaryObjectId": int(primary),
                                             "mergedObjectIds": [int(primary), int(merged)],
                                             "newObjectId": int(primary), "numberOfPropertiesMoved": 3})])
    if len(hubspot_ids) >= 10:
        hubspot([("contact.privacyDeletion", hubspot_ids[2], {})])
    return out


DEBEZIUM_KEYS = {"orders": "entity_id", "order_items": "item_id"}


def kafka_records(source: str, messages: list[bytes]) -> list[tuple[bytes | None, bytes | None]]:
    """Generated messages laid out as on Kafka: Debezium puts the row's primary
    key in the record key (wrapped like the value) and follows a delete with a
    tombstone, the same key and a null value; other sources are unkeyed."""
    column = DEBEZIUM_KEYS.get(source)
    if column is None:
        return [(None, message) for message in messages]
    records, key = [], None
    for message in messages:
        document = json.loads(message)
        if document is None:
            records.append((key, None))
            continue
        wrapped = "op" not in document
        payload = document["payload"] if wrapped else document
        row = payload["after"] or payload["before"]
        struct = {column: row[column]}
        key = dumps({"schema": {"type": "struct", "optional": False, "name": f"magento.magento.{source}.Key",
                                "fields": [{"type": "int32", "optional": False, "field": column}]},
                     "payload": struct} if wrapped else struct)
        records.append((key, message))
    return records
