"""Blocked all-vs-all scoring streamed into histograms (bench.protocol.streaming).

Oracle: the full score matrix computed naively. Strict equality uses "dyadic" unit
embeddings (entries 0, +-1/2, +-1) whose dot products are exact in float32 whatever the
summation order, so any block layout must give identical counts (and many ties).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.errors import ConfigError, DataError
from bench.scores.histogram import ScoreHistogram
from bench.scores.subjects import SubjectAggregates
from bench.protocol.streaming import default_cell_map, score_all_vs_all, score_listed_pairs


def _dyadic_unit(rng, n, d=16):
    x = np.zeros((n, d), dtype=np.float32)
    for i in range(n):
        if rng.random() < 0.7:
            x[i, rng.choice(d, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
        else:
            x[i, rng.integers(d)] = rng.choice([-1.0, 1.0])
    return x


def _design(rng, n_subjects=40, n_groups=3, max_images=4):
    m = rng.integers(1, max_images + 1, n_subjects)
    subj = np.repeat(np.arange(n_subjects), m)
    subj_groups = rng.integers(0, n_groups, n_subjects)
    perm = rng.permutation(subj.size)  # images not ordered by subject or group
    subj = subj[perm]
    return subj, subj_groups[subj], subj_groups, m


def _naive(x, subj, grp, metric, n_groups):
    """Every pair i<j: float32 scores, mated flags, unordered cells (float64 arithmetic)."""
    x64 = x.astype(np.float64)
    i, j = np.triu_indices(x.shape[0], 1)
    dots = np.einsum("ij,ij->i", x64[i], x64[j])
    if metric == "cosine":
        s = dots
    else:
        s = -np.sqrt(np.maximum((x64[i] ** 2).sum(1) + (x64[j] ** 2).sum(1) - 2 * dots, 0.0))
    cells = default_cell_map(n_groups)[grp[i], grp[j]]
    return s.astype(np.float32), subj[i] == subj[j], cells, subj[i], subj[j]


def _naive_hist(s, mated, cells, n_groups, **kw):
    h = ScoreHistogram.for_groups(range(n_groups), keep_scores="never", **kw)
    h.update(s, cells, mated)
    return h


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("block_size", [5, 33, 4096])
def test_counts_identical_to_full_matrix(metric, block_size):
    rng = np.random.default_rng(block_size)
    subj, grp, _, m = _design(rng)
    x = _dyadic_unit(rng, subj.size)
    lo, hi = (-1.0, 1.0) if metric == "cosine" else (-2.0, 0.0)
    h = ScoreHistogram.for_groups(range(3), lo=lo, hi=hi, n_bins=64, keep_scores="never")
    stats = score_all_vs_all(x, subj, grp, h, metric=metric, block_size=block_size)
    s, mated, cells, _, _ = _naive(x, subj, grp, metric, 3)
    ref = _naive_hist(s, mated, cells, 3, lo=lo, hi=hi, n_bins=64)
    n = subj.size
    assert stats.n_comparisons == n * (n - 1) // 2  # every i < j once
    assert stats.n_mated == int((m * (m - 1) // 2).sum()) == int(mated.sum())
    for c in range(9):
        for kind in (False, True):
            np.testing.assert_array_equal(h.counts(mated=kind, cells=c), ref.counts(mated=kind, cells=c))
    # only unordered cells (g <= h) receive comparisons
    lower = [g * 3 + k for g in range(3) for k in range(g)]
    assert h.n_comparisons(mated=False, cells=lower) == 0


def test_exact_mode_keeps_the_same_scores_and_matches_rates():
    rng = np.random.default_rng(11)
    subj, grp, _, _ = _design(rng, n_subjects=25)
    x = _dyadic_unit(rng, subj.size)
    h = ScoreHistogram.for_groups(range(3), keep_scores="always")
    score_all_vs_all(x, subj, grp, h, block_size=7)
    assert h.is_exact
    s, mated, _, _, _ = _naive(x, subj, grp, "cosine", 3)
    from bench.metrics import rates

    assert h.equal_error_rate() == rates.equal_error_rate(s[mated].astype(float), s[~mated].astype(float))


def test_random_embeddings_scores_match_float64_reference():
    rng = np.random.default_rng(12)
    subj, grp, _, _ = _design(rng, n_subjects=80)
    x = rng.standard_normal((subj.size, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for metric in ("cosine", "euclidean"):
        h = ScoreHistogram.for_groups(range(3), lo=-2.0, hi=1.0, keep_scores="always")
        score_all_vs_all(x, subj, grp, h, metric=metric, block_size=50)
        s, mated, cells, _, _ = _naive(x, subj, grp, metric, 3)
        for c in np.unique(cells):
            for kind in (False, True):
                got = np.sort(h._raw_scores(int(c))[0 if kind else 1])
                want = np.sort(s[(cells == c) & (mated == kind)].astype(np.float64))
                assert got.shape == want.shape
                np.testing.assert_allclose(got, want, atol=2e-6 if metric == "cosine" else 2e-3)


def test_permutation_of_images_changes_nothing():
    rng = np.random.default_rng(13)
    subj, grp, _, _ = _design(rng)
    x = _dyadic_unit(rng, subj.size)
    a = ScoreHistogram.for_groups(range(3), n_bins=128, keep_scores="never")
    score_all_vs_all(x, subj, grp, a, block_size=16)
    perm = rng.permutation(subj.size)
    relabel = rng.permutation(subj.max() + 1)  # subject codes are names only
    b = ScoreHistogram.for_groups(range(3), n_bins=128, keep_scores="never")
    score_all_vs_all(x[perm], relabel[subj[perm]], grp[perm], b, block_size=16)
    for kind in (False, True):
        np.testing.assert_array_equal(a.counts(mated=kind, cells=list(range(9))),
                                      b.counts(mated=kind, cells=list(range(9))))
        for c in range(9):
            np.testing.assert_array_equal(a.counts(mated=kind, cells=c), b.counts(mated=kind, cells=c))


@pytest.mark.parametrize("exact", [False, True])
def test_aggregates_receive_all_mated_and_the_exact_tail(exact):
    rng = np.random.default_rng(14)
    subj, grp, subj_groups, m = _design(rng, n_subjects=60)
    x = _dyadic_unit(rng, subj.size)
    h = ScoreHistogram.for_groups(range(3), keep_scores="always" if exact else "never")
    agg = SubjectAggregates(subj_groups, m, tail_size=200)
    score_all_vs_all(x, subj, grp, h, aggregates=agg, block_size=40)
    s, mated, _, sa, sb = _naive(x, subj, grp, "cosine", 3)
    assert agg.n_mated == int(mated.sum())
    ms, mg = agg._mated_arrays()
    np.testing.assert_array_equal(np.sort(ms), np.sort(s[mated].astype(np.float64)))
    np.testing.assert_array_equal(np.bincount(mg, minlength=60), np.bincount(sa[mated], minlength=60))
    assert agg.cutoff > -math.inf
    ts, ta, tb = agg._tail_arrays()
    want = ~mated & (s >= agg.cutoff)
    np.testing.assert_array_equal(np.sort(ts), np.sort(s[want].astype(np.float64)))
    got_pairs = sorted(zip(np.minimum(ta, tb), np.maximum(ta, tb), ts))
    want_pairs = sorted(zip(np.minimum(sa[want], sb[want]), np.maximum(sa[want], sb[want]), s[want].astype(float)))
    assert got_pairs == want_pairs
    assert agg.n_nonmated_cells()[np.triu_indices(3)].sum() == int((~mated).sum())


def test_listed_pairs_match_naive():
    rng = np.random.default_rng(15)
    x = _dyadic_unit(rng, 50)
    a, b = rng.integers(0, 50, 400), rng.integers(0, 50, 400)
    cells = rng.integers(0, 4, 400)
    mated = rng.random(400) < 0.3
    for metric in ("cosine", "euclidean"):
        h = ScoreHistogram(4, lo=-2.0, hi=1.0, n_bins=96, keep_scores="never")
        st = score_listed_pairs(x, a, b, cells, mated, h, metric=metric, chunk=64)
        x64 = x.astype(np.float64)
        s = np.einsum("ij,ij->i", x64[a], x64[b]) if metric == "cosine" else -np.linalg.norm(x64[a] - x64[b], axis=1)
        ref = ScoreHistogram(4, lo=-2.0, hi=1.0, n_bins=96, keep_scores="never")
        ref.update(s.astype(np.float32), cells, mated)
        assert st.n_comparisons == 400 and st.n_mated == int(mated.sum())
        for kind in (False, True):
            for c in range(4):
                np.testing.assert_array_equal(h.counts(mated=kind, cells=c), ref.counts(mated=kind, cells=c))


def test_bad_input():
    rng = np.random.default_rng(16)
    x = _dyadic_unit(rng, 10)
    subj, grp = np.arange(10), np.zeros(10, dtype=int)
    h = ScoreHistogram.for_groups([0])
    with pytest.raises(DataError, match="unit-norm"):
        score_all_vs_all(2 * x, subj, grp, h)
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(DataError, match="row 3"):
        score_all_vs_all(bad, subj, grp, h)
    with pytest.raises(ConfigError, match="metric"):
        score_all_vs_all(x, subj, grp, h, metric="manhattan")
    with pytest.raises(DataError, match="shape"):
        score_all_vs_all(x, subj[:5], grp, h)
    with pytest.raises(ConfigError, match="cells"):
        score_all_vs_all(x, subj, np.arange(10) % 2, h)  # 2 groups need 4 cells
    with pytest.raises(ConfigError, match="symmetric"):
        score_all_vs_all(x, subj, np.arange(10) % 2, ScoreHistogram(4), cell_map=[[0, 1], [2, 3]])
    agg = SubjectAggregates(np.zeros(10, dtype=int), np.full(10, 2))
    with pytest.raises(DataError, match="images_per_subject"):
        score_all_vs_all(x, subj, grp, h, aggregates=agg)
    assert h.n_comparisons(mated=False) == 0  # nothing was binned by the failed calls


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(17)
    subj, grp, subj_groups, m = _design(rng, n_subjects=200)
    x = _dyadic_unit(rng, subj.size)
    out = {}
    for dev in ("cpu", "cuda"):
        h = ScoreHistogram.for_groups(range(3), keep_scores="never")
        agg = SubjectAggregates(subj_groups, m, tail_size=500)
        score_all_vs_all(x, subj, grp, h, aggregates=agg, device=dev, block_size=64)
        out[dev] = (h, agg)
    for kind in (False, True):
        for c in range(9):
            np.testing.assert_array_equal(out["cpu"][0].counts(mated=kind, cells=c),
                                          out["cuda"][0].counts(mated=kind, cells=c))
    a, b = out["cpu"][1], out["cuda"][1]
    t = max(a.cutoff, b.cutoff)
    sa, sb = a._tail_arrays()[0], b._tail_arrays()[0]
    np.testing.assert_array_equal(np.sort(sa[sa >= t]), np.sort(sb[sb >= t]))
