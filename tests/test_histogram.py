"""Streamed accumulators: ScoreHistogram and SubjectAggregates (metrics-reference §0, §1.4, §5).

Oracles: the exact functions of ``bench.metrics.rates`` and scikit-learn's
``roc_curve(..., drop_intermediate=False)`` (the default ``drop_intermediate=True`` drops
points and must not be used as a threshold oracle).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_curve

from bench.errors import (
    ConfigError,
    DataError,
    InsufficientDataError,
    InsufficientDataWarning,
    ScoreRangeWarning,
)
from bench.metrics import rates
from bench.scores.histogram import ScoreHistogram
from bench.scores.subjects import SubjectAggregates

# TV1 / TV2 of metrics-reference
TV1_NONMATED = [0.12, 0.35, 0.41, 0.08, 0.55, 0.29, 0.61, 0.19, 0.47, 0.33]
TV1_MATED = [0.72, 0.58, 0.44, 0.81, 0.66, 0.39]
TV2_REFERENCE = [0.05, 0.11, 0.14, 0.18, 0.21, 0.22, 0.25, 0.27, 0.30, 0.31,
                 0.33, 0.36, 0.38, 0.40, 0.42, 0.44, 0.47, 0.52, 0.58, 0.63]


def _hist(mated, nonmated, **kw):
    h = ScoreHistogram(1, **kw)
    h.update(np.asarray(nonmated), 0, False)
    h.update(np.asarray(mated), 0, True)
    return h


def _count_ge(scores, t):
    return int(np.count_nonzero(np.asarray(scores, dtype=np.float64) >= t))


def _sklearn_threshold(nonmated, k):
    """Exact §0 threshold from sklearn's full ROC (k >= 1): smallest threshold with <= k FPs."""
    s = np.asarray(nonmated, dtype=np.float64)
    y = np.r_[np.zeros(s.size), 1.0]
    fpr, _, thr = roc_curve(y, np.r_[s, s.max() + 1.0], drop_intermediate=False)
    fps = np.rint(fpr * s.size)
    ok = (fps <= k) & (thr <= s.max())  # observed non-mated scores only
    return float(thr[ok].min()) if ok.any() else float(np.nextafter(s.max(), np.inf))


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsufficientDataWarning)
        return fn(*a, **kw)


# ----------------------------------------------------------------------------- bins
def test_power_of_two_width_and_aligned_range():
    h = ScoreHistogram(lo=-1.0, hi=1.0, n_bins=1000)
    assert h.bin_width == 2.0**-9  # 2/1000 rounded down to a power of two
    assert (h.lo, h.hi) == (-1.0, 1.0)
    assert h.n_uniform_bins == 1024 and h.n_bins_total == 1026
    h = ScoreHistogram(lo=-0.3, hi=0.7, n_bins=3)
    assert h.bin_width == 0.25 and h.lo == -0.5 and h.hi == 0.75 and h.n_uniform_bins == 5
    assert ScoreHistogram(n_bins=2**16).n_uniform_bins == 2**16


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bin_index_is_count_of_edges_at_or_below(dtype):
    h = ScoreHistogram(lo=-1.0, hi=1.0, n_bins=64, extra_edges=[0.6, -0.6, 3.0])
    edges = h.edges
    tiny = np.finfo(dtype).smallest_subnormal
    s = np.concatenate([
        edges, np.nextafter(edges.astype(dtype), dtype(-np.inf)).astype(np.float64),
        [0.0, -0.0, tiny, -tiny, -1e-30, 1e-30, -5.0, 5.0, 1e30, -1e30, 0.6, -0.6],
        np.random.default_rng(0).uniform(-1.2, 1.2, 2000),
    ]).astype(dtype)
    got = h.bin_index(s)
    want = np.searchsorted(edges, s.astype(np.float64), side="right")  # #{e <= s}
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rates_at_every_edge_are_exact(dtype):
    rng = np.random.default_rng(1)
    nm = rng.normal(0.0, 0.3, 5000).astype(dtype)
    m = rng.normal(0.5, 0.3, 500).astype(dtype)
    h = _hist(m, nm, n_bins=256, extra_edges=[0.6], keep_scores="never")
    for t in [*h.edges[::7], 0.6, -math.inf, math.inf]:
        r = h.error_rates(t)
        assert r.false_matches == _count_ge(nm, t)
        assert r.false_non_matches == m.size - _count_ge(m, t)
        assert r == rates.error_rates(m.astype(np.float64), nm.astype(np.float64), t)


