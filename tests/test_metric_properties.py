"""Property-based tests of the exact metrics (hypothesis; metrics-reference §0, §1, §2.3, §5.5)."""

from __future__ import annotations

import itertools
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_curve

from bench.errors import InsufficientDataError, InsufficientDataWarning
from bench.metrics.groups import ALL_GROUP, cross_group_fmr, per_group_rates
from bench.metrics.intervals import clopper_pearson_interval, wilson_interval
from bench.metrics.rates import det_curve, equal_error_rate, error_rates, threshold_at_fmr

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# scores on a coarse grid so that ties within and across classes are frequent
grid_scores = st.lists(st.integers(-10, 10).map(lambda v: v / 10), min_size=1, max_size=40)
thresholds = st.integers(-12, 12).map(lambda v: v / 10)


@PROPS
@given(grid_scores, grid_scores, thresholds, thresholds)
def test_rates_in_unit_interval_and_monotone(mated, nonmated, t1, t2):
    lo, hi = min(t1, t2), max(t1, t2)
    a = error_rates(mated, nonmated, lo)
    b = error_rates(mated, nonmated, hi)
    for r in (a, b):
        assert 0.0 <= r.fmr <= 1.0 and 0.0 <= r.fnmr <= 1.0
        assert r.false_matches == sum(s >= r.threshold for s in nonmated)
        assert r.false_non_matches == sum(s < r.threshold for s in mated)
    assert b.fmr <= a.fmr  # FMR non-increasing in the threshold
    assert b.fnmr >= a.fnmr  # FNMR non-decreasing in the threshold


@PROPS
@given(
    st.lists(st.integers(0, 15).map(lambda v: v / 15), min_size=10, max_size=200),
    st.floats(0.005, 0.995),
)
def test_threshold_at_fmr_never_exceeds_target_and_is_tight(scores, target):
    # Compared as integer counts of false matches, never as products of floats
    # (14/41 * 41 = 14.000000000000002 in binary floating point).
    arr = np.asarray(scores)
    n = arr.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsufficientDataWarning)
        try:
            cal = threshold_at_fmr(arr, target)
        except InsufficientDataError:
            assert n * target < 1 + 1e-9  # refused only when fewer than 1/target scores (§5.5)
            return
    false_matches = int(np.count_nonzero(arr >= cal.threshold))
    assert cal.achieved_fmr == false_matches / n
    # k is the largest count with k/N <= f (metrics-reference §0); the achieved count never exceeds it
    assert false_matches <= cal.k
    assert cal.k / n <= target < (cal.k + 1) / n
    # tight: the next lower observed score would exceed the target (so it is never empty:
    # a threshold at or below the minimum would give FMR 1 > target)
    lower = arr[arr < cal.threshold]
    assert lower.size
    assert int(np.count_nonzero(arr >= lower.max())) > cal.k


def test_threshold_at_fmr_regression_14_of_41():
    """The float-rounding case that failed: 14 false matches of 41 (14/41*41 != 14 in floats)."""
    arr = np.array([1.0] * 14 + [0.0] * 27)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsufficientDataWarning)
        cal = threshold_at_fmr(arr, 14 / 41)
    assert cal.k == 14 and cal.threshold == 1.0
    assert int(np.count_nonzero(arr >= cal.threshold)) == 14


def test_no_saved_hypothesis_example_is_replayed():
    """The CI profile (tests/conftest.py) has no example database: a failing example saved in
    ``.hypothesis/`` on a developer's checkout can never turn a later ``make test`` red."""
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") != "ci":
        pytest.skip("HYPOTHESIS_PROFILE selects another profile")
    assert settings.default.database is None
    assert PROPS.database is None and settings.default.derandomize


@PROPS
@given(grid_scores, grid_scores, st.randoms(use_true_random=False))
def test_permutation_invariance(mated, nonmated, rnd):
    m2, n2 = list(mated), list(nonmated)
    rnd.shuffle(m2)
    rnd.shuffle(n2)
    d1, d2 = det_curve(mated, nonmated), det_curve(m2, n2)
    np.testing.assert_array_equal(d1.thresholds, d2.thresholds)
    np.testing.assert_array_equal(d1.fmr, d2.fmr)
    np.testing.assert_array_equal(d1.fnmr, d2.fnmr)
    assert equal_error_rate(mated, nonmated) == equal_error_rate(m2, n2)


@PROPS
@given(grid_scores, grid_scores, st.sampled_from(["exp", "cube", "affine"]))
def test_strictly_increasing_transform_preserves_det_points(mated, nonmated, kind):
    f = {"exp": np.exp, "cube": lambda x: x**3 + x, "affine": lambda x: 3.0 * x - 7.0}[kind]
    d1 = det_curve(mated, nonmated)
    d2 = det_curve(f(np.asarray(mated)), f(np.asarray(nonmated)))
    np.testing.assert_array_equal(d1.fmr, d2.fmr)
    np.testing.assert_array_equal(d1.fnmr, d2.fnmr)
    e1, e2 = equal_error_rate(mated, nonmated), equal_error_rate(f(np.asarray(mated)), f(np.asarray(nonmated)))
    assert (e1.eer, e1.fmr, e1.fnmr) == (e2.eer, e2.fmr, e2.fnmr)


