"""Subject bootstrap at fixed thresholds, as sweeps publish it (issue #14; bench/metrics/bootstrap_fixed.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.metrics.bootstrap import bootstrap_group_rates, bootstrap_overall_rates
from bench.metrics.bootstrap_fixed import with_fixed_threshold_bootstrap
from bench.metrics.groups import per_group_rates
from bench.protocol.enrolment_probe import reference_probe_pairs
from bench.protocol.pairs import comparison_table


def _comparisons(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 24
    subjects = np.repeat([f"s{i:02d}" for i in range(n)], 2)
    roles = np.tile(["enrolment", "probe"], n)
    table = pd.DataFrame({"image_id": [f"{s}_{r}" for s, r in zip(subjects, roles)], "subject_id": subjects})
    labels = pd.DataFrame({"grp": np.where(np.arange(2 * n) // 2 < 10, "a", "b")})
    a, b, mated = reference_probe_pairs(roles, subjects)
    scores = np.where(mated, rng.normal(0.6, 0.15, len(a)), rng.normal(0.1, 0.15, len(a)))
    return comparison_table(table, labels, a, b, mated, scores)


def test_intervals_are_those_of_the_run_bootstrap_without_recalibration():
    comp = _comparisons()
    thresholds = {"t": 0.4}
    rows = per_group_rates(comp, attribute="grp", thresholds=thresholds, confidence=0.95)
    fta = pd.DataFrame([{"attribute": "grp", "group": "(all)", "metric": "FTA", "threshold_name": np.nan, "errors": 0, "comparisons": 48}])
    rows = pd.concat([fta, rows], ignore_index=True)
    out = with_fixed_threshold_bootstrap(rows, comp, ["grp"], thresholds, n_replicates=300, seed=5, confidence=0.95)
    assert len(out) == len(rows) and out["metric"].tolist() == rows["metric"].tolist()
    assert out.loc[out["metric"] == "FTA", ["boot_low", "boot_high"]].isna().all().all()
    direct = bootstrap_group_rates(comp, attribute="grp", thresholds=thresholds, n_replicates=300, seed=5).set_index(["group", "metric"])
    overall = bootstrap_overall_rates(comp, thresholds=thresholds, n_replicates=300, seed=5).set_index("metric")
    for _, r in out[out["metric"].isin(["FMR", "FNMR"])].iterrows():
        want = overall.loc[r["metric"]] if r["group"] == "(all)" else direct.loc[(r["group"], r["metric"])]
        assert (r["boot_low"], r["boot_high"]) == (want["boot_low"], want["boot_high"])
    # a group with errors has an interval around its rate
    fnmr_all = out[(out["group"] == "(all)") & (out["metric"] == "FNMR")].iloc[0]
    assert fnmr_all["errors"] > 0 and fnmr_all["boot_low"] <= fnmr_all["rate"] <= fnmr_all["boot_high"]


def test_no_comparisons_or_thresholds_give_empty_intervals():
    rows = pd.DataFrame([{"attribute": "grp", "group": "(all)", "metric": "FNMR", "threshold_name": "t"}])
    out = with_fixed_threshold_bootstrap(rows, None, ["grp"], {"t": 0.4}, n_replicates=10, seed=0, confidence=0.95)
    assert out[["boot_low", "boot_high"]].isna().all().all()