def test_non_edge_threshold_needs_snap_in_binned_mode():
    h = _hist(TV1_MATED, TV1_NONMATED, n_bins=16, keep_scores="never")
    with pytest.raises(ConfigError, match="not a bin edge"):
        h.error_rates(0.45)
    up = h.error_rates(0.45, snap="up")
    down = h.error_rates(0.45, snap="down")
    exact = rates.error_rates(TV1_MATED, TV1_NONMATED, 0.45)  # TV1: FMR 0.30
    assert up.threshold == 0.5 and down.threshold == 0.375
    assert up.fmr <= exact.fmr <= down.fmr
    assert down.fnmr <= exact.fnmr <= up.fnmr


def test_extra_edge_gives_exact_rates_at_a_nominal_threshold():
    h = _hist(TV1_MATED, TV1_NONMATED, n_bins=16, extra_edges=[0.45], keep_scores="never")
    r = h.error_rates(0.45)  # TV1: 3/10 false matches, 2/6 false non-matches
    assert (r.false_matches, r.n_nonmated, r.false_non_matches, r.n_mated) == (3, 10, 2, 6)


# ----------------------------------------------------------------------------- exact mode
def test_exact_mode_equals_rates_on_tv1_tv2():
    h = _hist(TV1_MATED, TV1_NONMATED)
    assert h.is_exact and h.resolution == 0.0
    assert h.error_rates(0.55) == rates.error_rates(TV1_MATED, TV1_NONMATED, 0.55)
    assert h.equal_error_rate() == rates.equal_error_rate(TV1_MATED, TV1_NONMATED)
    assert h.equal_error_rate().eer == pytest.approx(0.31667, abs=5e-6)  # TV1
    d, e = h.det_curve(), rates.det_curve(TV1_MATED, TV1_NONMATED)
    for a, b in zip((d.thresholds, d.fmr, d.fnmr), (e.thresholds, e.fmr, e.fnmr)):
        np.testing.assert_array_equal(a, b)
    h2 = _hist([], TV2_REFERENCE)
    t = _quiet(h2.threshold_at_fmr, 0.10)
    assert t == _quiet(rates.threshold_at_fmr, TV2_REFERENCE, 0.10)
    assert (t.threshold, t.achieved_fmr, t.k) == (0.58, 0.10, 2)  # TV2


def test_exact_mode_per_cell_equals_rates_on_the_subset():
    rng = np.random.default_rng(2)
    s = np.round(rng.normal(0, 0.3, 3000), 2)  # many ties
    cells = rng.integers(0, 3, s.size)
    mated = rng.random(s.size) < 0.2
    h = ScoreHistogram(3, keep_scores="always")
    h.update(s, cells, mated)
    for sel in (0, [1, 2], None):
        mask = np.isin(cells, np.atleast_1d(sel)) if sel is not None else np.ones(s.size, bool)
        m, nm = s[mask & mated], s[mask & ~mated]
        assert h.error_rates(0.1, cells=sel) == rates.error_rates(m, nm, 0.1)
        assert _quiet(h.threshold_at_fmr, 0.05, cells=sel) == _quiet(rates.threshold_at_fmr, nm, 0.05)
        assert h.equal_error_rate(cells=sel) == rates.equal_error_rate(m, nm)


@settings(max_examples=80, deadline=None)
@given(
    nm=st.lists(st.integers(-20, 20), min_size=1, max_size=120),
    m=st.lists(st.integers(-20, 20), min_size=1, max_size=40),
    t=st.integers(-21, 21),
    f=st.floats(0.01, 0.99),
)
def test_exact_mode_is_identical_to_rates_property(nm, m, t, f):
    nm_s, m_s = np.asarray(nm) / 7.0, np.asarray(m) / 7.0  # ties, non-dyadic values
    h = _hist(m_s, nm_s)
    assert h.error_rates(t / 7.0) == rates.error_rates(m_s, nm_s, t / 7.0)
    assert h.equal_error_rate() == rates.equal_error_rate(m_s, nm_s)
    if nm_s.size * f >= 1:
        got = _quiet(h.threshold_at_fmr, f)
        assert got == _quiet(rates.threshold_at_fmr, nm_s, f)
        k = got.k
        if k >= 1:
            assert got.threshold == _sklearn_threshold(nm_s, k)


