"""MongoDB access for the API: one client per app, and the indexes its queries need."""
from __future__ import annotations

import logging
from datetime import timezone

import pymongo
from bson import Decimal128, ObjectId
from bson.codec_options import TypeDecoder, TypeRegistry
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from ..io.indexes import ensure_segment_indexes
from .config import Settings

log = logging.getLogger("singleview.serving")


class _DecimalAsString(TypeDecoder):
    bson_type = Decimal128

    def transform_bson(self, value: Decimal128) -> str:
        return str(value.to_decimal())


class _ObjectIdAsString(TypeDecoder):
    bson_type = ObjectId

    def transform_bson(self, value: ObjectId) -> str:
        return str(value)


# BSON-only types become JSON-ready while pymongo decodes, instead of a Python
# walk over every document (that walk was half the API's own time per list).
PLAIN_BSON = TypeRegistry([_DecimalAsString(), _ObjectIdAsString()])


def make_client(settings: Settings) -> pymongo.MongoClient:
    """Dates come back aware, in the C-implemented timezone.utc (bson's own utc
    is a Python tzinfo, called for every date pydantic writes), so JSON shows Z."""
    t = settings.mongo_timeout_ms
    return pymongo.MongoClient(
        settings.mongo_uri, tz_aware=True, tzinfo=timezone.utc, type_registry=PLAIN_BSON, connect=False,
        serverSelectionTimeoutMS=t, connectTimeoutMS=t, socketTimeoutMS=max(t, 30000),
        appname="singleview-serving",
    )


class Indexes:
    """The collection's indexes: made at start-up, or by a later /readyz if MongoDB was down then."""

    def __init__(self, collection: Collection, settings: Settings):
        self.collection, self.settings = collection, settings
        self.ready = False

    def ensure(self) -> bool:
        if not self.ready:
            try:
                ensure_segment_indexes(self.collection, self.settings.index_currencies)
                self.ready = True
            except PyMongoError as exc:
                log.warning("could not create indexes (%s); will retry on /readyz", type(exc).__name__)
        return self.ready
