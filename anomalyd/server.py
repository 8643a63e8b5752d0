"""gunicorn embedded (``BaseApplication``) and its hooks.

The hooks are one-liners around functions that can be tested on their own. Nothing here
opens the store: LMDB is opened in each worker after fork (``load``), never in the master.
The master only checks the data directory's files and holds its lock
(``anomalyd.supervise``), and halts instead of respawning workers that cannot run.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import tempfile

from gunicorn.app.base import BaseApplication
from gunicorn.errors import HaltServer

from anomalyd import access_log, supervise
from anomalyd import worker as worker_module
from anomalyd.balance import Spread
from anomalyd.regions import remove_stale_regions
from anomalyd.settings import Settings
from anomalyd.stats import Stats

log = logging.getLogger("anomalyd")


WORKER_CLASSES = {
    "gthread": "anomalyd.worker.BufferedThreadWorker",
    "sync": "sync",
}


def runtime_dir() -> tuple[str, bool]:
    """$RUNTIME_DIRECTORY under systemd, else a private temporary directory (owned).

    Regions left by services killed with SIGKILL are removed first (never a live one).
    """
    given = os.environ.get("RUNTIME_DIRECTORY")
    path = given.split(":")[0] if given else tempfile.gettempdir()
    try:
        for stale in remove_stale_regions(path if given else None):
            log.warning("removed %s, left by an anomalyd that was killed", stale)
        if given:
            return path, False
        return tempfile.mkdtemp(prefix="anomalyd-"), True
    except OSError as exc:
        raise supervise.runtime_dir_error(path, exc) from None


def free_slot(workers: dict, size: int) -> int | None:
    """The lowest worker slot no live worker holds: a respawned worker reuses its slot.

    None when every slot is held (more workers added with TTIN than the region has).
    """
    taken = {getattr(w, "anomalyd_slot", None) for w in workers.values()}
    return next((i for i in range(size) if i not in taken), None)


# File descriptors a worker keeps for itself: listeners, LMDB, logs, pipes, threads.
RESERVED_FDS = 128
# Connections per worker at most, whatever the descriptor limit: each costs a few KiB
# of memory (Python objects and kernel socket buffers).
MAX_CONNECTIONS = 16384


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open-files limit above %d", soft)
    return soft


def worker_connections(fd_limit: int) -> int:
    """Connections a worker may hold: what its descriptors allow, within bounds."""
    return max(64, min(fd_limit - RESERVED_FDS, MAX_CONNECTIONS))


def worker_slots(workers: int) -> int:
    """Slots for twice the workers: a reload (HUP) runs both generations for a while."""
    return 2 * workers


def died_unasked(live_workers: dict, wanted: int) -> bool:
    """After a worker is reaped: True if the master did not retire it (reload, TTOU),
    i.e. fewer workers are left than it wants and it will spawn a replacement."""
    return len(live_workers) < wanted


def log_like_gunicorn(level: str) -> None:
    """anomalyd's own messages in gunicorn's error log format, with their level."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter(
                "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
                "%Y-%m-%d %H:%M:%S %z",
            )
        )
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level.upper())


class Service(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        """Raises StartupError (the message says what to do) when anomalyd cannot run."""
        self.settings = settings
        log_like_gunicorn(settings.log_level)
        data_dir = os.path.abspath(settings.data_dir)
        self.guard = supervise.guard_data_dir(data_dir)
        try:
            self.runtime_dir, self._owns_runtime_dir = runtime_dir()
            slots = worker_slots(settings.workers)
            try:
                self.stats = Stats.create(
                    self.runtime_dir, slots, settings.threads + settings.write_threads
                )
            except OSError as exc:
                if self._owns_runtime_dir:
                    shutil.rmtree(self.runtime_dir, ignore_errors=True)
                raise supervise.runtime_dir_error(self.runtime_dir, exc) from None
        except BaseException:
            self.guard.release()
            raise
        self.board = supervise.Board(slots)
        self.spread = Spread(slots)
        self.boot_watch = supervise.BootWatch(self.board, data_dir)
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": [s.bind],
            "workers": s.workers,
            # Requests reach a thread once they have arrived (see anomalyd.worker).
            "worker_class": WORKER_CLASSES[s.worker_class],
            "worker_connections": worker_connections(raise_fd_limit()),
            # gunicorn silently turns "sync" with threads > 1 into gthread.
            "threads": s.threads if s.worker_class == "gthread" else 1,
            "timeout": s.timeout,
            "graceful_timeout": 10,
            "keepalive": s.keepalive,
            "loglevel": s.log_level,
            "errorlog": "-",
            "proc_name": "anomalyd",
            "worker_tmp_dir": self.runtime_dir,
            # Under the runtime directory, so two services on one host never share it.
            "control_socket": os.path.join(self.runtime_dir, "gunicorn.ctl"),
            "pre_fork": lambda arbiter, worker: self.pre_fork(arbiter.WORKERS, worker),
            "post_fork": lambda arbiter, worker: self.post_fork(worker.anomalyd_slot),
            "post_worker_init": lambda worker: self.board.mark_booted(
                worker.anomalyd_slot, worker.pid
            ),
            "child_exit": lambda arbiter, worker: self.child_exit(
                arbiter.WORKERS, arbiter.num_workers, worker, bool(arbiter.LISTENERS)
            ),
            "on_exit": lambda arbiter: self.cleanup(),
        }
        options.update(access_log.options(s.access_log))
        for key, value in options.items():
            self.cfg.set(key, value)
        worker_module.configure(s, self.spread)  # inherited by the workers at fork

    def pre_fork(self, live_workers: dict, worker) -> None:
        worker.anomalyd_slot = free_slot(live_workers, self.stats.worker_slots)
        if worker.anomalyd_slot is None:
            log.warning("no free stats slot: this worker's requests are not counted")

    def post_fork(self, slot: int | None) -> None:
        self.stats.use_worker_slot(slot)
        self.spread.use_slot(slot)

    def child_exit(
        self, live_workers: dict, wanted: int, worker=None, running: bool = True
    ) -> None:
        unasked = died_unasked(live_workers, wanted)
        if unasked:
            self.stats.record_restart()
        if worker is None or not running:
            return  # the master is stopping already: nothing to decide
        reason = self.boot_watch.reason_to_halt(worker, retired=not unasked)
        if reason is not None:
            log.critical("%s", reason)
            raise HaltServer(reason, 3)

    def stop_service(self, reason: str) -> None:
        """In a worker: ask the master to stop the service, and leave gracefully."""
        self.board.request_halt(reason)
        os.kill(os.getpid(), signal.SIGTERM)

    def load(self):
        from anomalyd.app import get_app

        return get_app(
            self.settings,
            self.stats,
            lock_file=self.guard.lock_file,
            on_fatal=self.stop_service,
        )

    def cleanup(self) -> None:
        self.stats.remove()
        if self._owns_runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        self.guard.release()
