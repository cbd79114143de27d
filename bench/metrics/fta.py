"""Failure-to-acquire rate per demographic group (ISO/IEC 19795-1 FTA).

FTA = images for which no usable template was produced (unreadable file, no face
detected, invalid embedding) / images attempted. FTA is itself a demographic
differential (ISO/IEC 19795-10 lists FTE/FTA among the quantities to report;
metrics-reference §1.2, §3), so it is reported per group with counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.metrics.intervals import clopper_pearson_interval, wilson_interval, zero_error_upper_bound

__all__ = ["fta_by_group", "ALL_GROUP"]

ALL_GROUP = "(all)"


def fta_by_group(labels: pd.Series, subject_ids: pd.Series, fta_reason: np.ndarray, *, attribute: str, confidence: float = 0.95) -> pd.DataFrame:
    """FTA per group of one attribute, with counts, intervals and reasons.

    Parameters
    ----------
    labels : pandas.Series
        Shape (n_images,), group label per image (no NA; missing = ``"missing"``).
    subject_ids : pandas.Series
        Shape (n_images,), subject per image.
    fta_reason : numpy.ndarray
        Shape (n_images,), None where acquired, else the reason code.
    attribute : str
        Attribute name written in the ``attribute`` column.
    confidence : float
        Level of the binomial intervals (image-level; floors on the true width).

    Returns
    -------
    pandas.DataFrame
        One row per group (``"(all)"`` first), columns ``attribute, group,
        threshold_name`` (empty), ``threshold`` (NaN), ``metric`` (``"FTA"``),
        ``errors`` (failed images), ``comparisons`` (images attempted), ``subjects``,
        ``rate``, ``wilson_low/high``, ``cp_low/high``, ``upper_bound_95``, ``flag``,
        and ``reasons`` (``"reason:count;..."``).
    """
    failed = np.array([r is not None for r in fta_reason], dtype=bool)
    lab = labels.astype(str).to_numpy()
    sub = subject_ids.astype(str).to_numpy()
    rows = []
    for g in [ALL_GROUP, *sorted(set(lab.tolist()))]:
        m = np.ones(len(lab), bool) if g == ALL_GROUP else lab == g
        reasons = pd.Series([r for r, f in zip(fta_reason[m], failed[m]) if f], dtype=object).value_counts().sort_index()
        rows.append(
            {
                "attribute": attribute,
                "group": g,
                "threshold_name": "",
                "threshold": np.nan,
                "metric": "FTA",
                "errors": int(failed[m].sum()),
                "comparisons": int(m.sum()),
                "subjects": int(len(set(sub[m].tolist()))),
                "reasons": ";".join(f"{k}:{v}" for k, v in reasons.items()),
            }
        )
    out = pd.DataFrame(rows)
    e, n = out["errors"].to_numpy(), out["comparisons"].to_numpy()
    out["rate"] = np.where(n > 0, e / np.maximum(n, 1), np.nan)
    out["wilson_low"], out["wilson_high"] = wilson_interval(e, n, confidence=confidence)
    out["cp_low"], out["cp_high"] = clopper_pearson_interval(e, n, confidence=confidence)
    out["upper_bound_95"] = np.where((e == 0) & (n > 0), zero_error_upper_bound(np.maximum(n, 1)), np.nan)
    out["flag"] = np.where(n == 0, "no_comparisons", np.where(e == 0, "zero_errors", np.where(e < 30, "low_precision", "")))
    return out
