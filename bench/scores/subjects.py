"""Subject aggregates of a streamed run: what the subject bootstrap (docs/protocol.md §5.2-§5.4) needs.

Every mated score with its subject, the exact top tail of the non-mated scores (every
non-mated score at or above an adaptive cutoff, with its subject pair) and the
per-subject image counts; see :class:`SubjectAggregates` for why this design was chosen
over per-subject histograms. Fed alongside :class:`bench.scores.histogram.ScoreHistogram`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bench.errors import ConfigError, DataError, InsufficientDataError, InsufficientDataWarning
from bench.metrics.rates import (
    ThresholdAtFMR, _allowed_false_matches, _check_target, _check_threshold, _supports, _threshold_support,
)

from bench.scores.binning import _as_float_array, _raise_nonfinite

__all__ = ["SubjectAggregates", "ReplicateCounts"]

logger = logging.getLogger(__name__)


def _recalibrated_rows(
    c: NDArray[np.float64],
    k: NDArray[np.int64],
    ca: NDArray[np.int32],
    cb: NDArray[np.int32],
    starts: NDArray[np.intp],
    values: NDArray[np.float64],
    n_entries: int,
) -> NDArray[np.float64]:
    """§0 thresholds of bootstrap replicates from the weighted, descending-sorted tail.

    ``c`` (R, S) draw counts; ``k`` (R,) allowed false matches; ``ca``, ``cb`` subjects
    of the sorted tail entries; ``starts``/``values`` its tie blocks (start index,
    score). Only the blocks starting before ``n_entries`` are used; a replicate whose
    weighted count never exceeds ``k`` inside them gets NaN. Otherwise the threshold is
    the smallest *present* (positive-weight) score ``v`` with weighted ``#{s >= v} <= k``,
    or ``nextafter`` of the first block that already exceeds ``k`` -- the rule of
    :func:`bench.metrics.rates.threshold_at_fmr` applied to the replicate's data.
    """
    nblk = int(np.searchsorted(starts, n_entries, side="left"))
    end = int(starts[nblk]) if nblk < starts.size else ca.size
    w = c[:, ca[:end]] * c[:, cb[:end]]
    blocks = w if nblk == end else np.add.reduceat(w, starts[:nblk], axis=1)  # no ties: no-op
    over = np.cumsum(blocks, axis=1) > k[:, None]
    found = over.any(axis=1)
    j = np.argmax(over, axis=1)
    last = np.maximum.accumulate(np.where(blocks > 0, np.arange(nblk)[None, :], -1), axis=1)
    p = np.where(j > 0, last[np.arange(k.size), np.maximum(j - 1, 0)], -1)
    t = np.where(p >= 0, values[np.maximum(p, 0)], np.nextafter(values[j], np.inf))
    t[~found] = np.nan
    return t




# ============================================================================ subject aggregates
@dataclass(frozen=True)
class ReplicateCounts:
    """Error and comparison counts of subject-level bootstrap replicates (§5.2-§5.4).

    ``B`` replicates, ``G`` groups. Non-mated cells are *unordered* group pairs: the
    ``(B, G, G)`` arrays are symmetric, ``[:, g, h]`` and ``[:, h, g]`` both hold the
    cell ``{g, h}``; the diagonal ``[:, g, g]`` is the per-group FMR cell
    (demographically matched impostors, docs/protocol.md §2.3). Counts are weighted by
    the subject draw (``c_i`` for a mated comparison of subject ``i``, ``c_i c_j`` for a
    non-mated comparison of subjects ``i != j``) and stored as float64 integers.

    Attributes
    ----------
    group_labels : list
        Group labels, in code order.
    thresholds : dict of str to ndarray, shape (B,)
        Threshold used in each replicate (constant unless re-calibrated; NaN where a
        re-calibrated threshold could not be resolved from the retained tail).
    false_non_matches : dict of str to ndarray, shape (B, G)
        Mated comparisons with ``score < threshold``, per subject group.
    n_mated : ndarray, shape (B, G)
        Mated comparisons per group.
    false_matches : dict of str to ndarray, shape (B, G, G)
        Non-mated comparisons with ``score >= threshold`` per unordered cell.
    n_nonmated : ndarray, shape (B, G, G)
        Non-mated comparisons per unordered cell.
    unresolved : dict of str to int
        Number of replicates whose re-calibrated threshold fell below the tail cutoff.
    """

    group_labels: list[Hashable]
    thresholds: dict[str, NDArray[np.float64]]
    false_non_matches: dict[str, NDArray[np.float64]]
    n_mated: NDArray[np.float64]
    false_matches: dict[str, NDArray[np.float64]]
    n_nonmated: NDArray[np.float64]
    unresolved: dict[str, int]

    def fnmr(self, name: str) -> NDArray[np.float64]:
        """Replicate FNMR per group, shape (B, G); NaN where no mated comparison was drawn."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.false_non_matches[name] / np.where(self.n_mated > 0, self.n_mated, np.nan)

    def fmr(self, name: str) -> NDArray[np.float64]:
        """Replicate FMR per unordered cell, shape (B, G, G); NaN where nothing was drawn."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.false_matches[name] / np.where(self.n_nonmated > 0, self.n_nonmated, np.nan)

    def fmr_diagonal(self, name: str) -> NDArray[np.float64]:
        """Replicate per-group FMR (diagonal cells), shape (B, G)."""
        return np.diagonal(self.fmr(name), axis1=1, axis2=2).copy()


class SubjectAggregates:
    """Per-subject aggregates of a streamed all-vs-all run, for the subject-level bootstrap.

    What is kept (memory ``O(S + n_mated + tail_size)``, independent of the number of
    non-mated comparisons):

    * every **mated** score with its subject (mated comparisons grow linearly with the
      number of subjects, non-mated ones quadratically);
    * the **exact tail** of the non-mated scores: every non-mated comparison whose score
      is ``>= cutoff``, with its two subjects. The cutoff starts at ``-inf`` and rises
      as the run proceeds so that about ``tail_size`` (between ``tail_size`` and
      ``2 * tail_size``) comparisons are kept; a score below the current cutoff is never
      needed again, so the tail is always *all* non-mated scores ``>= cutoff``;
    * per subject its group and its number of images ``m_i``: in an all-vs-all design
      the number of non-mated comparisons of subjects ``i != j`` is ``n_ij = m_i m_j``,
      so no per-pair comparison counts need to be stored.

    Why this design rather than per-subject error counts at thresholds fixed before the
    run, or per-subject histograms: operating thresholds calibrated on the same data are
    only known after the pass, and the bootstrap re-calibrates them in every replicate
    (§5.4). The tail holds every comparison that any threshold at a low FMR can touch,
    so per-subject-pair false-match counts are exact at *any* threshold ``>= cutoff``
    (:meth:`subject_error_counts`), the global threshold at a target FMR is exact even
    for 1e9 comparisons (:meth:`threshold_at_fmr`, no bin-width tolerance), and
    re-calibration per replicate is the §0 rule on the weighted tail. Per-subject
    histograms would cost ``O(S x bins)`` memory (1e4 subjects x 2**16 bins = 5 GB) and
    still blur thresholds to a bin width.

    Limitations: only the all-vs-all design (protocol-listed pairs are small enough for
    the comparison-table bootstrap of :mod:`bench.metrics.bootstrap`); a subject must
    belong to one group (per-subject labels); FMR at thresholds below the final cutoff,
    e.g. high-FMR operating points, needs a larger ``tail_size``. Non-mated cells are
    unordered group pairs.

    Parameters
    ----------
    subject_groups : array-like of int, shape (S,)
        Group code in ``[0, G)`` of each subject (subjects are ``0 .. S-1``).
    images_per_subject : array-like of int, shape (S,)
        Number of (acquired) images ``m_i >= 0`` of each subject in the all-vs-all run.
    group_labels : sequence of hashable, optional
        Labels of the ``G`` groups (default ``0 .. max code``).
    tail_size : int, default 2**18
        Target number of retained non-mated comparisons (16 bytes each, up to twice that
        many transiently). To support a target FMR ``f`` over ``N`` comparisons keep
        several times ``f * N``.

    Raises
    ------
    DataError
        If the arrays disagree in shape, hold negative values or codes outside the
        labels.
    ConfigError
        If ``tail_size < 1``.
    """

    def __init__(
        self,
        subject_groups: ArrayLike,
        images_per_subject: ArrayLike,
        *,
        group_labels: Sequence[Hashable] | None = None,
        tail_size: int = 1 << 18,
    ) -> None:
        groups = np.asarray(subject_groups)
        m = np.asarray(images_per_subject)
        if groups.ndim != 1 or m.shape != groups.shape:
            raise DataError(
                f"subject_groups and images_per_subject: expected two 1-D arrays of equal length, "
                f"got shapes {groups.shape} and {m.shape}"
            )
        if groups.size and not np.issubdtype(groups.dtype, np.integer):
            raise DataError(f"subject_groups: expected integer group codes, got dtype {groups.dtype}")
        if m.size and (not np.issubdtype(m.dtype, np.integer) or m.min() < 0):
            raise DataError("images_per_subject: expected non-negative integers")
        n_groups = len(group_labels) if group_labels is not None else (int(groups.max()) + 1 if groups.size else 0)
        if groups.size and (groups.min() < 0 or groups.max() >= n_groups):
            raise DataError(f"subject_groups: codes must lie in [0, {n_groups}), got [{groups.min()}, {groups.max()}]")
        if not isinstance(tail_size, (int, np.integer)) or tail_size < 1:
            raise ConfigError(f"tail_size: expected a positive integer, got {tail_size!r}")
        self._group = groups.astype(np.intp)
        self._m = m.astype(np.int64)
        self._labels: list[Hashable] = list(group_labels) if group_labels is not None else list(range(n_groups))
        self._G = n_groups
        self._tail_size = int(tail_size)
        self._cutoff = -math.inf
        self._tail: list[tuple[NDArray[np.float64], NDArray[np.int32], NDArray[np.int32]]] = []
        self._n_tail = 0
        self._mated: list[tuple[NDArray[np.float64], NDArray[np.int32]]] = []
        self._n_mated = 0

    # ------------------------------------------------------------------ description
    @property
    def n_subjects(self) -> int:
        """Number of subjects ``S``."""
        return int(self._group.size)

    @property
    def group_labels(self) -> list[Hashable]:
        """Group labels in code order."""
        return list(self._labels)

    @property
    def cutoff(self) -> float:
        """Every non-mated score ``>= cutoff`` is retained (``-inf`` until the tail fills)."""
        return self._cutoff

    @property
    def n_tail(self) -> int:
        """Number of retained non-mated comparisons."""
        return self._n_tail

    @property
    def n_mated(self) -> int:
        """Number of mated comparisons added."""
        return self._n_mated

    @property
    def nbytes(self) -> int:
        """Bytes held by the retained scores and ids."""
        return int(
            sum(s.nbytes + a.nbytes + b.nbytes for s, a, b in self._tail)
            + sum(s.nbytes + a.nbytes for s, a in self._mated)
            + self._group.nbytes
            + self._m.nbytes
        )

    def n_nonmated_cells(self) -> NDArray[np.int64]:
        """Non-mated comparison counts per unordered group cell, shape (G, G), symmetric.

        ``sum_{i<j, {g_i, g_j} = {g, h}} m_i m_j`` (all-vs-all design).
        """
        mg = np.bincount(self._group, weights=self._m, minlength=self._G).astype(np.int64)
        qg = np.bincount(self._group, weights=self._m.astype(np.float64) ** 2, minlength=self._G).astype(np.int64)
        out = np.outer(mg, mg)
        np.fill_diagonal(out, (mg * mg - qg) // 2)
        return out

    # ------------------------------------------------------------------ accumulation
    def _check_subjects(self, ids: np.ndarray, name: str, n: int) -> NDArray[np.int32]:
        arr = np.asarray(ids)
        if arr.shape != (n,):
            raise DataError(f"{name}: expected shape ({n},) like scores, got {arr.shape}")
        if n and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= self.n_subjects):
            raise DataError(f"{name}: expected subject indices in [0, {self.n_subjects})")
        return arr.astype(np.int32, copy=False)

    def add_mated(self, scores: ArrayLike, subjects: ArrayLike) -> None:
        """Add mated comparisons (all are kept).

        Parameters
        ----------
        scores : array-like of float, shape (n,)
            Finite similarity scores.
        subjects : array-like of int, shape (n,)
            Subject index of each comparison.

        Raises
        ------
        DataError
            Non-finite scores, wrong shapes or subject indices out of range.
        """
        x = _as_float_array(scores, "scores")
        _raise_nonfinite(x, "scores")
        subj = self._check_subjects(np.asarray(subjects), "subjects", x.size)
        if x.size:
            self._mated.append((x.astype(np.float64), subj.copy()))
            self._n_mated += x.size

    def add_nonmated(self, scores: ArrayLike, subject_a: ArrayLike, subject_b: ArrayLike) -> None:
        """Offer non-mated comparisons; those scoring ``>= cutoff`` are kept.

        Callers streaming large blocks should pass only scores ``>= cutoff`` (a cheap
        mask), which is all this method keeps.

        Parameters
        ----------
        scores : array-like of float, shape (n,)
            Finite similarity scores.
        subject_a, subject_b : array-like of int, shape (n,)
            Subject indices of the two sides (must differ).

        Raises
        ------
        DataError
            Non-finite scores, wrong shapes, indices out of range, or a pair of equal
            subjects (that would be a mated comparison).
        """
        x = _as_float_array(scores, "scores")
        _raise_nonfinite(x, "scores")
        a = self._check_subjects(np.asarray(subject_a), "subject_a", x.size)
        b = self._check_subjects(np.asarray(subject_b), "subject_b", x.size)
        if x.size and (a == b).any():
            i = int(np.flatnonzero(a == b)[0])
            raise DataError(f"add_nonmated: comparison {i} pairs subject {int(a[i])} with itself")
        keep = x >= self._cutoff
        if not keep.all():
            x, a, b = x[keep], a[keep], b[keep]
        if x.size == 0:
            return
        self._tail.append((x.astype(np.float64), a.copy(), b.copy()))
        self._n_tail += x.size
        if self._n_tail > 2 * self._tail_size:
            self._compact()

    def update(self, scores: ArrayLike, subject_a: ArrayLike, subject_b: ArrayLike) -> None:
        """Add comparisons of any kind: mated iff ``subject_a == subject_b``.

        Parameters
        ----------
        scores : array-like of float, shape (n,)
        subject_a, subject_b : array-like of int, shape (n,)

        Raises
        ------
        DataError
            As :meth:`add_mated` and :meth:`add_nonmated`.
        """
        x = _as_float_array(scores, "scores")
        a = self._check_subjects(np.asarray(subject_a), "subject_a", x.size)
        b = self._check_subjects(np.asarray(subject_b), "subject_b", x.size)
        same = a == b
        if same.any():
            self.add_mated(x[same], a[same])
            keep = ~same & (x >= self._cutoff)
        else:
            keep = x >= self._cutoff
        self.add_nonmated(x[keep], a[keep], b[keep])

    def _tail_arrays(self) -> tuple[NDArray[np.float64], NDArray[np.int32], NDArray[np.int32]]:
        if len(self._tail) != 1:
            if self._tail:
                s = np.concatenate([t[0] for t in self._tail])
                a = np.concatenate([t[1] for t in self._tail])
                b = np.concatenate([t[2] for t in self._tail])
            else:
                s = np.empty(0, dtype=np.float64)
                a = np.empty(0, dtype=np.int32)
                b = np.empty(0, dtype=np.int32)
            self._tail = [(s, a, b)] if s.size else []
            return s, a, b
        return self._tail[0]

    def _compact(self) -> None:
        """Keep the ``tail_size`` largest scores and every score tied with the smallest kept.

        When so many scores tie at that value that more than ``2 * tail_size`` would stay
        (e.g. one image file under many subject ids: identical scores), the cutoff moves
        strictly above the tie and the tied scores go: the tail stays "every score >=
        cutoff" and its memory stays bounded (issue #9: 50,000 rows over 4 images grew
        to 24 GB). Read-outs below the cutoff then fall back to the histogram.
        """
        s, a, b = self._tail_arrays()
        if s.size <= self._tail_size:
            return
        v = -np.partition(-s, self._tail_size - 1)[self._tail_size - 1]
        keep = s >= v
        if int(keep.sum()) > 2 * self._tail_size:  # a tie at v too large to keep
            # the next value up; float32 step for float32 scores (all the engine produces), so the
            # cutoff compares the same way against float32 and float64 arrays
            v32 = np.float32(v)
            v = float(np.nextafter(v32, np.float32(np.inf))) if float(v32) == float(v) else float(np.nextafter(v, np.inf))
            keep = s >= v
        self._tail = [(s[keep], a[keep], b[keep])]
        self._n_tail = int(keep.sum())
        self._cutoff = max(self._cutoff, float(v))

    def raise_cutoff(self, value: float) -> None:
        """Raise the cutoff to ``value`` (no-op if lower) and drop retained scores below it.

        Streaming callers use it to bound what a large block adds: any value not above
        the smallest score they keep from then on is valid, since every score ``>=`` the
        old cutoff was kept.

        Raises
        ------
        ConfigError
            If ``value`` is NaN.
        """
        v = _check_threshold(value, "cutoff")
        if v <= self._cutoff:
            return
        self._cutoff = v
        self._tail = [(s[s >= v], a[s >= v], b[s >= v]) for s, a, b in self._tail]
        self._tail = [t for t in self._tail if t[0].size]
        self._n_tail = sum(t[0].size for t in self._tail)

    @property
    def tail_size(self) -> int:
        """Target number of retained non-mated comparisons."""
        return self._tail_size

    def merge(self, other: SubjectAggregates) -> SubjectAggregates:
        """Combine with the aggregates of another shard of the same run, in place.

        The merged tail is all non-mated scores ``>=`` the larger of the two cutoffs.

        Raises
        ------
        ConfigError
            If the subject designs differ.
        """
        if not (
            isinstance(other, SubjectAggregates)
            and np.array_equal(self._group, other._group)
            and np.array_equal(self._m, other._m)
            and self._labels == other._labels
        ):
            raise ConfigError("merge: aggregates describe different subjects, groups or image counts")
        self._mated.extend((s.copy(), a.copy()) for s, a in other._mated)
        self._n_mated += other._n_mated
        cut = max(self._cutoff, other._cutoff)
        parts = self._tail + other._tail
        self._tail = [(s[s >= cut], a[s >= cut], b[s >= cut]) for s, a, b in parts]
        self._n_tail = sum(t[0].size for t in self._tail)
        self._cutoff = cut
        if self._n_tail > 2 * self._tail_size:
            self._compact()
        return self

    # ------------------------------------------------------------------ read-outs
    def _mated_arrays(self) -> tuple[NDArray[np.float64], NDArray[np.int32]]:
        if len(self._mated) != 1:
            if self._mated:
                s = np.concatenate([t[0] for t in self._mated])
                a = np.concatenate([t[1] for t in self._mated])
            else:
                s, a = np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int32)
            self._mated = [(s, a)] if s.size else []
            return s, a
        return self._mated[0]

    def _group_mask(self, groups: Sequence[int] | None) -> NDArray[np.bool_]:
        if groups is None:
            return np.ones(self._G, dtype=bool)
        sel = np.atleast_1d(np.asarray(groups))
        if sel.size == 0 or not np.issubdtype(sel.dtype, np.integer) or sel.min() < 0 or sel.max() >= self._G:
            raise ConfigError(f"groups: expected group codes in [0, {self._G}), got {groups!r}")
        mask = np.zeros(self._G, dtype=bool)
        mask[sel] = True
        return mask

    def threshold_at_fmr(self, target_fmr: float, *, groups: Sequence[int] | None = None) -> ThresholdAtFMR:
        """Exact §0 threshold over the non-mated comparisons among subjects of ``groups``.

        Parameters
        ----------
        target_fmr : float
            Target FMR ``f`` in (0, 1).
        groups : sequence of int, optional
            Calibration population: non-mated comparisons whose two subjects both belong
            to these groups (None = all non-mated comparisons, the global threshold).

        Returns
        -------
        ThresholdAtFMR
            Identical to :func:`bench.metrics.rates.threshold_at_fmr` on all ``N``
            non-mated scores of the population, computed from the tail alone.

        Raises
        ------
        ConfigError
            Bad ``target_fmr`` or ``groups``.
        InsufficientDataError
            If ``N < 1/f``, or if fewer than ``k + 1`` retained scores belong to the
            population (the cut lies below the cutoff: increase ``tail_size``).

        Warns
        -----
        InsufficientDataWarning
            If ``N < 30/f`` (rule of 30).
        """
        f = _check_target(target_fmr)
        gmask = self._group_mask(groups)
        cells = self.n_nonmated_cells()
        n = int(cells[np.ix_(gmask, gmask)][np.triu_indices(int(gmask.sum()))].sum())
        support = _threshold_support(n, f)  # the shared refuse (k = 0) or flag (rule of 30) rule
        k = _allowed_false_matches(f, n)  # >= 1: k = 0 was refused
        s, a, b = self._tail_arrays()
        if groups is not None:
            s = s[gmask[self._group[a]] & gmask[self._group[b]]]
        if s.size < k + 1:
            raise InsufficientDataError(
                f"the cut for target FMR {f:g} (k={k}) lies below the tail cutoff "
                f"{self._cutoff!r} ({s.size} retained scores in the population); rerun with a larger "
                "tail_size"
            )
        desc = -np.sort(-s)
        top = float(desc[0])
        v, below = desc[k - 1], desc[k]
        if v > below:
            threshold = float(v)
        else:
            above = desc[desc > v]
            threshold = float(above.min()) if above.size else float(np.nextafter(top, np.inf))
        count = int(np.count_nonzero(s >= threshold))
        return ThresholdAtFMR(
            target_fmr=f, threshold=threshold, achieved_fmr=count / n, k=k, n_nonmated=n, support=support
        )

    def subject_error_counts(self, threshold: float) -> dict[str, NDArray[np.int64]]:
        """Per-subject mated and per-subject-pair non-mated error counts at ``threshold``.

        Parameters
        ----------
        threshold : float
            Must be ``>= cutoff`` (the non-mated counts are exact only there).

        Returns
        -------
        dict
            ``"mated_errors"`` (S,) false non-matches per subject, ``"mated_comparisons"``
            (S,) mated comparisons per subject, ``"pair_a"``, ``"pair_b"`` (P,) subject
            pairs (``a < b``) with at least one false match, ``"pair_errors"`` (P,) their
            false matches; the comparisons of pair ``(i, j)`` are ``m_i m_j``.

        Raises
        ------
        InsufficientDataError
            If ``threshold < cutoff``.
        """
        t = _check_threshold(threshold)
        if t < self._cutoff:
            raise InsufficientDataError(
                f"threshold {t!r} lies below the tail cutoff {self._cutoff!r}: non-mated counts there "
                "are not retained; rerun with a larger tail_size"
            )
        ms, ma = self._mated_arrays()
        S = self.n_subjects
        out = {
            "mated_errors": np.bincount(ma, weights=(ms < t), minlength=S).astype(np.int64),
            "mated_comparisons": np.bincount(ma, minlength=S).astype(np.int64),
        }
        s, a, b = self._tail_arrays()
        hit = s >= t
        lo_, hi_ = np.minimum(a[hit], b[hit]).astype(np.int64), np.maximum(a[hit], b[hit]).astype(np.int64)
        keys, counts = np.unique(lo_ * S + hi_, return_counts=True)
        out["pair_a"] = keys // S
        out["pair_b"] = keys % S
        out["pair_errors"] = counts.astype(np.int64)
        return out

    def draw_subject_counts(self, n_replicates: int, rng: np.random.Generator) -> NDArray[np.int32]:
        """Stratified subject draws: within each group, ``|S_g|`` draws with replacement.

        Only subjects with at least one image are drawn (the others take part in no
        comparison). One draw serves FNMR, FMR and re-calibration of a replicate, so the
        rates of a replicate stay mutually consistent (as in :mod:`bench.metrics.bootstrap`).

        Parameters
        ----------
        n_replicates : int
            Number of replicates ``B >= 1``.
        rng : numpy.random.Generator
            Source of randomness.

        Returns
        -------
        ndarray of int32, shape (B, S)
            Draw count ``c_i`` of every subject in every replicate.
        """
        if not isinstance(n_replicates, (int, np.integer)) or n_replicates < 1:
            raise ConfigError(f"n_replicates: expected a positive integer, got {n_replicates!r}")
        counts = np.zeros((n_replicates, self.n_subjects), dtype=np.int32)
        for g in range(self._G):
            members = np.flatnonzero((self._group == g) & (self._m > 0))
            k = members.size
            if k == 0:
                continue
            idx = rng.integers(0, k, size=(n_replicates, k))
            flat = idx + (np.arange(n_replicates) * k)[:, None]
            counts[:, members] = np.bincount(flat.ravel(), minlength=n_replicates * k).reshape(n_replicates, k)
        return counts

    def replicate_counts(
        self,
        subject_counts: ArrayLike,
        *,
        thresholds: dict[str, float] | None = None,
        recalibrate: dict[str, float] | None = None,
        calibration_groups: Sequence[int] | None = None,
        chunk_elements: int = 4_000_000,
    ) -> ReplicateCounts:
        """Error and comparison counts of bootstrap replicates, from the aggregates only.

        Replicate ``b`` weights a mated comparison of subject ``i`` by ``c_bi`` (cluster
        bootstrap, §5.2) and a non-mated comparison of subjects ``i != j`` by
        ``c_bi c_bj`` (two-subject bootstrap, §5.3; copies of one subject never pair).

        Parameters
        ----------
        subject_counts : array-like of int, shape (B, S)
            Draw counts, e.g. from :meth:`draw_subject_counts`.
        thresholds : dict of str to float, optional
            Fixed thresholds (external calibration, §5.4); each must be ``>= cutoff``.
        recalibrate : dict of str to float, optional
            ``{name: target_fmr}``: thresholds re-calibrated inside every replicate by
            the §0 rule on the replicate's weighted non-mated scores of the calibration
            population (§5.4). A replicate whose cut falls below the tail cutoff gets a
            NaN threshold and NaN false-match/non-match counts (counted in
            ``unresolved``).
        calibration_groups : sequence of int, optional
            Calibration population for ``recalibrate`` (None = all non-mated).
        chunk_elements : int, default 4_000_000
            Bound on the (replicates x retained comparisons) work arrays (float64).

        Returns
        -------
        ReplicateCounts

        Raises
        ------
        DataError
            If ``subject_counts`` has the wrong shape or negative entries.
        ConfigError
            If a name is used twice or a target is not in (0, 1).
        InsufficientDataError
            If a fixed threshold lies below the tail cutoff.
        """
        c_all = np.asarray(subject_counts)
        if c_all.ndim != 2 or c_all.shape[1] != self.n_subjects:
            raise DataError(f"subject_counts: expected shape (B, {self.n_subjects}), got {c_all.shape}")
        if c_all.size and (not np.issubdtype(c_all.dtype, np.integer) or c_all.min() < 0):
            raise DataError("subject_counts: expected non-negative integer draw counts")
        fixed = {str(k): _check_threshold(v, f"thresholds[{k!r}]") for k, v in (thresholds or {}).items()}
        recal = {str(k): _check_target(v, f"recalibrate[{k!r}]") for k, v in (recalibrate or {}).items()}
        if set(fixed) & set(recal):
            raise ConfigError(f"threshold names used twice: {sorted(set(fixed) & set(recal))}")
        for name, t in fixed.items():
            if t < self._cutoff:
                raise InsufficientDataError(
                    f"thresholds[{name!r}] = {t!r} lies below the tail cutoff {self._cutoff!r}; "
                    "rerun with a larger tail_size"
                )
        B, S, G = c_all.shape[0], self.n_subjects, self._G
        grp = self._group
        # mated: sorted by (group, score ascending)
        ms, ma = self._mated_arrays()
        mg = grp[ma]
        order = np.lexsort((ms, mg))
        ms, ma, mg = ms[order], ma[order], mg[order]
        m_bounds = np.searchsorted(mg, np.arange(G + 1))
        # tail: sorted by (unordered cell, score descending)
        ts, ta, tb = self._tail_arrays()
        ga, gb = grp[ta], grp[tb]
        cell = np.minimum(ga, gb) * G + np.maximum(ga, gb)
        order = np.lexsort((-ts, cell))
        ts, ta, tb, cell = ts[order], ta[order], tb[order], cell[order]
        t_bounds = np.searchsorted(cell, np.arange(G * G + 1))
        # calibration population, score descending, tie blocks
        cmask = self._group_mask(calibration_groups)
        in_cal = cmask[grp[ta]] & cmask[grp[tb]]
        c_order = np.argsort(-ts[in_cal], kind="stable")
        cs, ca, cb = ts[in_cal][c_order], ta[in_cal][c_order], tb[in_cal][c_order]
        c_starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]]) if cs.size else np.zeros(0, dtype=np.intp)
        c_values = cs[c_starts]
        cal_cells = np.outer(cmask, cmask) & np.triu(np.ones((G, G), dtype=bool))
        # per-subject design matrices
        onehot = np.zeros((S, G))
        onehot[np.arange(S), grp] = 1.0
        mated_per_subject = np.bincount(ma, minlength=S).astype(np.float64)

        names = list(fixed) + list(recal)
        thr_out = {nm: np.full(B, np.nan) for nm in names}
        fnm_out = {nm: np.full((B, G), np.nan) for nm in names}
        fm_out = {nm: np.full((B, G, G), np.nan) for nm in names}
        n_m_out = np.zeros((B, G))
        n_nm_out = np.zeros((B, G, G))
        unresolved = {nm: 0 for nm in recal}
        width = max(ts.size, ms.size, 1)
        step = max(1, min(B, int(chunk_elements) // width))
        tri = np.triu_indices(G)
        for lo_ in range(0, B, step):
            hi_ = min(B, lo_ + step)
            c = c_all[lo_:hi_].astype(np.float64)
            nb_ = hi_ - lo_
            # comparisons
            n_m_out[lo_:hi_] = (c * mated_per_subject) @ onehot
            mgrp = (c * self._m) @ onehot
            qgrp = (c**2 * self._m.astype(np.float64) ** 2) @ onehot
            nn = mgrp[:, :, None] * mgrp[:, None, :]
            idx_g = np.arange(G)
            nn[:, idx_g, idx_g] = (mgrp**2 - qgrp) / 2.0
            n_nm_out[lo_:hi_] = nn
            # thresholds of this chunk
            thr_chunk = {nm: np.full(nb_, t) for nm, t in fixed.items()}
            if recal:
                n_cal = nn[:, cal_cells].sum(axis=1)
                for nm, f in recal.items():
                    k_rows = np.full(nb_, -1, dtype=np.int64)
                    for r in range(nb_):
                        n_r = int(round(n_cal[r]))
                        if _supports(n_r, f, 1.0):
                            k_rows[r] = _allowed_false_matches(f, n_r)
                    t_b = np.full(nb_, np.nan)
                    rows = np.flatnonzero(k_rows >= 0)
                    if rows.size and cs.size:
                        # the cut lies near the k-th largest score: try a prefix of the tail
                        # first, the whole tail only for replicates not resolved by it
                        e0 = min(cs.size, 2 * int(k_rows[rows].max()) + 4096)
                        t_b[rows] = _recalibrated_rows(c[rows], k_rows[rows], ca, cb, c_starts, c_values, e0)
                        again = rows[np.isnan(t_b[rows])]
                        if again.size and e0 < cs.size:
                            t_b[again] = _recalibrated_rows(
                                c[again], k_rows[again], ca, cb, c_starts, c_values, cs.size
                            )
                    unresolved[nm] += int(np.isnan(t_b).sum())
                    thr_chunk[nm] = t_b
            rows_idx = np.arange(nb_)
            for nm, t_b in thr_chunk.items():
                thr_out[nm][lo_:hi_] = t_b
                ok = ~np.isnan(t_b)
                # only prefixes are needed: mated scores below t (ascending order) and
                # non-mated tail scores at or above t (descending order)
                fnm = np.zeros((nb_, G))
                t_lo = np.where(ok, t_b, -np.inf)
                for g in range(G):
                    a0, a1 = m_bounds[g], m_bounds[g + 1]
                    q = np.searchsorted(ms[a0:a1], t_lo, side="left")
                    if a1 == a0 or q.max() == 0:
                        continue
                    cum_m = np.cumsum(c[:, ma[a0 : a0 + q.max()]], axis=1)
                    fnm[:, g] = np.where(q > 0, cum_m[rows_idx, np.maximum(q - 1, 0)], 0.0)
                fm = np.zeros((nb_, G, G))
                t_hi = np.where(ok, t_b, np.inf)
                for gi, hi_g in zip(*tri):
                    cid = gi * G + hi_g
                    a0, a1 = t_bounds[cid], t_bounds[cid + 1]
                    p = np.searchsorted(-ts[a0:a1], -t_hi, side="right")
                    if a1 == a0 or p.max() == 0:
                        continue
                    e = a0 + p.max()
                    cum_t = np.cumsum(c[:, ta[a0:e]] * c[:, tb[a0:e]], axis=1)
                    fm[:, gi, hi_g] = fm[:, hi_g, gi] = np.where(p > 0, cum_t[rows_idx, np.maximum(p - 1, 0)], 0.0)
                fnm[~ok] = np.nan
                fm[~ok] = np.nan
                fnm_out[nm][lo_:hi_] = fnm
                fm_out[nm][lo_:hi_] = fm
        for nm, count in unresolved.items():
            if count:
                warnings.warn(
                    f"replicate_counts: {count} of {B} replicates could not re-calibrate threshold "
                    f"{nm!r} (cut below the tail cutoff {self._cutoff!r}); their counts are NaN -- "
                    "rerun with a larger tail_size",
                    InsufficientDataWarning,
                    stacklevel=2,
                )
        return ReplicateCounts(
            group_labels=list(self._labels),
            thresholds=thr_out,
            false_non_matches=fnm_out,
            n_mated=n_m_out,
            false_matches=fm_out,
            n_nonmated=n_nm_out,
            unresolved=unresolved,
        )
