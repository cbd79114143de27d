"""Subject-level bootstrap of per-group FMR/FNMR and of differential summaries (§5.2–5.4).

Comparisons that share a subject are correlated, so binomial intervals on comparison
counts are too narrow (docs/protocol.md §5.1). This module resamples **subjects**:

* **Replicate.** Subjects are drawn with replacement *within strata* (a subject's stratum
  is its label for the attribute; a subject with several labels, e.g. an image-level
  attribute, forms the stratum ``"(mixed)"``), so each stratum keeps its size (§5.2,
  "stratify by group"). Each stratum is split into the subjects that have a mated
  comparison and those that have none (one acquired image: a one-image subject, or one
  whose other images failed to acquire), so FNMR is resampled over the subjects who
  contribute to it and is defined in every replicate of a group that has mated
  comparisons (docs/protocol.md §5.2). The draw gives a count ``c_i`` per subject. One
  draw serves every group, both metrics and threshold re-calibration, so the rates of
  one replicate are mutually consistent.
* **The ``"(all)"`` row** is bootstrapped once per run, without demographic strata
  (:func:`bootstrap_overall_rates`, attribute ``None``), and the same interval is
  written under every attribute (:func:`with_overall_rows`).
* **FNMR** (cluster bootstrap of Bolle, Ratha & Pankanti, §5.2): per group ``g`` and
  subject ``i`` the mated errors ``e_i`` and comparisons ``n_i`` are aggregated once;
  a replicate's rate is ``sum_i c_i e_i / sum_i c_i n_i``.
* **FMR** (two-subject bootstrap of Schuckers, §5.3): errors and comparisons are
  aggregated once per unordered subject pair ``(i, j)``, ``i != j`` (sparse: only pairs
  that were compared). A replicate weights pair ``(i, j)`` by ``c_i c_j``; copies of
  the same subject never pair with each other (self pairs are not impostor
  comparisons). Per-group FMR uses the diagonal (rows with both labels ``g``).
* **Threshold re-calibration** (§5.4): when a threshold was calibrated on the *same*
  data (all non-mated comparisons of the table, §0 rule), pass
  ``recalibrate={threshold_name: target_fmr}``; each replicate then re-applies the §0
  order-statistic rule to its own pooled, weighted non-mated scores, and reads the
  group rates at that replicate threshold. Thresholds calibrated externally (or on a
  named reference group) stay fixed -- do not list them.

Cost. Aggregation is one pass over the table. Without re-calibration a replicate costs
``O(S + P)`` (``S`` subjects, ``P`` compared subject pairs): the per-pair aggregates enter
as quadratic forms ``sum_{i<j} c_i c_j a_ij`` (one sparse product per chunk of
replicates), the comparisons are never revisited. With re-calibration a replicate also
needs the weighted order statistic of the pooled non-mated scores, and only the top of
the descending order matters: with ``k = floor(f W)`` allowed false matches (``W``, the
replicate's non-mated weight, is one of the quadratic forms) the cut lies inside the
top ``M`` rows whenever their replicate weight exceeds ``k``. Each replicate is resolved
on a top prefix of ``M = max(4096, 2 f N_nonmated)`` rows (found by partition, whole tie
blocks), the rare replicate where that prefix is too light on a 4x longer one, up to
all rows; the mated side is evaluated per replicate only between the lowest and highest
replicate threshold. About ``O(N)`` once plus ``O(B x M)``: ~1 s for 1000
replicates at 1.2e6 comparisons, ~3 s CPU at 1e7 (``scripts/bench_bootstrap.py``). The
counts are exact integers, identical to the dense computation over all rows
(``_recalibrated_thresholds_full``, kept as the test reference).

Split along its seams: the design and re-calibration in :mod:`bench.metrics.bootstrap_design`,
the intervals of the differential summaries in :mod:`bench.metrics.bootstrap_differentials`;
replicates and per-group intervals here.

Intervals are percentile intervals over the replicates (order statistics: the lower
bound uses the ``(1-confidence)/2`` quantile rounded down, the upper bound the
``(1+confidence)/2`` quantile rounded up, i.e. slightly conservative). Replicates in
which a rate is undefined (no comparison drawn, e.g. a two-subject group drawing one
subject twice has no non-mated pair) are dropped and counted (``n_undefined``); the
report states the count whenever it is not zero.
"""


from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.errors import ConfigError, InsufficientDataError
from bench.metrics.bootstrap_design import (
    _CHUNK_ELEMENTS, MIXED_STRATUM, _aggregate, _check_run_args, _design, _draw_counts, _false_non_matches_at, _pair_quadratic_forms,
    _recalibrated_thresholds, _weighted_pair_sums,
)
from bench.metrics.groups import ALL_GROUP, _check_thresholds
from bench.metrics.rates import _check_target, _supports


