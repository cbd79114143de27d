"""Mated and non-mated comparisons, each carrying both subjects' attributes.

Protocol (design.md, issue #2): mated = every unordered pair of distinct images of
the same subject; non-mated = every unordered pair of images of different subjects
(or a seeded uniform sample of them when ``max_nonmated`` is set). Failures to
acquire are excluded before pairing; they are counted separately per group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.errors import ConfigError

__all__ = ["all_pairs", "comparison_table", "capture_ids_of"]


def capture_ids_of(table: pd.DataFrame) -> np.ndarray | None:
    """The manifest's ``capture_id`` column (e.g. the video of a frame), or None when absent or all distinct.

    Images sharing a capture are not independent samples of a person (frames of one
    video); :func:`all_pairs` leaves out mated pairs within one capture (issue #14).
    """
    if "capture_id" not in table.columns:
        return None
    cap = table["capture_id"].astype(str).to_numpy()
    return cap if len(np.unique(cap)) < len(cap) else None


def all_pairs(subject_ids: np.ndarray, *, max_nonmated: int | None = None, seed: int = 0,
              capture_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (i < j) of all comparisons among ``n`` images.

    Parameters
    ----------
    subject_ids : numpy.ndarray
        Shape (n,), subject id per image.
    max_nonmated : int or None
        If set and there are more non-mated pairs, keep a seeded uniform sample of
        this many (all mated pairs are always kept).
    seed : int
        Seed of that sample.
    capture_ids : numpy.ndarray or None
        Shape (n,), capture per image (:func:`capture_ids_of`); a pair of images of the
        same subject *and* the same capture is no comparison at all (neither mated nor
        non-mated): frames of one video are never a mated pair.

    Returns
    -------
    idx_a, idx_b : numpy.ndarray
        Shape (n_pairs,), int64, ``idx_a < idx_b``, mated pairs first.
    mated : numpy.ndarray
        Shape (n_pairs,), bool.
    """
    subject_ids = np.asarray(subject_ids)
    n = len(subject_ids)
    ia, ib = np.triu_indices(n, k=1)
    same = subject_ids[ia] == subject_ids[ib]
    ma, mb = ia[same], ib[same]
    if capture_ids is not None:  # issue #14: no mated pair within one capture (video)
        capture_ids = np.asarray(capture_ids)
        other = capture_ids[ma] != capture_ids[mb]
        ma, mb = ma[other], mb[other]
    na, nb = ia[~same], ib[~same]
    if max_nonmated is not None:
        if max_nonmated < 1:
            raise ConfigError(f"protocol.max_nonmated must be >= 1 or null, got {max_nonmated}")
        if len(na) > max_nonmated:
            keep = np.sort(np.random.default_rng(seed).choice(len(na), size=max_nonmated, replace=False))
            na, nb = na[keep], nb[keep]
    idx_a = np.concatenate([ma, na]).astype(np.int64)
    idx_b = np.concatenate([mb, nb]).astype(np.int64)
    mated = np.concatenate([np.ones(len(ma), bool), np.zeros(len(na), bool)])
    return idx_a, idx_b, mated


def comparison_table(table: pd.DataFrame, labels: pd.DataFrame, idx_a: np.ndarray, idx_b: np.ndarray, mated: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """Assemble the comparison-score table (the seam between models and metrics).

    Parameters
    ----------
    table : pandas.DataFrame
        Manifest rows of the acquired images (``image_id``, ``subject_id``), in the
        order the indices refer to.
    labels : pandas.DataFrame
        Group label per image (from :meth:`Manifest.group_labels`), same order.
    idx_a, idx_b, mated, scores : numpy.ndarray
        Shape (n_pairs,) each.

    Returns
    -------
    pandas.DataFrame
        Columns ``image_a, image_b, subject_a, subject_b, mated, score`` and
        ``<attribute>_a, <attribute>_b`` for every label column; categoricals for
        the string columns.
    """
    img = table["image_id"].astype(str).to_numpy()
    sub = table["subject_id"].astype(str).to_numpy()
    out = {
        "image_a": pd.Categorical(img[idx_a]),
        "image_b": pd.Categorical(img[idx_b]),
        "subject_a": pd.Categorical(sub[idx_a]),
        "subject_b": pd.Categorical(sub[idx_b]),
        "mated": np.asarray(mated, bool),
        "score": np.asarray(scores, np.float64),
    }
    for col in labels.columns:
        v = labels[col].astype(str).to_numpy()
        out[f"{col}_a"] = pd.Categorical(v[idx_a])
        out[f"{col}_b"] = pd.Categorical(v[idx_b])
    return pd.DataFrame(out)
