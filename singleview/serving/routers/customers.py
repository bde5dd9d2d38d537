"""/customers-sv: one customer, lists with segment filters, count, export."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Iterator

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator, ValidationError
from pymongo.collection import Collection

from ..auth import require_api_key
from ..db import get_collection
from ..errors import ERROR_RESPONSES, ApiError, ErrorBody
from ..models import CountBody, CustomerPage, CustomerSV
from ..strict import reject_unknown_parameters
from ..queries import (
    CURRENCY_PATTERN, DECIMAL_PATTERN, FIELDS_PATTERN, HIDDEN, MAX_Q_LENGTH, SORT_PATTERN, Segment, combine,
    iso_datetime_text, normalise_email, parse_projection, parse_q, parse_sort, public_document, segment_filter,
)
from ..segments import SegmentReadModel, sortable

EXPORT_BATCH = 500
MAX_SKIP = 10_000_000
MAX_COUNT = 1_000_000_000  # BSON integers are 64-bit; anything near is a mistake
router = APIRouter(
    prefix="/customers-sv",
    tags=["customers"],
    dependencies=[Depends(require_api_key), Depends(reject_unknown_parameters)],
    responses=ERROR_RESPONSES,
)


async def segment_params(
    viewed_category: Annotated[str | None, Query(min_length=1, max_length=200, description="viewed this category (exact)")] = None,
    no_purchase_days: Annotated[int | None, Query(ge=0, le=36500, description="no order in the last N days, including never")] = None,
    min_orders: Annotated[int | None, Query(ge=0, le=MAX_COUNT, description="at least this many orders")] = None,
    opted_in: Annotated[bool | None, Query(description="true: email_opt_out is false; false: email_opt_out is true")] = None,
    updated_since: Annotated[datetime | None, BeforeValidator(iso_datetime_text),
                             Query(description="ISO 8601 date-time; naive means UTC")] = None,
    min_lifetime_value: Annotated[str | None, Query(pattern=DECIMAL_PATTERN, description="decimal; needs currency", examples=["100", "99.95"])] = None,
    currency: Annotated[str | None, Query(pattern=CURRENCY_PATTERN, description="ISO 4217 code for min_lifetime_value", examples=["USD"])] = None,
) -> Segment:
    return Segment(viewed_category, no_purchase_days, min_orders, opted_in, updated_since,
                   min_lifetime_value, currency)


@dataclass
class Filters:
    """Segment filters AND the Mia-Platform style `_q` filter.

    A named segment without `_q` is answered from the segment read model
    (serving/segments.py); `_q` is a MongoDB query, a scan on FerretDB.
    """
    segment: Segment
    clauses: list[dict]
    q: dict | None

    @property
    def mongo(self) -> dict:
        return combine([*self.clauses, *([self.q] if self.q else [])])

    def in_memory(self, sort: list[tuple[str, int]] | None = None) -> bool:
        return bool(self.clauses) and not self.q and (sort is None or sortable(sort))


async def crud_filter(
    request: Request,
    segment: Annotated[Segment, Depends(segment_params)],
    q: Annotated[str | None, Query(alias="_q", max_length=MAX_Q_LENGTH, description="MongoDB filter as JSON (operator whitelist)")] = None,
) -> Filters:
    parsed = parse_q(q, request.app.state.settings.regex_max_length) if q is not None and q.strip() else None
    return Filters(segment, segment_filter(segment), parsed)


async def get_segments(request: Request) -> SegmentReadModel:
    return request.app.state.segments


class Page:
    """limit/skip (or Mia's _l/_sk, which win), projection and sort."""

    def __init__(
        self,
        request: Request,
        limit: Annotated[int | None, Query(ge=1, le=MAX_COUNT, description="default 50, capped at 200")] = None,
        skip: Annotated[int | None, Query(ge=0, le=MAX_SKIP)] = None,
        l: Annotated[int | None, Query(alias="_l", ge=1, le=MAX_COUNT, description="limit, capped at 200")] = None,
        sk: Annotated[int | None, Query(alias="_sk", ge=0, le=MAX_SKIP, description="skip")] = None,
        p: Annotated[str | None, Query(alias="_p", max_length=2000, pattern=FIELDS_PATTERN, description="fields, comma-separated")] = None,
        s: Annotated[str | None, Query(alias="_s", max_length=500, pattern=SORT_PATTERN, description="sort, e.g. -updated_at,email")] = None,
    ):
        settings = request.app.state.settings
        wanted = l if l is not None else limit
        self.requested_limit = wanted
        self.limit = min(wanted if wanted is not None else settings.default_limit, settings.max_limit)
        self.skip = sk if sk is not None else (skip or 0)
        self.projection = parse_projection(p)
        self.sort = parse_sort(s)


def to_model(doc: dict) -> CustomerSV:
    try:
        return CustomerSV.model_validate(public_document(doc))
    except ValidationError:
        # A document that does not fit the model is still shown, untyped, rather than a 500.
        return CustomerSV.model_construct(**public_document(doc))


@router.get("", response_model=CustomerPage, response_model_exclude_unset=True,
            summary="List customers (segment filters and Mia-Platform CRUD parameters)")
def list_customers(
    collection: Annotated[Collection, Depends(get_collection)],
    segments: Annotated[SegmentReadModel, Depends(get_segments)],
    filters: Annotated[Filters, Depends(crud_filter)],
    page: Annotated[Page, Depends()],
) -> CustomerPage:
    if filters.in_memory(page.sort):
        emails = segments.select(filters.segment, page.sort, page.skip + page.limit)[page.skip:]
        docs = segments.documents(emails, page.projection)
    else:
        docs = collection.find(filters.mongo, page.projection).sort(page.sort).skip(page.skip).limit(page.limit)
    items = [to_model(d) for d in docs]
    return CustomerPage(items=items, count=len(items), limit=page.limit, skip=page.skip)


@router.get("/count", response_model=CountBody, summary="Count customers matching the filters")
def count_customers(
    collection: Annotated[Collection, Depends(get_collection)],
    segments: Annotated[SegmentReadModel, Depends(get_segments)],
    filters: Annotated[Filters, Depends(crud_filter)],
) -> CountBody:
    if filters.in_memory():
        return CountBody(count=len(segments.select(filters.segment)))
    return CountBody(count=collection.count_documents(filters.mongo))


@router.get("/export", summary="Stream matching customers as NDJSON",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}},
                             "description": "one customer document per line"}})