__all__ = [
    "MIXED_STRATUM",
    "BootstrapReplicates",
    "bootstrap_replicates",
    "bootstrap_group_rates",
    "bootstrap_overall_rates",
    "with_overall_rows",
    "BOOT_GROUP_COLUMNS",
    "BOOT_DIFFERENTIAL_COLUMNS",
]

BOOT_GROUP_COLUMNS = [
    "attribute",
    "group",
    "threshold_name",
    "metric",
    "boot_low",
    "boot_high",
    "n_replicates",
    "n_undefined",
]

BOOT_DIFFERENTIAL_COLUMNS = [
    "attribute",
    "threshold_name",
    "measure",
    "boot_low",
    "boot_high",
    "n_replicates",
    "n_undefined",
    "includes_parity",
]



# ----------------------------------------------------------------------------- replicates
@dataclass(frozen=True)
class BootstrapReplicates:
    """Per-replicate group rates of one subject-level bootstrap run.

    Attributes
    ----------
    attribute : str
        Demographic attribute.
    groups : list of str
        ``["(all)", g1, g2, ...]``: column order of the arrays (labels sorted, as in
        ``per_group_rates``).
    threshold_names : list of str
        Threshold names, in the order given.
    errors, comparisons : dict
        ``(threshold_name, metric) -> ndarray (B, K)`` of replicate error counts and
        comparison counts (weighted by the draw; integers stored as float64).
        ``comparisons`` does not depend on the threshold.
    thresholds : dict
        ``threshold_name -> ndarray (B,)`` of the threshold used in each replicate
        (constant unless re-calibrated).
    subject_ids : ndarray (S,)
        Subject identifiers (sorted), the column order of ``subject_counts``.
    subject_counts : ndarray (B, S) of int
        How often each subject was drawn in each replicate.
    seed : int
        Seed of ``numpy.random.default_rng`` used for the draws.
    original_comparisons : dict
        ``metric -> ndarray (K,)``: comparison counts of the original table per group.
    recalibrate : dict
        ``threshold_name -> target_fmr`` for re-calibrated thresholds.
    """

    attribute: str | None
    groups: list[str]
    threshold_names: list[str]
    errors: dict[tuple[str, str], np.ndarray]
    comparisons: dict[tuple[str, str], np.ndarray]
    thresholds: dict[str, np.ndarray]
    subject_ids: np.ndarray
    subject_counts: np.ndarray
    seed: int
    original_comparisons: dict[str, np.ndarray]
    recalibrate: dict[str, float] = field(default_factory=dict)

    @property
    def n_replicates(self) -> int:
        """Number of replicates ``B``."""
        return int(self.subject_counts.shape[0])

    def rates(self, threshold_name: str, metric: str) -> np.ndarray:
        """Replicate rates ``(B, K)``: errors / comparisons, NaN where nothing was drawn."""
        e = self.errors[(threshold_name, metric)]
        n = self.comparisons[(threshold_name, metric)]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, e / np.where(n > 0, n, 1.0), np.nan)



