"""Subject-level bootstrap (metrics-reference §5.2–5.4)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from bench.errors import ConfigError, DataError, InsufficientDataError
from bench.metrics.bootstrap import (
    BOOT_DIFFERENTIAL_COLUMNS,
    BOOT_GROUP_COLUMNS,
    bootstrap_differentials,
    bootstrap_group_rates,
    bootstrap_replicates,
)
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
from bench.metrics.rates import threshold_at_fmr
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
