"""``fvbench-verify`` for identification runs: recompute the 1:N numbers from the stored searches.

An identification result folder (:mod:`bench.report.identification`) keeps every
search's candidate list in ``identification_search.parquet`` and every gallery
template's groups in ``identification_gallery.parquet`` (both git-ignored, like
``scores.parquet``). From them this module recomputes, with the recorded protocol:

``identification_search``
    The lists are well formed (template indices in range, scores non-increasing and
    finite for completed searches) and the search counts equal ``metrics.json``.
``identification_thresholds``
    Every threshold at a target FPIR by the order-statistic rule on the non-mated
    searches' top scores; refused targets still refused; the nominal threshold equal
    to the model's.
``identification_per_group`` (and its CSV)
    FPIR, FNIR at each rank and threshold, selectivity and probe FTA per probe group,
    with Wilson intervals and the probe-subject bootstrap re-drawn with the recorded
    seed; small groups suppressed as the writer does. The gallery re-draw intervals need
    the embeddings and are not recomputed (said in the check's detail).
``identification_false_candidates`` / ``identification_false_candidate_cells`` (and CSVs)
    False candidates per gallery group and per probe-group x gallery-group cell.

The dataset, weights, files and provenance checks are those of :mod:`bench.verify`.
Nothing named in the folder is imported or executed: the protocol is rebuilt as a plain
dataclass from the recorded values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError, DataError

__all__ = ["is_identification_run", "verify_identification_run"]

SEARCH_FILE = "identification_search.parquet"
GALLERY_FILE = "identification_gallery.parquet"
_PER_GROUP_KEY = ["attribute", "group", "threshold_name", "metric"]
_BY_GALLERY_KEY = ["attribute", "threshold_name", "gallery_group"]
_CELL_KEY = ["attribute", "threshold_name", "probe_group", "gallery_group"]
_MAX_LISTED = 8


def is_identification_run(run_dir: str | Path) -> bool:
    """True when ``run_dir/metrics.json`` holds an ``identification`` section (False if unreadable)."""
    from bench.verify_core import folder_file, read_json

    try:  # the same hardened reader as every other verify path (regular file inside the folder, strict JSON)
        metrics = read_json(folder_file(Path(run_dir), "metrics.json"), what="metrics.json")
    except DataError:
        return False
    return isinstance(metrics, dict) and isinstance(metrics.get("identification"), dict)


def _same(a: Any, b: Any, rtol: float) -> bool:
    def num(x: Any) -> float | None:
        if x is None or (isinstance(x, str) and x == ""):
            return math.nan
        try:
            return float(x)
        except (TypeError, ValueError):
            return None
    fa, fb = num(a), num(b)
    if fa is not None and fb is not None:
        if math.isnan(fa) or math.isnan(fb):  # JSON writes +-inf (the investigation threshold) as null
            return (math.isnan(fa) or math.isinf(fa)) and (math.isnan(fb) or math.isinf(fb))
        return fa == fb or abs(fa - fb) <= rtol * max(abs(fa), abs(fb))
    return str(a) == str(b)


def _compare(expected: pd.DataFrame, stored: pd.DataFrame, key: list[str], cols: list[str], rtol: float) -> list[str]:
    """Cell differences ``key: column stored X, recomputed Y`` (missing / extra rows too)."""
    def index(df: pd.DataFrame) -> dict[tuple, pd.Series]:
        return {tuple("" if pd.isna(r[k]) else str(r[k]) for k in key): r for _, r in df.iterrows()}
    e, s = index(expected), index(stored)
    diffs = [f"row {k}: missing from the stored table" for k in e if k not in s]
    diffs += [f"row {k}: stored but not recomputed" for k in s if k not in e]
    for k in e.keys() & s.keys():
        for c in cols:
            if c in expected.columns and c in stored.columns and not _same(s[k][c], e[k][c], rtol):
                diffs.append(f"{k} {c}: stored {s[k][c]!r}, recomputed {e[k][c]!r}")
    return sorted(diffs)


def _check(name: str, diffs: list[str], ok_detail: str):
    from bench.verify_core import Check

    if diffs:
        more = f"\n... and {len(diffs) - _MAX_LISTED} more" if len(diffs) > _MAX_LISTED else ""
        return Check(name, "mismatch", "\n".join(diffs[:_MAX_LISTED]) + more)
    return Check(name, "ok", ok_detail)


def _load(run_dir: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    from bench.verify_core import folder_file, read_json

    metrics = read_json(folder_file(run_dir, "metrics.json"), what="an identification run's metrics.json")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("identification"), dict):
        raise DataError(f"{str(run_dir / 'metrics.json')!r}: expected a JSON object with an 'identification' section")
    for f in (SEARCH_FILE, GALLERY_FILE):
        if not (run_dir / f).is_file():
            raise DataError(f"{str(run_dir / f)!r} not found: the stored searches are needed to recompute an identification run "
                            "(runs with report.save_scores=false cannot be verified)")
    try:
        return metrics, pd.read_parquet(run_dir / SEARCH_FILE), pd.read_parquet(run_dir / GALLERY_FILE)
    except (OSError, ValueError) as err:
        raise DataError(f"{str(run_dir)!r}: the stored searches cannot be read as parquet tables: {err}") from err


def verify_identification_run(run_dir: str | Path, *, dataset_root: str | Path | None = None, check_dataset: bool = True,
                              check_weights: bool = True, check_bootstrap: bool = True, rtol: float = 1e-9):
    """Recompute an identification run from its stored searches; return a :class:`bench.verify.VerifyReport`.

    Parameters
    ----------
    run_dir : path
        A folder written by :func:`bench.report.identification.write_identification`.
    dataset_root, check_dataset, check_weights, rtol
        As in :func:`bench.verify.verify_run`.
    check_bootstrap : bool
        Re-draw the probe-subject bootstrap (else its columns are not compared).

    Raises
    ------
    DataError
        The folder lacks ``metrics.json`` or the stored searches, or they cannot be read.
    """
    from bench.identification_run import IdentificationProtocol, metrics_from_lists
    from bench.report.identification import _RATE_COLS, _blank
    from bench.verify_folder import RunFolder, _check_dataset, _check_provenance
    from bench.verify_core import Check, VerifyReport, check_file_manifest
    from bench.verify_core import check_weights as _weights_check

    run_dir = Path(run_dir)
    metrics, table, gallery = _load(run_dir)
    report = VerifyReport(run_dir=run_dir)
    checks = report.checks
    checks.append(check_file_manifest(run_dir))
    ident = metrics["identification"]
    pcfg = dict((metrics.get("config") or {}).get("protocol") or {})
    if not check_bootstrap:
        pcfg["bootstrap_replicates"] = None
    try:
        protocol = IdentificationProtocol(**pcfg)
    except (TypeError, ValueError, BenchError) as err:
        raise DataError(f"{str(run_dir)!r}: the recorded protocol does not rebuild: {err}") from err
    attributes = [str(a) for a in ident["protocol"]["attributes"]]

    # ---- the stored lists
    L = sum(1 for c in table.columns if c.startswith("cand_"))
    cand = table[[f"cand_{j + 1}" for j in range(L)]].to_numpy(np.int64)
    sc = table[[f"score_{j + 1}" for j in range(L)]].to_numpy(np.float64)
    acquired = table["acquired"].to_numpy(bool)
    kind = table["mate_template"].to_numpy(np.int64)
    diffs = []
    n_t = len(gallery)
    if ((cand[acquired] < 0) | (cand[acquired] >= n_t)).any():
        diffs.append("candidate indices outside the gallery")
    if not np.isfinite(sc[acquired]).all():
        diffs.append("non-finite scores in completed searches")
    if (np.diff(sc[acquired], axis=1) > 0).any():
        diffs.append("a candidate list is not ordered by score")
    if ((kind >= n_t) | (kind < -2)).any():
        diffs.append("mate templates outside the gallery")
    ds = metrics.get("dataset") or {}
    for key, value in (("mated_searches", int((kind != -1).sum())), ("nonmated_searches", int((kind == -1).sum())), ("gallery_templates", n_t)):
        if ds.get(key) != value:
            diffs.append(f"dataset.{key}: stored {ds.get(key)!r}, in the stored searches {value}")
    checks.append(_check("identification_search", diffs, f"{len(table)} searches against {n_t} templates, lists of {L}"))

    # ---- recompute
    probe_labels = {a: table[f"probe_{a}"].astype(str).to_numpy() for a in attributes}
    gallery_labels = {a: gallery[f"gallery_{a}"].astype(str).to_numpy() for a in attributes}
    model = metrics.get("model") or {}
    thresholds, per_group, by_g, cells = metrics_from_lists(cand, sc, kind, acquired, probe_labels, table["probe_subject"].astype(str).to_numpy(),
                                                            gallery_labels, model, protocol)
    diffs = []
    stored_t = {t["name"]: t for t in ident["thresholds"]}
    for t in thresholds:
        s = stored_t.get(t["name"])
        if s is None:
            diffs.append(f"threshold {t['name']}: recomputed but not stored")
            continue
        for k in ("status", "threshold", "achieved_fpir", "k", "n_nonmated_searches", "support"):
            if k in t and not _same(s.get(k), t[k] if not (isinstance(t[k], float) and math.isinf(t[k])) else None, rtol):
                diffs.append(f"threshold {t['name']} {k}: stored {s.get(k)!r}, recomputed {t[k]!r}")
    extra = set(stored_t) - {t["name"] for t in thresholds}
    diffs += [f"threshold {n}: stored but not recomputed" for n in sorted(extra)]
    checks.append(_check("identification_thresholds", diffs, f"{len(thresholds)} threshold(s) equal: {[t['name'] for t in thresholds]}"))

    # ---- suppression: subjects per group from probes and templates (every image is one or the other)
    subj = np.concatenate([table["probe_subject"].astype(str).to_numpy(), gallery["subject"].astype(str).to_numpy()])
    small: dict[str, list[str]] = {}
    min_subjects = int(ident["suppression"]["min_group_subjects"])
    for a in attributes:
        g = np.concatenate([probe_labels[a], gallery_labels[a]])
        n = pd.DataFrame({"s": subj, "g": g}).drop_duplicates().groupby("g")["s"].size()
        if (n < min_subjects).any():
            small[a] = sorted(n[n < min_subjects].index.tolist())
    stored_small = {k: sorted(v) for k, v in (ident["suppression"].get("groups_shown_as_counts_only") or {}).items()}
    checks.append(_check("identification_suppression", [] if stored_small == small else [f"stored {stored_small}, recomputed {small}"],
                         f"min_group_subjects {min_subjects}; counts only: {small or 'none'}"))
    per_group = _blank(per_group, small, ["group"], _RATE_COLS)
    by_g = _blank(by_g, small, ["gallery_group"], ["false_candidates", "per_enrolled_person", "rate"])
    cells = _blank(cells, small, ["probe_group", "gallery_group"], ["false_candidates", "rate"])
    cols = ["threshold", "errors", "n", "rate", "ci_low", "ci_high", "subjects", "flag", "fta", "fte", "generalized_rate", "saturated"]
    if check_bootstrap:
        cols += ["boot_low", "boot_high"]
    note = ("" if check_bootstrap else "bootstrap not re-drawn; ") + "gallery re-draw intervals need the embeddings (not recomputed)"
    for name, expected, key, vcols, csv in (
        ("identification_per_group", per_group, _PER_GROUP_KEY, cols, "identification_per_group.csv"),
        ("identification_false_candidates", by_g, _BY_GALLERY_KEY, ["false_candidates", "enrolled", "per_enrolled_person", "nonmated_searches", "rate"],
         "identification_false_candidates.csv"),
        ("identification_false_candidate_cells", cells, _CELL_KEY, ["false_candidates", "nonmated_searches", "enrolled", "rate"],
         "identification_false_candidate_cells.csv"),
    ):
        json_key = {"identification_per_group": "per_group", "identification_false_candidates": "false_candidates_by_gallery_group",
                    "identification_false_candidate_cells": "false_candidate_cells"}[name]
        stored = pd.DataFrame(ident.get(json_key) or [])
        diffs = _compare(expected, stored, key, vcols, rtol) if len(stored) else ["metrics.json holds no rows"]
        checks.append(_check(name, diffs, f"{len(expected)} rows equal" + (f" ({note})" if name == "identification_per_group" else "")))
        path = run_dir / csv
        if path.is_file():
            stored_csv = pd.read_csv(path, keep_default_na=True, dtype={k: str for k in key})
            exp = expected.copy()
            for k in key:
                exp[k] = exp[k].astype(str)
            diffs = _compare(exp, stored_csv, key, vcols, max(rtol, 1e-9))
            checks.append(_check(csv, diffs, f"{len(expected)} rows equal"))
        else:
            checks.append(Check(csv, "mismatch", "file missing"))
    checks.append(_check_dataset(RunFolder(path=run_dir, metrics=metrics, csv={}, scores=None, histograms_path=None),
                                 None if dataset_root is None else Path(dataset_root)) if check_dataset else Check("dataset", "skipped", "not requested"))
    checks.append(_weights_check(metrics["model"]) if check_weights else Check("weights", "skipped", "not requested"))
    checks.append(_check_provenance(metrics))
    from bench.verify_html import html_check  # issue 15: report.html re-rendered from the verified files

    checks.append(html_check(run_dir))
    return report
