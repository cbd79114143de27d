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
from scipy import sparse

from bench.errors import ConfigError, DataError, InsufficientDataError
from bench.metrics.groups import ALL_GROUP, _check_thresholds, validate_comparisons
from bench.metrics.rates import _allowed_false_matches, _check_target, _supports

__all__ = [
    "MIXED_STRATUM",
    "BootstrapReplicates",
    "bootstrap_replicates",
    "bootstrap_group_rates",
    "bootstrap_differentials",
    "bootstrap_overall_rates",
    "with_overall_rows",
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

# Elements per chunk of (replicates x rows) work matrices (~16 MB of float64).
_CHUNK_ELEMENTS = 2_000_000


# ----------------------------------------------------------------------------- design
@dataclass
class _Design:
    attribute: str | None
    subjects: np.ndarray  # (S,) subject ids (str, object array), sorted
    strata: list[np.ndarray]  # subject indices per stratum
    groups: list[str]  # K-1 sorted labels; column 0 of every K-array is ALL_GROUP
    m_subject: np.ndarray  # (Nm,) subject index of each mated row
    m_col: np.ndarray  # (Nm,) group column (1..K-1) or 0 if the row is in no group
    m_score: np.ndarray  # (Nm,)
    pair_i: np.ndarray  # (P,) subject indices, pair_i < pair_j, pairs sorted by (i, j)
    pair_j: np.ndarray  # (P,)
    nm_pair: np.ndarray  # (Nn,) pair index of each non-mated row
    nm_col: np.ndarray  # (Nn,) group column or 0 (off-diagonal)
    nm_score: np.ndarray  # (Nn,)

    @property
    def n_cols(self) -> int:
        return len(self.groups) + 1


def _str_codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Factorize ``column.astype(str)``: codes (n,) and the strings they index (u,).

    Categorical columns are converted through their categories only (not row by row);
    their unused categories are kept here (dropped by :func:`_joint_codes`).
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        return codes, pd.Series(column.cat.categories).astype(str).to_numpy(dtype=object)
    codes, values = pd.factorize(column.astype(str).to_numpy(dtype=object))
    return codes, np.asarray(values, dtype=object)


def _joint_codes(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct strings of two columns (as ``astype(str)``, values that occur only)
    and each row's index in them (int64)."""
    ca, va = _str_codes(a)
    cb, vb = _str_codes(b)
    used_a = np.bincount(ca, minlength=va.size) > 0
    used_b = np.bincount(cb, minlength=vb.size) > 0
    values = np.unique(np.concatenate([va[used_a], vb[used_b]]))
    # code -> position in values, one gather per row (unused codes never looked up)
    return values, np.searchsorted(values, va).astype(np.int64)[ca], np.searchsorted(values, vb).astype(np.int64)[cb]


def _pair_index(key: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(key, return_inverse=True)`` for keys in ``[0, n_keys)``, by table lookup if small."""
    if n_keys > max(1 << 24, 4 * key.size):
        ukey, inverse = np.unique(key, return_inverse=True)
        return ukey, inverse.reshape(-1)
    present = np.zeros(n_keys, dtype=bool)
    present[key] = True
    ukey = np.flatnonzero(present)
    lookup = np.empty(n_keys, dtype=np.int32 if ukey.size < 2**31 else np.int64)
    lookup[ukey] = np.arange(ukey.size)
    return ukey, lookup[key]


def _design(comparisons: pd.DataFrame, attribute: str | None) -> _Design:
    """Subject and pair indices of ``comparisons``; ``attribute=None``: no groups, one stratum.

    Strata are (label, contributes-to-FNMR): a subject's label for ``attribute`` (or
    :data:`MIXED_STRATUM`), split into the subjects with at least one mated comparison
    and those without (one acquired image: a one-image subject, or one whose other
    images failed to acquire). Each part keeps its size in every replicate, so a group
    whose original table has mated comparisons has them in every replicate too (no
    undefined FNMR replicate from drawing only one-image subjects, docs/protocol.md §5.2).
    """
    validate_comparisons(comparisons, attribute)
    for side in ("subject_a", "subject_b"):
        missing = comparisons[side].isna().to_numpy()
        if missing.any():
            raise DataError(
                f"comparisons[{side!r}]: {int(missing.sum())} missing subject id(s); first at row "
                f"{int(np.flatnonzero(missing)[0])}; expected a subject id in every row"
            )
    mated = comparisons["mated"].to_numpy(dtype=bool)
    score = comparisons["score"].to_numpy(dtype=np.float64)
    subjects, ia, ib = _joint_codes(comparisons["subject_a"], comparisons["subject_b"])
    if attribute is None:
        labels = np.array([""], dtype=object)
        la = lb = np.zeros(ia.size, dtype=np.int64)
    else:
        labels, la, lb = _joint_codes(comparisons[f"{attribute}_a"], comparisons[f"{attribute}_b"])

    bad = mated & (ia != ib)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"comparisons: mated row {i} has different subjects {subjects[ia[i]]!r} and {subjects[ib[i]]!r}"
        )
    bad = ~mated & (ia == ib)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"comparisons: non-mated row {i} compares subject {subjects[ia[i]]!r} with itself")

    S, L = subjects.size, labels.size
    if attribute is None:
        groups: list[str] = []
        col = np.zeros(ia.size, dtype=np.int64)
    else:
        groups = [str(g) for g in labels]  # sorted, as sorted(set(...)) of the label strings
        col = np.where(la == lb, la + 1, 0)

    # strata: each subject's label, or MIXED_STRATUM if it has several
    n_keys = S * max(L, 1)
    if n_keys <= max(1 << 24, 2 * ia.size):
        hit = np.zeros(n_keys, dtype=bool)
        hit[ia * max(L, 1) + la] = True
        hit[ib * max(L, 1) + lb] = True
        seen = np.flatnonzero(hit)
    else:
        seen = np.unique(np.concatenate([ia * max(L, 1) + la, ib * max(L, 1) + lb]))
    s_of, l_of = seen // max(L, 1), seen % max(L, 1)
    n_labels = np.bincount(s_of, minlength=S)
    only = np.empty(S, dtype=object)
    only[s_of] = labels[l_of]  # the label, for subjects with exactly one
    stratum = np.where(n_labels > 1, MIXED_STRATUM, only)
    has_mated = np.zeros(S, dtype=bool)
    has_mated[ia[mated]] = True
    _, stratum_code = np.unique(stratum.astype(str), return_inverse=True)  # sorted labels
    key = stratum_code.reshape(-1) * 2 + has_mated  # one-image part before the mated part
    strata = [np.flatnonzero(key == k) for k in np.unique(key)]

    nm = ~mated
    pi = np.minimum(ia[nm], ib[nm])
    pj = np.maximum(ia[nm], ib[nm])
    ukey, nm_pair = _pair_index(pi * S + pj, S * S)
    return _Design(
        attribute=attribute,
        subjects=subjects,
        strata=strata,
        groups=groups,
        m_subject=ia[mated].astype(np.int64),
        m_col=col[mated],
        m_score=score[mated],
        pair_i=(ukey // S).astype(np.int64) if S else ukey,
        pair_j=(ukey % S).astype(np.int64) if S else ukey,
        nm_pair=nm_pair,
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


def _aggregate(
    keys: np.ndarray, n_keys: int, cols: np.ndarray, n_cols: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Sum ``weights`` (default 1) per (key, group column) -> dense (n_keys x n_cols); column 0 = ALL."""
    flat = keys.astype(np.int64) * n_cols + cols
    out = np.bincount(flat, weights=weights, minlength=n_keys * n_cols).astype(np.float64)
    out = out.reshape(n_keys, n_cols)
    out[:, 0] = out.sum(axis=1)  # rows outside every group sit in column 0 already
    return out


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


def _check_run_args(n_replicates: int, confidence: float | None) -> None:
    if not isinstance(n_replicates, (int, np.integer)) or isinstance(n_replicates, bool) or n_replicates < 1:
        raise ConfigError(f"n_replicates: expected a positive integer, got {n_replicates!r}")
    if confidence is not None and not (0.0 < float(confidence) < 1.0):
        raise ConfigError(f"confidence: expected a value in the open interval (0, 1), got {confidence!r}")


def _pair_quadratic_forms(design: _Design, pair_values: np.ndarray) -> sparse.csr_matrix:
    """Sparse (S*Q x S) matrix ``U`` with ``U[j*Q + q, i] = pair_values[p, q]`` for pair ``p = (i, j)``.

    For draw counts ``c`` (S,), ``sum_j c_j (U @ c)[j*Q + q] = sum_p c_i c_j pair_values[p, q]``:
    the replicate-weighted sum over subject pairs, without a (replicates x pairs) matrix.
    """
    S = design.subjects.size
    Q = pair_values.shape[1]
    p, q = np.nonzero(pair_values)
    return sparse.csr_matrix(
        (pair_values[p, q], (design.pair_j[p] * Q + q, design.pair_i[p])), shape=(S * Q, S)
    )


def _weighted_pair_sums(u: sparse.csr_matrix, c: np.ndarray, n_values: int) -> np.ndarray:
    """(b x Q) sums ``sum_p c_i c_j pair_values[p, q]`` for draw counts ``c`` (b x S); see above."""
    ct = np.ascontiguousarray(c.T)  # (S, b)
    g = (u @ ct).reshape(c.shape[1], n_values, c.shape[0])  # (S, Q, b)
    return np.einsum("jb,jqb->bq", ct, g)


def _top_rows(scores: np.ndarray, m: int) -> np.ndarray:
    """Indices of the ``>= m`` highest scores, whole tie blocks, in descending stable order.

    Equal to the first rows of ``np.argsort(-scores, kind="stable")`` (the full order when
    ``m >= scores.size``), found by partition in ``O(N + m log m)``.
    """
    n = scores.size
    if m >= n:
        return np.argsort(-scores, kind="stable")
    cut = np.partition(scores, n - m)[n - m]  # m-th largest score
    sel = np.flatnonzero(scores >= cut)
    return sel[np.argsort(-scores[sel], kind="stable")]


def _threshold_rule(
    w_rows: np.ndarray, s_desc: np.ndarray, k: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """§0 rule on weighted descending-sorted scores, per replicate (row of ``w_rows``).

    Parameters: row weights (b x n) in the order of ``s_desc`` (n,), allowed false
    matches ``k`` (b,). The threshold is the smallest *present* score (tie block of
    positive weight) whose weight at or above it is ``<= k``; ``nextafter`` of the top
    present score if there is none. Returns the thresholds (b,), the weight of all n
    rows (b,), the number of rows with score ``>= threshold`` (b,) and the cumulative
    row weights (b x n). The result is the threshold of the full score list whenever
    the rows are a whole-tie-block prefix of it and their weight exceeds ``k`` (the cut
    then lies inside the prefix).
    """
    b, n = w_rows.shape
    if n == 0:
        return np.full(b, np.inf), np.zeros(b), np.zeros(b, dtype=np.int64), np.zeros((b, 0))
    cum_rows = np.cumsum(w_rows, axis=1)
    ends = np.flatnonzero(np.r_[s_desc[1:] != s_desc[:-1], True])  # last row of each tie block
    cum = cum_rows if ends.size == n else cum_rows[:, ends]  # weight of scores >= values[m]
    values = s_desc[ends]  # distinct scores, descending
    thr = np.empty(b)
    for r in range(b):
        row = cum[r]
        n_le = int(np.searchsorted(row, k[r], side="right"))  # blocks with weight-above <= k
        reached = row[n_le - 1] if n_le else 0.0
        if reached > 0:  # last present block among them: first block reaching that weight
            thr[r] = values[int(np.searchsorted(row, reached, side="left"))]
        else:  # no present block fits: just above the top present score
            first = int(np.searchsorted(row, 0.0, side="right"))
            thr[r] = np.nextafter(values[first if first < values.size else 0], np.inf)
    n_at_or_above = np.searchsorted(-s_desc, -thr, side="right")
    return thr, cum[:, -1], n_at_or_above, cum_rows


def _recalibrated_thresholds_full(
    design: _Design, counts: np.ndarray, k: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reference (tests): the dense computation used before the prefix method.

    ``O(b x N_nonmated)`` per call: all rows weighted, summed per distinct score,
    cumulated. Returns the thresholds (b,) and the replicate-weighted false matches at
    them (b x K).
    """
    order = np.argsort(-design.nm_score, kind="stable")
    s_desc = design.nm_score[order]
    c = counts.astype(np.float64)
    w_rows = c[:, design.pair_i[design.nm_pair[order]]] * c[:, design.pair_j[design.nm_pair[order]]]
    starts = np.flatnonzero(np.r_[True, s_desc[1:] != s_desc[:-1]])
    values = s_desc[starts]
    block = np.add.reduceat(w_rows, starts, axis=1)
    cum = np.cumsum(block, axis=1)
    present = block > 0
    ok = present & (cum <= k[:, None])
    idx = np.where(ok, np.arange(values.size)[None, :], -1).max(axis=1)
    top = values[np.argmax(present, axis=1)]
    thr = np.where(idx >= 0, values[np.maximum(idx, 0)], np.nextafter(top, np.inf))
    p = np.searchsorted(-s_desc, -thr, side="right")
    mask = np.arange(s_desc.size)[None, :] < p[:, None]
    return thr, _dense_matmul(w_rows * mask, _onehot(design.nm_col[order], design.n_cols))


def _thresholds_on_rows(
    design: _Design, counts: np.ndarray, k: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """§0 rule on the non-mated ``rows`` (a descending whole-tie-block prefix), per replicate.

    Returns thresholds (b,), false matches (b x K) and ``resolved`` (b,): True where the
    result equals the full computation (prefix weight > k, or the prefix is every row).
    """
    c = counts.astype(np.float64)
    pair = design.nm_pair[rows]
    w_rows = c[:, design.pair_i[pair]] * c[:, design.pair_j[pair]]
    thr, weight, p, cum_rows = _threshold_rule(w_rows, design.nm_score[rows], k)
    resolved = (weight > k) | (rows.size == design.nm_score.size)
    # false matches: the first p rows (score >= threshold), per group column
    fm = np.zeros((c.shape[0], design.n_cols))
    has = p > 0
    fm[has, 0] = cum_rows[has, p[has] - 1]
    p_max = int(p.max()) if p.size else 0
    if p_max and design.n_cols > 1:
        sub = w_rows[:, :p_max] * (np.arange(p_max)[None, :] < p[:, None])
        cols = design.nm_col[rows[:p_max]]
        for g in range(1, design.n_cols):
            fm[:, g] = sub[:, cols == g].sum(axis=1)
    return thr, fm, resolved


def _recalibrated_thresholds(
    design: _Design, counts: np.ndarray, total_weight: np.ndarray, target: float, prefix_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """§0 rule on each replicate's weighted pooled non-mated scores, by top-prefix search.

    Parameters
    ----------
    design : _Design
    counts : ndarray (B, S) of int
        Subject draw counts.
    total_weight : ndarray (B,)
        Replicate non-mated weight ``W = sum_p c_i c_j n_p`` (exact integers as float).
    target : float
        Target FMR ``f``.
    prefix_rows : int, optional
        First prefix length (testing); default ``max(4096, 2 f N_nonmated)``.

    Returns
    -------
    thresholds : ndarray (B,)
    false_matches : ndarray (B, K)
        Replicate-weighted non-mated rows with score >= threshold, per group column.

    Notes
    -----
    Only the top of the descending order matters: with ``k = floor(f W)`` allowed false
    matches, the cut lies inside the first ``M`` rows (whole tie blocks) whenever their
    replicate weight exceeds ``k``, and the false matches at a threshold inside the
    prefix are prefix rows. Each replicate is first tried on a prefix of ``M`` rows; the
    few where the prefix is too light are retried on a 4x longer one, up to all rows.
    Same integers as the full computation (:func:`_recalibrated_thresholds_full`).
    """
    B = counts.shape[0]
    n = design.nm_score.size
    thr = np.empty(B)
    fm = np.zeros((B, design.n_cols))
    k = np.array(
        [_allowed_false_matches(target, int(round(t))) if t > 0 else 0 for t in total_weight], dtype=np.float64
    )
    # nothing drawn: every row has weight 0, threshold above the top score, no false match
    empty = total_weight <= 0
    thr[empty] = np.nextafter(design.nm_score.max(), np.inf) if n else np.inf
    pending = np.flatnonzero(~empty)
    m = max(1, prefix_rows) if prefix_rows is not None else max(4096, int(math.ceil(2 * target * n)))
    while pending.size:
        rows = _top_rows(design.nm_score, m)
        chunk = max(1, _CHUNK_ELEMENTS // max(rows.size, 1))
        unresolved = []
        for lo in range(0, pending.size, chunk):
            idx = pending[lo:lo + chunk]
            t, f, ok = _thresholds_on_rows(design, counts[idx], k[idx], rows)
            thr[idx[ok]] = t[ok]
            fm[idx[ok]] = f[ok]
            unresolved.append(idx[~ok])
        pending = np.concatenate(unresolved)
        m = min(n, 4 * max(m, 1))
    return thr, fm


def _false_non_matches_at(design: _Design, counts: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """(B x K) replicate-weighted mated rows with score < thr[b], per group column.

    Rows below every replicate threshold are aggregated per subject once; only the band
    between the lowest and highest threshold is evaluated per replicate.
    """
    B, K = counts.shape[0], design.n_cols
    S = design.subjects.size
    if design.m_score.size == 0 or B == 0:
        return np.zeros((B, K))
    order = np.argsort(design.m_score, kind="stable")
    asc = design.m_score[order]
    q_lo = int(np.searchsorted(asc, thr.min(), side="left"))
    q_hi = int(np.searchsorted(asc, thr.max(), side="left"))
    always = order[:q_lo]  # score < every threshold
    out = counts.astype(np.float64) @ _aggregate(design.m_subject[always], S, design.m_col[always], K)
    band = order[q_lo:q_hi]
    if band.size:
        onehot = _onehot(design.m_col[band], K)
        b_subj, b_score = design.m_subject[band], design.m_score[band]
        chunk = max(1, _CHUNK_ELEMENTS // band.size)
        for lo in range(0, B, chunk):
            hi = min(B, lo + chunk)
            cm = counts[lo:hi][:, b_subj].astype(np.float64) * (b_score[None, :] < thr[lo:hi, None])
            out[lo:hi] += _dense_matmul(cm, onehot)
    return out


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
