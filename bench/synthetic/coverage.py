"""Coverage of the harness's bootstrap intervals on synthetic populations with known truth.

A simulation study over the whole pipeline's statistics: populations drawn by
:mod:`bench.synthetic.generator`, compared (:func:`bench.protocol.pairs.all_pairs`),
bootstrapped (:func:`bench.metrics.bootstrap.bootstrap_group_rates`) and checked against
the exact per-group rates of :mod:`bench.synthetic.truth`. Used by
``tests/test_synthetic_coverage.py`` and ``scripts/synthetic_coverage.py``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd

from bench.synthetic.truth import DEFAULT_TRUTH_SAMPLES, _check_dim, group_truth

if TYPE_CHECKING:
    from bench.synthetic.generator import SyntheticPopulation

__all__ = ["bootstrap_coverage"]


def _fast_comparisons(population: "SyntheticPopulation") -> pd.DataFrame:
    """Minimal comparison table (all pairs of acquired images) for the bootstrap:
    ``subject_a, subject_b, mated, score, group_a, group_b`` (cosine scores)."""
    from bench.protocol.pairs import all_pairs

    manifest, emb, acquired = population.generate()
    table = manifest.table[acquired].reset_index(drop=True)
    x = emb[acquired].astype(np.float64)
    subj = table["subject_id"].astype(str).to_numpy()
    group = table["group"].astype(str).to_numpy() if "group" in table.columns else np.full(len(table), "all")
    ia, ib, mated = all_pairs(subj)
    score = np.einsum("ij,ij->i", x[ia], x[ib])
    return pd.DataFrame(
        {
            "subject_a": pd.Categorical(subj[ia]),
            "subject_b": pd.Categorical(subj[ib]),
            "mated": mated,
            "score": score,
            "group_a": pd.Categorical(group[ia]),
            "group_b": pd.Categorical(group[ib]),
        }
    )


def bootstrap_coverage(
    groups: Mapping[str, Mapping],
    dim: int,
    thresholds: Mapping[str, float],
    *,
    replicates: int = 100,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    truth_samples: int = DEFAULT_TRUTH_SAMPLES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Coverage of the harness's subject-level bootstrap intervals of the true group rates.

    Draws ``replicates`` populations (seeds ``seed .. seed + replicates - 1``) of the
    same generator, scores all comparisons, runs
    :func:`bench.metrics.bootstrap.bootstrap_group_rates` (stratified subject-level
    bootstrap, metrics-reference §5.2-5.3; thresholds fixed, as an externally given
    operating point) and checks whether each group's interval contains the group's
    true FMR and FNMR (:func:`group_truth`).

    Parameters
    ----------
    groups : mapping
        Group name -> :class:`GroupSpec` keyword arguments (no ``labels``: groups are
        reported under the attribute ``group``).
    dim : int
        Embedding dimension.
    thresholds : mapping of str to float
        Fixed thresholds (generator cosine).
    replicates : int, default 100
    n_bootstrap : int, default 1000
    confidence : float, default 0.95
    seed : int, default 0
    truth_samples : int
        Draws per ground-truth law.

    Returns
    -------
    per_replicate : pandas.DataFrame
        ``replicate, group, threshold_name, metric, estimate, errors, comparisons,
        boot_low, boot_high, true_rate, covered`` (``covered``: ``low <= truth <= high``).
    summary : pandas.DataFrame
        Per ``group, threshold_name, metric``: ``true_rate, mean_estimate,
        mean_errors, coverage, replicates, zero_error_share, mean_width``.
    """
    from bench.synthetic.generator import GroupSpec, SyntheticPopulation
    from bench.metrics.bootstrap import bootstrap_group_rates

    d = _check_dim(dim)
    names = list(groups)
    ts = {str(k): float(v) for k, v in thresholds.items()}
    truths = {g: group_truth(GroupSpec(**dict(groups[g])), d, n_samples=truth_samples, seed=seed + 17 * i) for i, g in enumerate(names)}
    true_rate = {
        (g, name, metric): float((truths[g].fmr if metric == "FMR" else truths[g].fnmr)([t])[0])
        for g in names for name, t in ts.items() for metric in ("FMR", "FNMR")
    }
    rows = []
    for r in range(replicates):
        pop = SyntheticPopulation(groups, dim=d, seed=seed + r, name="coverage")
        comp = _fast_comparisons(pop)
        boot = bootstrap_group_rates(comp, attribute="group", thresholds=ts, n_replicates=n_bootstrap, seed=seed + r, confidence=confidence)
        la = comp["group_a"].astype(str).to_numpy()
        same = la == comp["group_b"].astype(str).to_numpy()
        mated = comp["mated"].to_numpy()
        score = comp["score"].to_numpy()
        for row in boot.itertuples(index=False):
            if row.group not in groups:
                continue
            sel = same & (la == row.group) & (mated if row.metric == "FNMR" else ~mated)
            s = score[sel]
            t = ts[row.threshold_name]
            err = int(np.count_nonzero(s < t) if row.metric == "FNMR" else np.count_nonzero(s >= t))
            truth = true_rate[(row.group, row.threshold_name, row.metric)]
            rows.append(
                {
                    "replicate": r, "group": row.group, "threshold_name": row.threshold_name, "metric": row.metric,
                    "estimate": err / s.size if s.size else math.nan, "errors": err, "comparisons": int(s.size),
                    "boot_low": row.boot_low, "boot_high": row.boot_high, "true_rate": truth,
                    "covered": bool(row.boot_low <= truth <= row.boot_high),
                }
            )
    per = pd.DataFrame.from_records(rows)
    summary = (
        per.assign(zero=per["errors"] == 0, width=per["boot_high"] - per["boot_low"])
        .groupby(["group", "threshold_name", "metric"], sort=False)
        .agg(true_rate=("true_rate", "first"), mean_estimate=("estimate", "mean"), mean_errors=("errors", "mean"),
             coverage=("covered", "mean"),
             replicates=("covered", "size"), zero_error_share=("zero", "mean"), mean_width=("width", "mean"))
        .reset_index()
    )
    return per, summary
