"""Subject-level bootstrap (docs/protocol.md §5.2–5.7)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from bench.errors import ConfigError, DataError, InsufficientDataError
from bench.metrics import bootstrap_design as bs_module
from bench.metrics.bootstrap import (
    BOOT_DIFFERENTIAL_COLUMNS,
    BOOT_GROUP_COLUMNS,
    bootstrap_group_rates,
    bootstrap_overall_rates,
    bootstrap_replicates,
    with_overall_rows,
)
from bench.metrics.bootstrap_differentials import bootstrap_differentials
from bench.metrics.differentials import (
    fdr,
    garbe,
    gini,
    inequity_rate,
    max_geomean_ratio,
    max_min_difference,
    max_min_ratio,
)
from bench.metrics.groups import ALL_GROUP, per_group_rates
from bench.metrics.intervals import wilson_interval
from bench.metrics.rates import _allowed_false_matches, threshold_at_fmr
from test_groups import make_table


def _rows(subject_a, subject_b, mated, score, label_a, label_b=None):
    return pd.DataFrame(
        {
            "subject_a": subject_a,
            "subject_b": subject_b,
            "mated": np.asarray(mated, dtype=bool),
            "score": np.asarray(score, dtype=float),
            "g_a": label_a,
            "g_b": label_a if label_b is None else label_b,
        }
    )


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_table(n_subjects=30, images_per_subject=3, seed=2)


# ----------------------------------------------------------------------------- exact enumeration
def test_fnmr_two_subjects_exact_distribution():
    # subject a: 1 error in 2 mated comparisons; subject b: 0 in 1 (threshold 0.5).
    # Resamples of size 2: {a,a} p=1/4 -> 2/4; {b,b} p=1/4 -> 0/1... (0/2); {a,b} p=1/2 -> 1/3.
    df = _rows(["a", "a", "b"], ["a", "a", "b"], [1, 1, 1], [0.2, 0.9, 0.8], "X")
    reps = bootstrap_replicates(df, attribute="g", thresholds={"t": 0.5}, n_replicates=8000, seed=1)
    r = reps.rates("t", "FNMR")[:, reps.groups.index("X")]
    exact = {0.5: 0.25, 0.0: 0.25, 1 / 3: 0.5}
    for value, p in exact.items():
        assert np.mean(np.isclose(r, value)) == pytest.approx(p, abs=0.02)
    assert r.mean() == pytest.approx(sum(v * p for v, p in exact.items()), abs=0.01)  # 0.29167


def test_fmr_two_subject_bootstrap_exact_enumeration():
    # three subjects in one group, non-mated comparisons between every pair (two for a-b)
    df = _rows(
        ["a", "a", "a", "b"],
        ["b", "b", "c", "c"],
        [0, 0, 0, 0],
        [0.9, 0.1, 0.7, 0.2],
        "X",
    )
    t = 0.5
    err = {("a", "b"): (1, 2), ("a", "c"): (1, 1), ("b", "c"): (0, 1)}
    values, undefined = [], 0
    for draw in itertools.product("abc", repeat=3):  # 27 equally likely ordered draws
        c = {s: draw.count(s) for s in "abc"}
        num = sum(c[i] * c[j] * e for (i, j), (e, _) in err.items())
        den = sum(c[i] * c[j] * n for (i, j), (_, n) in err.items())
        if den == 0:
            undefined += 1  # only one distinct subject drawn: no impostor pair (self pairs dropped)
        else:
            values.append(num / den)
    exact_mean = float(np.mean(values))
    reps = bootstrap_replicates(df, attribute="g", thresholds={"t": t}, n_replicates=20000, seed=3)
    r = reps.rates("t", "FMR")[:, reps.groups.index("X")]
    assert np.mean(np.isnan(r)) == pytest.approx(undefined / 27, abs=0.01)  # 3/27
    assert np.nanmean(r) == pytest.approx(exact_mean, abs=0.005)
    # each distinct value appears with its exact frequency
    for v in set(np.round(values, 12)):
        p = np.mean(np.isclose(np.round(values, 12), v)) * len(values) / 27
        assert np.mean(np.isclose(r, v)) == pytest.approx(p, abs=0.012)


# ----------------------------------------------------------------------------- brute-force oracle
def _expanded_rates(df, counts, subject_ids, attribute, threshold, group):
    """Rates of one replicate by explicit expansion of the resampled comparisons."""
    c = dict(zip(subject_ids, counts))
    w = np.where(
        df.mated,
        df.subject_a.map(c),
        df.subject_a.map(c) * df.subject_b.map(c),
    ).astype(float)
    if group == ALL_GROUP:
        in_g = np.ones(len(df), bool)
    else:
        in_g = (df[f"{attribute}_a"] == group) & (df[f"{attribute}_b"] == group)
    nm = (~df.mated & in_g).to_numpy()
    m = (df.mated & in_g).to_numpy()
    s = df.score.to_numpy()
    fmr = (w[nm] * (s[nm] >= threshold)).sum() / w[nm].sum() if w[nm].sum() else np.nan
    fnmr = (w[m] * (s[m] < threshold)).sum() / w[m].sum() if w[m].sum() else np.nan
    return fmr, fnmr, w


def test_replicates_match_explicit_expansion(table):
    reps = bootstrap_replicates(table, attribute="eth", thresholds={"t": 0.45}, n_replicates=5, seed=7)
    for b in range(5):
        for k, g in enumerate(reps.groups):
            fmr, fnmr, _ = _expanded_rates(table, reps.subject_counts[b], reps.subject_ids, "eth", 0.45, g)
            assert reps.rates("t", "FMR")[b, k] == pytest.approx(fmr, nan_ok=True)
            assert reps.rates("t", "FNMR")[b, k] == pytest.approx(fnmr, nan_ok=True)


def test_recalibration_matches_explicit_expansion(table):
    target = 0.05
    reps = bootstrap_replicates(
        table, attribute="eth", thresholds={"cal": 0.0}, n_replicates=6, seed=11, recalibrate={"cal": target}
    )
    thr = reps.thresholds["cal"]
    assert np.unique(thr).size > 1  # the threshold moves between replicates
    for b in range(6):
        _, _, w = _expanded_rates(table, reps.subject_counts[b], reps.subject_ids, "eth", 0.0, ALL_GROUP)
        nm = (~table.mated).to_numpy()
        pooled = np.repeat(table.score.to_numpy()[nm], w[nm].astype(int))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = threshold_at_fmr(pooled, target).threshold
        assert thr[b] == expected
        for k, g in enumerate(reps.groups):
            fmr, fnmr, _ = _expanded_rates(table, reps.subject_counts[b], reps.subject_ids, "eth", thr[b], g)
            assert reps.rates("cal", "FMR")[b, k] == pytest.approx(fmr, nan_ok=True)
            assert reps.rates("cal", "FNMR")[b, k] == pytest.approx(fnmr, nan_ok=True)


def test_stratified_draw_keeps_group_sizes(table):
    reps = bootstrap_replicates(table, attribute="eth", thresholds={"t": 0.5}, n_replicates=50, seed=0)
    label = table.groupby("subject_a")["eth_a"].first()
    for g in ("A", "B", "C"):
        members = np.isin(reps.subject_ids, label[label == g].index)
        assert np.all(reps.subject_counts[:, members].sum(axis=1) == members.sum())


# ----------------------------------------------------------------------------- public tables
def test_group_rates_table_merges_onto_per_group_rates(table):
    th = {"lo": 0.4, "hi": 0.55}
    boot = bootstrap_group_rates(table, attribute="eth", thresholds=th, n_replicates=200, seed=0)
    assert list(boot.columns) == BOOT_GROUP_COLUMNS
    per = per_group_rates(table, attribute="eth", thresholds=th)
    keys = ["attribute", "group", "threshold_name", "metric"]
    pd.testing.assert_frame_equal(boot[keys], per[keys])
    merged = per.merge(boot, on=keys, validate="one_to_one")
    defined = merged[merged.comparisons > 0]
    assert (defined.boot_low <= defined.rate + 1e-12).all()
    assert (defined.boot_high >= defined.rate - 1e-12).all()
    assert (defined.n_replicates <= 200).all() and (defined.n_replicates > 190).all()


def test_seed_determinism(table):
    kw = dict(attribute="eth", thresholds={"t": 0.45}, n_replicates=100)
    a = bootstrap_group_rates(table, seed=5, **kw)
    b = bootstrap_group_rates(table, seed=5, **kw)
    c = bootstrap_group_rates(table, seed=6, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_clustered_errors_give_wider_interval_than_wilson():
    # 20 subjects x 10 mated comparisons; all 10 errors belong to subject s0 (FNMR 10/200)
    subjects = np.repeat([f"s{i}" for i in range(20)], 10)
    score = np.where(subjects == "s0", 0.1, 0.9)
    df = _rows(subjects, subjects, np.ones(200), score, "X")
    boot = bootstrap_group_rates(df, attribute="g", thresholds={"t": 0.5}, n_replicates=2000, seed=0)
    row = boot[(boot.group == "X") & (boot.metric == "FNMR")].iloc[0]
    w_lo, w_hi = wilson_interval(10, 200)
    assert row.boot_high - row.boot_low > 2 * (w_hi - w_lo)
    assert row.boot_low == 0.0  # s0 is absent from ~36% of resamples


def test_recalibrate_widens_interval_of_overall_fmr(table):
    th = {"cal": threshold_at_fmr(table.score[~table.mated], 0.1).threshold}
    fixed = bootstrap_group_rates(table, attribute="eth", thresholds=th, n_replicates=300, seed=0)
    recal = bootstrap_group_rates(
        table, attribute="eth", thresholds=th, n_replicates=300, seed=0, recalibrate={"cal": 0.1}
    )
    all_fixed = fixed[(fixed.group == ALL_GROUP) & (fixed.metric == "FMR")].iloc[0]
    all_recal = recal[(recal.group == ALL_GROUP) & (recal.metric == "FMR")].iloc[0]
    # re-calibrated: pooled FMR stays at (just below) the target in every replicate
    assert all_recal.boot_high <= 0.1
    assert all_recal.boot_high - all_recal.boot_low < all_fixed.boot_high - all_fixed.boot_low


# ----------------------------------------------------------------------------- differentials
def test_differentials_single_replicate_equals_summary_functions(table):
    reps = bootstrap_replicates(table, attribute="eth", thresholds={"t": 0.42}, n_replicates=1, seed=4)
    out = bootstrap_differentials(None, attribute="eth", thresholds={}, replicates=reps)
    assert list(out.columns) == BOOT_DIFFERENTIAL_COLUMNS
    got = out.set_index("measure")["boot_low"]
    assert (out.boot_low == out.boot_high).all()  # one replicate: the interval is a point
    f = reps.rates("t", "FMR")[0, 1:]
    n = reps.rates("t", "FNMR")[0, 1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "FMR_max_min_difference": max_min_difference(f),
            "FMR_max_min_ratio": max_min_ratio(f),
            "FMR_max_geomean_ratio": max_geomean_ratio(f),
            "FMR_gini": gini(f),
            "FNMR_gini": gini(n),
            "fdr": fdr(f, n),
            "garbe": garbe(f, n),
            "inequity_rate": inequity_rate(f, n),
            "inequity_rate_geomean": inequity_rate(f, n, use_geomean=True),
        }
    for measure, value in expected.items():
        if math.isnan(value):
            # not estimable in the 1-D function: the bootstrap keeps +inf or drops NaN
            assert math.isinf(got[measure]) or math.isnan(got[measure])
        else:
            assert got[measure] == pytest.approx(value), measure


def test_differentials_zero_rule_and_parity(table):
    out = bootstrap_differentials(
        table, attribute="eth", thresholds={"t": 0.45}, n_replicates=200, seed=0, zero_rule="upper_bound"
    ).set_index("measure")
    assert np.isfinite(out.loc["FMR_max_geomean_ratio", ["boot_low", "boot_high"]]).all()
    assert out.loc["FMR_max_min_ratio", "boot_low"] >= 1.0
    # the impostor shift by group in make_table gives a clear FMR differential
    assert not out.loc["FMR_gini", "includes_parity"]
    assert (out.n_replicates + out.n_undefined == 200).all()


def test_zero_errors_give_infinite_upper_bound_without_zero_rule():
    # group Y has no false matches at all: Max/Min is unbounded in every replicate
    rng = np.random.default_rng(0)
    rows = []
    for g, base in (("X", 0.6), ("Y", 0.0)):
        subj = [f"{g}{i}" for i in range(6)]
        for a, b in itertools.combinations(subj, 2):
            rows.append((a, b, False, base + rng.random() * 0.1, g))
        for s in subj:
            rows.append((s, s, True, 0.9 - rng.random() * 0.5, g))
    df = _rows(*map(list, zip(*rows)))
    out = bootstrap_differentials(df, attribute="g", thresholds={"t": 0.5}, n_replicates=100, seed=0)
    r = out.set_index("measure").loc["FMR_max_min_ratio"]
    assert r.boot_low == math.inf and r.boot_high == math.inf and r.n_undefined == 0


# ----------------------------------------------------------------------------- bad input
def test_bad_arguments(table):
    with pytest.raises(ConfigError, match="recalibrate: 'x' is not one of"):
        bootstrap_replicates(table, attribute="eth", thresholds={"t": 0.5}, recalibrate={"x": 0.1})
    with pytest.raises(ConfigError, match="recalibrate\\['t'\\]"):
        bootstrap_replicates(table, attribute="eth", thresholds={"t": 0.5}, recalibrate={"t": 2.0})
    with pytest.raises(ConfigError, match="n_replicates"):
        bootstrap_group_rates(table, attribute="eth", thresholds={"t": 0.5}, n_replicates=0)
    with pytest.raises(ConfigError, match="confidence"):
        bootstrap_group_rates(table, attribute="eth", thresholds={"t": 0.5}, confidence=1.0)
    with pytest.raises(InsufficientDataError, match="cannot resolve"):
        bootstrap_replicates(table, attribute="eth", thresholds={"t": 0.5}, recalibrate={"t": 1e-6})


def test_bad_rows():
    with pytest.raises(DataError, match="mated row 0 has different subjects"):
        bootstrap_replicates(_rows(["a"], ["b"], [1], [0.5], "X"), attribute="g", thresholds={"t": 0.5})
    with pytest.raises(DataError, match="compares subject 'a' with itself"):
        bootstrap_replicates(_rows(["a"], ["a"], [0], [0.5], "X"), attribute="g", thresholds={"t": 0.5})


# ----------------------------------------------------------------------------- fast re-calibration
def _tied_table(seed, n_subjects=24, grid=0.05, keep=0.8):
    """Random table: 1-4 images per subject, scores on a coarse grid (many ties), a random
    share of the non-mated pairs dropped, and one subject with two labels (stratum "(mixed)")."""
    rng = np.random.default_rng(seed)
    subj, lab = [], []
    for i in range(n_subjects):
        for m in range(int(rng.integers(1, 5))):
            subj.append(f"s{i:02d}")
            lab.append("ABC"[i % 3] if i else "AB"[m % 2])
    subj, lab = np.array(subj), np.array(lab)
    a, b = np.triu_indices(subj.size, k=1)
    mated = subj[a] == subj[b]
    kept = mated | (rng.random(a.size) < keep)
    a, b, mated = a[kept], b[kept], mated[kept]
    score = np.where(mated, 0.7, 0.3) + rng.normal(0.0, 0.15, a.size)
    return _rows(subj[a], subj[b], mated, np.round(score / grid) * grid, lab[a], lab[b])


def _brute_force_replicates(df, reps, thresholds, recalibrate):
    """Every replicate's thresholds, error and comparison counts by explicit weighting of all rows
    (mated row: c_i; non-mated: c_i c_j); re-calibration on the expanded pooled non-mated scores
    with ``threshold_at_fmr`` (§0), k = 0 giving nextafter of the top drawn score."""
    ids = np.asarray(reps.subject_ids, dtype=str)
    c = reps.subject_counts.astype(np.int64)
    ia, ib = np.searchsorted(ids, df.subject_a.to_numpy(str)), np.searchsorted(ids, df.subject_b.to_numpy(str))
    mated, s = df.mated.to_numpy(), df.score.to_numpy()
    w = np.where(mated, c[:, ia], c[:, ia] * c[:, ib])  # (B, N)
    in_g = [np.ones(len(df), bool)] + [((df.g_a == g) & (df.g_b == g)).to_numpy() for g in reps.groups[1:]]
    out = {}
    for name, t in thresholds.items():
        thr = np.full(reps.n_replicates, t)
        if name in recalibrate:
            for r in range(reps.n_replicates):
                pooled = np.repeat(s[~mated], w[r, ~mated])
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        thr[r] = threshold_at_fmr(pooled, recalibrate[name]).threshold
                except InsufficientDataError:  # k = 0
                    thr[r] = np.nextafter(pooled.max() if pooled.size else s[~mated].max(), np.inf)
        out[name, "thr"] = thr
        cases = (("FMR", ~mated, s[None, :] >= thr[:, None]), ("FNMR", mated, s[None, :] < thr[:, None]))
        for metric, rows, err in cases:
            out[name, metric, "n"] = np.stack([(w * (rows & g)).sum(axis=1) for g in in_g], axis=1)
            out[name, metric, "e"] = np.stack([(w * (rows & g) * err).sum(axis=1) for g in in_g], axis=1)
    return out


def _assert_same_replicates(a, b):
    assert a.groups == b.groups and a.threshold_names == b.threshold_names
    np.testing.assert_array_equal(a.subject_counts, b.subject_counts)
    for key in a.errors:
        assert np.array_equal(a.errors[key], b.errors[key]), key
        assert np.array_equal(a.comparisons[key], b.comparisons[key]), key
    for name in a.thresholds:
        assert np.array_equal(a.thresholds[name], b.thresholds[name]), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prefix_recalibration_equals_brute_force_with_ties(seed, monkeypatch):
    df = _tied_table(seed)
    th = {"cal": 0.0, "cal2": 0.0, "fixed": 0.45}
    recal = {"cal": 0.05, "cal2": 0.3}
    levels = []  # (prefix rows, replicates tried, replicates resolved) of every prefix pass
    inner = bs_module._thresholds_on_rows

    def spy(design, counts, k, rows):
        out = inner(design, counts, k, rows)
        levels.append((rows.size, counts.shape[0], int(out[2].sum())))
        return out

    monkeypatch.setattr(bs_module, "_thresholds_on_rows", spy)
    kw = dict(attribute="g", thresholds=th, n_replicates=40, seed=seed, recalibrate=recal)
    default = bootstrap_replicates(df, **kw)
    assert all(tried == ok for _, tried, ok in levels)  # the default first prefix (4096 rows) is enough
    levels.clear()
    tiny = bootstrap_replicates(df, _prefix_rows=3, **kw)
    # the fallback ran: unresolved replicates on the first prefix, longer prefixes after it
    assert levels[0][2] < levels[0][1] and len({m for m, _, _ in levels}) >= 3
    _assert_same_replicates(default, tiny)

    ref = _brute_force_replicates(df, default, th, recal)
    assert max(np.unique(default.thresholds[n]).size for n in recal) > 1  # re-calibration varied
    for name in th:
        assert np.array_equal(default.thresholds[name], ref[name, "thr"]), name
        for metric in ("FMR", "FNMR"):
            assert np.array_equal(default.errors[(name, metric)], ref[name, metric, "e"]), (name, metric)
            assert np.array_equal(default.comparisons[(name, metric)], ref[name, metric, "n"]), (name, metric)


@pytest.mark.parametrize("prefix_rows", [1, 2, 17, 10**9])
def test_prefix_search_equals_dense_reference(prefix_rows):
    df = _tied_table(5, n_subjects=30, grid=0.02)
    design = bs_module._design(df, "g")
    counts = bs_module._draw_counts(design, 60, np.random.default_rng(3))
    c = counts.astype(float)
    w_pairs = c[:, design.pair_i] * c[:, design.pair_j]
    total = w_pairs @ np.bincount(design.nm_pair, minlength=design.pair_i.size)
    for target in (0.01, 0.1, 0.5):
        k = np.array([_allowed_false_matches(target, int(t)) if t > 0 else 0 for t in total], dtype=float)
        thr_ref, fm_ref = bs_module._recalibrated_thresholds_full(design, counts, k)
        thr, fm = bs_module._recalibrated_thresholds(design, counts, total, target, prefix_rows)
        assert np.array_equal(thr, thr_ref) and np.array_equal(fm, fm_ref), target


@pytest.mark.parametrize("grid", [0.05, 0.002])
def test_every_prefix_length_resolves_only_exact_replicates(grid):
    # for each whole-tie-block prefix of the descending order, a replicate marked resolved
    # must already have its final threshold and false-match counts (coarse grid: big tie
    # blocks; fine grid: blocks of one row, so prefixes just short of the cut occur)
    df = _tied_table(11, n_subjects=12, grid=grid)
    design = bs_module._design(df, "g")
    counts = bs_module._draw_counts(design, 80, np.random.default_rng(6))
    c = counts.astype(float)
    total = (c[:, design.pair_i] * c[:, design.pair_j]) @ np.bincount(design.nm_pair, minlength=design.pair_i.size)
    n = design.nm_score.size
    for target in (0.05, 0.2):
        k = np.array([_allowed_false_matches(target, int(t)) if t > 0 else 0 for t in total], dtype=float)
        thr_ref, fm_ref = bs_module._recalibrated_thresholds_full(design, counts, k)
        n_resolved = []
        for m in range(1, n + 1):
            rows = bs_module._top_rows(design.nm_score, m)
            assert rows.size == n or design.nm_score[rows[-1]] > design.nm_score[np.setdiff1d(np.arange(n), rows)].max()
            thr, fm, ok = bs_module._thresholds_on_rows(design, counts, k, rows)
            assert np.array_equal(thr[ok], thr_ref[ok]) and np.array_equal(fm[ok], fm_ref[ok]), (target, m)
            n_resolved.append(int(ok.sum()))
        assert n_resolved[0] < len(k) and n_resolved[-1] == len(k) and len(set(n_resolved)) > 3


def test_replicates_with_nothing_drawn_match_dense_reference():
    # the only non-mated pairs are a-b (stratum X, 2 subjects): drawing {a,a} or {b,b} leaves no
    # impostor weight; the threshold is then just above the top score and nothing is a false match
    rng = np.random.default_rng(0)
    df = _rows(
        ["a"] * 25 + ["a", "b", "c", "d"],
        ["b"] * 25 + ["a", "b", "c", "d"],
        [0] * 25 + [1] * 4,
        np.r_[np.round(rng.random(25), 1), 0.8, 0.9, 0.2, 0.95],
        ["X"] * 27 + ["Y", "Y"],
    )
    reps = bootstrap_replicates(
        df, attribute="g", thresholds={"t": 0.0}, n_replicates=50, seed=1, recalibrate={"t": 0.1}
    )
    empty = reps.comparisons[("t", "FMR")][:, 0] == 0
    assert 0 < empty.sum() < 50
    top = df.score[~df.mated].max()
    assert np.all(reps.thresholds["t"][empty] == np.nextafter(top, np.inf))
    assert np.all(reps.errors[("t", "FMR")][empty] == 0)
    design = bs_module._design(df, "g")
    total = reps.comparisons[("t", "FMR")][:, 0]
    k = np.array([_allowed_false_matches(0.1, int(t)) if t > 0 else 0 for t in total], dtype=float)
    thr_ref, fm_ref = bs_module._recalibrated_thresholds_full(design, reps.subject_counts, k)
    assert np.array_equal(reps.thresholds["t"], thr_ref)
    assert np.array_equal(reps.errors[("t", "FMR")], np.rint(fm_ref))


def test_categorical_columns_give_the_same_replicates():
    # categoricals (with unused categories, as a filtered table keeps them) versus plain strings
    df = _tied_table(7)
    cat = df.copy()
    for col in ("subject_a", "subject_b", "g_a", "g_b"):
        cat[col] = pd.Categorical(df[col], categories=sorted(set(df[col]) | {"zz_unused"})[::-1])
    kw = dict(attribute="g", thresholds={"cal": 0.0}, n_replicates=30, seed=4, recalibrate={"cal": 0.05})
    plain, categorical = bootstrap_replicates(df, **kw), bootstrap_replicates(cat, **kw)
    _assert_same_replicates(plain, categorical)
    assert list(categorical.subject_ids) == sorted(set(df.subject_a) | set(df.subject_b))
    assert categorical.groups == [ALL_GROUP, "A", "B", "C"]


def test_missing_subject_id_is_a_data_error():
    df = _rows(["a", None], ["b", "c"], [0, 0], [0.5, 0.6], "X")
    with pytest.raises(DataError, match=r"comparisons\['subject_a'\]: 1 missing subject id"):
        bootstrap_replicates(df, attribute="g", thresholds={"t": 0.5})


# ----------------------------------------------------------------------------- contributors (§5.2, §5.6)
def _one_image_table(seed=0):
    """Group A: 1 subject with two images (one mated comparison) and 5 one-image subjects (no mated
    comparison: a one-image subject, or one whose other image failed to acquire); group B: 4 + 2.
    Every pair of distinct subjects' images is a non-mated comparison."""
    rng = np.random.default_rng(seed)
    images = [("a0", "A"), ("a0", "A")] + [(f"a{i}", "A") for i in range(1, 6)]
    images += [(f"b{i}", "B") for i in range(4) for _ in range(2)] + [("b4", "B"), ("b5", "B")]
    subj = np.array([s for s, _ in images])
    lab = np.array([g for _, g in images])
    a, b = np.triu_indices(subj.size, k=1)
    mated = subj[a] == subj[b]
    score = np.where(mated, 0.6, 0.3) + rng.normal(0, 0.2, a.size)
    return _rows(subj[a], subj[b], mated, score, lab[a], lab[b])


