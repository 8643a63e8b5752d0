"""The Falcon application: ``create_app`` wires given parts, ``get_app`` builds real ones."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

import falcon

from anomalyd import errors
from anomalyd.api.alerts import add_alert_routes
from anomalyd.api.dashboard import DashboardResource
from anomalyd.api.docs import OpenAPIResource
from anomalyd.api.fit import FitResource
from anomalyd.api.health import HealthResource
from anomalyd.api.large import SWITCH_INTERVAL, LargeRequests
from anomalyd.api.login import LoginResource, LogoutResource
from anomalyd.api.metrics import MetricsResource
from anomalyd.api.plot import PlotResource
from anomalyd.api.predict import BatchPredictResource, PredictResource
from anomalyd.api.series import SeriesCollection, SeriesItem
from anomalyd.api.stream_dashboard import StreamDashboard
from anomalyd.api.stream_plot import StreamPlot
from anomalyd.api.streams import add_stream_routes
from anomalyd.auth import BearerAuth
from anomalyd.delivery import AlertService
from anomalyd.plot import drawing_of
from anomalyd.session import Sessions
from anomalyd.settings import Settings
from anomalyd.stats import Stats, counter_of, histogram_of
from anomalyd.store import Store

log = logging.getLogger("anomalyd")

# Which latency histogram a (route, method) feeds; other requests are only counted.
_TIMED = {
    ("/predict/{series_id}", "POST"): "inference",
    ("/predict/{series_id}/batch", "POST"): "batch_inference",
    ("/fit/{series_id}", "POST"): "training",
    ("/observe/{series_id}", "POST"): "observe",
    ("/observe/{series_id}/batch", "POST"): "batch_observe",
}


class StatsMiddleware:
    """Times every request and records it before the response leaves the worker."""

    def __init__(self, stats: Stats) -> None:
        self._observe = stats.observe
        # (uri_template, method) -> (counter, histogram) offsets, worked out once.
        self._where: dict[tuple[str | None, str], tuple[int, int]] = {}

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        elapsed = time.perf_counter() - req.context.started
        key = (req.uri_template, req.method)
        where = self._where.get(key)
        if where is None:
            route = key[0] or "other"
            where = (
                counter_of(route, key[1]),
                histogram_of(_TIMED.get((route, key[1]))),
            )
            if len(self._where) < 256:  # clients choose the method: stay bounded
                self._where[key] = where
        status = resp.status_code
        # Only answered requests (2xx) are timed: a burst of 404s or 422s must not move
        # the latency figures. The request counters count every status.
        timed = where[1] if 200 <= status < 300 else -1
        self._observe(where[0], timed, status, elapsed)


class HeadRouter(falcon.routing.CompiledRouter):
    """Falcon's router, with HEAD answered by the GET responder of every route.

    RFC 9110 9.3.2: HEAD is GET without the body. Falcon already drops the body of a
    HEAD response and sets Content-Length from the body the responder produced, so the
    headers are those of the GET. Mapping it here, once, covers every route that has
    a GET, and the 405 of the others lists HEAD in its Allow header with GET.
    """

    def map_http_methods(self, resource: object, **kwargs) -> dict:
        method_map = super().map_http_methods(resource, **kwargs)
        if "GET" in method_map and "HEAD" not in method_map:
            method_map["HEAD"] = method_map["GET"]
        return method_map


def create_app(
    settings: Settings,
    store: Store,
    stats: Stats,
    clock: Callable[[], float] = time.time,
    alerts: AlertService | None = None,
) -> falcon.App:
    """Build the application from the parts it is given; does no I/O."""
    if alerts is None:
        alerts = AlertService(settings, store)
    sessions = browser_sessions(settings, clock)
    middleware: list = [StatsMiddleware(stats)]
    if settings.api_token:
        # Not installed without a token: the predict path pays nothing for it.
        middleware.append(BearerAuth(settings.api_token, sessions))
    app = falcon.App(middleware=middleware, router=HeadRouter())
    # ?version= (empty) must be a 400, not silently the latest version.
    app.req_options.keep_blank_qs_values = True
    app.req_options.strip_url_path_trailing_slash = False
    errors.install(app)
    max_body = settings.max_body_bytes
    large = LargeRequests(large_slots(settings))
    app.add_route(
        "/fit/{series_id}",
        FitResource(store, settings.min_points, max_body, clock, large),
    )
    app.add_route("/predict/{series_id}", PredictResource(store, max_body))
    app.add_route(
        "/predict/{series_id}/batch", BatchPredictResource(store, max_body, large)
    )
    app.add_route("/series", SeriesCollection(store))
    app.add_route("/series/{series_id}", SeriesItem(store))
    tables = add_stream_routes(app, settings, store, stats, alerts.alerts)
    add_alert_routes(app, alerts)
    app.add_route("/healthcheck", HealthResource(store, stats))
    app.add_route("/metrics", MetricsResource(store, stats, alerts.outbox))
    app.add_route("/", DashboardResource(store, StreamDashboard(tables), alerts.outbox))
    shared_cache = not settings.api_token
    app.add_route(
        "/plot",
        PlotResource(store, shared_cache, StreamPlot(tables, shared_cache)),
    )
    app.add_route(
        "/openapi.json",
        OpenAPIResource(bool(settings.api_token), settings.min_points),
    )
    if sessions is not None:
        add_login_routes(app, settings.api_token, sessions)
    return app


def large_slots(settings: Settings) -> int:
    """Large requests a worker runs at once: one thread always stays for the rest."""
    if settings.max_large_requests == 0:
        return 0
    return max(1, min(settings.max_large_requests, settings.threads - 1))


def browser_sessions(settings: Settings, clock: Callable[[], float]) -> Sessions | None:
    """With a token, the sessions a browser gets from the login page; else None."""
    if not settings.api_token:
        return None
    return Sessions(settings.api_token, settings.session_hours * 3600, clock)


def add_login_routes(app: falcon.App, token: str, sessions: Sessions) -> None:
    app.add_route("/login", LoginResource(token, sessions))
    app.add_route("/logout", LogoutResource(sessions))


def max_readers(settings: Settings) -> int:
    """Reader slots: every thread of every worker, the backup tool, and headroom."""
    return max(
        126, 2 * settings.workers * (settings.threads + settings.write_threads) + 32
    )


def get_app(settings: Settings, stats: Stats, **store_checks) -> falcon.App:
    """Build the real parts inside a worker (after fork) and the app around them.

    ``store_checks`` (``lock_file``, ``on_fatal``) come from the master: see
    ``anomalyd.store.base``.
    """
    sys.setswitchinterval(SWITCH_INTERVAL)  # small requests behind large ones
    store = Store(
        os.path.abspath(settings.data_dir),
        map_size=settings.map_size,
        max_readers=max_readers(settings),
        lru_size=settings.lru_size,
        drawer=drawing_of,
        **store_checks,
    )
    alerts = AlertService(settings, store)
    alerts.open()  # the receivers' cursors, before this worker's first request
    app = create_app(settings, store, stats, alerts=alerts)
    alerts.start()  # delivers once this worker holds the alerts' lock
    return app
