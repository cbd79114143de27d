"""Blocked scoring of embeddings streamed straight into score histograms.

For large all-vs-all runs (1e9 comparisons from ~45k images) the score matrix cannot be
held: it is computed block by block with ``torch`` matrix products (CPU or CUDA) and
every block is binned into a :class:`~bench.scores.histogram.ScoreHistogram` (and,
optionally, offered to :class:`~bench.scores.subjects.SubjectAggregates`) before the
next one is computed. Memory is ``O(block_size**2 + n * d)``.

Scores are similarities (metrics-reference §0): cosine similarity of unit-norm
embeddings, or the negated Euclidean distance ``-||a - b||`` (NIST's convention for
distances, S5), computed as ``-sqrt(max(|a|^2 + |b|^2 - 2 a.b, 0))``. In all-vs-all
mode every unordered pair of distinct images ``i < j`` is scored once; a pair is mated
iff both images have the same subject id. The non-mated cell of a pair is the
*unordered* pair of the two images' groups (image order carries no meaning in an
all-vs-all run).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from bench.errors import ConfigError, DataError
from bench.scores.histogram import ScoreHistogram
from bench.scores.binning import _ceil_to_dtype
from bench.scores.subjects import SubjectAggregates

__all__ = ["METRICS", "StreamStats", "score_all_vs_all", "score_listed_pairs", "default_cell_map"]

logger = logging.getLogger(__name__)

#: Supported comparison measures.
METRICS = ("cosine", "euclidean")

#: Largest deviation of an embedding norm from 1 accepted for ``metric="cosine"``.
UNIT_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class StreamStats:
    """What a streamed scoring run did.

    Attributes
    ----------
    n_images : int
        Number of embeddings.
    n_comparisons : int
        Comparisons scored and binned (mated + non-mated).
    n_mated, n_nonmated : int
        Of which mated / non-mated.
    n_blocks : int
        Matrix products computed.
    seconds : float
        Wall-clock time of the run.
    device : str
        Torch device used for the matrix products (and for binning on CUDA).
    """

    n_images: int
    n_comparisons: int
    n_mated: int
    n_nonmated: int
    n_blocks: int
    seconds: float
    device: str


def default_cell_map(n_groups: int) -> NDArray[np.intp]:
    """Unordered cross-cell map: pair ``(g, h)`` -> cell ``min(g,h) * G + max(g,h)``.

    Matches the cell layout of :meth:`ScoreHistogram.for_groups` with ``cross=True``
    (only the cells with ``g <= h`` receive counts).

    Parameters
    ----------
    n_groups : int
        Number of groups ``G``.

    Returns
    -------
    ndarray of intp, shape (G, G)
    """
    g = np.arange(n_groups)
    return (np.minimum(g[:, None], g[None, :]) * n_groups + np.maximum(g[:, None], g[None, :])).astype(np.intp)


def _validate(
    embeddings: ArrayLike,
    metric: str,
    device: str | torch.device,
) -> tuple[torch.Tensor, torch.device]:
    if metric not in METRICS:
        raise ConfigError(f"unknown score metric {metric!r}; valid: {list(METRICS)}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device: cannot use {device!r} ({err})") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but CUDA is not available")
    if isinstance(embeddings, torch.Tensor):
        x = embeddings.detach()
    else:
        arr = np.asarray(embeddings)
        if not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"embeddings: expected a numeric (n, d) array, got dtype {arr.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.ndim != 2 or x.shape[1] < 1:
        raise DataError(f"embeddings: expected shape (n, d) with d >= 1, got {tuple(x.shape)}")
    x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0, 0])
        raise DataError(f"embeddings: row {bad} holds NaN or inf")
    if metric == "cosine" and x.shape[0]:
        norms = torch.linalg.vector_norm(x.to(torch.float64), dim=1)
        dev_norm = (norms - 1.0).abs()
        if bool((dev_norm > UNIT_NORM_TOLERANCE).any()):
            bad = int(torch.argmax(dev_norm))
            raise DataError(
                f"embeddings: metric='cosine' expects unit-norm rows; row {bad} has norm "
                f"{float(norms[bad]):.6g} (normalise the embeddings first)"
            )
    return x.to(dev).contiguous(), dev


def _codes(values: ArrayLike, name: str, n: int, upper: int | None) -> NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise DataError(f"{name}: expected shape ({n},) (one per embedding), got {arr.shape}")
    if n and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{name}: expected integer codes, got dtype {arr.dtype}")
    if n and arr.min() < 0:
        raise DataError(f"{name}: codes must be >= 0, got {arr.min()}")
    if n and upper is not None and arr.max() >= upper:
        raise DataError(f"{name}: codes must be < {upper}, got {arr.max()}")
    return arr.astype(np.int64)


def _segments(groups_sorted: NDArray[np.int64], block_size: int) -> list[tuple[int, int, int]]:
    """(start, stop, group) runs of at most ``block_size`` rows within one group."""
    n = groups_sorted.size
    cuts = np.flatnonzero(groups_sorted[1:] != groups_sorted[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [n]]) if n else np.zeros(1, dtype=np.int64)
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        for s in range(int(a), int(b), block_size):
            out.append((s, min(s + block_size, int(b)), int(groups_sorted[a])))
    return out


def _histogram_cut(hist: ScoreHistogram, tail_size: int) -> float:
    """Largest bin edge with at least ``tail_size`` pooled non-mated scores at or above it."""
    suffix = np.cumsum(hist.counts(mated=False)[::-1])[::-1]
    j = int(np.flatnonzero(suffix >= tail_size)[-1]) if suffix[0] >= tail_size else 0
    return -math.inf if j == 0 else float(hist.edges[j - 1])


class _CpuSink:
    """Post-processes CPU blocks with numpy (torch CPU element-wise ops are slower here)."""

    def __init__(
        self,
        hist: ScoreHistogram,
        agg: SubjectAggregates | None,
        metric: str,
        sq: torch.Tensor | None,
    ) -> None:
        self.hist = hist
        self.agg = agg
        self.metric = metric
        self.sq = sq.numpy() if sq is not None else None
        self.n_mated = 0
        self.n_nonmated = 0

    def _euclid(self, s: NDArray[np.float32], r0: int, r1: int, c0: int, c1: int) -> None:
        assert self.sq is not None  # set when metric == "euclidean"
        s *= np.float32(-2.0)
        s += self.sq[r0:r1, None]
        s += self.sq[None, c0:c1]
        np.maximum(s, np.float32(0.0), out=s)
        np.sqrt(s, out=s)
        np.negative(s, out=s)

    def _cut32(self) -> np.float32 | None:
        if self.agg is None or self.agg.cutoff == -math.inf:
            return None
        return _ceil_to_dtype(self.agg.cutoff, np.dtype(np.float32))  # type: ignore[return-value]

    def _offer_tail(
        self,
        s: NDArray[np.float32],
        sr: NDArray[np.int64],
        sc: NDArray[np.int64],
        hits: NDArray[np.intp] | None,
        valid: NDArray[np.bool_] | None,
    ) -> None:
        agg = self.agg
        if agg is None:
            return
        flat = s.reshape(-1)
        if agg.cutoff == -math.inf:
            # first block(s): take a cutoff from the histogram, which holds this block already.
            # Any cutoff is valid while the aggregates still hold everything they were given;
            # this one keeps about tail_size scores.
            agg.raise_cutoff(_histogram_cut(self.hist, agg.tail_size))
            hits = None
            if agg.cutoff == -math.inf and valid is None:
                hits = np.arange(flat.size)
        if hits is None:
            cut = self._cut32()
            m = s >= cut if cut is not None else np.ones(s.shape, dtype=bool)
            if valid is not None:
                m &= valid
            hits = np.flatnonzero(m)
        if hits.size > agg.tail_size:
            vals = flat[hits]
            v = -np.partition(-vals, agg.tail_size)[agg.tail_size]  # (tail_size+1)-th largest
            new_cut = np.nextafter(np.float32(v), np.float32(np.inf))
            agg.raise_cutoff(float(new_cut))
            hits = hits[vals >= new_cut]
        if hits.size:
            r, c = np.divmod(hits, s.shape[1])
            agg.add_nonmated(flat[hits], sr[r], sc[c])

    def block(
        self,
        s_t: torch.Tensor,
        cell: int,
        r0: int,
        r1: int,
        c0: int,
        c1: int,
        subj_s: NDArray[np.int64],
        *,
        diagonal: bool,
        straddle: bool,
    ) -> None:
        s = s_t.numpy()
        if self.metric == "euclidean":
            self._euclid(s, r0, r1, c0, c1)
        sr, sc = subj_s[r0:r1], subj_s[c0:c1]
        if not diagonal and not straddle:
            flat = s.reshape(-1)
            cut = self._cut32()
            if self.hist.is_exact:
                self.hist.update(flat, cell, False, check_finite=False)
                hits = None
            else:
                hits = self.hist._bin_block(flat, cell, False, check_finite=False, select_at_least=cut)
            self.n_nonmated += flat.size
            self._offer_tail(s, sr, sc, hits, None)
            return
        valid = np.ones(s.shape, dtype=bool)
        if diagonal:
            valid = np.triu(valid, k=1)
        mated = (sr[:, None] == sc[None, :]) & valid
        nonmated = valid & ~mated
        ms = s[mated]
        self.hist.update(ms, cell, True, check_finite=False)
        self.hist.update(s[nonmated], cell, False, check_finite=False)
        self.n_mated += ms.size
        self.n_nonmated += int(nonmated.sum())
        if self.agg is not None:
            if ms.size:
                self.agg.add_mated(ms, sr[np.nonzero(mated)[0]])
            self._offer_tail(s, sr, sc, None, nonmated)

    def finish(self) -> None:
        return None


class _TorchSink:
    """Post-processes blocks on a CUDA device: binning and tail selection stay there."""

    def __init__(
        self,
        hist: ScoreHistogram,
        agg: SubjectAggregates | None,
        metric: str,
        sq: torch.Tensor | None,
        subj_s: NDArray[np.int64],
        device: torch.device,
    ) -> None:
        self.hist = hist
        self.agg = agg
        self.metric = metric
        self.sq = sq
        self.subj = torch.from_numpy(subj_s).to(device)
        self.device = device
        self.on_device = not hist.is_exact  # exact mode needs the raw scores on the host
        self.scale = 1.0 / hist.bin_width  # power of two: exact in float32
        self.add = 1.0 - hist.lo / hist.bin_width  # an integer
        self.top = float(hist.n_uniform_bins + 1)
        self.extra = [float(_ceil_to_dtype(float(p), np.dtype(np.float32))) for p in hist.extra_edges]
        self.counts = torch.zeros((2, hist.n_cells, hist.n_bins_total), dtype=torch.int64, device=device)
        self.n_mated = 0
        self.n_nonmated = 0

    def _to_hist(self, v: torch.Tensor, cell: int, mated: bool) -> None:
        if v.numel() == 0:
            return
        if not self.on_device:
            self.hist.update(v.cpu().numpy().reshape(-1), cell, mated, check_finite=False)
            return
        idx = torch.floor(v.reshape(-1) * self.scale)
        idx.add_(self.add).clamp_(0.0, self.top)
        for p in self.extra:
            idx.add_((v.reshape(-1) >= p).to(idx.dtype))
        self.counts[int(mated), cell] += torch.bincount(idx.to(torch.int64), minlength=self.hist.n_bins_total)

    def _offer_tail(self, s: torch.Tensor, sr: torch.Tensor, sc: torch.Tensor, valid: torch.Tensor | None) -> None:
        agg = self.agg
        if agg is None:
            return
        if agg.cutoff == -math.inf:
            m = torch.ones_like(s, dtype=torch.bool)
        else:
            m = s >= float(_ceil_to_dtype(agg.cutoff, np.dtype(np.float32)))
        if valid is not None:
            m &= valid
        n_sel = int(m.sum())
        if n_sel > agg.tail_size:
            top = torch.topk(s[m], agg.tail_size + 1).values
            new_cut = float(np.nextafter(np.float32(float(top[-1])), np.float32(np.inf)))
            agg.raise_cutoff(new_cut)
            m &= s >= new_cut
        r, c = m.nonzero(as_tuple=True)
        if r.numel():
            agg.add_nonmated(s[r, c].cpu().numpy(), sr[r].cpu().numpy(), sc[c].cpu().numpy())

    def block(
        self,
        s: torch.Tensor,
        cell: int,
        r0: int,
        r1: int,
        c0: int,
        c1: int,
        subj_s: NDArray[np.int64],
        *,
        diagonal: bool,
        straddle: bool,
    ) -> None:
        if self.metric == "euclidean":
            assert self.sq is not None
            s.mul_(-2.0).add_(self.sq[r0:r1, None]).add_(self.sq[None, c0:c1]).clamp_(min=0.0).sqrt_().neg_()
        sr, sc = self.subj[r0:r1], self.subj[c0:c1]
        if not diagonal and not straddle:
            self._to_hist(s, cell, False)
            self.n_nonmated += s.numel()
            self._offer_tail(s, sr, sc, None)
            return
        valid = torch.ones_like(s, dtype=torch.bool)
        if diagonal:
            valid = torch.triu(valid, diagonal=1)
        mated = (sr[:, None] == sc[None, :]) & valid
        nonmated = valid & ~mated
        ms = s[mated]
        self._to_hist(ms, cell, True)
        self._to_hist(s[nonmated], cell, False)
        self.n_mated += ms.numel()
        self.n_nonmated += int(nonmated.sum())
        if self.agg is not None:
            if ms.numel():
                r, _ = mated.nonzero(as_tuple=True)
                self.agg.add_mated(ms.cpu().numpy(), sr[r].cpu().numpy())
            self._offer_tail(s, sr, sc, nonmated)

    def finish(self) -> None:
        if self.on_device:
            counts = self.counts.cpu().numpy()
            for kind in (0, 1):
                for cell in np.flatnonzero(counts[kind].sum(axis=1)):
                    self.hist.add_counts(counts[kind, cell], cell=int(cell), mated=bool(kind))
            self.counts.zero_()
        torch.cuda.synchronize(self.device)


def _run_blocks(
    x: torch.Tensor,
    segs: list[tuple[int, int, int]],
    seg_subjects: list[NDArray[np.int64]],
    cmap: NDArray[np.intp],
    subj_s: NDArray[np.int64],
    sink: _CpuSink | _TorchSink,
) -> int:
    """Compute every upper-triangle block product and hand it to ``sink``; returns the count."""
    n_blocks = 0
    with torch.inference_mode():
        for ri, (r0, r1, gr) in enumerate(segs):
            xr = x[r0:r1]
            for ci in range(ri, len(segs)):
                c0, c1, gc = segs[ci]
                s = xr @ x[c0:c1].T
                n_blocks += 1
                cell = int(cmap[gr, gc])
                # a subject with images in both segments (only possible within a group,
                # unless group labels vary between a subject's images)
                straddle = np.intersect1d(seg_subjects[ri], seg_subjects[ci], assume_unique=True).size > 0
                sink.block(s, cell, r0, r1, c0, c1, subj_s, diagonal=ci == ri, straddle=straddle)
    return n_blocks


def score_all_vs_all(
    embeddings: ArrayLike | torch.Tensor,
    subject_ids: ArrayLike,
    group_codes: ArrayLike,
    histogram: ScoreHistogram,
    *,
    metric: str = "cosine",
    aggregates: SubjectAggregates | None = None,
    cell_map: ArrayLike | None = None,
    device: str | torch.device = "cpu",
    block_size: int = 4096,
) -> StreamStats:
    """Score every pair ``i < j`` of embeddings and stream the scores into ``histogram``.

    Parameters
    ----------
    embeddings : array-like or torch.Tensor, shape (n, d)
        Embeddings (converted to float32). ``metric="cosine"`` requires unit-norm rows
        (within ``UNIT_NORM_TOLERANCE``).
    subject_ids : array-like of int, shape (n,)
        Subject code of every embedding (``0 .. S-1`` when ``aggregates`` is given).
    group_codes : array-like of int, shape (n,)
        Group code in ``[0, G)`` of every embedding.
    histogram : ScoreHistogram
        Receives every comparison: mated ones in their cell, non-mated ones in theirs.
    metric : {"cosine", "euclidean"}, default "cosine"
        ``cosine``: ``a.b`` in [-1, 1]. ``euclidean``: ``-||a - b||`` in (-inf, 0].
    aggregates : SubjectAggregates, optional
        Also receives every mated comparison and the non-mated tail, for the bootstrap.
        Its subjects must be the subject codes, with matching groups and image counts.
    cell_map : array-like of int, shape (G, G), optional
        Histogram cell of a comparison between groups ``g`` and ``h`` (must be
        symmetric). Default :func:`default_cell_map` (needs ``histogram.n_cells >= G*G``).
    device : str or torch.device, default "cpu"
        Where the matrix products run. On CUDA the binning runs there too.
    block_size : int, default 4096
        Rows/columns per block; memory ``~ 3 * 4 * block_size**2`` bytes.

    Returns
    -------
    StreamStats

    Raises
    ------
    ConfigError
        Unknown metric or device, bad ``block_size`` or ``cell_map``.
    DataError
        Non-finite or non-unit embeddings (cosine), codes of the wrong shape or range,
        or subjects inconsistent with ``aggregates``.

    Notes
    -----
    Images are sorted by (group, subject) once; blocks are cut at group boundaries, so
    every block belongs to one histogram cell and is binned on the single-cell fast
    path. Only blocks that straddle a subject (and the diagonal blocks) need a mated
    mask. The score of a pair does not depend on the block it falls in up to float32
    rounding of the matrix product. Products run at full float32 precision
    (``torch.set_float32_matmul_precision("highest")`` for the duration of the call,
    then restored), so a global TF32 setting cannot coarsen the scores on CUDA.
    """
    t0 = time.perf_counter()
    x, dev = _validate(embeddings, metric, device)
    n = int(x.shape[0])
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ConfigError(f"block_size: expected a positive integer, got {block_size!r}")
    subj = _codes(subject_ids, "subject_ids", n, aggregates.n_subjects if aggregates is not None else None)
    grp = _codes(group_codes, "group_codes", n, None)
    n_groups = int(grp.max()) + 1 if n else 1
    if aggregates is not None:
        n_groups = max(n_groups, len(aggregates.group_labels))
    if cell_map is None:
        if histogram.n_cells < n_groups * n_groups:
            raise ConfigError(
                f"histogram has {histogram.n_cells} cells but the default cross-cell layout needs "
                f"G*G = {n_groups * n_groups}; build it with ScoreHistogram.for_groups(labels) or pass cell_map"
            )
        cmap = default_cell_map(n_groups)
    else:
        cmap = np.asarray(cell_map)
        if cmap.ndim != 2 or cmap.shape[0] != cmap.shape[1] or cmap.shape[0] < n_groups:
            raise ConfigError(f"cell_map: expected shape ({n_groups}, {n_groups}) or larger, got {cmap.shape}")
        if not np.array_equal(cmap, cmap.T):
            raise ConfigError("cell_map: must be symmetric (all-vs-all pairs are unordered)")
        if cmap.min() < 0 or cmap.max() >= histogram.n_cells:
            raise ConfigError(f"cell_map: cells must lie in [0, {histogram.n_cells})")
    if aggregates is not None:
        sg = aggregates._group  # subject -> group
        if n and (sg[subj] != grp).any():
            i = int(np.flatnonzero(sg[subj] != grp)[0])
            raise DataError(
                f"group_codes: image {i} has group {int(grp[i])} but its subject {int(subj[i])} is in "
                f"group {int(sg[subj[i]])} in the aggregates"
            )
        m = np.bincount(subj, minlength=aggregates.n_subjects)
        if not np.array_equal(m, aggregates._m):
            raise DataError("aggregates: images_per_subject does not match the subject_ids of the embeddings")

    order = np.lexsort((subj, grp))
    subj_s, grp_s = subj[order], grp[order]
    x = x[torch.from_numpy(order).to(dev)]
    sq = (x * x).sum(dim=1) if metric == "euclidean" else None
    segs = _segments(grp_s, int(block_size))
    seg_subjects = [np.unique(subj_s[a:b]) for a, b, _ in segs]
    if dev.type == "cpu":
        sink: _CpuSink | _TorchSink = _CpuSink(histogram, aggregates, metric, sq)
    else:
        sink = _TorchSink(histogram, aggregates, metric, sq, subj_s, dev)
    n_blocks = 0
    # full float32 products: a global "high"/"medium" setting would let CUDA use TF32
    # (10-bit mantissa) and silently coarsen every score; restored afterwards
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        n_blocks = _run_blocks(x, segs, seg_subjects, cmap, subj_s, sink)
    finally:
        torch.set_float32_matmul_precision(precision)
    sink.finish()
    n_mated, n_nonmated = sink.n_mated, sink.n_nonmated
    stats = StreamStats(
        n_images=n,
        n_comparisons=n_mated + n_nonmated,
        n_mated=n_mated,
        n_nonmated=n_nonmated,
        n_blocks=n_blocks,
        seconds=time.perf_counter() - t0,
        device=str(dev),
    )
    logger.info(
        "scored %d comparisons (%d mated) of %d images in %d blocks on %s in %.2f s",
        stats.n_comparisons, n_mated, n, n_blocks, dev, stats.seconds,
    )
    return stats


def score_listed_pairs(
    embeddings: ArrayLike | torch.Tensor,
    idx_a: ArrayLike,
    idx_b: ArrayLike,
    cells: ArrayLike,
    mated: ArrayLike,
    histogram: ScoreHistogram,
    *,
    metric: str = "cosine",
    device: str | torch.device = "cpu",
    chunk: int = 1 << 20,
) -> StreamStats:
    """Score protocol-listed comparisons ``(idx_a[k], idx_b[k])`` into ``histogram``.

    Parameters
    ----------
    embeddings : array-like or torch.Tensor, shape (n, d)
        Embeddings (float32; unit-norm rows for cosine).
    idx_a, idx_b : array-like of int, shape (p,)
        Rows of the two images of each comparison.
    cells : array-like of int, shape (p,)
        Histogram cell of each comparison (the protocol decides, e.g. ordered
        ``(reference group, probe group)`` cells).
    mated : array-like of bool, shape (p,)
        True for mated comparisons.
    histogram : ScoreHistogram
    metric : {"cosine", "euclidean"}, default "cosine"
    device : str or torch.device, default "cpu"
    chunk : int, default 2**20
        Comparisons scored per step (memory ``~ 2 * chunk * d * 4`` bytes).

    Returns
    -------
    StreamStats

    Raises
    ------
    ConfigError, DataError
        As :func:`score_all_vs_all`; also for indices out of range or shape mismatches.
    """
    t0 = time.perf_counter()
    x, dev = _validate(embeddings, metric, device)
    n = int(x.shape[0])
    a_arr = np.asarray(idx_a)
    if a_arr.ndim != 1:
        raise DataError(f"idx_a: expected a 1-D array of row indices, got shape {a_arr.shape}")
    p = a_arr.shape[0]
    a = _codes(a_arr, "idx_a", p, n)
    b = _codes(idx_b, "idx_b", p, n)
    c = _codes(cells, "cells", p, histogram.n_cells)
    m = np.asarray(mated)
    if m.shape != (p,) or m.dtype != np.bool_:
        raise DataError(f"mated: expected a bool array of shape ({p},), got {m.dtype} {m.shape}")
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ConfigError(f"chunk: expected a positive integer, got {chunk!r}")
    n_blocks = 0
    with torch.inference_mode():
        for s0 in range(0, p, int(chunk)):
            s1 = min(p, s0 + int(chunk))
            xa = x[torch.from_numpy(a[s0:s1]).to(dev)]
            xb = x[torch.from_numpy(b[s0:s1]).to(dev)]
            if metric == "cosine":
                s = (xa * xb).sum(dim=1)
            else:
                s = -torch.linalg.vector_norm(xa - xb, dim=1)
            histogram.update(s.cpu().numpy(), c[s0:s1], m[s0:s1])
            n_blocks += 1
    n_m = int(m.sum())
    return StreamStats(
        n_images=n,
        n_comparisons=p,
        n_mated=n_m,
        n_nonmated=p - n_m,
        n_blocks=n_blocks,
        seconds=time.perf_counter() - t0,
        device=str(dev),
    )
