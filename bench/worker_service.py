"""anomalyd with another gunicorn worker class, to compare workers in one bench run.

    python bench/worker_service.py --bind 127.0.0.1:8001 --data-dir DIR --worker deadline

``buffered`` is anomalyd's worker (``anomalyd.worker.BufferedThreadWorker``),
``split`` the same sending each answer's header block and body apart, as gunicorn does
(``anomalyd.coalesce`` off), ``deadline`` the one it replaced
(``bench/legacy_worker.py``), ``gthread`` gunicorn's stock gthread worker. Everything
else is ``anomalyd serve`` with default settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from anomalyd import settings as settings_module
from anomalyd.server import Service
from anomalyd.worker import BufferedThreadWorker

WORKERS = {
    "buffered": "anomalyd.worker.BufferedThreadWorker",
    "split": "worker_service.SplitSendsWorker",
    "deadline": "legacy_worker.DeadlineThreadWorker",
    "gthread": "gthread",
}


class SplitSendsWorker(BufferedThreadWorker):
    coalesce = False


class WorkerService(Service):
    def __init__(self, settings, worker: str) -> None:
        self.worker = worker
        super().__init__(settings)

    def load_config(self) -> None:
        super().load_config()
        self.cfg.set("worker_class", WORKERS[self.worker])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--worker", choices=sorted(WORKERS), required=True)
    args = parser.parse_args()
    found, _ = settings_module.load({"bind": args.bind, "data_dir": args.data_dir})
    WorkerService(found, args.worker).run()


if __name__ == "__main__":
    main()