def test_auto_mode_switches_to_binned_above_the_limit():
    h = ScoreHistogram(keep_scores="auto", keep_scores_limit=100)
    h.update(np.linspace(-0.5, 0.5, 60))
    assert h.is_exact
    h.update(np.linspace(-0.5, 0.5, 60))
    assert not h.is_exact and h.resolution == h.bin_width
    assert h.n_comparisons(mated=False) == 120  # counts were kept all along


# ----------------------------------------------------------------------------- tolerance
def _tolerance_checks(h, nonmated, f):
    """The four guarantees of ScoreHistogram.threshold_at_fmr (class Notes)."""
    s = np.asarray(nonmated, dtype=np.float64)
    exact = _quiet(rates.threshold_at_fmr, s, f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsufficientDataWarning)
        binned = h.threshold_at_fmr(f)
    k = exact.k
    assert binned.k == k and binned.n_nonmated == exact.n_nonmated == s.size
    c_h, c_x = _count_ge(s, binned.threshold), _count_ge(s, exact.threshold)
    # 1. conservative, counted exactly
    assert c_h <= k and binned.achieved_fmr == c_h / s.size <= f
    # 2. less than one bin above the exact order-statistic threshold: with s(k+1) the
    #    (k+1)-th largest score, t* > s(k+1) and t_h <= s(k+1) + w
    s_k1 = np.sort(s)[::-1][k]
    assert exact.threshold > s_k1 and binned.threshold > s_k1
    if s_k1 >= h.lo:
        assert binned.threshold <= s_k1 + h.bin_width
    # 3. below it only when decision-equivalent on the calibration scores
    if binned.threshold < exact.threshold:
        assert c_h == c_x
    else:  # the extra comparisons lost lie in one bin just below t_h
        lost = s[(s >= exact.threshold) & (s < binned.threshold)]
        assert np.all(lost >= binned.threshold - h.bin_width)
    # sklearn oracle for the exact threshold (k >= 1)
    if k >= 1:
        assert exact.threshold == _sklearn_threshold(s, k)
    return exact, binned


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.integers(-40, 40), min_size=2, max_size=300),
    scale=st.sampled_from([1 / 50, 1 / 64, 0.013]),
    f=st.floats(0.001, 0.9),
    n_bins=st.sampled_from([8, 64, 1024]),
)
def test_threshold_tolerance_property(values, scale, f, n_bins):
    s = np.asarray(values, dtype=np.float64) * scale  # integer grid: many ties
    if s.size * f < 1:
        return
    h = _hist([], s, lo=-1.0, hi=1.0, n_bins=n_bins, keep_scores="never")
    _tolerance_checks(h, s, f)


def test_threshold_tolerance_on_continuous_scores():
    rng = np.random.default_rng(3)
    s = rng.normal(0.0, 0.1, 200_000).astype(np.float32)
    h = _hist([], s, n_bins=2**16, keep_scores="never")
    for f in (1e-1, 1e-2, 1e-3, 1e-4):
        exact, binned = _tolerance_checks(h, s, f)
        assert abs(binned.achieved_fmr - exact.achieved_fmr) <= 1e-4  # one fine bin of mass


def test_threshold_overflow_and_underflow():
    s = np.r_[np.full(10, 5.0), np.zeros(90)]  # 10% above hi
    h = _hist([], s, n_bins=16, keep_scores="never")
    with pytest.raises(DataError, match="larger hi"):
        _quiet(h.threshold_at_fmr, 0.05)
    s = np.r_[np.full(95, -5.0), np.zeros(5)]  # the cut falls in the underflow bin
    h = _hist([], s, n_bins=16, keep_scores="never")
    with pytest.warns(ScoreRangeWarning):
        t = _quiet(h.threshold_at_fmr, 0.5)
    assert t.threshold == -1.0 and t.achieved_fmr == 0.05  # conservative and exact


