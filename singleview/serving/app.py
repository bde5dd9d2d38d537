"""The FastAPI application factory."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from . import errors, portal
from .config import Settings
from .db import Indexes, make_client
from .metrics import Metrics, MetricsMiddleware
from .routers import customers, health, webhooks
from .segments import SegmentReadModel

log = logging.getLogger("singleview.serving")

DEV_WARNING = """
**********************************************************************
*  DEVELOPMENT MODE WITHOUT API KEYS: /customers-sv is OPEN to anyone *
*  who can reach this port. Never run this way in production; set     *
*  SINGLEVIEW_API_KEYS instead.                                       *
**********************************************************************"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Raises ConfigError without API keys unless settings.dev."""
    settings = settings or Settings.from_env()
    settings.check()
    if not settings.api_keys:
        log.warning(DEV_WARNING)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        client = make_client(settings)
        app.state.client = client
        app.state.collection = client[settings.database][settings.collection]
        # Start anyway if MongoDB is down: /readyz reports it and makes the indexes once it is up.
        app.state.indexes = Indexes(app.state.collection, settings)
        app.state.indexes.ensure()
        app.state.segments = SegmentReadModel(app.state.collection, settings.segments_refresh_seconds)
        app.state.segments.start()
        # A small collection is ready before the first request; a large one loads on while
        # the API serves (/readyz says not ready, segment queries answer 503).
        app.state.segments.tried.wait(settings.segments_start_wait)
        try:
            with webhooks.hubspot_publisher(app.state, settings):
                yield
        finally:
            app.state.segments.stop()
            client.close()

    app = FastAPI(
        title="singleview",
        summary="Customer single view: CRM, orders and marketing merged per customer email.",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    errors.install(app)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(health.router)
    app.include_router(customers.router)
    app.include_router(portal.router)
    app.include_router(webhooks.router)
    app.openapi = lambda: without_422(app)
    return app


def without_422(app: FastAPI) -> dict:
    """FastAPI documents 422 for invalid input; this API answers 400 (errors.py)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        for path in schema["paths"].values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
