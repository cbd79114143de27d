"""The table store: every comparison score kept (``protocol.engine: table``).

One row per comparison (:func:`bench.protocol.pairs.comparison_table`: image and
subject indices, the group of each side per attribute, ``mated``, ``score``, float64),
written as ``scores.parquet``. Every read-out is exact: thresholds are §0 order
statistics of the calibration scores, rates are counts at a threshold, the EER and
DET are computed from all scores, the subject bootstrap resamples the rows
(:mod:`bench.metrics.bootstrap`).

:class:`TableStore` implements :class:`bench.scores.store.ScoreStore`; the streamed
counterpart is :class:`bench.scores.stream.HistogramStore`. The store is filled by the
verification protocol (:func:`bench.protocol.verification.score_into_store`).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd

from bench.errors import ConfigError, InsufficientDataError
from bench.metrics.bootstrap import BootstrapReplicates, bootstrap_overall_rates, bootstrap_replicates
from bench.metrics.groups import cross_group_fmr, per_group_rates
from bench.metrics.rates import ThresholdAtFMR, det_curve, equal_error_rate, threshold_at_fmr

__all__ = ["TableStore", "eer_table", "per_group_threshold_analysis"]

def eer_table(comp: pd.DataFrame, attributes: list[str]) -> tuple[pd.DataFrame, dict]:
    """EER and DET per (attribute, group) from the comparison table (``(all)``: every row).

    Returns
    -------
    (pandas.DataFrame, dict)
        Rows ``attribute, group, n_mated, n_nonmated, eer, threshold, eer_low, eer_high,
        eer_crossing`` (NaN where a class is empty); (attribute, group) -> DetCurve.
    """
    rows, dets = [], {}
    mated = comp["mated"].to_numpy()
    score = comp["score"].to_numpy()
    for attr in attributes:
        la = comp[f"{attr}_a"].astype(str).to_numpy()
        lb = comp[f"{attr}_b"].astype(str).to_numpy()
        for g in ["(all)", *sorted(set(la.tolist()) | set(lb.tolist()))]:
            sel = np.ones(len(comp), bool) if g == "(all)" else (la == g) & (lb == g)
            m, nm = score[sel & mated], score[sel & ~mated]
            row = {"attribute": attr, "group": g, "n_mated": int(m.size), "n_nonmated": int(nm.size)}
            if m.size and nm.size:
                e = equal_error_rate(m, nm)
                row.update(eer=e.eer, threshold=e.threshold, eer_low=e.low, eer_high=e.high, eer_crossing=e.crossing)
                dets[(attr, g)] = det_curve(m, nm)
            else:
                row.update(eer=np.nan, threshold=np.nan, eer_low=np.nan, eer_high=np.nan, eer_crossing=np.nan)
            rows.append(row)
    return pd.DataFrame(rows), dets


def per_group_threshold_analysis(comp: pd.DataFrame, attributes: list[str], target_fmrs: list[float]) -> pd.DataFrame:
    """Mitigation analysis: every group at its own threshold for each target FMR.

    NOT an operating-point measurement: a system can only apply per-group thresholds
    if it knows each person's group at decision time, which may be unlawful or
    unacceptable (metrics-reference §7). It shows what equalising FMR across groups
    would cost in FNMR, beside the global threshold's numbers.

    For each attribute, group and target ``f``: the threshold set by the §0 rule on the
    group's own non-mated comparisons (both subjects in the group), its achieved FMR
    and the group's FNMR there. Targets the group's non-mated count cannot resolve are
    reported as refused.

    Parameters
    ----------
    comp : pandas.DataFrame
        Comparison table.
    attributes : list of str
    target_fmrs : list of float

    Returns
    -------
    pandas.DataFrame
        Columns ``analysis`` (always ``"mitigation: per-group thresholds"``),
        ``attribute, group, target_fmr, status, threshold, achieved_fmr, k, n_nonmated,
        support, false_non_matches, n_mated, fnmr``.
    """
    rows = []
    mated = comp["mated"].to_numpy()
    score = comp["score"].to_numpy()
    for attr in attributes:
        la = comp[f"{attr}_a"].astype(str).to_numpy()
        lb = comp[f"{attr}_b"].astype(str).to_numpy()
        for g in sorted(set(la.tolist()) | set(lb.tolist())):
            sel = (la == g) & (lb == g)
            m, nm = score[sel & mated], score[sel & ~mated]
            for f in target_fmrs:
                row = {"analysis": "mitigation: per-group thresholds", "attribute": attr, "group": g, "target_fmr": float(f),
                       "n_nonmated": int(nm.size), "n_mated": int(m.size)}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # support is recorded in the row
                        t = threshold_at_fmr(nm, float(f)) if nm.size else None
                except InsufficientDataError as err:
                    t, row["reason"] = None, str(err)
                if t is None:
                    row.update(status="refused", threshold=np.nan, achieved_fmr=np.nan, k=np.nan, support="",
                               false_non_matches=np.nan, fnmr=np.nan)
                    row.setdefault("reason", "no non-mated comparisons in the group")
                else:
                    fnm = int(np.count_nonzero(m < t.threshold))
                    row.update(status="ok", threshold=t.threshold, achieved_fmr=t.achieved_fmr, k=t.k, support=t.support,
                               false_non_matches=fnm, fnmr=fnm / m.size if m.size else np.nan, reason="")
                rows.append(row)
    return pd.DataFrame(rows)


class TableStore:
    """Score store keeping every comparison score (see the module docstring).

    Parameters
    ----------
    comparisons : pandas.DataFrame
        The comparison-score table (:func:`bench.protocol.pairs.comparison_table`).
    attributes : list of str
        Reported attributes (columns ``<attr>_a`` / ``<attr>_b`` of the table).
    """

    engine = "table"

    def __init__(self, comparisons: pd.DataFrame, attributes: list[str]) -> None:
        self.comparisons = comparisons
        self.attributes = list(attributes)
        mated = comparisons["mated"].to_numpy()
        self.n_mated = int(mated.sum())
        self.n_nonmated = int((~mated).sum())

    # -- thresholds
    def calibration(self, calibration_group: dict | None) -> tuple[Callable[[float], ThresholdAtFMR], str]:
        """See :meth:`bench.scores.store.ScoreStore.calibration`."""
        comp = self.comparisons
        nonmated = ~comp["mated"].to_numpy()
        if calibration_group is None:
            scores, population = comp["score"].to_numpy()[nonmated], "all non-mated comparisons"
        else:
            attr, group = calibration_group["attribute"], str(calibration_group["group"])
            if f"{attr}_a" not in comp.columns:
                raise ConfigError(f"protocol.calibration_group: attribute {attr!r} is not reported; add it to protocol.attributes")
            sel = nonmated & (comp[f"{attr}_a"].astype(str) == group).to_numpy() & (comp[f"{attr}_b"].astype(str) == group).to_numpy()
            if not sel.any():
                groups = sorted(set(comp[f"{attr}_a"].astype(str)))
                raise ConfigError(f"protocol.calibration_group: no non-mated comparisons in {attr}={group!r}; groups: {groups}")
            scores, population = comp["score"].to_numpy()[sel], f"non-mated comparisons with both subjects in {attr}={group}"
        return (lambda f: threshold_at_fmr(scores, f)), population

    def settle_thresholds(self, thresholds: list[dict], bootstrap: bool) -> None:
        """See :meth:`bench.scores.store.ScoreStore.settle_thresholds` (nothing to add: every threshold is exact)."""

    # -- rates
    def group_rates(self, attribute: str, thresholds: dict[str, float], confidence: float) -> pd.DataFrame:
        """See :meth:`bench.scores.store.ScoreStore.group_rates`."""
        return per_group_rates(self.comparisons, attribute=attribute, thresholds=thresholds, confidence=confidence)

    def cross_group(self, attribute: str, name: str, threshold: float) -> pd.DataFrame:
        """See :meth:`bench.scores.store.ScoreStore.cross_group`."""
        return cross_group_fmr(self.comparisons, attribute=attribute, threshold=threshold)

    def eer_det(self) -> tuple[pd.DataFrame, dict]:
        """See :meth:`bench.scores.store.ScoreStore.eer_det`."""
        return eer_table(self.comparisons, self.attributes)

    # -- bootstrap
    def bootstrap_overall(self, thresholds: dict[str, float], recalibrate: dict[str, float], n_replicates: int, seed: int,
                          confidence: float) -> pd.DataFrame | None:
        """See :meth:`bench.scores.store.ScoreStore.bootstrap_overall`."""
        return bootstrap_overall_rates(self.comparisons, thresholds=thresholds, n_replicates=n_replicates, seed=seed,
                                       confidence=confidence, recalibrate=recalibrate or None)

    def bootstrap(self, attribute: str, thresholds: dict[str, float], recalibrate: dict[str, float], n_replicates: int,
                  seed: int) -> BootstrapReplicates | None:
        """See :meth:`bench.scores.store.ScoreStore.bootstrap`."""
        return bootstrap_replicates(self.comparisons, attribute=attribute, thresholds=thresholds, n_replicates=n_replicates,
                                    seed=seed, recalibrate=recalibrate or None)

    # -- the rest
    def mitigation(self, target_fmrs: list[float]) -> pd.DataFrame:
        """See :func:`per_group_threshold_analysis`."""
        return per_group_threshold_analysis(self.comparisons, self.attributes, target_fmrs)

    def engine_info(self, choice: dict) -> dict:
        """See :meth:`bench.scores.store.ScoreStore.engine_info` (the table adds nothing)."""
        return choice

    @property
    def result_fields(self) -> dict[str, Any]:
        """``RunResult`` fields this store fills: ``comparisons`` (the table), ``stream`` None."""
        return {"comparisons": self.comparisons, "stream": None}
