"""Per-group and cross-group rates over a comparison table (metrics-reference §0, §2.3)."""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pandas as pd
import pytest

from bench.errors import ConfigError, DataError
from bench.metrics.groups import (
    ALL_GROUP,
    CROSS_GROUP_COLUMNS,
    PER_GROUP_COLUMNS,
    cross_group_fmr,
    per_group_rates,
)
from bench.metrics.intervals import clopper_pearson_interval, wilson_interval
from bench.metrics.rates import error_rates


def make_table(
    n_subjects: int = 24,
    images_per_subject: int = 3,
    groups: tuple[str, ...] = ("A", "B", "C"),
    seed: int = 0,
) -> pd.DataFrame:
    """All pairs of images; subject i has label groups[i % len(groups)] and a second
    attribute 'sex'; scores are similarities with a group-dependent impostor shift."""
    rng = np.random.default_rng(seed)
    images = [(f"s{i:02d}", f"s{i:02d}_{k}") for i in range(n_subjects) for k in range(images_per_subject)]
    label = {f"s{i:02d}": groups[i % len(groups)] for i in range(n_subjects)}
    sex = {f"s{i:02d}": ("F" if (i // len(groups)) % 2 else "M") for i in range(n_subjects)}
    shift = {g: 0.1 * j for j, g in enumerate(groups)}
    rows = []
    for (sa, ia), (sb, ib) in itertools.combinations(images, 2):
        mated = sa == sb
        base = 0.7 if mated else 0.2 + shift[label[sa]] * (label[sa] == label[sb])
        rows.append(
            {
                "image_a": ia,
                "image_b": ib,
                "subject_a": sa,
                "subject_b": sb,
                "mated": mated,
                "score": round(base + rng.normal(0, 0.15), 2),  # rounding creates ties
                "eth_a": label[sa],
                "eth_b": label[sb],
                "sex_a": sex[sa],
                "sex_b": sex[sb],
            }
        )
    df = pd.DataFrame(rows)
    df["eth&sex_a"] = df["eth_a"] + "&" + df["sex_a"]
    df["eth&sex_b"] = df["eth_b"] + "&" + df["sex_b"]
    return df


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_table()


THRESHOLDS = {"low": 0.3, "mid": 0.45, "high": 0.6}


def test_columns_and_order(table):
    out = per_group_rates(table, attribute="eth", thresholds=THRESHOLDS)
    assert list(out.columns) == PER_GROUP_COLUMNS
    assert len(out) == 4 * 3 * 2
    assert out["group"].tolist()[::6] == [ALL_GROUP, "A", "B", "C"]
    assert out["threshold_name"].tolist()[:6] == ["low", "low", "mid", "mid", "high", "high"]
    assert out["metric"].tolist()[:2] == ["FMR", "FNMR"]
    assert (out["attribute"] == "eth").all()
    for col in ("errors", "comparisons", "subjects"):
        assert out[col].dtype == np.int64


@pytest.mark.parametrize("attribute", ["eth", "sex", "eth&sex"])
def test_oracle_every_cell_equals_masked_recomputation(table, attribute):
    out = per_group_rates(table, attribute=attribute, thresholds=THRESHOLDS)
    a, b = table[f"{attribute}_a"], table[f"{attribute}_b"]
    for row in out.itertuples(index=False):
        if row.group == ALL_GROUP:
            sub = table
        else:
            sub = table[(a == row.group) & (b == row.group)]
        r = error_rates(sub.loc[sub.mated, "score"], sub.loc[~sub.mated, "score"], row.threshold)
        part = sub[~sub.mated] if row.metric == "FMR" else sub[sub.mated]
        errors, n = (r.false_matches, r.n_nonmated) if row.metric == "FMR" else (r.false_non_matches, r.n_mated)
        assert (row.errors, row.comparisons) == (errors, n)
        assert row.rate == pytest.approx(errors / n)
        assert row.subjects == len(set(part.subject_a) | set(part.subject_b))
        assert (row.wilson_low, row.wilson_high) == pytest.approx(wilson_interval(errors, n))
        assert (row.cp_low, row.cp_high) == pytest.approx(clopper_pearson_interval(errors, n))


def test_group_counts_sum_to_overall(table):
    out = per_group_rates(table, attribute="eth", thresholds=THRESHOLDS)
    groups = out[out.group != ALL_GROUP]
    overall = out[out.group == ALL_GROUP]
    fnmr_g = groups[groups.metric == "FNMR"].groupby("threshold_name")[["errors", "comparisons"]].sum()
    fnmr_all = overall[overall.metric == "FNMR"].set_index("threshold_name")[["errors", "comparisons"]]
    pd.testing.assert_frame_equal(fnmr_g.sort_index(), fnmr_all.sort_index())
    # FMR: diagonal cells + off-diagonal cells of the cross matrix = all non-mated rows
    cross = cross_group_fmr(table, attribute="eth", threshold=THRESHOLDS["mid"])
    upper = cross[cross.group_a <= cross.group_b]
    all_mid = overall[(overall.metric == "FMR") & (overall.threshold_name == "mid")].iloc[0]
    assert upper.comparisons.sum() == all_mid.comparisons == int((~table.mated).sum())
    assert upper.false_matches.sum() == all_mid.errors
    subjects = overall[overall.metric == "FNMR"].subjects.unique()
    assert subjects.tolist() == [24]


def test_flags_and_upper_bound():
    df = pd.DataFrame(
        {
            "image_a": ["a1", "a1", "b1", "a1", "b1"],
            "image_b": ["a2", "b1", "b2", "c1", "c2"],
            "subject_a": ["a", "a", "b", "a", "b"],
            "subject_b": ["a", "b", "b", "c", "c"],
            "mated": [True, False, True, False, False],
            "score": [0.9, 0.1, 0.2, 0.8, 0.3],
            "g_a": ["X", "X", "X", "X", "X"],
            "g_b": ["X", "X", "X", "Y", "X"],
        }
    )
    out = per_group_rates(df, attribute="g", thresholds={"t": 0.5}).set_index(["group", "metric"])
    x_fmr = out.loc[("X", "FMR")]
    assert (x_fmr.errors, x_fmr.comparisons, x_fmr.flag) == (0, 2, "zero_errors")
    assert x_fmr.upper_bound_95 == pytest.approx(1 - 0.05 ** 0.5)
    x_fnmr = out.loc[("X", "FNMR")]
    assert (x_fnmr.errors, x_fnmr.comparisons, x_fnmr.flag) == (1, 2, "low_precision")
    assert math.isnan(x_fnmr.upper_bound_95)
    y_fmr = out.loc[("Y", "FMR")]
    assert (y_fmr.comparisons, y_fmr.flag) == (0, "no_comparisons")
    assert math.isnan(y_fmr.rate) and math.isnan(y_fmr.wilson_low) and math.isnan(y_fmr.upper_bound_95)
    all_fmr = out.loc[(ALL_GROUP, "FMR")]
    assert (all_fmr.errors, all_fmr.comparisons, all_fmr.subjects) == (1, 3, 3)


def test_flag_empty_when_30_errors():
    n = 40
    df = pd.DataFrame(
        {
            "subject_a": [f"s{i}" for i in range(n)],
            "subject_b": [f"s{i}" for i in range(n)],
            "mated": np.ones(n, dtype=bool),
            "score": np.r_[np.zeros(30), np.ones(10)],
            "g_a": "X",
            "g_b": "X",
        }
    )
    out = per_group_rates(df, attribute="g", thresholds={"t": 0.5})
    row = out[(out.group == "X") & (out.metric == "FNMR")].iloc[0]
    assert (row.errors, row.flag, row.subjects) == (30, "", 40)


def test_tv2_groups_via_table():
    # TV2: at t = 0.58 group A has FMR 0.30, group B 0/10 with upper bound 0.2589
    a = [0.10, 0.20, 0.30, 0.45, 0.50, 0.53, 0.55, 0.60, 0.65, 0.70]
    b = [0.05, 0.15, 0.22, 0.31, 0.35, 0.41, 0.44, 0.49, 0.51, 0.57]
    df = pd.DataFrame(
        {
            "subject_a": [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)],
            "subject_b": [f"a{i + 1}" for i in range(10)] + [f"b{i + 1}" for i in range(10)],
            "mated": np.zeros(20, dtype=bool),
            "score": a + b,
            "grp_a": ["A"] * 10 + ["B"] * 10,
            "grp_b": ["A"] * 10 + ["B"] * 10,
        }
    )
    out = per_group_rates(df, attribute="grp", thresholds={"fmr=0.1": 0.58})
    fmr = out[out.metric == "FMR"].set_index("group")
    assert fmr.loc["A", "rate"] == pytest.approx(0.30)
    assert fmr.loc["B", "rate"] == 0.0
    assert fmr.loc["B", "upper_bound_95"] == pytest.approx(0.2589, abs=5e-5)
    assert fmr.loc["B", "flag"] == "zero_errors"


def test_mated_row_with_split_labels_counts_only_in_all(caplog):
    df = pd.DataFrame(
        {
            "subject_a": ["a", "a"],
            "subject_b": ["a", "a"],
            "mated": [True, True],
            "score": [0.1, 0.9],
            "age_a": ["young", "young"],
            "age_b": ["young", "old"],
        }
    )
    with caplog.at_level(logging.WARNING, logger="bench.metrics.groups"):
        out = per_group_rates(df, attribute="age", thresholds={"t": 0.5})
    assert "1 mated comparison(s) have different labels" in caplog.text
    fnmr = out[out.metric == "FNMR"].set_index("group")
    assert fnmr.loc[ALL_GROUP, "comparisons"] == 2
    assert fnmr.loc["young", "comparisons"] == 1 and fnmr.loc["old", "comparisons"] == 0


def test_permutation_invariance(table):
    shuffled = table.sample(frac=1.0, random_state=1).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        per_group_rates(table, attribute="eth", thresholds=THRESHOLDS),
        per_group_rates(shuffled, attribute="eth", thresholds=THRESHOLDS),
    )


def test_single_group_equals_overall(table):
    one = table.assign(eth_a="only", eth_b="only")
    out = per_group_rates(one, attribute="eth", thresholds=THRESHOLDS)
    cols = ["errors", "comparisons", "subjects", "rate"]
    a = out[out.group == ALL_GROUP][cols].reset_index(drop=True)
    b = out[out.group == "only"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


# ----------------------------------------------------------------------------- cross-group
def test_cross_group_oracle_and_symmetry(table):
    t = 0.4
    cross = cross_group_fmr(table, attribute="eth", threshold=t)
    assert list(cross.columns) == CROSS_GROUP_COLUMNS
    assert len(cross) == 9
    nm = table[~table.mated]
    for row in cross.itertuples(index=False):
        mask = ((nm.eth_a == row.group_a) & (nm.eth_b == row.group_b)) | (
            (nm.eth_a == row.group_b) & (nm.eth_b == row.group_a)
        )
        sub = nm[mask]
        assert row.comparisons == len(sub)
        assert row.false_matches == int((sub.score >= t).sum())
        assert row.fmr == pytest.approx(row.false_matches / row.comparisons)
    m = cross.pivot(index="group_a", columns="group_b", values="comparisons")
    np.testing.assert_array_equal(m.to_numpy(), m.to_numpy().T)
    # diagonal = per-group FMR
    per = per_group_rates(table, attribute="eth", thresholds={"t": t})
    per = per[(per.metric == "FMR") & (per.group != ALL_GROUP)].set_index("group")
    diag = cross[cross.group_a == cross.group_b].set_index("group_a")
    assert diag.false_matches.to_dict() == per.errors.to_dict()
    assert diag.comparisons.to_dict() == per.comparisons.to_dict()


def test_cross_group_empty_cell_is_nan():
    df = pd.DataFrame(
        {
            "subject_a": ["a", "b"],
            "subject_b": ["b", "c"],
            "mated": [False, False],
            "score": [0.9, 0.1],
            "g_a": ["X", "X"],
            "g_b": ["X", "Y"],
        }
    )
    cross = cross_group_fmr(df, attribute="g", threshold=0.5).set_index(["group_a", "group_b"])
    assert cross.loc[("X", "X"), "false_matches"] == 1
    assert cross.loc[("X", "Y"), "comparisons"] == cross.loc[("Y", "X"), "comparisons"] == 1
    assert cross.loc[("Y", "Y"), "comparisons"] == 0 and math.isnan(cross.loc[("Y", "Y"), "fmr"])


# ----------------------------------------------------------------------------- bad input
def test_missing_attribute_column(table):
    with pytest.raises(DataError, match=r"attribute 'age' needs columns \['age_a', 'age_b'\].*'eth'"):
        per_group_rates(table, attribute="age", thresholds=THRESHOLDS)


def test_missing_base_column(table):
    with pytest.raises(DataError, match="missing column.*score"):
        per_group_rates(table.drop(columns="score"), attribute="eth", thresholds=THRESHOLDS)


def test_mated_must_be_bool(table):
    with pytest.raises(DataError, match="mated.*bool"):
        per_group_rates(table.assign(mated=table.mated.astype(int)), attribute="eth", thresholds=THRESHOLDS)


def test_nonfinite_score_names_the_images(table):
    bad = table.copy()
    bad.loc[5, "score"] = np.nan
    with pytest.raises(DataError, match=r"score.*row 5 \('s00_0' vs 's02_0'\): nan"):
        per_group_rates(bad, attribute="eth", thresholds=THRESHOLDS)
    with pytest.raises(DataError, match="score"):
        cross_group_fmr(bad, attribute="eth", threshold=0.5)


def test_na_label_rejected(table):
    bad = table.copy()
    bad["eth_b"] = bad["eth_b"].astype(object)
    bad.loc[3, "eth_b"] = None
    with pytest.raises(DataError, match="eth_b.*NA.*'missing'"):
        per_group_rates(bad, attribute="eth", thresholds=THRESHOLDS)


@pytest.mark.parametrize("thresholds", [{}, {"t": float("nan")}, {"t": "x"}, [0.5]])
def test_bad_thresholds(table, thresholds):
    with pytest.raises(ConfigError, match="thresholds"):
        per_group_rates(table, attribute="eth", thresholds=thresholds)
