"""Writing an acquisition-condition sweep's result folder, and its ``report.md`` text.

:func:`write_sweep` publishes what :func:`bench.sweep.run_sweep` computed
(:class:`bench.protocol.sweep_spec.SweepResult`); :func:`render_sweep_report` is a pure
function of what the folder publishes, so ``fvbench-verify`` re-renders it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.protocol.sweep_spec import RATE_COLUMNS, SWEEP_COLUMNS, UNPERTURBED, SweepResult

__all__ = ["render_sweep_report", "write_sweep"]


# ----------------------------------------------------------------------------- writing
def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


def _small_groups(result: SweepResult, min_subjects: int) -> dict[str, list[str]]:
    return {a: sorted(g for g, k in groups.items() if k < min_subjects)
            for a, groups in result.subjects_per_group.items() if any(k < min_subjects for k in groups.values())}


def write_sweep(result: SweepResult, out_dir: Path, *, run_name: str, config: dict, min_group_subjects: int = 5,
                figures: bool = True) -> Path:
    """Write ``sweep.csv``, ``sweep.json``, ``sweep_<transform>_<attribute>.png``, ``report.md`` and ``report.html``.

    The folder is written like a run's (:func:`bench.report.folder.staged_folder`): into a
    hidden staging folder swapped in whole when every file is written, so an interrupted
    sweep leaves the previous folder as it was and a second sweep leaves no file of the
    first (e.g. figures of a transform no longer swept).

    Groups with fewer than ``min_group_subjects`` subjects are published as counts only
    (comparison and subject counts kept; rates, intervals, error counts and FTA reasons
    blanked; flag ``suppressed_small_group``; not drawn), as in :mod:`bench.report.writer`.

    Parameters
    ----------
    result : SweepResult
    out_dir : pathlib.Path
        Created if needed; replaced whole when it exists.
    run_name : str
    config : dict
        The resolved config, recorded verbatim.
    min_group_subjects : int
    figures : bool

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    StorageError
        A file cannot be written (disk full, read-only); ``out_dir`` is unchanged.
    """
    from bench.report.folder import staged_folder

    out_dir = Path(out_dir)
    with staged_folder(out_dir) as stage:
        _write_sweep_files(result, stage, run_name=run_name, config=config, min_group_subjects=min_group_subjects, figures=figures)
    return out_dir


def _write_sweep_files(result: SweepResult, out_dir: Path, *, run_name: str, config: dict, min_group_subjects: int,
                       figures: bool) -> None:
    """The files of :func:`write_sweep`, into ``out_dir`` (an empty staging folder)."""
    from bench.report.plots import safe_name
    from bench.report.provenance import code_version, package_versions
    from bench.report.sweep_plots import plot_sweep

    small = _small_groups(result, min_group_subjects)
    rows = result.rows.copy()
    rows["errors"] = rows["errors"].astype("Int64")  # integers where published, empty where suppressed
    for attr, groups in small.items():  # as bench.report.writer: no rates and no error counts, only sizes
        m = (rows["attribute"] == attr) & rows["group"].isin(groups)
        rows.loc[m, RATE_COLUMNS] = np.nan
        rows.loc[m, "errors"] = pd.NA
        rows.loc[m, "reasons"] = ""
        rows.loc[m, "flag"] = "suppressed_small_group"
    from bench.report.export import spreadsheet_safe  # labels cannot run as spreadsheet formulas

    spreadsheet_safe(rows).to_csv(out_dir / "sweep.csv", index=False, float_format="%.10g", lineterminator="\n")

    ieds = None
    if result.geometry_info.get("ied_px"):
        ieds = np.array([result.geometry_info["ied_px"]["median"]])
    transforms = []
    for sw in result.sweeps:
        transforms.append({"name": sw.name, "settings": sw.transform.settings(), "unit": sw.transform.unit,
                           "strengths": list(sw.strengths), "identity": sw.transform.identity,
                           "needs_geometry": sw.transform.needs_geometry})
    p = result.protocol
    protocol = {
        "references": f"unperturbed images with {p.view_column} = {p.reference_view!r}",
        "probes": f"images with {p.view_column} = {p.probe_view!r}, transformed (references never are)",
        "mated": "probe vs reference of the same subject",
        "nonmated": "probe of one subject vs reference of another (ordered: probe side perturbed)",
        "per_group_fmr": "non-mated comparisons with probe and reference subjects both in the group (NIST FRVT)",
        "thresholds": "set once on the unperturbed run and held fixed for every transform and strength",
        "threshold_rule": "order statistic, achieved FMR never above target, tie-aware (docs/protocol.md §0.3)",
        "decision_rule": "match iff score >= threshold; scores are similarities (distances negated)",
        "fta": "probes without a usable template are excluded from FNMR/FMR and counted as FTA per group; FNMR_incl_FTA counts them as false non-matches",
        "intervals": f"{p.confidence:.0%} Wilson (comparison-level: a floor on the uncertainty); zero-error cells: one-sided 95% upper bound 1 - 0.05^(1/n)"
        + (f"; boot_low/boot_high: FNMR and FMR {p.confidence:.0%} subject-bootstrap percentile intervals ({p.bootstrap_replicates} replicates, "
           f"seed {p.seed}, subjects resampled within groups, thresholds held fixed; n_replicates: replicates in which the rate was defined; "
           "docs/protocol.md §5.2-5.3, §5.6)" if p.bootstrap_replicates else "; no subject bootstrap (sweep.bootstrap_replicates: null)"),
        "bootstrap_replicates": p.bootstrap_replicates,
        "seed": p.seed,
        "attributes": result.attributes,
        "target_fmrs": list(p.target_fmrs),
    }
    doc = {
        "schema_version": 1,
        "run_name": run_name,
        "config": config,
        "provenance": {"code": code_version(), "packages": package_versions()},
        "dataset": result.dataset_info,
        "model": result.model_info,
        "protocol": protocol,
        "thresholds": result.thresholds,
        "transforms": transforms,
        "geometry": result.geometry_info,
        "counts": result.counts,
        "subjects_per_group": result.subjects_per_group,
        "suppression": {"min_group_subjects": min_group_subjects, "groups_shown_as_counts_only": small},
        "files": {"rows": "sweep.csv (columns: " + ", ".join(SWEEP_COLUMNS) + ")"},
    }
    figs: dict[tuple[str, str], str] = {}
    if figures:
        for sw in result.sweeps:
            for attr in result.attributes:
                name = f"sweep_{safe_name(sw.name)}_{safe_name(attr)}.png"
                plot_sweep(rows, sw, attr, result.thresholds, out_dir / name,
                           title=f"{result.model_info['name']} on {result.dataset_info['name']}: {sw.name} sweep by {attr}",
                           original_x=sw.transform.original_x(ieds), suppressed=small.get(attr, []),
                           subjects=result.subjects_per_group.get(attr, {}))
                figs[(sw.name, attr)] = name
        doc["files"]["figures"] = sorted(figs.values())
    from bench.report.provenance import scrub_paths  # no absolute path of this machine is published

    (out_dir / "sweep.json").write_text(json.dumps(scrub_paths(_jsonable(doc)), indent=2, allow_nan=False) + "\n")
    _write_report(out_dir / "report.md", result, rows, figs, run_name, small, min_group_subjects)
    from bench.report.html import write_html_report

    write_html_report(out_dir)  # report.html from sweep.json, sweep.csv and the figures


def _fmt_strength(s: float) -> str:
    return f"{s:g}"


def _write_report(path: Path, result: SweepResult, rows: pd.DataFrame, figs: dict, run_name: str, small: dict, min_subjects: int) -> None:
    path.write_text(render_sweep_report(result, rows, figs, run_name, small, min_subjects))


def render_sweep_report(result: SweepResult, rows: pd.DataFrame, figs: dict, run_name: str, small: dict, min_subjects: int) -> str:
    """Text of a sweep's ``report.md``: a pure function of what ``sweep.json`` and ``sweep.csv`` publish
    (``fvbench-verify`` re-renders it from them; ``result`` is read only for fields ``sweep.json`` records)."""
    from bench.report.markdown import rate_cell

    usable = [t for t in result.thresholds if t.get("status") == "ok"]
    primary = ([t for t in usable if t["kind"] == "target_fmr"] or usable)[0]
    c = result.counts
    p = result.protocol
    n_boot = getattr(p, "bootstrap_replicates", None)  # issue #14: subject bootstrap published beside Wilson
    boot = bool(n_boot) and "boot_low" in rows.columns and rows["boot_low"].notna().any()
    lines = [
        f"# Acquisition-condition sweep: {run_name}",
        "",
        f"Model **{result.model_info['name']}** on **{result.dataset_info['name']}**. References: unperturbed "
        f"`{p.reference_view}` images ({c['references_acquired']} acquired of {c['reference_images']}); probes: `{p.probe_view}` "
        f"images ({c['probes_in_population']}), degraded by each transform. Unperturbed run: {c['mated_comparisons_unperturbed']:,} mated and "
        f"{c['nonmated_comparisons_unperturbed']:,} non-mated comparisons.",
        "",
        "Thresholds are set once, on the unperturbed run, and held fixed for every transform and strength:",
        "",
    ]
    for t in result.thresholds:
        if t.get("status") != "ok":
            lines.append(f"- {t['name']}: refused ({t.get('reason', '')})")
        elif t["kind"] == "nominal":
            lines.append(f"- {t['name']}: t = {t['threshold']:.4g} (the model's published threshold; {t.get('source') or 'source not given'})")
        else:
            lines.append(f"- {t['name']}: t = {t['threshold']:.4g} (achieved FMR {t['achieved_fmr']:.3g} on {t['n_nonmated']:,} "
                         f"unperturbed non-mated comparisons; support {t['support']})")
    geo = result.geometry_info
    if geo.get("used") and geo.get("ied_px"):
        lines += ["", f"Face geometry (dlib HOG + 5-point locator on the unperturbed probes): median inter-eye distance "
                      f"{geo['ied_px']['median']:.0f} px (range {geo['ied_px']['min']:.0f}-{geo['ied_px']['max']:.0f}); "
                      f"{geo['probes_excluded_no_face']} probe(s) excluded for lack of a located face."]
    lines += [
        "",
        "## How to read",
        "",
        "- Each figure: x = transform strength (units on the axis), one line per group (black dashed: all subjects); panels FTA, "
        "then FNMR and FMR at each threshold, on log axes. "
        + (f"Bars: FNMR and FMR 95% subject-bootstrap intervals ({n_boot:,} replicates; subjects resampled within their group, "
           "two-subject bootstrap for FMR, thresholds held at their unperturbed values; docs/protocol.md §5.2-5.3), "
           "FTA 95% Wilson intervals. " if boot else
           "Bars are 95% Wilson intervals (comparison-level: a floor on the true uncertainty; docs/protocol.md §5.1). ")
        + "A point with zero errors is an open triangle at its one-sided 95% upper bound, not a measured rate.",
        "- FNMR and FMR are over probes that were acquired; a probe that fails to acquire is an FTA. `FNMR_incl_FTA` in "
        "`sweep.csv` counts such probes as false non-matches (NIST convention).",
        "- Per-group FMR uses non-mated pairs with both subjects in the group; small groups have few such pairs.",
        f"- Groups with fewer than {min_subjects} subjects are published as counts only"
        + (": " + "; ".join(f"{a}: {', '.join(g)}" for a, g in small.items()) if small else "") + ".",
        ("- Cells: rate (errors/comparisons) [95% interval]: subject bootstrap for FNMR and FMR (`boot_low`, `boot_high` in `sweep.csv`), "
         "Wilson for FTA; the Wilson intervals of every cell (`wilson_low`, `wilson_high`) count comparisons as independent, "
         "which pairs of one subject are not, so they are narrower (docs/protocol.md §5.1). A percentile bootstrap interval need "
         "not contain the rate." if boot else
         "- Cells: rate (errors/comparisons) [95% Wilson]"
         + ("" if n_boot else "; the subject bootstrap was not run (`sweep.bootstrap_replicates: null`)") + ".")
        + " † = fewer than 30 errors; `0/n (≤ u)` = zero errors, one-sided 95% bound u (docs/protocol.md §5.5).",
        "",
    ]
    for sw in result.sweeps:
        lines += [f"## {sw.name}: {sw.transform.unit}", ""]
        strengths = sorted(sw.strengths)
        for attr in result.attributes:
            if (sw.name, attr) in figs:
                lines += [f"![{sw.name} by {attr}]({figs[(sw.name, attr)]})", ""]
            for metric, tname in (("FTA", ""), ("FNMR", primary["name"]), ("FMR", primary["name"])):
                sel = rows[(rows["attribute"] == attr) & (rows["metric"] == metric) & (rows["threshold_name"] == tname)]
                base = sel[sel["transform"] == UNPERTURBED].set_index("group")
                cur = sel[sel["transform"] == sw.name]
                groups = list(dict.fromkeys(base.index.tolist()))
                head = ["group", "unperturbed", *[_fmt_strength(s) for s in strengths]]
                label = metric if not tname else f"{metric} @ {tname}"
                lines += [f"**{label} by {attr}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                for g in groups:
                    cells = [g, rate_cell(base.loc[g])]
                    for s in strengths:
                        r = cur[(cur["group"] == g) & (cur["strength"] == s)]
                        cells.append(rate_cell(r.iloc[0]) if len(r) else "")
                    lines.append("| " + " | ".join(cells) + " |")
                lines.append("")
    lines += ["All numbers: `sweep.csv`; configuration, thresholds, hashes and versions: `sweep.json`.", ""]
    from bench.report.markdown_escape import escape_raw_html  # labels are untrusted: no raw HTML in report.md

    return escape_raw_html("\n".join(lines))
