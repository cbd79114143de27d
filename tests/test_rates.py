"""Exact error rates, threshold calibration, EER and DET (metrics-reference §0, §1, TV1, TV2, TV8)."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest

from bench.errors import (
    ConfigError,
    DataError,
    InsufficientDataError,
    InsufficientDataWarning,
    ScoreSanityWarning,
)
from bench.metrics.rates import (
    det_curve,
    equal_error_rate,
    error_rates,
    score_sanity_check,
    threshold_at_fmr,
    transaction_rates,
)

# TV1 (metrics-reference, test vectors)
TV1_NONMATED = [0.12, 0.35, 0.41, 0.08, 0.55, 0.29, 0.61, 0.19, 0.47, 0.33]
TV1_MATED = [0.72, 0.58, 0.44, 0.81, 0.66, 0.39]
# TV2
TV2_REFERENCE = [0.05, 0.11, 0.14, 0.18, 0.21, 0.22, 0.25, 0.27, 0.30, 0.31,
                 0.33, 0.36, 0.38, 0.40, 0.42, 0.44, 0.47, 0.52, 0.58, 0.63]
TV2_GROUP_A = [0.10, 0.20, 0.30, 0.45, 0.50, 0.53, 0.55, 0.60, 0.65, 0.70]
TV2_GROUP_B = [0.05, 0.15, 0.22, 0.31, 0.35, 0.41, 0.44, 0.49, 0.51, 0.57]


# ----------------------------------------------------------------------------- error_rates
def test_tv1_rates_at_045():
    r = error_rates(TV1_MATED, TV1_NONMATED, 0.45)
    assert (r.false_matches, r.n_nonmated) == (3, 10)
    assert r.fmr == pytest.approx(0.30, abs=1e-12)
    assert (r.false_non_matches, r.n_mated) == (2, 6)
    assert r.fnmr == pytest.approx(0.3333, abs=5e-5)
    assert r.threshold == 0.45


def test_tv1_tie_at_threshold_counts_as_match():
    r = error_rates(TV1_MATED, TV1_NONMATED, 0.55)
    assert r.false_matches == 2  # 0.55 (tie) and 0.61
    assert r.fmr == pytest.approx(0.20)
    assert r.fnmr == pytest.approx(2 / 6)  # 0.58 >= 0.55 is a match


def test_mated_tie_at_threshold_is_not_a_false_non_match():
    r = error_rates([0.5, 0.5, 0.4], [], 0.5)
    assert r.false_non_matches == 1
    assert math.isnan(r.fmr) and r.n_nonmated == 0


def test_empty_arrays_give_nan_rates():
    r = error_rates([], [], 0.0)
    assert math.isnan(r.fmr) and math.isnan(r.fnmr)
    assert (r.false_matches, r.false_non_matches) == (0, 0)


def test_infinite_thresholds_allowed():
    assert error_rates(TV1_MATED, TV1_NONMATED, -np.inf).fmr == 1.0
    assert error_rates(TV1_MATED, TV1_NONMATED, np.inf).fnmr == 1.0


@pytest.mark.parametrize(
    ("mated", "nonmated", "match"),
    [
        ([0.1, np.nan], [0.2], "mated_scores.*non-finite"),
        ([0.1], [0.2, np.inf], "nonmated_scores.*non-finite"),
        ([[0.1, 0.2]], [0.2], "mated_scores.*1-D"),
        ([0.1], ["a"], "nonmated_scores"),
    ],
)
def test_error_rates_bad_input(mated, nonmated, match):
    with pytest.raises(DataError, match=match):
        error_rates(mated, nonmated, 0.5)


def test_error_rates_nan_threshold():
    with pytest.raises(ConfigError, match="threshold.*NaN"):
        error_rates([0.1], [0.2], float("nan"))


# ----------------------------------------------------------------------------- threshold_at_fmr
def test_tv2_threshold_and_group_rates():
    with pytest.warns(InsufficientDataWarning, match="rule of 30"):
        cal = threshold_at_fmr(TV2_REFERENCE, 0.10)
    assert cal.threshold == 0.58
    assert cal.achieved_fmr == pytest.approx(0.10)
    assert cal.k == 2 and cal.n_nonmated == 20
    assert cal.support == "low"  # 20 < 30/0.1 = 300
    a = error_rates([], TV2_GROUP_A, cal.threshold)
    b = error_rates([], TV2_GROUP_B, cal.threshold)
    assert a.fmr == pytest.approx(0.30)
    assert a.fmr / cal.achieved_fmr == pytest.approx(3.0)
    assert b.fmr == 0.0 and b.n_nonmated == 10


def test_support_ok_without_warning():
    scores = np.linspace(0.0, 1.0, 300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cal = threshold_at_fmr(scores, 0.1)
    assert cal.support == "ok"
    assert cal.k == 30
    assert cal.threshold == scores[-30]
    assert cal.achieved_fmr == pytest.approx(0.1)


def test_rule_of_30_boundary_with_float_rounding():
    # 30/1e-4 is 299999.99999999994 or 300000.00000000006 in floats; N = 300000 is "ok"
    scores = np.arange(300_000, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cal = threshold_at_fmr(scores, 1e-4)
    assert cal.support == "ok" and cal.k == 30
    assert cal.threshold == 299_970.0 and cal.achieved_fmr == pytest.approx(1e-4)


def test_tie_straddling_the_cut_moves_threshold_up():
    # descending: 0.9, 0.8, 0.8, 0.8, 0.5, ...; k = 2 falls inside the 0.8 tie block
    scores = [0.9, 0.8, 0.8, 0.8, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    with pytest.warns(InsufficientDataWarning):
        cal = threshold_at_fmr(scores, 0.2)
    assert cal.k == 2
    assert cal.threshold == 0.9
    assert cal.achieved_fmr == pytest.approx(0.1)


def test_tie_block_at_the_top_gives_nextafter():
    scores = [0.7, 0.7, 0.7, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.0]
    with pytest.warns(InsufficientDataWarning):
        cal = threshold_at_fmr(scores, 0.2)
    assert cal.threshold == np.nextafter(0.7, np.inf)
    assert cal.achieved_fmr == 0.0


def test_tie_ending_exactly_at_the_cut_is_kept():
    scores = [0.9, 0.8, 0.8, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1]
    with pytest.warns(InsufficientDataWarning):
        cal = threshold_at_fmr(scores, 0.3)
    assert cal.k == 3 and cal.threshold == 0.8
    assert cal.achieved_fmr == pytest.approx(0.3)


def test_all_scores_tied():
    scores = np.full(1000, 0.25)
    cal = threshold_at_fmr(scores, 0.1)
    assert cal.threshold == np.nextafter(0.25, np.inf)
    assert cal.achieved_fmr == 0.0


def test_many_ties_every_target_never_exceeded():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 7, size=600).astype(float) / 7.0  # 7 distinct values
    for target in np.linspace(1 / 600, 0.99, 97):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsufficientDataWarning)
            cal = threshold_at_fmr(scores, target)
        achieved = np.mean(scores >= cal.threshold)
        assert achieved == pytest.approx(cal.achieved_fmr)
        assert cal.achieved_fmr <= target
        # largest achievable FMR not above target: next lower distinct threshold overshoots
        lower = scores[scores < cal.threshold]
        if lower.size:
            assert np.mean(scores >= lower.max()) > target


def test_k_uses_exact_float_comparison():
    # floor(0.29 * 100) = 28 in floating point, but 29/100 == 0.29
    scores = np.arange(100, dtype=float)
    with pytest.warns(InsufficientDataWarning):
        cal = threshold_at_fmr(scores, 0.29)
    assert cal.k == 29 and cal.achieved_fmr == 0.29


def test_k_zero_branch_gives_nextafter_max():
    # N = 10 and f = 0.1 gives k = 1; the k = 0 branch is reached only by N*f < 1,
    # which is refused, so check the smallest resolvable case instead.
    with pytest.warns(InsufficientDataWarning):
        cal = threshold_at_fmr([0.3, 0.1, 0.2, 0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], 0.1)
    assert cal.k == 1 and cal.threshold == 0.9 and cal.achieved_fmr == 0.1


def test_insufficient_data_error_message():
    with pytest.raises(InsufficientDataError, match=r"N=9 .*0\.1.*1/target = 10"):
        threshold_at_fmr(np.arange(9.0), 0.1)
    with pytest.raises(InsufficientDataError, match="N=0"):
        threshold_at_fmr([], 0.5)
    assert issubclass(InsufficientDataError, DataError)


@pytest.mark.parametrize("target", [0.0, 1.0, -0.1, 1.5, float("nan"), "x"])
def test_target_out_of_range(target):
    with pytest.raises(ConfigError, match="target_fmr"):
        threshold_at_fmr(np.arange(100.0), target)


def test_threshold_at_fmr_rejects_nan_scores():
    with pytest.raises(DataError, match="nonmated_scores"):
        threshold_at_fmr([0.1, np.nan] * 50, 0.1)


# ----------------------------------------------------------------------------- EER
def test_tv1_eer():
    e = equal_error_rate(TV1_MATED, TV1_NONMATED)
    assert e.threshold == 0.47
    assert e.eer == pytest.approx(0.31667, abs=5e-6)
    assert e.fmr == pytest.approx(0.3) and e.fnmr == pytest.approx(2 / 6)
    assert (e.low, e.high) == (pytest.approx(0.3), pytest.approx(2 / 6))


def test_eer_gap_tie_picks_larger_threshold_as_bob_measure():
    # non-mated {0.1, 0.9}, mated {0.3, 0.5, 0.7}:
    #   t=0.5 -> FMR 1/2, FNMR 1/3 (gap +1/6); t=0.7 -> FMR 1/2, FNMR 2/3 (gap -1/6).
    # In floats |0.5-1/3| > |0.5-2/3| by rounding; the exact integer gaps tie and, as in
    # bob.measure's eer_threshold (the last minimum met scanning upward), the larger
    # threshold wins. The step curves cross at 1/2 (FMR stays 1/2 between the two).
    e = equal_error_rate([0.3, 0.5, 0.7], [0.1, 0.9])
    assert e.threshold == 0.7
    assert e.eer == pytest.approx(7 / 12)
    assert (e.low, e.high) == (pytest.approx(0.5), pytest.approx(2 / 3))
    assert e.crossing == pytest.approx(0.5)


def _bob_eer_rates(neg, pos):
    """(FAR, FRR) at bob.measure's eer_threshold: a port of its _minimizing_threshold loop
    (scan upward over distinct scores, `<=` inside the loop, `<` for the state after one
    list is exhausted and for the threshold above every score), with exact Fractions
    instead of bob's floating-point accumulation."""
    from fractions import Fraction

    neg, pos = sorted(neg), sorted(pos)
    far, frr = Fraction(1), Fraction(0)
    n_neg, n_pos = len(neg), len(pos)
    best, best_rates = None, None
    i = j = 0
    while i < n_neg and j < n_pos:
        gap = abs(far - frr)
        if best is None or gap <= best:
            best, best_rates = gap, (far, frr)
        t = neg[i] if pos[j] >= neg[i] else pos[j]
        while i < n_neg and neg[i] == t:
            i += 1
            far -= Fraction(1, n_neg)
        while j < n_pos and pos[j] == t:
            j += 1
            frr += Fraction(1, n_pos)
    if abs(far - frr) < best:
        best, best_rates = abs(far - frr), (far, frr)
    if (i < n_neg or j < n_pos) and 1 < best:  # threshold above every score: FAR 0, FRR 1
        best_rates = (Fraction(0), Fraction(1))
    return best_rates


