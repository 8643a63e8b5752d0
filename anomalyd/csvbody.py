"""CSV bodies: ``timestamp,value`` rows under a header, into the arrays of a JSON body.

The header names the two columns (``timestamp`` and ``value``, in either order, any
case); each following line is one point. The timestamp is any form JSON bodies take
(``anomalyd.timestamps``, NAB's ``2014-02-14 14:30:00`` included), the value a decimal
number. Blank lines are skipped. Errors name the line (as a text editor counts them)
and the column. Read with Python's ``csv`` module from the body's bytes a piece at a
time, so the text is never whole in memory twice. No HTTP here.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator

import numpy as np

from anomalyd import ingest
from anomalyd import timestamps as ts
from anomalyd.detectors import InvalidTrainingData

COLUMNS = ("timestamp", "value")
_PIECE = 1024 * 1024


class MalformedBody(ValueError):
    """A body that is not text of its media type at all (400); names where."""


def decode(
    body: bytes | bytearray, min_points: int, keep_timestamps: bool = True
) -> tuple[np.ndarray | None, np.ndarray]:
    """int64 timestamps (None unless ``keep_timestamps``; checked all the same) and
    float64 values of a CSV body, with ``min_points`` checked."""
    # Every row but the last ends with a line break: an upper bound of the rows.
    size = body.count(b"\n") + 1
    values = np.empty(size, np.float64)
    stamps = np.empty(size if keep_timestamps else 0, np.int64)
    reader = csv.reader(_lines(body))
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidTrainingData(
                "the CSV body is empty: it needs a header line 'timestamp,value'"
            )
        names = [name.strip().lower() for name in header]
        if sorted(names) != sorted(COLUMNS):
            raise InvalidTrainingData(
                f"line {reader.line_num}: the header must name the columns timestamp "
                f"and value, got {','.join(header)[:80]!r}"
            )
        at_time, at_value = names.index("timestamp"), names.index("value")
        n = 0
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) != 2:
                raise InvalidTrainingData(
                    f"line {line}: {len(row)} fields; expected 2 (timestamp,value)"
                )
            stamp = row[at_time].strip()
            try:
                seconds = ts.seconds(stamp, f"line {line}, column timestamp")
            except ValueError as exc:
                raise InvalidTrainingData(str(exc)) from None
            if keep_timestamps:
                stamps[n] = seconds
            values[n] = _number(row[at_value], line)
            n += 1
    except csv.Error as exc:
        raise MalformedBody(
            f"the body is not valid CSV: line {reader.line_num}: {exc}"
        ) from None
    if n < min_points:
        raise InvalidTrainingData(
            f"the CSV body has {n} rows of data; {ingest.needed(min_points)} are needed"
        )
    return (stamps[:n].copy() if keep_timestamps else None), values[:n].copy()


def _number(cell: str, line: int) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise InvalidTrainingData(
            f"line {line}, column value: {cell[:40]!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise InvalidTrainingData(
            f"line {line}, column value: {cell[:40]!r} is not a finite number"
        )
    return value


def _lines(body: bytes | bytearray) -> Iterator[str]:
    """The body's lines as text (line breaks kept, as ``csv`` wants), decoded a piece
    of about ``_PIECE`` bytes at a time, cut after a line break."""
    start, end = 0, len(body)
    while start < end:
        cut = body.find(b"\n", min(start + _PIECE, end))
        cut = end if cut < 0 else cut + 1
        try:
            text = body[start:cut].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedBody(
                f"the body is not UTF-8 text: byte {start + exc.start} "
                f"({body[start + exc.start : start + exc.start + 1]!r})"
            ) from None
        if start == 0:
            text = text.removeprefix("\ufeff")  # the byte order mark spreadsheets add
        yield from io.StringIO(text, newline="")
        start = cut
