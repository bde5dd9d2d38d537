"""Salesforce Pub/Sub API events (Avro binary + schema_id), pure: the bitmaps,
binary events against their CometD JSON twins, binary-safe dead letters.

The vectors follow Salesforce's documentation: the ChangeEventHeader and
Contact fields of the Change Data Capture guide, the bitmap rules and the
example `['0x650004E0', '4-0x10', '7-0x06']` of the Pub/Sub API's "Event
Deserialization Considerations", and for updates the Pub/Sub API's shape
(every field present, unchanged ones null) next to CometD's (only the changed
fields, a nulled one as an explicit null).
"""
from __future__ import annotations

import base64
import io
import json
import pickle

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from singleview.formats import DecoderConfig, decode
from singleview.formats.salesforce_avro import (
    SCHEMA_ID as SCHEMA_ATTRIBUTE, WriterSchema, encode_bitmap, expand_bitmap, writer_schema)
from singleview.io.kafka import to_raw_message
from singleview.io.files import from_archive_record
from singleview.model import (
    BASE64, DELETE, MAX_BINARY_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES, RESTORE, TEXT, UPSERT, DeadLetter, DecodeError,
    RawMessage)
from singleview.pipelines.options import SingleViewOptions, decoder_config
from singleview.samples.salesforce import SCHEMA_ID, SCHEMA_TEXT, avro_event, write_schema_dir

from tests.test_kafka import Header, Record

SCHEMA = writer_schema(SCHEMA_TEXT)
CONFIG = DecoderConfig(salesforce_schemas={SCHEMA_ID: SCHEMA_TEXT})
COMMIT_MS = 1717000000000  # 2024-05-29T16:26:40Z
IDS = ["003A000001"]


def header(change_type, changed=(), nulled=(), diffed=(), record_ids=IDS, commit=10000000001):
    return {"entityName": "Contact", "recordIds": list(record_ids), "changeType": change_type,
            "changeOrigin": "com/salesforce/api/soap/60.0;client=SfdcInternalAPI/",
            "transactionKey": "00006bec-ce66-0611-9018-30a98446c9f2", "sequenceNumber": 1,
            "commitTimestamp": COMMIT_MS, "commitNumber": commit, "commitUser": "0055f000005mc66AAA",
            "nulledFields": list(nulled), "diffFields": list(diffed), "changedFields": list(changed)}


def binary(head: dict, **fields) -> RawMessage:
    """A Pub/Sub API event: every field of the schema, null unless given; compound ones as whole records."""
    record = dict.fromkeys(SCHEMA.fields)
    for position, children in SCHEMA.children.items():
        name = SCHEMA.fields[position]
        if name in fields:
            record[name] = dict(dict.fromkeys(children), **fields.pop(name))
    record.update(fields, ChangeEventHeader=head)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, SCHEMA.parsed, record)
    return RawMessage("crm", buffer.getvalue(), {SCHEMA_ATTRIBUTE: SCHEMA_ID})


def cometd(head: dict, **fields) -> RawMessage:
    document = {"schema": SCHEMA_ID, "payload": {"ChangeEventHeader": head, **fields},
                "event": {"replayId": 1398411}}
    return RawMessage("crm", json.dumps(document).encode())


def outcome(message: RawMessage):
    try:
        return decode(message, CONFIG)
    except DecodeError as error:
        return f"DecodeError: {error}"


CONTACT = dict(AccountId="0015f00002JUXA8AAP", Email="Jane.Doe@Example.com", Phone="+1 415 555 0100",
               OwnerId="0055f000005mc66AAA", CreatedById="0055f000005mc66AAA",
               LastModifiedById="0055f000005mc66AAA", HasOptedOutOfEmail=False, DoNotCall=False,
               CleanStatus="Pending", Loyalty_Tier__c="Gold")
NAME = {"FirstName": "Jane", "LastName": "Doe"}
ADDRESS = {"Street": "415 Mission Street", "City": "San Francisco", "State": "CA", "PostalCode": "94105",
           "Country": "United States"}
DIFF = "--- \n+++ 2f5e4a81c\n@@ -1,2 +1,2 @@\n-Likes trail shoes.\n+Likes trail shoes and red tees.\n"

