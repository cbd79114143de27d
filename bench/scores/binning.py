"""Binning of streamed scores into :class:`bench.scores.histogram.ScoreHistogram` (its accumulation half).

Chunked, optionally threaded, run-length-aware ``np.bincount`` over cell/class codes;
exact mode keeps the raw scores of small runs. Split from the histogram's read-outs
(:mod:`bench.scores.histogram_readouts`) and its state (:mod:`bench.scores.histogram`).
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bench.errors import ConfigError, DataError

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


def _ceil_to_dtype(value: float, dtype: np.dtype) -> np.floating:
    """Smallest number of ``dtype`` that is >= ``value`` (so ``x >= v <=> x >= result``)."""
    v = dtype.type(value)
    if float(v) < value:
        v = np.nextafter(v, dtype.type(np.inf))
    return v



class HistogramBinning:
    """Accumulation half of :class:`bench.scores.histogram.ScoreHistogram` (a mixin, not used alone):
    binning blocks of scores into the per-cell counts (run-length, threaded and mixed-cell
    paths), the exact-mode raw scores, and adding counts directly. The state it reads
    (``_counts``, ``_raw``, edges, threads) is set up by ``ScoreHistogram.__init__``."""

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
