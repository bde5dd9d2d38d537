"""The indexes of the pipeline's database: dead letters, and the customer_sv fields behind the
API's named segment filters (docs/design.md, "The API").

One list, created by the API at start-up and by the pipeline before it writes,
so whichever runs first leaves the same indexes. pymongo only: no FastAPI, no Beam.
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping

from pymongo.collection import Collection
from pymongo.database import Database

DEFAULT_CURRENCIES = ("USD", "EUR", "GBP")
CURRENCIES_ENV = "SINGLEVIEW_INDEX_CURRENCIES"

IndexSpec = tuple[list[tuple[str, int]], str]

SEGMENT_INDEXES: list[IndexSpec] = [
    ([("marketing_preferences.viewed_categories.category", 1)], "sv_viewed_category"),
    ([("stats.last_order_at", 1)], "sv_last_order_at"),
    ([("stats.order_count", 1)], "sv_order_count"),
    ([("marketing_preferences.email_opt_out", 1)], "sv_email_opt_out"),
    ([("updated_at", 1)], "sv_updated_at"),
]


def index_currencies(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Currencies whose stats.lifetime_value.<CUR> is indexed (min_lifetime_value)."""
    env = os.environ if env is None else env
    given = [c.strip().upper() for c in env.get(CURRENCIES_ENV, "").split(",") if c.strip()]
    return tuple(given) or DEFAULT_CURRENCIES


def segment_indexes(currencies: Iterable[str] = DEFAULT_CURRENCIES) -> list[IndexSpec]:
    return SEGMENT_INDEXES + [([(f"stats.lifetime_value.{cur}", 1)], f"sv_ltv_{cur}") for cur in currencies]


def ensure_segment_indexes(collection: Collection, currencies: Iterable[str] = DEFAULT_CURRENCIES) -> list[str]:
    """Idempotent. An index on the same keys under another name counts as
    present, so a differently named existing index never causes a conflict."""
    existing = {tuple(tuple(k) for k in info["key"]) for info in collection.index_information().values()}
    return [collection.create_index(keys, name=name)
            for keys, name in segment_indexes(currencies) if tuple(keys) not in existing]


def ensure_indexes(db: Database, currencies: Iterable[str] | None = None) -> list[str]:
    """Every index of the database (idempotent)."""
    db["sv_errors"].create_index([("source", 1), ("at", -1)])
    return ensure_segment_indexes(db["customer_sv"], index_currencies() if currencies is None else currencies)