def test_threshold_needs_enough_scores():
    h = _hist([], np.zeros(50), keep_scores="never")
    with pytest.raises(InsufficientDataError):
        h.threshold_at_fmr(0.01)  # N < 1/f
    with pytest.warns(InsufficientDataWarning):
        h.threshold_at_fmr(0.1)  # N < 30/f


# ----------------------------------------------------------------------------- DET / EER
@settings(max_examples=60, deadline=None)
@given(
    nm=st.lists(st.integers(-30, 30), min_size=1, max_size=150),
    m=st.lists(st.integers(-30, 30), min_size=1, max_size=60),
)
def test_binned_det_points_are_exact_det_points(nm, m):
    nm_s, m_s = np.asarray(nm) / 31.0, np.asarray(m) / 31.0 + 0.2
    h = _hist(m_s, nm_s, n_bins=32, keep_scores="never")
    d = h.det_curve()
    y = np.r_[np.ones(m_s.size), np.zeros(nm_s.size)]
    fpr, tpr, _ = roc_curve(y, np.r_[m_s, nm_s], drop_intermediate=False)
    exact_points = set(zip(np.rint(fpr * nm_s.size).astype(int), np.rint((1 - tpr) * m_s.size).astype(int)))
    binned_points = set(zip(np.rint(d.fmr * nm_s.size).astype(int), np.rint(d.fnmr * m_s.size).astype(int)))
    assert binned_points <= exact_points
    assert np.all(np.diff(d.thresholds) > 0) and np.all(np.diff(d.fmr) <= 0) and np.all(np.diff(d.fnmr) >= 0)
    e_b = h.equal_error_rate()
    e_x = rates.equal_error_rate(m_s, nm_s)
    assert abs(e_b.fmr - e_b.fnmr) >= abs(e_x.fmr - e_x.fnmr) - 1e-12  # gap never smaller


def test_binned_eer_on_fine_bins_is_close():
    rng = np.random.default_rng(4)
    nm, m = rng.normal(0, 0.1, 100_000), rng.normal(0.4, 0.1, 5_000)
    h = _hist(m, nm, keep_scores="never")
    assert h.equal_error_rate().eer == pytest.approx(rates.equal_error_rate(m, nm).eer, abs=2e-4)


# ----------------------------------------------------------------------------- update paths, merge
def test_update_paths_agree_and_order_does_not_matter():
    rng = np.random.default_rng(5)
    s = rng.normal(0, 0.4, 50_000).astype(np.float32)
    cells = rng.integers(0, 4, s.size)
    mated = rng.random(s.size) < 0.1
    mixed = ScoreHistogram(4, keep_scores="never")
    mixed.update(s, cells, mated)
    per_cell = ScoreHistogram(4, keep_scores="never")
    for c in range(4):
        for m in (False, True):
            sel = (cells == c) & (mated == m)
            per_cell.update(s[sel], c, m)
    order = np.lexsort((mated, cells))  # long runs: run-by-run path
    runs = ScoreHistogram(4, keep_scores="never")
    runs.update(s[order], cells[order], mated[order])
    perm = rng.permutation(s.size)
    shuffled = ScoreHistogram(4, keep_scores="never")
    shuffled.update(s[perm], cells[perm], mated[perm])
    for other in (per_cell, runs, shuffled):
        for m in (False, True):
            for c in range(4):
                np.testing.assert_array_equal(mixed.counts(mated=m, cells=c), other.counts(mated=m, cells=c))


def test_threads_give_identical_counts():
    rng = np.random.default_rng(12)
    s = rng.normal(0, 0.3, (1 << 21) + 12345).astype(np.float32)
    cells = rng.integers(0, 3, s.size)
    one, two = ScoreHistogram(3, keep_scores="never"), ScoreHistogram(3, keep_scores="never", threads=2)
    for h in (one, two):
        h.update(s, cells, False)  # mixed path
        h.update(s, 1, True)  # single-cell path
    np.testing.assert_array_equal(one._counts, two._counts)
    cut = np.float32(0.9)
    hits = two._bin_block(s, 0, False, select_at_least=cut)
    np.testing.assert_array_equal(hits, np.flatnonzero(s >= cut))