def test_eer_equals_bob_measure_rule_on_tie_heavy_cases():
    # 3000 random cases on a coarse score grid (many ties within and across classes): the
    # operating point chosen equals bob.measure's (exact arithmetic), and the crossing
    # lies between the rates of the chosen point's neighbours, inside [0, 1]
    rng = np.random.default_rng(20)
    differ_from_smallest_rule = 0
    for _ in range(3000):
        neg = rng.integers(0, 8, int(rng.integers(1, 9))) / 10
        pos = rng.integers(2, 10, int(rng.integers(1, 9))) / 10
        e = equal_error_rate(pos, neg)
        far, frr = _bob_eer_rates(neg.tolist(), pos.tolist())
        assert (e.fmr, e.fnmr) == (float(far), float(frr)), (neg, pos)
        assert e.eer == pytest.approx(float(far + frr) / 2)
        assert 0.0 <= e.crossing <= 1.0
        d = det_curve(pos, neg)
        gaps = np.abs(d.fmr - d.fnmr)
        tied = d.thresholds[np.isclose(gaps, gaps.min(), rtol=0, atol=1e-12)]
        differ_from_smallest_rule += e.threshold != tied.min()
    assert differ_from_smallest_rule > 0  # the tie rule matters on these data


def test_eer_crossing_interpolates_the_det_segment():
    # TV1: at t = 0.44 non-mated >= t are {0.55, 0.61, 0.47} (FMR 0.3) and mated < t is
    # {0.39} (FNMR 1/6): FMR > FNMR; at t = 0.47 FMR 0.3, FNMR 1/3: FMR < FNMR. The curves
    # cross on the DET segment (0.3, 1/6) -> (0.3, 1/3), at 0.3 (the EER 0.31667 is the
    # bob.measure average at t = 0.47).
    e = equal_error_rate(TV1_MATED, TV1_NONMATED)
    assert e.crossing == pytest.approx(0.3)
    # zero gap: the crossing is the common value
    z = equal_error_rate([0.3, 0.5], [0.2, 0.4])
    assert z.crossing == z.eer == 0.5


