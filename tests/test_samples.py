"""The sample generator: deterministic, in the real wire formats, decodable."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter, defaultdict
from decimal import Decimal

import fastavro

from singleview.formats import DecoderConfig, decode
from singleview.io.files import split_line
from singleview.samples import decimal_bytes, generate
from singleview.samples.__main__ import main


def test_same_seed_same_data_other_seed_other_data():
    assert generate(20, seed=5) == generate(20, seed=5)
    assert generate(20, seed=5) != generate(20, seed=6)


def test_volume_scales_with_customers():
    small, large = (sum(map(len, generate(n, 1).values())) for n in (20, 200))
    assert 8 * small < large < 12 * small


def test_every_generated_message_decodes():
    """No dead letters in generated data: the generator speaks the decoders' formats."""
    kinds = set()
    for source, lines in generate(60, seed=2).items():
        for line in lines:
            for message in split_line(source, line):
                for event in decode(message, DecoderConfig()):
                    kinds.add((source, event.op))
    assert {("crm", "upsert"), ("crm", "delete"), ("orders", "upsert"), ("orders", "delete"),
            ("order_items", "upsert"), ("marketing", "upsert"), ("marketing", "merge"),
            ("marketing", "erase"), ("pageviews", "upsert")} <= kinds


def amount(value: str, scale: int = 4) -> Decimal:
    """Decode a Debezium DECIMAL here, independently of the project's decoder."""
    return Decimal(int.from_bytes(base64.b64decode(value), "big", signed=True)).scaleb(-scale)


def test_decimal_bytes_round_trip():
    for value in ("0", "129.9900", "-5.0001", "99999999.9999", "0.0128", "-128"):
        assert amount(decimal_bytes(value)) == Decimal(value)


ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def without_repeats(lines: list[bytes]) -> list[bytes]:
    """The lines less the repeated deliveries, which the generator writes next to the original."""
    return [line for i, line in enumerate(lines) if i == 0 or line != lines[i - 1]]


def test_every_line_has_the_documented_shape():
    """The shapes of docs/wire-formats.md, checked without the project's decoders."""
    generated = generate(60, seed=8)
    changes, ops, kinds = Counter(), Counter(), Counter()
    for line in generated["crm"]:
        message = json.loads(line)
        header = message["payload"]["ChangeEventHeader"]
        assert header["entityName"] == "Contact" and header["recordIds"]
        changes[header["changeType"]] += 1
        if header["changeType"] == "UPDATE":
            assert "Name" not in message["payload"] and "LastModifiedDate" in header["changedFields"]
        if header["changeType"] == "CREATE":
            assert {"Name", "Email", "LastModifiedDate"} <= set(message["payload"])
    assert set(changes) == {"CREATE", "UPDATE", "DELETE", "UNDELETE"}
    assert any(len(json.loads(line)["payload"]["ChangeEventHeader"]["recordIds"]) == 2
               for line in generated["crm"])
    for line in generated["orders"]:
        message = json.loads(line)
        if message is None:
            continue
        assert {"schema", "payload"} == set(message)
        ops[message["payload"]["op"]] += 1
        assert message["payload"]["source"]["table"] == "sales_order"
    assert set(ops) == {"r", "c", "u", "d"}
    for line in generated["order_items"]:
        message = json.loads(line)
        assert "schema" not in message and message["source"]["table"] == "sales_order_item"
        assert message["op"] in ("c", "u") and isinstance(message["after"]["created_at"], int)
    for line in without_repeats(generated["marketing"]):
        batch = json.loads(line)
        assert isinstance(batch, list) and 1 <= len(batch) <= 5
        for event in batch:
            kinds[event["subscriptionType"]] += 1
            assert isinstance(event["occurredAt"], int)
            if event["subscriptionType"] == "contact.propertyChange":
                assert isinstance(event["propertyValue"], str)
    assert kinds["contact.merge"] == 2 and kinds["contact.privacyDeletion"] == 1
    assert kinds["contact.deletion"] and kinds["contact.restore"]
    assert kinds["contact.creation"] == 60
    for line in generated["pageviews"]:
        view = json.loads(line)
        assert view["eventType"] == "e_visited_page" and ISO_MS.match(view["occurredAt"])
        assert UUID.match(view["id"]) and view["properties"]["hs_url"].startswith("https://shop.example.com/")


