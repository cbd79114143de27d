"""Write a run's result folder: metrics.json, tidy tables, figures, report.md.

Layout of ``results/<run_name>/`` (every file documented in README "Result files"):

- ``metrics.json``: everything below plus resolved config and provenance
  (schema: :data:`METRICS_SCHEMA`).
- ``per_group.csv``: one row per (attribute, group, threshold, metric in FTA/FMR/FNMR).
- ``eer.csv``: EER per (attribute, group).
- ``generalized_rates.csv``: FTA folded into the rates (ISO FAR/FRR, NIST convention).
- ``differentials.csv``: differential measures with bootstrap intervals.
- ``cross_group_fmr_<attribute>.csv``: the cross-group FMR matrix in long form.
- ``det_<attribute>.png``, ``error_rates_<attribute>.png``, ``fmr_matrix_<attribute>.png``,
  ``scores_<attribute>.png`` (score distributions per group).
- ``report.md``: the human summary with a reading guide and generated limitations,
  rendered from the files above only (:func:`bench.report.markdown.render_report`).
- ``report.html``: the same as a self-contained web page, also rendered from the files
  above only (:mod:`bench.report.html`).
- ``scores.parquet``: the comparison-score table (not published: git-ignored; it lets
  anyone recompute every metric without the model).
- ``histograms.npz`` instead of ``scores.parquet`` for a run of the streaming engine
  (``metrics.json`` ``engine``): its score histograms (:meth:`ScoreHistogram.save
  <bench.scores.histogram.ScoreHistogram.save>`; git-ignored too).

Privacy of small groups: the subjects of every group with fewer than
``min_group_subjects`` subjects (any reported attribute, intersections included)
are *withheld* by :func:`bench.run.evaluate` (:func:`bench.metrics.groups.withhold_small_groups`):
they enter no number of the folder, so none of their results can be derived by
subtracting published cells from published totals. Only their number is published
(``metrics.json`` ``suppression``, ``report.md``). A result evaluated with a smaller
``min_group_subjects`` than the one asked here is refused; groups still below it
(a result built by hand) fall back to counts only (flag ``suppressed_small_group``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import ConfigError
from bench.report.export import EXPORT_FILE, EXPORT_WARNING, spreadsheet_safe
from bench.report.folder import write_file_manifest
from bench.report.html import write_html_report
from bench.report.markdown import figure_plan, load_published_tables, render_report, safe_name
from bench.report.plots import plot_det, plot_error_rates, plot_fmr_matrix, plot_score_distributions, plot_score_histograms
from bench.report.provenance import code_version, package_versions, scrub_paths
from bench.protocol.verification import RunResult

__all__ = ["write_results", "stage_timings", "METRICS_SCHEMA", "SCHEMA_VERSION"]

#: Order of the stages of a run (seconds, keys of ``RunResult.timings``); sub-stages are not summed.
_STAGES = ["setup_s", "acquire_embed_s", "score_s", "metrics_s", "tables_s", "figures_s", "report_s"]
_SUB_STAGES = {"bootstrap_s": "metrics_s"}


def stage_timings(timings: dict[str, float], total: float) -> str:
    """One log line of a run's stage timings that add up to its wall time.

    Parameters
    ----------
    timings : dict
        Stage -> seconds (``RunResult.timings`` after :func:`write_results`, with
        ``setup_s`` added by the caller). Sub-stages (``bootstrap_s``, part of
        ``metrics_s``) are shown in brackets and not summed.
    total : float
        Wall time of the whole run in seconds.

    Returns
    -------
    str
        ``"12.3 s = setup 0.5 + acquire_embed 3.1 + ... + publish 0.1"``, where
        ``publish`` is the remainder (moving the finished folder into place, anything
        not timed), so the terms add up to ``total`` (to the printed rounding).
    """
    parts, used = [], 0.0
    for key in [*_STAGES, *sorted(k for k in timings if k not in _STAGES and k not in _SUB_STAGES)]:
        if key not in timings:
            continue
        v = float(timings[key])
        used += v
        sub = "".join(f" ({k[:-2]} {float(timings[k]):.2f})" for k, parent in _SUB_STAGES.items() if parent == key and k in timings)
        parts.append(f"{key[:-2] if key.endswith('_s') else key} {v:.2f}{sub}")
    parts.append(f"publish {max(total - used, 0.0):.2f}")
    return f"{total:.2f} s = " + " + ".join(parts)

SCHEMA_VERSION = 1

#: Top-level keys of metrics.json and what they hold.
METRICS_SCHEMA = {
    "schema_version": "integer; bumped when a field changes meaning",
    "run_name": "string",
    "config": "the fully resolved Hydra config of the run",
    "provenance": "code (fvbench version, git commit, dirty flag) and package versions",
    "dataset": "name, manifest_sha256, images, subjects, label_source, subjects per group, acquired images, comparison counts",
    "model": "name, metric, nominal threshold and its source, weights SHA-256, preprocessing/detector settings, licence",
    "protocol": "pairing and calibration rules in words and values",
    "thresholds": "list: name, kind (nominal|target_fmr), threshold, target/achieved FMR, k, n_nonmated, support, status",
    "per_group": "list of per_group.csv rows",
    "eer": "list of eer.csv rows",
    "generalized_rates": "list of generalized_rates.csv rows: FTA folded into FMR/FNMR (ISO FAR/FRR and NIST convention)",
    "differentials": "list of differentials.csv rows: §4 measures per attribute and threshold, bootstrap intervals, parity flags",
    "cross_group_fmr": "attribute -> list of matrix cells at the primary threshold",
    "mitigation": "null, or (protocol.per_group_thresholds) rows of the labelled per-group-threshold mitigation analysis",
    "suppression": "min_group_subjects, the subjects and groups withheld from every published number, groups shown as counts only",
    "privacy": "whether embeddings were exported into the result folder (opt-in), with the warning shown",
    "engine": "table or stream, how it was chosen (protocol.engine, table_max_comparisons); stream: bin width, tail, tolerances",
    "scenario": "only under scenario=...: the enrolment and probe conditions with their sources, counts per side (docs/scenarios.md)",
}

_RATE_COLUMNS = ["rate", "wilson_low", "wilson_high", "cp_low", "cp_high", "upper_bound_95", "boot_low", "boot_high"]


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    if x is pd.NA or x is None:
        return None
    return x


def _small_groups(result: RunResult, min_subjects: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    subj = result.manifest.table["subject_id"].astype(str)
    for attr in result.attributes:
        counts = pd.DataFrame({"s": subj, "g": result.labels[attr]}).drop_duplicates().groupby("g")["s"].size()
        small = sorted(counts[counts < min_subjects].index.tolist())
        if small:
            out[attr] = small
    return out


def _suppress(df: pd.DataFrame, small: dict[str, list[str]], cols: list[str]) -> pd.DataFrame:
    df = df.copy()
    cols = [c for c in cols if c in df.columns]
    for c in cols:  # counts stay integers where published, empty where suppressed
        if pd.api.types.is_integer_dtype(df[c]):
            df[c] = df[c].astype("Int64")
        elif df[c].dtype == object:
            df[c] = df[c].astype(object)
    for attr, groups in small.items():
        m = (df["attribute"] == attr) & df["group"].isin(groups)
        df.loc[m, cols] = None
        if "flag" in df.columns:
            df.loc[m, "flag"] = "suppressed_small_group"
    return df


def _suppress_differentials(df: pd.DataFrame, small: dict[str, list[str]]) -> pd.DataFrame:
    """Blank a differential measure computed over a group that is published as counts only."""
    df = df.copy()
    df["suppressed"] = False
    for attr, groups in small.items():
        hit = (df["attribute"] == attr) & df["groups"].fillna("").map(lambda s: any(g in s.split(";") for g in groups))
        cols = [c for c in ("value", "boot_low", "boot_high", "max_group", "min_group") if c in df.columns]
        df.loc[hit, cols] = np.nan
        df.loc[hit, "suppressed"] = True
    return df


def write_results(
    result: RunResult,
    out_dir: Path,
    *,
    run_name: str,
    config: dict,
    min_group_subjects: int = 5,
    figures: bool = True,
    save_scores: bool = True,
    embeddings_exported: bool = False,
    published_dir: Path | None = None,
    path_roots: dict[str, Path] | None = None,
    progress: bool = False,
) -> Path:
    """Write the result folder of ``result`` into ``out_dir`` (created if needed).

    Parameters
    ----------
    result : RunResult
    out_dir : pathlib.Path
    run_name : str
    config : dict
        The resolved config (recorded verbatim).
    min_group_subjects : int
        Groups with fewer subjects are published as counts only.
    figures : bool
        Write the PNG figures.
    save_scores : bool
        Write ``scores.parquet`` (the comparison table; git-ignored).
    published_dir : pathlib.Path, optional
        Where the folder will finally live when ``out_dir`` is a staging folder
        (:func:`bench.report.folder.staged_folder`); used in recorded paths.
    path_roots : dict, optional
        The run's ``paths`` (data_dir, results_dir, cache_dir): every path in
        ``metrics.json`` is recorded relative to them, any other absolute path as its
        hash (:func:`bench.report.provenance.scrub_paths`).
    embeddings_exported : bool
        The run also exports embeddings (opt-in ``report.export_embeddings``); recorded
        under ``privacy`` so the published provenance says biometric data left the cache.
    progress : bool
        A tqdm bar over the figures (one step per attribute).

    Returns
    -------
    pathlib.Path
        ``out_dir``. ``result.timings`` gains ``tables_s``, ``figures_s`` and
        ``report_s`` (for :func:`stage_timings`; never written to the folder, so reruns
        give identical files).
    """
    withheld = getattr(result, "withheld", None) or {"min_group_subjects": 1, "subjects": 0, "images": 0, "groups": {}}
    if int(min_group_subjects) > int(withheld["min_group_subjects"]):
        raise ConfigError(
            f"min_group_subjects={min_group_subjects}: this result was evaluated with min_group_subjects="
            f"{withheld['min_group_subjects']}; pass the same value to bench.run.evaluate so that the subjects of small "
            "groups enter no published number (blanking their cells alone lets them be derived by subtraction)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    small = _small_groups(result, min_group_subjects)  # empty when evaluate withheld them (the normal case)
    per_group = _suppress(result.per_group, small, [*_RATE_COLUMNS, "errors", "reasons"])
    eer = _suppress(result.eer, small, ["eer", "threshold", "eer_low", "eer_high", "eer_crossing"])
    spreadsheet_safe(per_group).to_csv(out_dir / "per_group.csv", index=False, float_format="%.10g", lineterminator="\n")
    generalized = _suppress(
        result.generalized, small, ["fta", "fmr", "fnmr", "far_iso", "frr_iso", "fnmr_nist", "fmr_nist", "lost_mated", "lost_nonmated"]
    )
    spreadsheet_safe(generalized).to_csv(out_dir / "generalized_rates.csv", index=False, float_format="%.10g", lineterminator="\n")
    differentials = _suppress_differentials(result.differentials, small)
    mitigation = None
    if result.mitigation is not None:
        mitigation = _suppress(result.mitigation, small, ["threshold", "achieved_fmr", "k", "false_non_matches", "fnmr"])
        spreadsheet_safe(mitigation).to_csv(out_dir / "mitigation_per_group_thresholds.csv", index=False, float_format="%.10g", lineterminator="\n")
    spreadsheet_safe(differentials).to_csv(out_dir / "differentials.csv", index=False, float_format="%.10g", lineterminator="\n")
    spreadsheet_safe(eer).to_csv(out_dir / "eer.csv", index=False, float_format="%.10g", lineterminator="\n")
    cross_pub: dict[str, pd.DataFrame] = {}
    for attr, cross in result.cross.items():
        c = cross.copy()
        c.insert(0, "threshold", float(result.primary_threshold["threshold"]))
        c.insert(0, "threshold_name", result.primary_threshold["name"])
        hide = c["group_a"].isin(small.get(attr, [])) | c["group_b"].isin(small.get(attr, []))
        c["false_matches"] = c["false_matches"].astype("Int64")
        c.loc[hide, ["fmr", "false_matches"]] = pd.NA
        spreadsheet_safe(c).to_csv(out_dir / f"cross_group_fmr_{safe_name(attr)}.csv", index=False, float_format="%.10g", lineterminator="\n")
        cross_pub[attr] = c
    if save_scores:
        if result.comparisons is not None:
            result.comparisons.to_parquet(out_dir / "scores.parquet", index=False)
        else:
            result.stream.histogram.save(out_dir / "histograms.npz")
    # a score file of the other engine left by an earlier run would not match these numbers
    stale = "histograms.npz" if result.comparisons is not None else "scores.parquet"
    if (out_dir / stale).exists():
        (out_dir / stale).unlink()

    primary = result.primary_threshold
    protocol = {
        "mated": "all unordered pairs of distinct images of the same subject"
        + ("" if not (result.dataset_info.get("provenance") or {}).get("mated_pairs") else " taken in different captures (frames of one video are never a mated pair)"),  # issue #14
        "nonmated": "all unordered pairs of images of different subjects"
        + ("" if result.protocol.max_nonmated is None else f" (seeded sample of {result.protocol.max_nonmated})"),
        "per_group_fmr": "non-mated comparisons with both subjects in the group (demographically matched impostors, NIST FRVT); all other pairs in the cross-group matrix",
        "decision_rule": "match iff score >= threshold; scores are similarities (distances negated)",
        "threshold_rule": "order statistic, achieved FMR never above target, tie-aware (docs/protocol.md §0)",
        "fta": "images without a usable template are excluded from comparisons and reported as FTA per group",
        "primary_threshold": primary["name"],
        "attributes": result.attributes,
        "target_fmrs": list(result.protocol.target_fmrs),
        "confidence": result.protocol.confidence,
        "seed": result.protocol.seed,
    }
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "run_name": run_name,
        "config": config,
        "provenance": {"code": code_version(), "packages": package_versions()},
        "dataset": result.dataset_info,
        # cache_hits says how this run executed (cold or warm cache), not what it measured
        "model": {k: v for k, v in result.model_info.items() if k != "cache_hits"},
        "protocol": protocol,
        "thresholds": result.thresholds,
        "per_group": per_group.to_dict(orient="records"),
        "eer": eer.to_dict(orient="records"),
        "generalized_rates": generalized.to_dict(orient="records"),
        "differentials": differentials.to_dict(orient="records"),
        "mitigation": None if mitigation is None else mitigation.to_dict(orient="records"),
        "cross_group_fmr": {a: c.to_dict(orient="records") for a, c in cross_pub.items()},
        "suppression": {
            "min_group_subjects": min_group_subjects,
            "rule": "subjects of groups with fewer than min_group_subjects subjects (any reported attribute, intersections "
                    "included; applied until no group is small) are withheld from every published number; so are the subjects "
                    "with scored mated comparisons in a group (or overall) where only 1 to min_group_subjects-1 subjects have them",
            "subjects_withheld": withheld["subjects"],
            "images_withheld": withheld["images"],
            "groups_withheld": withheld["groups"],
            "groups_withheld_mated": withheld.get("groups_mated") or {},  # fixprivacy: contributors of scored mated comparisons
            "groups_shown_as_counts_only": small,
        },
        "privacy": {
            "embeddings_exported": bool(embeddings_exported),
            "warning": EXPORT_WARNING.format(path=str(Path(published_dir or out_dir) / EXPORT_FILE)) if embeddings_exported else None,
        },
        "engine": result.engine_info or {"engine": "table"},
    }
    from bench.protocol.pair_list import write_run_pair_list  # pair lists and consent notices (issue #14)
    from bench.report.dataset_notice import consent_record, pair_list_protocol

    metrics["protocol"].update(pair_list_protocol(result))
    want_list = ((config or {}).get("report") or {}).get("pair_list", True) if isinstance(config, dict) else True
    written = write_run_pair_list(result, out_dir, enabled=bool(want_list))  # pairs.csv.gz: rerun exactly these comparisons
    if written:
        metrics["protocol"]["pair_list"] = written
    metrics["dataset"] = {**metrics["dataset"], **consent_record(config)}
    if getattr(result, "scenario", None):  # issue #14: deployment scenario (bench/report/scenario.py)
        from bench.report.scenario import scenario_metrics

        scenario_metrics(metrics, result.scenario, result.protocol.max_nonmated)
    t_tables = time.perf_counter()
    metrics = scrub_paths(_jsonable(metrics), path_roots)  # no absolute path of this machine is published
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False, allow_nan=False) + "\n")
    # everything below reads the data as published, so report.md re-renders from the folder alone
    published = json.loads((out_dir / "metrics.json").read_text())
    tables = load_published_tables(out_dir)
    plan = figure_plan(published, tables) if figures else {}
    timings = result.timings if isinstance(getattr(result, "timings", None), dict) else {}
    timings["tables_s"] = time.perf_counter() - t_tables

    t_figures = time.perf_counter()
    if figures:
        from bench.report.scenario import title_suffix  # issue #14

        title = f"{result.model_info['name']} on {result.dataset_info['name']}" + title_suffix(getattr(result, "scenario", None))
        shown = per_group.copy()
        from tqdm.auto import tqdm

        for attr in tqdm(result.attributes, desc="figures (per attribute)", unit="attr", disable=not progress):
            f = plan.get(attr) or {}
            if not f:
                continue
            if f.get("det"):
                dets = {k: v for k, v in result.det.items() if k[1] not in small.get(k[0], [])}
                plot_det(dets, eer, shown, attr, result.thresholds, out_dir / f["det"], title=f"DET by {attr}: {title}")
            interval = "boot" if "boot_low" in shown.columns and shown["boot_low"].notna().any() else "wilson"
            plot_error_rates(shown, attr, out_dir / f["error_rates"], title=f"Error rates by {attr}: {title}", interval=interval)
            if result.comparisons is not None:
                plot_score_distributions(result.comparisons, attr, result.thresholds, out_dir / f["scores"], title=f"Comparison scores by {attr}: {title}", suppressed=small.get(attr, []))
            else:
                plot_score_histograms(result.stream.score_counts(attr), result.thresholds, out_dir / f["scores"], title=f"Comparison scores by {attr}: {title}", suppressed=small.get(attr, []))
            plot_fmr_matrix(cross_pub[attr], attr, primary, out_dir / f["fmr_matrix"], title=f"Cross-group FMR by {attr}: {title}")
    timings["figures_s"] = time.perf_counter() - t_figures
    t_report = time.perf_counter()
    (out_dir / "report.md").write_text(render_report(published, tables))
    write_html_report(out_dir)  # report.html, also from the files just written (metrics.json, figures)
    timings["report_s"] = time.perf_counter() - t_report
    write_file_manifest(out_dir)  # last: lists and hashes every published file
    return out_dir
