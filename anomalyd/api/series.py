from __future__ import annotations

import datetime as dt

import falcon

from anomalyd import schemas
from anomalyd.api.common import check_series_id, model_out, parse_page
from anomalyd.store import Store


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class SeriesCollection:
    def __init__(self, store: Store) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page, following = self._store.list_series(*parse_page(req, 100))
        resp.data = schemas.encoder.encode(
            schemas.SeriesPage(
                [schemas.SeriesSummary(s, f"v{latest}", n) for s, latest, n in page],
                following,
            )
        )


class SeriesItem:
    def __init__(self, store: Store) -> None:
        self._store = store

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        versions = self._store.versions(series_id)
        resp.data = schemas.encoder.encode(
            schemas.SeriesDetail(
                series_id,
                f"v{versions[-1][0]}",
                [
                    schemas.VersionOut(
                        f"v{v}", r.points_used, _utc(r.created_at), model_out(r.model)
                    )
                    for v, r in versions
                ],
            )
        )

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        check_series_id(series_id)
        deleted = self._store.delete_series(series_id)
        resp.data = schemas.encoder.encode(schemas.DeleteResponse(series_id, deleted))
