"""The histogram store: the score store of runs too large for the comparison table.

:func:`bench.run.evaluate` builds a :class:`HistogramStore` when ``protocol.engine``
resolves to ``stream`` (``auto`` above ``protocol.table_max_comparisons``
comparisons); it implements :class:`bench.scores.store.ScoreStore` as
:class:`bench.scores.table.TableStore` does, and the one orchestration in
:mod:`bench.run` reads both the same way. Every unordered pair of acquired images is scored once, in blocks
(:func:`bench.protocol.streaming.score_all_vs_all`), straight into

* a :class:`~bench.scores.histogram.ScoreHistogram`: mated and non-mated counts in
  fine fixed bins per cell (memory independent of the number of comparisons), and
* :class:`~bench.scores.subjects.SubjectAggregates`: every mated score with its
  subject and the exact top tail of the non-mated scores with their subject pairs.

The run's :class:`~bench.run.RunResult` has the same tables as the table
engine (per-group FTA/FMR/FNMR rows with counts, Wilson/Clopper-Pearson intervals,
flags and subject-bootstrap intervals; generalized rates; differentials with
bootstrap intervals; EER and DET per group; cross-group FMR matrices), but no
comparison table: ``comparisons`` is None and :attr:`RunResult.stream` holds the
histograms (written as ``histograms.npz``).

Cells: joint groups
-------------------
The engine keys a comparison's cell by one group code per image. Here the code is
the image's **joint group**: the tuple of its labels for every reported attribute
(intersections included), and a cell is an unordered pair of joint groups. Every
quantity of one attribute is a union of such cells -- group ``g`` of attribute ``X``
is the set of cells whose two joint groups both have ``X = g`` (the demographically
matched impostors of metrics-reference §2.3), cross cell ``(g, h)`` those with one
side in ``g`` and the other in ``h`` -- so per attribute the read-outs pool cells
(integer counts add exactly). Chosen over one histogram per attribute because one
pass bins each comparison once whatever the number of attributes (per-attribute
histograms would bin it once per attribute), and one set of subject aggregates then
serves every attribute's bootstrap. The cost is ``G (G + 1) / 2`` cells for ``G``
joint groups (4 ethnicities x 2 genders: 36 cells x 65,538 bins x 16 bytes = 38 MB).

The subject aggregates need each subject in one joint group. When an attribute varies
between a subject's images (image-level labels) the histogram still gives every rate
(cells are built from image labels, as the table engine's groups are), but target-FMR
thresholds come from the histogram (binned tolerance below) and the subject bootstrap
is unavailable (:class:`~bench.errors.ConfigError` when it is requested).

What is exact, and the stated tolerance
---------------------------------------
* **Thresholds at a target FMR**: the §0 order statistic of the retained non-mated
  tail (:meth:`SubjectAggregates.threshold_at_fmr`): exact, no bin tolerance. Only if
  the cut falls below the tail cutoff (tail too small) does the threshold fall back to
  the histogram (smallest bin edge with at most ``k`` false matches: conservative,
  less than one bin width ``w`` above the exact threshold or decision-equivalent to it;
  recorded per threshold as ``calibration_method``).
* **Rates at a threshold**: exact counts at any threshold at or above the tail cutoff
  (the calibrated ones: false matches from the tail, false non-matches from the kept
  mated scores) and at the model's nominal and external thresholds (added as extra
  bin edges before the pass).
* **Bootstrap**: the table engine's draws (same seed, strata and subject order) and
  §5.4 re-calibration on the weighted tail (:meth:`SubjectAggregates.replicate_counts`);
  a replicate whose cut falls below the tail cutoff is dropped (counted in
  ``engine.bootstrap_unresolved``).
* **EER and DET**: from the histogram. Each DET point is an exact DET point (at the
  lowest score of a bin); the EER is the bob.measure estimator over those points, its
  threshold a bin edge (within ``w`` of the exact one). Runs of at most 1e6
  comparisons keep their raw scores (histogram exact mode) and are exact.
* **Scores** are float32 matrix products (the table engine computes float64): the two
  engines' scores differ by about 1e-7 (cosine), so a threshold (a score) agrees to
  about 1e-6 and a count differs only if a comparison's two versions straddle it. At
  2e6 comparisons (the demo) the engines' tables agreed exactly but for the binned EER;
  at 2e7 every count and group interval still agreed, and one bootstrap bound of one
  differential differed in its 5th digit (a replicate whose re-calibrated cut fell
  between two scores closer than float32 resolution).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from bench.errors import ConfigError, InsufficientDataError
from bench.metrics.bootstrap import BootstrapReplicates, bootstrap_group_rates
from bench.metrics.groups import ALL_GROUP, CROSS_GROUP_COLUMNS, PER_GROUP_COLUMNS, _flag
from bench.scores.histogram import ScoreHistogram
from bench.scores.subjects import SubjectAggregates
from bench.metrics.intervals import clopper_pearson_interval, wilson_interval, zero_error_upper_bound
from bench.metrics.rates import ThresholdAtFMR, _supports

__all__ = [
    "STREAM_BINS", "STREAM_BLOCK", "StreamedScores", "HistogramStore", "HISTOGRAM_FILE", "eer_table", "triu_cells", "joint_groups",
    "score_range", "hist_mean", "TAIL_MIN", "TAIL_MAX", "TAIL_FACTOR", "KEEP_SCORES_LIMIT",
]

log = logging.getLogger(__name__)

#: Requested uniform bins of the score histogram (bin width 2**-15 over [-1, 1]).
STREAM_BINS = 1 << 16
#: Result file of a streamed run's histograms (git-ignored, like scores.parquet).
HISTOGRAM_FILE = "histograms.npz"
#: Bounds on the retained non-mated tail (entries of 16 bytes, twice that transiently).
TAIL_MIN = 1 << 16
TAIL_MAX = 1 << 24
#: Retained tail per allowed false match of the largest target FMR (room for the bootstrap).
TAIL_FACTOR = 4
#: Runs with at most this many comparisons keep their raw scores (histogram exact mode: exact EER/DET).
KEEP_SCORES_LIMIT = 1_000_000
#: Rows/columns per scored block (3 x 4 x 4096^2 bytes = 200 MB of work arrays).
STREAM_BLOCK = 4096


# ----------------------------------------------------------------------------- cells
def triu_cells(n: int) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Unordered cells of ``n`` groups: (first, second) group of each cell, and the symmetric (n, n) cell index."""
    a, b = np.triu_indices(n)
    index = np.zeros((n, n), dtype=np.intp)
    index[a, b] = np.arange(a.size)
    index[b, a] = np.arange(a.size)
    return a.astype(np.intp), b.astype(np.intp), index