def export_customers(
    request: Request,
    collection: Annotated[Collection, Depends(get_collection)],
    segments: Annotated[SegmentReadModel, Depends(get_segments)],
    filters: Annotated[Filters, Depends(crud_filter)],
    page: Annotated[Page, Depends()],
) -> StreamingResponse:
    # Unlike the list, an export has no limit unless one is asked for.
    limit = page.requested_limit or 0
    if filters.in_memory(page.sort):
        emails = segments.select(filters.segment, page.sort)[page.skip:][:limit or None]
        docs = (d for at in range(0, len(emails), EXPORT_BATCH)
                for d in segments.documents(emails[at:at + EXPORT_BATCH], page.projection))
    else:
        docs = collection.find(filters.mongo, page.projection, batch_size=EXPORT_BATCH).sort(page.sort) \
            .skip(page.skip).limit(limit)
    # Read the first now so a MongoDB outage is a 503, not a broken stream.
    first = next(docs, None)

    def lines() -> Iterator[bytes]:
        try:
            doc = first
            while doc is not None:
                yield to_model(doc).model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
                doc = next(docs, None)
        finally:
            docs.close()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/{email}", response_model=CustomerSV, response_model_exclude_unset=True,
            summary="One customer by email (case-insensitive)",
            responses={404: {"model": ErrorBody, "description": "No customer with this email"}})
def get_customer(
    email: Annotated[str, Path(max_length=320, examples=["jane.doe@example.com"])],
    collection: Annotated[Collection, Depends(get_collection)],
) -> CustomerSV:
    key = normalise_email(email)
    doc = collection.find_one({"_id": key}, {HIDDEN: 0}) if key else None
    if doc is None:
        raise ApiError(404, "not_found", f"no customer with email {key!r}")
    return to_model(doc)
