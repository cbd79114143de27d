"""Streamed score accumulators: fine per-cell score histograms and subject aggregates.

Large runs (up to ~1e9 comparisons and beyond, sharded) cannot keep every score. This
module keeps, with memory independent of the number of comparisons,

* :class:`ScoreHistogram` -- counts of mated and non-mated scores in fine fixed bins,
  separately per *cell* (a demographic group, or a cross-group cell ``(g, h)``), with
  explicit underflow/overflow bins so no comparison is ever dropped. FMR/FNMR at a
  threshold, the threshold at a target FMR (docs/protocol.md §0), the DET curve and
  the EER are read from the counts. An **exact mode** keeps the raw scores while the
  run is small and then gives results identical to :mod:`bench.metrics.rates`.
* :class:`SubjectAggregates` -- what the subject-level bootstrap (docs/protocol.md
  §5.2-§5.4) needs, so it never revisits the comparisons: every mated score with its
  subject, the **exact top tail** of the non-mated scores (every non-mated score at or
  above an adaptive cutoff, with its subject pair), and the per-subject image counts
  from which the non-mated comparison counts of any subject pair follow (all-vs-all
  design: ``n_ij = m_i * m_j``). See :class:`SubjectAggregates` for why this design
  was chosen over per-subject histograms.

Conventions (docs/protocol.md §0): scores are similarities (higher = more alike); a
comparison matches iff ``score >= threshold``; ``FMR(t) = #{non-mated s >= t} / N``;
``FNMR(t) = #{mated s < t} / M``. Results reuse the result types of
:mod:`bench.metrics.rates` (:class:`~bench.metrics.rates.ErrorRates`,
:class:`~bench.metrics.rates.ThresholdAtFMR`, :class:`~bench.metrics.rates.DetCurve`,
:class:`~bench.metrics.rates.EqualErrorRate`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import warnings
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bench.errors import (
    ConfigError,
    DataError,
    InsufficientDataError,
    InsufficientDataWarning,
    ScoreRangeWarning,
)
from bench.metrics import rates as _rates
from bench.metrics.rates import (
    DetCurve,
    EqualErrorRate,
    ErrorRates,
    ThresholdAtFMR,
    _allowed_false_matches,
    _check_target,
    _check_threshold,
    _threshold_support,
    _supports,
)

__all__ = [
    "ScoreHistogram",
    "SubjectAggregates",
    "ReplicateCounts",
]

logger = logging.getLogger(__name__)

#: Elements processed per vectorised step of :meth:`ScoreHistogram.update` (fits in L2).
_CHUNK = 1 << 17
#: Elements per ``np.bincount`` call (amortises the zeroing of its output).
_BINCOUNT_CHUNK = 1 << 18
#: Same for comparisons of mixed cells (the output spans all cells: amortise more).
_MIXED_BINCOUNT_CHUNK = 1 << 20
#: Largest number of uniform bins: bin indices must stay exact in float32 (< 2**24).
_MAX_UNIFORM_BINS = 1 << 22
#: Mean run length (comparisons of one cell and class in a row) above which
#: :meth:`ScoreHistogram.update` bins run by run.
_MIN_RUN = 4096
#: Cell/class codes examined per step when looking for runs (constant steps cost two
#: reductions, no temporaries).
_RUN_CHUNK = 1 << 16
#: Smallest update split across worker threads (see ``threads`` of ScoreHistogram).
_THREADED_MIN = 1 << 20
_NONMATED, _MATED = 0, 1


def _as_float_array(values: ArrayLike, name: str) -> NDArray[np.floating]:
    """1-D float32/float64 view or copy of ``values`` (other dtypes become float64)."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as err:  # pragma: no cover - exotic inputs
        raise DataError(f"{name}: expected a 1-D array of float scores ({err})") from err
    if arr.dtype not in (np.float32, np.float64):
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(f"{name}: expected a 1-D array of float scores ({err})") from err
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array of scores, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _raise_nonfinite(x: NDArray[np.floating], name: str, offset: int = 0) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{name}: {int(bad.sum())} non-finite score(s) (first at index {offset + i}: "
            f"{x[i]!r}); scores must be finite similarities"
        )


def _run_starts(codes: list[np.ndarray], n: int, max_runs: int) -> NDArray[np.intp] | None:
    """Start of every run of equal codes (in all of ``codes`` at once), then ``n``.

    ``codes`` are 1-D arrays of length ``n``. Returns None as soon as there are more
    than ``max_runs`` runs. Steps of ``_RUN_CHUNK`` codes in which every array is
    constant cost two cheap reductions each.
    """
    if max_runs < 1:
        return None
    starts: list[NDArray[np.intp]] = [np.zeros(1, dtype=np.intp)]
    runs = 1
    for a in range(0, n - 1, _RUN_CHUNK):
        e = min(a + _RUN_CHUNK + 1, n)  # pairs (i, i + 1) for i in [a, e - 1): each pair once
        segs = [c[a:e] for c in codes]
        if all(seg.min() == seg.max() for seg in segs):
            continue
        change = segs[0][1:] != segs[0][:-1]
        for seg in segs[1:]:
            change |= seg[1:] != seg[:-1]
        pos = np.flatnonzero(change)
        runs += pos.size
        if runs > max_runs:
            return None
        starts.append(pos + (a + 1))
    starts.append(np.array([n], dtype=np.intp))
    return np.concatenate(starts)