@PROPS
@given(grid_scores, grid_scores)
def test_det_curve_agrees_with_sklearn_roc_curve(mated, nonmated):
    y_true = np.r_[np.ones(len(mated)), np.zeros(len(nonmated))]
    y_score = np.r_[mated, nonmated]
    fpr, tpr, thr = roc_curve(y_true, y_score, drop_intermediate=False)
    d = det_curve(mated, nonmated)
    # sklearn: thresholds decreasing, led by +inf; match iff score >= threshold, as ours
    assert np.isinf(thr[0])
    np.testing.assert_array_equal(d.thresholds, thr[1:][::-1])
    np.testing.assert_array_equal(d.fmr, fpr[1:][::-1])
    tp = np.rint(tpr[1:][::-1] * len(mated)).astype(int)
    np.testing.assert_array_equal(np.rint(d.fnmr * len(mated)).astype(int), len(mated) - tp)
    np.testing.assert_allclose(d.fnmr, 1.0 - tpr[1:][::-1], rtol=0, atol=1e-12)
    assert np.all(np.diff(d.fmr) <= 0) and np.all(np.diff(d.fnmr) >= 0)


@PROPS
@given(grid_scores, grid_scores)
def test_eer_matches_brute_force(mated, nonmated):
    cands = sorted(set(mated) | set(nonmated))
    best = None
    for t in cands:  # O(n^2) reference of bob.measure's rule (docs/protocol.md §1.4)
        fm = sum(s >= t for s in nonmated)
        fnm = sum(s < t for s in mated)
        gap = abs(fm * len(mated) - fnm * len(nonmated))
        exhausted = fm == 0 or fnm == len(mated)
        # while both classes remain, the last minimum wins (ties: larger threshold); the first
        # threshold where one class is exhausted only if strictly better; none after it
        if best is None or gap < best[0] or (gap == best[0] and not exhausted):
            best = (gap, t, fm / len(nonmated), fnm / len(mated))
        if exhausted:
            break
    e = equal_error_rate(mated, nonmated)
    assert e.threshold == best[1]
    assert e.eer == pytest.approx((best[2] + best[3]) / 2)
    assert e.low <= e.eer <= e.high


@PROPS
@given(st.integers(0, 500), st.integers(0, 500), st.floats(0.5, 0.999))
def test_binomial_intervals_bracket_the_estimate(x, extra, confidence):
    n = x + extra
    for fn in (wilson_interval, clopper_pearson_interval):
        lo, hi = fn(x, n, confidence=confidence)
        if n == 0:
            assert np.isnan(lo) and np.isnan(hi)
            continue
        assert 0.0 <= lo <= x / n <= hi <= 1.0


def _random_table(seed: int, n_subjects: int, max_images: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.choice(["A", "B", "C", "missing"], size=n_subjects)
    images = [(s, f"s{s}_{k}") for s in range(n_subjects) for k in range(int(rng.integers(1, max_images + 1)))]
    rows = []
    for (sa, ia), (sb, ib) in itertools.combinations(images, 2):
        rows.append(
            {
                "image_a": ia,
                "image_b": ib,
                "subject_a": f"s{sa}",
                "subject_b": f"s{sb}",
                "mated": sa == sb,
                "score": float(rng.integers(0, 10)) / 10,
                "eth_a": labels[sa],
                "eth_b": labels[sb],
            }
        )
    return pd.DataFrame(rows).astype({"mated": bool, "score": "float64"})


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 9), st.integers(1, 3), thresholds)
def test_group_counts_sum_to_overall_counts(seed, n_subjects, max_images, t):
    df = _random_table(seed, n_subjects, max_images)
    if df.empty:
        return
    per = per_group_rates(df, attribute="eth", thresholds={"t": t})
    groups = per[per.group != ALL_GROUP]
    overall = per[per.group == ALL_GROUP].set_index("metric")
    # FNMR: every mated row belongs to exactly one group (per-subject labels)
    fnmr = groups[groups.metric == "FNMR"]
    assert fnmr.errors.sum() == overall.loc["FNMR", "errors"]
    assert fnmr.comparisons.sum() == overall.loc["FNMR", "comparisons"]
    # FMR: diagonal cells plus the off-diagonal cells of the cross matrix
    cross = cross_group_fmr(df, attribute="eth", threshold=t)
    upper = cross[cross.group_a <= cross.group_b]
    assert upper.comparisons.sum() == overall.loc["FMR", "comparisons"]
    assert upper.false_matches.sum() == overall.loc["FMR", "errors"]
    diag = cross[cross.group_a == cross.group_b].set_index("group_a")
    fmr = groups[groups.metric == "FMR"].set_index("group")
    assert diag.comparisons.to_dict() == fmr.comparisons.to_dict()
    assert diag.false_matches.to_dict() == fmr.errors.to_dict()
    # rates in [0, 1] wherever defined
    r = per.rate.dropna()
    assert ((r >= 0) & (r <= 1)).all()
    # row permutation changes nothing
    shuffled = df.sample(frac=1.0, random_state=seed % 1000).reset_index(drop=True)
    pd.testing.assert_frame_equal(per, per_group_rates(shuffled, attribute="eth", thresholds={"t": t}))