def bootstrap_replicates(
    comparisons: pd.DataFrame,
    *,
    attribute: str | None,
    thresholds: Mapping[str, float],
    n_replicates: int = 1000,
    seed: int = 0,
    recalibrate: Mapping[str, float] | None = None,
    _prefix_rows: int | None = None,
) -> BootstrapReplicates:
    """Draw subject-level bootstrap replicates and their per-group error counts.

    Parameters
    ----------
    comparisons : pandas.DataFrame
        Comparison table (see :mod:`bench.metrics.groups`).
    attribute : str or None
        Attribute ``X`` (columns ``X_a``, ``X_b``); defines the groups and the strata.
        None: no groups (only ``"(all)"``) and no demographic strata.
    thresholds : mapping of str to float
        Named thresholds (as for ``per_group_rates``).
    n_replicates : int, default 1000
        Number of replicates ``B`` (use >= 1000; 2000 for 95% percentile intervals, §5.2).
    seed : int, default 0
        Seed for ``numpy.random.default_rng``; equal seeds give identical replicates.
    recalibrate : mapping of str to float, optional
        ``{threshold_name: target_fmr}`` for thresholds calibrated on this table's
        non-mated comparisons; each replicate re-calibrates them (§5.4). Names must be
        in ``thresholds``.
    _prefix_rows : int, optional
        Private (tests): first prefix length of the re-calibration search.

    Returns
    -------
    BootstrapReplicates

    Raises
    ------
    DataError
        Table problems (see ``validate_comparisons``), a missing subject id, a mated row
        with two subjects or a non-mated row with one.
    ConfigError
        Bad thresholds, ``n_replicates``, or ``recalibrate`` entries.
    InsufficientDataError
        If a re-calibration target needs more non-mated scores than the table has.
    """
    _check_run_args(n_replicates, None)
    ths = _check_thresholds(thresholds)
    recal: dict[str, float] = {}
    for name, target in (recalibrate or {}).items():
        if name not in ths:
            raise ConfigError(f"recalibrate: {name!r} is not one of the thresholds {list(ths)}")
        recal[name] = _check_target(target, f"recalibrate[{name!r}]")
    design = _design(comparisons, attribute)
    for name, f in recal.items():
        if not _supports(design.nm_score.size, f, 1.0):
            raise InsufficientDataError(
                f"threshold {name!r}: N={design.nm_score.size} non-mated comparisons cannot resolve "
                f"target FMR {f:g} (1/target = {1.0 / f:.6g})"
            )
    rng = np.random.default_rng(seed)
    counts = _draw_counts(design, n_replicates, rng)
    K = design.n_cols
    S = design.subjects.size
    P = design.pair_i.size
    fixed = [name for name in ths if name not in recal]

    # aggregates: subjects (FNMR) and subject pairs (FMR), columns [comparisons, errors per fixed threshold]
    per_subject = np.hstack(
        [_aggregate(design.m_subject, S, design.m_col, K)]
        + [_aggregate(design.m_subject, S, design.m_col, K, (design.m_score < ths[n]).astype(float)) for n in fixed]
    )
    per_pair = np.hstack(
        [_aggregate(design.nm_pair, P, design.nm_col, K)]
        + [_aggregate(design.nm_pair, P, design.nm_col, K, (design.nm_score >= ths[n]).astype(float)) for n in fixed]
    )
    Q = per_pair.shape[1]
    u_pairs = _pair_quadratic_forms(design, per_pair)

    subj_sums = np.zeros((n_replicates, Q))
    pair_sums = np.zeros((n_replicates, Q))
    chunk = max(1, min(n_replicates, _CHUNK_ELEMENTS // max(S * Q, 1)))
    for lo in range(0, n_replicates, chunk):
        hi = min(n_replicates, lo + chunk)
        c = counts[lo:hi].astype(np.float64)
        subj_sums[lo:hi] = c @ per_subject
        if P:
            pair_sums[lo:hi] = _weighted_pair_sums(u_pairs, c, Q)

    errors: dict[tuple[str, str], np.ndarray] = {}
    comps: dict[tuple[str, str], np.ndarray] = {}
    thr_out = {n: np.full(n_replicates, t, dtype=np.float64) for n, t in ths.items()}
    for name in ths:
        comps[(name, "FMR")] = pair_sums[:, :K]
        comps[(name, "FNMR")] = subj_sums[:, :K]
        if name in fixed:
            j = (1 + fixed.index(name)) * K
            errors[(name, "FMR")] = pair_sums[:, j:j + K]
            errors[(name, "FNMR")] = subj_sums[:, j:j + K]
        else:
            thr, fm = _recalibrated_thresholds(design, counts, pair_sums[:, 0], recal[name], _prefix_rows)
            thr_out[name] = thr
            errors[(name, "FMR")] = fm
            errors[(name, "FNMR")] = _false_non_matches_at(design, counts, thr)
    key_order = [(n, m) for n in ths for m in ("FMR", "FNMR")]
    return BootstrapReplicates(
        attribute=attribute,
        groups=[ALL_GROUP, *design.groups],
        threshold_names=list(ths),
        errors={key: np.rint(errors[key]) for key in key_order},
        comparisons={key: np.rint(comps[key]) for key in key_order},
        thresholds=thr_out,
        subject_ids=design.subjects,
        subject_counts=counts,
        seed=int(seed),
        original_comparisons={"FNMR": per_subject[:, :K].sum(axis=0), "FMR": per_pair[:, :K].sum(axis=0)},
        recalibrate=recal,
    )



# ----------------------------------------------------------------------------- intervals
def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float, int]:
    """Conservative percentile interval over the non-NaN values (+inf allowed)."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return math.nan, math.nan, 0
    a = (1.0 - confidence) / 2.0
    lo = float(np.quantile(v, a, method="lower"))
    hi = float(np.quantile(v, 1.0 - a, method="higher"))
    return lo, hi, int(v.size)


def bootstrap_group_rates(
    comparisons: pd.DataFrame | None,
    *,
    attribute: str | None,
    thresholds: Mapping[str, float],
    n_replicates: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    recalibrate: Mapping[str, float] | None = None,
    replicates: BootstrapReplicates | None = None,
) -> pd.DataFrame:
    """Subject-level bootstrap percentile intervals of per-group FMR and FNMR (§5.2–5.4).

    Parameters
    ----------
    comparisons, attribute, thresholds, n_replicates, seed, recalibrate
        As :func:`bootstrap_replicates`.
    confidence : float in (0, 1), default 0.95
        Two-sided coverage of the percentile intervals.
    replicates : BootstrapReplicates, optional
        Reuse replicates already drawn (then the other sampling arguments are ignored,
        ``comparisons`` may be None).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`BOOT_GROUP_COLUMNS`, one row per (group, threshold_name, metric)
        in the row order of ``per_group_rates`` (``"(all)"`` first), so it merges onto
        that table on ``attribute, group, threshold_name, metric``. ``n_replicates`` is
        the number of replicates in which the rate was defined, ``n_undefined`` the
        number in which it was not (nothing drawn; dropped); bounds are NaN if none.

    Raises
    ------
    As :func:`bootstrap_replicates`; ConfigError for a bad ``confidence``.
    """
    _check_run_args(n_replicates, confidence)
    reps = replicates or bootstrap_replicates(
        comparisons, attribute=attribute, thresholds=thresholds, n_replicates=n_replicates,
        seed=seed, recalibrate=recalibrate,
    )
    records = []
    for k, g in enumerate(reps.groups):
        for name in reps.threshold_names:
            for metric in ("FMR", "FNMR"):
                lo, hi, n = _percentile_interval(reps.rates(name, metric)[:, k], confidence)
                records.append(
                    {"attribute": reps.attribute, "group": g, "threshold_name": name, "metric": metric,
                     "boot_low": lo, "boot_high": hi, "n_replicates": n, "n_undefined": reps.n_replicates - n}
                )
    out = pd.DataFrame.from_records(records, columns=BOOT_GROUP_COLUMNS)
    return out.astype({"n_replicates": "int64", "n_undefined": "int64", "boot_low": "float64", "boot_high": "float64"})


def bootstrap_overall_rates(
    comparisons: pd.DataFrame,
    *,
    thresholds: Mapping[str, float],
    n_replicates: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    recalibrate: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Subject-bootstrap interval of the ``"(all)"`` FMR and FNMR, computed once per run.

    Subjects are resampled without demographic strata (only the split into subjects
    with and without a mated comparison, :func:`_design`), so the interval of the whole
    population does not depend on which attribute a table is read under. Same seed,
    threshold re-calibration and percentile rule as :func:`bootstrap_group_rates`.

    Parameters
    ----------
    comparisons, thresholds, n_replicates, seed, confidence, recalibrate
        As :func:`bootstrap_group_rates`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`BOOT_GROUP_COLUMNS` without ``attribute`` (group ``"(all)"``),
        one row per (threshold_name, metric).

    Raises
    ------
    As :func:`bootstrap_group_rates`.
    """
    out = bootstrap_group_rates(
        comparisons, attribute=None, thresholds=thresholds, n_replicates=n_replicates, seed=seed,
        confidence=confidence, recalibrate=recalibrate,
    )
    return out.drop(columns=["attribute"])


def with_overall_rows(boot: pd.DataFrame, overall: pd.DataFrame | None) -> pd.DataFrame:
    """``boot`` (one attribute's :func:`bootstrap_group_rates`) with its ``"(all)"`` rows from ``overall``.

    Parameters
    ----------
    boot : pandas.DataFrame
        Columns :data:`BOOT_GROUP_COLUMNS`.
    overall : pandas.DataFrame or None
        :func:`bootstrap_overall_rates` of the same run; None returns ``boot`` unchanged.

    Returns
    -------
    pandas.DataFrame
        Same rows and columns; the interval columns of ``group == "(all)"`` replaced.
    """
    if overall is None:
        return boot
    out = boot.copy()
    cols = ["boot_low", "boot_high", "n_replicates", "n_undefined"]
    key = overall.set_index(["threshold_name", "metric"])[cols]
    sel = (out["group"] == ALL_GROUP).to_numpy()
    idx = pd.MultiIndex.from_frame(out.loc[sel, ["threshold_name", "metric"]])
    out.loc[sel, cols] = key.reindex(idx).to_numpy()
    return out.astype({"n_replicates": "int64", "n_undefined": "int64"})
