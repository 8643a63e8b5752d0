"""gunicorn embedded (``BaseApplication``) and its hooks.

The hooks are one-liners around functions that can be tested on their own. Nothing here
opens the store: LMDB is opened in each worker after fork (``load``), never in the master.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from gunicorn.app.base import BaseApplication

from anomalyd.settings import Settings
from anomalyd.stats import Stats


def runtime_dir() -> tuple[str, bool]:
    """$RUNTIME_DIRECTORY under systemd, else a private temporary directory (owned)."""
    given = os.environ.get("RUNTIME_DIRECTORY")
    if given:
        return given.split(":")[0], False
    return tempfile.mkdtemp(prefix="anomalyd-"), True


def free_slot(workers: dict, size: int) -> int:
    """The lowest worker slot no live worker holds: a respawned worker reuses its slot."""
    taken = {getattr(w, "anomalyd_slot", None) for w in workers.values()}
    return next(i for i in range(size) if i not in taken)


class Service(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime_dir, self._owns_runtime_dir = runtime_dir()
        self.stats = Stats.create(self.runtime_dir, settings.workers, settings.threads)
        self._spawned = 0
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": [s.bind],
            "workers": s.workers,
            "worker_class": s.worker_class,
            "threads": s.threads,
            "timeout": s.timeout,
            "graceful_timeout": 10,
            "keepalive": s.keepalive,
            "loglevel": s.log_level,
            "errorlog": "-",
            "accesslog": None,
            "proc_name": "anomalyd",
            "worker_tmp_dir": self.runtime_dir,
            "pre_fork": lambda arbiter, worker: self.pre_fork(arbiter.WORKERS, worker),
            "post_fork": lambda arbiter, worker: self.stats.use_worker_slot(
                worker.anomalyd_slot
            ),
            "on_exit": lambda arbiter: self.cleanup(),
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def pre_fork(self, live_workers: dict, worker) -> None:
        worker.anomalyd_slot = free_slot(live_workers, self.settings.workers)
        self._spawned += 1
        if self._spawned > self.settings.workers:
            self.stats.record_restart()

    def load(self):
        from anomalyd.app import get_app

        return get_app(self.settings, self.stats)

    def cleanup(self) -> None:
        self.stats.close()
        if self._owns_runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        else:
            try:
                os.unlink(self.stats.path)
            except FileNotFoundError:
                pass
