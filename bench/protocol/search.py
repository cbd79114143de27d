"""Streamed 1:N search: probes x gallery in blocks, keeping per probe its top-L candidates.

A 1:N search compares one probe with every enrolled template and returns a candidate list:
the ``L`` best-scoring gallery entries, ordered by score (higher = more alike, the
similarity convention of metrics-reference §0). Identification mode applies a threshold
``T`` to that list (a candidate is returned iff ``score >= T``); investigation mode reads
ranks without a threshold (NIST FRVT/FRTE 1:N, ISO/IEC 19795-1 terms; see
``docs/identification.md``).

:func:`search` computes the scores as blocked matrix products (``torch``, CPU or CUDA) and
never holds the probes x gallery matrix: per probe it keeps the top-``L`` list and, for
thresholds given in advance, the number of gallery entries of each gallery group scoring
``>= T`` over the *whole* gallery (not only the list). Memory is
``O(P * (L + K * H) + block_p * block_g + G * d)`` for ``P`` probes, ``G`` gallery entries,
``K`` thresholds and ``H`` gallery groups: independent of ``P * G``.

After the first gallery block of a probe block, a gallery entry can enter a probe's list
only if it scores at least the list's current ``L``-th score; candidates are picked with
one comparison per score and merged sparsely, so the cost per comparison is one
multiply-add per dimension plus one comparison (``scripts/bench_search.py`` measures it
against the bare matrix product).

Ordering within a list: score descending, ties broken by the smaller gallery index, so a
list never depends on the order of the probes or on the block sizes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from bench.errors import ConfigError, DataError

__all__ = ["SearchResult", "search", "search_scores", "METRICS"]

#: Supported comparison measures (as in :mod:`bench.protocol.streaming`).
METRICS = ("cosine", "euclidean")


@dataclass(frozen=True)
class SearchResult:
    """Outcome of searching ``P`` probes against a gallery of ``G`` templates.

    Attributes
    ----------
    candidates : ndarray of int64, shape (P, L)
        Gallery indices of each probe's candidate list, best first; ``L = min(top_l, G)``.
    scores : ndarray of float64, shape (P, L)
        Their comparison scores (non-increasing along each row).
    counts : ndarray of int64, shape (P, K, H)
        Gallery entries of gallery group ``h`` scoring ``>= thresholds[k]`` against
        probe ``p``, counted over the whole gallery (not truncated at ``L``).
    thresholds : ndarray of float64, shape (K,)
        The thresholds of ``counts``.
    n_comparisons : int
        ``P * G``.
    seconds : float
        Wall-clock time.
    device : str
        Torch device of the matrix products.
    """

    candidates: NDArray[np.int64]
    scores: NDArray[np.float64]
    counts: NDArray[np.int64]
    thresholds: NDArray[np.float64]
    n_comparisons: int
    seconds: float
    device: str


def _as_matrix(x: ArrayLike, name: str) -> NDArray:
    arr = np.asarray(x)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{name}: expected a numeric (n, d) array, got shape {arr.shape} dtype {arr.dtype}")
    if arr.size and not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise DataError(f"{name}: row {bad} holds NaN or inf")
    return arr


def _group_codes(gallery_groups: ArrayLike | None, g: int) -> tuple[NDArray[np.int64], int]:
    if gallery_groups is None:
        return np.zeros(g, dtype=np.int64), 1
    codes = np.asarray(gallery_groups)
    if codes.shape != (g,) or (g and not np.issubdtype(codes.dtype, np.integer)) or (g and codes.min() < 0):
        raise DataError(f"gallery_groups: expected ({g},) non-negative integer codes, got shape {codes.shape} dtype {codes.dtype}")
    return codes.astype(np.int64), int(codes.max()) + 1 if g else 1


def _merge(
    top_s: NDArray, top_i: NDArray, rows: NDArray[np.int64], cols: NDArray[np.int64], vals: NDArray
) -> None:
    """Merge sparse candidates ``(rows, cols, vals)`` into the lists ``top_s/top_i`` in place."""
    if rows.size == 0:
        return
    length = top_s.shape[1]
    touched = np.unique(rows)
    r_all = np.concatenate([np.repeat(touched, length), rows])
    s_all = np.concatenate([top_s[touched].ravel(), vals])
    i_all = np.concatenate([top_i[touched].ravel(), cols])
    order = np.lexsort((i_all, -s_all, r_all))  # row, then score desc, then gallery index asc
    r_all, s_all, i_all = r_all[order], s_all[order], i_all[order]
    start = np.searchsorted(r_all, touched, side="left")
    pos = np.arange(r_all.size) - np.repeat(start, np.diff(np.append(start, r_all.size)))
    keep = pos < length
    top_s[touched] = s_all[keep].reshape(touched.size, length)
    top_i[touched] = i_all[keep].reshape(touched.size, length)


def search(
    probes: ArrayLike,
    gallery: ArrayLike,
    *,
    top_l: int = 50,
    thresholds: ArrayLike = (),
    gallery_groups: ArrayLike | None = None,
    metric: str = "cosine",
    probe_block: int = 2048,
    gallery_block: int = 16384,
    device: str | None = None,
    dtype: str = "float32",
) -> SearchResult:
    """Search every probe against the gallery; keep top-``L`` lists and threshold counts.

    Parameters
    ----------
    probes : array-like, shape (P, d)
        Probe embeddings (unit norm for ``cosine``).
    gallery : array-like, shape (G, d)
        Gallery templates, one row per enrolled template (``G >= 1``).
    top_l : int, default 50
        Candidate-list length ``L >= 1`` (NIST reports use 50); capped at ``G``.
    thresholds : array-like of float, shape (K,)
        Thresholds at which to count, per probe and gallery group, the gallery entries
        scoring ``>= T`` over the whole gallery. May be empty.
    gallery_groups : array-like of int, shape (G,), optional
        Group code (``0 .. H-1``) of each gallery entry; default: one group.
    metric : {"cosine", "euclidean"}
        ``cosine``: dot product of unit-norm rows; ``euclidean``: the negated distance
        ``-||p - g||`` (a similarity, NIST's convention for distances).
    probe_block, gallery_block : int
        Block sizes of the matrix products (memory ``probe_block * gallery_block``
        scores).
    device : str, optional
        Torch device; default ``cuda`` when available, else ``cpu``.
    dtype : {"float32", "float64"}
        Precision of the matrix products (float64 for small exact runs).

    Returns
    -------
    SearchResult

    Raises
    ------
    ConfigError
        Unknown metric/dtype/device, ``top_l < 1`` or a block size < 1.
    DataError
        Shapes that do not match, an empty gallery, NaN/inf in the inputs.
    """
    t0 = time.perf_counter()
    if metric not in METRICS:
        raise ConfigError(f"unknown score metric {metric!r}; valid: {list(METRICS)}")
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"search dtype must be 'float32' or 'float64', got {dtype!r}")
    if int(top_l) != top_l or top_l < 1:
        raise ConfigError(f"candidate-list length top_l must be an integer >= 1, got {top_l!r}")
    if probe_block < 1 or gallery_block < 1:
        raise ConfigError(f"block sizes must be >= 1, got probe_block={probe_block}, gallery_block={gallery_block}")
    q = _as_matrix(probes, "probes")
    g = _as_matrix(gallery, "gallery")
    if g.shape[0] == 0:
        raise DataError("gallery: empty; a 1:N search needs at least one enrolled template")
    if q.shape[1] != g.shape[1]:
        raise DataError(f"probes have dimension {q.shape[1]}, gallery {g.shape[1]}")
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if np.isnan(thr).any():
        raise ConfigError("search thresholds: NaN is not a threshold")
    n_p, n_g = q.shape[0], g.shape[0]
    codes, n_h = _group_codes(gallery_groups, n_g)
    length = min(int(top_l), n_g)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    tdt = torch.float32 if dtype == "float32" else torch.float64
    npdt = np.float32 if dtype == "float32" else np.float64
    gal = torch.from_numpy(np.ascontiguousarray(g, dtype=npdt)).to(dev)
    gal_sq = (gal * gal).sum(1) if metric == "euclidean" else None
    block_g = max(int(gallery_block), length)  # the first block fills every list
    top_s = np.full((n_p, length), -np.inf, dtype=np.float64)
    top_i = np.full((n_p, length), -1, dtype=np.int64)
    counts = np.zeros((n_p, thr.size, n_h), dtype=np.int64)
    # thresholds as the score dtype sees them: a score s counts at T iff s >= T exactly
    t_min = float(thr.min()) if thr.size else math.inf
    for p0 in range(0, n_p, int(probe_block)):
        p1 = min(p0 + int(probe_block), n_p)
        qb = torch.from_numpy(np.ascontiguousarray(q[p0:p1], dtype=npdt)).to(dev)
        q_sq = (qb * qb).sum(1) if metric == "euclidean" else None
        ts, ti = top_s[p0:p1], top_i[p0:p1]
        for g0 in range(0, n_g, block_g):
            g1 = min(g0 + block_g, n_g)
            s = qb @ gal[g0:g1].T
            if metric == "euclidean":
                s = -torch.sqrt(torch.clamp(q_sq[:, None] + gal_sq[None, g0:g1] - 2.0 * s, min=0.0))
            if g0 == 0:  # fill every list from the first block (dense top-L; exact tie order below)
                k_take = min(length + 1, g1 - g0)
                vals, idx = torch.topk(s, k_take, dim=1, largest=True, sorted=True)
                v_np, i_np = vals.double().cpu().numpy(), idx.cpu().numpy().astype(np.int64)
                ts[:], ti[:] = v_np[:, :length], i_np[:, :length]
                order = np.lexsort((ti, -ts), axis=1)  # score desc, then gallery index asc
                ts[:], ti[:] = np.take_along_axis(ts, order, axis=1), np.take_along_axis(ti, order, axis=1)
                if k_take > length:  # a tie block straddling the L-th place: redo those rows exactly
                    tie = np.flatnonzero(v_np[:, length - 1] == v_np[:, length])
                    if tie.size:
                        tie_t = torch.from_numpy(tie).to(dev)
                        rows, cols, v = _pick(s[tie_t], vals[tie_t, length - 1])
                        ts[tie], ti[tie] = -np.inf, -1
                        _merge(ts, ti, tie[rows], cols, v)
                if thr.size:
                    rows, cols, v = _pick(s, torch.full((p1 - p0,), t_min, dtype=tdt, device=dev))
                    _count(counts[p0:p1], rows, cols, v, thr, codes)
                continue
            kth = torch.from_numpy(ts[:, -1]).to(dev, tdt)
            floor = torch.minimum(kth, torch.tensor(t_min, dtype=tdt, device=dev)) if thr.size else kth
            rows, cols, v = _pick(s, floor)
            if rows.size == 0:
                continue
            cols = cols + g0
            if thr.size:
                _count(counts[p0:p1], rows, cols, v, thr, codes)
            enter = v >= ts[rows, -1]
            _merge(ts, ti, rows[enter], cols[enter], v[enter])
    return SearchResult(
        candidates=top_i,
        scores=top_s,
        counts=counts,
        thresholds=thr,
        n_comparisons=int(n_p) * int(n_g),
        seconds=time.perf_counter() - t0,
        device=str(dev),
    )


def _pick(s: torch.Tensor, floor: torch.Tensor) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Entries with ``s[r, c] >= floor[r]`` as numpy ``(rows, cols, values)``.

    Rows are screened first by their maximum (one multithreaded reduction), so the
    element-wise comparison and ``nonzero`` run only on the few rows that hold a candidate.
    """
    rows_hit = torch.nonzero(torch.amax(s, dim=1) >= floor, as_tuple=True)[0]
    if rows_hit.numel() == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float64)
    if 2 * rows_hit.numel() > s.shape[0]:  # most rows: compare in place rather than copy them
        r_t, c_t = torch.nonzero(s >= floor[:, None], as_tuple=True)
        return r_t.cpu().numpy().astype(np.int64), c_t.cpu().numpy().astype(np.int64), s[r_t, c_t].double().cpu().numpy()
    sub = s[rows_hit]
    r_t, c_t = torch.nonzero(sub >= floor[rows_hit, None], as_tuple=True)
    vals = sub[r_t, c_t]
    return rows_hit[r_t].cpu().numpy().astype(np.int64), c_t.cpu().numpy().astype(np.int64), vals.double().cpu().numpy()


