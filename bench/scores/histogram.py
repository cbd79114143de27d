"""Streamed score accumulators: fine per-cell score histograms (and, in bench.scores.subjects, subject aggregates).

Large runs (up to ~1e9 comparisons and beyond, sharded) cannot keep every score. This
module keeps, with memory independent of the number of comparisons,

* :class:`ScoreHistogram` -- counts of mated and non-mated scores in fine fixed bins,
  separately per *cell* (a demographic group, or a cross-group cell ``(g, h)``), with
  explicit underflow/overflow bins so no comparison is ever dropped. FMR/FNMR at a
  threshold, the threshold at a target FMR (docs/protocol.md §0), the DET curve and
  the EER are read from the counts. An **exact mode** keeps the raw scores while the
  run is small and then gives results identical to :mod:`bench.metrics.rates`.
* :class:`~bench.scores.subjects.SubjectAggregates` -- what the subject-level bootstrap (docs/protocol.md
  §5.2-§5.4) needs, so it never revisits the comparisons: every mated score with its
  subject, the **exact top tail** of the non-mated scores (every non-mated score at or
  above an adaptive cutoff, with its subject pair), and the per-subject image counts
  from which the non-mated comparison counts of any subject pair follow (all-vs-all
  design: ``n_ij = m_i * m_j``). See :class:`~bench.scores.subjects.SubjectAggregates` for why this design
  was chosen over per-subject histograms.

Conventions (docs/protocol.md §0): scores are similarities (higher = more alike); a
comparison matches iff ``score >= threshold``; ``FMR(t) = #{non-mated s >= t} / N``;
``FNMR(t) = #{mated s < t} / M``. Results reuse the result types of
:mod:`bench.metrics.rates` (:class:`~bench.metrics.rates.ErrorRates`,
:class:`~bench.metrics.rates.ThresholdAtFMR`, :class:`~bench.metrics.rates.DetCurve`,
:class:`~bench.metrics.rates.EqualErrorRate`).

The histogram is split along its seams: state, merge and persistence here; binning in
:mod:`bench.scores.binning`; read-outs in :mod:`bench.scores.histogram_readouts`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from bench.errors import ConfigError, DataError
from bench.scores.binning import _MATED, _MAX_UNIFORM_BINS, _NONMATED, HistogramBinning, _edge_arrays
from bench.scores.histogram_readouts import HistogramReadouts

__all__ = ["ScoreHistogram"]

logger = logging.getLogger(__name__)


# ============================================================================ histogram
class ScoreHistogram(HistogramBinning, HistogramReadouts):
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
