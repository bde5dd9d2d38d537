"""The sample generator: deterministic, in the real wire formats, decodable."""
from __future__ import annotations

import json
from decimal import Decimal

import fastavro

from singleview.formats import DecoderConfig, decode
from singleview.io.sources import split_line
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


def test_decimal_bytes_round_trip():
    for amount in ("0", "129.9900", "-5.0001", "99999999.9999"):
        raw = __import__("base64").b64decode(decimal_bytes(amount))
        assert Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-4) == Decimal(amount)


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
