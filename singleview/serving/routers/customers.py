"""/customers-sv: one customer, lists with segment filters, count, export."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Iterator

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response, StreamingResponse

from ..auth import require_api_key
from ..deps import CollectionDep, SegmentsDep, SettingsDep
from ..errors import ERROR_RESPONSES, ApiError, ErrorBody
from ..models import CountBody, CustomerPage, CustomerSV, customer_json, page_json
from ..strict import reject_unknown_parameters
from ..queries import (
    FIELDS_PATTERN, HIDDEN, MAX_COUNT, MAX_Q_LENGTH, SORT_PATTERN, Segment, combine, normalise_email,
    parse_projection, parse_q, parse_sort, segment_filter,
)
from ..segments import sortable

EXPORT_BATCH = 500
MAX_SKIP = 10_000_000
router = APIRouter(
    prefix="/customers-sv",
    tags=["customers"],
    dependencies=[Depends(require_api_key), Depends(reject_unknown_parameters)],
    responses=ERROR_RESPONSES,
)


@dataclass
class Filters:
    """Segment filters AND the Mia-Platform style `_q` filter.

    A named segment without `_q` is answered from the segment read model
    (serving/segments.py); `_q` is a MongoDB query, a scan on FerretDB.
    """
    segment: Segment
    q: dict | None

    @property
    def mongo(self) -> dict:
        return combine([*segment_filter(self.segment), *([self.q] if self.q else [])])

    def in_memory(self, sort: list[tuple[str, int]] | None = None) -> bool:
        return self.segment.narrows and not self.q and (sort is None or sortable(sort))


async def crud_filter(
    settings: SettingsDep,
    segment: Annotated[Segment, Query()],
    q: Annotated[str | None, Query(alias="_q", max_length=MAX_Q_LENGTH, description="MongoDB filter as JSON (operator whitelist)")] = None,
) -> Filters:
    parsed = parse_q(q, settings.regex_max_length) if q is not None and q.strip() else None
    return Filters(segment, parsed)


class Page:
    """limit/skip (or Mia's _l/_sk, which win), projection and sort."""

    def __init__(
        self,
        settings: SettingsDep,
        limit: Annotated[int | None, Query(ge=1, le=MAX_COUNT, description="default 50, capped at 200")] = None,
        skip: Annotated[int | None, Query(ge=0, le=MAX_SKIP)] = None,
        l: Annotated[int | None, Query(alias="_l", ge=1, le=MAX_COUNT, description="limit, capped at 200")] = None,
        sk: Annotated[int | None, Query(alias="_sk", ge=0, le=MAX_SKIP, description="skip")] = None,
        p: Annotated[str | None, Query(alias="_p", max_length=2000, pattern=FIELDS_PATTERN, description="fields, comma-separated")] = None,
        s: Annotated[str | None, Query(alias="_s", max_length=500, pattern=SORT_PATTERN, description="sort, e.g. -updated_at,email")] = None,
    ):
        wanted = l if l is not None else limit
        self.requested_limit = wanted
        self.limit = min(wanted if wanted is not None else settings.default_limit, settings.max_limit)
        self.skip = sk if sk is not None else (skip or 0)
        self.projection = parse_projection(p)
        self.sort = parse_sort(s)


JSON = "application/json"


@router.get("", response_model=CustomerPage,
            summary="List customers (segment filters and Mia-Platform CRUD parameters)")
def list_customers(
    collection: CollectionDep,
    segments: SegmentsDep,
    filters: Annotated[Filters, Depends(crud_filter)],
    page: Annotated[Page, Depends()],
) -> Response:
    if filters.in_memory(page.sort):
        emails = segments.select(filters.segment, page.sort, page.skip + page.limit)[page.skip:]
        docs = segments.documents(emails, page.projection)
    else:
        docs = list(collection.find(filters.mongo, page.projection).sort(page.sort).skip(page.skip).limit(page.limit))
    return Response(page_json(docs, page.limit, page.skip), media_type=JSON)


@router.get("/count", response_model=CountBody, summary="Count customers matching the filters")
def count_customers(
    collection: CollectionDep,
    segments: SegmentsDep,
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
    collection: CollectionDep,
    segments: SegmentsDep,
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
                yield customer_json(doc) + b"\n"
                doc = next(docs, None)
        finally:
            docs.close()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/{email}", response_model=CustomerSV,
            summary="One customer by email (case-insensitive)",
            responses={404: {"model": ErrorBody, "description": "No customer with this email"}})
def get_customer(
    email: Annotated[str, Path(max_length=320, examples=["jane.doe@example.com"])],
    collection: CollectionDep,
) -> Response:
    key = normalise_email(email)
    doc = collection.find_one({"_id": key}, {HIDDEN: 0}) if key else None
    if doc is None:
        raise ApiError(404, "not_found", f"no customer with email {key!r}")
    return Response(customer_json(doc), media_type=JSON)
