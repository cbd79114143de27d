"""``report.html`` of a leaderboard folder (``fvbench-aggregate``), from its published files only.

Read: ``sources.json`` (sources with their ``metrics.json`` SHA-256, models, refused
folders, comparability tables), ``leaderboard.csv`` (the tidy table: values, intervals,
errors, comparisons) and the comparison figures named by the aggregation rule
(``fmr_by_group_<d>[_<table>]_<attribute>.png``, ``fnmr_by_group_...``, ``score_shift_...``).
Nothing else, so ``fvbench-verify`` / ``fvbench-aggregate --verify`` can re-render the
page from a folder whose CSV and ``sources.json`` they have just recomputed from the
sources, and compare it byte for byte (:func:`bench.report.html.check_html_report`).

The page shares the template, style sheet, escaping and Content-Security-Policy of every
other fvbench page (:mod:`bench.report.html`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from bench.errors import DataError
from bench.report.html_blocks import (_g, _int, _jsonload, _num, bullets, figure, key_values, note, page, paragraph, section, table)

__all__ = ["leaderboard_page", "figure_suffix", "slug", "LEADERBOARD_COLUMNS", "LEADERBOARD_GUIDE", "SOURCES_FILE", "CSV_FILE"]

SOURCES_FILE = "sources.json"
CSV_FILE = "leaderboard.csv"
_MAX_CSV_BYTES = 64 << 20

#: Columns of the per-attribute table: (header, quantity, shows the group).
LEADERBOARD_COLUMNS = (
    ("FMR", "FMR", False),
    ("FNMR", "FNMR", False),
    ("worst FMR group", "worst_FMR", True),
    ("best FMR group", "best_FMR", True),
    ("FMR max/min ratio", "differential:FMR_max_min_ratio", False),
    ("FMR worst − best (fixed groups)", "differential:FMR_max_vs_min_group_difference", False),
    ("worst FNMR group", "worst_FNMR", True),
    ("best FNMR group", "best_FNMR", True),
    ("FNMR max/min ratio", "differential:FNMR_max_min_ratio", False),
)

#: The reading guide of a leaderboard page.
LEADERBOARD_GUIDE = [
    "Each row is one result folder (recogniser and face detector) on the same dataset; only runs with the same protocol "
    "share a table (otherwise the table title says which protocol keys differ).",
    "FMR=… thresholds are calibrated per run on all its non-mated comparisons, so every run is compared at the same "
    "overall false match rate; 'nominal' is each model's own published threshold (models without one have no such row).",
    "Cells: rate, then (errors / comparisons) where the rate is a count ratio, then the 95% interval (subject bootstrap "
    "where the run has it, else Wilson over comparisons). † marks fewer than 30 errors (rule of 30, ISO/IEC 19795-1): "
    "imprecise. 0/n: no error; ≤ u is the one-sided exact 95% upper bound (docs/protocol.md §5.5).",
    "Worst/best group: highest/lowest rate among groups with published rates; groups below a run's minimum size are never "
    "ranked; 'tie' when all groups share one rate.",
    "Max/min ratios and max - min differences are biased upward with few subjects; the fixed-group worst − best "
    "difference has an interval that can include 0. Do not rank models whose intervals overlap.",
    "Figures: per-group FMR and FNMR of every run at the common target FMR (log scale, 95% intervals; ▽ = zero errors at "
    "the one-sided 95% upper bound) and the same-group non-mated score shift per group (in overall non-mated SDs).",
]


def slug(text: str) -> str:
    """A file-name-safe form of a dataset or attribute name (runs of other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


def figure_suffix(dataset: str, table: str, attribute: str, n_tables: int) -> str:
    """The ``<d>[_<table>]_<attribute>`` part of a leaderboard figure's name (the table only when a dataset has several)."""
    return f"{slug(dataset)}_{table}_{slug(attribute)}" if n_tables > 1 else f"{slug(dataset)}_{slug(attribute)}"


def _cell(r: dict | None, with_group: bool) -> Any:
    if r is None:
        return "–"
    v = _num(r.get("value"))
    if not math.isfinite(v):
        return "–"
    e, n = _num(r.get("errors")), _num(r.get("comparisons"))
    lines = []
    counted = math.isfinite(e) and math.isfinite(n) and n > 0
    if counted and e == 0:  # as the run report: exact one-sided 95% upper bound (docs/protocol.md §5.5)
        from bench.metrics.intervals import zero_error_upper_bound

        lines.append(f"0/{int(n):,}")
        lines.append(f"≤ {_g(float(zero_error_upper_bound(int(n))), 2)} (one-sided exact 95% upper bound)")
        if with_group:
            lines.insert(0, str(r.get("group", "")))
        return lines
    else:
        lines.append(f"{_g(v)}{' †' if counted and e < 30 else ''}")
        if counted:
            lines.append(f"({int(e):,} / {int(n):,})")
    lo, hi = _num(r.get("low")), _num(r.get("high"))
    if math.isfinite(lo) and math.isfinite(hi):
        lines.append(f"[{_g(lo, 2)}, {_g(hi, 2)}]")
    elif math.isfinite(lo):
        lines.append(f"[{_g(lo, 2)}, ∞)")
    if with_group:
        lines.insert(0, str(r.get("group", "")))
    return lines


def _read_csv(folder: Path) -> list[dict]:
    import pandas as pd

    path = folder / CSV_FILE
    if not path.is_file() or path.is_symlink():
        raise DataError(f"{path}: missing or not a regular file; expected the leaderboard's tidy table")
    if path.stat().st_size > _MAX_CSV_BYTES:
        raise DataError(f"{path}: larger than {_MAX_CSV_BYTES >> 20} MiB; refusing to read it")
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={c: str for c in (
            "dataset", "table", "run", "recogniser", "detector", "attribute", "threshold_name", "quantity", "group", "interval")})
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read it as CSV ({err})") from err
    need = {"dataset", "table", "run", "attribute", "threshold_name", "quantity", "group", "value", "low", "high"}
    if not need <= set(df.columns):
        raise DataError(f"{path}: columns {sorted(need - set(df.columns))} missing")
    df = df.astype(object).where(df.notna(), None)
    return df.to_dict(orient="records")