def test_versions_increase_and_some_deliveries_repeat():
    generated = generate(200, seed=3)
    crm = [json.loads(line)["payload"]["ChangeEventHeader"] for line in without_repeats(generated["crm"])]
    assert [h["commitNumber"] for h in crm] == sorted({h["commitNumber"] for h in crm})
    assert [h["commitTimestamp"] for h in crm] == sorted({h["commitTimestamp"] for h in crm})
    event_ids = [e["eventId"] for line in without_repeats(generated["marketing"]) for e in json.loads(line)]
    assert event_ids == sorted(set(event_ids))
    for source, lines in generated.items():
        repeats = sum(1 for a, b in zip(lines, lines[1:]) if a == b and a != b"null")
        assert 0 < repeats < 0.05 * len(lines), source


def test_tombstone_follows_each_order_delete():
    lines = generate(200, seed=3)["orders"]
    deletes = [i for i, line in enumerate(lines) if line != b"null" and json.loads(line)["payload"]["op"] == "d"]
    assert deletes and all(b"null" in lines[i + 1:i + 3] for i in deletes)


def test_order_amounts_decode_to_the_sum_of_their_items():
    generated = generate(80, seed=4)
    item_totals = defaultdict(Decimal)
    for line in without_repeats(generated["order_items"]):
        message = json.loads(line)
        item = message["after"]
        assert amount(item["row_total"]) == amount(item["price"]) * amount(item["qty_ordered"])
        if message["op"] == "c":
            item_totals[item["order_id"]] += amount(item["row_total"])
    currencies = Counter()
    for line in generated["orders"]:
        message = json.loads(line)
        if message is None or message["payload"]["op"] not in ("c", "r"):
            continue
        order = message["payload"]["after"]
        assert amount(order["grand_total"]) == amount(order["subtotal"]) == item_totals[order["entity_id"]] > 0
        currencies[order["order_currency_code"]] += 1
    assert set(currencies) == {"USD", "EUR"} and currencies["USD"] > currencies["EUR"]


def test_cli_writes_jsonl_and_avro_with_the_same_messages(tmp_path, capsys):
    assert main(["--customers", "15", "--out", str(tmp_path / "j"), "--seed", "3"]) == 0
    assert main(["--customers", "15", "--out", str(tmp_path / "a"), "--seed", "3", "--format", "avro"]) == 0
    assert "total=" in capsys.readouterr().out
    for source in ("crm", "orders", "order_items", "marketing", "pageviews"):
        lines = (tmp_path / "j" / f"{source}.jsonl").read_bytes().splitlines()
        assert lines and all(json.loads(line) is not None or line == b"null" for line in lines)
        with open(tmp_path / "a" / f"{source}.avro", "rb") as handle:
            records = list(fastavro.reader(handle))
        assert [r["message"] for r in records] == lines
        assert all(r["attributes"]["source"] == source for r in records)


def test_publish_order_interleaves_the_sources_and_keeps_each_order():
    from singleview.samples.__main__ import interleave
    queue = interleave({"crm": [b"c1", b"c2"], "orders": [b"o1", b"o2", b"o3", b"o4"]})
    assert sorted(queue) == sorted([("crm", b"c1"), ("crm", b"c2"), ("orders", b"o1"), ("orders", b"o2"),
                                    ("orders", b"o3"), ("orders", b"o4")])
    assert [d for s, d in queue if s == "orders"] == [b"o1", b"o2", b"o3", b"o4"]
    assert queue[:3] == [("orders", b"o1"), ("crm", b"c1"), ("orders", b"o2")]


# sha256 over "<file> <sha256 of the file>\n" of each file `python -m singleview.samples` writes,
# recorded before generate() was split up: the generator's output must not change.
FILE_DIGESTS = {
    (1, 1): "8c8328c1d319d2fba6ed28183566931a677c585ed9fb052e99780e8da1fbcb3a",
    (12, 3): "1e33280686a80833149bfad3c0b07d64f8fb86543bb44c7cc84955f6f3eefd90",
    (60, 2): "fb1745af4258c06b2281b6ab9ba311f153f3ca280cc05066f091ddacc741ed43",
    (250, 1): "6c9a50f8f2b8ae4e0a5d2265ae9b455fb47644514a177a1c8dd39180f6b03fff",
}


def files_digest(directory) -> str:
    listing = "".join(f"{path.name} {hashlib.sha256(path.read_bytes()).hexdigest()}\n"
                      for path in sorted(directory.iterdir()))
    return hashlib.sha256(listing.encode()).hexdigest()


def test_generated_files_are_byte_identical_to_the_pinned_ones(tmp_path, capsys):
    for (customers, seed), digest in FILE_DIGESTS.items():
        out = tmp_path / f"{customers}-{seed}"
        assert main(["--customers", str(customers), "--seed", str(seed), "--out", str(out)]) == 0
        assert files_digest(out) == digest, (customers, seed)
