"""``fvbench-verify`` of a PUBLISHED identification folder: from its published counts.

A published identification folder carries no ``identification_search.parquet`` (git-ignored,
like ``scores.parquet`` of a 1:1 run), so the candidate lists cannot be re-searched. As for a
published 1:1 folder, every number that follows from the published counts is recomputed
and every count is cross-checked against the others:

``identification_per_group`` (and its CSV)
    rate = errors / n, the Wilson interval at the recorded confidence (not for SEL, a mean),
    the flag (zero errors; fewer than 30: low precision), the generalized rate
    (FPIR: e / (n + FTA); FNIR: (e + FTA + FTE) / (n + FTA + FTE)); counts-only groups blank.
``identification_counts``
    Per attribute, threshold and metric: the ``(all)`` row's counts are the sums of the
    groups' (errors only when no group is counts-only); ``(all)`` rows equal across
    attributes; ``dataset.nonmated_searches`` = FPIR n + FTA and
    ``dataset.mated_searches`` = FNIR n + FTA + FTE.
``identification_thresholds``
    achieved FPIR = k / N; N = the completed non-mated searches; k = the ``(all)`` FPIR
    errors at that threshold. The threshold values themselves need the searches (said so).
``identification_false_candidates`` / ``..._cells`` (and CSVs)
    rate = false candidates / (searches x enrolled), per enrolled person = k / enrolled;
    per gallery group = the sum of its cells over probe groups; searches per cell = the
    probe group's completed non-mated searches.
``identification_cross_fmr``
    FMR = false matches / comparisons of the 1:1 cross-group table.
``identification_suppression``
    Groups with fewer than ``min_group_subjects`` subjects (enrolled + not enrolled, from
    the split) are exactly the counts-only ones.

Checks that need the searches (threshold values, bootstrap, gallery re-draws, gallery-size
and composition sweeps) are reported as skipped with that reason. Nothing named in the
folder is imported or executed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import DataError

__all__ = ["verify_published_identification", "NEEDS_SEARCHES"]

NEEDS_SEARCHES = ("needs the stored searches (identification_search.parquet, git-ignored in published folders): "
                  "rerun the experiment to recompute them")
_CSV = {"per_group": "identification_per_group.csv", "false_candidates_by_gallery_group": "identification_false_candidates.csv",
        "false_candidate_cells": "identification_false_candidate_cells.csv"}


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _flag(e: float, n: float) -> str:
    from bench.metrics.identification import _flag as flag

    return flag(e, n)


def _per_group_expected(stored: pd.DataFrame, confidence: float) -> pd.DataFrame:
    from bench.metrics.intervals import wilson_interval

    out = stored.copy()
    for i, r in stored.iterrows():
        if r.get("flag") == "suppressed_small_group":
            continue
        e, n, metric = _num(r["errors"]), _num(r["n"]), str(r["metric"])
        if not (math.isfinite(e) and math.isfinite(n)):
            continue
        out.at[i, "rate"] = e / n if n else math.nan
        if metric == "SEL":
            out.at[i, "flag"] = "no_searches" if n == 0 else ""
        else:
            lo, hi = wilson_interval(int(e), int(n), confidence=confidence) if n else (math.nan, math.nan)
            out.at[i, "ci_low"], out.at[i, "ci_high"] = float(lo), float(hi)
            out.at[i, "flag"] = _flag(e, n)
        fta, fte = _num(r.get("fta")), _num(r.get("fte"))
        if metric == "FPIR" and math.isfinite(fta):
            out.at[i, "generalized_rate"] = e / (n + fta) if n + fta else math.nan
        elif metric.startswith("FNIR") and math.isfinite(fta) and math.isfinite(fte):
            out.at[i, "generalized_rate"] = (e + fta + fte) / (n + fta + fte) if n + fta + fte else math.nan
    return out


def _count_consistency(pg: pd.DataFrame, dataset: dict) -> list[str]:
    diffs = []
    key = ["attribute", "threshold_name", "metric"]
    pg = pg.assign(threshold_name=pg["threshold_name"].fillna("").astype(str))
    for k, sub in pg.groupby(key, sort=False):
        allr, groups = sub[sub["group"] == "(all)"], sub[sub["group"] != "(all)"]
        if len(allr) != 1 or groups.empty:
            continue
        a = allr.iloc[0]
        cols = ["n", "fta", "fte"] + ([] if (groups["flag"] == "suppressed_small_group").any() else ["errors"])
        for c in cols:
            if c in sub and math.isfinite(_num(a.get(c))):
                total = sum(_num(x) for x in groups[c])
                if math.isfinite(total) and total != _num(a[c]):
                    diffs.append(f"{k} {c}: (all) {a[c]!r}, sum over groups {total:g}")
    allrows = pg[pg["group"] == "(all)"]
    for (t, m), sub in allrows.groupby(["threshold_name", "metric"], sort=False):
        for c in ("errors", "n"):
            vals = {_num(x) for x in sub[c]}
            if len(vals) > 1:
                diffs.append(f"({t!r}, {m}) {c}: the (all) rows differ between attributes {sorted(vals)}")
    nm, mt = dataset.get("nonmated_searches"), dataset.get("mated_searches")
    for _, r in allrows.drop_duplicates(["threshold_name", "metric"]).iterrows():
        n, fta, fte = _num(r["n"]), _num(r.get("fta")), _num(r.get("fte"))
        if r["metric"] == "FPIR" and math.isfinite(fta) and n + fta != _num(nm):
            diffs.append(f"dataset.nonmated_searches {nm!r}, FPIR@{r['threshold_name']} n + FTA = {n + fta:g}")
        if str(r["metric"]).startswith("FNIR") and math.isfinite(fta) and math.isfinite(fte) and n + fta + fte != _num(mt):
            diffs.append(f"dataset.mated_searches {mt!r}, {r['metric']}@{r['threshold_name']} n + FTA + FTE = {n + fta + fte:g}")
    return diffs


def _threshold_diffs(thresholds: list[dict], pg: pd.DataFrame, rtol: float) -> list[str]:
    from bench.verify_identification import _same

    diffs = []
    allr = pg[(pg["group"] == "(all)") & (pg["metric"] == "FPIR")].drop_duplicates("threshold_name").set_index("threshold_name")
    for t in thresholds:
        if t.get("status") != "ok" or t.get("kind") == "investigation":
            continue
        name = str(t.get("name"))
        n, ach = _num(t.get("n_nonmated_searches")), _num(t.get("achieved_fpir"))
        if name not in allr.index:
            diffs.append(f"threshold {name}: no (all) FPIR row")
            continue
        r = allr.loc[name]
        if n != _num(r["n"]):
            diffs.append(f"threshold {name} n_nonmated_searches: stored {t.get('n_nonmated_searches')!r}, completed non-mated searches {r['n']!r}")
        k = _num(t.get("k")) if "k" in t else _num(r["errors"])
        if "k" in t and k != _num(r["errors"]):
            diffs.append(f"threshold {name} k: stored {t.get('k')!r}, (all) FPIR errors {r['errors']!r}")
        if n and not _same(ach, k / n, rtol):
            diffs.append(f"threshold {name} achieved_fpir: stored {t.get('achieved_fpir')!r}, k / N = {k / n!r}")
        tgt = _num(t.get("target_fpir"))
        if math.isfinite(tgt) and ach > tgt * (1 + rtol):
            diffs.append(f"threshold {name}: achieved FPIR {ach!r} above its target {tgt!r}")
    return diffs


def _false_candidate_expected(by_g: pd.DataFrame, cells: pd.DataFrame, pg: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    diffs = []
    by_g, cells = by_g.copy(), cells.copy()
    for df, n_col in ((by_g, "nonmated_searches"), (cells, "nonmated_searches")):
        fc, en, n = df["false_candidates"].map(_num), df["enrolled"].map(_num), df[n_col].map(_num)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where((en * n) > 0, fc / (en * n), np.nan)
        df["rate"] = np.where(fc.notna() & np.isfinite(fc), rate, df["rate"].map(_num))
        if "per_enrolled_person" in df:
            with np.errstate(invalid="ignore", divide="ignore"):
                per = np.where(en > 0, fc / en, np.nan)
            df["per_enrolled_person"] = np.where(np.isfinite(fc), per, df["per_enrolled_person"].map(_num))
    fpir_n = {(str(r["attribute"]), str(r["threshold_name"]), str(r["group"])): _num(r["n"])
              for _, r in pg[pg["metric"] == "FPIR"].iterrows()}
    for _, r in by_g.iterrows():
        key = (str(r["attribute"]), str(r["threshold_name"]))
        sub = cells[(cells["attribute"] == r["attribute"]) & (cells["threshold_name"] == r["threshold_name"])
                    & (cells["gallery_group"] == r["gallery_group"])]
        if sub.empty:
            continue
        fc = [_num(x) for x in sub["false_candidates"]]
        if all(math.isfinite(x) for x in fc) and math.isfinite(_num(r["false_candidates"])) and sum(fc) != _num(r["false_candidates"]):
            diffs.append(f"{key + (str(r['gallery_group']),)}: false candidates {r['false_candidates']!r}, sum over probe groups {sum(fc):g}")
        if _num(r["nonmated_searches"]) != fpir_n.get(key + ("(all)",), math.nan):
            diffs.append(f"{key}: false-candidate searches {r['nonmated_searches']!r}, completed non-mated searches "
                         f"{fpir_n.get(key + ('(all)',))!r}")
    for _, r in cells.iterrows():
        n = fpir_n.get((str(r["attribute"]), str(r["threshold_name"]), str(r["probe_group"])))
        if n is not None and _num(r["nonmated_searches"]) != n:
            diffs.append(f"({r['attribute']!r}, {r['threshold_name']!r}, probe {r['probe_group']!r}): cell searches "
                         f"{r['nonmated_searches']!r}, the group's completed non-mated searches {n!r}")
    return by_g, cells, sorted(set(diffs))


def verify_published_identification(run_dir: str | Path, *, dataset_root: str | Path | None = None, check_dataset: bool = True,
                                    check_weights: bool = True, rtol: float = 1e-9):
    """Verify a published identification folder from its counts; return a :class:`bench.verify.VerifyReport`.

    Parameters
    ----------
    run_dir : path
        A folder written by :func:`bench.report.identification.write_identification` whose
        stored searches are absent.
    dataset_root, check_dataset, check_weights, rtol
        As in :func:`bench.verify.verify_run`.

    Raises
    ------
    DataError
        ``metrics.json`` is missing, unreadable or has no ``identification`` section.
    """
    from bench.verify_folder import RunFolder, _check_dataset, _check_provenance
    from bench.verify_core import Check, VerifyReport, check_file_manifest, folder_file, read_json
    from bench.verify_core import check_weights as _weights_check
    from bench.verify_html import html_check
    from bench.verify_identification import _BY_GALLERY_KEY, _CELL_KEY, _PER_GROUP_KEY, _check, _compare

    run_dir = Path(run_dir)
    metrics = read_json(folder_file(run_dir, "metrics.json"), what="an identification run's metrics.json")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("identification"), dict):
        raise DataError(f"{str(run_dir / 'metrics.json')!r}: expected a JSON object with an 'identification' section")
    ident = metrics["identification"]
    report = VerifyReport(run_dir=run_dir, kind="identification")
    checks = report.checks
    checks.append(check_file_manifest(run_dir))
    checks.append(Check("source", "info", "published folder (no identification_search.parquet): rates, intervals, flags and "
                                          "cross-counts recomputed from the published counts; checks that need the searches say so"))
    try:
        pg = pd.DataFrame(ident["per_group"])
        by_g = pd.DataFrame(ident["false_candidates_by_gallery_group"])
        cells = pd.DataFrame(ident["false_candidate_cells"])
        confidence = float(ident["protocol"]["confidence"])
        dataset = metrics.get("dataset") or {}
        if pg.empty or not {*_PER_GROUP_KEY, "errors", "n", "flag"} <= set(pg.columns):
            raise KeyError("per_group rows")
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{str(run_dir / 'metrics.json')!r}: identification section malformed ({err})") from None
    pg["threshold_name"] = pg["threshold_name"].fillna("")

    # suppression: subjects per group from the split
    split = pd.DataFrame((ident.get("split") or {}).get("per_group") or [])
    min_subjects = int(_num((ident.get("suppression") or {}).get("min_group_subjects")) or 0)
    small: dict[str, list[str]] = {}
    if not split.empty:
        n_subj = split["enrolled_subjects"].map(_num) + split["not_enrolled_subjects"].map(_num)
        for a, sub in split.assign(_n=n_subj).groupby("attribute", sort=False):
            hit = sorted(str(g) for g in sub.loc[sub["_n"] < min_subjects, "group"])
            if hit:
                small[str(a)] = hit
    stored_small = {k: sorted(map(str, v)) for k, v in ((ident.get("suppression") or {}).get("groups_shown_as_counts_only") or {}).items()}
    flagged = {str(a): sorted({str(g) for g in sub["group"]}) for a, sub in pg[pg["flag"] == "suppressed_small_group"].groupby("attribute")}
    diffs = [] if stored_small == small else [f"stored {stored_small}, from the split's subject counts {small}"]
    if flagged != small:
        diffs.append(f"rows flagged suppressed_small_group: {flagged}, expected {small}")
    checks.append(_check("identification_suppression", diffs, f"min_group_subjects {min_subjects}; counts only: {small or 'none'}"))

    # per group
    expected = _per_group_expected(pg, confidence)
    cols = ["rate", "ci_low", "ci_high", "flag", "generalized_rate"]
    checks.append(_check("identification_per_group", _compare(expected, pg, _PER_GROUP_KEY, cols, rtol),
                         f"{len(pg)} rows: rates, Wilson intervals, flags and generalized rates follow from the counts "
                         f"(bootstrap and gallery re-draw intervals: {NEEDS_SEARCHES})"))
    checks.append(_check("identification_counts", _count_consistency(pg, dataset),
                         "(all) = sum of groups; equal across attributes; searches match dataset counts"))
    checks.append(_check("identification_thresholds", _threshold_diffs(list(ident.get("thresholds") or []), pg, rtol),
                         f"achieved FPIR = k / N for every threshold; threshold values: {NEEDS_SEARCHES}"))
    exp_g, exp_c, diffs = _false_candidate_expected(by_g, cells, pg)
    fc_cols = ["false_candidates", "enrolled", "per_enrolled_person", "nonmated_searches", "rate"]
    checks.append(_check("identification_false_candidates", diffs + _compare(exp_g, by_g, _BY_GALLERY_KEY, fc_cols, rtol),
                         f"{len(by_g)} rows: rates follow from the counts; each is the sum of its probe-group cells"))
    checks.append(_check("identification_false_candidate_cells", _compare(exp_c, cells, _CELL_KEY, fc_cols, rtol),
                         f"{len(cells)} rows: rates follow from the counts"))
    cross = pd.DataFrame(ident.get("cross_group_fmr") or [])
    if not cross.empty and {"false_matches", "comparisons", "fmr"} <= set(cross.columns):
        diffs = []
        for _, r in cross.iterrows():
            fm, n = _num(r["false_matches"]), _num(r["comparisons"])
            if math.isfinite(fm) and n > 0 and abs(fm / n - _num(r["fmr"])) > rtol * max(fm / n, 1e-300):
                diffs.append(f"({r.get('attribute')!r}, {r.get('probe_group')!r} x {r.get('gallery_group')!r}): fmr {r['fmr']!r}, "
                             f"false matches / comparisons {fm / n!r}")
        checks.append(_check("identification_cross_fmr", diffs, f"{len(cross)} cells: FMR = false matches / comparisons"))

    # CSVs equal the JSON
    for key, csv in _CSV.items():
        keycols = {"per_group": _PER_GROUP_KEY, "false_candidates_by_gallery_group": _BY_GALLERY_KEY,
                   "false_candidate_cells": _CELL_KEY}[key]
        stored = {"per_group": pg, "false_candidates_by_gallery_group": by_g, "false_candidate_cells": cells}[key].copy()
        path = run_dir / csv
        if not path.is_file() or path.is_symlink():
            checks.append(Check(csv, "mismatch", "file missing (or not a regular file)"))
            continue
        try:
            got = pd.read_csv(path, keep_default_na=True, dtype={k: str for k in keycols})
        except (OSError, ValueError) as err:
            checks.append(Check(csv, "mismatch", f"cannot be read as CSV ({err})"))
            continue
        for k in keycols:
            stored[k] = stored[k].fillna("").astype(str)
            got[k] = got[k].fillna("").astype(str)
        vcols = [c for c in stored.columns if c not in keycols and c in got.columns]
        checks.append(_check(csv, _compare(stored, got, keycols, vcols, max(rtol, 1e-9)), f"{len(stored)} rows equal metrics.json"))

    checks.append(Check("identification_search", "skipped", f"candidate lists, threshold values, bootstrap, gallery re-draws and "
                                                             f"gallery-size sweeps: {NEEDS_SEARCHES}"))
    checks.append(_check_dataset(RunFolder(path=run_dir, metrics=metrics, csv={}, scores=None, histograms_path=None),
                                 None if dataset_root is None else Path(dataset_root)) if check_dataset else Check("dataset", "skipped", "not requested"))
    checks.append(_weights_check(metrics["model"]) if check_weights else Check("weights", "skipped", "not requested"))
    checks.append(_check_provenance(metrics))
    checks.append(html_check(run_dir))
    return report