def test_merge_equals_single_pass_and_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(6)
    s = rng.normal(0, 0.3, 30_000)
    cells = rng.integers(0, 2, s.size)
    mated = rng.random(s.size) < 0.05
    labels = [("f", "f"), ("f", 1)]
    full = ScoreHistogram(2, keep_scores="never", cell_labels=labels)
    full.update(s, cells, mated)
    shards = np.array_split(rng.permutation(s.size), 3)
    merged = ScoreHistogram(2, keep_scores="never", cell_labels=labels)
    for idx in shards:
        part = ScoreHistogram(2, keep_scores="never", cell_labels=labels)
        part.update(s[idx], cells[idx], mated[idx])
        merged.merge(part)
    for m in (False, True):
        np.testing.assert_array_equal(full.counts(mated=m), merged.counts(mated=m))
    t = full.threshold_at_fmr(1e-2)
    assert merged.threshold_at_fmr(1e-2) == t
    path = tmp_path / "h.npz"
    merged.save(path)
    back = ScoreHistogram.load(path)
    assert back.cell_labels == labels and back.cell_index(("f", 1)) == 1
    assert back.threshold_at_fmr(1e-2) == t and back.error_rates(t.threshold) == full.error_rates(t.threshold)
    with pytest.raises(ConfigError, match="differ"):
        merged.merge(ScoreHistogram(2, n_bins=128, cell_labels=labels))


def test_merge_of_exact_histograms_stays_exact():
    a, b = ScoreHistogram(), ScoreHistogram()
    a.update(TV1_NONMATED[:5])
    b.update(TV1_NONMATED[5:])
    a.update(TV1_MATED, 0, True)
    a.merge(b)
    assert a.is_exact and a.equal_error_rate() == rates.equal_error_rate(TV1_MATED, TV1_NONMATED)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_is_rejected_without_changing_state():
    h = ScoreHistogram(2, keep_scores="never")
    h.update([0.1, 0.2])
    with pytest.raises(DataError, match="non-finite"):
        h.update([0.3, np.nan, 0.4])
    with pytest.raises(DataError, match="non-finite"):
        h.update(np.r_[np.zeros(10), np.inf])
    assert h.n_comparisons(mated=False) == 2
    with pytest.raises(ConfigError, match="cells"):
        h.update([0.1], cells=2)
    with pytest.raises(ConfigError, match="cells"):
        h.update([0.1, 0.2], cells=np.array([0, 5]))
    with pytest.raises(DataError, match="shape"):
        h.update([0.1, 0.2], cells=np.array([0, 1, 1]))
    with pytest.raises(DataError, match="1-D"):
        h.update(np.zeros((2, 2)))
    with pytest.raises(ConfigError):
        ScoreHistogram(lo=1.0, hi=0.0)
    with pytest.raises(ConfigError):
        ScoreHistogram(n_bins=0)
    with pytest.raises(ConfigError, match="NaN"):
        h.error_rates(float("nan"))
    with pytest.raises(DataError, match="empty"):
        h.det_curve()  # no mated scores


def test_cross_cells_layout():
    h = ScoreHistogram.for_groups(["f", "m"], n_bins=16)
    assert h.n_cells == 4 and h.cell_index(("m", "f")) == ScoreHistogram.cross_cell(1, 0, 2) == 2
    with pytest.raises(ConfigError, match="unknown cell"):
        h.cell_index("x")


# ----------------------------------------------------------------------------- subject aggregates
def _design(rng, n_subjects=24, n_groups=3, max_images=4):
    groups = np.arange(n_subjects) % n_groups
    m = rng.integers(1, max_images + 1, n_subjects)
    img_subj = np.repeat(np.arange(n_subjects), m)
    i, j = np.triu_indices(img_subj.size, 1)
    sa, sb = img_subj[i], img_subj[j]
    scores = np.round(rng.normal(0.0, 0.2, sa.size) + 0.5 * (sa == sb), 2)  # ties
    return groups, m, sa, sb, scores


