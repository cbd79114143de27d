"""Subject-level bootstrap of per-group FMR/FNMR and of differential summaries (§5.2–5.4).

Comparisons that share a subject are correlated, so binomial intervals on comparison
counts are too narrow (metrics-reference §5.1). This module resamples **subjects**:

* **Replicate.** Subjects are drawn with replacement *within strata* (a subject's stratum
  is its label for the attribute; a subject with several labels, e.g. an image-level
  attribute, forms the stratum ``"(mixed)"``), so each stratum keeps its size (§5.2,
  "stratify by group"). The draw gives a count ``c_i`` per subject. One draw serves
  every group, both metrics, the ``"(all)"`` pseudo-group and threshold re-calibration,
  so the rates of one replicate are mutually consistent.
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
``O(S + P)`` (``S`` subjects, ``P`` compared subject pairs): the aggregates are
resampled, the comparisons are never revisited. With re-calibration a replicate also
needs the weighted order statistic of the pooled non-mated scores: the scores are sorted
**once**; per replicate the pair weights ``c_i c_j`` are gathered onto the sorted rows,
summed per distinct score and cumulated, i.e. ``O(N_nonmated)`` time per replicate
(about 1000 x 1e5 = 1e8 simple operations for the table sizes fvbench handles, a few
seconds) and ``O(chunk x N_nonmated)`` memory, processed in chunks of replicates.

Intervals are percentile intervals over the replicates (order statistics: the lower
bound uses the ``(1-confidence)/2`` quantile rounded down, the upper bound the
``(1+confidence)/2`` quantile rounded up, i.e. slightly conservative). Replicates in
which a rate is undefined (no comparisons drawn) are dropped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from bench.errors import ConfigError, DataError, InsufficientDataError
from bench.metrics.groups import ALL_GROUP, _check_thresholds, _labels, validate_comparisons
from bench.metrics.rates import _allowed_false_matches, _check_target, _supports

__all__ = [
    "MIXED_STRATUM",
    "BootstrapReplicates",
    "bootstrap_replicates",
    "bootstrap_group_rates",
    "bootstrap_differentials",
    "BOOT_GROUP_COLUMNS",
    "BOOT_DIFFERENTIAL_COLUMNS",
]

#: Stratum of subjects whose label differs between their images.
MIXED_STRATUM = "(mixed)"

BOOT_GROUP_COLUMNS = [
    "attribute",
    "group",
    "threshold_name",
    "metric",
    "boot_low",
    "boot_high",
    "n_replicates",
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

# Elements per chunk of (replicates x rows) work matrices (~40 MB of float64).
_CHUNK_ELEMENTS = 5_000_000


# ----------------------------------------------------------------------------- design
@dataclass
class _Design:
    attribute: str
    subjects: np.ndarray  # (S,) subject ids (str)
    strata: list[np.ndarray]  # subject indices per stratum
    groups: list[str]  # K-1 sorted labels; column 0 of every K-array is ALL_GROUP
    m_subject: np.ndarray  # (Nm,) subject index of each mated row
    m_col: np.ndarray  # (Nm,) group column (1..K-1) or 0 if the row is in no group
    m_score: np.ndarray  # (Nm,)
    pair_i: np.ndarray  # (P,) subject indices, pair_i < pair_j
    pair_j: np.ndarray  # (P,)
    nm_pair: np.ndarray  # (Nn,) pair index of each non-mated row
    nm_col: np.ndarray  # (Nn,) group column or 0 (off-diagonal)
    nm_score: np.ndarray  # (Nn,)

    @property
    def n_cols(self) -> int:
        return len(self.groups) + 1


def _design(comparisons: pd.DataFrame, attribute: str) -> _Design:
    validate_comparisons(comparisons, attribute)
    la, lb = _labels(comparisons, attribute)
    mated = comparisons["mated"].to_numpy(dtype=bool)
    score = comparisons["score"].to_numpy(dtype=np.float64)
    sa = comparisons["subject_a"].astype(str).to_numpy()
    sb = comparisons["subject_b"].astype(str).to_numpy()

    bad = mated & (sa != sb)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"comparisons: mated row {i} has different subjects {sa[i]!r} and {sb[i]!r}")
    bad = ~mated & (sa == sb)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"comparisons: non-mated row {i} compares subject {sa[i]!r} with itself")

    subjects, inv = np.unique(np.concatenate([sa, sb]), return_inverse=True)
    n = len(sa)
    ia, ib = inv[:n], inv[n:]

    groups = sorted(set(la.tolist()) | set(lb.tolist()))
    col_of = {g: k + 1 for k, g in enumerate(groups)}
    same = la == lb
    col = np.zeros(n, dtype=np.int64)
    if n:
        col[same] = np.fromiter((col_of[g] for g in la[same]), dtype=np.int64, count=int(same.sum()))

    # strata: each subject's label, or MIXED_STRATUM if it has several
    lab = pd.DataFrame({"s": np.concatenate([ia, ib]), "l": np.concatenate([la, lb])}).drop_duplicates()
    n_labels = lab.groupby("s")["l"].nunique()
    first = lab.groupby("s")["l"].first()
    stratum = np.where(n_labels.reindex(range(len(subjects))).to_numpy() > 1, MIXED_STRATUM,
                       first.reindex(range(len(subjects))).to_numpy())
    strata = [np.flatnonzero(stratum == s) for s in sorted(set(stratum.tolist()))]

    nm = ~mated
    pi = np.minimum(ia[nm], ib[nm])
    pj = np.maximum(ia[nm], ib[nm])
    key = pi.astype(np.int64) * len(subjects) + pj
    ukey, nm_pair = np.unique(key, return_inverse=True)
    return _Design(
        attribute=attribute,
        subjects=subjects,
        strata=strata,
        groups=groups,
        m_subject=ia[mated],
        m_col=col[mated],
        m_score=score[mated],
        pair_i=(ukey // len(subjects)).astype(np.int64) if len(subjects) else ukey,
        pair_j=(ukey % len(subjects)).astype(np.int64) if len(subjects) else ukey,
        nm_pair=nm_pair.reshape(-1),
        nm_col=col[nm],
        nm_score=score[nm],
    )


def _onehot(cols: np.ndarray, n_cols: int, weights: np.ndarray | None = None) -> sparse.csr_matrix:
    """Sparse (rows x n_cols) matrix: every row in column 0 (ALL) and in its group column."""
    n = cols.size
    w = np.ones(n) if weights is None else weights.astype(np.float64)
    in_group = cols > 0
    r = np.concatenate([np.arange(n), np.flatnonzero(in_group)])
    c = np.concatenate([np.zeros(n, dtype=np.int64), cols[in_group]])
    v = np.concatenate([w, w[in_group]])
    return sparse.csr_matrix((v, (r, c)), shape=(n, n_cols))


def _aggregate(keys: np.ndarray, n_keys: int, cols: np.ndarray, n_cols: int, weights: np.ndarray) -> sparse.csr_matrix:
    """Sum ``weights`` per (key, group column) -> sparse (n_keys x n_cols); column 0 = ALL."""
    m = _onehot(cols, n_cols, weights)  # rows x cols
    agg = sparse.csr_matrix(
        (np.ones(keys.size), (keys, np.arange(keys.size))), shape=(n_keys, keys.size)
    )
    return (agg @ m).tocsr()


def _draw_counts(design: _Design, n_replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(B, S) subject draw counts, stratified (each stratum keeps its size)."""
    counts = np.zeros((n_replicates, design.subjects.size), dtype=np.int32)
    for members in design.strata:
        m = members.size
        idx = rng.integers(0, m, size=(n_replicates, m))
        flat = idx + (np.arange(n_replicates) * m)[:, None]
        counts[:, members] = np.bincount(flat.ravel(), minlength=n_replicates * m).reshape(n_replicates, m)
    return counts