def test_fnmr_resamples_only_subjects_with_mated_comparisons():
    # Drawing 6 of group A's subjects freely would miss a0 (its only mated subject) with
    # probability (5/6)^6 = 0.33: a third of the replicates would have no mated comparison
    # and be dropped silently. Strata split by "has a mated comparison" keep one a0 draw.
    df = _one_image_table()
    reps = bootstrap_replicates(df, attribute="g", thresholds={"t": 0.5}, n_replicates=600, seed=4)
    ia = list(reps.subject_ids).index("a0")
    assert np.all(reps.subject_counts[:, ia] == 1)  # the only contributor of its stratum
    mated_b = [list(reps.subject_ids).index(f"b{i}") for i in range(4)]
    assert np.all(reps.subject_counts[:, mated_b].sum(axis=1) == 4)  # 4 contributors stay 4
    assert np.all(reps.subject_counts[:, [list(reps.subject_ids).index(s) for s in ("b4", "b5")]].sum(axis=1) == 2)
    boot = bootstrap_group_rates(None, attribute="g", thresholds={"t": 0.5}, replicates=reps)
    fnmr = boot[boot["metric"] == "FNMR"].set_index("group")
    assert (fnmr["n_undefined"] == 0).all() and (fnmr["n_replicates"] == 600).all()
    # group A's FNMR has one mated comparison and one subject: every replicate has the same rate
    n_m = reps.comparisons[("t", "FNMR")][:, reps.groups.index("A")]
    assert np.all(n_m == 1)


