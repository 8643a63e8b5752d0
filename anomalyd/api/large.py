"""At most a few large requests at once in a worker, so small ones always find a thread.

A gthread worker has ``threads`` threads; a request that waits for one waits behind
whatever holds them. Four maximum-size fits on a worker of 4 threads made every single
predict sent to it wait for a fit to end (tens of seconds measured). A request whose
body is over ``LARGE_BODY`` bytes (as announced by Content-Length, or once read or
decompressed) takes one of ``max_large_requests`` slots of its worker for as long as it
runs, its streamed answer included; with none free it is answered 503 with Retry-After
at once (before its body is read, when the worker hands requests to the app before
their bodies arrive), and the other threads stay free for small requests.
"""

from __future__ import annotations

import threading

import falcon

LARGE_BODY = 1024 * 1024
# How long a thread running Python code keeps the GIL while another waits for it
# (Python's default: 5 ms). A small request needs the GIL a dozen times (accept,
# read, decode, answer); behind a thread decoding a large body in pieces, each of
# those waits a full interval, which made single predicts take 100+ ms.
SWITCH_INTERVAL = 0.0005


class LargeRequests:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots) if slots > 0 else None

    def enter(self, size: int | None) -> bool:
        """Take a slot when ``size`` makes a request large: True when one was taken
        (give it back with ``leave``); 503 when none is free."""
        if self._free is None or size is None or size <= LARGE_BODY:
            return False
        if not self._free.acquire(blocking=False):
            raise falcon.HTTPServiceUnavailable(
                title="Busy",
                description=f"this worker is running {self.slots} large requests "
                f"(bodies over {LARGE_BODY} bytes; the max_large_requests setting): "
                "retry shortly",
                retry_after=1,
            )
        return True

    def leave(self) -> None:
        self._free.release()
