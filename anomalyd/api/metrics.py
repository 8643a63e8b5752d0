"""GET /metrics: Prometheus text exposition format 0.0.4, from the shared region."""

from __future__ import annotations

import falcon

from anomalyd.api.alerts import metrics_lines as alert_lines
from anomalyd.stats import HISTOGRAMS, PROMETHEUS_EDGES, Stats
from anomalyd.store import Store
from anomalyd.store.outbox import Outbox
from anomalyd.store.stream_reads import count_streams

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The timer starts once the request has fully arrived (the worker hands only
# complete requests to the app): slow clients do not count as the service's time.
_HISTOGRAM_HELP = {
    "inference": "Time inside the service handling single-point predicts, from the "
    "request fully received, in seconds.",
    "batch_inference": "Time inside the service handling batch predicts, from the "
    "request fully received, in seconds.",
    "training": "Time inside the service handling fits, from the request fully "
    "received, durable commit included, in seconds.",
    "observe": "Time inside the service handling single-point observes, from the "
    "request fully received, durable commit included, in seconds.",
    "batch_observe": "Time inside the service handling batch observes, from the "
    "request fully received, durable commit included, in seconds.",
}


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())


def render(store: Store, stats: Stats, outbox: Outbox | None = None) -> str:
    snapshot = stats.snapshot()
    lines = [
        (
            "# HELP anomalyd_requests_total HTTP requests answered, by route, method "
            "and status."
        ),
        "# TYPE anomalyd_requests_total counter",
    ]
    for (route, method, status), n in sorted(stats.requests(snapshot).items()):
        labels = _labels(route=route, method=method, status=str(status or "other"))
        lines.append(f"anomalyd_requests_total{{{labels}}} {n}")
    for name in HISTOGRAMS:
        metric = f"anomalyd_{name}_latency_seconds"
        histogram = stats.histogram(name, snapshot)
        lines.append(f"# HELP {metric} {_HISTOGRAM_HELP[name]}")
        lines.append(f"# TYPE {metric} histogram")
        for edge, n in zip(PROMETHEUS_EDGES, histogram.cumulative(PROMETHEUS_EDGES)):
            lines.append(f'{metric}_bucket{{le="{edge:.9g}"}} {n}')
        lines.append(f'{metric}_bucket{{le="+Inf"}} {histogram.count}')
        lines.append(f"{metric}_sum {histogram.sum!r}")
        lines.append(f"{metric}_count {histogram.count}")
    lines += [
        (
            "# HELP anomalyd_worker_requests_total Requests answered by each worker slot "
            "(a respawned worker takes over the slot of the one it replaces)."
        ),
        "# TYPE anomalyd_worker_requests_total counter",
    ]
    for slot, n in enumerate(stats.worker_requests(snapshot)):
        if n:
            lines.append(f'anomalyd_worker_requests_total{{worker="{slot}"}} {n}')
    lines += [
        "# HELP anomalyd_series_trained Series with at least one model in the store.",
        "# TYPE anomalyd_series_trained gauge",
        f"anomalyd_series_trained {store.series_trained()}",
        "# HELP anomalyd_store_size_bytes Bytes of the LMDB map in use.",
        "# TYPE anomalyd_store_size_bytes gauge",
        f"anomalyd_store_size_bytes {store.size_bytes()}",
        "# HELP anomalyd_streams Streams in the store.",
        "# TYPE anomalyd_streams gauge",
        f"anomalyd_streams {count_streams(store)}",
        "# HELP anomalyd_points_observed_total Points learned by streams.",
        "# TYPE anomalyd_points_observed_total counter",
        f"anomalyd_points_observed_total {stats.total('points_observed', snapshot)}",
        "# HELP anomalyd_anomaly_episodes_opened_total Anomaly episodes opened.",
        "# TYPE anomalyd_anomaly_episodes_opened_total counter",
        (
            "anomalyd_anomaly_episodes_opened_total "
            f"{stats.total('episodes_opened', snapshot)}"
        ),
        (
            "# HELP anomalyd_worker_restarts_total Workers that exited without being "
            "asked to and were replaced."
        ),
        "# TYPE anomalyd_worker_restarts_total counter",
        f"anomalyd_worker_restarts_total {stats.restarts()}",
    ]
    if outbox is not None:
        lines += alert_lines(outbox)
    return "\n".join(lines) + "\n"


class MetricsResource:
    def __init__(self, store: Store, stats: Stats, outbox: Outbox | None = None):
        self._store = store
        self._stats = stats
        self._outbox = outbox

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.text = render(self._store, self._stats, self._outbox)
        resp.content_type = CONTENT_TYPE
        resp.cache_control = ["no-store"]
