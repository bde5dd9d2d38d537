"""Generated Salesforce CDC as the Pub/Sub API sends it: Avro binary of a
ContactChangeEvent schema, with its `schema_id` (docs/wire-formats.md).

The schema follows the fields of Salesforce's Contact object and its change
event (a ChangeEventHeader first, compound Name and addresses as nested
records, DateTime fields as epoch millis), plus the custom fields a retailer
adds: enough of them that fields sit past position 64 of the bitmaps.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterable, Mapping

import fastavro

from singleview.formats._common import epoch_millis
from singleview.formats.salesforce_avro import BITMAPS, HEADER, encode_bitmap, writer_schema

SCHEMA_ID = "qL5h2rE0cT9aW3mZ8uY1xA"
CHANGE_TYPES = ["CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE",
                "GAP_UNDELETE", "GAP_OVERFLOW", "SNAPSHOT"]
CUSTOM_FIELDS = [
    "Preferred_Store__c", "Preferred_Channel__c", "Customer_Segment__c", "Favourite_Category__c",
    "Shoe_Size__c", "Clothing_Size__c", "Gender_Identity__c", "Pronouns__c", "Marketing_Source__c",
    "Referral_Code__c", "Referred_By__c", "Store_Card_Number__c", "Store_Card_Status__c", "VIP_Status__c",
    "Account_Manager__c", "Support_Tier__c", "Language_Preference__c", "Time_Zone__c", "Region__c",
    "Territory__c", "Wholesale_Id__c", "Tax_Exempt_Id__c", "Web_Username__c", "Survey_Score__c",
    "Churn_Risk__c", "Consent_Version__c", "Data_Source__c", "Legacy_Id__c", "Loyalty_Tier__c"]


def _field(name: str, avro_type="string", doc: str = "Data:Text") -> dict:
    return {"name": name, "type": ["null", avro_type], "doc": doc, "default": None}


def _record(name: str, fields: list[dict]) -> dict:
    return {"type": "record", "name": name, "fields": fields}


ADDRESS = _record("Address", [_field(n) for n in ("Street", "City", "State", "PostalCode", "Country",
                                                   "StateCode", "CountryCode")]
                  + [_field("Latitude", "double", "Data:Double"), _field("Longitude", "double", "Data:Double"),
                     _field("GeocodeAccuracy", doc="Data:Picklist")])
CHANGE_EVENT_HEADER = _record("ChangeEventHeader", [
    {"name": "entityName", "type": "string"},
    {"name": "recordIds", "type": {"type": "array", "items": "string"}},
    {"name": "changeType", "type": {"type": "enum", "name": "ChangeType",
                                    "namespace": "com.salesforce.eventbus.protobuf", "symbols": CHANGE_TYPES}},
    {"name": "changeOrigin", "type": "string"}, {"name": "transactionKey", "type": "string"},
    {"name": "sequenceNumber", "type": "int"}, {"name": "commitTimestamp", "type": "long"},
    {"name": "commitNumber", "type": "long"}, {"name": "commitUser", "type": "string"}]
    + [{"name": name, "type": {"type": "array", "items": "string"}} for name in ("nulledFields", "diffFields",
                                                                                 "changedFields")])
CONTACT_CHANGE_EVENT_SCHEMA = {
    "type": "record", "name": "ContactChangeEvent", "namespace": "com.sforce.eventbus",
    "fields": [
        {"name": HEADER, "type": CHANGE_EVENT_HEADER, "doc": "Data:EventHeader"},
        _field("AccountId", doc="Data:EntityId"),
        _field("Name", _record("PersonName", [_field(n) for n in ("Salutation", "FirstName", "LastName",
                                                                 "MiddleName", "InformalName", "Suffix")]),
               "Data:PersonName"),
        _field("OtherAddress", ADDRESS, "Data:Address"), _field("MailingAddress", "Address", "Data:Address"),
        *(_field(n, doc="Data:Phone") for n in ("Phone", "Fax", "MobilePhone", "HomePhone", "OtherPhone",
                                                 "AssistantPhone")),
        _field("ReportsToId", doc="Data:EntityId"), _field("Email", doc="Data:Email"),
        *(_field(n) for n in ("Title", "Department", "AssistantName", "LeadSource")),
        _field("Birthdate", "long", "Data:DateOnly"), _field("Description", doc="Data:MultiLineText"),
        _field("OwnerId", doc="Owner:EntityId"),
        *(_field(n, "boolean", "Data:Boolean") for n in ("HasOptedOutOfEmail", "HasOptedOutOfFax", "DoNotCall")),
        _field("CreatedDate", "long", "CreatedDate:DateTime"), _field("CreatedById", doc="CreatedBy:EntityId"),
        _field("LastModifiedDate", "long", "LastModifiedDate:DateTime"),
        _field("LastModifiedById", doc="LastModifiedBy:EntityId"),
        _field("LastCURequestDate", "long", "Data:DateTime"), _field("LastCUUpdateDate", "long", "Data:DateTime"),
        _field("EmailBouncedReason"), _field("EmailBouncedDate", "long", "Data:DateTime"),
        _field("Jigsaw"), _field("JigsawContactId"), _field("CleanStatus", doc="Data:Picklist"),
        _field("IndividualId", doc="Data:EntityId"),
        _field("Loyalty_Points__c", "double", "Data:Double"), _field("Last_Store_Visit__c", "long", "Data:DateTime"),
        *(_field(n) for n in CUSTOM_FIELDS)]}
SCHEMA_TEXT = json.dumps(CONTACT_CHANGE_EVENT_SCHEMA)
ARCHIVE_SCHEMA = {
    "type": "record", "name": "SalesforceEvent", "namespace": "singleview",
    "fields": [{"name": "schema_id", "type": "string"}, {"name": "payload", "type": "bytes"},
               {"name": "replay_id", "type": "bytes"}]}


def avro_event(payload: Mapping, schema_text: str = SCHEMA_TEXT) -> bytes:
    """A CometD payload as the Pub/Sub API sends the same change: every field of the
    schema (null unless the change sets it), field lists as bitmaps, DateTime as epoch millis."""
    schema = writer_schema(schema_text)
    unknown = set(payload) - set(schema.fields)
    if unknown:
        raise ValueError(f"fields not in the schema: {sorted(unknown)}")
    header = dict(payload[HEADER])
    header.update((name, encode_bitmap(header.get(name) or [], schema)) for name in BITMAPS)
    record = {HEADER: header}
    for position, name in enumerate(schema.fields[1:], 1):
        value = payload.get(name)
        if position in schema.children and value is not None:
            value = {child: value.get(child) for child in schema.children[position]}
        elif name in schema.datetimes and value is not None:
            value = epoch_millis(value, name)
        record[name] = value
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema.parsed, record)
    return buffer.getvalue()


def pubsub_api_record(message: bytes) -> dict:
    """A generated CometD message as one record of a Pub/Sub API archive (schema_id, payload, replay_id)."""
    document = json.loads(message)
    return {"schema_id": SCHEMA_ID, "payload": avro_event(document["payload"]),
            "replay_id": int(document["event"]["replayId"]).to_bytes(8, "big")}


def write_archive(path: Path, messages: Iterable[bytes]) -> None:
    with open(path, "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(ARCHIVE_SCHEMA), (pubsub_api_record(m) for m in messages))


def write_schema_dir(directory: Path) -> Path:
    """`<schema_id>.avsc`, as `--salesforce_schema_dir` reads it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{SCHEMA_ID}.avsc").write_text(json.dumps(CONTACT_CHANGE_EVENT_SCHEMA, indent=1) + "\n")
    return directory
