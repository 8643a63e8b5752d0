"""Reading the CSV file ``anomalyd replay`` sends: ``timestamp,value`` rows, checked
whole before anything is sent, every error naming its line. No HTTP here.

- An optional header naming the columns ``timestamp`` and ``value`` (either order,
  any case); without one the columns are timestamp then value.
- Timestamps in every form the service takes (``anomalyd.timestamps``): Unix seconds
  (with a fraction, cut to the second), ISO-8601, NAB's ``YYYY-MM-DD HH:MM:SS`` (UTC).
- Values: finite decimal numbers. Blank lines are skipped; a byte order mark is fine.
- Rows in time order (equal timestamps are fine): a stream never goes back in time.
  A row earlier than the one before it stops the replay (``stop``, nothing is sent),
  or is sent with the timestamp of the row before it (``clamp``, as bench/nab.py does
  with NAB's one such row), or is left out (``skip``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from typing import Literal, NamedTuple

import numpy as np

from anomalyd import timestamps as ts

OutOfOrder = Literal["stop", "clamp", "skip"]
COLUMNS = ("timestamp", "value")


class BadFile(ValueError):
    """A file that cannot be replayed; the message names the line."""


class Rows(NamedTuple):
    timestamps: np.ndarray  # int64 Unix seconds, in time order
    values: np.ndarray  # float64
    lines: np.ndarray  # the line (from 1, as an editor counts) of each point
    digest: str  # of the file's bytes: the idempotency keys derive from it
    moved: list[int]  # lines sent with the timestamp of the row before (clamp)
    skipped: list[int]  # lines left out (skip)


def _when(seconds: int) -> str:
    return str(np.datetime64(seconds, "s")).replace("T", " ")


def read(data: bytes, out_of_order: OutOfOrder = "stop") -> Rows:
    """The points of a CSV file's bytes; ``BadFile`` naming the line otherwise."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BadFile(f"line {line}: not UTF-8 text (byte {exc.start})") from None
    stamps: list[int] = []
    values: list[float] = []
    lines: list[int] = []
    moved: list[int] = []
    skipped: list[int] = []
    at_time, at_value = 0, 1
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    first = True
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            line = reader.line_num
            if len(row) != 2:
                raise BadFile(
                    f"line {line}: {len(row)} fields; expected 2 (timestamp,value)"
                )
            if first:
                first = False
                names = [cell.strip().lower() for cell in row]
                if sorted(names) == sorted(COLUMNS):
                    at_time, at_value = names.index("timestamp"), names.index("value")
                    continue
            try:
                seconds = ts.seconds(row[at_time].strip(), f"line {line}: timestamp")
            except ValueError as exc:
                raise BadFile(str(exc)) from None
            value = _number(row[at_value], line)
            if stamps and seconds < stamps[-1]:
                if out_of_order == "skip":
                    skipped.append(line)
                    continue
                if out_of_order == "stop":
                    raise BadFile(
                        f"line {line}: timestamp {_when(seconds)} is earlier than the "
                        f"row before it (line {lines[-1]}, {_when(stamps[-1])}); a "
                        "stream never goes back in time. Nothing was sent. "
                        "--out-of-order clamp sends such a row with the timestamp of "
                        "the row before it, --out-of-order skip leaves it out"
                    )
                moved.append(line)
                seconds = stamps[-1]
            stamps.append(seconds)
            values.append(value)
            lines.append(line)
    except csv.Error as exc:
        raise BadFile(f"line {reader.line_num}: not valid CSV ({exc})") from None
    if not values:
        raise BadFile("the file has no rows of data (timestamp,value)")
    return Rows(
        np.array(stamps, np.int64),
        np.array(values, np.float64),
        np.array(lines, np.int64),
        digest,
        moved,
        skipped,
    )


def _number(cell: str, line: int) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise BadFile(f"line {line}: value {cell[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise BadFile(f"line {line}: value {cell[:40]!r} is not a finite number")
    return value
