"""Checks of a streamed run from its ``histograms.npz`` (the histogram store's published data).

Counts are exact; error counts exact at bin edges and bracketed between them; thresholds,
error counts between edges and the bootstrap are not establishable from the histograms
alone (they come from the exact tail, which is not stored) and are reported as such.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.metrics.groups import ALL_GROUP
from bench.metrics.rates import _allowed_false_matches
from bench.verify_core import (
    Check, _as_float, _result, _same_cell,
)
from bench.verify_folder import RunFolder

# ----------------------------------------------------------------------------- streamed runs: histograms.npz
class _Counts:
    """Pooled false-match / false-non-match counts at a threshold: exact at a bin edge, else a bracket."""

    def __init__(self, hist: Any):
        self.hist = hist

    def is_edge(self, t: float) -> bool:
        return self.hist.snap_threshold(t, "up") == t

    def bracket(self, t: float, cells: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
        """((fm_lo, fm_hi), (fnm_lo, fnm_hi)) at ``t`` over ``cells``."""
        up = self.hist.error_rates(t, cells=cells, snap="up")
        down = self.hist.error_rates(t, cells=cells, snap="down")
        return (up.false_matches, down.false_matches), (down.false_non_matches, up.false_non_matches)


def _int(x: object) -> int | None:
    v = _as_float(x)
    return None if v is None or math.isnan(v) else int(round(v))


def _histogram_checks(run: RunFolder, usable: dict[str, float], rtol: float) -> tuple[list[Check], Any, dict]:
    """What a streamed run's score histograms establish (one cell per unordered pair of joint groups).

    ``histograms``: cells are the pairs of joint groups, totals equal ``dataset``.
    ``thresholds (histograms)``: for each calibrated threshold the published false-match
    count lies between the counts at the neighbouring bin edges (exact at an edge) and a
    binned calibration sits on an edge. ``per_group (histograms)``: comparison counts
    exactly, error counts exact at edges else bracketed. ``eer``: from the bins (counts
    only in exact mode). ``cross_group_fmr (histograms)``: counts exact, false matches
    bracketed. Not establishable: exact thresholds and error counts between edges (they
    come from the exact tail, not stored) and the bootstrap.

    Returns the checks, the :class:`~bench.scores.stream.StreamedScores` (None if the file
    is unusable) and the DET curves per (attribute, group).
    """
    from bench.scores.histogram import ScoreHistogram
    from bench.scores.stream import StreamedScores, eer_table, triu_cells

    m = run.metrics
    checks: list[Check] = []
    path = run.histograms_path
    try:
        hist = ScoreHistogram.load(path)
    except (BenchError, OSError, ValueError, KeyError) as err:
        return [Check("histograms", "mismatch", f"{str(path)!r} cannot be read as score histograms: {str(err)[:160]}")], None, {}
    attributes = run.attributes
    labels = hist.cell_labels
    joint = [lab[0] for lab in labels if isinstance(lab, tuple) and len(lab) == 2 and lab[0] == lab[1]]
    a, b, _ = triu_cells(len(joint))
    if labels != [(joint[i], joint[j]) for i, j in zip(a, b)] or any(not isinstance(j, tuple) or len(j) != len(attributes) for j in joint):
        return [Check("histograms", "mismatch", f"cells are not the pairs of joint groups of {attributes}")], None, {}
    ds = m["dataset"]
    diffs = []
    for name, mated in (("mated_comparisons", True), ("nonmated_comparisons", False)):
        if ds.get(name) != hist.n_comparisons(mated=mated):
            diffs.append(f"dataset.{name}: stored {ds.get(name)!r}, histograms hold {hist.n_comparisons(mated=mated)}")
    checks.append(_result("histograms", diffs, f"{hist.n_cells} cells, {hist.n_comparisons(mated=True) + hist.n_comparisons(mated=False)} comparisons"))
    scores = StreamedScores(hist, attributes, joint)
    counts = _Counts(hist)
    all_cells = np.arange(hist.n_cells)

    def cells_of(attr: str, group: str) -> np.ndarray | None:
        if group == ALL_GROUP:
            return all_cells
        ac = scores.cells(attr)
        return ac.group_cells(ac.groups.index(group)) if group in ac.groups else None

    protocol = run.protocol_config
    diffs = []
    for t in m["thresholds"]:
        if t["status"] != "ok" or t["kind"] != "target_fmr":
            continue
        cal = protocol.get("calibration_group") if isinstance(protocol.get("calibration_group"), dict) else None
        cells = all_cells if not cal else cells_of(str(cal.get("attribute")), str(cal.get("group")))
        if cells is None:
            diffs.append(f"{t['name']}: calibration group {cal} has no cells in the histograms")
            continue
        n = hist.n_comparisons(mated=False, cells=cells)
        k = _allowed_false_matches(float(t["target_fmr"]), n)
        fm = int(round(float(t["achieved_fmr"]) * n))
        (lo, hi), _ = counts.bracket(float(t["threshold"]), cells)
        if t.get("n_nonmated") != n or t.get("k") != k:
            diffs.append(f"{t['name']}: stored N={t.get('n_nonmated')}, k={t.get('k')}; histograms give N={n}, k={k}")
        if not (lo <= fm <= hi and fm <= k):
            diffs.append(f"{t['name']}: {fm} false matches at {t['threshold']!r}; histograms bracket [{lo}, {hi}], k={k}")
        if str(t.get("calibration_method", "")).startswith("binned") and not counts.is_edge(float(t["threshold"])):
            diffs.append(f"{t['name']}: binned calibration but {t['threshold']!r} is no bin edge")
    checks.append(_result("thresholds (histograms)", diffs, "calibrated thresholds consistent with the bins"))

    diffs, n_rows = [], 0
    for r in m["per_group"]:
        if r["metric"] not in ("FMR", "FNMR"):
            continue
        n_rows += 1
        attr, group, name = r["attribute"], r["group"], r["threshold_name"]
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
    checks.append(_result("per_group (histograms)", diffs, f"{n_rows} FMR/FNMR rows consistent with the bins"))

    eng = m.get("engine") if isinstance(m.get("engine"), dict) else {}
    exact_mode = bool((eng.get("histogram") or {}).get("exact_mode")) if isinstance(eng.get("histogram"), dict) else False
    diffs = []
    for r in m["eer"]:
        attr, group = r["attribute"], r["group"]
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
    checks.append(_result("eer", diffs, f"{len(m['eer'])} rows" + (" (counts only: exact-mode run)" if exact_mode else " recomputed from the bins")))

    primary = m["protocol"].get("primary_threshold")
    for attr in attributes:
        diffs = []
        ac = scores.cells(attr)
        for r in m["cross_group_fmr"][attr]:
            ga, gb = r["group_a"], r["group_b"]
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
        checks.append(_result(f"cross_group_fmr[{attr}] (histograms)", diffs, "counts consistent with the bins"))
    _, dets = eer_table(scores)
    return checks, scores, dets
