"""Differential summary measures (metrics-reference §4, TV2, TV3, TV4, TV5, TV7)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from bench.errors import ConfigError, DataError, InsufficientDataWarning
from bench.metrics.differentials import (
    differential_summary,
    fdr,
    garbe,
    gini,
    inequity_rate,
    max_geomean_ratio,
    max_min_difference,
    max_min_ratio,
    ratio_to_reference,
    rfw_std,
    ser,
)
from bench.metrics.groups import ALL_GROUP, per_group_rates

# TV3-TV5 rates
FMR = [0.001, 0.004, 0.0005]
FNMR = [0.02, 0.05, 0.03]


# ----------------------------------------------------------------------------- test vectors
def test_tv3_fdr():
    assert fdr(FMR, FNMR) == pytest.approx(0.98325, abs=1e-12)
    assert fdr(FMR, FNMR, alpha=0.995) == pytest.approx(0.9963675, abs=1e-12)


def test_tv4_gini_and_garbe():
    assert gini(FMR) == pytest.approx(0.636364, abs=5e-7)
    assert gini(FNMR) == pytest.approx(0.30, abs=1e-12)
    assert garbe(FMR, FNMR) == pytest.approx(0.468182, abs=5e-7)


def test_tv5_ratio_family_and_ir():
    assert max_min_ratio(FMR) == pytest.approx(8.0)
    assert max_min_ratio(FNMR) == pytest.approx(2.5)
    assert inequity_rate(FMR, FNMR) == pytest.approx(4.472136, abs=5e-7)
    assert max_geomean_ratio(FMR) == pytest.approx(3.174802, abs=5e-7)
    assert max_geomean_ratio(FNMR) == pytest.approx(1.609149, abs=5e-7)
    assert max_min_difference(FMR) == pytest.approx(0.0035)
    assert max_min_difference(FNMR) == pytest.approx(0.03)


def test_tv5_ir_geomean_variant():
    expected = math.sqrt(3.174802 * 1.609149)
    assert inequity_rate(FMR, FNMR, use_geomean=True) == pytest.approx(expected, rel=1e-6)


def test_tv7_rfw_std_and_ser():
    acc = np.array([93.5, 94.5, 97.0, 95.0])
    assert ser(100 - acc) == pytest.approx(2.1667, abs=5e-5)
    assert rfw_std(acc) == pytest.approx(1.27475, abs=5e-6)
    assert rfw_std(acc, ddof=1) == pytest.approx(1.47196, abs=5e-6)


def test_tv2_ratio_to_reference_and_zero_group():
    r = ratio_to_reference([0.30, 0.10], ["A", "ref"], "ref")
    assert r == {"A": pytest.approx(3.0), "ref": 1.0}
    with pytest.warns(InsufficientDataWarning, match="max_min_ratio: not estimable"):
        assert math.isnan(max_min_ratio([0.30, 0.0]))
    # with the zero rule the zero group B (0/10) is bounded by 1 - 0.05**(1/10) = 0.2589
    bounded = max_min_ratio([0.30, 0.0], zero_rule="upper_bound", comparisons=[10, 10])
    assert bounded == pytest.approx(0.30 / (1 - 0.05 ** 0.1))
    assert bounded == pytest.approx(0.30 / 0.2589, rel=2e-4)


# ----------------------------------------------------------------------------- zero rule
def test_zero_group_in_geomean_and_gini():
    rates = [0.001, 0.004, 0.0]
    n = [1000, 1000, 1000]
    with pytest.warns(InsufficientDataWarning, match="not estimable"):
        assert math.isnan(max_geomean_ratio(rates))
    ub = 1 - 0.05 ** (1 / 1000)  # 0.0029912 (TV9)
    expected = 0.004 / (0.001 * 0.004 * ub) ** (1 / 3)
    assert max_geomean_ratio(rates, zero_rule="upper_bound", comparisons=n) == pytest.approx(expected)
    # Gini is defined with a zero group: ordered |diffs| 2*(0.003+0.001+0.004) = 0.016,
    # mean 0.005/3; G = 0.016 / (2*3*2*0.0016667) = 0.8
    assert gini(rates) == pytest.approx(0.8)


def test_zero_rule_needs_counts():
    with pytest.raises(ConfigError, match="comparisons"):
        max_geomean_ratio([0.1, 0.0], zero_rule="upper_bound")
    with pytest.raises(DataError, match="shape"):
        max_geomean_ratio([0.1, 0.0], zero_rule="upper_bound", comparisons=[5])
    with pytest.raises(ConfigError, match="zero_rule"):
        max_min_ratio([0.1, 0.2], zero_rule="clip")


def test_zero_reference_group():
    with pytest.warns(InsufficientDataWarning, match="reference group 'B' has zero errors"):
        r = ratio_to_reference([0.3, 0.0], ["A", "B"], "B")
    assert all(math.isnan(v) for v in r.values())
    r = ratio_to_reference([0.3, 0.0], ["A", "B"], "B", zero_rule="upper_bound", comparisons=[10, 10])
    assert r["A"] == pytest.approx(0.3 / (1 - 0.05 ** 0.1))
    assert r["B"] == 0.0


def test_ser_and_ir_not_estimable_with_zero():
    with pytest.warns(InsufficientDataWarning):
        assert math.isnan(ser([1.0, 0.0]))
    with pytest.warns(InsufficientDataWarning):
        assert math.isnan(inequity_rate([0.0, 0.1], [0.1, 0.2]))


def test_all_zero_gini_not_estimable():
    with pytest.warns(InsufficientDataWarning, match="gini: not estimable"):
        assert math.isnan(gini([0.0, 0.0, 0.0]))


# ----------------------------------------------------------------------------- properties
def test_parity_values():
    x = [0.01, 0.01, 0.01]
    assert max_min_ratio(x) == 1.0 and max_geomean_ratio(x) == pytest.approx(1.0)
    assert gini(x) == 0.0 and max_min_difference(x) == 0.0
    assert fdr(x, x) == 1.0 and garbe(x, x) == 0.0 and inequity_rate(x, x) == 1.0


def test_gini_all_in_one_group_is_one():
    assert gini([0.0, 0.0, 0.0, 0.2]) == pytest.approx(1.0)


def test_gini_matches_double_sum():
    rng = np.random.default_rng(0)
    x = rng.random(7)
    n = x.size
    brute = np.abs(x[:, None] - x[None, :]).sum() / (2 * n * (n - 1) * x.mean())
    assert gini(x) == pytest.approx(brute)


def test_scale_invariance_of_ratio_measures():
    x = np.array(FMR)
    for fn in (max_min_ratio, max_geomean_ratio, gini):
        assert fn(x * 1000) == pytest.approx(fn(x))


def test_single_group_not_estimable():
    for fn in (max_min_difference, max_min_ratio, max_geomean_ratio, gini, ser, rfw_std):
        with pytest.warns(InsufficientDataWarning, match="at least 2 groups"):
            assert math.isnan(fn([0.1]))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("rates", "match"),
    [([0.1, np.nan], "non-finite"), ([0.1, -0.1], "negative"), ([[0.1, 0.2]], "1-D")],
)
def test_bad_rates(rates, match):
    with pytest.raises(DataError, match=match):
        max_min_ratio(rates)


def test_bad_alpha_and_lengths():
    with pytest.raises(ConfigError, match="alpha"):
        fdr(FMR, FNMR, alpha=1.5)
    with pytest.raises(DataError, match="one value per group"):
        garbe(FMR, FNMR[:2])
    with pytest.raises(DataError, match="not among"):
        ratio_to_reference(FMR, ["a", "b", "c"], "d")
    with pytest.raises(ConfigError, match="reference"):
        ratio_to_reference(FMR, ["a", "b", "c"], 0.0)
    with pytest.raises(ConfigError, match="ddof"):
        rfw_std([1.0, 2.0], ddof=2)


# ----------------------------------------------------------------------------- summary
def _per_group_frame(fmr, fnmr, n_fmr=10_000, n_fnmr=1_000, extra_empty=False):
    rows = [
        {"attribute": "g", "group": ALL_GROUP, "threshold_name": "t", "threshold": 0.5,
         "metric": m, "errors": 1, "comparisons": 10, "rate": 0.1}
        for m in ("FMR", "FNMR")
    ]
    for i, (a, b) in enumerate(zip(fmr, fnmr)):
        g = chr(ord("A") + i)
        rows.append({"attribute": "g", "group": g, "threshold_name": "t", "threshold": 0.5,
                     "metric": "FMR", "errors": round(a * n_fmr), "comparisons": n_fmr, "rate": a})
        rows.append({"attribute": "g", "group": g, "threshold_name": "t", "threshold": 0.5,
                     "metric": "FNMR", "errors": round(b * n_fnmr), "comparisons": n_fnmr, "rate": b})
    if extra_empty:
        rows.append({"attribute": "g", "group": "Z", "threshold_name": "t", "threshold": 0.5,
                     "metric": "FMR", "errors": 0, "comparisons": 0, "rate": np.nan})
        rows.append({"attribute": "g", "group": "Z", "threshold_name": "t", "threshold": 0.5,
                     "metric": "FNMR", "errors": 3, "comparisons": 9, "rate": 1 / 3})
    return pd.DataFrame(rows)


def test_summary_reproduces_test_vectors():
    df = _per_group_frame(FMR, FNMR, extra_empty=True)
    s = differential_summary(df, "both", "t")
    assert s["excluded_groups"] == ["Z"]
    assert s["FMR"]["groups"] == ["A", "B", "C"]
    assert s["fdr"] == pytest.approx(0.98325)
    assert s["fdr_A"] == pytest.approx(0.0035) and s["fdr_B"] == pytest.approx(0.03)
    assert s["garbe"] == pytest.approx(0.468182, abs=5e-7)
    assert s["inequity_rate"] == pytest.approx(4.472136, abs=5e-7)
    assert s["FMR"]["max_geomean_ratio"] == pytest.approx(3.174802, abs=5e-7)
    assert s["FNMR"]["max_min_ratio"] == pytest.approx(2.5)
    assert s["FMR"]["max_group"] == "B" and s["FMR"]["min_group"] == "C"
    json.dumps(s)  # serialisable for metrics.json

    one = differential_summary(df, "FNMR", "t", reference="A")
    assert one["metric"] == "FNMR" and one["gini"] == pytest.approx(gini(FNMR + [1 / 3]))
    assert one["excluded_groups"] == [] and one["n_groups"] == 4  # Z has FNMR comparisons
    assert one["max_ratio_to_reference"] == pytest.approx((1 / 3) / 0.02)


def test_summary_zero_rule():
    df = _per_group_frame([0.001, 0.0], [0.02, 0.05], n_fmr=1000)
    with pytest.warns(InsufficientDataWarning):
        s = differential_summary(df, "FMR", "t")
    assert math.isnan(s["max_geomean_ratio"]) and s["zero_error_groups"] == ["B"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = differential_summary(df, "FMR", "t", zero_rule="upper_bound")
    ub = 1 - 0.05 ** (1 / 1000)
    assert s["zero_rule"] == "upper_bound"
    assert s["max_geomean_ratio"] == pytest.approx(0.001 / math.sqrt(0.001 * ub))


def test_summary_from_per_group_rates():
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame(
        {
            "subject_a": [f"s{i % 40}" for i in range(n)],
            "subject_b": [f"s{(i * 7) % 40}" for i in range(n)],
            "mated": rng.random(n) < 0.3,
            "score": rng.random(n),
            "g_a": rng.choice(["x", "y"], n),
        }
    )
    df["g_b"] = df["g_a"]
    per = per_group_rates(df, attribute="g", thresholds={"t": 0.5})
    s = differential_summary(per, "both", "t")
    fmr = per[(per.metric == "FMR") & (per.group != ALL_GROUP)].rate.to_numpy()
    fnmr = per[(per.metric == "FNMR") & (per.group != ALL_GROUP)].rate.to_numpy()
    assert s["garbe"] == pytest.approx(garbe(fmr, fnmr))
    assert s["FMR"]["max_min_ratio"] == pytest.approx(max_min_ratio(fmr))


def test_summary_bad_input():
    df = _per_group_frame(FMR, FNMR)
    with pytest.raises(ConfigError, match="metric"):
        differential_summary(df, "EER", "t")
    with pytest.raises(DataError, match="threshold names present: \\['t'\\]"):
        differential_summary(df, "FMR", "nope")
    with pytest.raises(DataError, match="missing column"):
        differential_summary(df.drop(columns="rate"), "FMR", "t")