# (binary event, its CometD twin): field bitmaps written out as Salesforce sends them.
TWINS = {
    "create": (
        binary(header("CREATE"), Name=NAME, MailingAddress=ADDRESS, CreatedDate=COMMIT_MS,
               LastModifiedDate=COMMIT_MS, **CONTACT),
        cometd(header("CREATE"), Name=NAME, MailingAddress=ADDRESS, CreatedDate="2024-05-29T16:26:40.000Z",
               LastModifiedDate="2024-05-29T16:26:40.000Z", **CONTACT)),
    # LastName (Name is field 2, LastName its third part), City and PostalCode of MailingAddress (field 4),
    # LastModifiedDate (bit 25) and Loyalty_Tier__c (bit 65, past 64); two records with the same change.
    "update name, address and a field past 64": (
        binary(header("UPDATE", ["0x020000000002000000", "2-0x04", "4-0x0A"], record_ids=IDS + ["003A000002"]),
               Name={"LastName": "Smith"}, MailingAddress={"City": "Rome", "PostalCode": "00100"},
               LastModifiedDate=COMMIT_MS + 5000, Loyalty_Tier__c="Platinum"),
        cometd(header("UPDATE", ["Name.LastName", "MailingAddress.City", "MailingAddress.PostalCode",
                                 "LastModifiedDate", "Loyalty_Tier__c"], record_ids=IDS + ["003A000002"]),
               Name={"LastName": "Smith"}, MailingAddress={"City": "Rome", "PostalCode": "00100"},
               LastModifiedDate="2024-05-29T16:26:45.000Z", Loyalty_Tier__c="Platinum")),
    # Phone (bit 5) and MailingAddress.Street set to null.
    "update that nulls": (
        binary(header("UPDATE", ["0x02000020", "4-0x01"], ["0x20", "4-0x01"]), MailingAddress={},
               LastModifiedDate=COMMIT_MS + 9000),
        cometd(header("UPDATE", ["Phone", "MailingAddress.Street", "LastModifiedDate"],
                      ["Phone", "MailingAddress.Street"]),
               Phone=None, MailingAddress={"Street": None}, LastModifiedDate="2024-05-29T16:26:49.000Z")),
    # Description (bit 18) sent as a data diff: a string in the Pub/Sub API, {"diff": ...} in CometD.
    "update sent as a diff": (
        binary(header("UPDATE", ["0x02040000"], diffed=["0x040000"]), Description=DIFF,
               LastModifiedDate=COMMIT_MS + 9500),
        cometd(header("UPDATE", ["Description", "LastModifiedDate"], diffed=["Description"]),
               Description={"diff": DIFF}, LastModifiedDate="2024-05-29T16:26:49.500Z")),
    "delete": (binary(header("DELETE", commit=10000000002)), cometd(header("DELETE", commit=10000000002))),
    "undelete": (
        binary(header("UNDELETE", commit=10000000003), Name=NAME, MailingAddress=ADDRESS,
               CreatedDate=COMMIT_MS, LastModifiedDate=COMMIT_MS + 20000, **CONTACT),
        cometd(header("UNDELETE", commit=10000000003), Name=NAME, MailingAddress=ADDRESS,
               CreatedDate="2024-05-29T16:26:40Z", LastModifiedDate="2024-05-29T16:27:00.000Z", **CONTACT)),
    "gap": (binary(header("GAP_UPDATE")), cometd(header("GAP_UPDATE"))),
}


@pytest.mark.parametrize("case", TWINS)
def test_binary_event_decodes_to_the_change_events_of_its_cometd_twin(case):
    avro, json_twin = TWINS[case]
    assert outcome(avro) == outcome(json_twin)


