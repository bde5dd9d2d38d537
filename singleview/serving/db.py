"""MongoDB access for the API: one client per app, a collection dependency, indexes."""
from __future__ import annotations

import logging

import pymongo
from fastapi import Request
from pymongo.collection import Collection

from .config import Settings

log = logging.getLogger("singleview.serving")


def make_client(settings: Settings) -> pymongo.MongoClient:
    t = settings.mongo_timeout_ms
    return pymongo.MongoClient(
        settings.mongo_uri, tz_aware=True, connect=False,
        serverSelectionTimeoutMS=t, connectTimeoutMS=t, socketTimeoutMS=max(t, 30000),
        appname="singleview-serving",
    )


def index_specs(settings: Settings) -> list[tuple[list[tuple[str, int]], str]]:
    """One index per named segment filter (DESIGN.md section 5)."""
    specs = [
        ([("marketing_preferences.viewed_categories.category", 1)], "sv_viewed_category"),
        ([("stats.last_order_at", 1)], "sv_last_order_at"),
        ([("stats.order_count", 1)], "sv_order_count"),
        ([("marketing_preferences.email_opt_out", 1)], "sv_email_opt_out"),
        ([("updated_at", 1)], "sv_updated_at"),
    ]
    for cur in settings.index_currencies:
        specs.append(([(f"stats.lifetime_value.{cur}", 1)], f"sv_ltv_{cur}"))
    return specs


def ensure_indexes(collection: Collection, settings: Settings) -> list[str]:
    """Idempotent. An index on the same keys under another name (say, made by the
    pipeline's setup step) counts as present, so we never hit an options conflict."""
    existing = {tuple(tuple(k) for k in info["key"]) for info in collection.index_information().values()}
    created = []
    for keys, name in index_specs(settings):
        if tuple(keys) not in existing:
            created.append(collection.create_index(keys, name=name))
    return created


def get_collection(request: Request) -> Collection:
    """FastAPI dependency: the customer_sv collection."""
    return request.app.state.collection
