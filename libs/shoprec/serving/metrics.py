"""Prometheus text exposition of the API's request counts, latency histograms and snapshot
state (``GET /metrics``), kept in-process without a client library."""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict

# Latency buckets in seconds: the API answers in well under a millisecond from memory.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self._hist: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self._sum: dict[str, float] = defaultdict(float)
        self.events_accepted = 0
        self.events_rejected = 0
        self.kafka_delivered = 0
        self.kafka_failed = 0
        self.started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._counts[(method, route, status)] += 1
            self._hist[route][bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sum[route] += seconds

    def events(self, accepted: int, rejected: int) -> None:
        with self._lock:
            self.events_accepted += accepted
            self.events_rejected += rejected

    def produced(self, delivered: int, failed: int) -> None:
        """Events produced to Kafka (stream.source=kafka): acked by the broker, or not."""
        with self._lock:
            self.kafka_delivered += delivered
            self.kafka_failed += failed

    def render(self, snapshot: dict[str, float]) -> str:
        """The text format; ``snapshot``: gauge name -> value (shoprec_snapshot_*)."""
        out = [
            "# HELP shoprec_http_requests_total HTTP requests by method, route and status.",
            "# TYPE shoprec_http_requests_total counter",
        ]
        with self._lock:
            counts = dict(self._counts)
            hist = {r: list(h) for r, h in self._hist.items()}
            sums = dict(self._sum)
            accepted, rejected = self.events_accepted, self.events_rejected
            delivered, failed = self.kafka_delivered, self.kafka_failed
        for (method, route, status), n in sorted(counts.items()):
            out.append(f'shoprec_http_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
        out += [
            "# HELP shoprec_http_request_duration_seconds Time from request to response, by route.",
            "# TYPE shoprec_http_request_duration_seconds histogram",
        ]
        for route, h in sorted(hist.items()):
            running = 0
            for bound, n in zip((*BUCKETS, float("inf")), h, strict=True):
                running += n
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                out.append(f'shoprec_http_request_duration_seconds_bucket{{route="{route}",le="{le}"}} {running}')
            out.append(f'shoprec_http_request_duration_seconds_sum{{route="{route}"}} {sums[route]:.6f}')
            out.append(f'shoprec_http_request_duration_seconds_count{{route="{route}"}} {running}')
        out += [
            "# HELP shoprec_events_total Events posted, by outcome.",
            "# TYPE shoprec_events_total counter",
            f'shoprec_events_total{{outcome="accepted"}} {accepted}',
            f'shoprec_events_total{{outcome="rejected"}} {rejected}',
            "# HELP shoprec_kafka_events_total Events produced to the stream's Kafka topic, by outcome.",
            "# TYPE shoprec_kafka_events_total counter",
            f'shoprec_kafka_events_total{{outcome="delivered"}} {delivered}',
            f'shoprec_kafka_events_total{{outcome="failed"}} {failed}',
        ]
        typed: set[str] = set()
        for name, value in snapshot.items():
            base = name.split("{")[0]
            if base not in typed:
                typed.add(base)
                out.append(f"# TYPE {base} gauge")
            out.append(f"{name} {value:g}")
        return "\n".join(out) + "\n"
