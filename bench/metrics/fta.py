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

__all__ = ["fta_by_group", "generalized_rates", "ALL_GROUP"]

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


def _pairs(k: np.ndarray) -> np.ndarray:
    return k * (k - 1) // 2


def generalized_rates(per_group: pd.DataFrame, labels: pd.Series, subject_ids: pd.Series, acquired: np.ndarray, *, attribute: str,
                      lost: dict[str, tuple[int, int]] | None = None) -> pd.DataFrame:
    """Error rates with failures to acquire folded in, per group and threshold.

    Two conventions, both reported and labelled (metrics-reference §1.2, §8 item 1):

    - ISO/IEC 19795-1 transaction rates (single attempt, single reference):
      ``FAR = FMR (1 - FTA)``, ``FRR = FTA + FNMR (1 - FTA)``, with the group's
      image-level FTA.
    - NIST FRVT convention: a failed template gets the lowest score, so every mated
      comparison lost to an FTA is a false non-match and every lost non-mated
      comparison a correct rejection that stays in the denominator:
      ``FNMR_nist = (FNM + lost mated) / (completed + lost mated)``,
      ``FMR_nist = FM / (completed + lost non-mated)``.

    Parameters
    ----------
    per_group : pandas.DataFrame
        Rows of :func:`bench.metrics.groups.per_group_rates` and :func:`fta_by_group`
        for ``attribute`` (FTA, FMR, FNMR).
    labels, subject_ids : pandas.Series
        Shape (n_images,): group label and subject of every image, failed ones included.
    acquired : numpy.ndarray
        Shape (n_images,), bool.
    attribute : str
    lost : dict, optional
        ``{group: (lost_mated, lost_nonmated)}`` counted from a pair list
        (:func:`bench.protocol.pair_list.lost_pairs_by_group`) instead of the all-pairs
        counts derived here from ``subject_ids`` and ``acquired``.

    Returns
    -------
    pandas.DataFrame
        Columns ``attribute, group, threshold_name, fta, fmr, fnmr, far_iso, frr_iso,
        lost_mated, lost_nonmated, fnmr_nist, fmr_nist``; one row per group (``(all)``
        included) and threshold. Rates are fractions in [0, 1] (NaN when undefined).
    """
    df = pd.DataFrame({"g": labels.astype(str).to_numpy(), "s": subject_ids.astype(str).to_numpy(), "ok": np.asarray(acquired, bool)})
    given = lost
    lost = {}
    for g in [] if given is not None else [ALL_GROUP, *sorted(df["g"].unique().tolist())]:
        sub = df if g == ALL_GROUP else df[df["g"] == g]
        per_subject = sub.groupby("s")["ok"].agg(["size", "sum"])
        mated_all, mated_ok = _pairs(per_subject["size"].to_numpy()).sum(), _pairs(per_subject["sum"].to_numpy()).sum()
        n_all, n_ok = len(sub), int(sub["ok"].sum())
        nonmated_all = n_all * (n_all - 1) // 2 - mated_all
        nonmated_ok = n_ok * (n_ok - 1) // 2 - mated_ok
        lost[g] = (int(mated_all - mated_ok), int(nonmated_all - nonmated_ok))
    if given is not None:  # a pair-list run: the listed pairs lost to FTA
        lost = dict(given)
    rows = []
    pg = per_group[per_group["attribute"] == attribute]
    fta = pg[pg["metric"] == "FTA"].set_index("group")["rate"]
    for (g, name), sel in pg[pg["metric"].isin(["FMR", "FNMR"])].groupby(["group", "threshold_name"], sort=False):
        r = sel.set_index("metric")
        f, t = float(fta.get(g, np.nan)), r  # per-group FMR is the diagonal: lost pairs are the group's own
        fmr, fnmr = float(t.loc["FMR", "rate"]), float(t.loc["FNMR", "rate"])
        lm, ln = lost.get(g, (0, 0))
        fnm, nm = int(t.loc["FNMR", "errors"]), int(t.loc["FNMR", "comparisons"])
        fm, nn = int(t.loc["FMR", "errors"]), int(t.loc["FMR", "comparisons"])
        rows.append(
            {
                "attribute": attribute,
                "group": g,
                "threshold_name": name,
                "fta": f,
                "fmr": fmr,
                "fnmr": fnmr,
                "far_iso": fmr * (1 - f),
                "frr_iso": f + fnmr * (1 - f),
                "lost_mated": lm,
                "lost_nonmated": ln,
                "fnmr_nist": (fnm + lm) / (nm + lm) if nm + lm else np.nan,
                "fmr_nist": fm / (nn + ln) if nn + ln else np.nan,
            }
        )
    return pd.DataFrame(rows)
