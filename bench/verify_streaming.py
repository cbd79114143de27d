"""Verification of a run of the streaming engine, from its ``histograms.npz``.

A streamed run (``metrics.json`` ``engine.engine == "stream"``, :mod:`bench.run_streaming`)
keeps no comparison table, so :mod:`bench.verify` cannot recompute it from scores. What
its score histograms (:class:`~bench.metrics.histogram.ScoreHistogram`, one cell per
unordered pair of joint groups) can still establish, checked here:

``histograms``
    The file loads; its cells are the pairs of joint groups of the reported
    attributes; its mated / non-mated totals equal ``dataset`` in ``metrics.json``.
``thresholds``
    Nominal / external thresholds equal the model's / the config's; for every
    calibrated threshold the calibration population's size ``N`` and allowed false
    matches ``k`` follow from the counts (§0), and the published false-match count
    ``achieved_fmr * N`` is at most ``k`` and lies between the counts at the
    neighbouring bin edges.
``per_group``
    Comparison counts of every FMR/FNMR row exactly; error counts exactly at bin
    edges (extra edges: nominal/external thresholds; binned calibrations), else
    bracketed by the neighbouring edges; rates equal errors / comparisons.
``eer``
    Recomputed from the bins (exact equality unless the run kept raw scores, exact
    mode, when only the counts are compared).
``cross_group_fmr[<attribute>]``
    Comparison counts exactly, false matches exact or bracketed as above.

Not verifiable from histograms, and reported as skipped: the exact threshold values
and error counts between bin edges (they come from the subject aggregates' exact tail,
which is not stored) and the bootstrap intervals. Privacy, dataset and weights checks
are those of :mod:`bench.verify`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.errors import BenchError
from bench.metrics.groups import ALL_GROUP
from bench.metrics.histogram import ScoreHistogram
from bench.metrics.rates import _allowed_false_matches
from bench.run_streaming import HISTOGRAM_FILE, StreamedScores, _triu_cells

__all__ = ["verify_streamed"]

_MAX_LISTED = 8


def _check(name: str, diffs: list[str], ok_detail: str):  # -> bench.verify.Check
    from bench.verify import Check

    if diffs:
        more = f"\n... and {len(diffs) - _MAX_LISTED} more" if len(diffs) > _MAX_LISTED else ""
        return Check(name, "mismatch", "\n".join(diffs[:_MAX_LISTED]) + more)
    return Check(name, "ok", ok_detail)


def _int(x: object) -> int | None:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else int(round(v))


class _Counts:
    """Pooled false-match / false-non-match counts at a threshold: exact at an edge, else a bracket."""

    def __init__(self, hist: ScoreHistogram):
        self.hist = hist

    def is_edge(self, t: float) -> bool:
        return self.hist.snap_threshold(t, "up") == t

    def bracket(self, t: float, cells: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
        """((fm_lo, fm_hi), (fnm_lo, fnm_hi)) at ``t`` over ``cells``."""
        up = self.hist.error_rates(t, cells=cells, snap="up")
        down = self.hist.error_rates(t, cells=cells, snap="down")
        return (up.false_matches, down.false_matches), (down.false_non_matches, up.false_non_matches)


def verify_streamed(run_dir: Path, metrics: dict, report, *, rtol: float = 1e-9):  # -> bench.verify.VerifyReport
    """Append the histogram checks of a streamed run to ``report`` (module docstring).

    Parameters
    ----------
    run_dir : pathlib.Path
        Result folder holding ``metrics.json`` and ``histograms.npz``.
    metrics : dict
        Its parsed ``metrics.json``.
    report : bench.verify.VerifyReport
        Receives one :class:`bench.verify.Check` per area.
    rtol : float
        Relative tolerance of float comparisons.

    Returns
    -------
    bench.verify.VerifyReport
        ``report``.
    """
    from bench.verify import Check, _same_cell, _str

    checks = report.checks
    eng = metrics.get("engine") or {}
    checks.append(Check("engine", "info", "streamed run (protocol.engine resolved to stream): verified from its score histograms "
                        f"({HISTOGRAM_FILE}); counts exact, error counts exact at bin edges and bracketed between them"))
    path = run_dir / HISTOGRAM_FILE
    if not path.is_file():
        checks.append(Check("histograms", "mismatch", f"{str(path)!r} not found: a streamed run is verified from its histograms "
                            "(runs with report.save_scores=false cannot be verified)"))
        return report
    try:
        hist = ScoreHistogram.load(path)
    except (BenchError, OSError, ValueError) as err:
        checks.append(Check("histograms", "mismatch", f"{str(path)!r} cannot be read as score histograms: {err}"))
        return report
    attributes = [str(a) for a in (metrics["protocol"].get("attributes") or [])]
    labels = hist.cell_labels
    joint = [lab[0] for lab in labels if isinstance(lab, tuple) and len(lab) == 2 and lab[0] == lab[1]]
    a, b, _ = _triu_cells(len(joint))
    ds = metrics["dataset"]
    diffs = []
    if labels != [(joint[i], joint[j]) for i, j in zip(a, b)] or any(len(j) != len(attributes) for j in joint):
        checks.append(Check("histograms", "mismatch", f"cells are not the pairs of joint groups of {attributes}"))
        return report
    for name, mated in (("mated_comparisons", True), ("nonmated_comparisons", False)):
        if ds.get(name) != hist.n_comparisons(mated=mated):
            diffs.append(f"dataset.{name}: stored {ds.get(name)!r}, histograms hold {hist.n_comparisons(mated=mated)}")
    checks.append(_check("histograms", diffs, f"{hist.n_cells} cells, {hist.n_comparisons(mated=True) + hist.n_comparisons(mated=False)} comparisons"))
    scores = StreamedScores(hist, attributes, joint)
    counts = _Counts(hist)
    all_cells = np.arange(hist.n_cells)

    def cells_of(attr: str, group: str) -> np.ndarray | None:
        if group == ALL_GROUP:
            return all_cells
        ac = scores.cells(attr)
        return ac.group_cells(ac.groups.index(group)) if group in ac.groups else None

    # ---- thresholds
    config = metrics.get("config") or {}
    protocol = dict(config.get("protocol") or {})
    external = protocol.get("external_thresholds") or {}
    diffs, usable = [], {}
    for t in metrics["thresholds"]:
        name, kind = str(t.get("name")), t.get("kind")
        if t.get("status", "ok") != "ok":
            continue
        usable[name] = float(t["threshold"])
        if kind in ("nominal", "external"):
            expect = metrics["model"].get("nominal_threshold") if kind == "nominal" else external.get(name)
            if expect is None or not _same_cell(t["threshold"], expect, rtol):
                diffs.append(f"{name}: threshold {t['threshold']!r}, expected {expect!r}")
            continue
        cal = protocol.get("calibration_group")
        cells = all_cells if not cal else cells_of(str(cal["attribute"]), str(cal["group"]))
        if cells is None:
            diffs.append(f"{name}: calibration group {cal} has no cells in the histograms")
            continue
        n = hist.n_comparisons(mated=False, cells=cells)
        k = _allowed_false_matches(float(t["target_fmr"]), n)
        fm = int(round(float(t["achieved_fmr"]) * n))
        (lo, hi), _ = counts.bracket(float(t["threshold"]), cells)
        if t.get("n_nonmated") != n or t.get("k") != k:
            diffs.append(f"{name}: stored N={t.get('n_nonmated')}, k={t.get('k')}; histograms give N={n}, k={k}")
        if not (lo <= fm <= hi and fm <= k):
            diffs.append(f"{name}: {fm} false matches at {t['threshold']!r}; histograms bracket [{lo}, {hi}], k={k}")
        if str(t.get("calibration_method", "")).startswith("binned") and not counts.is_edge(float(t["threshold"])):
            diffs.append(f"{name}: binned calibration but {t['threshold']!r} is no bin edge")
    checks.append(_check("thresholds", diffs, f"{len(usable)} usable threshold(s) consistent with the bins"))

    # ---- per group
    diffs, n_rows = [], 0
    for r in metrics["per_group"]:
        if r.get("metric") not in ("FMR", "FNMR"):
            continue
        n_rows += 1
        attr, group, name = _str(r.get("attribute")), _str(r.get("group")), _str(r.get("threshold_name"))
        where = f"{attr}/{group}/{name}/{r['metric']}"
        cells = cells_of(attr, group) if attr in attributes else None
        if cells is None or name not in usable:
            diffs.append(f"{where}: no such group or threshold in the histograms")
            continue
        mated = r["metric"] == "FNMR"
        n = hist.n_comparisons(mated=mated, cells=cells)
        if _int(r.get("comparisons")) != n:
            diffs.append(f"{where} comparisons: stored {r.get('comparisons')!r}, histograms {n}")
        e = _int(r.get("errors"))
        if e is None:  # counts-only (suppressed) group
            continue
        fm, fnm = counts.bracket(usable[name], cells)
        lo, hi = fnm if mated else fm
        if not lo <= e <= hi:
            diffs.append(f"{where} errors: stored {e}, histograms {'give ' + str(lo) if lo == hi else f'bracket [{lo}, {hi}]'}")
        if n and not _same_cell(r.get("rate"), e / n, rtol):
            diffs.append(f"{where} rate: stored {r.get('rate')!r}, errors/comparisons {e / n!r}")
    checks.append(_check("per_group", diffs, f"{n_rows} FMR/FNMR rows consistent with the bins (bootstrap intervals not re-drawn)"))
    checks.append(Check("bootstrap", "skipped", "a streamed run stores no subject aggregates; its bootstrap cannot be re-drawn"))

    # ---- EER
    diffs = []
    exact_mode = bool((eng.get("histogram") or {}).get("exact_mode"))
    for r in metrics["eer"]:
        attr, group = _str(r.get("attribute")), _str(r.get("group"))
        cells = cells_of(attr, group) if attr in attributes else None
        if cells is None:
            diffs.append(f"{attr}/{group}: no such group in the histograms")
            continue
        n_m, n_nm = hist.n_comparisons(mated=True, cells=cells), hist.n_comparisons(mated=False, cells=cells)
        if (_int(r.get("n_mated")), _int(r.get("n_nonmated"))) != (n_m, n_nm):
            diffs.append(f"{attr}/{group}: stored {r.get('n_mated')}/{r.get('n_nonmated')} comparisons, histograms {n_m}/{n_nm}")
        if exact_mode or not (n_m and n_nm) or r.get("eer") is None:
            continue
        e = hist.equal_error_rate(cells=cells)
        for col, v in (("eer", e.eer), ("threshold", e.threshold), ("eer_low", e.low), ("eer_high", e.high), ("eer_crossing", e.crossing)):
            if not _same_cell(r.get(col), v, rtol):
                diffs.append(f"{attr}/{group} {col}: stored {r.get(col)!r}, histograms {v!r}")
    checks.append(_check("eer", diffs, f"{len(metrics['eer'])} rows" + (" (counts only: exact-mode run)" if exact_mode else " recomputed from the bins")))

    # ---- cross-group FMR at the primary threshold
    primary = metrics["protocol"].get("primary_threshold")
    for attr in attributes:
        diffs = []
        ac = scores.cells(attr)
        for r in (metrics.get("cross_group_fmr") or {}).get(attr, []):
            ga, gb = _str(r.get("group_a")), _str(r.get("group_b"))
            if ga not in ac.groups or gb not in ac.groups or primary not in usable:
                diffs.append(f"{ga}/{gb}: no such cell or primary threshold")
                continue
            cells = np.flatnonzero(ac.cell_pair == ac.pair_index[ac.groups.index(ga), ac.groups.index(gb)])
            n = hist.n_comparisons(mated=False, cells=cells)
            if _int(r.get("comparisons")) != n:
                diffs.append(f"{ga}/{gb} comparisons: stored {r.get('comparisons')!r}, histograms {n}")
            e = _int(r.get("false_matches"))
            if e is not None:
                (lo, hi), _ = counts.bracket(usable[primary], cells)
                if not lo <= e <= hi:
                    diffs.append(f"{ga}/{gb} false matches: stored {e}, histograms bracket [{lo}, {hi}]")
        checks.append(_check(f"cross_group_fmr[{attr}]", diffs, "counts consistent with the bins"))
    return report
