"""Prometheus metrics: this process's request counts and latency by route, and the outbox queue (read from the
database at each scrape, so any process tells the same)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        # A registry per app, so several apps in one process (tests) never collide.
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency by route",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

        self.outbox_jobs = Gauge("outbox_jobs", "Outbox jobs by state (at the last scrape)", ["state"],
                                 registry=self.registry)
        self.outbox_lag = Gauge("outbox_oldest_due_seconds", "How long the oldest due pending job has waited",
                                registry=self.registry)

    def set_outbox(self, counts: dict[str, int], oldest_due_seconds: float) -> None:
        for state, count in counts.items():
            self.outbox_jobs.labels(state).set(count)
        self.outbox_lag.set(oldest_due_seconds)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
