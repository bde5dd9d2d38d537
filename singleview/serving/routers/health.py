"""Liveness, readiness and metrics; all open (no API key)."""
from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import PyMongoError

from ..deps import ClientDep, IndexesDep, MetricsDep, SegmentsDep
from ..models import Health, Ready

router = APIRouter(tags=["health"])
log = logging.getLogger("singleview.serving")


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, summary="MongoDB is reachable and the segment read model loaded",
            responses={503: {"model": Ready, "description": "MongoDB not reachable, or the segments loading"}})
def readyz(client: ClientDep, indexes: IndexesDep, segments: SegmentsDep):
    loaded = segments.ready
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        log.warning("readiness: MongoDB not reachable (%s)", type(exc).__name__)
        return JSONResponse(Ready(status="unavailable", mongodb=False, segments=loaded).model_dump(), 503)
    indexes.ensure()  # MongoDB was down at start-up: finish the job now
    if not loaded:
        return JSONResponse(Ready(status="loading", mongodb=True, segments=False).model_dump(), 503)
    return Ready(status="ok", mongodb=True, segments=True)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(collected: MetricsDep) -> Response:
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
