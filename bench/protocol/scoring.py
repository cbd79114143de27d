"""Comparison scores: the one place where distances become similarities.

fvbench scores are similarities (higher = more alike); a comparison is a match iff
``score >= threshold`` (metrics-reference §0). Distances are negated here, once,
as NIST's DET helper does (metrics-reference §0, S5); the metrics layer never
rescales, clips or flips scores.
"""

from __future__ import annotations

import numpy as np

from bench.errors import ConfigError

__all__ = ["METRICS", "pair_scores", "similarity_matrix"]

#: Supported native measures of embedders.
METRICS = ("cosine", "euclidean")


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
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown score metric {metric!r}; valid: {list(METRICS)}")
    x = np.asarray(embeddings, dtype=np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
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
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown score metric {metric!r}; valid: {list(METRICS)}")
    x = np.asarray(embeddings, dtype=np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x @ x.T
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    return -np.sqrt(d2)
