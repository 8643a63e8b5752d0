"""The streams' online detector: pure Python, no I/O.

A stream's whole memory is one fixed-size ``bytes`` state (``STATE_SIZE`` bytes).
``observe(state, timestamps, values, direction)`` judges each point against what the
state has learned from the points before it, then learns the point, and returns the new
state with one score per point in [0, 1]. Points are taken strictly one after another,
so any split of a sequence into batches, and any save and reload of the state between
them, gives bit-for-bit the same scores and final state.

Two channels; a point's score is the larger of the two:

* range excess: how far a value leaves the minimum-maximum range of the last
  ``BLOCKS * BLOCK_POINTS`` points, in units of that range (kept as the minimum and
  maximum of each block of ``BLOCK_POINTS`` points, so the range forgets whole blocks);
* anomaly likelihood (after Numenta): a z-score of the value against exponentially
  weighted mean and variance, squashed to [0, 1) and averaged over a few points, is
  compared with the distribution of that average over a long horizon; the score is its
  tail probability on a log scale (0 for a median tail, 0.5 for about 7e-6, 1 for
  1e-10).

Alarms are rationed as in Numenta's filter: a second likelihood "red" in a row is cut
to "yellow", and for ``REFRACTORY`` points after a score at or above ``RED`` the output
scores at most ``YELLOW``. ``both`` scores the likelihood of |z| and the range excess on
either side; ``upper`` and ``lower`` have a likelihood of their own side of z. All
three are learned on every point, so the state does not depend on the direction asked
for and a stream may change direction at any time.
See docs/detector.md for why this detector, what was tried and what it cannot see.
"""

# The per-point loop compares floats with conditional expressions rather than min() and
# max(): 16 ns against 124 ns a call here, a dozen times a point.
# ruff: noqa: FURB136, PLR1730

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Sequence
from typing import Literal

import numpy as np

Direction = Literal["upper", "lower", "both"]

# Defaults proposed for the stream settings (docs/detector.md says why).
DEFAULT_THRESHOLD = 0.51
DEFAULT_WARMUP = 200
DEFAULT_DIRECTION: Direction = "both"

FORMAT_VERSION = 1

# Tuned on half of NAB (docs/detector.md); changing one changes every stream's scores,
# so a change needs a new FORMAT_VERSION if old states must keep their meaning.
Z_ALPHA = 1.0 / 2000  # weight of a new point in the mean and variance of values
Z_KNEE = 0.5  # |z| below this is usual: the squashed z-score is 0 there
SHORT_ALPHA = 0.2  # weight of a new point in the short average of squashed z-scores
LONG_ALPHA = 1.0 / 3000  # ... in the mean and variance of that short average
LIKELIHOOD_AFTER = 50  # points before the likelihood channel scores at all
SHORT_SD_FLOOR = 1e-4  # least spread of the short average, so flat series stay calm
RANGE_HALF = 0.005  # range excess (in units of the range) that scores 0.5
BLOCK_POINTS = 256
BLOCKS = 32  # the range covers the last 32 * 256 = 8192 points (28 days at 5 min)
RED = 0.5  # score from which a side rations its alarms
YELLOW = 0.3  # what a rationed score is cut to
RED_TAIL = 1e-5  # Numenta's "red": a tail probability this small (score ~0.49)
YELLOW_TAIL = 1e-3  # the "yellow" a red right after a red becomes (score ~0.28)
REFRACTORY = 10  # points after a red during which a side scores at most YELLOW

# A tail probability of 1/2 (the median) scores 0, one of 1e-10 scores 1.0.
_LOG_HALF = math.log(2.0)
_LOG_SPAN = -math.log(1e-10) - _LOG_HALF
_RANGE_RATE = math.log(2.0) / RANGE_HALF
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_VAR_MAX = 1e300  # variances are clamped below infinity so no NaN can appear
_NEVER = -(2**62)  # "no red yet" for the refractory counters