def test_the_twins_decode_to_what_the_documentation_says():
    events = {case: outcome(avro) for case, (avro, _) in TWINS.items()}
    [create] = events["create"]
    assert (create.op, create.full_image, create.entity_id) == (UPSERT, True, "003A000001")
    assert create.fields["email"] == "jane.doe@example.com" and create.fields["loyalty_tier__c"] == "Gold"
    assert create.fields["mailing_address"]["city"] == "San Francisco" and create.fields["first_name"] == "Jane"
    assert create.fields["created_date"] == "2024-05-29T16:26:40.000Z"
    assert "fax" not in create.fields and "other_address" not in create.fields

    first, second = events["update name, address and a field past 64"]
    assert (first.entity_id, second.entity_id) == ("003A000001", "003A000002") and first.version == second.version
    assert first.fields == {"last_name": "Smith", "mailing_address": {"city": "Rome", "postal_code": "00100"},
                            "last_modified_date": "2024-05-29T16:26:45.000Z", "loyalty_tier__c": "Platinum"}
    assert not first.full_image and not first.nulled

    [nulling] = events["update that nulls"]
    assert nulling.nulled == ("mailing_address.street", "phone") and "phone" not in nulling.fields
    [diffed] = events["update sent as a diff"]
    assert diffed.fields["description"] == {"diff": DIFF}
    assert [e.op for e in events["delete"]] == [DELETE] and events["delete"][0].fields == {}
    assert [e.op for e in events["undelete"]] == [RESTORE]
    assert "GAP_UPDATE" in events["gap"] and "resync" in events["gap"]


def test_documented_bitmap_example_expands_by_position_least_significant_bit_first():
    """'0x650004E0' sets bits 5, 6, 7, 10, 24, 26, 29, 30; '4-0x10' is part 4 of the compound
    field at position 4, '7-0x06' parts 1 and 2 of the one at position 7."""
    parts = tuple(f"P{i}" for i in range(8))
    schema = WriterSchema(None, tuple(f"F{i}" for i in range(32)), {4: parts, 7: parts}, frozenset())
    assert expand_bitmap(["0x650004E0", "4-0x10", "7-0x06"], schema, "changedFields") == [
        "F5", "F6", "F7", "F10", "F24", "F26", "F29", "F30", "F4.P4", "F7.P1", "F7.P2"]
    assert expand_bitmap(["0x1E0"], schema, "x") == ["F5", "F6", "F7", "F8"]  # odd length: bits, not bytes
    assert expand_bitmap(["4-0x01"], schema, "nulledFields") == ["F4.P0"]  # only a compound's parts
    assert expand_bitmap([], schema, "x") == expand_bitmap(["0x"], schema, "x") == []


def test_contact_schema_positions_the_vectors_rely_on():
    positions = {name: i for i, name in enumerate(SCHEMA.fields)}
    assert [positions[n] for n in ("ChangeEventHeader", "Name", "MailingAddress", "Phone", "Description",
                                   "LastModifiedDate", "Loyalty_Tier__c")] == [0, 2, 4, 5, 18, 25, 65]
    assert SCHEMA.children[2][2] == "LastName" and SCHEMA.children[4][:4] == ("Street", "City", "State", "PostalCode")
    assert encode_bitmap(["Name.LastName", "MailingAddress.City", "MailingAddress.PostalCode", "LastModifiedDate",
                          "Loyalty_Tier__c"], SCHEMA) == ["0x020000000002000000", "2-0x04", "4-0x0A"]


@pytest.mark.parametrize("entries, reason", [
    (["0x1G"], "not a hex bitmap"), (["1E0"], "not a hex bitmap"), ("0x1", "list of bitmap strings"),
    (["0x" + "F" * 20], "sets bit 79 but the schema has 66 fields"),
    (["5-0x01"], "position 5, which is not a compound"), (["x-0x01"], "not a compound"),
    (["2-0x40"], "sets bit 6 but the schema has 6 fields"),
])
def test_bad_bitmaps_are_decode_errors(entries, reason):
    with pytest.raises(DecodeError, match=reason):
        expand_bitmap(entries, SCHEMA, "changedFields")


@st.composite
def schemas_and_paths(draw):
    """A schema of up to 150 fields, some compound, and any set of its field paths."""
    size = draw(st.integers(1, 150))
    children = {p: tuple(f"C{j}" for j in range(draw(st.integers(1, 12))))
                for p in draw(st.sets(st.integers(0, size - 1), max_size=6))}
    schema = WriterSchema(None, tuple(f"F{i}" for i in range(size)), children, frozenset())
    paths = [f"F{i}" for i in range(size)] + [f"F{p}.{c}" for p, parts in children.items() for c in parts]
    return schema, draw(st.sets(st.sampled_from(paths)))


