"""Per-group-threshold mitigation analysis (metrics-reference §7): labelled, never headline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.errors import InsufficientDataWarning

from bench.metrics.rates import threshold_at_fmr
from bench.run import per_group_threshold_analysis


def _table(rng):
    rows = []
    for g, shift in (("a", 0.0), ("b", 0.3)):
        for k in range(400):  # non-mated, both subjects in g
            rows.append({"mated": False, "score": rng.normal(shift, 0.1), "x_a": g, "x_b": g})
        for k in range(50):
            rows.append({"mated": True, "score": rng.normal(0.8, 0.1), "x_a": g, "x_b": g})
    rows.append({"mated": False, "score": 0.99, "x_a": "a", "x_b": "b"})  # cross-group: in no group's calibration
    return pd.DataFrame(rows)


def test_each_group_gets_its_own_order_statistic_threshold():
    comp = _table(np.random.default_rng(0))
    out = per_group_threshold_analysis(comp, ["x"], [0.01, 0.001]).set_index(["group", "target_fmr"])
    assert set(out["analysis"]) == {"mitigation: per-group thresholds"}
    for g in ("a", "b"):
        sel = (comp.x_a == g) & (comp.x_b == g)
        nm, m = comp.score[sel & ~comp.mated].to_numpy(), comp.score[sel & comp.mated].to_numpy()
        with pytest.warns(InsufficientDataWarning, match="rule of 30"):  # 400 < 30 / 0.01
            expected = threshold_at_fmr(nm, 0.01)
        row = out.loc[(g, 0.01)]
        assert row["threshold"] == expected.threshold and row["k"] == 4  # floor(0.01 * 400)
        assert row["achieved_fmr"] <= 0.01
        assert row["false_non_matches"] == int((m < expected.threshold).sum())
    # the shifted group needs a higher threshold for the same FMR
    assert out.loc[("b", 0.01), "threshold"] > out.loc[("a", 0.01), "threshold"]
    # 400 non-mated comparisons cannot resolve 1e-3 (fewer than 1/target): refused, with the reason
    assert out.loc[("a", 0.001), "status"] == "refused" and "cannot resolve" in out.loc[("a", 0.001), "reason"]