# Little-endian, no padding. Fields in order:
# version, points learned, last timestamp, mean, variance,
# then for each output (both, up, down): short average of squashed z-scores, its
# mean, its variance, point index of its last red, previous red flag; block in
# progress: min, max, points in it; ring: next slot, slots filled; ring of block
# minima, ring of block maxima.
_HEAD = struct.Struct("<HQqdd" + "dddqB" * 3 + "ddHBB")
_RING = struct.Struct(f"<{BLOCKS}d{BLOCKS}d")
STATE_SIZE = _HEAD.size + _RING.size

_DIRECTIONS = ("upper", "lower", "both")


class InvalidPoints(ValueError):
    """Points the detector cannot take; the message names the field and the index."""


def new_state() -> bytes:
    """The state of a stream that has learned nothing."""
    head = _HEAD.pack(
        FORMAT_VERSION,
        0,
        -(2**63),
        0.0,
        0.0,
        *((0.0, 0.0, 0.0, _NEVER, 0) * 3),
        0.0,
        0.0,
        0,
        0,
        0,
    )
    return head + _RING.pack(*([0.0] * (2 * BLOCKS)))


def points_learned(state: bytes) -> int:
    """How many points the state has learned."""
    return _unpack_head(state)[1]


def _unpack_head(state: bytes) -> tuple:
    if len(state) != STATE_SIZE:
        raise InvalidPoints(f"state: {len(state)} bytes, expected {STATE_SIZE}")
    head = _HEAD.unpack_from(state)
    if head[0] != FORMAT_VERSION:
        raise InvalidPoints(
            f"state: format {head[0]}, this detector reads {FORMAT_VERSION}"
        )
    return head


def observe(
    state: bytes,
    timestamps: Sequence[int] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    direction: Direction = DEFAULT_DIRECTION,
) -> tuple[bytes, np.ndarray]:
    """Judge then learn each point in order; return the new state and the scores.

    ``timestamps`` are int64 Unix seconds, non-decreasing and not earlier than the last
    point learned; ``values`` finite floats. A score counts only deviations in
    ``direction``: under ``upper`` a drop scores 0. Raises ``InvalidPoints`` (and
    learns nothing) on points that break these rules.
    """
    if direction not in _DIRECTIONS:
        raise InvalidPoints(f"direction: {direction!r} is not upper, lower or both")
    # Plain lists: a call with one point costs a few microseconds, not numpy's dozens.
    ts = _as_list(timestamps, np.int64)
    xs = _as_list(values, np.float64)
    if len(ts) != len(xs):
        raise InvalidPoints(
            f"values: {len(xs)} values for {len(ts)} timestamps (one of each per point)"
        )
    head = _unpack_head(state)
    if not xs:
        return bytes(state), np.zeros(0, dtype=np.float64)
    if not all(map(math.isfinite, xs)):
        i = next(i for i, x in enumerate(xs) if not math.isfinite(x))
        raise InvalidPoints(f"values[{i}]: {xs[i]!r} is not a finite number")
    if ts[0] < head[2]:
        raise InvalidPoints(
            f"timestamps[0]: {ts[0]} is earlier than the last point learned ({head[2]})"
        )
    if len(ts) > 1 and not all(map(operator.le, ts, ts[1:])):
        i = next(i for i in range(1, len(ts)) if ts[i] < ts[i - 1])
        raise InvalidPoints(
            f"timestamps[{i}]: {ts[i]} is earlier than the one before it"
        )
    ring = list(_RING.unpack_from(state, _HEAD.size))
    scores, head, ring = _run(head, ring, xs, direction)
    head[2] = ts[-1]
    return _HEAD.pack(*head) + _RING.pack(*ring), np.array(scores, dtype=np.float64)


def _as_list(points: Sequence | np.ndarray, dtype: type) -> list:
    """Python ints or floats; one-dimensional input only."""
    array = points if isinstance(points, np.ndarray) else np.asarray(points, dtype)
    if array.ndim != 1:
        raise InvalidPoints(f"points: {array.ndim} dimensions, expected 1")
    return array.astype(dtype, copy=False).tolist()


