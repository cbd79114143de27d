"""``fvbench-verify`` for sweep, calibration and power folders (run folders: :mod:`bench.verify`).

Same rules as for run folders (:mod:`bench.verify_core`): the folder is read as plain
data, nothing it names is imported, instantiated or resolved, nothing is written.

sweep (``sweep.json`` + ``sweep.csv``)
    Every rate, Wilson interval, zero-error bound and flag of ``sweep.csv`` recomputed
    from its counts; the subject-bootstrap columns (issue #14) checked for structure and
    range (:func:`_sweep_bootstrap`; recomputing them needs the scores); the ``threshold`` column equals the named threshold; counts-only
    groups are exactly those below ``min_group_subjects`` and publish no rate or error
    count; the unperturbed run's counts equal ``counts`` and the calibrated thresholds'
    ``N``, ``k`` and achieved FMR (metrics-reference §0); model facts and weights against
    the shipped config and registry; ``report.md`` re-rendered by
    :func:`bench.report.sweep.render_sweep_report` from ``sweep.json`` / ``sweep.csv``; every
    figure re-rendered by :func:`bench.report.sweep_plots.plot_sweep` from ``sweep.csv``
    and the transform's published name (looked up among this package's transform
    classes for its axis conventions) and compared.
calibration (``calibration.json``)
    The score map turns every source threshold into its generator threshold; when the
    source run folder (``source.run_name``, looked up beside this folder) is present, the
    dataset and weights hashes, the model and each fitted group's subjects, mated and
    non-mated counts equal that run's; refitting needs its ``scores.parquet`` (skipped).
power (``power.json`` + ``power.csv``)
    The ``required`` table equals :func:`bench.synthetic.power.required_subjects` of ``power.csv``
    at the recorded target power; powers are probabilities.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import DataError
from bench.metrics.rates import _allowed_false_matches, _supports
from bench.verify_core import (
    Check, Dict, Int, List, Number, Str, VerifyReport, _compare_tables, _json_table, _result, _same_cell, _str, check_file_manifest, check_model, check_weights, compare_png,
    folder_file, read_csv, read_json, read_text, require, require_row_fields,
)

__all__ = ["verify_other"]

_NEEDS_SCORES = "skipped: needs scores.parquet"
_SWEEP_TEXT = ("transform", "attribute", "group", "threshold_name", "metric", "flag", "reasons")


def verify_other(folder: Path, kind: str, *, rtol: float = 1e-9, check_weights: bool = True) -> VerifyReport:
    """Verify a sweep, calibration or power folder (module docstring).

    Raises
    ------
    DataError
        The folder cannot be read (one line naming the file and what was expected).
    """
    report = VerifyReport(run_dir=folder, kind=kind)
    if kind == "sweep":
        _verify_sweep(folder, report, rtol, check_weights)
        from bench.verify_html import html_check  # issue 15: report.html re-rendered from the verified files

        report.checks.append(html_check(folder))
    elif kind == "calibration":
        _verify_calibration(folder, report, rtol)
    else:
        _verify_power(folder, report, rtol)
    return report


def _files_check(folder: Path) -> Check:
    from bench.report.folder import MANIFEST_FILE

    if not (folder / MANIFEST_FILE).exists():
        return Check("files", "skipped", f"no {MANIFEST_FILE} (this kind of folder is written without one); every file's content is checked below")
    return check_file_manifest(folder)


# ----------------------------------------------------------------------------- sweep
def _verify_sweep(folder: Path, report: VerifyReport, rtol: float, weights: bool) -> None:
    from bench.protocol.sweep_spec import SWEEP_BASE_COLUMNS

    jpath = folder_file(folder, "sweep.json")
    doc = read_json(jpath, what="the sweep.json fvbench-sweep writes (a JSON object)")
    require(doc, jpath, "", Dict)
    for key, kind in (("dataset", Dict), ("model", Dict), ("thresholds", List), ("suppression", Dict), ("subjects_per_group", Dict),
                      ("counts", Dict), ("transforms", List), ("protocol", Dict)):
        require(doc, jpath, key, kind)
    require(doc, jpath, "model.name", Str)
    require(doc, jpath, "suppression.min_group_subjects", Int)
    require_row_fields(doc["thresholds"], jpath, "thresholds", {"name": Str, "kind": Str, "status": Str})
    require_row_fields(doc["transforms"], jpath, "transforms", {"name": Str, "unit": Str, "strengths": List})
    rows = read_csv(folder_file(folder, "sweep.csv"), columns=SWEEP_BASE_COLUMNS, text_columns=_SWEEP_TEXT)
    for c in ("errors", "comparisons", "subjects", "strength", "threshold"):
        rows[c] = pd.to_numeric(rows[c], errors="coerce")
    for c in ("boot_low", "boot_high", "n_replicates"):  # issue #14: subject bootstrap (absent from older folders)
        if c in rows.columns:
            rows[c] = pd.to_numeric(rows[c], errors="coerce")
    if rows["comparisons"].isna().any() or (rows["comparisons"] < 0).any():
        raise DataError(f"{str(folder / 'sweep.csv')!r}: column comparisons has a blank or negative cell; expected counts >= 0")
    checks = report.checks
    checks.append(_files_check(folder))
    cfg = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    confidence = float((cfg.get("sweep") or {}).get("confidence", 0.95)) if isinstance(cfg.get("sweep"), dict) else 0.95

    # suppression
    min_subjects = int(doc["suppression"]["min_group_subjects"])
    small = {a: sorted(str(g) for g, n in groups.items() if isinstance(n, int) and n < min_subjects)
             for a, groups in doc["subjects_per_group"].items() if isinstance(groups, dict)}
    small = {a: g for a, g in small.items() if g}
    stored_small = {a: sorted(g) for a, g in (doc["suppression"].get("groups_shown_as_counts_only") or {}).items() if g}
    diffs = [] if small == stored_small else [f"groups shown as counts only: stored {stored_small}, expected {small} (< {min_subjects} subjects)"]
    for a, groups in doc["subjects_per_group"].items():
        if not isinstance(groups, dict):
            continue
        sub = rows[(rows["attribute"] == a) & (rows["metric"] == "FTA") & (rows["group"] != "(all)")]
        got = {str(g): int(n) for g, n in sub.groupby("group")["subjects"].max().items()}
        if got and got != {str(g): n for g, n in groups.items()}:
            diffs.append(f"subjects_per_group.{a} is {groups}, but sweep.csv FTA rows give {got}")
    checks.append(_result("suppression", diffs, f"min_group_subjects {min_subjects}; counts only: {small or 'none'}"))

    # rates and intervals from counts
    thresholds = {t["name"]: t.get("threshold") for t in doc["thresholds"] if t["status"] == "ok"}
    hidden = np.zeros(len(rows), bool)
    for a, groups in small.items():
        hidden |= ((rows["attribute"] == a) & rows["group"].isin(groups)).to_numpy()
    e = rows["errors"].fillna(0).to_numpy(dtype=np.int64)
    n = rows["comparisons"].to_numpy(dtype=np.int64)
    from bench.metrics.intervals import wilson_interval, zero_error_upper_bound

    w_lo, w_hi = wilson_interval(e, n, confidence=confidence)
    expected = rows[["transform", "strength", "attribute", "group", "threshold_name", "metric", "comparisons", "subjects"]].copy()
    expected["threshold"] = [np.nan if not t else thresholds.get(t, np.nan) for t in rows["threshold_name"]]
    expected["errors"] = np.where(hidden, np.nan, e)
    expected["rate"] = np.where(hidden | (n == 0), np.nan, e / np.maximum(n, 1))
    expected["wilson_low"] = np.where(hidden, np.nan, w_lo)
    expected["wilson_high"] = np.where(hidden, np.nan, w_hi)
    expected["upper_bound_95"] = np.where(hidden | (e != 0) | (n == 0), np.nan, zero_error_upper_bound(np.maximum(n, 1)))
    expected["flag"] = np.where(hidden, "suppressed_small_group", np.where(n == 0, "no_comparisons", np.where(e == 0, "zero_errors", np.where(e < 30, "low_precision", ""))))
    expected["strength"] = expected["strength"].map(lambda s: "" if pd.isna(s) else f"{float(s):.10g}")
    stored = rows.copy()
    stored["strength"] = stored["strength"].map(lambda s: "" if pd.isna(s) else f"{float(s):.10g}")
    key = ["transform", "strength", "attribute", "group", "threshold_name", "metric"]
    d, _ = _compare_tables(expected, stored, key=key, rtol=rtol)
    bad_reasons = rows.loc[hidden & (rows["reasons"] != ""), "group"].unique().tolist()
    if bad_reasons:
        d.append(f"counts-only group(s) {bad_reasons} publish FTA reasons")
    checks.append(_result("sweep.csv", d, f"{len(rows)} rows: rates, Wilson intervals, zero-error bounds, flags and thresholds follow from the counts"))
    checks.append(_sweep_bootstrap(rows, hidden, (cfg.get("sweep") or {}).get("bootstrap_replicates") if isinstance(cfg.get("sweep"), dict) else None))

    # thresholds and the unperturbed counts
    counts = doc["counts"]
    base = rows[rows["transform"] == "none"]
    diffs = []
    for metric, key_ in (("FNMR", "mated_comparisons_unperturbed"), ("FMR", "nonmated_comparisons_unperturbed")):
        ns = set(base.loc[(base["group"] == "(all)") & (base["metric"] == metric), "comparisons"].astype(int))
        if ns and ns != {counts.get(key_)}:
            diffs.append(f"counts.{key_} is {counts.get(key_)!r}, but the unperturbed (all) {metric} rows count {sorted(ns)}")
    model = doc["model"]
    for t in doc["thresholds"]:
        if t["kind"] == "nominal":
            if not _same_cell(t.get("threshold"), model.get("nominal_threshold"), 0.0):
                diffs.append(f"nominal: {t.get('threshold')!r}, but the model's is {model.get('nominal_threshold')!r}")
            continue
        if t["status"] != "ok" or t["kind"] != "target_fmr":
            continue
        N, f = counts.get("nonmated_comparisons_unperturbed"), float(t.get("target_fmr", math.nan))
        if not isinstance(N, int) or not 0 < f < 1:
            diffs.append(f"{t['name']}: no usable N / target FMR to check")
            continue
        k = _allowed_false_matches(f, N)
        if t.get("n_nonmated") != N or t.get("k") != k:
            diffs.append(f"{t['name']}: stored N={t.get('n_nonmated')}, k={t.get('k')}; the counts give N={N}, k={k}")
        fm = float(t.get("achieved_fmr", math.nan)) * N
        sel = base[(base["group"] == "(all)") & (base["metric"] == "FMR") & (base["threshold_name"] == t["name"])]
        if not math.isfinite(fm) or abs(fm - round(fm)) > 1e-6 * max(1, fm) or round(fm) > k:
            diffs.append(f"{t['name']}: achieved FMR {t.get('achieved_fmr')!r} is no whole number of false matches <= k={k} of N={N}")
        for v in sel["errors"].dropna():
            if int(v) != round(fm):
                diffs.append(f"{t['name']}: achieved FMR gives {round(fm)} false matches, the unperturbed (all) FMR row {int(v)}")
        if t.get("support") != ("ok" if _supports(N, f, 30) else "low"):
            diffs.append(f"{t['name']}: support {t.get('support')!r} does not follow the rule of 30 for N={N}")
    checks.append(_result("thresholds", diffs, "nominal value, N, k, achieved FMR and support follow from the counts; calibrated values: " + _NEEDS_SCORES))
    checks.append(check_model(model, cfg.get("model") if isinstance(cfg.get("model"), dict) else {}, doc["thresholds"]))
    checks.append(check_weights(model) if weights else Check("weights", "skipped", "not requested"))

    # report.md
    checks.append(_sweep_report(folder, doc, rows, small, min_subjects))
    checks.append(_sweep_figures(folder, doc, rows, small))


def _sweep_bootstrap(rows: pd.DataFrame, hidden: np.ndarray, replicates: Any) -> Check:
    """The subject-bootstrap columns of ``sweep.csv`` (issue #14): what can be checked without the scores.

    Intervals are percentile intervals of resampled rates at fixed thresholds
    (:mod:`bench.metrics.bootstrap_fixed`), so ``0 <= boot_low <= boot_high <= 1`` (the
    rate itself need not lie inside); a cell with zero errors resamples to 0 in every
    replicate and one whose every comparison is an error to 1, so their intervals are
    exactly [0, 0] and [1, 1]; ``n_replicates`` (replicates with the rate defined) is a
    whole number in [1, bootstrap_replicates] where an interval is published, and
    blank or 0 where none is; FTA, FNMR_incl_FTA and counts-only rows publish none.
    Recomputing the intervals needs the comparison scores, which a sweep does not publish.
    """
    cols = ["boot_low", "boot_high", "n_replicates"]
    present = [c for c in cols if c in rows.columns]
    if replicates is None:
        if present and rows[present].notna().any().any():
            return Check("bootstrap", "mismatch", "sweep.bootstrap_replicates is null in the recorded config, but sweep.csv publishes bootstrap intervals")
        return Check("bootstrap", "skipped", "no subject bootstrap recorded (sweep.bootstrap_replicates null or absent): Wilson intervals only")
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        return Check("bootstrap", "mismatch", f"config sweep.bootstrap_replicates is {str(replicates)[:40]!r}; expected a whole number >= 1 or null")
    if len(present) < len(cols):
        return Check("bootstrap", "mismatch", f"config sweep.bootstrap_replicates is {replicates}, but sweep.csv lacks column(s) {[c for c in cols if c not in present]}")
    lo, hi, nr = (rows[c].to_numpy(dtype=float) for c in cols)
    e, n = rows["errors"].to_numpy(dtype=float), rows["comparisons"].to_numpy(dtype=float)
    name = (rows["transform"] + "/" + rows["strength"].map(lambda v: "" if pd.isna(v) else f"{float(v):g}") + "/" + rows["attribute"] + "/"
            + rows["group"] + "/" + rows["threshold_name"] + "/" + rows["metric"]).tolist()
    boot_metric = rows["metric"].isin(["FNMR", "FMR"]).to_numpy() & ~hidden
    has = np.isfinite(lo) | np.isfinite(hi)
    diffs: list[str] = []

    def bad(mask: np.ndarray, why: str) -> None:
        idx = np.flatnonzero(mask)
        if len(idx):
            diffs.append(f"{len(idx)} row(s) {why}, e.g. {name[idx[0]]}: boot_low {_str(lo[idx[0]])}, boot_high {_str(hi[idx[0]])}, "
                         f"n_replicates {_str(nr[idx[0]])}")

    bad(~boot_metric & (has | (np.isfinite(nr) & (nr != 0))), "publish a bootstrap interval where none applies (FTA, FNMR_incl_FTA, counts-only groups)")
    bad(boot_metric & (np.isfinite(lo) != np.isfinite(hi)), "have one end of the interval only")
    ok = boot_metric & np.isfinite(lo) & np.isfinite(hi)
    with np.errstate(invalid="ignore"):
        bad(ok & ~((lo >= 0) & (lo <= hi) & (hi <= 1)), "break 0 <= boot_low <= boot_high <= 1")
        bad(ok & ~(np.isfinite(nr) & (nr == np.round(nr)) & (nr >= 1) & (nr <= replicates)),
            f"publish an interval without n_replicates, a whole number in [1, {replicates}]")
        bad(boot_metric & ~np.isfinite(lo) & ~(np.isfinite(nr) & (nr == 0)) & (n > 0), "have comparisons but no interval, without n_replicates 0 (undefined in every replicate)")
        bad(ok & (e == 0) & ~((lo == 0) & (hi == 0)), "have zero errors, so every replicate resamples 0, but an interval other than [0, 0]")
        bad(ok & (e == n) & (n > 0) & ~((lo == 1) & (hi == 1)), "have every comparison an error, so every replicate resamples 1, but an interval other than [1, 1]")
    return _result("bootstrap", diffs, f"{int(ok.sum())} FNMR/FMR interval(s) of {replicates}-replicate subject bootstrap: 0 <= low <= high <= 1, "
                                       "[0, 0] at zero errors, n_replicates in range; none on FTA, FNMR_incl_FTA or counts-only rows "
                                       "(recomputation needs the comparison scores, which a sweep does not publish)")


def _transform_classes() -> dict[str, type]:
    """This package's transform classes by their ``name`` (a fixed table; nothing is imported by name)."""
    from bench.acquisition import transforms as tr

    out, todo = {}, [tr.Transform]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__ == tr.__name__ and cls is not tr.Transform:
            out[cls.name] = cls
    return out


def _sweep_figures(folder: Path, doc: dict, rows: pd.DataFrame, small: dict) -> Check:
    """Re-render every sweep figure from sweep.csv and the transforms' published settings, and compare."""
    import io

    from bench.report.plots import safe_name
    from bench.report.sweep_plots import plot_sweep

    listed = (doc.get("files") or {}).get("figures") if isinstance(doc.get("files"), dict) else None
    if not listed:
        return Check("figures", "ok", "the sweep wrote no figures")
    classes = _transform_classes()
    attrs = [str(a) for a in doc["protocol"].get("attributes") or []]
    geo = doc.get("geometry") if isinstance(doc.get("geometry"), dict) else {}
    ied = (geo.get("ied_px") or {}).get("median") if isinstance(geo.get("ied_px"), dict) else None
    ieds = np.array([float(ied)]) if isinstance(ied, (int, float)) else None
    diffs, done = [], 0
    for t in doc["transforms"]:
        kind = (t.get("settings") or {}).get("transform") if isinstance(t.get("settings"), dict) else None
        cls = classes.get(kind) if isinstance(kind, str) else None
        if cls is None:
            diffs.append(f"transform {t['name']!r}: settings name {str(kind)[:40]!r} is none of this package's transforms {sorted(classes)}")
            continue
        if t["unit"] != cls.unit:
            diffs.append(f"transform {t['name']!r}: unit {t['unit'][:60]!r}, but {cls.__name__} measures {cls.unit[:60]!r}")
        view = SimpleNamespace(identity=cls.identity, log_x=cls.log_x, degrades_upward=cls.degrades_upward, unit=cls.unit)
        sw = SimpleNamespace(name=t["name"], strengths=[float(x) for x in t["strengths"]], transform=view)
        for attr in attrs:
            name = f"sweep_{safe_name(t['name'])}_{safe_name(attr)}.png"
            if name not in listed:
                continue
            buf = io.BytesIO()
            plot_sweep(rows, sw, attr, doc["thresholds"], buf, title=f"{doc['model']['name']} on {doc['dataset']['name']}: {t['name']} sweep by {attr}",
                       original_x=cls.original_x(view, ieds), suppressed=small.get(attr, []), subjects=doc["subjects_per_group"].get(attr, {}))
            why = compare_png(folder, name, buf.getvalue())
            done += 1
            if why:
                diffs.append(why)
    return _result("figures", diffs, f"{done} figure(s) equal their re-rendering from sweep.csv")


def _sweep_report(folder: Path, doc: dict, rows: pd.DataFrame, small: dict, min_subjects: int) -> Check:
    from bench.report.plots import safe_name
    from bench.report.sweep import render_sweep_report

    try:
        stored = read_text(folder_file(folder, "report.md"), what="the report.md fvbench-sweep writes")
    except DataError as err:
        return Check("report.md", "mismatch", str(err))
    cfg = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    sweep_cfg = cfg.get("sweep") if isinstance(cfg.get("sweep"), dict) else {}
    attrs = [str(a) for a in doc["protocol"].get("attributes") or []]
    sweeps = [SimpleNamespace(name=t["name"], strengths=[float(s) for s in t["strengths"]], transform=SimpleNamespace(unit=t["unit"])) for t in doc["transforms"]]
    listed = set((doc.get("files") or {}).get("figures") or []) if isinstance(doc.get("files"), dict) else set()
    figs = {(sw.name, a): f"sweep_{safe_name(sw.name)}_{safe_name(a)}.png" for sw in sweeps for a in attrs}
    figs = {k: v for k, v in figs.items() if v in listed}
    view = SimpleNamespace(thresholds=doc["thresholds"], counts=doc["counts"], model_info=doc["model"], dataset_info=doc["dataset"],
                           geometry_info=doc.get("geometry") or {}, sweeps=sweeps, attributes=attrs,
                           protocol=SimpleNamespace(reference_view=sweep_cfg.get("reference_view"), probe_view=sweep_cfg.get("probe_view"),
                                                    bootstrap_replicates=sweep_cfg.get("bootstrap_replicates")))
    shown = rows.copy()
    shown["reasons"] = shown["reasons"].fillna("")
    try:
        text = render_sweep_report(view, shown, figs, str(doc.get("run_name", "")), small, min_subjects)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        return Check("report.md", "mismatch", f"the report cannot be rendered from sweep.json / sweep.csv ({type(err).__name__}: {str(err)[:120]})")
    if text == stored:
        return Check("report.md", "ok", f"equal to the report rendered from sweep.json and sweep.csv ({len(text.splitlines())} lines)")
    a, b = stored.splitlines(), text.splitlines()
    for i in range(max(len(a), len(b))):
        x, y = (a[i] if i < len(a) else ""), (b[i] if i < len(b) else "")
        if x != y:
            return Check("report.md", "mismatch", f"line {i + 1} differs from the report rendered from sweep.json / sweep.csv:\nstored:   {x[:160]}\nrendered: {y[:160]}")
    return Check("report.md", "mismatch", "differs from the report rendered from sweep.json / sweep.csv")


# ----------------------------------------------------------------------------- calibration
def _generator_threshold(score: float, score_map: dict) -> float:
    """bench.synthetic.calibrate's map: generator cosine = 1 - delta / scale; delta = score^2 (euclidean) or 1 - score (cosine)."""
    delta = score * score if score_map.get("metric") == "euclidean" else 1.0 - score
    return 1.0 - delta / float(score_map["dissimilarity_scale"])


def _verify_calibration(folder: Path, report: VerifyReport, rtol: float) -> None:
    jpath = folder_file(folder, "calibration.json")
    doc = read_json(jpath, what="the calibration.json fvbench-calibrate writes (a JSON object)")
    require(doc, jpath, "", Dict)
    for key, kind in (("groups", Dict), ("source", Dict), ("thresholds", List), ("score_map", Dict), ("attribute", Str), ("dim", Int)):
        require(doc, jpath, key, kind)
    require(doc, jpath, "score_map.dissimilarity_scale", Number)
    require_row_fields(doc["thresholds"], jpath, "thresholds", {"name": Str, "threshold": Number, "generator_threshold": Number})
    for g in doc["groups"]:
        for k in ("subjects", "n_mated", "n_nonmated", "images_per_subject"):
            require(doc, jpath, f"groups.{g}.{k}", Int) if isinstance(doc["groups"][g], dict) else require(doc, jpath, f"groups.{g}", Dict)
    checks = report.checks
    checks.append(_files_check(folder))
    diffs = []
    for t in doc["thresholds"]:
        g = _generator_threshold(float(t["threshold"]), doc["score_map"])
        if not _same_cell(t["generator_threshold"], g, rtol):
            diffs.append(f"{t['name']}: generator threshold {t['generator_threshold']!r}, the score map gives {g!r}")
    for name, gr in doc["groups"].items():
        s, k = gr["subjects"], gr["images_per_subject"]
        if gr["n_mated"] > s * k * (k - 1) // 2 + s * 0 or gr["n_mated"] < 0:
            diffs.append(f"group {name}: {gr['n_mated']} mated comparisons exceed {s} subjects x C({k}, 2)")
    checks.append(_result("calibration", diffs, f"{len(doc['thresholds'])} generator thresholds follow from the score map; group counts possible"))
    src = doc["source"]
    run_name = src.get("run_name")
    if not isinstance(run_name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", run_name) or run_name in (".", ".."):
        checks.append(Check("source run", "mismatch", f"source.run_name {str(run_name)[:60]!r} is not a plain folder name"))
        return
    src_dir = folder.parent / run_name
    if not (src_dir / "metrics.json").exists():
        checks.append(Check("source run", "skipped", f"source run folder {run_name!r} is not beside this folder: counts and hashes not compared"))
    else:
        mpath = folder_file(src_dir, "metrics.json")
        m = read_json(mpath, what="the source run's metrics.json")
        require(m, mpath, "dataset", Dict)
        require(m, mpath, "model", Dict)
        require_row_fields(require(m, mpath, "per_group", List), mpath, "per_group", {"attribute": Str, "group": Str, "metric": Str, "comparisons": Int, "subjects": Int})
        diffs = []
        for key, have in (("manifest_sha256", m["dataset"].get("manifest_sha256")), ("dataset", m["dataset"].get("name")),
                          ("model", m["model"].get("name")), ("model_metric", m["model"].get("metric")), ("weights_sha256", m["model"].get("weights_sha256"))):
            if src.get(key) != have:
                diffs.append(f"source.{key} is {str(src.get(key))[:70]!r}, the source run's is {str(have)[:70]!r}")
        pg = _json_table(m["per_group"])
        for name, gr in doc["groups"].items():
            sel = pg[(pg["attribute"] == doc["attribute"]) & (pg["group"] == name)]
            for col, metric, field in (("subjects", "FTA", "subjects"), ("n_mated", "FNMR", "comparisons"), ("n_nonmated", "FMR", "comparisons")):
                vals = {int(v) for v in sel.loc[sel["metric"] == metric, field]}
                if vals and vals != {gr[col]}:
                    diffs.append(f"group {name} {col} is {gr[col]}, the source run's {metric} rows give {sorted(vals)}")
        th = {t.get("name"): t.get("threshold") for t in (m.get("thresholds") or []) if isinstance(t, dict)}
        for t in doc["thresholds"]:
            if t["name"] not in th or not _same_cell(t["threshold"], th[t["name"]], rtol):
                diffs.append(f"threshold {t['name']}: {t['threshold']!r}, the source run's is {th.get(t['name'])!r}")
        checks.append(_result("source run", diffs, f"hashes, model, per-group counts and thresholds equal results folder {run_name!r}"))
    checks.append(Check("fit", "skipped", f"refitting the generator: {_NEEDS_SCORES} of the source run"))
    checks.append(Check("figures", "skipped", f"calibration.png is drawn from the source run's scores: {_NEEDS_SCORES}"))


# ----------------------------------------------------------------------------- power
def _verify_power(folder: Path, report: VerifyReport, rtol: float) -> None:
    from bench.synthetic.power import METRICS, required_subjects

    jpath = folder_file(folder, "power.json")
    doc = read_json(jpath, what="the power.json fvbench-power writes (a JSON object)")
    require(doc, jpath, "", Dict)
    target = require(doc, jpath, "target_power", Number)
    require(doc, jpath, "required", List)
    cols = ["subjects", "images_per_subject", *[f"power_{m}" for m in METRICS]]
    curve = read_csv(folder_file(folder, "power.csv"), columns=cols)
    for c in cols:
        curve[c] = pd.to_numeric(curve[c], errors="coerce")
        if curve[c].isna().any():
            raise DataError(f"{str(folder / 'power.csv')!r}: column {c} has a blank or non-numeric cell; expected numbers")
    checks = report.checks
    checks.append(_files_check(folder))
    diffs = []
    for m in METRICS:
        p = curve[f"power_{m}"]
        if ((p < 0) | (p > 1)).any():
            diffs.append(f"power_{m} has values outside [0, 1]")
    need = required_subjects(curve, float(target))
    d, _ = _compare_tables(need.assign(images_per_subject=need["images_per_subject"].astype(str)),
                           _json_table(doc["required"]).assign(images_per_subject=lambda x: x["images_per_subject"].map(lambda v: str(int(v)) if v is not None and not pd.isna(v) else "")),
                           key=["metric", "images_per_subject"], rtol=rtol, json_side=True)
    diffs += d
    checks.append(_result("power", diffs, f"required subjects at power {target:g} follow from power.csv ({len(curve)} designs)"))
    checks.append(Check("simulation", "skipped", "re-running the simulated studies (fvbench-power with the recorded seed) is not done by verify"))
