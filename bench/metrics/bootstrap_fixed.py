"""Subject-bootstrap intervals of per-group FMR and FNMR at thresholds held fixed (sweeps; issue #14).

Acquisition-condition sweeps (:mod:`bench.sweep`) set their thresholds once, on the
unperturbed run, and measure every transform and strength at those same values. Their
rates therefore get the subject-level bootstrap of :mod:`bench.metrics.bootstrap`
(subjects resampled within their group, two-subject bootstrap for FMR, cluster
bootstrap for FNMR; docs/protocol.md §5.2-5.3) **without** threshold re-calibration:
the interval covers the sampling of subjects at that operating point, not the
uncertainty of the threshold itself. The ``"(all)"`` rows are resampled once without
demographic strata (:func:`bench.metrics.bootstrap.bootstrap_overall_rates`), as in a
run. The same seed is used at every strength, so neighbouring strengths draw the same
subjects (their intervals differ by the effect of the condition, not by the draw).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from bench.metrics.bootstrap import bootstrap_group_rates, bootstrap_overall_rates, with_overall_rows

__all__ = ["BOOT_COLUMNS", "with_fixed_threshold_bootstrap"]

#: Columns added to per-group rate rows (NaN for FTA and other metrics): the percentile
#: interval and ``n_replicates``, the replicates in which the rate was defined (docs/protocol.md §5.6).
BOOT_COLUMNS = ["boot_low", "boot_high", "n_replicates"]


def with_fixed_threshold_bootstrap(rows: pd.DataFrame, comparisons: pd.DataFrame, attributes: Sequence[str],
                                   thresholds: Mapping[str, float], *, n_replicates: int, seed: int,
                                   confidence: float) -> pd.DataFrame:
    """``rows`` with ``boot_low`` / ``boot_high`` on their FMR and FNMR rows.

    Parameters
    ----------
    rows : pandas.DataFrame
        Per-group rows with columns ``attribute, group, threshold_name, metric`` (the
        output of :func:`bench.metrics.groups.per_group_rates` and FTA rows).
    comparisons : pandas.DataFrame
        The comparison table the FMR/FNMR rows were counted on
        (:func:`bench.protocol.pairs.comparison_table`).
    attributes : sequence of str
        Attributes of ``rows``.
    thresholds : mapping of str to float
        The fixed thresholds (name -> value, match iff score >= value).
    n_replicates, seed : int
        Bootstrap replicates and seed (same seed at every strength).
    confidence : float
        Two-sided coverage of the percentile intervals.

    Returns
    -------
    pandas.DataFrame
        ``rows`` (same order) plus :data:`BOOT_COLUMNS`; NaN where no interval applies
        (FTA, FNMR_incl_FTA) or the rate was undefined in every replicate
        (``n_replicates`` 0 there, NaN where no interval applies).

    Raises
    ------
    As :func:`bench.metrics.bootstrap.bootstrap_group_rates`.
    """
    out = rows.drop(columns=[c for c in BOOT_COLUMNS if c in rows.columns])
    if comparisons is None or not len(comparisons) or not thresholds:
        return out.assign(boot_low=float("nan"), boot_high=float("nan"), n_replicates=float("nan"))
    thresholds = dict(thresholds)
    overall = bootstrap_overall_rates(comparisons, thresholds=thresholds, n_replicates=n_replicates, seed=seed,
                                      confidence=confidence)
    parts = []
    for attr in attributes:
        boot = bootstrap_group_rates(comparisons, attribute=attr, thresholds=thresholds, n_replicates=n_replicates,
                                     seed=seed, confidence=confidence)
        parts.append(with_overall_rows(boot, overall)[["attribute", "group", "threshold_name", "metric", *BOOT_COLUMNS]])
    boot = pd.concat(parts, ignore_index=True)
    key = ["attribute", "group", "threshold_name", "metric"]
    merged = out.reset_index(drop=True).merge(boot, on=key, how="left", validate="many_to_one")
    merged.index = out.index
    return merged
