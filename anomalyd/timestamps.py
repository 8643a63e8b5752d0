"""Timestamps: every accepted form turned into int64 Unix seconds, in one place.

Accepted everywhere (fit, batch predict, single predict, CSV cells):

- an integer number of Unix seconds (``1694336640``);
- a fractional number of Unix seconds, what ``time.time()`` gives (``1694336640.25``);
- a string of digits, with an optional fraction (``"1694336640"``, ``"1694336640.25"``);
- an ISO-8601 date-time string (``"2023-09-10T09:04:00Z"``, ``"2023-09-10 09:04:00"``
  as NAB writes it, ``"2023-09-10T11:04:00+02:00"``); one without an offset is UTC.

Timestamps are stored as whole seconds: a fraction is cut (floored), so a timestamp
names the second it falls in. Every timestamp lies between 0 and ``MAX_TIMESTAMP`` (the
last second of year 9999) so that every one is also a date.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

import msgspec
import numpy as np

# Unix seconds up to the end of year 9999, so every timestamp is also a valid date.
MAX_TIMESTAMP = 253402300799

# The JSON forms, checked by msgspec while decoding (a number out of range is refused
# there, with its path). Strings are checked by ``seconds`` after decoding.
IntSeconds = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMESTAMP)]
FloatSeconds = Annotated[float, msgspec.Meta(ge=0, lt=MAX_TIMESTAMP + 1)]
TimestampIn = IntSeconds | FloatSeconds | str

_DIGITS = re.compile(r"([0-9]+)(?:\.[0-9]+)?")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SECOND = dt.timedelta(seconds=1)


def seconds(raw: float | str, field: str = "$.timestamp") -> int:
    """Unix seconds (floored) from any accepted form; ValueError naming ``field``."""
    if type(raw) is int:
        value = raw
    elif type(raw) is float:
        if not 0 <= raw < MAX_TIMESTAMP + 1:
            raise ValueError(f"{field} must be between 0 and {MAX_TIMESTAMP}")
        return int(raw)
    elif type(raw) is str:
        value = _string_seconds(raw, field)
    else:
        raise ValueError(f"{field} must be Unix seconds or an ISO-8601 date-time")
    if not 0 <= value <= MAX_TIMESTAMP:
        raise ValueError(f"{field} must be between 0 and {MAX_TIMESTAMP}")
    return value


def _string_seconds(raw: str, field: str) -> int:
    # isascii: "²".isdigit() is True but int("²") fails.
    if raw.isascii():
        digits = _DIGITS.fullmatch(raw)
        if digits is not None:
            return int(digits.group(1))
    try:
        moment = dt.datetime.fromisoformat(raw)
    except (ValueError, TypeError):
        raise ValueError(
            f"{field} must be Unix seconds or an ISO-8601 date-time, got {raw[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return (moment - _EPOCH) // _SECOND
    except OverflowError:  # an offset that moves year 1 or 9999 out of range
        raise ValueError(f"{field} must be between 0 and {MAX_TIMESTAMP}") from None


def fill_numbers(out: np.ndarray, numbers: list, offset: int) -> None:
    """Write JSON numbers (already range-checked by msgspec) into ``out[offset:]`` as
    int64 seconds, in one numpy assignment: a float is cut towards zero, which is the
    floor for the non-negative numbers allowed."""
    out[offset : offset + len(numbers)] = np.fromiter(numbers, np.int64, len(numbers))


def fill_mixed(
    out: np.ndarray, items: list, offset: int, field: str, first: int
) -> None:
    """Like ``fill_numbers`` for items that include strings, one by one; an error
    names ``field[first + j]`` for ``items[j]``, the index in the whole column."""
    for j, item in enumerate(items):
        out[offset + j] = seconds(item, f"{field}[{first + j}]")
