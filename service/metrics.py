"""A tiny Prometheus text-format registry (exposition format 0.0.4); no prometheus_client.

Counters and histograms are updated by the middleware; gauges (queue depth, revision, edits by
status, workers by role) are read from the log and the transport at scrape time and passed to
`render` as `GaugeFamily`s.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _header(name: str, help_text: str, kind: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, labels: Labels) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return _header(self.name, self.help, "counter") + [
            f"{self.name}{_labels(labels)} {_number(v)}" for labels, v in items
        ]


@dataclass
class _Series:
    counts: list[int]
    total: float = 0.0
    count: int = 0


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, _Series] = {}
        self._lock = threading.Lock()

    def observe(self, labels: Labels, value: float) -> None:
        with self._lock:
            series = self._series.setdefault(labels, _Series(counts=[0] * len(self.buckets)))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series.counts[i] += 1
            series.total += value
            series.count += 1

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted((k, _Series(list(s.counts), s.total, s.count)) for k, s in self._series.items())
        out = _header(self.name, self.help, "histogram")
        for labels, series in items:
            for bound, n in zip((*self.buckets, math.inf), (*series.counts, series.count), strict=True):
                out.append(f"{self.name}_bucket{_labels((*labels, ('le', _number(bound))))} {n}")
            out.append(f"{self.name}_sum{_labels(labels)} {_number(series.total)}")
            out.append(f"{self.name}_count{_labels(labels)} {series.count}")
        return out


@dataclass
class GaugeFamily:
    """A gauge computed at scrape time."""

    name: str
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return _header(self.name, self.help, "gauge") + [
            f"{self.name}{_labels(labels)} {_number(v)}" for labels, v in self.samples
        ]


class HttpMetrics:
    """The request counter and latency histogram the middleware feeds."""

    def __init__(self) -> None:
        self.requests = Counter("factpatch_http_requests_total", "HTTP requests answered.")
        self.duration = Histogram("factpatch_http_request_duration_seconds", "HTTP request latency, seconds.")

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.inc((("method", method), ("route", route), ("status", str(status))))
        self.duration.observe((("method", method), ("route", route)), seconds)

    def render(self, gauges: Iterable[GaugeFamily] = ()) -> str:
        lines = self.requests.lines() + self.duration.lines()
        for family in gauges:
            lines += family.lines()
        return "\n".join(lines) + "\n"