@dataclass(frozen=True)
class _AttributeCells:
    """How one attribute's groups and cross cells are unions of joint cells."""

    groups: list[str]  # sorted labels present among acquired images
    of_joint: NDArray[np.intp]  # (G,) group index of every joint group
    cell_pair: NDArray[np.intp]  # (C,) attribute cell (unordered group pair) of every joint cell
    pair_index: NDArray[np.intp]  # (A, A) symmetric attribute cell index

    def group_cells(self, g: int) -> NDArray[np.intp]:
        """Joint cells with both sides in group ``g`` (the group's comparisons)."""
        return np.flatnonzero(self.cell_pair == self.pair_index[g, g])

    def pool(self, per_cell: NDArray) -> NDArray:
        """Sum ``(..., C)`` joint-cell values into ``(..., K)``: column 0 all cells, column 1+g group g."""
        out = np.zeros(per_cell.shape[:-1] + (len(self.groups) + 1,))
        out[..., 0] = per_cell.sum(axis=-1)
        for g in range(len(self.groups)):
            out[..., g + 1] = per_cell[..., self.group_cells(g)].sum(axis=-1)
        return out


@dataclass
class StreamedScores:
    """What a streamed run keeps of its scores: the histograms and how cells map to groups.

    Attributes
    ----------
    histogram : ScoreHistogram
        Mated and non-mated counts per unordered pair of joint groups (cell labels:
        pairs of label tuples, one label per reported attribute).
    attributes : list of str
        Reported attributes, in the order of the joint labels.
    joint_labels : list of tuple of str
        Joint group labels, in code order.
    """

    histogram: ScoreHistogram
    attributes: list[str]
    joint_labels: list[tuple[str, ...]]

    def __post_init__(self) -> None:
        G = len(self.joint_labels)
        a, b, _ = triu_cells(G)
        self._cells: dict[str, _AttributeCells] = {}
        for k, attr in enumerate(self.attributes):
            groups = sorted({lab[k] for lab in self.joint_labels})
            of_joint = np.array([groups.index(lab[k]) for lab in self.joint_labels], dtype=np.intp)
            _, _, pair_index = triu_cells(len(groups))
            self._cells[attr] = _AttributeCells(groups, of_joint, pair_index[of_joint[a], of_joint[b]], pair_index)

    def cells(self, attribute: str) -> _AttributeCells:
        """Cell mapping of ``attribute``."""
        return self._cells[attribute]

    def score_counts(self, attribute: str) -> dict[str, tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]]:
        """Per group of ``attribute``: (lower bin edges, mated counts, non-mated counts).

        Returns
        -------
        dict
            group -> three arrays of shape (n_bins_total,): lower edge of every bin
            (``-inf`` for the underflow bin), and the counts of the group's comparisons
            (both images in the group) per bin.
        """
        ac = self._cells[attribute]
        lower = np.concatenate([[-np.inf], self.histogram.edges])
        out = {}
        for g, name in enumerate(ac.groups):
            cells = ac.group_cells(g)
            out[name] = (lower, self.histogram.counts(mated=True, cells=cells), self.histogram.counts(mated=False, cells=cells))
        return out


