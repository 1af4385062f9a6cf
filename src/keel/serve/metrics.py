"""Serving metrics in Prometheus' text format: request counts, a latency histogram, batch sizes.

Kept per worker process (``--workers N`` gives N sets, one per process that answers /metrics).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Callable

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.n}')
        brace = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{brace} {self.total}", f"{name}_count{brace} {self.n}"]
        return out


class ServeMetrics:
    """Counters and histograms; ``render(model_labels)`` is the /metrics page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        self._latency: dict[str, _Histogram] = {}
        self._batches = _Histogram(_BATCH_BUCKETS)
        self.in_flight = 0                    # changed on the event loop only

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(route, status)] = self._requests.get((route, status), 0) + 1
            hist = self._latency.get(route)
            if hist is None:
                hist = self._latency[route] = _Histogram(_LATENCY_BUCKETS)
            hist.observe(seconds)

    def batch(self, rows: int) -> None:
        with self._lock:
            self._batches.observe(rows)

    def render(self, model: Callable[[], dict[str, str]]) -> str:
        with self._lock:
            lines = ["# HELP keel_serve_requests_total Requests answered, by route and status.",
                     "# TYPE keel_serve_requests_total counter"]
            for (route, status), n in sorted(self._requests.items()):
                lines.append(f'keel_serve_requests_total{{route="{route}",status="{status}"}} {n}')
            lines += ["# HELP keel_serve_request_seconds Time to answer a request.",
                      "# TYPE keel_serve_request_seconds histogram"]
            for route, hist in sorted(self._latency.items()):
                lines += hist.lines("keel_serve_request_seconds", f'route="{route}"')
            lines += ["# HELP keel_serve_batch_rows Rows per model call.",
                      "# TYPE keel_serve_batch_rows histogram"]
            lines += self._batches.lines("keel_serve_batch_rows")
        lines += ["# HELP keel_serve_in_flight Requests being answered now.", "# TYPE keel_serve_in_flight gauge",
                  f"keel_serve_in_flight {self.in_flight}"]
        labels = ",".join(f'{k}="{v}"' for k, v in model().items())
        lines += ["# HELP keel_serve_model_info The model being served (its run and artifact hash).",
                  "# TYPE keel_serve_model_info gauge", f"keel_serve_model_info{{{labels}}} 1"]
        return "\n".join(lines) + "\n"
