"""Prometheus metrics (prometheus_client), one registry per app so that several apps can live in a process."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ternaryclip_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.errors = Counter(
            "ternaryclip_errors", "HTTP requests answered 4xx or 5xx", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "ternaryclip_request_seconds", "time to answer a request", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "ternaryclip_batch_size", "items encoded per batch", ["model", "tower"], buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "ternaryclip_batch_seconds",
            "time to encode one batch",
            ["model", "tower"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("ternaryclip_queue_depth", "items waiting per tower", ["model", "tower"], registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware counting answers and timing them per route (unknown paths count as ``other``)."""

    def __init__(self, app, metrics: ServeMetrics, routes: set[str]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "other"
        start, status = time.perf_counter(), 500

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