def joint_groups(labels: pd.DataFrame, attributes: list[str]) -> tuple[list[tuple[str, ...]], NDArray[np.int64]]:
    """Sorted joint label tuples and the code of every row."""
    frame = labels[attributes].astype(str).reset_index(drop=True)
    grouped = frame.groupby(attributes, sort=True)
    codes = grouped.ngroup().to_numpy(dtype=np.int64)
    keys = list(grouped.size().index)
    joint = [tuple(str(v) for v in (k if isinstance(k, tuple) else (k,))) for k in keys]
    return joint, codes


# ----------------------------------------------------------------------------- counts
@dataclass
class _CellCounts:
    """Counts per joint cell at one threshold, shape (C,) each."""

    fnm: NDArray[np.float64]
    n_mated: NDArray[np.float64]
    fm: NDArray[np.float64]
    n_nonmated: NDArray[np.float64]


def _cell_counts(
    hist: ScoreHistogram, agg: SubjectAggregates | None, n_joint: int, thresholds: dict[str, float]
) -> dict[str, _CellCounts]:
    """Exact counts per joint cell at every named threshold.

    Thresholds at or above the aggregates' tail cutoff are read from the aggregates
    (one replicate in which every subject is drawn once, i.e. the data); the others
    must be bin edges of the histogram (nominal/external thresholds are extra edges,
    binned target-FMR thresholds are edges).
    """
    a, b, _ = triu_cells(n_joint)
    C = a.size
    n_m = np.array([hist.n_comparisons(mated=True, cells=c) for c in range(C)], dtype=np.float64)
    n_nm = np.array([hist.n_comparisons(mated=False, cells=c) for c in range(C)], dtype=np.float64)
    out: dict[str, _CellCounts] = {}
    from_tail = {n: t for n, t in thresholds.items() if agg is not None and t >= agg.cutoff}
    if from_tail:
        assert agg is not None
        rc = agg.replicate_counts(np.ones((1, agg.n_subjects), dtype=np.int32), thresholds=from_tail)
        diag = a == b
        for name in from_tail:
            fnm = np.zeros(C)
            fnm[diag] = rc.false_non_matches[name][0]  # per-subject labels: mated comparisons lie on the diagonal
            out[name] = _CellCounts(fnm, n_m, rc.false_matches[name][0][a, b], n_nm)
    for name, t in thresholds.items():
        if name in out:
            continue
        rates = [hist.error_rates(t, cells=c) for c in range(C)]  # ConfigError unless t is a bin edge
        out[name] = _CellCounts(np.array([r.false_non_matches for r in rates], dtype=np.float64), n_m,
                                np.array([r.false_matches for r in rates], dtype=np.float64), n_nm)
    return out


