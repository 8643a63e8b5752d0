"""The null app: anomalyd's predict route with no store and no model behind it.

It decodes the body with anomalyd's own msgspec decoder and encodes a fixed
``PredictResponse`` with its encoder, and runs under the very same gunicorn settings as
``anomalyd serve`` (it reuses ``anomalyd.server.Service``, only the app differs). The
ratio of anomalyd's predict throughput to this one's is what the store, the model, the
checks and the stats middleware cost.

    python bench/null_app.py --bind 127.0.0.1:8001 --data-dir DIR

It stores nothing, but ``Service`` still locks and checks its data directory at start
(a second service on one directory is refused), so it gets an empty one of its own.
"""

from __future__ import annotations

import argparse

import falcon

from anomalyd import schemas
from anomalyd import settings as settings_module
from anomalyd.api.common import read_body
from anomalyd.server import Service

_decode = schemas.predict_decoder.decode
_encode = schemas.encoder.encode


class NullPredict:
    def __init__(self, max_body: int) -> None:
        self._max_body = max_body

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, series_id: str
    ) -> None:
        point = _decode(read_body(req, self._max_body))
        resp.data = _encode(
            schemas.PredictResponse(False, "v1", point.value / 1e9, 1.0)
        )


def create_null_app(max_body: int) -> falcon.App:
    app = falcon.App()
    app.add_route("/predict/{series_id}", NullPredict(max_body))
    return app


class NullService(Service):
    def load(self) -> falcon.App:
        return create_null_app(self.settings.max_body_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--data-dir", required=True, help="an empty directory")
    args = parser.parse_args()
    # The settings a user gets by default (ANOMALYD_* env included), as anomalyd serve.
    found, _ = settings_module.load({"bind": args.bind, "data_dir": args.data_dir})
    NullService(found).run()


if __name__ == "__main__":
    main()
