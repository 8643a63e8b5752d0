"""The detectors: pure numpy, no I/O.

``fit(timestamps, values, params) -> Model`` trains; ``Model.judge(value)`` decides one
point and ``Model.judge_many(values)`` a batch. A model is immutable: a (series, version)
pair names exactly one model forever, which is what lets every worker cache it.
"""

from __future__ import annotations

import math
import sys
from typing import Literal

import msgspec
import numpy as np

Kind = Literal["3sigma", "robust"]
Direction = Literal["upper", "lower", "both"]

# The consistency constant that makes the MAD estimate sigma for normal data.
MAD_TO_SIGMA = 1.4826
FLOAT_MAX = sys.float_info.max


class InvalidTrainingData(ValueError):
    """Data that decoded but cannot be trained on; the message names the field."""


class InvalidInput(ValueError):
    """A point that decoded but cannot be judged; the message names the field."""


class DetectorParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: Kind = "3sigma"
    k: float = 3.0
    direction: Direction = "upper"


class Model(msgspec.Struct, frozen=True, gc=False):
    """A trained detector: a location, a spread and the bounds derived from them."""

    kind: Kind
    k: float
    direction: Direction
    center: float
    scale: float
    lower: float | None
    upper: float | None

    def judge(self, value: float) -> tuple[bool, float, float]:
        """Return ``(anomaly, score, threshold)`` for one value.

        A value exactly on a bound is normal (strict inequality). ``threshold`` is the
        bound crossed, or when normal the nearest bound.
        """
        score = (value - self.center) / self.scale
        if not -FLOAT_MAX <= score <= FLOAT_MAX:
            # JSON has no infinity: a score beyond the float range is the largest one.
            score = math.copysign(FLOAT_MAX, score)
        upper = self.upper
        lower = self.lower
        if upper is not None and value > upper:
            return True, score, upper
        if lower is not None and value < lower:
            return True, score, lower
        if lower is None:
            return False, score, upper
        if upper is None or value - lower < upper - value:
            return False, score, lower
        return False, score, upper

    def judge_many(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised ``judge``: boolean anomalies and scores, in input order."""
        with np.errstate(over="ignore"):
            scores = (values - self.center) / self.scale
        # JSON has no infinity: a score beyond the float range is the largest one.
        scores = np.clip(scores, -FLOAT_MAX, FLOAT_MAX)
        anomalies = np.zeros(values.shape, dtype=bool)
        if self.upper is not None:
            anomalies |= values > self.upper
        if self.lower is not None:
            anomalies |= values < self.lower
        return anomalies, scores

    def beyond(self, values: np.ndarray) -> np.ndarray:
        """Mask of the values this model calls anomalous (``judge_many``'s, without
        the scores: 1 byte a value, not 17)."""
        anomalies = np.zeros(values.shape, dtype=bool)
        if self.upper is not None:
            np.greater(values, self.upper, out=anomalies)
        if self.lower is not None:
            anomalies |= values < self.lower
        return anomalies


def fit(values: np.ndarray, params: DetectorParams) -> Model:
    """Train a detector on ``values`` (float64, finite, already checked)."""
    if not params.k > 0 or not math.isfinite(params.k):
        raise InvalidTrainingData("$.detector.k must be a finite number > 0")
    n = values.shape[0]
    if params.kind == "3sigma":
        # Equality of the values themselves, not the rounding of their spread:
        # numpy.std of [0.1, 0.1, 0.1] is 1.39e-17, not 0.
        if n and values.min() == values.max():
            raise InvalidTrainingData(
                f"$.values are all equal (to {float(values[0])!r}): "
                "the standard deviation is 0"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            center = float(np.mean(values))
            scale = float(np.std(values))
    else:
        center = float(np.median(values))
        # The MAD is 0 exactly when more than half of the values equal the median.
        equal = int(np.count_nonzero(values == center))
        if 2 * equal > n:
            raise InvalidTrainingData(
                f"$.values have a median absolute deviation of 0: {equal} of {n} "
                f"equal the median {center!r} (robust needs more than half to differ)"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            scale = MAD_TO_SIGMA * float(np.median(np.abs(values - center)))
    if not scale > 0 and math.isfinite(center):
        # Values that differ by less than the float range can represent as a spread.
        raise InvalidTrainingData(
            "$.values differ too little: their spread rounds to 0"
        )
    if not math.isfinite(center) or not math.isfinite(scale):
        raise InvalidTrainingData("$.values are too large: their statistics overflow")
    margin = params.k * scale
    upper = center + margin if params.direction != "lower" else None
    lower = center - margin if params.direction != "upper" else None
    if not all(math.isfinite(b) for b in (upper, lower) if b is not None):
        raise InvalidTrainingData(
            "$.detector.k is too large for these values: the bounds "
            "center ± k·scale overflow"
        )
    return Model(params.kind, params.k, params.direction, center, scale, lower, upper)


def check_finite(values: np.ndarray, field: str = "$.values") -> None:
    """Raise naming the first non-finite value, if any."""
    finite = np.isfinite(values)
    if not finite.all():
        index = int(np.argmin(finite))
        raise InvalidTrainingData(f"{field}[{index}] is not a finite number")