def canonical(schema: WriterSchema, paths) -> list[str]:
    """Top-level fields in schema order, then each compound field's parts in order."""
    def key(path):
        parent, _, child = path.partition(".")
        position = schema.fields.index(parent)
        return (1, position, schema.children[position].index(child)) if child else (0, position, 0)
    return sorted(paths, key=key)


@given(schemas_and_paths())
@settings(max_examples=300, deadline=None)
def test_bitmap_encode_then_expand_gives_the_paths_back(drawn):
    schema, paths = drawn
    entries = encode_bitmap(paths, schema)
    assert expand_bitmap(entries, schema, "changedFields") == canonical(schema, paths)
    assert encode_bitmap(expand_bitmap(entries, schema, "changedFields"), schema) == entries
    for entry in entries:
        digits = entry.partition("-")[2] or entry
        assert digits.startswith("0x") and len(digits) % 2 == 0 and digits[2:] == digits[2:].upper()


SIMPLE = [n for n in SCHEMA.fields if n not in ("ChangeEventHeader", "Name", "OtherAddress", "MailingAddress")
          and json.loads(SCHEMA_TEXT)["fields"][SCHEMA.fields.index(n)]["type"] == ["null", "string"]]
values = st.one_of(st.none(), st.text(min_size=1, max_size=12))


@given(st.dictionaries(st.sampled_from(SIMPLE), values, max_size=8),
       st.dictionaries(st.sampled_from(SCHEMA.children[4]), st.one_of(st.none(), st.text(min_size=1, max_size=8)),
                       max_size=4),
       st.integers(0, 2 ** 40))
@settings(max_examples=150, deadline=None)
def test_any_update_decodes_the_same_from_binary_and_from_cometd(simple, address, millis):
    """CometD sends the changed fields (a nulled one as null); the Pub/Sub API every field, bitmaps naming them."""
    address = {k: v for k, v in address.items() if k not in ("Latitude", "Longitude")}
    fields = dict(simple, LastModifiedDate=millis, **({"MailingAddress": address} if address else {}))
    changed = [*simple, "LastModifiedDate", *(f"MailingAddress.{k}" for k in address)]
    nulled = [n for n, v in simple.items() if v is None] + [f"MailingAddress.{k}" for k, v in address.items()
                                                            if v is None]
    payload = {"ChangeEventHeader": header("UPDATE", changed, nulled), **fields}
    twin = RawMessage("crm", avro_event(payload), {SCHEMA_ATTRIBUTE: SCHEMA_ID})
    assert outcome(twin) == outcome(cometd(payload["ChangeEventHeader"], **fields))


def test_unknown_schema_is_a_dead_letter_that_names_it_and_keeps_the_message_whole():
    avro, _ = TWINS["create"]
    message = RawMessage("crm", avro.data, {SCHEMA_ATTRIBUTE: "0Xnotfetched", "replay_id": "00000000000155cb"})
    with pytest.raises(DecodeError, match="unknown Salesforce schema_id '0Xnotfetched'"):
        decode(message, CONFIG)
    with pytest.raises(DecodeError, match="unknown Salesforce schema_id"):
        decode(RawMessage("crm", avro.data, {SCHEMA_ATTRIBUTE: SCHEMA_ID}), DecoderConfig())
    dead = DeadLetter.of(message, "unknown schema")
    assert (dead.payload_encoding, dead.payload_bytes) == (BASE64, len(avro.data))
    assert dead.payload_data() == avro.data and base64.b64decode(dead.payload) == avro.data
    assert dead.to_doc()["attributes"][1] == {"name": "schema_id", "value": "0Xnotfetched"}


@pytest.mark.parametrize("data, reason", [
    (b"", "not an Avro record"), (TWINS["create"][0].data[:40], "not an Avro record"),
    (TWINS["create"][0].data + b"\x00\x02", "2 bytes after the record"),
])
def test_a_payload_of_another_schema_is_a_decode_error(data, reason):
    with pytest.raises(DecodeError, match=reason):
        decode(RawMessage("crm", data, {SCHEMA_ATTRIBUTE: SCHEMA_ID}), CONFIG)