def test_tail_is_exactly_all_scores_above_cutoff_and_thresholds_are_exact():
    rng = np.random.default_rng(7)
    groups, m, sa, sb, scores = _design(rng, n_subjects=60)
    agg = SubjectAggregates(groups, m, tail_size=150)
    for idx in np.array_split(rng.permutation(scores.size), 17):
        agg.update(scores[idx], sa[idx], sb[idx])
    nm = sa != sb
    assert agg.cutoff > -math.inf
    s_tail = np.sort(agg._tail_arrays()[0])
    np.testing.assert_array_equal(s_tail, np.sort(scores[nm & (scores >= agg.cutoff)]))
    assert agg.n_mated == int((~nm).sum())
    assert agg.n_nonmated_cells()[np.triu_indices(3)].sum() == int(nm.sum())
    for f in (0.001, 0.005):
        assert _quiet(agg.threshold_at_fmr, f) == _quiet(rates.threshold_at_fmr, scores[nm], f)
    g0 = (groups[sa] == 0) & (groups[sb] == 0) & nm
    assert _quiet(agg.threshold_at_fmr, 0.01, groups=[0]) == _quiet(rates.threshold_at_fmr, scores[g0], 0.01)
    with pytest.raises(InsufficientDataError, match="tail_size"):
        _quiet(agg.threshold_at_fmr, 0.2)


def _naive_replicate(groups, sa, sb, scores, c, t):
    """Expand replicate weights over every comparison; counts per group / diagonal cell."""
    G = groups.max() + 1
    nm = sa != sb
    w = np.where(nm, c[sa] * c[sb], c[sa])
    ga, gb = groups[sa], groups[sb]
    out = {}
    for g in range(G):
        mg = ~nm & (ga == g)
        out[("fnm", g)] = float((w * (mg & (scores < t))).sum())
        out[("nm", g)] = float((w * mg).sum())
        dg = nm & (ga == g) & (gb == g)
        out[("fm", g)] = float((w * (dg & (scores >= t))).sum())
        out[("nn", g)] = float((w * dg).sum())
    return out


def test_replicate_counts_equal_naive_expansion_fixed_and_recalibrated():
    rng = np.random.default_rng(8)
    groups, m, sa, sb, scores = _design(rng, n_subjects=30)
    agg = SubjectAggregates(groups, m, tail_size=10_000)  # the whole non-mated set is the tail
    agg.update(scores, sa, sb)
    c_all = agg.draw_subject_counts(25, np.random.default_rng(0))
    assert np.all(c_all.sum(axis=1) == (m > 0).sum())
    t_fixed = 0.2
    rep = agg.replicate_counts(c_all, thresholds={"fixed": t_fixed}, recalibrate={"re": 0.02})
    nm = sa != sb
    for b in range(c_all.shape[0]):
        c = c_all[b].astype(np.float64)
        # re-calibration oracle: the §0 rule on the replicate's data, comparisons repeated w times
        w = (c[sa] * c[sb])[nm].astype(int)
        t_re = _quiet(rates.threshold_at_fmr, np.repeat(scores[nm], w), 0.02).threshold
        assert rep.thresholds["re"][b] == t_re
        for name, t in (("fixed", t_fixed), ("re", t_re)):
            want = _naive_replicate(groups, sa, sb, scores, c, t)
            for g in range(3):
                assert rep.false_non_matches[name][b, g] == want[("fnm", g)]
                assert rep.n_mated[b, g] == want[("nm", g)]
                assert rep.false_matches[name][b, g, g] == want[("fm", g)]
                assert rep.n_nonmated[b, g, g] == want[("nn", g)]
        # off-diagonal cells and totals
        assert rep.n_nonmated[b][np.triu_indices(3)].sum() == (c[sa] * c[sb])[nm].sum()
        assert rep.false_matches["fixed"][b][np.triu_indices(3)].sum() == (
            (c[sa] * c[sb])[nm & (scores >= t_fixed)].sum()
        )
    assert rep.fmr_diagonal("fixed").shape == (25, 3) and rep.fnmr("re").shape == (25, 3)


def test_replicates_below_the_tail_are_flagged():
    rng = np.random.default_rng(9)
    groups, m, sa, sb, scores = _design(rng, n_subjects=40)
    agg = SubjectAggregates(groups, m, tail_size=20)
    agg.update(scores, sa, sb)
    with pytest.raises(InsufficientDataError, match="tail"):
        agg.replicate_counts(agg.draw_subject_counts(3, rng), thresholds={"low": agg.cutoff - 1.0})
    with pytest.warns(InsufficientDataWarning, match="could not re-calibrate"):
        rep = agg.replicate_counts(agg.draw_subject_counts(5, rng), recalibrate={"re": 0.3})
    assert rep.unresolved["re"] == 5 and np.isnan(rep.thresholds["re"]).all()


