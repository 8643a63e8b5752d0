"""anomalyd's gunicorn worker: requests reach a thread only once they have arrived.

gunicorn's gthread worker gives a thread to each accepted connection, which then waits
for and reads the request with a blocking socket: idle or trickling clients (no token
needed) hold every thread and stall the service. Here the worker's main thread owns
every connection. Its selector loop reads each one without blocking into a buffer and
finds where the request ends (``anomalyd.framing``); only a complete request goes to a
thread, which parses it with gunicorn's parser from memory and writes the answer. So:

- an idle or trickling client costs a file descriptor and a little memory, never a
  thread; a request must arrive whole within ``timeout`` seconds from its first byte,
  and a connection with no request under way is closed after ``keepalive`` seconds;
- requests that write run on their own pool of ``write_threads`` threads (see
  ``anomalyd.write_routes``), so writers waiting for LMDB's single writer lock never
  take the threads predicts need; past a bound of queued writes: 503 + Retry-After;
- request bytes held in memory are charged to ``anomalyd.budget.BUDGET``: 503 +
  Retry-After when a request would exceed ``max_inflight_bytes``;
- every error the worker or gunicorn's parser answers carries the JSON error body;
- keep-alive and pipelining work as in gthread; a response must leave within
  ``timeout`` seconds, or the client is cut off.

At ``worker_connections`` (sized from the file-descriptor limit) a new connection
closes the one that has been idle longest (then the oldest partial request), so
clients holding connections cannot lock others out.
"""

from __future__ import annotations

import errno
import selectors
import socket
import sys
import time
from collections import deque
from concurrent import futures

from gunicorn.workers.gthread import ThreadWorker

from anomalyd.balance import Spread, Spreads
from anomalyd.budget import BUDGET
from anomalyd.connection import (
    ARRIVING,
    BUSY,
    CLOSED,
    CLOSING,
    IDLE,
    Conn,
    ServesJobs,
    take_job,
)
from anomalyd.framing import HEAD, Refuse
from anomalyd.refusals import Refuses
from anomalyd.write_routes import is_write

# Set by the master (anomalyd.server) from the settings before it forks the workers.
CLIENT_TIMEOUT = 60.0  # timeout: a request's arrival, a response's departure
WRITE_THREADS = 4
MAX_INFLIGHT_BYTES: int | None = None
MAX_BODY_BYTES = 64 * 1024 * 1024
SPREAD: Spread | None = None

# Writes queued per write thread beyond the ones running before a 503: room for a
# burst (40 concurrent fits of one series must all be stored), bounded so writers
# piling up behind a stopped writer get a quick 503 instead of waiting minutes.
WRITE_QUEUE_PER_THREAD = 16
# After the answer that closes a connection, unread bytes the client still sends are
# read and dropped for a while (so the kernel does not reset the connection and lose
# the answer), as gunicorn's close_graceful does, but without blocking the loop.
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024
# A stopping worker (SIGTERM, HUP reload) keeps idle keep-alive connections this long
# for a request a client may already be sending, answered with Connection: close.
STOP_LINGER = 2.0
RECV = 64 * 1024
RECV_BODY = 1024 * 1024


def configure(settings, spread: Spread | None = None) -> None:
    """Called in the master before it forks (and again on HUP)."""
    global CLIENT_TIMEOUT, WRITE_THREADS, MAX_INFLIGHT_BYTES, MAX_BODY_BYTES, SPREAD
    SPREAD = spread
    CLIENT_TIMEOUT = float(settings.timeout)
    WRITE_THREADS = settings.write_threads
    MAX_INFLIGHT_BYTES = settings.max_inflight_bytes
    MAX_BODY_BYTES = settings.max_body_bytes


