"""Comparison scores: the one place where distances become similarities.

fvbench scores are similarities (higher = more alike); a comparison is a match iff
``score >= threshold`` (metrics-reference §0). Distances are negated here, once,
as NIST's DET helper does (metrics-reference §0, S5); the metrics layer never
rescales, clips or flips scores.
"""

from __future__ import annotations

import numpy as np

from bench.errors import ConfigError, DataError

__all__ = ["METRICS", "check_embeddings", "pair_scores", "similarity_matrix"]

#: Supported native measures of embedders.
METRICS = ("cosine", "euclidean")


def check_embeddings(embeddings: np.ndarray, metric: str) -> np.ndarray:
    """Validate embeddings for scoring; return them as float64 (cosine: L2-normalised).

    Parameters
    ----------
    embeddings : array-like
        Shape (n, d), d >= 1, finite numbers.
    metric : {"cosine", "euclidean"}

    Returns
    -------
    numpy.ndarray
        Shape (n, d), float64.

    Raises
    ------
    ConfigError
        Unknown ``metric``.
    DataError
        Not 2-D, non-numeric, NaN/inf (rows named), or -- for cosine -- a zero-norm row,
        whose cosine similarity is undefined (0/0; numpy would return NaN with a warning).
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown score metric {metric!r}; valid: {list(METRICS)}")
    try:
        x = np.asarray(embeddings, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"embeddings: expected an (n, d) array of numbers ({err})") from err
    if x.ndim != 2 or x.shape[1] < 1:
        raise DataError(f"embeddings: expected shape (n_images, d), got {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise DataError(f"embeddings: row(s) {np.flatnonzero(bad)[:5].tolist()} hold NaN or infinite values")
    if metric == "cosine":
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        zero = norm[:, 0] == 0
        if zero.any():
            raise DataError(
                f"embeddings: row(s) {np.flatnonzero(zero)[:5].tolist()} have zero norm; their cosine similarity is "
                "undefined (treat such a template as a failure to acquire, reason 'invalid_embedding')"
            )
        x = x / norm
    return x


def pair_scores(embeddings: np.ndarray, idx_a: np.ndarray, idx_b: np.ndarray, metric: str, *, block: int = 1 << 20) -> np.ndarray:
    """Similarity scores of the listed comparisons.

    Parameters
    ----------
    embeddings : numpy.ndarray
        Shape (n_images, d), float32/float64, finite.
    idx_a, idx_b : numpy.ndarray
        Shape (n_pairs,), int: rows of the two images of each comparison.
    metric : {"cosine", "euclidean"}
        ``cosine``: cosine similarity in [-1, 1] (embeddings normalised here).
        ``euclidean``: ``-||a - b||_2`` in (-inf, 0].
    block : int
        Pairs per vectorised block (bounds memory to ``block * d`` floats).

    Returns
    -------
    numpy.ndarray
        Shape (n_pairs,), float64 similarity scores.

    Raises
    ------
    ConfigError
        For an unknown ``metric`` (valid ones listed).
    DataError
        Embeddings :func:`check_embeddings` refuses (zero-norm rows for cosine, NaN/inf),
        index arrays of different lengths, or indices outside ``[0, n_images)``.
    """
    try:
        raw = np.asarray(embeddings, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"embeddings: expected an (n, d) array of numbers ({err})") from err
    if raw.ndim != 2 or raw.shape[1] < 1:
        raise DataError(f"embeddings: expected shape (n_images, d), got {raw.shape}")
    idx_a, idx_b = np.asarray(idx_a), np.asarray(idx_b)
    if idx_a.shape != idx_b.shape or idx_a.ndim != 1:
        raise DataError(f"pair_scores: idx_a and idx_b must be 1-D of equal length, got {idx_a.shape} and {idx_b.shape}")
    if idx_a.size and (min(idx_a.min(), idx_b.min()) < 0 or max(idx_a.max(), idx_b.max()) >= len(raw)):
        raise DataError(f"pair_scores: indices must lie in [0, {len(raw)}), got {min(idx_a.min(), idx_b.min())}..{max(idx_a.max(), idx_b.max())}")
    # Only the rows the comparisons use must be valid: callers mark failures to acquire with
    # NaN rows that no comparison names (e.g. the sweep's failed probes).
    used = np.unique(np.concatenate([idx_a, idx_b])).astype(np.int64) if idx_a.size else np.empty(0, np.int64)
    try:
        checked = check_embeddings(raw[used], metric)
    except DataError:  # name rows in the caller's numbering, not the subset's
        sub = raw[used]
        nonfinite = ~np.isfinite(sub).all(axis=1)
        if nonfinite.any():
            raise DataError(f"embeddings: row(s) {used[nonfinite][:5].tolist()} hold NaN or infinite values") from None
        zero = np.linalg.norm(sub, axis=1) == 0
        raise DataError(f"embeddings: row(s) {used[zero][:5].tolist()} have zero norm; their cosine similarity is undefined "
                        "(treat such a template as a failure to acquire, reason 'invalid_embedding')") from None
    x = np.zeros_like(raw)
    x[used] = checked
    out = np.empty(len(idx_a), dtype=np.float64)
    for s in range(0, len(idx_a), block):
        a = x[idx_a[s : s + block]]
        b = x[idx_b[s : s + block]]
        if metric == "cosine":
            out[s : s + block] = np.einsum("ij,ij->i", a, b)
        else:
            out[s : s + block] = -np.linalg.norm(a - b, axis=1)
    return out


def similarity_matrix(embeddings: np.ndarray, metric: str) -> np.ndarray:
    """All-vs-all similarity matrix (for runs small enough to hold it).

    Parameters
    ----------
    embeddings : numpy.ndarray
        Shape (n, d), finite.
    metric : {"cosine", "euclidean"}
        As in :func:`pair_scores` (same values up to float64 rounding).

    Returns
    -------
    numpy.ndarray
        Shape (n, n), float64; entry (i, j) is the score of images i and j.
        Uses ``n * n * 8`` bytes: large runs use :mod:`bench.protocol.streaming`.

    Raises
    ------
    ConfigError, DataError
        As :func:`check_embeddings`.
    """
    x = check_embeddings(embeddings, metric)
    if metric == "cosine":
        return x @ x.T
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    return -np.sqrt(d2)