def _rate_rows(records: list[dict], confidence: float) -> pd.DataFrame:
    """Records (attribute, group, threshold_name, threshold, metric, errors, comparisons, subjects) ->
    :data:`~bench.metrics.groups.PER_GROUP_COLUMNS` rows, as :func:`bench.metrics.groups.per_group_rates`."""
    out = pd.DataFrame.from_records(records)
    errors = out["errors"].to_numpy()
    n = out["comparisons"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rate"] = np.where(n > 0, errors / np.maximum(n, 1), np.nan)
    out["wilson_low"], out["wilson_high"] = wilson_interval(errors, n, confidence=confidence)
    out["cp_low"], out["cp_high"] = clopper_pearson_interval(errors, n, confidence=confidence)
    out["upper_bound_95"] = np.where((errors == 0) & (n > 0), zero_error_upper_bound(n, confidence=0.95), np.nan)
    out["flag"] = [_flag(int(e), int(m)) for e, m in zip(errors, n)]
    out = out.astype({"errors": "int64", "comparisons": "int64", "subjects": "int64", "threshold": "float64"})
    return out[PER_GROUP_COLUMNS].reset_index(drop=True)


def _subject_counts(labels: NDArray[np.object_], subjects: NDArray[np.int64], groups: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Subjects involved per group (``(all)`` included): (FMR, FNMR), as ``per_group_rates`` counts them.

    FNMR: subjects with >= 2 acquired images in the group (they have a mated
    comparison there). FMR: subjects with an image in the group, if there are >= 2 of
    them (each then has a non-mated comparison inside the group), else 0.
    """
    fmr, fnmr = {}, {}
    for g in [ALL_GROUP, *groups]:
        sel = np.ones(labels.size, dtype=bool) if g == ALL_GROUP else labels == g
        _, per = np.unique(subjects[sel], return_counts=True)
        fmr[g] = int(per.size) if per.size >= 2 else 0
        fnmr[g] = int((per >= 2).sum())
    return fmr, fnmr


def _per_group(
    attr: str, ac: _AttributeCells, counts: dict[str, _CellCounts], thresholds: dict[str, float],
    subjects: tuple[dict[str, int], dict[str, int]], confidence: float,
) -> pd.DataFrame:
    pooled = {name: (ac.pool(c.fm), ac.pool(c.n_nonmated), ac.pool(c.fnm), ac.pool(c.n_mated)) for name, c in counts.items()}
    records = []
    for k, g in enumerate([ALL_GROUP, *ac.groups]):
        for name, t in thresholds.items():
            fm, n_nm, fnm, n_m = pooled[name]
            for metric, e, n, s in (("FMR", fm[k], n_nm[k], subjects[0][g]), ("FNMR", fnm[k], n_m[k], subjects[1][g])):
                records.append({"attribute": attr, "group": g, "threshold_name": name, "threshold": t, "metric": metric,
                                "errors": int(round(e)), "comparisons": int(round(n)), "subjects": s})
    return _rate_rows(records, confidence)


def _cross(ac: _AttributeCells, c: _CellCounts) -> pd.DataFrame:
    """Cross-group FMR matrix (long form, as :func:`bench.metrics.groups.cross_group_fmr`)."""
    A = len(ac.groups)
    fm = np.bincount(ac.cell_pair, weights=c.fm, minlength=A * (A + 1) // 2)
    nn = np.bincount(ac.cell_pair, weights=c.n_nonmated, minlength=A * (A + 1) // 2)
    e = np.rint(fm[ac.pair_index]).astype(np.int64).ravel()
    n = np.rint(nn[ac.pair_index]).astype(np.int64).ravel()
    ga, gb = np.meshgrid(np.arange(A), np.arange(A), indexing="ij")
    with np.errstate(invalid="ignore", divide="ignore"):
        fmr = np.where(n > 0, e / np.maximum(n, 1), np.nan)
    return pd.DataFrame({"group_a": [ac.groups[i] for i in ga.ravel()], "group_b": [ac.groups[i] for i in gb.ravel()],
                         "false_matches": e, "comparisons": n, "fmr": fmr}, columns=CROSS_GROUP_COLUMNS)


def eer_table(scores: StreamedScores) -> tuple[pd.DataFrame, dict]:
    """EER and DET per (attribute, group) from the histogram (``(all)``: every cell)."""
    hist = scores.histogram
    rows, dets = [], {}
    for attr in scores.attributes:
        ac = scores.cells(attr)
        for k, g in enumerate([ALL_GROUP, *ac.groups]):
            cells = np.arange(hist.n_cells) if k == 0 else ac.group_cells(k - 1)
            n_m, n_nm = hist.n_comparisons(mated=True, cells=cells), hist.n_comparisons(mated=False, cells=cells)
            row = {"attribute": attr, "group": g, "n_mated": n_m, "n_nonmated": n_nm}
            if n_m and n_nm:
                e = hist.equal_error_rate(cells=cells)
                row.update(eer=e.eer, threshold=e.threshold, eer_low=e.low, eer_high=e.high, eer_crossing=e.crossing)
                dets[(attr, g)] = hist.det_curve(cells=cells)
            else:
                row.update(eer=np.nan, threshold=np.nan, eer_low=np.nan, eer_high=np.nan, eer_crossing=np.nan)
            rows.append(row)
    return pd.DataFrame(rows), dets


# ----------------------------------------------------------------------------- bootstrap
def _draw_counts(strata: NDArray[np.intp], n_strata: int, n_replicates: int, seed: int) -> NDArray[np.int32]:
    """(B, S) stratified subject draws, the rule of :func:`bench.metrics.bootstrap.bootstrap_replicates`.

    ``numpy.random.default_rng(seed)``; strata in sorted-label order, members in
    sorted-subject-id order, ``|stratum|`` draws with replacement each, so the
    replicates equal the table engine's (tests/test_run_streaming.py checks it).
    """
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_replicates, strata.size), dtype=np.int32)
    for s in range(n_strata):
        members = np.flatnonzero(strata == s)
        m = members.size
        if m == 0:
            continue
        idx = rng.integers(0, m, size=(n_replicates, m))
        flat = idx + (np.arange(n_replicates) * m)[:, None]
        counts[:, members] = np.bincount(flat.ravel(), minlength=n_replicates * m).reshape(n_replicates, m)
    return counts


def _bootstrap(
    agg: SubjectAggregates, attr: str, ac: _AttributeCells, subject_ids: NDArray, subject_group: NDArray[np.intp],
    usable: dict[str, float], fixed: dict[str, float], recalibrate: dict[str, float], n_replicates: int, seed: int,
    original: dict[str, NDArray[np.float64]], has_mated: NDArray[np.bool_], overall: bool = False,
) -> tuple[BootstrapReplicates, dict[str, int]]:
    """Subject-bootstrap replicates of one attribute, in the table engine's format.

    ``fixed`` thresholds (at or above the tail cutoff) are held; ``recalibrate``
    targets are re-calibrated per replicate; any other usable threshold gets NaN
    replicates (no interval). Strata as the table engine's: group, split by
    ``has_mated`` (subjects with >= 2 acquired images); ``overall``: no demographic
    strata (the once-per-run ``(all)`` interval, :func:`bench.metrics.bootstrap.bootstrap_overall_rates`).
    """
    group_stratum = np.zeros_like(subject_group) if overall else ac.of_joint[subject_group]
    strata = 2 * group_stratum + has_mated.astype(np.intp)
    counts = _draw_counts(strata, 2 * (1 if overall else len(ac.groups)), n_replicates, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unresolved replicates are reported through the counts below
        rc = agg.replicate_counts(counts, thresholds=fixed or None, recalibrate=recalibrate or None)
    a, b, _ = triu_cells(len(rc.group_labels))
    diag = np.flatnonzero(a == b)

    def mated_cells(x: NDArray) -> NDArray:
        out = np.zeros((x.shape[0], a.size))
        out[:, diag] = x
        return out

    n_m = np.rint(ac.pool(mated_cells(rc.n_mated)))
    n_nm = np.rint(ac.pool(rc.n_nonmated[:, a, b]))
    errors, comps, thr = {}, {}, {}
    for name, t in usable.items():
        if name in rc.thresholds:
            errors[(name, "FMR")] = np.rint(ac.pool(rc.false_matches[name][:, a, b]))
            errors[(name, "FNMR")] = np.rint(ac.pool(mated_cells(rc.false_non_matches[name])))
            thr[name] = rc.thresholds[name]
        else:
            errors[(name, "FMR")] = errors[(name, "FNMR")] = np.full(n_nm.shape, np.nan)
            thr[name] = np.full(n_replicates, np.nan)
        comps[(name, "FMR")], comps[(name, "FNMR")] = n_nm, n_m
    reps = BootstrapReplicates(
        attribute=attr, groups=[ALL_GROUP, *ac.groups], threshold_names=list(usable), errors=errors, comparisons=comps,
        thresholds=thr, subject_ids=subject_ids, subject_counts=counts, seed=int(seed), original_comparisons=original,
        recalibrate=dict(recalibrate),
    )
    return reps, dict(rc.unresolved)


# ----------------------------------------------------------------------------- thresholds
def hist_mean(hist: ScoreHistogram, mated: bool) -> float:
    """Mean score of a class from bin midpoints (under/overflow at the range ends): within w/2 in range."""
    c = hist.counts(mated=mated)
    if not c.sum():
        return math.nan
    e = hist.edges
    mid = np.concatenate([[e[0]], (e[:-1] + e[1:]) / 2.0, [e[-1]]])
    return float((c * mid).sum() / c.sum())


def score_range(emb: NDArray, metric: str) -> tuple[float, float]:
    """Histogram range ``[lo, hi)`` holding every possible score strictly inside.

    The largest possible score (1 for cosine, 0 for negated distance: identical images)
    lies *below* ``hi`` by a margin, so that many identical images under different
    subjects (scores tied at the maximum) fall in a uniform bin and the threshold
    at a target FMR is the bin's upper edge (achieved FMR 0), not a refusal to read the
    overflow bin (issue #9).
    """
    if metric == "cosine":
        return -1.0, 1.0 + 1e-4  # float32 cosines of identical vectors reach 1 + 1e-7
    top = float(np.linalg.norm(emb.astype(np.float64), axis=1).max()) if emb.size else 1.0
    lo = -2.0 * max(top, 1e-6) * (1 + 1e-6)
    return lo, -lo * 1e-4


# ----------------------------------------------------------------------------- the store
class HistogramStore:
    """Score store of a streamed run (module docstring): histograms, exact tail, subject aggregates.

    Filled by :func:`bench.protocol.verification.histogram_store`; implements :class:`bench.scores.store.ScoreStore`.

    Attributes
    ----------
    scores : StreamedScores
        The histograms and the cell mapping (written as ``histograms.npz``).
    aggregates : SubjectAggregates or None
        Mated scores and the non-mated tail with their subjects; None when a
        subject's labels vary between images (no subject bootstrap then).
    n_mated, n_nonmated : int
        Comparisons scored.
    """

    engine = "stream"

    def __init__(self, scores: StreamedScores, aggregates: SubjectAggregates | None, *, subject_ids: NDArray,
                 subject_group: NDArray[np.intp], images_per_subject: NDArray[np.int64], subject_code: NDArray[np.int64],
                 image_labels: pd.DataFrame, n_mated: int, n_nonmated: int, scoring: dict) -> None:
        self.scores = scores
        self.aggregates = aggregates
        self.subject_ids = subject_ids
        self.subject_group = subject_group
        self._m = images_per_subject
        self._subj_code = subject_code
        self._lab_ok = image_labels
        self.n_mated = n_mated
        self.n_nonmated = n_nonmated
        self._scoring = scoring
        self._method: dict[float, str] = {}
        self._fixed_boot: dict[str, float] = {}
        self._counts: dict[str, _CellCounts] = {}
        self.unresolved: dict[str, dict[str, int]] = {}

    @property
    def histogram(self) -> ScoreHistogram:
        """The run's :class:`ScoreHistogram`."""
        return self.scores.histogram

    # -- thresholds
    def calibration(self, calibration_group: dict | None) -> tuple[Callable[[float], ThresholdAtFMR], str]:
        """See :meth:`bench.scores.store.ScoreStore.calibration`: exact from the tail, else binned."""
        hist, agg, scores = self.histogram, self.aggregates, self.scores
        groups_sel, cells_sel, population = None, None, "all non-mated comparisons"
        if calibration_group is not None:
            attr, group = calibration_group["attribute"], str(calibration_group["group"])
            if attr not in scores.attributes:
                raise ConfigError(f"protocol.calibration_group: attribute {attr!r} is not reported; add it to protocol.attributes")
            ac = scores.cells(attr)
            gi = ac.groups.index(group) if group in ac.groups else -1
            if gi < 0 or hist.n_comparisons(mated=False, cells=ac.group_cells(gi)) == 0:
                raise ConfigError(f"protocol.calibration_group: no non-mated comparisons in {attr}={group!r}; groups: {ac.groups}")
            groups_sel, cells_sel = np.flatnonzero(ac.of_joint == gi), ac.group_cells(gi)
            population = f"non-mated comparisons with both subjects in {attr}={group}"
        method = self._method

        def calibrate(f: float) -> ThresholdAtFMR:
            n_cal = hist.n_comparisons(mated=False, cells=cells_sel)
            if agg is not None and _supports(n_cal, f, 1.0):
                try:
                    t = agg.threshold_at_fmr(f, groups=groups_sel)
                    method[f] = "exact"
                    return t
                except InsufficientDataError as err:  # cut below the tail cutoff
                    log.warning("target FMR %g: %s; using the histogram (within one bin width)", f, err)
            t = hist.threshold_at_fmr(f, cells=cells_sel)  # refuses N < 1/f as the table engine does
            method[f] = "binned"
            return t

        return calibrate, population

    def settle_thresholds(self, thresholds: list[dict], bootstrap: bool) -> None:
        """See :meth:`bench.scores.store.ScoreStore.settle_thresholds`.

        Records each calibrated threshold's ``calibration_method`` (exact or binned),
        marks the bootstrap of thresholds the tail cannot resolve as unavailable, and
        counts every usable threshold per joint cell.
        """
        hist = self.histogram
        for t in thresholds:
            if t["kind"] == "target_fmr" and t["status"] == "ok":
                if self._method[t["target_fmr"]] == "exact":
                    t["calibration_method"] = "exact: order statistic of the retained non-mated tail (streaming engine)"
                else:
                    t["calibration_method"] = (f"binned: smallest histogram bin edge with at most k false matches; less than one bin "
                                               f"width ({hist.bin_width:g}) above the exact threshold or decision-equivalent to it")
                    if t["bootstrap"] == "recalibrated":
                        t["bootstrap"] = "unavailable: the cut lies below the retained tail (no re-calibration possible)"
        usable = {t["name"]: t["threshold"] for t in thresholds if t["status"] == "ok"}
        cutoff = self.aggregates.cutoff if self.aggregates is not None else math.inf
        self._fixed_boot = {t["name"]: t["threshold"] for t in thresholds
                            if t["status"] == "ok" and t.get("bootstrap") == "fixed" and t["threshold"] >= cutoff}
        for t in thresholds:
            if t["status"] == "ok" and t.get("bootstrap") == "fixed" and t["name"] not in self._fixed_boot and bootstrap:
                t["bootstrap"] = f"unavailable: threshold below the retained non-mated tail (cutoff {cutoff:.6g})"
        self._counts = _cell_counts(hist, self.aggregates, len(self.scores.joint_labels), usable)

    # -- rates
    def group_rates(self, attribute: str, thresholds: dict[str, float], confidence: float) -> pd.DataFrame:
        """See :meth:`bench.scores.store.ScoreStore.group_rates` (exact counts per joint cell, pooled)."""
        ac = self.scores.cells(attribute)
        subj_counts = _subject_counts(self._lab_ok[attribute].astype(str).to_numpy(dtype=object), self._subj_code, ac.groups)
        return _per_group(attribute, ac, self._counts, thresholds, subj_counts, confidence)

    def cross_group(self, attribute: str, name: str, threshold: float) -> pd.DataFrame:
        """See :meth:`bench.scores.store.ScoreStore.cross_group` (``name`` must be a settled threshold)."""
        return _cross(self.scores.cells(attribute), self._counts[name])

    def eer_det(self) -> tuple[pd.DataFrame, dict]:
        """See :meth:`bench.scores.store.ScoreStore.eer_det` (from the histogram)."""
        return eer_table(self.scores)

    # -- bootstrap
    def _replicates(self, attribute: str, thresholds: dict[str, float], recalibrate: dict[str, float], n_replicates: int,
                    seed: int, overall: bool) -> BootstrapReplicates:
        assert self.aggregates is not None
        ac = self.scores.cells(attribute)
        any_count = next(iter(self._counts.values()))
        original = {"FNMR": ac.pool(any_count.n_mated), "FMR": ac.pool(any_count.n_nonmated)}
        reps, unres = _bootstrap(self.aggregates, attribute, ac, self.subject_ids, self.subject_group, thresholds,
                                 self._fixed_boot, recalibrate, n_replicates, seed, original, self._m >= 2, overall=overall)
        self.unresolved[ALL_GROUP if overall else attribute] = unres
        return reps

    def bootstrap_overall(self, thresholds: dict[str, float], recalibrate: dict[str, float], n_replicates: int, seed: int,
                          confidence: float) -> pd.DataFrame | None:
        """See :meth:`bench.scores.store.ScoreStore.bootstrap_overall` (None without subject aggregates)."""
        if self.aggregates is None:
            return None
        reps0 = self._replicates(self.scores.attributes[0], thresholds, recalibrate, n_replicates, seed, overall=True)
        b0 = bootstrap_group_rates(None, attribute=None, thresholds=thresholds, confidence=confidence, replicates=reps0)
        return b0[b0["group"] == ALL_GROUP].drop(columns=["attribute"])

    def bootstrap(self, attribute: str, thresholds: dict[str, float], recalibrate: dict[str, float], n_replicates: int,
                  seed: int) -> BootstrapReplicates | None:
        """See :meth:`bench.scores.store.ScoreStore.bootstrap` (None without subject aggregates)."""
        if self.aggregates is None:
            return None
        return self._replicates(attribute, thresholds, recalibrate, n_replicates, seed, overall=False)

    # -- the rest
    def mitigation(self, target_fmrs: list[float]) -> pd.DataFrame:
        """Not available from histograms (refused when the engine is chosen)."""
        raise ConfigError("protocol.per_group_thresholds (mitigation analysis) needs the table engine; set engine: table")

    def engine_info(self, choice: dict) -> dict:
        """See :meth:`bench.scores.store.ScoreStore.engine_info`: bin width, tail and the stated tolerances."""
        hist, agg = self.histogram, self.aggregates
        w = hist.bin_width
        return {
            **choice,
            "score_precision": "float32 matrix products (the table engine computes float64; scores differ by about 1e-7)",
            "cells": f"unordered pairs of joint groups (one label per attribute: {list(self.scores.attributes)}); attributes pool cells",
            "histogram": {"bin_width": w, "uniform_bins": hist.n_uniform_bins, "lo": hist.lo, "hi": hist.hi,
                          "extra_edges": hist.extra_edges.tolist(), "cells": hist.n_cells, "joint_groups": len(self.scores.joint_labels),
                          "exact_mode": hist.is_exact},
            "aggregates": None if agg is None else {"tail_size": agg.tail_size, "tail_cutoff": agg.cutoff,
                                                    "retained_nonmated": agg.n_tail, "mated_kept": agg.n_mated},
            "scoring": dict(self._scoring),
            "bootstrap_unresolved": self.unresolved,
            "tolerance": {
                "thresholds_at_target_fmr": "exact order statistic (§0) of the retained non-mated tail, unless a threshold's "
                                            "calibration_method says binned (then < one bin width above the exact one)",
                "rates_at_thresholds": "exact counts: calibrated thresholds from the tail and the kept mated scores, nominal and "
                                       "external thresholds at extra bin edges",
                "bootstrap": "same draws as the table engine; re-calibration on the weighted tail; unresolved replicates dropped",
                "eer": ("exact (histogram exact mode)" if hist.is_exact else
                        f"bob.measure estimator over the binned DET points; threshold a bin edge, within {w:g} of the exact one"),
                "det": "exact" if hist.is_exact else "one point per non-empty bin, each a point of the exact DET",
                "scores": "float32 products: thresholds agree with the table engine to about 1e-6",
            },
        }

    @property
    def result_fields(self) -> dict[str, Any]:
        """``RunResult`` fields this store fills: ``comparisons`` None, ``stream`` the :class:`StreamedScores`."""
        return {"comparisons": None, "stream": self.scores}
