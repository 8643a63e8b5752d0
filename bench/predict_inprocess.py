"""The single-predict hot path in this process: the Falcon app called as WSGI.

    .venv/bin/python bench/predict_inprocess.py [--calls 20000] [--rounds 5]

Builds the app with ``create_app`` on a real store in a temporary directory, fits one
model, then calls the app with one prepared WSGI environ per call (a plain JSON
predict) and prints the median and p99 time per call of each round. No HTTP, no
other thread: what the service's own code costs per predict. Run it from two
checkouts in turn to compare them (the figures of one machine at one time).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time

from falcon import testing

from anomalyd.app import create_app
from anomalyd.settings import Settings
from anomalyd.stats import Stats
from anomalyd.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp + "/data", map_size=1 << 26)
        stats = Stats.create(tmp, 2, 4)
        stats.use_worker_slot(0)
        app = create_app(Settings(), store, stats)
        client = testing.TestClient(app)
        fitted = client.simulate_post(
            "/fit/p", json={"timestamps": [1, 2, 3], "values": [1.0, 2.0, 4.0]}
        )
        assert fitted.status_code == 200, fitted.text
        body = b'{"timestamp": 1694336640, "value": 3.0}'
        environ = testing.create_environ(
            path="/predict/p",
            method="POST",
            headers={"Content-Type": "application/json"},
            body=body,
        )
        status = []

        def start_response(line, headers, exc_info=None):
            status.append(line)

        for _ in range(args.rounds):
            times = []
            for _ in range(args.calls):
                call = dict(environ)
                call["wsgi.input"] = io.BytesIO(body)
                started = time.perf_counter()
                b"".join(app(call, start_response))
                times.append(time.perf_counter() - started)
            assert status[-1].startswith("200"), status[-1]
            times.sort()
            print(
                f"predict in process: median {statistics.median(times) * 1e6:.1f} us, "
                f"p99 {times[int(len(times) * 0.99)] * 1e6:.1f} us "
                f"over {args.calls} calls",
                flush=True,
            )
        store.close()
        stats.remove()


if __name__ == "__main__":
    main()
