"""The API's Prometheus metrics, with prometheus_client, in one registry per app.

Three sources end up on `GET /metrics`:

* request counters and latency histograms, fed by the middleware, and rate-limit refusals;
* gauges read from the log at scrape time (queue depth, head revision, edits by status, live
  workers by role), by `StateCollector`;
* each live worker's own figures (edit latency by editor and outcome, guard rejections, query
  latency and batch size, the worker's revision), which a worker sends with its heartbeat as
  exposition text. `StateCollector` parses them and re-labels every sample with `worker="<id>"`,
  so one scrape of the API shows the whole deployment. A worker's figures are at most one
  heartbeat old (`FACTPATCH_WRITER__HEARTBEAT_SECONDS`, and at once after each revision).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from contract.protocol import WorkerInfo

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STATUSES = ("queued", "applying", "applied", "failed", "rejected", "rolled_back", "superseded")
ROLES = ("writer", "replica", "standby")


class HttpMetrics:
    """The app's registry: HTTP figures here, the log and the workers through `attach`."""

    def __init__(self) -> None:
        disable_created_metrics()  # no `_created` series: they double the output and nobody graphs them
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("factpatch_http_requests", "HTTP requests answered.",
                                ["method", "route", "status"], registry=self.registry)
        self.duration = Histogram("factpatch_http_request_duration_seconds", "HTTP request latency, seconds.",
                                  ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.limited = Counter("factpatch_rate_limited", "Requests refused with 429, by limit.", ["kind"],
                               registry=self.registry)

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)

    def rate_limited(self, kind: str) -> None:
        self.limited.labels(kind).inc()

    def attach(self, collector: StateCollector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StateCollector:
    """Scrape-time figures: the log's gauges and every live worker's own metrics."""

    def __init__(self, *, pending: Callable[[], int], head: Callable[[], int | None],
                 edits_by_status: Callable[[str], int], workers: Callable[[], Sequence[WorkerInfo]]) -> None:
        self._pending, self._head, self._by_status, self._workers = pending, head, edits_by_status, workers

    def describe(self) -> list[Metric]:
        return []  # collected fresh on every scrape; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("factpatch_queue_depth", "Accepted requests not yet resolved.",
                                value=self._pending())
        head = self._head()
        if head is not None:
            yield GaugeMetricFamily("factpatch_revision", "Head revision of the edit log.", value=head)
        edits = GaugeMetricFamily("factpatch_edits", "Edits in the log, by status.", labels=["status"])
        for status in STATUSES:
            edits.add_metric([status], self._by_status(status))
        yield edits
        workers = list(self._workers())
        by_role = GaugeMetricFamily("factpatch_workers", "Live workers, by role.", labels=["role"])
        for role in ROLES:
            by_role.add_metric([role], sum(w.role == role for w in workers))
        yield by_role
        yield from merge_worker_metrics(workers)


def merge_worker_metrics(workers: Iterable[WorkerInfo]) -> list[Metric]:
    """Every worker's exposition text as families with a `worker` label (one family per name)."""
    merged: dict[str, Metric] = {}
    for worker in workers:
        if not worker.metrics:
            continue
        try:
            families = list(text_string_to_metric_families(worker.metrics))
        except ValueError:
            logger.warning("worker %s sent metrics that do not parse; skipped", worker.id)
            continue
        for family in families:
            target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            target.samples += [_relabel(s, worker.id) for s in family.samples]
    return list(merged.values())


def _relabel(sample: Sample, worker_id: str) -> Sample:
    return Sample(sample.name, {"worker": worker_id, **sample.labels}, sample.value, sample.timestamp,
                  sample.exemplar)