def test_eer_zero_gap():
    e = equal_error_rate([0.3, 0.5], [0.2, 0.4])
    assert e.threshold == 0.4 and e.eer == 0.5 and e.low == e.high == 0.5


def test_eer_perfect_separation():
    e = equal_error_rate([0.8, 0.9], [0.1, 0.2])
    assert e.eer == 0.0 and e.threshold == 0.8


def test_eer_empty_is_error():
    with pytest.raises(DataError, match="mated_scores: empty"):
        equal_error_rate([], [0.1])
    with pytest.raises(DataError, match="nonmated_scores: empty"):
        equal_error_rate([0.1], [])


def test_eer_is_n_log_n():
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    equal_error_rate(rng.normal(1, 1, 200_000), rng.normal(0, 1, 200_000))
    assert time.perf_counter() - start < 2.0  # an O(n^2) scan would take minutes


# ----------------------------------------------------------------------------- DET
def test_det_curve_tv1_points():
    d = det_curve(TV1_MATED, TV1_NONMATED)
    assert d.thresholds.shape == (16,)
    assert np.all(np.diff(d.thresholds) > 0)
    i = int(np.flatnonzero(d.thresholds == 0.55)[0])
    assert d.fmr[i] == pytest.approx(0.2) and d.fnmr[i] == pytest.approx(2 / 6)
    assert d.fmr[0] == 1.0 and d.fnmr[0] == 0.0
    assert d.fmr[-1] == 0.0 and d.fnmr[-1] == pytest.approx(5 / 6)
    assert np.all(np.diff(d.fmr) <= 0) and np.all(np.diff(d.fnmr) >= 0)
    assert (d.n_mated, d.n_nonmated) == (6, 10)