def _count(counts: NDArray[np.int64], rows: NDArray, cols: NDArray, vals: NDArray, thr: NDArray, codes: NDArray) -> None:
    """Add, per (row, threshold, gallery group), the picked entries scoring ``>= T``."""
    h = codes[cols]
    n_h = counts.shape[2]
    for k, t in enumerate(thr):
        sel = vals >= t
        if sel.any():
            flat = np.bincount(rows[sel] * n_h + h[sel], minlength=counts.shape[0] * n_h)
            counts[:, k, :] += flat.reshape(counts.shape[0], n_h)


def search_scores(
    score_matrix: ArrayLike,
    *,
    top_l: int = 50,
    thresholds: ArrayLike = (),
    gallery_groups: ArrayLike | None = None,
) -> SearchResult:
    """The same outcome as :func:`search` from a given probes x gallery score matrix.

    For hand-computed vectors and small runs whose scores are already known; the list
    order and counts follow exactly the rules of :func:`search`.

    Parameters
    ----------
    score_matrix : array-like of float, shape (P, G)
        ``score_matrix[p, j]``: score of probe ``p`` against gallery entry ``j``; finite.
    top_l, thresholds, gallery_groups
        As in :func:`search`.

    Returns
    -------
    SearchResult
        ``device`` is ``"given"``.

    Raises
    ------
    DataError
        A matrix that is not 2-D, has no columns or holds NaN/inf.
    """
    t0 = time.perf_counter()
    s = np.asarray(_as_matrix(score_matrix, "score_matrix"), dtype=np.float64)
    n_p, n_g = s.shape
    if n_g == 0:
        raise DataError("score_matrix: no gallery columns; a 1:N search needs at least one enrolled template")
    if int(top_l) != top_l or top_l < 1:
        raise ConfigError(f"candidate-list length top_l must be an integer >= 1, got {top_l!r}")
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    codes, n_h = _group_codes(gallery_groups, n_g)
    length = min(int(top_l), n_g)
    idx = np.broadcast_to(np.arange(n_g), s.shape)
    order = np.lexsort((idx, -s), axis=1)[:, :length]
    counts = np.zeros((n_p, thr.size, n_h), dtype=np.int64)
    for k, t in enumerate(thr):
        for h in range(n_h):
            counts[:, k, h] = (s[:, codes == h] >= t).sum(axis=1)
    return SearchResult(
        candidates=order.astype(np.int64),
        scores=np.take_along_axis(s, order, axis=1),
        counts=counts,
        thresholds=thr,
        n_comparisons=int(n_p * n_g),
        seconds=time.perf_counter() - t0,
        device="given",
    )
