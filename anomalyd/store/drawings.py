"""What ``/plot`` draws of a version, as stored at fit time (the ``drawings`` table).

A drawing is the reduced training line (first, last, and each bucket's minimum and
maximum: ``plot.reduce_extremes``), the points beyond a bound that are marked (reduced
the same way), and two counts: all points and all points beyond a bound. It is a few
thousand points whatever the version's size, so a plot costs the same for a version of
a thousand points or of sixteen million.

Stored as ``<QQII`` (points, beyond, line length, marked length) then the line's int64
timestamps and float64 values, then the marked points' timestamps and values, all
little endian.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

_HEADER = struct.Struct("<QQII")


class Drawing(NamedTuple):
    line_timestamps: np.ndarray  # int64, ascending
    line_values: np.ndarray  # float64
    marked_timestamps: np.ndarray
    marked_values: np.ndarray
    points: int  # points in the version
    beyond: int  # of them beyond a bound

    def encode(self) -> bytes:
        return b"".join(
            (
                _HEADER.pack(
                    self.points,
                    self.beyond,
                    self.line_values.shape[0],
                    self.marked_values.shape[0],
                ),
                self.line_timestamps.astype("<i8", copy=False).tobytes(),
                self.line_values.astype("<f8", copy=False).tobytes(),
                self.marked_timestamps.astype("<i8", copy=False).tobytes(),
                self.marked_values.astype("<f8", copy=False).tobytes(),
            )
        )

    @classmethod
    def decode(cls, raw: bytes) -> Drawing:
        """Decode a stored drawing (copied out of the transaction's buffer)."""
        points, beyond, n_line, n_marked = _HEADER.unpack_from(raw)
        if len(raw) != _HEADER.size + 16 * (n_line + n_marked):
            raise ValueError(f"{len(raw)} bytes for {n_line} + {n_marked} points")
        at = _HEADER.size
        arrays = []
        for n in (n_line, n_line, n_marked, n_marked):
            dtype = "<i8" if len(arrays) % 2 == 0 else "<f8"
            arrays.append(np.frombuffer(raw, dtype=dtype, count=n, offset=at).copy())
            at += 8 * n
        return cls(*arrays, points, beyond)
