"""Prometheus metrics: request counts and latency per route, one registry per app (served by routers/health.py)."""
from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        # A registry per app, not the process-global one: no module state, and
        # several apps (tests) can live in one process.
        self.registry = CollectorRegistry()
        self.requests = Counter("singleview_http_requests", "HTTP requests by route",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("singleview_http_request_duration_seconds",
                                 "HTTP request latency by route", ["method", "route"],
                                 registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))


access_log = logging.getLogger("singleview.serving.access")


class MetricsMiddleware:
    """Pure ASGI middleware that counts, times and logs each request.

    Labels and log lines name the route template, never the raw path or query:
    those hold customers' emails. It replaces uvicorn's access log.
    """

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            elapsed = time.perf_counter() - start
            self.metrics.latency.labels(method, template).observe(elapsed)
            access_log.info('"%s %s" %d %.1f ms', method, template, status["code"], elapsed * 1000)
