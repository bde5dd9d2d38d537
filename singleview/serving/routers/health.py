"""Liveness and readiness; both open (no API key)."""
from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError

from ..db import ensure_indexes
from ..models import Health, Ready

router = APIRouter(tags=["health"])
log = logging.getLogger("singleview.serving")


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, summary="MongoDB is reachable and the segment read model loaded",
            responses={503: {"model": Ready, "description": "MongoDB not reachable, or the segments loading"}})
def readyz(request: Request):
    state = request.app.state
    segments = state.segments.ready
    try:
        state.client.admin.command("ping")
    except PyMongoError as exc:
        log.warning("readiness: MongoDB not reachable (%s)", type(exc).__name__)
        return JSONResponse(Ready(status="unavailable", mongodb=False, segments=segments).model_dump(), 503)
    if not state.indexes_ready:  # MongoDB was down at start-up: finish the job now
        try:
            ensure_indexes(state.collection, state.settings)
            state.indexes_ready = True
        except PyMongoError as exc:
            log.warning("index creation failed: %s", exc)
    if not segments:
        return JSONResponse(Ready(status="loading", mongodb=True, segments=False).model_dump(), 503)
    return Ready(status="ok", mongodb=True, segments=True)
