"""What the server did, in Prometheus's text exposition format (GET /metrics): requests and
errors per route and status, request latency and batch size as histograms. Written by hand:
four metric families do not need prometheus_client, and one Metrics object per app keeps
them out of module state (two apps in one process, as the tests run them, count apart)."""

from __future__ import annotations

import bisect
import dataclasses
from collections import Counter

# latency buckets in seconds: a 32 px model on a CPU answers in milliseconds, a 224 px
# DenseNet under load in seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclasses.dataclass
class Histogram:
    """Observations counted in cumulative `buckets` (upper bounds), with their sum."""

    buckets: tuple[float, ...]
    counts: list[int] = dataclasses.field(default_factory=list)
    total: float = 0.0
    observed: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.observed += 1

    def lines(self, name: str, labels: str) -> list[str]:
        """The exposition lines: one cumulative count per bucket, +Inf, sum and count."""
        lines, running = [], 0
        for bound, count in zip(self.buckets, self.counts):
            running += count
            lines.append(f'{name}_bucket{{{labels}le="{bound:g}"}} {running}')
        lines.append(f'{name}_bucket{{{labels}le="+Inf"}} {self.observed}')
        bare = labels.rstrip(",")
        lines += [f"{name}_sum{{{bare}}} {self.total:.6f}", f"{name}_count{{{bare}}} {self.observed}"]
        return lines


@dataclasses.dataclass
class Metrics:
    """The server's counters. Updated on the event loop only (the middleware and the batch
    worker run there), so they need no lock."""

    requests: Counter = dataclasses.field(default_factory=Counter)  # (route, status) -> count
    latency: dict[str, Histogram] = dataclasses.field(default_factory=dict)  # route -> seconds
    batches: dict[str, Histogram] = dataclasses.field(default_factory=dict)  # route -> images per batch
    in_flight: int = 0

    def request_done(self, route: str, status: int, seconds: float) -> None:
        self.requests[route, status] += 1
        self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch_run(self, route: str, images: int) -> None:
        self.batches.setdefault(route, Histogram(BATCH_BUCKETS)).observe(images)

    def errors(self, route: str | None = None) -> int:
        """Requests answered with a 4xx or 5xx status (on `route`, or on all)."""
        return sum(n for (r, status), n in self.requests.items() if status >= 400 and route in (None, r))

    def exposition(self) -> str:
        """Every metric in Prometheus's text format, version 0.0.4."""
        lines = ["# HELP skinlesion_requests_total HTTP requests answered, by route and status."]
        lines.append("# TYPE skinlesion_requests_total counter")
        for (route, status), count in sorted(self.requests.items()):
            lines.append(f'skinlesion_requests_total{{route="{route}",status="{status}"}} {count}')
        lines += [
            "# HELP skinlesion_request_errors_total HTTP requests answered with a 4xx or 5xx status, by route.",
            "# TYPE skinlesion_request_errors_total counter",
        ]
        for route in sorted({route for route, _ in self.requests}):
            lines.append(f'skinlesion_request_errors_total{{route="{route}"}} {self.errors(route)}')
        lines += [
            "# HELP skinlesion_request_duration_seconds Time from a request's arrival to its answer.",
            "# TYPE skinlesion_request_duration_seconds histogram",
        ]
        for route, histogram in sorted(self.latency.items()):
            lines += histogram.lines("skinlesion_request_duration_seconds", f'route="{route}",')
        lines += [
            "# HELP skinlesion_batch_size Images per forward pass of the model, by route.",
            "# TYPE skinlesion_batch_size histogram",
        ]
        for route, histogram in sorted(self.batches.items()):
            lines += histogram.lines("skinlesion_batch_size", f'route="{route}",')
        lines += [
            "# HELP skinlesion_requests_in_flight Requests being answered now.",
            "# TYPE skinlesion_requests_in_flight gauge",
            f"skinlesion_requests_in_flight {self.in_flight}",
        ]
        return "\n".join(lines) + "\n"
