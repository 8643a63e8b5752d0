"""GET /plot?series_id=X[&version=vN]: a version drawn as SVG (and, handed to
``anomalyd.api.stream_plot``, GET /plot?stream=X: a stream).

Caching: a version never changes, so ``(series id, version, model, anomalyd release)``
names one drawing forever. That is the strong ETag. With an explicit version the
response is also ``immutable`` for a year, so a browser does not even ask again.
Without one the latest version can move on at any fit, so the response says
``no-cache``: the browser keeps it but revalidates each time, and gets a 304 (no
training data read, nothing drawn) until a new version exists. ``Content-Location``
names the version that was drawn.
"""

from __future__ import annotations

import hashlib

import falcon
import msgspec
import pygal

import anomalyd
from anomalyd.api.common import check_series_id, if_none_matches, parse_version
from anomalyd.api.stream_plot import StreamPlot
from anomalyd.detectors import Model
from anomalyd.errors import BadRequest
from anomalyd.plot import drawing_of, render_drawing
from anomalyd.store import Store

ONE_YEAR = 31536000
SVG = "image/svg+xml"


def plot_etag(series_id: str, version: int, model: Model) -> str:
    """The strong validator of a drawing.

    The model's numbers are in it so that a store wiped and refilled, where ``v1``
    comes back as another model, does not match a browser's cached ``v1``; anomalyd's
    and pygal's releases are in it because another release may draw it differently.
    """
    fields = (
        anomalyd.__version__,
        pygal.__version__,
        series_id,
        version,
        *msgspec.structs.astuple(model),
    )
    digest = hashlib.blake2b(repr(fields).encode(), digest_size=12).hexdigest()
    return f"v{version}-{digest}"


class PlotResource:
    def __init__(
        self,
        store: Store,
        shared_cache: bool = True,
        streams: StreamPlot | None = None,
    ) -> None:
        self._store = store
        # With an API token configured, a shared cache must not keep what needed it.
        self._scope = "public" if shared_cache else "private"
        self._streams = streams

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        series_id = req.get_param("series_id")
        if self._streams is not None:
            stream = req.get_param("stream")
            if stream is not None and series_id is not None:
                raise BadRequest("give series_id or stream, not both")
            if stream is not None:
                self._streams.on_get(req, resp, stream)
                return
        if series_id is None:
            raise BadRequest(
                "series_id or stream is required: /plot?series_id=X[&version=vN] or "
                "/plot?stream=X[&since=T&until=T]"
            )
        check_series_id(series_id)
        for name in ("since", "until"):
            if req.get_param(name) is not None:
                raise BadRequest(
                    f"{name} is for the plot of a stream (?stream=X); a version's "
                    "plot draws its training data whole"
                )
        requested = parse_version(req)
        version, model = self._store.model(series_id, requested)
        etag = plot_etag(series_id, version, model)
        resp.etag = etag
        # Series ids are made of URL-safe characters only: nothing to quote.
        resp.content_location = f"/plot?series_id={series_id}&version=v{version}"
        if requested is None:
            resp.cache_control = [self._scope, "no-cache"]
        else:
            resp.cache_control = [self._scope, f"max-age={ONE_YEAR}", "immutable"]
        if if_none_matches(req.if_none_match, etag):
            resp.status = falcon.HTTP_304
            return
        # Stored at fit time for large versions: a plot costs the same for any size.
        drawing = self._store.drawing(series_id, version)
        if drawing is None:  # a small version, or one stored before drawings were
            _, _, timestamps, values = self._store.training_data(series_id, version)
            drawing = drawing_of(model, timestamps, values)
        resp.content_type = SVG
        resp.data = render_drawing(series_id, version, model, drawing)