def test_det_curve_ties_across_classes():
    d = det_curve([0.5, 0.5, 0.7], [0.5, 0.1])
    np.testing.assert_array_equal(d.thresholds, [0.1, 0.5, 0.7])
    np.testing.assert_allclose(d.fmr, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(d.fnmr, [0.0, 0.0, 2 / 3])


def test_det_curve_empty():
    with pytest.raises(DataError, match="mated_scores: empty"):
        det_curve([], [0.1])


# ----------------------------------------------------------------------------- sanity
def test_score_sanity_warns_on_distances():
    with pytest.warns(ScoreSanityWarning, match="distances"):
        score_sanity_check([0.1, 0.2], [0.8, 0.9])


def test_score_sanity_silent_on_similarities():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score_sanity_check([0.8, 0.9], [0.1, 0.2])
        score_sanity_check([], [0.1])


# ----------------------------------------------------------------------------- TV8
def test_tv8_transaction_rates():
    r = transaction_rates(0.001, 0.03, 0.05, fte=0.02)
    assert r["far"] == pytest.approx(0.00095, abs=1e-12)
    assert r["gfar"] == pytest.approx(0.000931, abs=1e-12)
    assert r["gfrr"] == pytest.approx(0.09693, abs=1e-12)
    assert transaction_rates(0.001, 0.03, 0.05)["frr"] == pytest.approx(0.0785, abs=1e-12)


def test_transaction_rates_bad_input():
    with pytest.raises(DataError, match="fta"):
        transaction_rates(0.1, 0.1, 1.5)
