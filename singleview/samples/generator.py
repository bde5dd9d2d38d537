"""Deterministic sample CDC in the real wire formats (docs/wire-formats.md).

The data has what real CDC has: partial updates, deletes and undeletes,
email changes, two contacts sharing an email, Debezium snapshots and
tombstones, HubSpot batches, merges and a privacy erasure, page views, and
repeated deliveries.
"""
from __future__ import annotations

import functools
import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterator

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
HUBSPOT_BASE = 173595200000
SOURCES = ("crm", "orders", "order_items", "marketing", "pageviews")


def hubspot_id_of(n: int) -> str:
    return str(HUBSPOT_BASE + n)


@functools.lru_cache(maxsize=4096)
def decimal_bytes(amount: str, scale: int = 4) -> str:
    """Debezium DECIMAL: base64 of big-endian two's-complement unscaled bytes (prices repeat: cached)."""
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

# What dumps({"schema": ORDER_SCHEMA, ...}) writes first, encoded once rather than per order.
ORDER_SCHEMA_JSON = dumps(ORDER_SCHEMA)


class _Clock:
    def __init__(self):
        self.ms = BASE_MS

    def tick(self, rng: random.Random) -> int:
        self.ms += rng.randint(1, 5000)
        return self.ms


@dataclass
class Sequences:
    """The numbers each system of record stamps its changes with, each counting up on its own."""

    commit: int = 10_000_000_000
    binlog: int = 4
    event_id: int = 0
    item_id: int = 5000
    order_id: int = 1000


