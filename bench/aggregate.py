"""``fvbench-aggregate``: a leaderboard folder from result folders (models and detectors side by side).

Usage::

    fvbench-aggregate results/frl_london_sface results/frl_london_dlib ... --out results/leaderboard_frl_london
    fvbench-aggregate 'results/frl_london_*' --out results/leaderboard_frl_london     # a quoted glob
    fvbench-aggregate --verify results/leaderboard_frl_london

What is read from each source folder: ``metrics.json`` (parsed as JSON, nothing in it is
imported or executed) and, when present, ``scores.parquet`` (plain columns) for the score
shift figure. Nothing is written outside the output folder, which appears whole or not at
all (:func:`bench.report.folder.staged_folder`) and ends with ``files.sha256``. An existing
output folder is replaced only if it is a leaderboard fvbench wrote (its ``files.sha256``
lists every file in it and its ``sources.json`` is a leaderboard's); anything else, or a
leaderboard holding other files, is refused.

Comparability. Runs are grouped by dataset (name + manifest SHA-256). Within a dataset,
runs whose protocol differs (pair definitions, decision and threshold rules, attributes,
target FMRs, non-mated policy, calibration group, interval settings, differential options)
go into separate tables, each labelled with the keys that differ from the first table;
a folder that is not a result folder, or that is a streamed run without per-group rows,
is refused with the reason (listed in the leaderboard and ``sources.json``).

Outputs (per dataset ``<d>``):

``leaderboard.csv``
    Tidy (long) table: one row per run x attribute x threshold x quantity, with the
    value, its 95% interval (subject bootstrap where the run has it, else Wilson), errors
    and comparisons. Quantities: ``FMR``/``FNMR`` overall, ``FTA``, ``worst_FMR``,
    ``best_FMR``, ``worst_FNMR``, ``best_FNMR`` (group in ``group``; groups shown as
    counts only are never ranked), every differential measure of the run, ``subjects``.
``leaderboard_<d>.md``
    Per table and attribute: recogniser, detector, subjects, FTA, FMR and FNMR at each
    common target FMR, worst/best group with rate and interval, max/min ratios with
    their intervals; licence and training data of each model.
``fmr_by_group_<d>_<attribute>.png`` / ``fnmr_by_group_...``
    Per-group FMR (FNMR) at the common global target FMR across runs with intervals (log
    scale; zero-error groups drawn at their one-sided 95% upper bound, open markers).
``score_shift_<d>_<attribute>.png``
    Per group, mean non-mated score minus the run's overall mean non-mated score, in units
    of the run's overall non-mated standard deviation (comparable across score scales),
    with a 95% interval over subjects (normal approximation to the per-subject means);
    only for runs whose ``scores.parquet`` is present.
``report.html``
    The same tables with counts and intervals, the figures embedded, the reading guide,
    limitations and provenance: a self-contained web page rendered from ``sources.json``,
    ``leaderboard.csv`` and the figures only (:mod:`bench.report.leaderboard_html`).
``sources.json``
    Each source's folder name, run name, SHA-256 of its ``metrics.json``, recogniser,
    detector, licence and training data, and each refused
    folder with its reason. ``--verify`` recomputes everything from the sources and
    compares it with the published files.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import BenchError, ConfigError, DataError
from bench.report.leaderboard_html import LEADERBOARD_COLUMNS
from bench.files import loads_json

__all__ = ["RunSummary", "aggregate", "aggregate_main", "load_run", "tidy_rows", "verify_leaderboard"]

log = logging.getLogger(__name__)

SOURCES_FILE = "sources.json"
_MAX_METRICS_BYTES = 64 << 20
# protocol fields that must agree for runs to share a table
_PROTOCOL_KEYS = (
    "mated",
    "nonmated",
    "per_group_fmr",
    "decision_rule",
    "threshold_rule",
    "fta",
    "attributes",
    "target_fmrs",
    "confidence",
)
_CONFIG_PROTOCOL_KEYS = (
    "nonmated_policy",
    "max_nonmated",
    "calibration_group",
    "bootstrap_replicates",
    "differential_alpha",
    "zero_rule",
    "reference_groups",
)


@dataclass
class RunSummary:
    """What the leaderboard needs from one result folder (read from ``metrics.json``).

    Attributes
    ----------
    folder : pathlib.Path
    label : str
        Folder name (unique within one aggregation).
    metrics_sha256 : str
        SHA-256 of the ``metrics.json`` bytes read.
    run_name, recogniser, detector, dataset, manifest_sha256 : str
    licence, training_data : str
    protocol : dict
        The comparability signature (see module docstring).
    per_group : pandas.DataFrame
        ``metrics.json["per_group"]``.
    differentials : pandas.DataFrame
    thresholds : list of dict
    subjects : int
    """

    folder: Path
    label: str
    metrics_sha256: str
    run_name: str
    recogniser: str
    detector: str
    dataset: str
    manifest_sha256: str
    licence: str
    training_data: str
    protocol: dict
    per_group: pd.DataFrame
    differentials: pd.DataFrame
    thresholds: list = field(default_factory=list)
    subjects: int = 0


def _detector_of(model: dict) -> str:
    if model.get("detector"):
        return str(model["detector"])
    acq = (model.get("settings") or {}).get("acquisition") or {}
    text = str(acq.get("detector", ""))
    for key, name in (("HOG", "dlib_hog"), ("MMOD", "dlib_mmod"), ("MTCNN", "mtcnn"), ("YuNet", "yunet")):
        if key in text:
            return name
    return "n/a" if model.get("name") == "generator" else "unknown"


def load_run(folder: str | Path) -> RunSummary:
    """Read one result folder.

    Raises
    ------
    DataError
        Not a result folder (no ``metrics.json``), unreadable or malformed JSON, or a run
        without the fields a leaderboard needs; the message names the folder and the key.
    """
    folder = Path(folder)
    path = folder / "metrics.json"
    if not path.is_file():
        raise DataError(f"{str(folder)!r} is not a result folder: no metrics.json")
    if path.stat().st_size > _MAX_METRICS_BYTES:
        raise DataError(f"{str(path)!r} is larger than {_MAX_METRICS_BYTES >> 20} MiB; refusing to read it")
    raw = path.read_bytes()
    try:
        m = loads_json(raw)
    except ValueError as err:  # deep nesting and huge integers included (bench.files.loads_json)
        raise DataError(f"{str(path)!r}: {err}; expected a result folder's metrics.json") from None
    if not isinstance(m, dict):
        raise DataError(f"{str(path)!r}: expected a JSON object")
    if isinstance(m.get("identification"), dict):  # a 1:N run (bench.protocol.identification) has no 1:1 per_group table
        raise DataError(f"{str(folder)!r}: an identification run (1:N) is not a leaderboard source; leaderboards compare 1:1 runs")
    try:
        model, dataset, protocol = m["model"], m["dataset"], m["protocol"]
        config_protocol = (m.get("config") or {}).get("protocol") or {}
        per_group = pd.DataFrame(m["per_group"])
        diffs = pd.DataFrame(m.get("differentials") or [])
        sig = {k: protocol.get(k) for k in _PROTOCOL_KEYS}
        sig.update({f"config.{k}": config_protocol.get(k) for k in _CONFIG_PROTOCOL_KEYS})
        summary = RunSummary(
            folder=folder,
            label=folder.name,
            metrics_sha256=hashlib.sha256(raw).hexdigest(),
            run_name=str(m.get("run_name", folder.name)),
            recogniser=str(model.get("recogniser") or model["name"]),
            detector=_detector_of(model),
            dataset=str(dataset["name"]),
            manifest_sha256=str(dataset.get("manifest_sha256") or "none"),
            licence=str(model.get("licence") or "not recorded"),
            training_data=str(model.get("training_data") or "not recorded"),
            protocol=sig,
            per_group=per_group,
            differentials=diffs,
            thresholds=list(m.get("thresholds") or []),
            subjects=int(dataset.get("subjects_published", dataset.get("subjects")) or 0),  # published population (after withholding)
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{str(path)!r}: missing or malformed field {err}; not a leaderboard source") from err
    need = {"attribute", "group", "threshold_name", "metric", "rate"}
    if per_group.empty or not need <= set(per_group.columns):
        raise DataError(f"{str(path)!r}: per_group lacks {sorted(need - set(per_group.columns))}")
    return summary


def _interval(row: pd.Series) -> tuple[float, float, str]:
    for lo, hi, kind in (("boot_low", "boot_high", "subject bootstrap"), ("wilson_low", "wilson_high", "Wilson")):
        a, b = row.get(lo), row.get(hi)
        if a is not None and b is not None and not (pd.isna(a) or pd.isna(b)):
            return float(a), float(b), kind
    return math.nan, math.nan, ""


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _target_thresholds(run: RunSummary) -> dict[str, float | None]:
    """Threshold name -> target FMR (None for the nominal/external ones)."""
    out = {}
    for t in run.thresholds:
        if isinstance(t, dict) and t.get("name") and t.get("status", "ok") == "ok":
            out[str(t["name"])] = t.get("target_fmr")
    return out


def tidy_rows(run: RunSummary, table: str) -> list[dict]:
    """Long-format leaderboard rows of one run (see module docstring for the quantities)."""
    rows: list[dict] = []
    base = {
        "dataset": run.dataset,
        "manifest_sha256": run.manifest_sha256,
        "table": table,
        "run": run.label,
        "recogniser": run.recogniser,
        "detector": run.detector,
    }
    targets = _target_thresholds(run)
    pg = run.per_group
    rows.append({**base, "attribute": "", "threshold_name": "", "target_fmr": None, "quantity": "subjects",
                 "group": "(all)", "value": run.subjects})
    for attribute, sub in pg.groupby("attribute", sort=False):
        for _, r in sub[(sub["metric"] == "FTA") & (sub["group"] == "(all)")].iterrows():
            lo, hi, kind = _interval(r)
            rows.append({**base, "attribute": attribute, "threshold_name": "", "target_fmr": None, "quantity": "FTA",
                         "group": "(all)", "value": _num(r["rate"]), "low": lo, "high": hi, "interval": kind,
                         "errors": _num(r.get("errors")), "comparisons": _num(r.get("comparisons"))})
        for tname in targets:
            at = sub[sub["threshold_name"] == tname]
            for metric in ("FMR", "FNMR"):
                m = at[at["metric"] == metric]
                overall = m[m["group"] == "(all)"]
                for _, r in overall.iterrows():
                    lo, hi, kind = _interval(r)
                    rows.append({**base, "attribute": attribute, "threshold_name": tname, "target_fmr": targets[tname],
                                 "threshold": _num(r.get("threshold")), "quantity": metric, "group": "(all)",
                                 "value": _num(r["rate"]), "low": lo, "high": hi, "interval": kind,
                                 "errors": _num(r.get("errors")), "comparisons": _num(r.get("comparisons"))})
                groups = m[(m["group"] != "(all)") & m["rate"].notna()]
                if groups.empty:
                    continue
                ranked = groups.assign(_r=groups["rate"].astype(float)).sort_values(["_r", "group"])
                tie = ranked["_r"].iloc[0] == ranked["_r"].iloc[-1]
                for quantity, r in ((f"worst_{metric}", ranked.iloc[-1]), (f"best_{metric}", ranked.iloc[0])):
                    lo, hi, kind = _interval(r)
                    rows.append({**base, "attribute": attribute, "threshold_name": tname, "target_fmr": targets[tname],
                                 "threshold": _num(r.get("threshold")), "quantity": quantity,
                                 "group": "tie" if tie else r["group"],
                                 "value": _num(r["rate"]), "low": lo, "high": hi, "interval": kind,
                                 "errors": _num(r.get("errors")), "comparisons": _num(r.get("comparisons")),
                                 "subjects": _num(r.get("subjects"))})
    d = run.differentials
    if not d.empty and {"attribute", "threshold_name", "measure", "value"} <= set(d.columns):
        for _, r in d.iterrows():
            if r.get("suppressed") is True:
                continue
            tname = r["threshold_name"]
            rows.append({**base, "attribute": r["attribute"], "threshold_name": tname, "target_fmr": targets.get(tname),
                         "quantity": f"differential:{r['measure']}", "group": "",
                         "value": _num(r["value"]), "low": _num(r.get("boot_low")), "high": _num(r.get("boot_high")),
                         "interval": "subject bootstrap" if not pd.isna(_num(r.get("boot_low"))) else ""})
    return rows


def _tables(runs: list[RunSummary]) -> tuple[dict[str, list[RunSummary]], dict[str, str]]:
    """Split runs of one dataset into comparable tables; table id -> runs, table id -> reason."""
    tables: dict[str, list[RunSummary]] = {}
    reasons: dict[str, str] = {}
    sigs: list[dict] = []
    for run in runs:
        for i, sig in enumerate(sigs):
            if sig == run.protocol:
                tables[f"T{i + 1}"].append(run)
                break
        else:
            sigs.append(run.protocol)
            tid = f"T{len(sigs)}"
            tables[tid] = [run]
            if len(sigs) == 1:
                reasons[tid] = "reference protocol"
            else:
                diff = sorted(k for k in run.protocol if run.protocol.get(k) != sigs[0].get(k))
                reasons[tid] = "not comparable with T1: protocol differs in " + ", ".join(
                    f"{k} ({sigs[0].get(k)!r} vs {run.protocol.get(k)!r})" for k in diff
                )
    return tables, reasons


def _slug(text: str) -> str:
    from bench.report.leaderboard_html import slug  # one file-name rule for the writer and the page

    return slug(text)


def _fmt_rate(v, lo=math.nan, hi=math.nan, errors=math.nan, n=math.nan) -> str:
    if v is None or pd.isna(v):
        return "–"
    if _num(errors) == 0 and _num(n) > 0:  # as the run report: exact one-sided 95% upper bound (docs/protocol.md §5.5)
        from bench.metrics.intervals import zero_error_upper_bound

        return f"0/{int(_num(n)):,} (≤ {float(zero_error_upper_bound(int(_num(n)))):.2g})"
    s = f"{v:.3g}"
    if not pd.isna(lo) and pd.isna(hi):
        s += f" [{lo:.3g}, ∞)"  # bootstrap upper end unbounded (a replicate with a zero denominator)
    elif not (pd.isna(lo) or pd.isna(hi)):
        s += f" [{lo:.2g}, {hi:.2g}]"
    return s


#: The Markdown table's columns: the page's (bench.report.leaderboard_html.LEADERBOARD_COLUMNS)
#: without "best FNMR group", which is almost always a tie at 0 on these data.
_MD_COLUMNS = tuple(c for c in LEADERBOARD_COLUMNS if c[1] != "best_FNMR")


def _markdown(dataset: str, tidy: pd.DataFrame, runs: list[RunSummary], reasons: dict[str, str], refused: list[dict]) -> str:
    lines = [
        f"# Leaderboard: {dataset}",
        "",
        "Generated by `fvbench-aggregate` from the result folders listed in `sources.json` (each with the SHA-256 of "
        "its `metrics.json`). `FMR=…` thresholds are calibrated per run on all its non-mated comparisons; `nominal` "
        "is each model's own published threshold (none for FaceNet). Cells: rate [95% interval: subject bootstrap "
        "where the run has it, else Wilson]; `0/n (≤ u)`: no errors, one-sided exact 95% upper bound u (docs/protocol.md "
        "§5.5). Worst/best group: highest/lowest rate among groups with published "
        "rates (groups below the run's minimum size are never ranked; `tie` when all groups share one rate). "
        "Max-type differentials are biased upward; the fixed-group worst − best difference has an interval that "
        "can include 0. Definitions: docs/protocol.md; models, detectors, licences: docs/models.md.",
        "",
    ]
    for tid, reason in reasons.items():
        t = tidy[tidy["table"] == tid]
        lines += [f"## Table {tid} ({reason})", ""]
        for attribute in [a for a in t["attribute"].unique() if a]:
            a = t[t["attribute"] == attribute]
            for n in [n for n in a["threshold_name"].unique() if n]:
                at_all = a[a["threshold_name"] == n]
                header = ["run", "recogniser", "detector", "subjects", "FTA"] + [c[0] for c in _MD_COLUMNS]
                lines += [f"### {attribute} at {n}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                for run in sorted(set(a["run"])):
                    rr = a[a["run"] == run]
                    at = at_all[at_all["run"] == run]
                    first = rr.iloc[0]
                    subj = t[(t["run"] == run) & (t["quantity"] == "subjects")]["value"]
                    fta = rr[rr["quantity"] == "FTA"]
                    cells = [run, first["recogniser"], first["detector"], f"{int(subj.iloc[0])}" if len(subj) else "–",
                             _fmt_rate(*fta[["value", "low", "high", "errors", "comparisons"]].iloc[0]) if len(fta) else "–"]
                    for _, q, with_group in _MD_COLUMNS:
                        x = at[at["quantity"] == q]
                        if x.empty:
                            cells.append("–")
                            continue
                        r = x.iloc[0]
                        txt = _fmt_rate(r["value"], r.get("low", math.nan), r.get("high", math.nan),
                                        r.get("errors", math.nan), r.get("comparisons", math.nan))
                        cells.append(f"{r['group']}: {txt}" if with_group else txt)
                    lines.append("| " + " | ".join(str(c) for c in cells) + " |")
                lines.append("")
    lines += ["## Models", "", "| run | recogniser | detector | licence | training data |", "|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.label} | {r.recogniser} | {r.detector} | {r.licence} | {r.training_data} |")
    lines.append("")
    if refused:
        lines += ["## Refused folders", ""] + [f"- `{x['folder']}`: {x['reason']}" for x in refused] + [""]
    return "\n".join(lines)


def _per_group_figure(path: Path, runs: list[RunSummary], attribute: str, tname: str, metric: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = []
    for run in runs:
        pg = run.per_group
        sel = pg[(pg["attribute"] == attribute) & (pg["threshold_name"] == tname) & (pg["metric"] == metric)
                 & (pg["group"] != "(all)") & pg["rate"].notna()]
        if not sel.empty:
            data.append((run, sel))
    if not data:
        return False
    groups = sorted({g for _, s in data for g in s["group"]})
    fig, ax = plt.subplots(figsize=(max(8.0, 1.4 * len(groups) + 4), 4.5))
    width = 0.8 / len(data)
    floor = math.inf
    for k, (run, sel) in enumerate(data):
        sel = sel.set_index("group")
        xs, ys, los, his, zero = [], [], [], [], []
        for i, g in enumerate(groups):
            if g not in sel.index:
                continue
            r = sel.loc[g]
            rate = float(r["rate"])
            lo, hi, _ = _interval(r)
            if rate == 0:
                ub = _num(r.get("upper_bound_95"))
                zero.append((i, ub))
                continue
            xs.append(i - 0.4 + width * (k + 0.5))
            ys.append(rate)
            # a lower end of 0 cannot be drawn on a log axis: the bar runs to the bottom edge
            los.append(rate - lo if not pd.isna(lo) and lo > 0 else rate * (1 - 1e-6))
            his.append(hi - rate if not pd.isna(hi) else 0)
            floor = min(floor, rate, lo if not pd.isna(lo) and lo > 0 else rate)
        label = f"{run.recogniser} / {run.detector}"
        line = ax.errorbar(xs, ys, yerr=[los, his], fmt="o", capsize=3, label=label)
        if zero:
            ax.scatter([i - 0.4 + width * (k + 0.5) for i, _ in zero], [u for _, u in zero], marker="v",
                       facecolors="none", edgecolors=line[0].get_color())
            floor = min(floor, min(u for _, u in zero))
    n_subj = {g: int(data[0][1].set_index("group").loc[g, "subjects"]) if g in set(data[0][1]["group"]) else 0 for g in groups}
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{g}\n(n={n_subj[g]} subj.)" for g in groups])
    ax.set_yscale("log")
    if math.isfinite(floor):
        ax.set_ylim(bottom=floor / 4)
    ax.set_ylabel(f"{metric} (log scale; bars reaching the bottom edge include 0)")
    ax.set_xlabel(attribute)
    ax.set_title(f"{metric} per group at {tname}, 95% intervals; ▽ = no errors (one-sided 95% upper bound)", fontsize=9)
    ax.grid(True, which="both", axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="recogniser / detector", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _score_shift(run: RunSummary, attribute: str) -> pd.DataFrame | None:
    """Per group: mean non-mated score shift in overall-SD units, with a 95% interval over subjects."""
    path = run.folder / "scores.parquet"
    if not path.is_file():
        return None
    a, b = f"{attribute}_a", f"{attribute}_b"
    try:
        s = pd.read_parquet(path, columns=["subject_a", "subject_b", "mated", "score", a, b])
    except (OSError, ValueError, KeyError) as err:
        log.warning("%s: cannot read %s (%s); no score-shift figure for it", run.label, path, err)
        return None
    non = s[~s["mated"].astype(bool)]
    mu, sd = float(non["score"].mean()), float(non["score"].std())
    if not sd > 0:
        return None
    same = non[non[a] == non[b]]
    out = []
    for g, sub in same.groupby(a):
        per_subject = pd.concat([sub[["subject_a", "score"]].rename(columns={"subject_a": "s"}),
                                 sub[["subject_b", "score"]].rename(columns={"subject_b": "s"})]).groupby("s")["score"].mean()
        n = len(per_subject)
        z = (per_subject.mean() - mu) / sd
        half = 1.96 * per_subject.std(ddof=1) / math.sqrt(n) / sd if n > 1 else math.nan
        out.append({"group": g, "shift": z, "low": z - half, "high": z + half, "subjects": n})
    return pd.DataFrame(out)


def _shift_figure(path: Path, runs: list[RunSummary], attribute: str, min_subjects: int = 5) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [(r, sh) for r in runs if (sh := _score_shift(r, attribute)) is not None and not sh.empty]
    if not data:
        return False
    groups = sorted({g for _, sh in data for g in sh.loc[sh["subjects"] >= min_subjects, "group"]})
    if not groups:
        return False
    fig, ax = plt.subplots(figsize=(max(8.0, 1.4 * len(groups) + 4), 4.5))
    width = 0.8 / len(data)
    for k, (run, sh) in enumerate(data):
        sh = sh.set_index("group")
        xs = [i - 0.4 + width * (k + 0.5) for i, g in enumerate(groups) if g in sh.index]
        sel = sh.loc[[g for g in groups if g in sh.index]]
        ax.errorbar(xs, sel["shift"], yerr=[sel["shift"] - sel["low"], sel["high"] - sel["shift"]], fmt="o", capsize=3,
                    label=f"{run.recogniser} / {run.detector}")
    n_subj = data[0][1].set_index("group")["subjects"]
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{g}\n(n={int(n_subj.get(g, 0))} subj.)" for g in groups])
    ax.set_xlabel(attribute)
    ax.set_ylabel("mean non-mated score − overall mean\n(overall non-mated SDs)")
    ax.set_title("Same-group non-mated score shift per group, 95% interval over subjects", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="recogniser / detector", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _collect(folders: list[Path]) -> tuple[list[RunSummary], list[dict]]:
    runs, refused, seen = [], [], set()
    for f in folders:
        if f.name in seen:
            refused.append({"folder": f.name, "reason": "a folder of the same name was given earlier"})
            continue
        seen.add(f.name)
        try:
            runs.append(load_run(f))
        except DataError as err:
            refused.append({"folder": f.name, "reason": str(err).replace(str(f), f.name)})
    return runs, refused


def _build(runs: list[RunSummary], refused: list[dict], stage: Path, figures: bool = True, record_figures: bool | None = None) -> dict:
    """Write the leaderboard files into ``stage``; return the sources record.

    ``record_figures``: the ``figures`` value written to ``sources.json`` (default: ``figures``;
    ``--verify`` rebuilds without drawing but records what the published folder says).
    """
    from bench.report.leaderboard_html import figure_suffix

    all_rows: list[dict] = []
    by_dataset: dict[tuple[str, str], list[RunSummary]] = {}
    for r in runs:
        by_dataset.setdefault((r.dataset, r.manifest_sha256), []).append(r)
    names = {}
    for (name, sha) in by_dataset:
        names[(name, sha)] = name if sum(1 for n, _ in by_dataset if n == name) == 1 else f"{name}-{sha[:8]}"
    tables_record = {}
    for key, druns in by_dataset.items():
        dname = names[key]
        tables, reasons = _tables(druns)
        rows = [row for tid, truns in tables.items() for run in truns for row in tidy_rows(run, tid)]
        for row in rows:
            row["dataset"] = dname
        all_rows += rows
        tidy = pd.DataFrame(rows)
        (stage / f"leaderboard_{_slug(dname)}.md").write_text(_markdown(dname, tidy, druns, reasons, refused), encoding="utf-8")
        tables_record[dname] = {tid: {"reason": reasons[tid], "runs": [r.label for r in t]} for tid, t in tables.items()}
        if figures:
            for tid, truns in tables.items():
                t1 = truns[0]
                common = set.intersection(*[{n for n, v in _target_thresholds(r).items() if v is not None} for r in truns])
                primary = sorted(common, key=lambda n: -float(_target_thresholds(t1)[n]))[:1]
                for attribute in t1.per_group["attribute"].unique():
                    suffix = figure_suffix(dname, tid, attribute, len(tables))
                    for tname in primary:
                        _per_group_figure(stage / f"fmr_by_group_{suffix}.png", truns, attribute, tname, "FMR")
                        _per_group_figure(stage / f"fnmr_by_group_{suffix}.png", truns, attribute, tname, "FNMR")
                    _shift_figure(stage / f"score_shift_{suffix}.png", truns, attribute)
    cols = ["dataset", "manifest_sha256", "table", "run", "recogniser", "detector", "attribute", "threshold_name",
            "target_fmr", "threshold", "quantity", "group", "value", "low", "high", "interval", "errors", "comparisons",
            "subjects"]
    tidy_all = pd.DataFrame(all_rows).reindex(columns=cols)
    tidy_all.to_csv(stage / "leaderboard.csv", index=False, float_format="%.10g", lineterminator="\n")
    sources = {
        "schema_version": 1,
        "sources": [{"folder": r.label, "run_name": r.run_name, "metrics_sha256": r.metrics_sha256, "recogniser": r.recogniser,
                     "detector": r.detector, "licence": r.licence, "training_data": r.training_data} for r in runs],
        "refused": refused,
        "tables": tables_record,
        "figures": figures if record_figures is None else bool(record_figures),
    }
    (stage / SOURCES_FILE).write_text(json.dumps(sources, indent=2) + "\n", encoding="utf-8")
    return sources


def _expand(patterns: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in patterns:
        hits = sorted(glob.glob(p)) if any(ch in p for ch in "*?[") else [p]
        if not hits:
            raise ConfigError(f"{p!r} matches no folder")
        out += [Path(h) for h in hits if Path(h).is_dir() and not Path(h).name.startswith(".")]
    return out


def _check_replaceable(out: Path) -> None:
    """Refuse to replace ``out`` unless it is a leaderboard fvbench wrote.

    A leaderboard: ``files.sha256`` parses and lists files, ``sources.json`` is a JSON object
    with ``schema_version`` and a ``sources`` list, and the folder holds nothing besides the
    files ``files.sha256`` lists and ``files.sha256`` itself (no subfolders, no other files).
    A missing or empty folder is always writable.

    Raises
    ------
    ConfigError
        One line naming the folder and what it holds.
    """
    from bench.report.folder import MANIFEST_FILE, foreign_entries, manifest_names

    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ConfigError(f"{str(out)!r} (--out) exists and is not a folder; choose another --out")
    if not out.exists() or not any(out.iterdir()):
        return
    held = sorted(p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in out.iterdir())
    shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
    listed = manifest_names(out)
    try:
        rec = json.loads((out / SOURCES_FILE).read_text(encoding="utf-8"))
        is_board = isinstance(rec, dict) and "schema_version" in rec and isinstance(rec.get("sources"), list)
    except (OSError, ValueError):
        is_board = False
    if listed is None or SOURCES_FILE not in listed or not is_board or (out / SOURCES_FILE).is_symlink():
        raise ConfigError(f"{str(out)!r} (--out) is not a leaderboard folder fvbench wrote (holds e.g. {shown}); "
                          "choose another --out or move it away")
    foreign = foreign_entries(out, listed | {MANIFEST_FILE})
    if foreign:
        more = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(f"{str(out)!r} (--out) holds files fvbench did not write ({more}); refusing to replace it: "
                          "move them away or choose another --out")


def aggregate(folders: list[str | Path], out: str | Path, *, figures: bool = True) -> Path:
    """Write a leaderboard folder from result folders.

    Parameters
    ----------
    folders : list of path
        Result folders (``results/<run>``).
    out : path
        The leaderboard folder to write (replaced whole; must not be a result folder).
    figures : bool
        Draw the comparison figures.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ConfigError
        No usable source, or ``out`` exists and is not a leaderboard folder, or ``out`` is
        one of the sources.
    """
    from bench.report.folder import staged_folder, write_file_manifest
    from bench.report.html import write_html_report

    out = Path(out)
    srcs = [Path(f) for f in folders]
    if any(s.resolve() == out.resolve() for s in srcs):
        raise ConfigError(f"the output folder {str(out)!r} is also a source")
    _check_replaceable(out)
    runs, refused = _collect(srcs)
    for r in runs:
        if r.folder.resolve().parent != out.resolve().parent:
            log.warning("%s is not beside %s: --verify looks for sources next to the leaderboard", r.folder, out)
    if not runs:
        raise ConfigError("no usable result folder: " + "; ".join(f"{r['folder']}: {r['reason']}" for r in refused))
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(out) as stage:
        _build(runs, refused, stage, figures=figures)
        write_html_report(stage)  # report.html from the files just written (sources.json, leaderboard.csv, figures)
        write_file_manifest(stage)
    return out


def verify_leaderboard(folder: str | Path) -> list[str]:
    """Recompute a leaderboard from its sources (siblings of ``folder``) and list mismatches.

    Source folder names in ``sources.json`` are untrusted: only plain names of sibling
    folders are accepted. Checks: each source's ``metrics.json`` SHA-256; ``leaderboard.csv``
    and the Markdown files and ``sources.json`` byte for byte; ``report.html`` re-rendered from
    them and the figures, byte for byte; ``files.sha256``. Figures are checked through
    ``files.sha256`` only (drawing is not bit-reproducible across matplotlib versions).

    Returns
    -------
    list of str
        Problems; empty when the leaderboard matches its sources.
    """
    import tempfile

    from bench.report.folder import read_file_manifest

    folder = Path(folder)
    problems, _ = read_file_manifest(folder)
    src_path = folder / SOURCES_FILE
    try:
        if src_path.is_file() and src_path.stat().st_size > _MAX_METRICS_BYTES:
            raise ValueError(f"larger than {_MAX_METRICS_BYTES >> 20} MiB")
        rec = loads_json(src_path.read_bytes())
    except OSError as err:
        return problems + [f"{SOURCES_FILE}: unreadable ({err.strerror or type(err).__name__})"]
    except ValueError as err:  # hostile file (nesting past the recursion limit, huge integers): a refusal, exit 2
        raise DataError(f"{str(src_path)!r}: {err}; expected a leaderboard's {SOURCES_FILE}") from None
    entries = rec.get("sources") if isinstance(rec, dict) else None
    if not isinstance(entries, list):
        raise DataError(f"{str(src_path)!r}: expected a JSON object with a 'sources' list")
    srcs = []
    for e in entries:
        name = str(e.get("folder", "")) if isinstance(e, dict) else ""
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            problems.append(f"{SOURCES_FILE}: source name {name!r} is not a plain folder name")
            continue
        src = folder.parent / name
        mpath = src / "metrics.json"
        if not mpath.is_file():
            problems.append(f"source {name}: metrics.json missing")
            continue
        if hashlib.sha256(mpath.read_bytes()).hexdigest() != e.get("metrics_sha256"):
            problems.append(f"source {name}: metrics.json changed since the leaderboard was made")
        srcs.append(src)
    if not srcs:
        return problems
    runs, refused = _collect(srcs)
    with tempfile.TemporaryDirectory(prefix="fvbench-aggregate-verify-") as tmp:
        _build(runs, rec.get("refused", []), Path(tmp), figures=False, record_figures=rec.get("figures") is True)
        for p in sorted(Path(tmp).iterdir()):
            if p.suffix not in (".csv", ".md") and p.name != SOURCES_FILE:
                continue
            published = folder / p.name
            if not published.is_file():
                problems.append(f"{p.name}: missing")
            elif published.read_bytes() != p.read_bytes():
                problems.append(f"{p.name}: differs from what its sources give")
    from bench.report.html import check_html_report

    problems += check_html_report(folder)  # report.html re-rendered from the (just checked) CSV, sources.json and figures
    return problems


def aggregate_main(argv: list[str] | None = None) -> int:
    """Command line ``fvbench-aggregate`` (also ``python -m bench.aggregate``); exit 0, 1 on mismatch, 2 on refusal."""
    parser = argparse.ArgumentParser(prog="fvbench-aggregate", description="Leaderboard folder from fvbench result folders.")
    parser.add_argument("folders", nargs="*", help="result folders or quoted globs, e.g. 'results/frl_london_*'")
    parser.add_argument("--out", help="leaderboard folder to write, e.g. results/leaderboard_frl_london")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--verify", metavar="LEADERBOARD", help="check a leaderboard folder against its sources")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.verify:
            problems = verify_leaderboard(args.verify)
            for p in problems:
                print(f"fvbench-aggregate: {args.verify}: {p}", file=sys.stderr)
            print(f"{args.verify}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
            return 1 if problems else 0
        if not args.folders or not args.out:
            parser.error("give result folders and --out (or --verify LEADERBOARD)")
        out = aggregate(_expand(args.folders), args.out, figures=not args.no_figures)
    except BenchError as err:
        print(f"fvbench-aggregate: {err}", file=sys.stderr)
        return 2
    print(f"fvbench-aggregate: leaderboard written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(aggregate_main())
