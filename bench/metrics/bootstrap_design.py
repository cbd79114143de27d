"""The subject bootstrap's design and its threshold re-calibration (docs/protocol.md §5.2-§5.4).

The design aggregates a comparison table once per subject (mated) and per compared
subject pair (non-mated), with strata and the subjects' mated/no-mated split; the
re-calibration re-applies the §0 order-statistic rule inside every replicate on the
weighted top rows of the non-mated scores (``_recalibrated_thresholds``; the dense
``_recalibrated_thresholds_full`` is the test reference). Used by
:func:`bench.metrics.bootstrap.bootstrap_replicates`; see that module for the method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from bench.errors import ConfigError, DataError
from bench.metrics.groups import validate_comparisons
from bench.metrics.rates import _allowed_false_matches

#: Stratum of subjects whose label differs between their images.
MIXED_STRATUM = "(mixed)"
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



def _check_run_args(n_replicates: int, confidence: float | None) -> None:
    if not isinstance(n_replicates, (int, np.integer)) or isinstance(n_replicates, bool) or n_replicates < 1:
        raise ConfigError(f"n_replicates: expected a positive integer, got {n_replicates!r}")
    if confidence is not None and not (0.0 < float(confidence) < 1.0):
        raise ConfigError(f"confidence: expected a value in the open interval (0, 1), got {confidence!r}")



# ----------------------------------------------------------------------------- re-calibration (§5.4)
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
