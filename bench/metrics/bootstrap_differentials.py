"""Subject-bootstrap intervals of the differential summaries (docs/protocol.md §4, §5.4).

Reads the replicates of :func:`bench.metrics.bootstrap.bootstrap_replicates` (whichever
score store drew them) and computes each §4 measure per replicate, then percentile
intervals; see :mod:`bench.metrics.bootstrap` for the method.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bench.errors import ConfigError
from bench.metrics.bootstrap import BOOT_DIFFERENTIAL_COLUMNS, BootstrapReplicates, _percentile_interval, bootstrap_replicates
from bench.metrics.bootstrap_design import _check_run_args

__all__ = ["bootstrap_differentials"]


def _row_gini(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    s = np.sort(x, axis=1)
    i = np.arange(1, n + 1, dtype=np.float64)
    pair_sum = 2.0 * np.sum((2.0 * i - n - 1.0) * s, axis=1)
    mean = x.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, pair_sum / (2.0 * n * (n - 1) * np.where(mean > 0, mean, 1.0)), np.nan)


def _row_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num/den with den == 0 -> +inf if num > 0 (unbounded ratio), NaN if num == 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / np.where(den > 0, den, 1.0)
    return np.where(den > 0, r, np.where(num > 0, np.inf, np.nan))


def _row_measures(rates: np.ndarray, comps: np.ndarray, zero_rule: str | None) -> dict[str, np.ndarray]:
    """Single-metric measures per replicate row; rates (B, D) without NaN rows handled by caller."""
    den = rates
    if zero_rule == "upper_bound":
        with np.errstate(invalid="ignore", divide="ignore"):
            ub = 1.0 - 0.05 ** (1.0 / np.where(comps > 0, comps, 1.0))
        den = np.where(rates == 0, ub, rates)
    mx = rates.max(axis=1)
    with np.errstate(divide="ignore"):
        log_den = np.log(den)
    geo = np.exp(log_den.mean(axis=1))  # 0 if any den == 0
    return {
        "max_min_difference": mx - rates.min(axis=1),
        "max_min_ratio": _row_ratio(mx, den.min(axis=1)),
        "max_geomean_ratio": _row_ratio(mx, geo),
        "gini": _row_gini(rates),
    }


_PARITY = {
    "max_min_difference": 0.0,
    "max_min_ratio": 1.0,
    "max_geomean_ratio": 1.0,
    "gini": 0.0,
    "fdr": 1.0,
    "inequity_rate": 1.0,
    "inequity_rate_geomean": 1.0,
    "garbe": 0.0,
}


def bootstrap_differentials(
    comparisons: pd.DataFrame | None,
    *,
    attribute: str,
    thresholds: Mapping[str, float],
    n_replicates: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    recalibrate: Mapping[str, float] | None = None,
    alpha: float = 0.5,
    zero_rule: str | None = None,
    replicates: BootstrapReplicates | None = None,
) -> pd.DataFrame:
    """Bootstrap percentile intervals of the §4 differential measures (§5.4).

    Each replicate's per-group FMR and FNMR (same draw for both) are summarised exactly
    as :func:`~bench.metrics.differentials.differential_summary` does, over the groups
    that have comparisons in the original table (for FMR measures: FMR comparisons;
    for FNMR measures: FNMR comparisons; for combined measures: both). The ``"(all)"``
    pseudo-group is never a group.

    Parameters
    ----------
    comparisons, attribute, thresholds, n_replicates, seed, recalibrate, replicates
        As :func:`bootstrap_group_rates`.
    confidence : float in (0, 1), default 0.95
        Two-sided coverage.
    alpha : float in [0, 1], default 0.5
        FMR weight of FDR, IR and GARBE.
    zero_rule : {None, "upper_bound"}, default None
        Zero-error rule (``bench.metrics.differentials``), applied with each replicate's
        own comparison counts.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`BOOT_DIFFERENTIAL_COLUMNS`, one row per (threshold_name, measure).
        Measures: ``FMR_`` and ``FNMR_`` + ``max_min_difference``, ``max_min_ratio``,
        ``max_geomean_ratio``, ``gini``; and ``fdr``, ``inequity_rate``,
        ``inequity_rate_geomean``, ``garbe``. A replicate in which a ratio divides by a
        zero-error group (no zero rule) is **kept** with value ``+inf`` (the ratio is
        unbounded), so the upper bound may be ``inf``; a replicate in which a measure is
        undefined (a group with nothing drawn, all groups error-free) is dropped and
        counted in ``n_undefined``. ``includes_parity`` flags intervals that contain the
        parity value (0 for differences and Gini/GARBE, 1 for ratios/IR/FDR); max-type
        statistics are biased upward under noise (§5.4).

    Raises
    ------
    As :func:`bootstrap_group_rates`; ConfigError for a bad ``alpha`` or ``zero_rule``.
    """
    _check_run_args(n_replicates, confidence)
    if zero_rule not in (None, "upper_bound"):
        raise ConfigError(f"zero_rule: expected None or 'upper_bound', got {zero_rule!r}")
    if not (0.0 <= float(alpha) <= 1.0):
        raise ConfigError(f"alpha: expected a value in [0, 1], got {alpha!r}")
    reps = replicates or bootstrap_replicates(
        comparisons, attribute=attribute, thresholds=thresholds, n_replicates=n_replicates,
        seed=seed, recalibrate=recalibrate,
    )
    records = []
    for name in reps.threshold_names:
        per_metric: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for metric in ("FMR", "FNMR"):
            n = reps.comparisons[(name, metric)][:, 1:]
            r = reps.rates(name, metric)[:, 1:]
            cols = np.flatnonzero(reps.original_comparisons[metric][1:] > 0)
            per_metric[metric] = (r, n, cols)
        both = np.intersect1d(per_metric["FMR"][2], per_metric["FNMR"][2])
        values: dict[str, np.ndarray] = {}
        for metric in ("FMR", "FNMR"):
            r, n, cols = per_metric[metric]
            sub, subn = r[:, cols], n[:, cols]
            valid = ~np.isnan(sub).any(axis=1) if cols.size >= 2 else np.zeros(r.shape[0], bool)
            ms = _row_measures(np.nan_to_num(sub), subn, zero_rule) if cols.size >= 2 else {}
            for m in ("max_min_difference", "max_min_ratio", "max_geomean_ratio", "gini"):
                v = ms.get(m, np.full(r.shape[0], np.nan))
                values[f"{metric}_{m}"] = np.where(valid, v, np.nan)
        a = float(alpha)
        if both.size >= 2:
            rf, nf = per_metric["FMR"][0][:, both], per_metric["FMR"][1][:, both]
            rn, nn = per_metric["FNMR"][0][:, both], per_metric["FNMR"][1][:, both]
            valid = ~(np.isnan(rf).any(axis=1) | np.isnan(rn).any(axis=1))
            mf = _row_measures(np.nan_to_num(rf), nf, zero_rule)
            mn = _row_measures(np.nan_to_num(rn), nn, zero_rule)
            with np.errstate(invalid="ignore"):
                combined = {
                    "fdr": 1.0 - (a * mf["max_min_difference"] + (1 - a) * mn["max_min_difference"]),
                    "inequity_rate": mf["max_min_ratio"] ** a * mn["max_min_ratio"] ** (1 - a),
                    "inequity_rate_geomean": mf["max_geomean_ratio"] ** a * mn["max_geomean_ratio"] ** (1 - a),
                    "garbe": a * mf["gini"] + (1 - a) * mn["gini"],
                }
            for m, v in combined.items():
                values[m] = np.where(valid, v, np.nan)
        else:
            for m in ("fdr", "inequity_rate", "inequity_rate_geomean", "garbe"):
                values[m] = np.full(reps.n_replicates, np.nan)
        for measure, v in values.items():
            lo, hi, n_ok = _percentile_interval(v, confidence)
            parity = _PARITY[measure.split("_", 1)[1] if measure.startswith(("FMR_", "FNMR_")) else measure]
            records.append(
                {"attribute": reps.attribute, "threshold_name": name, "measure": measure,
                 "boot_low": lo, "boot_high": hi, "n_replicates": n_ok,
                 "n_undefined": reps.n_replicates - n_ok,
                 "includes_parity": bool(n_ok and lo <= parity <= hi)}
            )
    return pd.DataFrame.from_records(records, columns=BOOT_DIFFERENTIAL_COLUMNS)
