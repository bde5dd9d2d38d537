"""MongoDB access for the API: one client per app, a collection dependency, indexes."""
from __future__ import annotations

import logging

import pymongo
from fastapi import Request
from pymongo.collection import Collection

from ..io.indexes import ensure_segment_indexes
from .config import Settings

log = logging.getLogger("singleview.serving")


def make_client(settings: Settings) -> pymongo.MongoClient:
    t = settings.mongo_timeout_ms
    return pymongo.MongoClient(
        settings.mongo_uri, tz_aware=True, connect=False,
        serverSelectionTimeoutMS=t, connectTimeoutMS=t, socketTimeoutMS=max(t, 30000),
        appname="singleview-serving",
    )


def ensure_indexes(collection: Collection, settings: Settings) -> list[str]:
    return ensure_segment_indexes(collection, settings.index_currencies)


def get_collection(request: Request) -> Collection:
    """FastAPI dependency: the customer_sv collection."""
    return request.app.state.collection
