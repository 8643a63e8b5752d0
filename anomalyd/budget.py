"""One per-process budget of request-body bytes held in memory.

The worker's event loop charges every byte of a request it buffers (headers and body,
as they arrive, or a whole declared ``Content-Length`` at once) and gives them back
when the request is answered or its connection closes. The app may charge what it
makes from a body on top (decompressed gzip) through the same object. A request that
would take the process over ``max_inflight_bytes`` is refused with 503 and
``Retry-After`` instead of growing the worker towards an out-of-memory kill.

The limit is set from ``max_inflight_bytes`` when a worker starts (``configure``);
until then (unit tests, tools) it is unlimited.
"""

from __future__ import annotations

import threading


class Budget:
    """A counter of bytes in use under a limit, safe to share between threads."""

    __slots__ = ("_lock", "limit", "peak", "refused", "used")

    def __init__(self, limit: int | None = None) -> None:
        self._lock = threading.Lock()
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.refused = 0

    def configure(self, limit: int | None) -> None:
        with self._lock:
            self.limit = limit

    def try_take(self, n: int) -> bool:
        """Take ``n`` bytes if they fit under the limit; False (nothing taken) if not."""
        with self._lock:
            used = self.used + n
            if self.limit is not None and used > self.limit and n > 0:
                self.refused += 1
                return False
            self.used = used
            self.peak = max(self.peak, used)
            return True

    def give_back(self, n: int) -> None:
        with self._lock:
            self.used -= n


BUDGET = Budget()