def _run(head: tuple, ring: list, xs: list, direction: str) -> tuple:
    """The per-point loop, on plain Python floats in local variables (faster here than
    numpy calls per point)."""
    (
        version,
        n,
        last_ts,
        mu,
        var,
        ab_short,
        ab_mean,
        ab_var,
        ab_red_at,
        ab_prev_red,
        up_short,
        up_mean,
        up_var,
        up_red_at,
        up_prev_red,
        dn_short,
        dn_mean,
        dn_var,
        dn_red_at,
        dn_prev_red,
        blk_min,
        blk_max,
        blk_n,
        slot,
        filled,
    ) = head
    mins = ring[:BLOCKS]
    maxs = ring[BLOCKS:]
    if filled:
        win_lo = min(mins[:filled])
        win_hi = max(maxs[:filled])
    exp = math.exp
    log = math.log
    sqrt = math.sqrt
    erfc = math.erfc
    isnan = math.isnan
    side = _DIRECTIONS.index(direction)
    scores = []
    append = scores.append
    for x in xs:
        n += 1
        if n == 1:
            mu = x
            blk_min = blk_max = x
            blk_n = 1
            append(0.0)
            continue

        # Range of the recent blocks and of the current one, before this point.
        if filled:
            lo = win_lo if win_lo < blk_min else blk_min
            hi = win_hi if win_hi > blk_max else blk_max
        else:
            lo = blk_min
            hi = blk_max
        up = dn = 0.0
        if x > hi:
            up = _excess(x, hi, lo)
        elif x < lo:
            dn = _excess(-x, -lo, -hi)
        ab = up if up > dn else dn

        # The point joins the current block; a full block enters the ring.
        if x < blk_min:
            blk_min = x
        elif x > blk_max:
            blk_max = x
        blk_n += 1
        if blk_n == BLOCK_POINTS:
            mins[slot] = blk_min
            maxs[slot] = blk_max
            slot = (slot + 1) % BLOCKS
            if filled < BLOCKS:
                filled += 1
            win_lo = min(mins[:filled])
            win_hi = max(maxs[:filled])
            # The next block starts from this point's value, which the ring holds
            # anyway: the range is the same, and the block needs no empty state.
            blk_n = 0
            blk_min = blk_max = x

        # z-score against the mean and variance of the points before.
        d = x - mu
        sd = sqrt(var)
        if d > 0.0:
            z_up = d / sd if sd > 0.0 else (0.0 if d == 0.0 else 1e9)
            z_dn = 0.0
        else:
            z_dn = -d / sd if sd > 0.0 else (0.0 if d == 0.0 else 1e9)
            z_up = 0.0
        if isnan(z_up) or isnan(z_dn):  # inf / inf: both unbounded, nothing to see
            z_up = z_dn = 0.0
        alpha = 1.0 / n if n * Z_ALPHA < 1.0 else Z_ALPHA
        if -1e300 < d < 1e300:
            mu += alpha * d
            var = (1.0 - alpha) * (var + alpha * d * d)
            if not var <= _VAR_MAX:
                var = _VAR_MAX
        else:
            mu = (1.0 - alpha) * mu + alpha * x
            var = _VAR_MAX
        raw_up = 1.0 - exp(Z_KNEE - z_up) if z_up > Z_KNEE else 0.0
        raw_dn = 1.0 - exp(Z_KNEE - z_dn) if z_dn > Z_KNEE else 0.0
        raw_ab = raw_up if raw_up > raw_dn else raw_dn

        # Likelihood of each side's short average under its long-run distribution.
        a_short = 1.0 / n if n * SHORT_ALPHA < 1.0 else SHORT_ALPHA
        a_long = 1.0 / n if n * LONG_ALPHA < 1.0 else LONG_ALPHA
        ab_short += a_short * (raw_ab - ab_short)
        up_short += a_short * (raw_up - up_short)
        dn_short += a_short * (raw_dn - dn_short)
        if n > LIKELIHOOD_AFTER:
            spread = sqrt(ab_var)
            if spread < SHORT_SD_FLOOR:
                spread = SHORT_SD_FLOOR
            tail = 0.5 * erfc((ab_short - ab_mean) / spread * _INV_SQRT2)
            if tail <= RED_TAIL:
                if ab_prev_red:
                    tail = YELLOW_TAIL
                ab_prev_red = 1
            else:
                ab_prev_red = 0
            lik = (-log(tail + 1e-10) - _LOG_HALF) / _LOG_SPAN
            if lik > ab:
                ab = lik
            spread = sqrt(up_var)
            if spread < SHORT_SD_FLOOR:
                spread = SHORT_SD_FLOOR
            tail = 0.5 * erfc((up_short - up_mean) / spread * _INV_SQRT2)
            if tail <= RED_TAIL:
                if up_prev_red:
                    tail = YELLOW_TAIL
                up_prev_red = 1
            else:
                up_prev_red = 0
            lik = (-log(tail + 1e-10) - _LOG_HALF) / _LOG_SPAN
            if lik > up:
                up = lik
            spread = sqrt(dn_var)
            if spread < SHORT_SD_FLOOR:
                spread = SHORT_SD_FLOOR
            tail = 0.5 * erfc((dn_short - dn_mean) / spread * _INV_SQRT2)
            if tail <= RED_TAIL:
                if dn_prev_red:
                    tail = YELLOW_TAIL
                dn_prev_red = 1
            else:
                dn_prev_red = 0
            lik = (-log(tail + 1e-10) - _LOG_HALF) / _LOG_SPAN
            if lik > dn:
                dn = lik
        e = ab_short - ab_mean
        ab_mean += a_long * e
        ab_var = (1.0 - a_long) * (ab_var + a_long * e * e)
        e = up_short - up_mean
        up_mean += a_long * e
        up_var = (1.0 - a_long) * (up_var + a_long * e * e)
        e = dn_short - dn_mean
        dn_mean += a_long * e
        dn_var = (1.0 - a_long) * (dn_var + a_long * e * e)

        # A point at or below the mean is never an upper anomaly (nor one at or above it
        # a lower one), whatever the recent deviations the short averages remember.
        if d <= 0.0:
            up = 0.0
        if d >= 0.0:
            dn = 0.0

        # Ration each output's alarms.
        if ab >= RED:
            if n - ab_red_at <= REFRACTORY:
                ab = YELLOW if ab > YELLOW else ab
            ab_red_at = n
        if up >= RED:
            if n - up_red_at <= REFRACTORY:
                up = YELLOW if up > YELLOW else up
            up_red_at = n
        if dn >= RED:
            if n - dn_red_at <= REFRACTORY:
                dn = YELLOW if dn > YELLOW else dn
            dn_red_at = n
        append(ab if side == 2 else up if side == 0 else dn)

    head = [
        version,
        n,
        last_ts,
        mu,
        var,
        ab_short,
        ab_mean,
        ab_var,
        ab_red_at,
        ab_prev_red,
        up_short,
        up_mean,
        up_var,
        up_red_at,
        up_prev_red,
        dn_short,
        dn_mean,
        dn_var,
        dn_red_at,
        dn_prev_red,
        blk_min,
        blk_max,
        blk_n,
        slot,
        filled,
    ]
    return scores, head, mins + maxs


def _excess(x: float, hi: float, lo: float) -> float:
    """Score of a value x above the range [lo, hi]: 0.5 at RANGE_HALF of the range.
    Halves are subtracted so no difference overflows."""
    over = x * 0.5 - hi * 0.5
    width = hi * 0.5 - lo * 0.5
    if width <= 0.0:
        return 1.0
    return 1.0 - math.exp(-_RANGE_RATE * over / width) if over < 1e300 * width else 1.0
