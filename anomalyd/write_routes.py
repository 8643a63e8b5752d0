"""The requests that write to the store, told apart from the request line alone.

LMDB has one writer for every process on the store: a worker stopped inside a write
transaction (SIGSTOP, a debugger, a machine swapping) makes every other write wait. So
writes run on their own pool of ``write_threads`` threads per worker and everything
else on the ``threads`` pool: waiting writes can never take the threads predicts need.
This is the one list of routes that write; ``tests/test_network.py`` checks it against
the app's routes, so a new route that writes cannot be forgotten here.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

# (method, first path segment) of every route that writes.
WRITES = frozenset(
    {
        (b"POST", b"fit"),  # POST /fit/{series_id}
        (b"POST", b"observe"),  # POST /observe/{series_id}[/batch]
        (b"DELETE", b"series"),  # DELETE /series/{series_id}
        (b"PUT", b"streams"),  # PUT /streams/{series_id}
        (b"DELETE", b"streams"),  # DELETE /streams/{series_id}
    }
)
_WRITE_METHODS = frozenset(method for method, _ in WRITES)


def is_write(method: bytes, target: bytes) -> bool:
    """Whether the request ``method target`` may write, read as the app routes it.

    The app routes on the percent-decoded path with leading slashes ignored, and
    gunicorn accepts absolute-form targets (``http://host/fit/x``): all are seen here
    the same way, so no spelling of a write lands on the read pool.
    """
    if method not in _WRITE_METHODS:
        return False
    path = target.split(b"?", 1)[0]
    if b"%" in path:
        path = unquote_to_bytes(path)
    if not path.startswith(b"/"):  # absolute-form: scheme://authority/path
        scheme_end = path.find(b"://")
        slash = path.find(b"/", scheme_end + 3) if scheme_end >= 0 else -1
        if slash < 0:
            return False
        path = path[slash:]
    first = path.lstrip(b"/").split(b"/", 1)[0]
    return (method, first) in WRITES
