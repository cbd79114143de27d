"""The differentials table of a run: §4 measures per attribute and threshold, with bootstrap intervals.

Written once for every score store: it reads the per-group rates
(:meth:`bench.scores.store.ScoreStore.group_rates`) and the subject-bootstrap replicates
(:class:`bench.metrics.bootstrap.BootstrapReplicates`), not the scores. Used by the run
(:mod:`bench.run`) and re-computed by the verifier (:mod:`bench.verify`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from bench.metrics.bootstrap_differentials import bootstrap_differentials
from bench.metrics.differentials import differential_summary

__all__ = ["differentials_table"]

_PARITY = {"max_vs_min_group_difference": 0.0, "max_min_difference": 0.0, "gini": 0.0, "garbe": 0.0, "max_min_ratio": 1.0, "max_geomean_ratio": 1.0,
           "inequity_rate": 1.0, "inequity_rate_geomean": 1.0, "fdr": 1.0, "max_ratio_to_reference": 1.0}


def differentials_table(rates: pd.DataFrame, attr: str, thresholds: dict[str, float], protocol: Any, reps: Any) -> pd.DataFrame:
    """Tidy differential measures (metrics-reference §4) with bootstrap intervals (§5.4).

    Parameters
    ----------
    rates : pandas.DataFrame
        One attribute's per-group rows (:data:`bench.metrics.groups.PER_GROUP_COLUMNS`).
    attr : str
    thresholds : dict
        Name -> threshold of every usable threshold.
    protocol : bench.run.Protocol
        Read: ``reference_groups``, ``differential_alpha``, ``zero_rule``, ``confidence``.
    reps : BootstrapReplicates or None
        The attribute's subject-bootstrap replicates, from whichever score store drew them.

    Returns
    -------
    pandas.DataFrame
        One row per (threshold_name, measure): value, groups, max/min group, reason,
        alpha, zero_rule, excluded groups, warnings, ``parity_value``; bootstrap
        interval columns when ``reps`` is given; plus the extreme-group tests
        (``*_max_vs_min_group_difference``).
    """
    rows = []
    reference = protocol.reference_groups.get(attr)
    for name in thresholds:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summ = differential_summary(rates, "both", name, alpha=protocol.differential_alpha, zero_rule=protocol.zero_rule, reference=reference)
        notes = sorted({str(w.message) for w in caught})
        for metric in ("FMR", "FNMR"):
            part = summ[metric]
            for measure in ("max_min_difference", "max_min_ratio", "max_geomean_ratio", "gini", "max_ratio_to_reference"):
                if measure in part:
                    rows.append({"attribute": attr, "threshold_name": name, "measure": f"{metric}_{measure}", "value": part[measure],
                                 "groups": ";".join(part["groups"]), "max_group": part.get("max_group"), "min_group": part.get("min_group"),
                                 "reason": part.get("reasons", {}).get(measure, "")})
        for measure in ("fdr", "inequity_rate", "inequity_rate_geomean", "garbe"):
            rows.append({"attribute": attr, "threshold_name": name, "measure": measure, "value": summ[measure],
                         "groups": ";".join(summ["FMR"]["groups"]), "max_group": None, "min_group": None,
                         "reason": summ.get("reasons", {}).get(measure, "")})
        for r in rows:
            if r["threshold_name"] == name:
                r["alpha"] = summ["alpha"]
                r["zero_rule"] = protocol.zero_rule or "none"
                r["excluded_groups"] = ";".join(summ["excluded_groups"])
                r["warnings"] = " | ".join(notes)
    out = pd.DataFrame(rows)
    if reps is not None and len(out):
        boot = bootstrap_differentials(None, attribute=attr, thresholds=thresholds, confidence=protocol.confidence,
                                       alpha=protocol.differential_alpha, zero_rule=protocol.zero_rule, replicates=reps)
        out = out.merge(boot.drop(columns=["attribute"]), on=["threshold_name", "measure"], how="left")
    if len(out):
        out = pd.concat([out, _extreme_group_tests(out, attr, reps, protocol.confidence)], ignore_index=True)
    out["parity_value"] = [_PARITY.get(m.split("_", 1)[1] if m.startswith(("FMR_", "FNMR_")) else m) for m in out["measure"]]
    return out


def _extreme_group_tests(diff: pd.DataFrame, attr: str, reps: Any, confidence: float) -> pd.DataFrame:
    """Is the worst group really worse than the best? Bootstrap of their difference, groups held fixed.

    Max-type statistics (max/min, max-min, Gini) are biased upward under sampling noise
    and their percentile intervals almost never include parity, even when the groups do
    not differ (metrics-reference §5.4). Here the two groups named by the point estimate
    (``max_group``, ``min_group``) are held fixed and the subject-level bootstrap
    distribution of ``rate(max_group) - rate(min_group)`` is read off the same replicates:
    an interval that includes 0 means the data do not show that these groups differ.
    """
    rows = []
    for _, r in diff[diff["measure"].isin(["FMR_max_min_difference", "FNMR_max_min_difference"])].iterrows():
        metric = r["measure"].split("_", 1)[0]
        gmax, gmin = r.get("max_group"), r.get("min_group")
        if not isinstance(gmax, str) or not isinstance(gmin, str) or gmax == gmin:
            continue
        if reps is None:  # no bootstrap: the point value only
            d, n_all = np.empty(0), 0
        else:
            rates = reps.rates(r["threshold_name"], metric)
            d = rates[:, reps.groups.index(gmax)] - rates[:, reps.groups.index(gmin)]
            n_all = rates.shape[0]
            d = d[np.isfinite(d)]
        lo, hi = (np.quantile(d, [(1 - confidence) / 2, (1 + confidence) / 2]) if d.size else (np.nan, np.nan))
        row = {
            "attribute": attr, "threshold_name": r["threshold_name"], "measure": f"{metric}_max_vs_min_group_difference",
            "value": r["value"], "groups": f"{gmax};{gmin}", "max_group": gmax, "min_group": gmin,
            "alpha": r.get("alpha"), "zero_rule": r.get("zero_rule"), "excluded_groups": r.get("excluded_groups"),
            "warnings": "groups held fixed at the point estimate's max and min; interval including 0: no evidence they differ",
        }
        if reps is not None:
            row.update(boot_low=float(lo), boot_high=float(hi), n_replicates=int(d.size),
                       n_undefined=int(n_all - d.size), includes_parity=bool(d.size and lo <= 0 <= hi))
        rows.append(row)
    return pd.DataFrame(rows)