def _dense_matmul(w: np.ndarray, s: sparse.spmatrix) -> np.ndarray:
    """Dense (b x n) times sparse (n x k) -> dense (b x k)."""
    return np.asarray((s.T @ w.T).T)


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

    attribute: str
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


def _check_run_args(n_replicates: int, confidence: float | None) -> None:
    if not isinstance(n_replicates, (int, np.integer)) or isinstance(n_replicates, bool) or n_replicates < 1:
        raise ConfigError(f"n_replicates: expected a positive integer, got {n_replicates!r}")
    if confidence is not None and not (0.0 < float(confidence) < 1.0):
        raise ConfigError(f"confidence: expected a value in the open interval (0, 1), got {confidence!r}")


def _recalibrated_thresholds(
    design: _Design, w_pairs: np.ndarray, target: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """§0 rule on each replicate's weighted pooled non-mated scores.

    Returns the thresholds (b,), the row weights in descending score order (b x Nn) and
    the descending-sorted scores.
    """
    order = np.argsort(-design.nm_score, kind="stable")
    s_desc = design.nm_score[order]
    w_rows = w_pairs[:, design.nm_pair[order]]  # (b, Nn)
    starts = np.flatnonzero(np.r_[True, s_desc[1:] != s_desc[:-1]])
    values = s_desc[starts]  # distinct scores, descending
    block = np.add.reduceat(w_rows, starts, axis=1) if s_desc.size else np.zeros((w_rows.shape[0], 0))
    cum = np.cumsum(block, axis=1)  # weight of scores >= values[m]
    total = cum[:, -1] if cum.shape[1] else np.zeros(w_rows.shape[0])
    b = w_rows.shape[0]
    k = np.array([_allowed_false_matches(target, int(round(t))) if t > 0 else 0 for t in total])
    present = block > 0
    ok = present & (cum <= k[:, None])
    idx = np.where(ok, np.arange(values.size)[None, :], -1).max(axis=1) if values.size else np.full(b, -1)
    first_present = np.argmax(present, axis=1) if values.size else np.zeros(b, dtype=np.int64)
    top = values[first_present] if values.size else np.full(b, np.inf)
    thr = np.where(idx >= 0, values[np.maximum(idx, 0)] if values.size else np.inf, np.nextafter(top, np.inf))
    return thr, w_rows, s_desc


def bootstrap_replicates(
    comparisons: pd.DataFrame,
    *,
    attribute: str,
    thresholds: Mapping[str, float],
    n_replicates: int = 1000,
    seed: int = 0,
    recalibrate: Mapping[str, float] | None = None,
) -> BootstrapReplicates:
    """Draw subject-level bootstrap replicates and their per-group error counts.

    Parameters
    ----------
    comparisons : pandas.DataFrame
        Comparison table (see :mod:`bench.metrics.groups`).
    attribute : str
        Attribute ``X`` (columns ``X_a``, ``X_b``); defines the groups and the strata.
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

    Returns
    -------
    BootstrapReplicates

    Raises
    ------
    DataError
        Table problems (see ``validate_comparisons``), a mated row with two subjects or
        a non-mated row with one.
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
                f"recalibrate[{name!r}]: N={design.nm_score.size} non-mated scores cannot resolve "
                f"target FMR {f:g} (1/target = {1.0 / f:.6g})"
            )
    rng = np.random.default_rng(seed)
    counts = _draw_counts(design, n_replicates, rng)
    K = design.n_cols
    S = design.subjects.size
    P = design.pair_i.size

    # aggregates: subjects (FNMR) and subject pairs (FMR)
    n_fnmr = _aggregate(design.m_subject, S, design.m_col, K, np.ones(design.m_score.size))
    n_fmr = _aggregate(design.nm_pair, P, design.nm_col, K, np.ones(design.nm_score.size))
    e_fnmr = {
        name: _aggregate(design.m_subject, S, design.m_col, K, (design.m_score < t).astype(float))
        for name, t in ths.items() if name not in recal
    }
    e_fmr = {
        name: _aggregate(design.nm_pair, P, design.nm_col, K, (design.nm_score >= t).astype(float))
        for name, t in ths.items() if name not in recal
    }
    # for re-calibration: per-row group indicators, mated rows sorted ascending
    m_order = np.argsort(design.m_score, kind="stable")
    m_asc = design.m_score[m_order]
    m_onehot = _onehot(design.m_col[m_order], K)
    nm_onehot_desc = _onehot(design.nm_col[np.argsort(-design.nm_score, kind="stable")], K)

    errors = {(n, m): np.zeros((n_replicates, K)) for n in ths for m in ("FMR", "FNMR")}
    comps = {(n, m): np.zeros((n_replicates, K)) for n in ths for m in ("FMR", "FNMR")}
    thr_out = {n: np.full(n_replicates, t, dtype=np.float64) for n, t in ths.items()}

    width = max(P, design.nm_score.size if recal else 0, 1)
    chunk = max(1, min(n_replicates, _CHUNK_ELEMENTS // width))
    for lo in range(0, n_replicates, chunk):
        hi = min(n_replicates, lo + chunk)
        c = counts[lo:hi].astype(np.float64)
        w_pairs = c[:, design.pair_i] * c[:, design.pair_j] if P else np.zeros((hi - lo, 0))
        den_fnmr = _dense_matmul(c, n_fnmr) if S else np.zeros((hi - lo, K))
        den_fmr = _dense_matmul(w_pairs, n_fmr) if P else np.zeros((hi - lo, K))
        for name in ths:
            comps[(name, "FNMR")][lo:hi] = den_fnmr
            comps[(name, "FMR")][lo:hi] = den_fmr
            if name not in recal:
                if S:
                    errors[(name, "FNMR")][lo:hi] = _dense_matmul(c, e_fnmr[name])
                if P:
                    errors[(name, "FMR")][lo:hi] = _dense_matmul(w_pairs, e_fmr[name])
                continue
            thr, w_rows, s_desc = _recalibrated_thresholds(design, w_pairs, recal[name])
            thr_out[name][lo:hi] = thr
            # FMR: rows with s >= thr are a prefix of the descending order
            p = np.searchsorted(-s_desc, -thr, side="right")
            mask = np.arange(s_desc.size)[None, :] < p[:, None]
            errors[(name, "FMR")][lo:hi] = _dense_matmul(w_rows * mask, nm_onehot_desc)
            # FNMR: rows with s < thr are a prefix of the ascending order
            q = np.searchsorted(m_asc, thr, side="left")
            cm = c[:, design.m_subject[m_order]]
            mask_m = np.arange(m_asc.size)[None, :] < q[:, None]
            errors[(name, "FNMR")][lo:hi] = _dense_matmul(cm * mask_m, m_onehot)
    return BootstrapReplicates(
        attribute=attribute,
        groups=[ALL_GROUP, *design.groups],
        threshold_names=list(ths),
        errors={k: np.rint(v) for k, v in errors.items()},
        comparisons={k: np.rint(v) for k, v in comps.items()},
        thresholds=thr_out,
        subject_ids=design.subjects,
        subject_counts=counts,
        seed=int(seed),
        original_comparisons={
            "FNMR": np.asarray(n_fnmr.sum(axis=0)).ravel() if S else np.zeros(K),
            "FMR": np.asarray(n_fmr.sum(axis=0)).ravel() if P else np.zeros(K),
        },
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
    comparisons: pd.DataFrame,
    *,
    attribute: str,
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
        the number of replicates in which the rate was defined; bounds are NaN if none.

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
                     "boot_low": lo, "boot_high": hi, "n_replicates": n}
                )
    out = pd.DataFrame.from_records(records, columns=BOOT_GROUP_COLUMNS)
    return out.astype({"n_replicates": "int64", "boot_low": "float64", "boot_high": "float64"})


# ----------------------------------------------------------------------------- differentials
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
