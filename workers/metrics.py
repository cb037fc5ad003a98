"""A worker's own Prometheus metrics (prometheus_client, one registry per worker).

The worker sends `render()` with every heartbeat, and the API's `/metrics` shows it with a
`worker` label; `FACTPATCH_METRICS_PORT` also serves the registry from the worker itself
(`serve_http`), for a Prometheus that scrapes every process.

| metric | labels | what |
|---|---|---|
| `factpatch_edit_duration_seconds` | editor, outcome | writer time of the batch an edit was in |
| `factpatch_edit_latency_seconds` | editor, outcome | accepted → resolved, queueing included |
| `factpatch_guard_rejections_total` | editor, reason | edits the guard (or a non-finite delta) refused |
| `factpatch_worker_revision` | role | the revision this worker serves |
| `factpatch_query_duration_seconds` | kind | a query's time in the worker (waiting for its batch included) |
| `factpatch_query_batch_size` | | queries decoded together |
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

from contract.protocol import CommandRecord

logger = logging.getLogger(__name__)

SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class WorkerMetrics:
    def __init__(self) -> None:
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.edit_duration = Histogram("factpatch_edit_duration_seconds",
                                       "Writer time of the batch an edit was in, by editor and outcome.",
                                       ["editor", "outcome"], buckets=SECONDS, registry=self.registry)
        self.edit_latency = Histogram("factpatch_edit_latency_seconds",
                                      "Edit accepted to resolved (queueing included), by editor and outcome.",
                                      ["editor", "outcome"], buckets=SECONDS, registry=self.registry)
        self.guard_rejections = Counter("factpatch_guard_rejections", "Edits refused by the guard, by reason.",
                                        ["editor", "reason"], registry=self.registry)
        self.revision = Gauge("factpatch_worker_revision", "The revision this worker serves.", ["role"],
                              registry=self.registry)
        self.query_duration = Histogram("factpatch_query_duration_seconds", "Query time in the worker, by kind.",
                                        ["kind"], buckets=SECONDS, registry=self.registry)
        self.query_batch = Histogram("factpatch_query_batch_size", "Queries decoded together as one batch.",
                                     buckets=BATCH_SIZES, registry=self.registry)

    def edits_resolved(self, records: Sequence[CommandRecord], *, editor: str, seconds: float) -> None:
        """Record a resolved edit group: its writer time, each edit's latency, the guard's refusals."""
        for record in records:
            outcome = record.status
            self.edit_duration.labels(editor, outcome).observe(seconds)
            latency = _latency(record)
            if latency is not None:
                self.edit_latency.labels(editor, outcome).observe(latency)
            if outcome == "rejected":
                reason = record.error.code if record.error is not None and record.error.code else "rejected"
                self.guard_rejections.labels(editor, reason).inc()

    def serving(self, *, role: str, revision: int) -> None:
        self.revision.clear()
        self.revision.labels(role).set(revision)

    def query(self, kind: str, seconds: float) -> None:
        self.query_duration.labels(kind).observe(seconds)

    def batch(self, size: int) -> None:
        self.query_batch.observe(size)

    def render(self) -> str:
        return generate_latest(self.registry).decode()


def serve_http(metrics: WorkerMetrics, port: int, host: str = "0.0.0.0") -> None:
    """Serve the worker's registry on `host:port/metrics` from a daemon thread."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=metrics.registry)
    logger.info("worker metrics on http://%s:%d/metrics", host, port)


def _latency(record: CommandRecord) -> float | None:
    if record.applied_at is None:
        return None
    try:
        start = datetime.fromisoformat(record.created_at.replace("Z", "+00:00"))
        end = datetime.fromisoformat(record.applied_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max((end - start).total_seconds(), 0.0)