def test_subject_error_counts_and_merge():
    rng = np.random.default_rng(10)
    groups, m, sa, sb, scores = _design(rng, n_subjects=20)
    half = scores.size // 2
    a = SubjectAggregates(groups, m, tail_size=50)
    b = SubjectAggregates(groups, m, tail_size=50)
    a.update(scores[:half], sa[:half], sb[:half])
    b.update(scores[half:], sa[half:], sb[half:])
    a.merge(b)
    t = a.cutoff + 0.05
    got = a.subject_error_counts(t)
    nm = sa != sb
    want_m = np.bincount(sa[~nm], weights=scores[~nm] < t, minlength=20)
    np.testing.assert_array_equal(got["mated_errors"], want_m)
    hit = nm & (scores >= t)
    assert got["pair_errors"].sum() == hit.sum()
    pairs = set(zip(np.minimum(sa[hit], sb[hit]), np.maximum(sa[hit], sb[hit])))
    assert set(zip(got["pair_a"], got["pair_b"])) == pairs
    with pytest.raises(InsufficientDataError):
        a.subject_error_counts(a.cutoff - 1.0)


def test_recalibration_falls_back_to_the_whole_tail():
    # subjects 0 and 1 (80 images each) share the 6400 highest non-mated scores; a
    # replicate that does not draw subject 0 must find its cut beyond the short prefix
    rng = np.random.default_rng(11)
    m = np.r_[80, 80, np.full(40, 2)]
    img = np.repeat(np.arange(m.size), m)
    i, j = np.triu_indices(img.size, 1)
    sa, sb = img[i], img[j]
    scores = np.round(rng.normal(0.0, 0.2, sa.size), 3)
    top = ((sa == 0) & (sb == 1)) | ((sa == 1) & (sb == 0))
    scores[top] = 2.0 + np.round(rng.random(top.sum()), 3)
    agg = SubjectAggregates(np.zeros(m.size, dtype=int), m, tail_size=100_000)
    agg.update(scores, sa, sb)
    c_all = agg.draw_subject_counts(4, np.random.default_rng(1))
    c_all[:2, 0] = 0  # two replicates without subject 0, two with subjects 0 and 1
    c_all[2:, :2] = np.maximum(c_all[2:, :2], 1)
    rep = agg.replicate_counts(c_all, recalibrate={"re": 0.001})
    nm = sa != sb
    for b in range(4):
        c = c_all[b].astype(np.float64)
        w = (c[sa] * c[sb])[nm].astype(int)
        want = _quiet(rates.threshold_at_fmr, np.repeat(scores[nm], w), 0.001).threshold
        assert rep.thresholds["re"][b] == want
    assert rep.thresholds["re"][0] < 2.0 < rep.thresholds["re"][2]


def test_rejected_update_on_the_run_path_changes_nothing():
    # runs of one cell are binned and checked chunk by chunk; a NaN in a later run must
    # take the earlier runs back out (counts unchanged, whole-array message)
    rng = np.random.default_rng(21)
    s = rng.normal(0, 0.2, 3 * (1 << 18)).astype(np.float32)
    cells = np.repeat(np.arange(3), 1 << 18)
    h = ScoreHistogram(3, keep_scores="never")
    h.update(s, cells, False)
    before = h._counts.copy()
    bad = s.copy()
    bad[-5] = np.nan
    bad[-2] = np.inf
    with pytest.raises(DataError, match=r"2 non-finite score\(s\) \(first at index %d" % (s.size - 5)):
        h.update(bad, cells, False)
    np.testing.assert_array_equal(h._counts, before)
    # scores outside [lo, hi) in one chunk and inside in the next: same counts as per score
    mixed = np.r_[np.float32([-3.0, 2.0, 1.0, -1.0]), s[:1000]]
    h2 = ScoreHistogram(1, keep_scores="never")
    h2.update(mixed)
    np.testing.assert_array_equal(h2.counts(mated=False), np.bincount(h2.bin_index(mixed), minlength=h2.n_bins_total))
    assert h2.counts(mated=False)[0] == 1 and h2.counts(mated=False)[-1] == 2