def test_the_json_path_is_unchanged_without_a_schema_id():
    _, json_twin = TWINS["create"]
    assert outcome(json_twin) == outcome(RawMessage("crm", json_twin.data, {"source": "crm"}))
    with pytest.raises(DecodeError, match="not UTF-8|not valid JSON"):
        decode(RawMessage("crm", TWINS["create"][0].data), CONFIG)


def test_kafka_header_and_archive_record_carry_the_schema_id():
    avro, _ = TWINS["create"]
    record = Record("sf", 0, 7, COMMIT_MS, None, avro.data, [Header("schema_id", SCHEMA_ID.encode())], 0, "x")
    assert outcome(to_raw_message("crm", record)) == outcome(avro)
    archived = from_archive_record("crm", {"schema_id": SCHEMA_ID, "payload": avro.data,
                                           "replay_id": (87499).to_bytes(8, "big")})
    assert dict(archived.attributes) == {"schema_id": SCHEMA_ID, "replay_id": "00000000000155cb"}
    assert outcome(archived) == outcome(avro)


def test_schema_dir_is_read_at_the_edge_and_travels_as_data(tmp_path):
    config = decoder_config(SingleViewOptions(["--salesforce_schema_dir", str(write_schema_dir(tmp_path / "s"))]))
    assert dict(config.salesforce_schemas) == {SCHEMA_ID: (tmp_path / "s" / f"{SCHEMA_ID}.avsc").read_text()}
    assert pickle.loads(pickle.dumps(config)) == config
    assert outcome(TWINS["create"][0]) == decode(TWINS["create"][0], config)
    assert decoder_config(SingleViewOptions([])).salesforce_schemas == {}
    (tmp_path / "bad").mkdir()
    with pytest.raises(ValueError, match="holds no <schema_id>.avsc"):
        decoder_config(SingleViewOptions(["--salesforce_schema_dir", str(tmp_path / "bad")]))
    (tmp_path / "bad" / "x1.avsc").write_text('{"type": "record", "name": "E", "fields": []}')
    with pytest.raises(ValueError, match="x1.avsc: schema 'E' has no ChangeEventHeader"):
        decoder_config(SingleViewOptions(["--salesforce_schema_dir", str(tmp_path / "bad")]))


def test_dead_letters_keep_text_as_before_and_bound_both_kinds():
    text = DeadLetter.of(RawMessage("crm", b'{"a": "caf\xc3\xa9"}'), "bad")
    assert (text.payload, text.payload_encoding, text.payload_bytes) == ('{"a": "café"}', TEXT, 14)
    long_text = DeadLetter.of(RawMessage("crm", b"x" * (MAX_PAYLOAD_BYTES + 5)), "bad")
    assert long_text.payload == "x" * MAX_PAYLOAD_BYTES and long_text.payload_bytes == MAX_PAYLOAD_BYTES + 5
    huge = b"\xff" * (MAX_BINARY_PAYLOAD_BYTES + 3)
    cut = DeadLetter.of(RawMessage("crm", huge), "bad")
    assert cut.payload_data() == huge[:MAX_BINARY_PAYLOAD_BYTES] and cut.payload_bytes == len(huge)


@given(st.binary(max_size=3000))
@settings(max_examples=200, deadline=None)
def test_a_dead_letter_gives_back_any_message_it_holds_whole(data):
    dead = DeadLetter.of(RawMessage("crm", data), "bad")
    assert dead.payload_data() == data and dead.payload_bytes == len(data)
    try:
        assert dead.payload == data.decode("utf-8") and dead.payload_encoding == TEXT
    except UnicodeDecodeError:
        assert dead.payload_encoding == BASE64


@given(st.sampled_from(sorted(TWINS)), st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
       st.integers(0, 400))
@settings(max_examples=300, deadline=None)
def test_a_damaged_binary_event_is_events_or_a_decode_error_never_a_crash(case, flips, cut):
    data = bytearray(TWINS[case][0].data)
    for at, value in flips:
        data[at % len(data)] = value
    try:
        decode(RawMessage("crm", bytes(data[:len(data) - cut % len(data)]), {SCHEMA_ATTRIBUTE: SCHEMA_ID}), CONFIG)
    except DecodeError:
        pass