class BufferedThreadWorker(Refuses, ServesJobs, Spreads, ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # gthread closes keep-alive connections past this; here idle ones wait in
        # the poller at no thread's cost, and worker_connections bounds them all.
        self.max_keepalived = sys.maxsize
        self.write_pool: futures.ThreadPoolExecutor | None = None
        self.write_load = 0  # writes handed to the write pool and not finished
        self.write_cap = WRITE_THREADS * (1 + WRITE_QUEUE_PER_THREAD)
        self.idle: deque = deque()  # (deadline, conn), deadline order
        self.arriving: deque = deque()
        self.closing: deque = deque()
        self.idle_limit = float(self.cfg.keepalive or 5)
        self._notified = 0.0

    def init_process(self) -> None:
        BUDGET.configure(MAX_INFLIGHT_BYTES)
        self.send_timeout = CLIENT_TIMEOUT
        self.write_pool = futures.ThreadPoolExecutor(max_workers=WRITE_THREADS)
        self.spread = SPREAD  # its slot is chosen at fork (anomalyd.server)
        super().init_process()

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        self.poller.register(
            self.method_queue.fileno(),
            selectors.EVENT_READ,
            self.method_queue.run_callbacks,
        )
        self.set_accept_enabled(True)
        self.count_connections()  # the others may now leave connections to it
        while self.alive:
            self._tick()
            if not self.is_parent_alive():
                break
        self.set_accept_enabled(False)
        self.count_connections(accepting=False)
        # Finish what was started: requests in threads and requests arriving are
        # served (with Connection: close); idle connections get STOP_LINGER.
        limit = time.monotonic() + STOP_LINGER
        idle = [c for d, c in self.idle if c.state == IDLE and c.deadline == d]
        for conn in idle:
            conn.deadline = min(conn.deadline, limit)
        self.idle = deque(sorted(((c.deadline, c) for c in idle), key=lambda e: e[0]))
        graceful = time.monotonic() + self.cfg.graceful_timeout
        while self.nr_conns > 0 and time.monotonic() < graceful:
            self._tick()
        for queue in (self.idle, self.arriving, self.closing):
            for _, conn in queue:
                self.close_now(conn)
        self.tpool.shutdown(wait=False)
        self.write_pool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for s in self.sockets:
            s.close()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._notified > 1.0:
            self.notify()
            self.count_connections(self.alive)
            self._notified = now
        timeout = self.until_resume(1.0, now)
        for queue in (self.arriving, self.idle, self.closing):
            if queue:
                timeout = min(timeout, max(0.0, queue[0][0] - now))
        try:
            events = self.poller.select(timeout)
        except OSError as e:
            if e.errno != errno.EINTR:
                raise
            events = []
        for key, _ in events:
            if isinstance(key.data, Conn):
                self.on_readable(key.data)
            else:
                key.data(key.fileobj)
        now = time.monotonic()
        self.resume_accepting(now)
        self.expire(now)

    def expire(self, now: float) -> None:
        while self.arriving and self.arriving[0][0] <= now:
            deadline, conn = self.arriving.popleft()
            if conn.state == ARRIVING and conn.deadline == deadline:
                if conn.scan.stage != HEAD:  # the head came, the body did not
                    self.refuse(conn, 408, "the request did not arrive in time")
                else:
                    self.close_now(conn)
        while self.idle and self.idle[0][0] <= now:
            deadline, conn = self.idle.popleft()
            if conn.state == IDLE and conn.deadline == deadline:
                if conn.has_bytes():  # a request came in the meantime: serve it
                    self.on_readable(conn)
                else:
                    self.close_now(conn)
        while self.closing and self.closing[0][0] <= now:
            deadline, conn = self.closing.popleft()
            if conn.state == CLOSING and conn.deadline == deadline:
                self.close_now(conn)

    # -- connections -----------------------------------------------------------------

    def accept(self, listener) -> None:
        if self.defer_accept(time.monotonic()):
            return
        try:
            sock, client = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        if self.nr_conns >= self.worker_connections and not self.evict():
            sock.close()
            return
        sock.setblocking(False)
        conn = Conn(sock, client, listener.getsockname(), MAX_BODY_BYTES)
        self.nr_conns += 1
        self.count_connections()
        self.to_idle(conn, self.idle_limit)

    def evict(self) -> bool:
        """Make room for a new connection: close the one lingering after its answer
        longest, else the one idle longest, else the oldest partial request."""
        for queue, state in (
            (self.closing, CLOSING),
            (self.idle, IDLE),
            (self.arriving, ARRIVING),
        ):
            while queue:
                deadline, conn = queue.popleft()
                if conn.state == state and conn.deadline == deadline:
                    self.close_now(conn)
                    return True
        return False

    def register(self, conn: Conn) -> None:
        if not conn.registered:
            self.poller.register(conn.sock, selectors.EVENT_READ, conn)
            conn.registered = True

    def unregister(self, conn: Conn) -> None:
        if conn.registered:
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            conn.registered = False

    def to_idle(self, conn: Conn, seconds: float) -> None:
        if not self.alive:
            seconds = min(seconds, STOP_LINGER)
        conn.state = IDLE
        conn.deadline = time.monotonic() + seconds
        self.idle.append((conn.deadline, conn))
        self.register(conn)

    def to_arriving(self, conn: Conn) -> None:
        conn.state = ARRIVING
        conn.deadline = time.monotonic() + CLIENT_TIMEOUT
        self.arriving.append((conn.deadline, conn))
        self.register(conn)

    def close_now(self, conn: Conn) -> None:
        if conn.state == CLOSED:
            return
        self.unregister(conn)
        conn.state = CLOSED
        try:
            conn.sock.close()
        except OSError:
            pass
        self.nr_conns -= 1
        self.count_connections(self.alive)
        if conn.charged:
            BUDGET.give_back(conn.charged)
            conn.charged = 0
        conn.buf = bytearray()

    def close_politely(self, conn: Conn) -> None:
        """Send FIN, then read and drop what the client still sends for a while."""
        if conn.charged:
            BUDGET.give_back(conn.charged)
            conn.charged = 0
        conn.buf = bytearray()
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close_now(conn)
            return
        conn.state = CLOSING
        conn.drained = 0
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self.closing.append((conn.deadline, conn))
        self.register(conn)

    def on_readable(self, conn: Conn) -> None:
        size = RECV
        scan = conn.scan
        if scan.stage != HEAD and scan.end > len(conn.buf):
            size = max(RECV, min(scan.end - len(conn.buf), RECV_BODY))
        try:
            data = conn.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close_now(conn)
            return
        if conn.state == CLOSING:
            conn.drained += len(data)
            if not data or conn.drained > LINGER_BYTES:
                self.close_now(conn)
            return
        if not data:  # the client hung up; a partial request is dropped
            self.close_now(conn)
            return
        extra = len(conn.buf) + len(data) - conn.charged
        if extra > 0:
            if not BUDGET.try_take(extra):
                self.refuse_busy(conn, "request bodies in memory (max_inflight_bytes)")
                return
            conn.charged += extra
        conn.buf += data
        if conn.state == IDLE:
            self.to_arriving(conn)
        self.advance(conn)

    def advance(self, conn: Conn) -> None:
        """Scan what arrived; check a request once its head is in; hand it to a
        thread once complete."""
        scan = conn.scan
        had_head = scan.stage != HEAD
        try:
            done = scan.feed(conn.buf)
        except Refuse as r:
            self.refuse(conn, r.status, r.description, r.title)
            return
        if not had_head and scan.stage != HEAD and not self.admit(conn, done):
            return
        if done:
            self.dispatch(conn)

    def admit(self, conn: Conn, done: bool) -> bool:
        """Checks once the head is known, before the body is read."""
        scan = conn.scan
        conn.write = is_write(scan.method, scan.path)
        if scan.doubtful:  # gunicorn's parser refuses it in a thread
            return True
        if conn.write and self.write_load >= self.write_cap:
            self.refuse_busy(conn, "writes waiting for the store")
            return False
        if not scan.chunked:  # the whole declared body, at once
            need = scan.end - conn.charged
            if need > 0:
                if not BUDGET.try_take(need):
                    self.refuse_busy(
                        conn, "request bodies in memory (max_inflight_bytes)"
                    )
                    return False
                conn.charged += need
        if scan.expect_continue and not done:
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass
        return True

    def dispatch(self, conn: Conn) -> None:
        if conn.write and self.write_load >= self.write_cap:
            self.refuse_busy(conn, "writes waiting for the store")
            return
        job = take_job(conn)
        conn.state = BUSY
        self.unregister(conn)
        if job.write:
            self.write_load += 1
            pool = self.write_pool
        else:
            pool = self.tpool
        future = pool.submit(self.serve, conn, job)
        future.add_done_callback(
            lambda f: self.method_queue.defer(self.served, conn, job, f)
        )

    def served(self, conn: Conn, job, future) -> None:
        """Back on the main thread once a thread has answered a request."""
        BUDGET.give_back(job.charge)
        if job.write:
            self.write_load -= 1
        try:
            keep = bool(future.result())
        except BaseException:  # noqa: BLE001 - serve() answers every error itself
            keep = False
        if conn.state == CLOSED:
            return
        if not keep:
            self.close_politely(conn)
            return
        try:
            conn.sock.setblocking(False)
        except OSError:
            self.close_now(conn)
            return
        if conn.buf:  # a pipelined request is already (partly) here
            self.to_arriving(conn)
            self.advance(conn)
        else:
            self.to_idle(conn, self.idle_limit)