def leaderboard_page(folder: Path) -> dict:
    """The page of a leaderboard folder (see the module docstring for what is read).

    Raises
    ------
    DataError
        ``sources.json`` or ``leaderboard.csv`` is missing or malformed, or a figure is not a PNG.
    """
    folder = Path(folder)
    src = _jsonload(folder / SOURCES_FILE)
    rows = _read_csv(folder)
    sources = [s for s in src.get("sources") or [] if isinstance(s, dict)]
    refused = [r for r in src.get("refused") or [] if isinstance(r, dict)]
    tables = src.get("tables") if isinstance(src.get("tables"), dict) else {}
    info = {str(s.get("folder")): s for s in sources}

    datasets = list(dict.fromkeys(str(r["dataset"]) for r in rows))
    summary = [paragraph(
        f"{len(sources)} result folder(s) on {len(datasets)} dataset(s) ({', '.join(datasets)}), side by side at common "
        "thresholds, with per-group FMR, FNMR and FTA, the worst and best group and demographic differential measures "
        "(ISO/IEC 19795-1, NIST FRVT demographic conventions). Definitions: docs/protocol.md; models, detectors and "
        "licences: docs/models.md.")]
    if refused:
        summary.append(note(f"{len(refused)} folder(s) were refused and are not in the tables (see 'Refused folders')."))
    sections = [section("Summary", summary, id="summary")]

    for dname in datasets:
        drows = [r for r in rows if str(r["dataset"]) == dname]
        dtables = tables.get(dname) if isinstance(tables.get(dname), dict) else {}
        tids = list(dict.fromkeys(str(r["table"]) for r in drows))
        children, reasons = [], []
        for tid in tids:
            trows = [r for r in drows if str(r["table"]) == tid]
            reason = str((dtables.get(tid) or {}).get("reason", "")) if isinstance(dtables.get(tid), dict) else ""
            runs = list(dict.fromkeys(str(r["run"]) for r in trows))
            subjects = {str(r["run"]): r for r in trows if r["quantity"] == "subjects"}
            attributes = [a for a in dict.fromkeys(str(r["attribute"]) for r in trows if r["attribute"])]
            for attr in attributes:
                arows = [r for r in trows if str(r["attribute"]) == attr]
                blocks: list[dict] = []
                tnames = [t for t in dict.fromkeys(str(r["threshold_name"]) for r in arows if r["threshold_name"])]
                for tname in tnames:
                    at = [r for r in arows if str(r["threshold_name"]) == tname]
                    head = ["run", "recogniser / detector", "subjects", "FTA", *[c[0] for c in LEADERBOARD_COLUMNS]]
                    body = []
                    for run in runs:
                        mine = [r for r in at if str(r["run"]) == run]
                        if not mine:
                            continue
                        fta = next((r for r in arows if str(r["run"]) == run and r["quantity"] == "FTA"), None)
                        first = mine[0]
                        cells: list[Any] = [run, [str(first.get("recogniser", "")), str(first.get("detector", ""))],
                                            f"{_int((subjects.get(run) or {}).get('value')):,}" if run in subjects else "–",
                                            _cell(fta, False)]
                        for _, q, grp in LEADERBOARD_COLUMNS:
                            cells.append(_cell(next((r for r in mine if r["quantity"] == q), None), grp))
                        body.append(cells)
                    thr = next((r for r in at if _fin_num(r.get("target_fmr"))), None)
                    tgt = f" (target FMR {_g(thr.get('target_fmr'))})" if thr else ""
                    blocks.append(table(f"{attr} at {tname}{tgt}", head, body, numeric=(2,)))
                suffix = figure_suffix(dname, tid, attr, len(tids))
                for key, label in (("fmr_by_group", "Per-group FMR"), ("fnmr_by_group", "Per-group FNMR"),
                                   ("score_shift", "Same-group non-mated score shift")):
                    name = f"{key}_{suffix}.png"
                    f = figure(folder, name, alt=f"{label} by {attr}, every run", caption=f"{label} by {attr}, every run")
                    if f is not None:
                        blocks.append(f)
                title = f"{tid}: {attr}" if len(tids) > 1 else attr
                children.append(section(title, blocks, id=f"{dname}-{tid}-{attr}"))
            reasons.append(f"{tid} ({', '.join(runs)}): {reason or 'not recorded'}")
        dblocks = [paragraph("One table per attribute and threshold; one row per result folder.")]
        if len(tids) > 1:
            dblocks.append(bullets(reasons))
        sections.append(section(f"Leaderboard: {dname}", dblocks, children, id=f"dataset-{dname}"))

    sections.append(section("Models", [table("Models and their provenance",
                                             ["run", "recogniser", "detector", "licence", "training data"],
                                             [[str(s.get("folder")), str(s.get("recogniser", "not recorded")),
                                               str(s.get("detector", "not recorded")), str(s.get("licence", "not recorded")),
                                               str(s.get("training_data", "not recorded"))] for s in sources])], id="models"))
    if refused:
        sections.append(section("Refused folders", [table("Refused folders", ["folder", "reason"],
                                                          [[str(r.get("folder")), str(r.get("reason"))] for r in refused])],
                                id="refused"))
    sections += [
        section("How to read this", [bullets(LEADERBOARD_GUIDE)], id="reading-guide"),
        section("Limitations", [bullets([
            "Each run describes one model with its settings and weights on this dataset's sample of subjects; groups, their "
            "names and sizes are the dataset's own (self-reported or annotated labels) and do not generalise to other populations.",
            "A model's rank can change with the threshold, the detector, the capture conditions and the dataset; small "
            "groups give wide intervals, and overlapping intervals do not support an order.",
            "Intervals are those of each run (subject bootstrap where the run drew one, else Wilson intervals over comparisons, "
            "which understate the uncertainty because comparisons sharing a subject are correlated).",
            "The score-shift figure needs each run's comparison-score table (scores.parquet, not published); runs without it are "
            "absent from that figure.",
        ])], id="limitations"),
        section("Provenance", [
            key_values([("sources", f"{len(sources)} result folder(s), each with the SHA-256 of its metrics.json"),
                        ("aggregation rule", "bench.aggregate (fvbench-aggregate)")]),
            table("Sources", ["folder", "run name", "metrics.json SHA-256"],
                  [[str(s.get("folder")), str(s.get("run_name")), str(s.get("metrics_sha256"))] for s in sources]),
            paragraph(f"Everything above comes from {SOURCES_FILE} and {CSV_FILE} in this folder; files.sha256 lists the "
                      "SHA-256 of every published file, and fvbench-aggregate --verify recomputes the tables from the sources."),
        ], id="provenance"),
    ]
    return page(f"fvbench leaderboard: {', '.join(datasets) or folder.name}", sections,
                subtitle="Face recognition models side by side: per-group error rates and demographic differentials at common thresholds")


def _fin_num(x: Any) -> bool:
    return math.isfinite(_num(x))