class _Systems:
    """Salesforce, Magento and HubSpot writing their changes, one customer at a time.

    Every choice comes from one seeded `random.Random`, drawn in a fixed order,
    so the same (customers, seed) always gives the same bytes (pinned in
    tests/test_samples.py).
    """

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.clock = _Clock()
        self.seq = Sequences()
        self.sent: list[tuple[str, bytes]] = []

    def drain(self) -> list[tuple[str, bytes]]:
        sent, self.sent = self.sent, []
        return sent

    def emit(self, source: str, message: bytes) -> None:
        """Send a message; now and then it is delivered twice, as at-least-once transports do."""
        self.sent.append((source, message))
        if self.rng.random() < 0.02:
            self.sent.append((source, message))

    def salesforce(self, ids, change, fields, changed=(), nulled=()):
        """CREATE and UPDATE stamp LastModifiedDate (and CREATE CreatedDate) with the commit time."""
        self.seq.commit += 1
        commit, ts = self.seq.commit, self.clock.tick(self.rng)
        if change == "CREATE":
            fields = dict(fields, LastModifiedDate=iso(ts), CreatedDate=iso(ts))
        elif change == "UPDATE":
            fields, changed = dict(fields, LastModifiedDate=iso(ts)), [*changed, "LastModifiedDate"]
        payload = {"ChangeEventHeader": {
            "entityName": "Contact", "recordIds": ids, "changeType": change,
            "changeOrigin": "com/salesforce/api/rest/60.0", "transactionKey": f"tx-{commit}",
            "sequenceNumber": 1, "commitTimestamp": ts, "commitNumber": commit,
            "commitUser": "005000000000001", "changedFields": list(changed), "nulledFields": list(nulled),
            "diffFields": []}, **fields}
        self.emit("crm", dumps({"schema": "0z-contact", "event": {"replayId": commit}, "payload": payload}))

    def debezium(self, table, op, before, after, wrapped):
        self.seq.binlog += 1
        ts = self.clock.tick(self.rng)
        payload = {"before": before, "after": after, "op": op, "ts_ms": ts + 7,
                   "source": {"version": "2.6.0.Final", "connector": "mysql", "name": "magento", "ts_ms": ts,
                              "snapshot": "true" if op == "r" else "false", "db": "magento", "table": table,
                              "server_id": 1, "file": "mysql-bin.000003", "pos": self.seq.binlog * 100,
                              "row": 0}}
        self.emit("orders" if table == "sales_order" else "order_items",
                  b'{"schema":' + ORDER_SCHEMA_JSON + b',"payload":' + dumps(payload) + b"}" if wrapped
                  else dumps(payload))

    def hubspot(self, events):
        batch = []
        for kind, object_id, extra in events:
            self.seq.event_id += 1
            batch.append({"eventId": self.seq.event_id, "subscriptionId": 42, "portalId": 62515,
                          "appId": 1160452, "occurredAt": self.clock.tick(self.rng), "subscriptionType": kind,
                          "attemptNumber": 0, "objectId": int(object_id), "changeSource": "CRM", **extra})
        self.emit("marketing", dumps(batch))

    def customer(self, n: int) -> None:
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first.lower()}.{last.lower()}{n}@example.com"
        shown = email if rng.random() < 0.7 else f"  {first}.{last}{n}@Example.com "
        self.contact(n, first, last, email, shown)
        for k in range(rng.randint(1 if n % 50 == 9 else 0, 4)):
            self.order(n, k, first, last, shown)
        self.marketing(n, first, last, shown)
        self.page_views(hubspot_id_of(n))

    def contact(self, n: int, first: str, last: str, email: str, shown: str) -> None:
        """A Salesforce contact: created, edited, sometimes re-addressed, deleted, or given a twin."""
        rng, contact = self.rng, f"003{n:012d}"
        city, state, country = rng.choice(CITIES)
        self.salesforce([contact], "CREATE", {
            "Name": {"Salutation": None, "FirstName": first, "LastName": last}, "Email": shown,
            "Phone": f"+1 555 {rng.randint(1000, 9999)}",
            "MailingAddress": {"Street": f"{rng.randint(1, 99)} Main St", "City": city, "State": state,
                               "PostalCode": "00100", "Country": country}})
        for _ in range(rng.randint(0, 3)):
            self.contact_edit(contact)
        if rng.random() < 0.05:
            email = f"{first.lower()}.{last.lower()}{n}@newmail.example.com"
            self.salesforce([contact], "UPDATE", {"Email": email}, ["Email"])
        if rng.random() < 0.03 or n % 50 == 7:
            self.salesforce([contact], "DELETE", {})
            if rng.random() < 0.5 or n % 50 == 7:
                self.salesforce([contact], "UNDELETE", {})
        if n % 25 == 3:
            twin = f"003T{n:011d}"
            self.salesforce([twin], "CREATE", {"Name": {"FirstName": first, "LastName": last}, "Email": email})
            self.salesforce([contact, twin], "UPDATE", {"Phone": "+1 555 0000"}, ["Phone"])

    def contact_edit(self, contact: str) -> None:
        change = self.rng.random()
        if change < 0.6:
            self.salesforce([contact], "UPDATE", {"Phone": f"+1 555 {self.rng.randint(1000, 9999)}"}, ["Phone"])
        elif change < 0.9:
            city, state, _ = self.rng.choice(CITIES)
            self.salesforce([contact], "UPDATE", {"MailingAddress": {"City": city, "State": state}},
                            ["MailingAddress.City", "MailingAddress.State"])
        else:
            self.salesforce([contact], "UPDATE", {"Phone": None}, ["Phone"], ["Phone"])

    def order(self, n: int, k: int, first: str, last: str, shown: str) -> None:
        """A Magento order with its items, moving on through its states; a few are deleted."""
        rng = self.rng
        self.seq.order_id += 1
        order = self.seq.order_id
        currency = "USD" if rng.random() < 0.8 else "EUR"
        lines = [rng.choice(PRODUCTS) for _ in range(rng.randint(1, 3))]
        totals = [(sku, name, price, rng.randint(1, 3)) for sku, name, price in lines]
        grand = sum((Decimal(p) * q for _, _, p, q in totals), Decimal(0))
        created = self.clock.tick(rng)
        after = {"entity_id": order, "increment_id": f"{order:09d}", "customer_email": shown,
                 "customer_firstname": first, "customer_lastname": last, "status": "pending", "state": "new",
                 "grand_total": decimal_bytes(str(grand)), "subtotal": decimal_bytes(str(grand)),
                 "order_currency_code": currency, "created_at": iso(created)[:-5] + "Z", "updated_at": created}
        self.debezium("sales_order", "r" if rng.random() < 0.2 else "c", None, after, True)
        for sku, name, price, qty in totals:
            self.order_item(order, created, sku, name, price, qty)
        for status, state in (("processing", "processing"), ("complete", "complete")):
            if rng.random() >= 0.7:
                break
            before, after = after, dict(after, status=status, state=state, updated_at=self.clock.tick(rng))
            self.debezium("sales_order", "u", before, after, True)
        if rng.random() < 0.03 or (n % 50 == 9 and k == 0):
            self.debezium("sales_order", "d", after, None, True)
            self.sent.append(("orders", b"null"))

    def order_item(self, order: int, created: int, sku: str, name: str, price: str, qty: int) -> None:
        self.seq.item_id += 1
        item = {"item_id": self.seq.item_id, "order_id": order, "sku": sku, "name": name,
                "qty_ordered": decimal_bytes(str(qty)), "price": decimal_bytes(price),
                "row_total": decimal_bytes(str(Decimal(price) * qty)), "created_at": created}
        self.debezium("sales_order_item", "c", None, item, False)
        if self.rng.random() < 0.1:
            changed = dict(item, qty_ordered=decimal_bytes(str(qty + 1)),
                           row_total=decimal_bytes(str(Decimal(price) * (qty + 1))))
            self.debezium("sales_order_item", "u", item, changed, False)

    def marketing(self, n: int, first: str, last: str, shown: str) -> None:
        """A HubSpot contact's creation and properties, in webhook batches of 1-5; a few deleted."""
        rng, hubspot_id = self.rng, hubspot_id_of(n)
        events = [("contact.creation", hubspot_id, {})]
        for name, value in (("email", shown), ("firstname", first), ("lastname", last),
                            ("hs_email_optout", rng.choice(["true", "false", "false"])),
                            ("lifecyclestage", rng.choice(["lead", "customer"]))):
            events.append(("contact.propertyChange", hubspot_id, {"propertyName": name, "propertyValue": value}))
        while events:
            size = rng.randint(1, 5)
            self.hubspot(events[:size])
            events = events[size:]
        if rng.random() < 0.02 or n % 50 == 8:
            self.hubspot([("contact.deletion", hubspot_id, {})])
            if rng.random() < 0.5 or n % 50 == 8:
                self.hubspot([("contact.restore", hubspot_id, {})])

    def page_views(self, hubspot_id: str) -> None:
        rng = self.rng
        for _ in range(rng.randint(0, 15)):
            path, title = rng.choice(PAGES)
            self.emit("pageviews", dumps({
                "objectType": "CONTACT", "objectId": hubspot_id, "eventType": "e_visited_page",
                "occurredAt": iso(self.clock.tick(rng)), "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "properties": {"hs_url": f"https://shop.example.com{path}", "hs_title": title,
                               "hs_referrer": "https://www.example.org/", "hs_browser": "chrome"}}))

    def finish(self, customers: int) -> None:
        """After everyone: two HubSpot merges and a privacy erasure, where there are contacts enough."""
        merges = [(0, 1)] * (customers >= 4) + [(4, 5)] * (customers >= 50)
        for primary, merged in ((hubspot_id_of(a), hubspot_id_of(b)) for a, b in merges):
            self.hubspot([("contact.merge", primary, {"primaryObjectId": int(primary),
                                                      "mergedObjectIds": [int(primary), int(merged)],
                                                      "newObjectId": int(primary), "numberOfPropertiesMoved": 3})])
        if customers >= 10:
            self.hubspot([("contact.privacyDeletion", hubspot_id_of(2), {})])


def stream(customers: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """(source, message) in the order the systems send them, one customer at a time:
    what `generate` returns, without holding it all in memory."""
    systems = _Systems(seed)
    for n in range(customers):
        systems.customer(n)
        yield from systems.drain()
    systems.finish(customers)
    yield from systems.drain()


def generate(customers: int, seed: int) -> dict[str, list[bytes]]:
    """source -> messages (one JSON message, or for HubSpot a JSON array, each)."""
    out: dict[str, list[bytes]] = {s: [] for s in SOURCES}
    for source, message in stream(customers, seed):
        out[source].append(message)
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
