"""The detector against numpy: exact statistics, strict bounds, every direction."""

import numpy as np
import pytest

from anomalyd.detectors import (
    MAD_TO_SIGMA,
    DetectorParams,
    InvalidTrainingData,
    check_finite,
    fit,
)

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("n", [3, 10, 1000, 100_000])
def test_3sigma_is_exactly_numpy_population_std(n):
    values = RNG.normal(50, 5, n)
    model = fit(values, DetectorParams())
    assert model.center == np.mean(values)
    assert model.scale == np.std(values)  # ddof 0
    assert model.scale != np.std(values, ddof=1)
    assert model.upper == np.mean(values) + 3 * np.std(values)
    assert model.lower is None


def test_baseline_rule_value_on_bound_is_normal():
    values = np.array([42.5, 43.1, 41.8])
    model = fit(values, DetectorParams())
    bound = np.mean(values) + 3 * np.std(values)
    assert model.judge(float(bound)) == (False, pytest.approx(3.0), bound)
    assert model.judge(float(np.nextafter(bound, np.inf)))[0] is True
    assert model.judge(float(np.nextafter(bound, -np.inf)))[0] is False


def test_judge_agrees_with_baseline_on_many_values():
    values = RNG.normal(0, 1, 500)
    model = fit(values, DetectorParams())
    probe = RNG.normal(0, 3, 5000)
    expected = probe > np.mean(values) + 3 * np.std(values)
    got = [model.judge(float(v))[0] for v in probe]
    assert got == expected.tolist()
    assert model.judge_many(probe)[0].tolist() == expected.tolist()


@pytest.mark.parametrize("k", [0.5, 1.0, 2.5, 6.0])
def test_k_scales_the_bounds(k):
    values = RNG.normal(10, 2, 100)
    model = fit(values, DetectorParams(k=k, direction="both"))
    assert model.upper == model.center + k * model.scale
    assert model.lower == model.center - k * model.scale


def test_directions():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    upper = fit(values, DetectorParams(direction="upper"))
    lower = fit(values, DetectorParams(direction="lower"))
    both = fit(values, DetectorParams(direction="both"))
    assert upper.judge(100.0)[0] and not upper.judge(-100.0)[0]
    assert lower.judge(-100.0)[0] and not lower.judge(100.0)[0]
    assert both.judge(100.0)[0] and both.judge(-100.0)[0]
    assert upper.lower is None and lower.upper is None
    # The threshold is the crossed bound, or the nearest one when normal.
    assert both.judge(100.0)[2] == both.upper
    assert both.judge(-100.0)[2] == both.lower
    assert both.judge(3.5)[2] == both.upper
    assert both.judge(2.5)[2] == both.lower
    assert lower.judge(3.0)[2] == lower.lower
    # On the lower bound exactly: normal.
    assert lower.judge(lower.lower)[0] is False


def test_score_is_distance_in_scales():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    model = fit(values, DetectorParams())
    assert model.judge(10.0)[1] == (10.0 - np.mean(values)) / np.std(values)


def test_robust_uses_median_and_scaled_mad():
    values = np.concatenate([RNG.normal(20, 1, 999), [1e6]])
    model = fit(values, DetectorParams(kind="robust", direction="both"))
    median = np.median(values)
    mad = np.median(np.abs(values - median))
    assert model.center == median
    assert model.scale == MAD_TO_SIGMA * mad
    assert model.upper == median + 3 * MAD_TO_SIGMA * mad
    assert model.judge(1e6)[0] is True


def test_constant_values_are_refused():
    with pytest.raises(InvalidTrainingData, match="standard deviation is 0"):
        fit(np.array([5.0, 5.0, 5.0]), DetectorParams())
    with pytest.raises(InvalidTrainingData, match="median absolute deviation of 0"):
        fit(np.array([5.0, 5.0, 5.0, 9.0]), DetectorParams(kind="robust"))


@pytest.mark.parametrize("k", [0.0, -1.0, float("inf")])
def test_k_must_be_positive(k):
    with pytest.raises(InvalidTrainingData, match=r"\$.detector.k must be"):
        fit(np.array([1.0, 2.0, 3.0]), DetectorParams(k=k))


def test_non_finite_value_is_named_by_index():
    with pytest.raises(InvalidTrainingData, match=r"\$.values\[2\] is not a finite"):
        check_finite(np.array([1.0, 2.0, np.inf, 3.0]))


def test_overflowing_statistics_are_refused():
    with pytest.raises(InvalidTrainingData, match="overflow"):
        fit(np.array([1e308, -1e308, 1e308]), DetectorParams())


@pytest.mark.parametrize(
    "values", [[0.1, 0.1, 0.1], [1 / 3] * 7, [1e-300] * 4, [-0.0, 0.0, 0.0]]
)
def test_equal_values_are_refused_whatever_their_rounding(values):
    # numpy.std([0.1, 0.1, 0.1]) is 1.39e-17, not 0: the spread is not the test.
    assert np.std(np.array([0.1, 0.1, 0.1])) > 0
    with pytest.raises(InvalidTrainingData, match=r"all equal.*deviation is 0"):
        fit(np.array(values), DetectorParams())


def test_robust_refuses_more_than_half_equal_to_the_median():
    with pytest.raises(InvalidTrainingData, match="3 of 5 equal the median 0.1"):
        fit(np.array([0.1, 0.1, 0.1, 0.2, 0.7]), DetectorParams(kind="robust"))
    # Exactly half equal: the MAD is not 0, the model is trained.
    model = fit(np.array([0.1, 0.1, 0.2, 0.7]), DetectorParams(kind="robust"))
    assert model.scale > 0


def test_a_spread_that_rounds_to_zero_is_refused():
    with pytest.raises(InvalidTrainingData, match="spread rounds to 0"):
        fit(np.array([0.0, 5e-324, 0.0]), DetectorParams())