@lru_cache(maxsize=16)
def _edge_arrays(
    k: int, lo_index: int, n_uniform: int, extra: tuple[float, ...]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(uniform edges, sorted edges, lower edge of every bin), read-only, shared by instances.

    Fresh memory costs a page fault per 4 KiB on first touch, which dominates small
    histograms' set-up, so identical bin definitions share one copy.
    """
    uniform = np.ldexp(np.arange(lo_index, lo_index + n_uniform + 1, dtype=np.float64), -k)
    edges = np.union1d(uniform, np.asarray(extra, dtype=np.float64)) if extra else uniform
    lower = np.concatenate([[-np.inf], edges])
    for a in (uniform, edges, lower):
        a.flags.writeable = False
    return uniform, edges, lower


_scratch = threading.local()


def _scratch_buffer(name: str, size: int, dtype: np.dtype) -> np.ndarray:
    """Per-thread reusable work array of at least ``size`` elements (first ``size`` returned).

    Reusing the binning buffers across calls and instances avoids re-faulting fresh
    pages (about 2 us per 4 KiB page on the virtual machines measured), which cost as
    much as the binning of a 1e6-score update.
    """
    key = (name, np.dtype(dtype).str)
    buf = getattr(_scratch, "bufs", None)
    if buf is None:
        buf = _scratch.bufs = {}
    arr = buf.get(key)
    if arr is None or arr.size < size:
        arr = buf[key] = np.empty(size, dtype=dtype)
    return arr[:size]


def _top_cut(c: NDArray[np.int64], k: int) -> tuple[int, int]:
    """Smallest ``j`` with ``sum(c[j:]) <= k``, and that sum (``c`` non-negative counts).

    Walks down from the top in growing blocks, so a cut in the upper tail (low target
    FMR) touches only the top bins. Returns ``j = c.size`` if ``c[-1] > k`` already.
    """
    above, end, step = 0, c.size, 4096
    while end > 0:
        start = max(0, end - step)
        block = c[start:end]
        total = int(block.sum())
        if above + total > k:
            rcs = np.cumsum(block[::-1])  # rcs[i - 1] = sum of the top i bins of the block
            i = int(np.searchsorted(rcs, k - above, side="right"))
            return end - i, above + (int(rcs[i - 1]) if i else 0)
        above += total
        end = start
        step *= 2
    return 0, above


def _ceil_to_dtype(value: float, dtype: np.dtype) -> np.floating:
    """Smallest number of ``dtype`` that is >= ``value`` (so ``x >= v <=> x >= result``)."""
    v = dtype.type(value)
    if float(v) < value:
        v = np.nextafter(v, dtype.type(np.inf))
    return v


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


# ============================================================================ histogram
class ScoreHistogram:
    """Per-cell histograms of mated and non-mated similarity scores, in fine fixed bins.

    Memory is ``16 * n_cells * n_bins_total`` bytes (two int64 count arrays), independent
    of the number of comparisons; e.g. 64 cells (8 groups, all ordered cross cells) and
    2**16 bins take 67 MB.

    Parameters
    ----------
    n_cells : int, default 1
        Number of cells (groups, or cross-group cells) kept separately. A comparison's
        cell is chosen by the caller (e.g. ``g * n_groups + h`` for the pair of groups
        ``(g, h)``, see :meth:`cross_cell`). Read-outs pool any set of cells.
    lo, hi : float, default -1.0, 1.0
        Stated score range covered by the uniform bins. Scores outside it are still
        counted, in the underflow bin ``(-inf, lo)`` and the overflow bin ``[hi, +inf)``.
        Cosine similarity: ``[-1, 1]``; negated Euclidean distance of unit vectors:
        ``[-2, 0]``.
    n_bins : int, default 65536
        Requested number of uniform bins over ``[lo, hi]``. The bin width is rounded
        down to a power of two, ``w = 2**floor(log2((hi - lo) / n_bins))`` (so the
        resolution is at least as fine as requested), and ``lo`` down to a multiple of
        ``w`` (``hi`` up), so that binning is exact in binary floating point (see
        Notes); the realised number of uniform bins lies in ``[n_bins, 2 * n_bins + 1]``
        (exactly ``n_bins`` for a power of two over ``[-1, 1]``). At most ``2**22``.
    extra_edges : sequence of float, default ()
        Additional finite bin edges, typically operating thresholds known in advance
        (a model's published threshold): rates at every edge are exact, so listing a
        threshold here makes its FMR/FNMR exact however fine the bins. Each costs one
        extra comparison per score.
    cell_labels : sequence of hashable, optional
        One label per cell (default ``0 .. n_cells-1``); see :meth:`cell_index`.
    keep_scores : {"auto", "always", "never"}, default "auto"
        Exact mode. ``"always"`` keeps every raw score (memory grows with the run);
        ``"auto"`` keeps them until more than ``keep_scores_limit`` scores have been
        added, then drops them (logged) and continues binned; ``"never"`` is binned
        from the start. While raw scores are kept (:attr:`is_exact`), every read-out
        is computed by :mod:`bench.metrics.rates` on the raw scores and is identical
        to it.
    keep_scores_limit : int, default 1_000_000
        Threshold of the ``"auto"`` policy (total scores over both classes).
    threads : int, default 1
        Worker threads for large updates (``>= 2**20`` scores): each bins a contiguous
        part into private counts, summed at the end (numpy releases the GIL). Counts
        are identical for any value; use the number of idle cores.

    Raises
    ------
    ConfigError
        If the range is empty or not finite, ``n_bins`` is out of range, an extra
        edge is not finite, or the labels do not match ``n_cells``.

    Notes
    -----
    **Bins.** Let the uniform edges be ``e_i = (L + i) w`` (``i = 0..B``, ``L`` an
    integer, ``w = 2**-k``) and ``E`` the sorted union of these edges and the extra
    edges. A score ``s`` goes to bin ``beta(s) = #{e in E : e <= s}``; bin 0 is
    ``(-inf, min E)``, the last bin is ``[max E, +inf)``. For the uniform part the code
    computes ``clip(floor(s * 2**k) - L + 1, 0, B + 1)``: multiplying a binary float by
    a power of two is exact, ``floor`` is exact, adding the integer ``1 - L`` is exact
    while the magnitude is below ``2**24`` (float32; ``2**53`` for float64), and any
    larger magnitude is clipped to the under/overflow bin, where rounding cannot move
    it across an edge. Extra edges add ``[s >= p]`` with ``p`` rounded up to the
    score dtype, which is the same predicate. Hence, **for every edge** ``e`` **and
    every finite score** ``s``: ``s >= e  <=>  beta(s) > index of e``.

    **Rates at an edge are exact.** By the equivalence, ``#{s >= e}`` is a sum of whole
    bins. :meth:`error_rates` therefore returns exact counts at any edge (and at
    ``-inf``/``+inf``); at any other threshold it raises unless ``snap`` is given.

    **Threshold at a target FMR: tolerance.** Let ``C(t) = #{non-mated s >= t}``,
    ``N`` the count, ``k`` the allowed false matches (as in
    :func:`bench.metrics.rates.threshold_at_fmr`) and ``s(k+1)`` the ``(k+1)``-th
    largest score. ``C(t) <= k  <=>  t > s(k+1)``, so the exact order-statistic
    threshold ``t*`` is the smallest *observed* score above ``s(k+1)`` (or
    ``nextafter(max)``), while the binned threshold ``t_h`` returned here is the
    smallest *edge* above ``s(k+1)``, i.e. the smallest edge with ``C(e) <= k``. Then

    1. **conservative**: ``C(t_h) <= k``, so the achieved FMR (counted exactly from
       the bins) never exceeds the target;
    2. **at most one bin above**: if ``s(k+1)`` lies in ``[lo, hi)``, there is a
       uniform edge in ``(s(k+1), s(k+1) + w]``, so ``t_h <= s(k+1) + w < t* + w``;
    3. **below only when equivalent**: if ``t_h < t*`` no score lies in
       ``[t_h, t*)`` (both exceed ``s(k+1)`` and ``t*`` is the smallest score above
       it), so ``C(t_h) = C(t*)``: both thresholds take identical decisions on every
       calibration comparison. If ``t_h >= t*``, the comparisons matched at ``t*`` but
       not at ``t_h`` all lie in the one bin ``[t_h - w, t_h)``.

    So ``t_h - t* < w`` always (when ``s(k+1)`` is inside the range), and ``t_h`` is
    either within one bin width of ``t*`` or decision-equivalent to it. If ``s(k+1)``
    falls in the underflow bin, 1 and 3 still hold and a
    :class:`~bench.errors.ScoreRangeWarning` is issued; if it falls in the overflow bin no edge can
    meet the target and :class:`~bench.errors.DataError` is raised (widen ``hi``;
    extra edges above ``hi`` can resolve it, with the same warning).

    **DET and EER.** The binned DET has one point per non-empty bin, at its lower edge
    (``-inf`` for the underflow bin). Each point equals the exact DET point at the
    smallest observed score in that bin, so the binned DET is a subset of the exact
    DET's points, and the binned EER (same estimator as
    :func:`bench.metrics.rates.equal_error_rate`, over these candidates) is the EER
    estimator applied to the scores rounded down to their bin's lower edge; its
    ``|FMR - FNMR|`` gap is never smaller than the exact one.

    Examples
    --------
    >>> h = ScoreHistogram(2, lo=-1.0, hi=1.0, n_bins=1024, keep_scores="never")
    >>> h.update([0.1, 0.25, 0.5], cells=0, mated=False)
    >>> h.update([0.75, 0.9], cells=0, mated=True)
    >>> r = h.error_rates(0.25, cells=0)
    >>> (r.false_matches, r.n_nonmated, r.false_non_matches, r.n_mated)
    (2, 3, 0, 2)
    """

    def __init__(
        self,
        n_cells: int = 1,
        *,
        lo: float = -1.0,
        hi: float = 1.0,
        n_bins: int = 1 << 16,
        extra_edges: Sequence[float] = (),
        cell_labels: Sequence[Hashable] | None = None,
        keep_scores: Literal["auto", "always", "never"] = "auto",
        keep_scores_limit: int = 1_000_000,
        threads: int = 1,
    ) -> None:
        if not isinstance(n_cells, (int, np.integer)) or isinstance(n_cells, bool) or n_cells < 1:
            raise ConfigError(f"n_cells: expected a positive integer, got {n_cells!r}")
        lo_f, hi_f = float(lo), float(hi)
        if not (math.isfinite(lo_f) and math.isfinite(hi_f) and lo_f < hi_f):
            raise ConfigError(f"score range: expected finite lo < hi, got lo={lo!r}, hi={hi!r}")
        if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or not (
            1 <= n_bins <= _MAX_UNIFORM_BINS
        ):
            raise ConfigError(f"n_bins: expected an integer in [1, {_MAX_UNIFORM_BINS}], got {n_bins!r}")
        if keep_scores not in ("auto", "always", "never"):
            raise ConfigError(f"keep_scores: expected 'auto', 'always' or 'never', got {keep_scores!r}")
        if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
            raise ConfigError(f"threads: expected a positive integer, got {threads!r}")
        self._threads = int(threads)
        if int(keep_scores_limit) < 0:
            raise ConfigError(f"keep_scores_limit: expected >= 0, got {keep_scores_limit!r}")
        # power-of-two bin width and aligned range (exact binning, class Notes)
        k = -math.floor(math.log2((hi_f - lo_f) / int(n_bins)))
        if math.ldexp(1.0, -k) * int(n_bins) > hi_f - lo_f:  # guard against log2 rounding
            k += 1
        width = math.ldexp(1.0, -k)
        lo_index = math.floor(math.ldexp(lo_f, k))
        n_uniform = math.ceil(math.ldexp(hi_f, k)) - lo_index
        self._k = k
        self._lo_index = lo_index
        self._n_uniform = n_uniform
        self._width = width
        uniform_edges = _edge_arrays(k, lo_index, n_uniform, ())[0]
        extra = np.unique(np.asarray(list(extra_edges), dtype=np.float64))
        if extra.size and not np.isfinite(extra).all():
            raise ConfigError(f"extra_edges: expected finite numbers, got {list(extra_edges)!r}")
        if extra.size:
            extra = extra[~np.isin(extra, uniform_edges)]
        self._extra = extra
        # sorted edges and the lower edge of every bin (read-only, shared)
        _, self._edges, self._lower = _edge_arrays(k, lo_index, n_uniform, tuple(extra.tolist()))
        self._nb = self._edges.size + 1  # bins incl. underflow and overflow
        self._n_cells = int(n_cells)
        if cell_labels is None:
            labels: list[Hashable] = list(range(self._n_cells))
        else:
            labels = list(cell_labels)
            if len(labels) != self._n_cells:
                raise ConfigError(f"cell_labels: expected {self._n_cells} labels, got {len(labels)}")
            if len(set(labels)) != len(labels):
                raise ConfigError(f"cell_labels: labels must be distinct, got {labels!r}")
        self._labels = labels
        self._label_index = {lab: i for i, lab in enumerate(labels)}
        self._counts = np.zeros((2, self._n_cells, self._nb), dtype=np.int64)
        # pooled count vectors and totals, keyed by (class, cells); cleared on any change
        self._pooled: dict[tuple[int, bytes], tuple[NDArray[np.int64], int]] = {}
        self._derived: dict[tuple[str, bytes], tuple[NDArray, ...]] = {}
        self._keep = keep_scores
        self._keep_limit = int(keep_scores_limit)
        self._raw: list[tuple[NDArray[np.floating], NDArray[np.int64], NDArray[np.bool_]]] | None
        self._raw = [] if keep_scores != "never" else None
        self._n_raw = 0

    # ------------------------------------------------------------------ description
    @classmethod
    def for_groups(
        cls,
        group_labels: Sequence[Hashable],
        *,
        cross: bool = True,
        **kwargs: object,
    ) -> ScoreHistogram:
        """Histogram whose cells are groups, or ordered pairs of groups.

        Parameters
        ----------
        group_labels : sequence of hashable, length G
            Group labels, in code order.
        cross : bool, default True
            If True the cells are the ``G * G`` ordered pairs ``(g, h)`` (cell index
            ``g * G + h``, see :meth:`cross_cell`): mated comparisons of group ``g``
            are in cell ``(g, g)``, and per-group FMR uses the diagonal cell (the
            "demographically matched impostors" of docs/protocol.md §2.3). If False
            the cells are the ``G`` groups themselves.
        **kwargs
            Passed to the constructor (``lo``, ``hi``, ``n_bins``, ...).

        Returns
        -------
        ScoreHistogram
        """
        groups = list(group_labels)
        if cross:
            labels: list[Hashable] = [(g, h) for g in groups for h in groups]
        else:
            labels = groups
        return cls(len(labels), cell_labels=labels, **kwargs)  # type: ignore[arg-type]

    @staticmethod
    def cross_cell(g: int, h: int, n_groups: int) -> int:
        """Cell index ``g * n_groups + h`` of the ordered group pair ``(g, h)``."""
        return int(g) * int(n_groups) + int(h)

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return self._n_cells

    @property
    def cell_labels(self) -> list[Hashable]:
        """Cell labels, in cell-index order."""
        return list(self._labels)

    def cell_index(self, label: Hashable) -> int:
        """Index of the cell labelled ``label``.

        Raises
        ------
        ConfigError
            If no cell has that label.
        """
        try:
            return self._label_index[label]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown cell label {label!r}; known: {self._labels!r}") from None

    @property
    def bin_width(self) -> float:
        """Width ``w`` of the uniform bins (a power of two)."""
        return self._width

    @property
    def lo(self) -> float:
        """Lower end of the uniform bins (``lo`` rounded down to a multiple of ``w``)."""
        return math.ldexp(float(self._lo_index), -self._k)

    @property
    def hi(self) -> float:
        """Upper end of the uniform bins (``hi`` rounded up to a multiple of ``w``)."""
        return math.ldexp(float(self._lo_index + self._n_uniform), -self._k)

    @property
    def edges(self) -> NDArray[np.float64]:
        """Sorted finite bin edges, shape ``(n_bins_total - 1,)`` (uniform and extra)."""
        return self._edges.copy()

    @property
    def n_uniform_bins(self) -> int:
        """Number of uniform bins of width :attr:`bin_width` between :attr:`lo` and :attr:`hi`."""
        return self._n_uniform

    @property
    def extra_edges(self) -> NDArray[np.float64]:
        """The extra edges that are not on the uniform grid, sorted."""
        return self._extra.copy()

    @property
    def n_bins_total(self) -> int:
        """Number of bins per cell and class, including underflow and overflow."""
        return self._nb

    @property
    def is_exact(self) -> bool:
        """True while raw scores are kept: read-outs then equal :mod:`bench.metrics.rates`."""
        return self._raw is not None

    @property
    def resolution(self) -> float:
        """0.0 in exact mode, else the bin width: the tolerance of :meth:`threshold_at_fmr`."""
        return 0.0 if self.is_exact else self._width

    @property
    def nbytes(self) -> int:
        """Bytes held by counts and kept raw scores."""
        raw = 0
        if self._raw is not None:
            raw = sum(s.nbytes + c.nbytes + m.nbytes for s, c, m in self._raw)
        return int(self._counts.nbytes + raw)

    def counts(self, *, mated: bool, cells: int | Sequence[int] | None = None) -> NDArray[np.int64]:
        """Bin counts of one class, summed over ``cells``.

        Parameters
        ----------
        mated : bool
            Class: True for mated, False for non-mated comparisons.
        cells : int or sequence of int, optional
            Cell indices to pool; None pools all cells.

        Returns
        -------
        ndarray of int64, shape (n_bins_total,)
            Bin ``0`` is ``(-inf, edges[0])``, bin ``j`` is ``[edges[j-1], edges[j])``,
            the last bin is ``[edges[-1], +inf)``.
        """
        return self._stats(mated, cells)[0].copy()

    def _stats(self, mated: bool, cells: int | Sequence[int] | None) -> tuple[NDArray[np.int64], int]:
        """Cached (pooled counts, total) of one class over ``cells``; read-only.

        A single cell's counts are a view of the count array (no copy); read-outs scan
        them in place rather than keeping O(n_bins) derived arrays per selection.
        """
        sel = self._cells(cells)
        kind = _MATED if mated else _NONMATED
        key = (kind, sel.tobytes())
        hit = self._pooled.get(key)
        if hit is None:
            if len(self._pooled) > 256:
                self._pooled.clear()
            rows = self._counts[kind]
            if sel.size == 1:
                c = rows[int(sel[0])]
            elif sel.size == self._n_cells:
                c = rows.sum(axis=0)
            else:
                c = rows[int(sel[0])].copy()
                for i in sel[1:]:
                    c += rows[int(i)]
            hit = self._pooled[key] = (c, int(c.sum()))
        return hit

    def n_comparisons(self, *, mated: bool, cells: int | Sequence[int] | None = None) -> int:
        """Number of comparisons of one class in ``cells`` (None = all)."""
        return self._stats(mated, cells)[1]

    def _invalidate(self) -> None:
        """Forget cached read-out arrays (called whenever the counts change)."""
        self._pooled.clear()
        self._derived.clear()

    def _cells(self, cells: int | Sequence[int] | None) -> NDArray[np.intp]:
        if cells is None:
            return np.arange(self._n_cells)
        if isinstance(cells, (int, np.integer)) and not isinstance(cells, bool):
            if not 0 <= cells < self._n_cells:
                raise ConfigError(f"cells: indices must lie in [0, {self._n_cells}), got {cells!r}")
            return np.array([cells], dtype=np.intp)
        arr = np.atleast_1d(np.asarray(cells))
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            raise ConfigError(f"cells: expected a cell index or a non-empty sequence of them, got {cells!r}")
        if arr.min() < 0 or arr.max() >= self._n_cells:
            raise ConfigError(f"cells: indices must lie in [0, {self._n_cells}), got {cells!r}")
        return np.unique(arr).astype(np.intp)

    # ------------------------------------------------------------------ accumulation
    def update(
        self,
        scores: ArrayLike,
        cells: int | ArrayLike = 0,
        mated: bool | ArrayLike = False,
        *,
        check_finite: bool = True,
    ) -> None:
        """Add comparisons.

        Parameters
        ----------
        scores : array-like of float, shape (n,)
            Similarity scores; float32 and float64 are binned in their own precision
            (exactly, see class Notes), other dtypes are converted to float64.
        cells : int or array-like of int, shape (n,), default 0
            Cell index of every comparison (a scalar applies to all). Passing a scalar
            (all comparisons of one cell, as the blocked scorer does) is the fastest
            path; arrays laid out in long runs of one cell and class are binned run by
            run at nearly the same speed; randomly interleaved cells take one bincount
            over all cells (about twice as slow).
        mated : bool or array-like of bool, shape (n,), default False
            True for mated comparisons (scalar or per comparison).
        check_finite : bool, default True
            Reject NaN/inf scores before anything is counted (one cheap pass). Callers
            that guarantee finite scores (the blocked scorer validates its embeddings
            once) may skip it; then +/-inf land in the overflow/underflow bin and a NaN
            makes ``numpy.bincount`` raise ``ValueError`` after part of the batch was
            counted.

        Raises
        ------
        DataError
            If a score is NaN or infinite, or the shapes disagree.
        ConfigError
            If a cell index is outside ``[0, n_cells)``.
        """
        x = _as_float_array(scores, "scores")
        n = x.size
        cell_arr = np.asarray(cells)
        mated_arr = np.asarray(mated)
        if cell_arr.ndim == 0:
            c = int(cell_arr)
            if not 0 <= c < self._n_cells:
                raise ConfigError(f"cells: index {c} outside [0, {self._n_cells})")
        else:
            if cell_arr.shape != (n,):
                raise DataError(f"cells: expected shape ({n},) like scores, got {cell_arr.shape}")
            if not np.issubdtype(cell_arr.dtype, np.integer):
                raise ConfigError(f"cells: expected integer cell indices, got dtype {cell_arr.dtype}")
            if n and (cell_arr.min() < 0 or cell_arr.max() >= self._n_cells):
                raise ConfigError(
                    f"cells: indices must lie in [0, {self._n_cells}), got range "
                    f"[{cell_arr.min()}, {cell_arr.max()}]"
                )
        if mated_arr.ndim != 0 and mated_arr.shape != (n,):
            raise DataError(f"mated: expected a bool or shape ({n},) like scores, got {mated_arr.shape}")
        if mated_arr.dtype != np.bool_:
            if not (np.issubdtype(mated_arr.dtype, np.integer) and np.isin(mated_arr, (0, 1)).all()):
                raise DataError(f"mated: expected booleans, got dtype {mated_arr.dtype}")
            mated_arr = mated_arr.astype(bool)
        if n == 0:
            return
        # long runs of one (cell, class) -- e.g. scores laid out group by group -- take the
        # single-cell path run by run (cheaper than one bincount over all cells)
        if cell_arr.ndim == 0 and mated_arr.ndim == 0:
            bounds: NDArray[np.intp] | None = np.array([0, n], dtype=np.intp)
        else:
            codes = [a for a in (cell_arr, mated_arr) if a.ndim]
            bounds = _run_starts(codes, n, n // _MIN_RUN)
        if bounds is None:
            # validate everything before changing any state (one pass, memory-bound)
            if check_finite and not np.isfinite(x.sum()):
                _raise_nonfinite(x, "scores")
            if self._raw is not None:
                self._keep_raw(x, cell_arr, mated_arr)
            self._bin_mixed(x, cell_arr, mated_arr, False)
            return
        # run by run; non-finite scores are found while binning (chunks in cache), and the
        # runs already counted are then taken back out, so a rejected update changes nothing
        done: list[tuple[int, int, int, bool]] = []
        try:
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                c = int(cell_arr[a]) if cell_arr.ndim else int(cell_arr)
                m = bool(mated_arr[a]) if mated_arr.ndim else bool(mated_arr)
                self._bin_block(x[a:b], c, m, check_finite, whole=x)
                done.append((a, b, c, m))
        except DataError:
            for a, b, c, m in done:
                self._counts[_MATED if m else _NONMATED, c] -= self._plain_counts(x[a:b])
            self._invalidate()
            raise
        if self._raw is not None:
            self._keep_raw(x, cell_arr, mated_arr)

    def _keep_raw(self, x: NDArray[np.floating], cells: np.ndarray, mated: np.ndarray) -> None:
        n = x.size
        if self._keep == "auto" and self._n_raw + n > self._keep_limit:
            logger.info(
                "ScoreHistogram: more than keep_scores_limit=%d scores, dropping raw scores "
                "(read-outs are binned from now on, resolution %g)",
                self._keep_limit,
                self._width,
            )
            self._raw = None
            return
        assert self._raw is not None  # internal invariant, not user input
        self._raw.append(
            (
                x.copy(),
                np.broadcast_to(cells.astype(np.int64), (n,)).copy(),
                np.broadcast_to(mated, (n,)).copy(),
            )
        )
        self._n_raw += n

    def drop_scores(self) -> None:
        """Leave exact mode now (free the raw scores); read-outs become binned."""
        self._raw = None

    def _bin_index_into(
        self,
        x: NDArray[np.floating],
        fbuf: NDArray[np.floating],
        out: np.ndarray,
        check_finite: bool,
        whole: NDArray[np.floating] | None = None,
    ) -> None:
        """Write ``beta(x)`` into ``out`` (int array; ``x``, ``fbuf``, ``out`` of equal length).

        Raises DataError on non-finite scores when ``check_finite`` (the message counts
        the non-finite scores of ``whole``, the array ``x`` is part of, if given). See
        class Notes for why this is exact.
        """
        dt = x.dtype
        np.multiply(x, dt.type(math.ldexp(1.0, self._k)), out=fbuf)
        # x * 2**k is exact, so the chunk lies inside the uniform range iff its scaled
        # extremes lie in [L, L + B); then floor(.) - L + 1 is in [1, B] and needs no clip.
        # A NaN makes both comparisons false (and min/max NaN-propagating), so NaN and
        # +/-inf always take the checked path.
        inside = x.size > 0 and (
            float(fbuf.min()) >= self._lo_index and float(fbuf.max()) < self._lo_index + self._n_uniform
        )
        if not inside and check_finite and not np.isfinite(x).all():
            _raise_nonfinite(x if whole is None else whole, "scores")
        np.floor(fbuf, out=fbuf)
        np.add(fbuf, dt.type(1 - self._lo_index), out=fbuf)
        if not inside:
            np.clip(fbuf, dt.type(0), dt.type(self._n_uniform + 1), out=fbuf)
        for p in self._extra:
            np.add(fbuf, x >= _ceil_to_dtype(float(p), dt), out=fbuf)
        np.copyto(out, fbuf, casting="unsafe")

    def _index_dtype(self) -> type[np.signedinteger]:
        # int32 conversion and bincount input is ~2x cheaper than int64 (numpy casts it)
        return np.int32 if 2 * self._n_cells * self._nb < 2**31 else np.intp

    def _parts(self, n: int) -> list[tuple[int, int]]:
        """Contiguous ranges for the worker threads (one range when not threaded)."""
        t = self._threads if n >= _THREADED_MIN else 1
        bounds = np.linspace(0, n, t + 1).astype(int)
        return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

    def _map(self, fn, parts: list[tuple[int, int]]) -> list:  # type: ignore[no-untyped-def]
        if len(parts) == 1:
            return [fn(*parts[0])]
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:  # numpy releases the GIL
            return list(pool.map(lambda p: fn(*p), parts))

    def _bin_block(
        self,
        x: NDArray[np.floating],
        cell: int,
        mated: bool,
        check_finite: bool = True,
        select_at_least: np.floating | None = None,
        whole: NDArray[np.floating] | None = None,
    ) -> NDArray[np.intp] | None:
        """All comparisons in one cell and class: bincount over that cell's bins only.

        With ``select_at_least`` (a value of ``x``'s dtype) also returns the positions of
        the scores ``>= select_at_least``, found while the chunk is in cache (used by the
        blocked scorer to feed :class:`SubjectAggregates`). With ``check_finite`` a
        non-finite score raises DataError and leaves the counts unchanged (``whole``:
        the array ``x`` is part of, for the message).
        """
        self._invalidate()
        target = self._counts[_MATED if mated else _NONMATED, cell]
        parts = self._parts(x.size)

        def work(lo: int, hi: int) -> tuple[NDArray[np.int64], list[NDArray[np.intp]]]:
            out = target if len(parts) == 1 else np.zeros(self._nb, dtype=np.int64)
            n = hi - lo
            idx = _scratch_buffer("idx", min(n, _BINCOUNT_CHUNK), self._index_dtype())
            fbuf = _scratch_buffer("f", min(n, _CHUNK), x.dtype)
            hits: list[NDArray[np.intp]] = []
            for a in range(lo, hi, _BINCOUNT_CHUNK):
                m = min(_BINCOUNT_CHUNK, hi - a)
                try:
                    for b in range(0, m, _CHUNK):
                        e = min(b + _CHUNK, m)
                        xc = x[a + b : a + e]
                        self._bin_index_into(xc, fbuf[: e - b], idx[b:e], check_finite, whole)
                        if select_at_least is not None:
                            h = np.flatnonzero(xc >= select_at_least)
                            if h.size:
                                hits.append(h + (a + b))
                except DataError:
                    if out is target and a > lo:  # take back what this call already counted
                        np.subtract(target, self._plain_counts(x[lo:a]), out=target)
                    raise
                out += np.bincount(idx[:m], minlength=self._nb)
            return out, hits

        results = self._map(work, parts)
        if len(parts) > 1:
            for out, _ in results:
                target += out
        if select_at_least is None:
            return None
        hits = [h for _, hs in results for h in hs]
        return np.concatenate(hits) if hits else np.empty(0, dtype=np.intp)

    def _bin_mixed(
        self, x: NDArray[np.floating], cells: np.ndarray, mated: np.ndarray, check_finite: bool = True
    ) -> None:
        """Comparisons of several cells/classes: one bincount over the flat count array."""
        self._invalidate()
        flat = self._counts.reshape(-1)
        nb = self._nb
        it = self._index_dtype()
        kind_offset = self._n_cells * nb
        scalar_offset = (int(cells) * nb if cells.ndim == 0 else 0) + (
            kind_offset if mated.ndim == 0 and bool(mated) else 0
        )
        parts = self._parts(x.size)

        def work(lo: int, hi: int) -> NDArray[np.int64]:
            out = flat if len(parts) == 1 else np.zeros(flat.size, dtype=np.int64)
            n = hi - lo
            idx = np.empty(min(n, _MIXED_BINCOUNT_CHUNK), dtype=it)
            off = np.empty(min(n, _CHUNK), dtype=it)
            fbuf = np.empty(min(n, _CHUNK), dtype=x.dtype)
            for a in range(lo, hi, _MIXED_BINCOUNT_CHUNK):
                m = min(_MIXED_BINCOUNT_CHUNK, hi - a)
                for b in range(0, m, _CHUNK):
                    e = min(b + _CHUNK, m)
                    ib = idx[b:e]
                    ob = off[: e - b]
                    self._bin_index_into(x[a + b : a + e], fbuf[: e - b], ib, check_finite)
                    if cells.ndim:
                        np.multiply(cells[a + b : a + e], nb, out=ob, dtype=it, casting="unsafe")
                        ib += ob
                    if mated.ndim:
                        np.add(ib, kind_offset, out=ib, where=mated[a + b : a + e])
                    if scalar_offset:
                        ib += scalar_offset
                part = np.bincount(idx[:m])
                out[: part.size] += part
            return out

        results = self._map(work, parts)
        if len(parts) > 1:
            for out in results:
                flat += out

    def _plain_counts(self, x: NDArray[np.floating]) -> NDArray[np.int64]:
        """Bin counts of finite scores ``x`` (no state change; used to undo a rejected update)."""
        out = np.zeros(self._nb, dtype=np.int64)
        fbuf = np.empty(min(x.size, _CHUNK), dtype=x.dtype)
        idx = np.empty(min(x.size, _CHUNK), dtype=np.intp)
        for a in range(0, x.size, _CHUNK):
            e = min(a + _CHUNK, x.size)
            self._bin_index_into(x[a:e], fbuf[: e - a], idx[: e - a], False)
            out += np.bincount(idx[: e - a], minlength=self._nb)
        return out

    def bin_index(self, scores: ArrayLike) -> NDArray[np.intp]:
        """Bin of every score (0 = underflow, ``n_bins_total - 1`` = overflow).

        Parameters
        ----------
        scores : array-like of float, shape (n,)

        Returns
        -------
        ndarray of intp, shape (n,)
            ``#{e in edges : e <= s}`` for each score ``s``.

        Raises
        ------
        DataError
            If a score is NaN or infinite.
        """
        x = _as_float_array(scores, "scores")
        out = np.empty(x.size, dtype=np.intp)
        for a in range(0, x.size, _CHUNK):
            e = min(a + _CHUNK, x.size)
            self._bin_index_into(x[a:e], np.empty(e - a, dtype=x.dtype), out[a:e], True)
        return out

    def add_counts(self, counts: ArrayLike, *, cell: int, mated: bool) -> None:
        """Add precomputed bin counts (e.g. from a GPU bincount) to one cell and class.

        Parameters
        ----------
        counts : array-like of int, shape (n_bins_total,)
            Counts per bin, binned by :meth:`bin_index` semantics.
        cell : int
            Cell index.
        mated : bool
            Class.

        Raises
        ------
        DataError
            If the shape is wrong or a count is negative.

        Notes
        -----
        Exact mode cannot be kept when counts arrive without their scores, so this
        leaves exact mode.
        """
        arr = np.asarray(counts)
        if arr.shape != (self._nb,):
            raise DataError(f"counts: expected shape ({self._nb},), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
            raise DataError("counts: expected non-negative integer counts")
        c = self._cells(cell)
        self._raw = None
        self._invalidate()
        self._counts[_MATED if mated else _NONMATED, int(c[0])] += arr.astype(np.int64)

    def compatible_with(self, other: ScoreHistogram) -> bool:
        """True iff ``other`` has the same edges and cell labels (so it can be merged)."""
        return (
            isinstance(other, ScoreHistogram)
            and self._k == other._k
            and self._lo_index == other._lo_index
            and self._n_uniform == other._n_uniform
            and np.array_equal(self._extra, other._extra)
            and self._labels == other._labels
        )

    def merge(self, other: ScoreHistogram) -> ScoreHistogram:
        """Add the counts of ``other`` (e.g. another shard of the same run) in place.

        Counts add exactly, so merging shards equals one pass over all comparisons.
        Raw scores are kept only if both are exact and this histogram's policy allows
        the combined size.

        Parameters
        ----------
        other : ScoreHistogram
            Histogram with identical edges and cell labels.

        Returns
        -------
        ScoreHistogram
            ``self``.

        Raises
        ------
        ConfigError
            If the two histograms have different edges or cells.
        """
        if not self.compatible_with(other):
            raise ConfigError(
                "merge: histograms differ in bin edges or cells "
                f"(width {self._width} vs {getattr(other, '_width', None)}, "
                f"cells {self._n_cells} vs {getattr(other, '_n_cells', None)})"
            )
        self._invalidate()
        self._counts += other._counts
        if self._raw is not None and other._raw is not None and (
            self._keep == "always" or self._n_raw + other._n_raw <= self._keep_limit
        ):
            self._raw.extend((s.copy(), c.copy(), m.copy()) for s, c, m in other._raw)
            self._n_raw += other._n_raw
        else:
            self._raw = None
        return self

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write counts, bin definition and cell labels to a ``.npz`` file.

        No raw scores and no pickle: labels are stored as JSON (strings, numbers and
        tuples of them; tuples come back as tuples).

        Raises
        ------
        ConfigError
            If a cell label cannot be written as JSON.
        """
        try:
            labels_json = json.dumps(self._labels)
        except TypeError as err:
            raise ConfigError(f"save: cell labels must be str, numbers or tuples of them ({err})") from err
        np.savez_compressed(
            path,
            counts=self._counts,
            k=np.int64(self._k),
            lo_index=np.int64(self._lo_index),
            n_uniform=np.int64(self._n_uniform),
            extra=self._extra,
            labels_json=np.asarray(labels_json),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ScoreHistogram:
        """Read a histogram written by :meth:`save` (binned mode).

        Raises
        ------
        DataError
            If the file lacks a field or the counts have the wrong shape.
        """

        def _hashable(v: object) -> Hashable:
            return tuple(_hashable(x) for x in v) if isinstance(v, list) else v  # type: ignore[return-value]

        try:
            with np.load(path, allow_pickle=False) as z:
                counts = z["counts"]
                k = int(z["k"])
                lo_index = int(z["lo_index"])
                n_uniform = int(z["n_uniform"])
                extra = z["extra"]
                labels = [_hashable(v) for v in json.loads(str(z["labels_json"]))]
        except KeyError as err:
            raise DataError(f"{path}: not a ScoreHistogram file (missing {err})") from err
        lo = math.ldexp(float(lo_index), -k)
        hi = math.ldexp(float(lo_index + n_uniform), -k)
        h = cls(len(labels), lo=lo, hi=hi, n_bins=n_uniform, extra_edges=extra.tolist(),
                cell_labels=labels, keep_scores="never")
        if h._k != k or h._lo_index != lo_index or h._n_uniform != n_uniform or counts.shape != h._counts.shape:
            raise DataError(f"{path}: bin definition or count shape inconsistent ({counts.shape})")
        h._counts[...] = counts
        h._invalidate()
        return h

    # ------------------------------------------------------------------ raw selection
    def _raw_scores(self, cells: int | Sequence[int] | None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(mated, non-mated) raw scores of the selected cells, float64."""
        assert self._raw is not None  # callers check is_exact
        sel = self._cells(cells)
        if not self._raw:
            empty = np.empty(0, dtype=np.float64)
            return empty, empty.copy()
        s = np.concatenate([r[0] for r in self._raw]).astype(np.float64)
        c = np.concatenate([r[1] for r in self._raw])
        m = np.concatenate([r[2] for r in self._raw])
        keep = np.isin(c, sel) if sel.size < self._n_cells else np.ones(s.size, dtype=bool)
        return s[keep & m], s[keep & ~m]

    # ------------------------------------------------------------------ read-outs
    def _edge_position(self, t: float) -> int | None:
        """Index ``j`` with ``#{s >= t} = sum(counts[j:])``, or None if ``t`` is no edge."""
        if t == -math.inf:
            return 0
        if t == math.inf:
            return self._nb
        j = int(np.searchsorted(self._edges, t, side="left"))
        if j < self._edges.size and self._edges[j] == t:
            return j + 1
        return None

    def snap_threshold(self, threshold: float, direction: Literal["up", "down"]) -> float:
        """Nearest bin edge at or above (``"up"``) or at or below (``"down"``) ``threshold``.

        ``FMR(up) <= FMR(threshold) <= FMR(down)`` and the reverse for FNMR, so the two
        snapped thresholds bracket the rates at ``threshold``.

        Raises
        ------
        ConfigError
            If ``direction`` is invalid or ``threshold`` is NaN.
        """
        t = _check_threshold(threshold)
        if direction not in ("up", "down"):
            raise ConfigError(f"direction: expected 'up' or 'down', got {direction!r}")
        if self._edge_position(t) is not None:
            return t
        if direction == "up":
            j = int(np.searchsorted(self._edges, t, side="left"))
            return float(self._edges[j]) if j < self._edges.size else math.inf
        j = int(np.searchsorted(self._edges, t, side="right")) - 1
        return float(self._edges[j]) if j >= 0 else -math.inf

    def error_rates(
        self,
        threshold: float,
        *,
        cells: int | Sequence[int] | None = None,
        snap: Literal["up", "down"] | None = None,
    ) -> ErrorRates:
        """FMR and FNMR with counts at ``threshold`` over the pooled ``cells``.

        Parameters
        ----------
        threshold : float
            Decision threshold (match iff ``score >= threshold``). In binned mode it must
            be a bin edge (any value returned by :meth:`threshold_at_fmr`, a member of
            :attr:`edges` or ``extra_edges``, or +/-inf), unless ``snap`` is given.
        cells : int or sequence of int, optional
            Cells to pool (None = all). Mated rates use the mated counts of the same cells.
        snap : {"up", "down"}, optional
            Binned mode only: evaluate at :meth:`snap_threshold` instead (the returned
            ``threshold`` says where). Ignored in exact mode.

        Returns
        -------
        ErrorRates
            Exact counts. Identical to :func:`bench.metrics.rates.error_rates` in exact
            mode.

        Raises
        ------
        ConfigError
            If ``threshold`` is NaN, or (binned mode, no ``snap``) not a bin edge.
        """
        t = _check_threshold(threshold)
        if self.is_exact:
            mated, nonmated = self._raw_scores(cells)
            return _rates.error_rates(mated, nonmated, t)
        if snap is not None:
            t = self.snap_threshold(t, snap)
        j = self._edge_position(t)
        if j is None:
            raise ConfigError(
                f"threshold {t!r} is not a bin edge of this binned histogram, so its rates are not "
                "exact; list it in extra_edges when building the histogram, or pass snap='up'/'down' "
                "to bracket it"
            )
        nm, n_nm = self._stats(False, cells)
        m, n_m = self._stats(True, cells)
        fm = int(nm[j:].sum())  # j = n_bins_total (t = +inf) gives 0
        fnm = int(m[:j].sum())
        return ErrorRates(
            threshold=t,
            false_matches=fm,
            n_nonmated=n_nm,
            fmr=fm / n_nm if n_nm else math.nan,
            false_non_matches=fnm,
            n_mated=n_m,
            fnmr=fnm / n_m if n_m else math.nan,
        )

    def threshold_at_fmr(
        self, target_fmr: float, *, cells: int | Sequence[int] | None = None
    ) -> ThresholdAtFMR:
        """Threshold for a target FMR over the non-mated scores of ``cells`` (§0 rule).

        Parameters
        ----------
        target_fmr : float
            Target FMR ``f`` in (0, 1).
        cells : int or sequence of int, optional
            Calibration cells (None = all non-mated comparisons, the global threshold of
            docs/protocol.md §2.3).

        Returns
        -------
        ThresholdAtFMR
            Exact mode: identical to :func:`bench.metrics.rates.threshold_at_fmr`.
            Binned mode: the smallest bin edge whose exact false-match count is at most
            ``k``; ``achieved_fmr <= target_fmr`` always, and the threshold is less than
            one bin width (:attr:`resolution`) above the exact order-statistic threshold,
            or decision-equivalent to it (class Notes).

        Raises
        ------
        ConfigError
            If ``target_fmr`` is not in (0, 1).
        InsufficientDataError
            If ``N < 1/f``.
        DataError
            If more than ``k`` non-mated scores lie in the overflow bin (widen ``hi``).

        Warns
        -----
        InsufficientDataWarning
            If ``N < 30/f`` (rule of 30, docs/protocol.md §5.5).
        ScoreRangeWarning
            If the cut falls in an underflow bin (resolution not guaranteed).
        """
        f = _check_target(target_fmr)
        if self.is_exact:
            _, nonmated = self._raw_scores(cells)
            return _rates.threshold_at_fmr(nonmated, f)
        nm, n = self._stats(False, cells)
        support = _threshold_support(n, f)
        k = _allowed_false_matches(f, n)
        # candidates: lower edges -inf, edges[0], ..., edges[-1] of bins j = 0 .. nb-1, with
        # #{s >= candidate j} = sum(nm[j:]); the smallest j where that is <= k
        j, false_matches = _top_cut(nm, k)
        if j >= self._nb:
            raise DataError(
                f"{int(nm[-1])} non-mated scores lie at or above the histogram's "
                f"upper edge {self._edges[-1]!r} but only k={k} false matches are allowed at target "
                f"FMR {f:g}; rebuild the histogram with a larger hi"
            )
        threshold = float(self._edges[j - 1])  # j >= 1 since sum(nm[0:]) = n > k
        if not self.lo < threshold <= self.hi:
            warnings.warn(
                f"the cut for target FMR {f:g} falls outside the histogram's "
                f"uniform range [{self.lo!r}, {self.hi!r}); the threshold {threshold!r} is "
                "conservative but may be more than one bin width above the exact one -- rebuild "
                "with a wider range",
                ScoreRangeWarning,
                stacklevel=2,
            )
        return ThresholdAtFMR(
            target_fmr=f,
            threshold=threshold,
            achieved_fmr=false_matches / n,
            k=k,
            n_nonmated=n,
            support=support,
        )

    def det_curve(self, *, cells: int | Sequence[int] | None = None) -> DetCurve:
        """DET curve over the pooled ``cells``.

        Returns
        -------
        DetCurve
            Exact mode: identical to :func:`bench.metrics.rates.det_curve`. Binned mode:
            one point per non-empty bin at its lower edge (``-inf`` for the underflow
            bin), ascending; every point is a point of the exact DET (class Notes).

        Raises
        ------
        DataError
            If either class has no comparison in ``cells``.
        """
        if self.is_exact:
            mated, nonmated = self._raw_scores(cells)
            return _rates.det_curve(mated, nonmated)
        thr, fm, fnm, n_m, n_nm = self._det_counts(cells, "det_curve")
        return DetCurve(thresholds=thr.copy(), fmr=fm / n_nm, fnmr=fnm / n_m, n_mated=n_m, n_nonmated=n_nm)

    def _det_counts(
        self, cells: int | Sequence[int] | None, what: str
    ) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], int, int]:
        """DET arrays (thresholds, false matches, false non-matches); read-only.

        Only the last selection is kept (DET then EER of the same cells share it).
        """
        nm, n_nm = self._stats(False, cells)
        m, n_m = self._stats(True, cells)
        if n_m == 0:
            raise DataError(f"mated_scores: empty; {what} needs at least one score")
        if n_nm == 0:
            raise DataError(f"nonmated_scores: empty; {what} needs at least one score")
        key = ("det", self._cells(cells).tobytes())  # DET and EER share these arrays
        if key not in self._derived:
            self._derived.clear()
            used = np.flatnonzero((nm > 0) | (m > 0))
            # #{non-mated s >= lower edge of bin j}, #{mated s < lower edge of bin j}: the
            # bins between used ones are empty in both classes, so sums over the used bins
            nmu, mu = nm[used], m[used]
            fm = np.cumsum(nmu[::-1])[::-1]
            fnm = np.cumsum(mu)
            fnm -= mu
            self._derived[key] = (self._lower[used], fm, fnm)
        thr, fm, fnm = self._derived[key]
        return thr, fm, fnm, n_m, n_nm

    def equal_error_rate(self, *, cells: int | Sequence[int] | None = None) -> EqualErrorRate:
        """EER over the pooled ``cells`` (bob.measure rule, docs/protocol.md §1.4).

        Returns
        -------
        EqualErrorRate
            Exact mode: identical to :func:`bench.metrics.rates.equal_error_rate`. Binned
            mode: the same rule (:func:`bench.metrics.rates.eer_from_counts`: smallest
            gap ``|FM * M - FNM * N|``, the larger threshold on ties) over the binned DET
            points.

        Raises
        ------
        DataError
            If either class has no comparison in ``cells``.
        """
        if self.is_exact:
            mated, nonmated = self._raw_scores(cells)
            return _rates.equal_error_rate(mated, nonmated)
        thr, fm, fnm, n_m, n_nm = self._det_counts(cells, "equal_error_rate")
        return _rates.eer_from_counts(thr, fm, fnm, n_m, n_nm)


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
        """Keep the ``tail_size`` largest scores and every score tied with the smallest kept."""
        s, a, b = self._tail_arrays()
        if s.size <= self._tail_size:
            return
        v = -np.partition(-s, self._tail_size - 1)[self._tail_size - 1]
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
