"""Binomial intervals and the rule of 3 (metrics-reference §5.5, TV2, TV9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.errors import ConfigError, DataError
from bench.metrics.intervals import (
    clopper_pearson_interval,
    wilson_interval,
    zero_error_upper_bound,
)


# ----------------------------------------------------------------------------- TV9
def test_tv9_zero_errors_in_1000():
    assert zero_error_upper_bound(1000) == pytest.approx(0.0029912, abs=5e-8)
    assert 3 / 1000 == pytest.approx(zero_error_upper_bound(1000), rel=0.003)  # rule of 3
    lo, hi = clopper_pearson_interval(0, 1000)
    assert lo == 0.0
    assert hi == pytest.approx(0.0036821, abs=5e-8)
    assert hi == pytest.approx(1 - 0.025 ** (1 / 1000), rel=1e-12)
    lo, hi = wilson_interval(0, 1000)
    assert lo == 0.0
    assert hi == pytest.approx(0.0038268, abs=5e-8)


def test_tv9_three_in_ten():
    lo, hi = clopper_pearson_interval(3, 10)
    assert (lo, hi) == (pytest.approx(0.06674, abs=5e-6), pytest.approx(0.65245, abs=5e-6))
    lo, hi = wilson_interval(3, 10)
    assert (lo, hi) == (pytest.approx(0.10779, abs=5e-6), pytest.approx(0.60322, abs=5e-6))


def test_tv9_rule_of_30_half_width():
    assert stats.norm.ppf(0.95) / math.sqrt(30) == pytest.approx(0.3003, abs=5e-5)


def test_tv2_group_b_upper_bound():
    assert zero_error_upper_bound(10) == pytest.approx(0.2589, abs=5e-5)


# ----------------------------------------------------------------------------- behaviour
def test_scalar_in_scalar_out():
    lo, hi = wilson_interval(1, 4)
    assert isinstance(lo, float) and isinstance(hi, float)
    assert isinstance(zero_error_upper_bound(5), float)


def test_vectorised_matches_scalar():
    x = np.array([0, 1, 5, 10, 3])
    n = np.array([10, 10, 10, 10, 0])
    for fn in (wilson_interval, clopper_pearson_interval):
        lo, hi = fn(x[:4], n[:4])
        assert lo.shape == (4,) and hi.shape == (4,)
        for i in range(4):
            s_lo, s_hi = fn(int(x[i]), int(n[i]))
            assert lo[i] == pytest.approx(s_lo) and hi[i] == pytest.approx(s_hi)
    ub = zero_error_upper_bound(np.array([1, 10, 0]))
    np.testing.assert_allclose(ub[:2], [0.95, 1 - 0.05 ** 0.1])
    assert math.isnan(ub[2])


def test_broadcast_scalar_n():
    lo, hi = clopper_pearson_interval(np.array([0, 1, 2]), 10)
    assert lo.shape == (3,) and lo[0] == 0.0 and np.all(np.diff(hi) > 0)


@pytest.mark.parametrize("fn", [wilson_interval, clopper_pearson_interval])
def test_n_zero_is_nan(fn):
    lo, hi = fn(0, 0)
    assert math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize("fn", [wilson_interval, clopper_pearson_interval])
def test_all_errors_upper_is_one(fn):
    lo, hi = fn(7, 7)
    assert hi == 1.0 and 0.0 < lo < 1.0


@pytest.mark.parametrize("fn", [wilson_interval, clopper_pearson_interval])
def test_interval_contains_estimate_and_narrows(fn):
    for x, n in [(1, 10), (10, 100), (100, 1000)]:
        lo, hi = fn(x, n)
        assert lo < x / n < hi
    assert np.diff(fn(10, 100))[0] > np.diff(fn(100, 1000))[0]


def test_clopper_pearson_is_wider_than_wilson_here():
    cp = clopper_pearson_interval(3, 10)
    w = wilson_interval(3, 10)
    assert cp[0] < w[0] and cp[1] > w[1]


def test_confidence_changes_width():
    lo90, hi90 = clopper_pearson_interval(5, 50, confidence=0.90)
    lo99, hi99 = clopper_pearson_interval(5, 50, confidence=0.99)
    assert lo99 < lo90 and hi99 > hi90
    assert zero_error_upper_bound(100, confidence=0.99) == pytest.approx(1 - 0.01 ** 0.01)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("fn", [wilson_interval, clopper_pearson_interval])
@pytest.mark.parametrize(
    ("errors", "n", "match"),
    [
        (11, 10, "errors: must not exceed n"),
        (-1, 10, "errors: expected non-negative integer"),
        (1.5, 10, "errors: expected non-negative integer"),
        (1, np.nan, "n: counts must be finite"),
        ("a", 10, "errors: expected integer counts"),
    ],
)
def test_bad_counts(fn, errors, n, match):
    with pytest.raises(DataError, match=match):
        fn(errors, n)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.2, float("nan")])
def test_bad_confidence(confidence):
    with pytest.raises(ConfigError, match="confidence"):
        wilson_interval(1, 10, confidence=confidence)
    with pytest.raises(ConfigError, match="confidence"):
        zero_error_upper_bound(10, confidence=confidence)


def test_zero_error_upper_bound_bad_n():
    with pytest.raises(DataError, match="n: expected non-negative integer"):
        zero_error_upper_bound(-3)
