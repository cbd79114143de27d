"""Read-outs of :class:`bench.scores.histogram.ScoreHistogram`: rates, thresholds, DET and EER from binned counts.

Conventions (docs/protocol.md §0): a comparison matches iff ``score >= threshold``;
``FMR(t) = #{non-mated s >= t} / N``; ``FNMR(t) = #{mated s < t} / M``. In exact mode
the results are those of :mod:`bench.metrics.rates` on the raw scores.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from bench.errors import ConfigError, DataError, ScoreRangeWarning
from bench.metrics import rates as _rates
from bench.metrics.rates import (
    DetCurve, EqualErrorRate, ErrorRates, ThresholdAtFMR, _allowed_false_matches, _check_target, _check_threshold, _threshold_support,
)


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



class HistogramReadouts:
    """Read-out half of :class:`bench.scores.histogram.ScoreHistogram` (a mixin, not used alone):
    error rates at a threshold, the threshold at a target FMR (docs/protocol.md §0), the DET
    curve and the EER, from the counts (or the raw scores in exact mode)."""

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