def test_undefined_replicates_are_counted():
    # a two-subject group draws the same subject twice with probability 1/2: no non-mated pair
    df = _rows(["x", "x", "y"], ["y", "z", "z"], [0, 0, 0], [0.3, 0.4, 0.2], ["P", "P", "P"], ["P", "Q", "Q"])
    boot = bootstrap_group_rates(df, attribute="g", thresholds={"t": 0.35}, n_replicates=1000, seed=0)
    row = boot[(boot["group"] == "P") & (boot["metric"] == "FMR")].iloc[0]
    assert row["n_replicates"] + row["n_undefined"] == 1000
    assert 420 < row["n_undefined"] < 580  # binomial(1000, 1/2)
    assert list(boot.columns) == BOOT_GROUP_COLUMNS


def test_overall_interval_is_one_per_run_and_independent_of_the_attribute():
    df = _one_image_table(1)
    relabelled = df.assign(g_a=np.where(df["subject_a"].str.startswith("a"), "Z", "Y"),
                           g_b=np.where(df["subject_b"].str.startswith("a"), "Y", "Z"))
    kw = dict(thresholds={"t": 0.45, "c": 0.0}, n_replicates=300, seed=2, recalibrate={"c": 0.1})
    one = bootstrap_overall_rates(df, **kw)
    two = bootstrap_overall_rates(relabelled, **kw)
    pd.testing.assert_frame_equal(one, two)
    assert set(one["group"]) == {ALL_GROUP} and len(one) == 4
    # with_overall_rows puts that interval under an attribute's (all) rows, nothing else changes
    per_attr = bootstrap_group_rates(df, attribute="g", **kw)
    merged = with_overall_rows(per_attr, one)
    is_all = merged["group"] == ALL_GROUP
    pd.testing.assert_frame_equal(merged[~is_all], per_attr[~is_all])
    got = merged[is_all].set_index(["threshold_name", "metric"])[["boot_low", "boot_high", "n_replicates"]]
    want = one.set_index(["threshold_name", "metric"])[["boot_low", "boot_high", "n_replicates"]]
    pd.testing.assert_frame_equal(got.sort_index(), want.sort_index())
