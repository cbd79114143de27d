"""``fvbench-verify <folder>``: check every published number of a result folder someone else made.

The folder is **untrusted data**. The verifier never imports, instantiates or resolves
anything the folder names: ``metrics.json`` is read with :func:`json.loads` only
(:mod:`bench.verify_core`; ``${...}`` is plain text), a recorded ``_target_`` is at
most a key looked up in a fixed table of this package's dataset loaders, model weights
are compared with the registry this package ships (:data:`bench.models.weights.WEIGHTS_REGISTRY`,
looked up by model name), and model facts with the model configs it ships
(``configs/model/<name>.yaml``, read with ``yaml.safe_load``). Nothing is written:
``report.md`` and the figures are re-rendered in memory. Run as ``python -m
bench.verify``, the current directory is dropped from ``sys.path`` before anything else
is imported (a ``pandas.py`` or ``payload.py`` beside the folder is never imported;
``python -P`` does the same for every module).

One design for every kind of folder (:func:`verify_run` picks by the files present). The
verifier is split along its seams: the folder and the checks every run folder gets
(:mod:`bench.verify_folder`), recomputation from counts and scores
(:mod:`bench.verify_recompute`), a streamed run's histograms (:mod:`bench.verify_histograms`),
identification runs (:mod:`bench.verify_identification`), sweeps, calibrations and power
analyses (:mod:`bench.verify_other`), and the untrusted-input readers
(:mod:`bench.verify_core`).

run folder (``metrics.json``)
    Recomputed from the best data present: the comparison-score table
    (``scores.parquet``: every threshold, rate, interval, bootstrap, EER, matrix), else
    the streaming engine's ``histograms.npz`` (counts exact, error counts exact at bin
    edges and bracketed between them), else -- a published folder -- the published
    per-group **counts** (rates, Wilson / Clopper-Pearson / zero-error bounds, flags,
    generalized rates, differential point values, threshold statements, cross-group
    cells, dataset counts). Checks that need the score table say so
    (``skipped: needs scores.parquet``). In every mode: each CSV equals its copy in
    ``metrics.json``; ``report.md`` equals the package's renderer
    (:func:`bench.report.markdown.render_report`) applied to the verified tables; each
    figure equals its re-rendering from the tables it was drawn from (DET and score
    figures need the scores or histograms); the model's name, licence, nominal threshold
    and its source equal the shipped config and registry; the privacy record equals the
    config; ``files.sha256`` lists exactly the published files.
sweep folder (``sweep.json``)
    :mod:`bench.verify_other`: ``sweep.csv`` rates and intervals from its counts,
    thresholds and model vs the registry, suppression, counts, report and figures.
calibration folder (``calibration.json``), power folder (``power.json``)
    :mod:`bench.verify_other` as well: internal consistency, and the calibration's
    per-group counts against its source run when that folder is present.

Exit status of :func:`verify_main`: 0 every check passed (some may be skipped), 1 a
mismatch, 2 the folder cannot be read (one line naming the file and what was expected;
never a traceback), 3 (``--require-all``) no mismatch but a check was skipped.
"""

from __future__ import annotations

import os
import sys


def _drop_cwd_from_sys_path() -> None:
    """Remove the current directory ('' or its path) from ``sys.path`` (``python -m`` puts it first)."""
    cwd = os.path.realpath(os.getcwd())
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.realpath(p) != cwd]


if __name__ == "__main__":  # python -m bench.verify: nothing from the current directory is importable
    _drop_cwd_from_sys_path()

import argparse  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.errors import BenchError, DataError  # noqa: E402
from bench.metrics.groups import validate_comparisons  # noqa: E402
from bench.scores.table import TableStore  # noqa: E402
from bench.verify_core import (  # noqa: E402
    CHECK_STATUSES, Check, VerifyReport, _compare_tables, _json_table, _listing, _result, _table_check, check_file_manifest,
    check_weights, compare_png, folder_file,
)
from bench.verify_folder import (  # noqa: E402
    _CROSS_KEY, _DIFF_KEY, _EER_KEY, _EER_VALUES, _GEN_KEY, _GEN_RATES, _PER_GROUP_KEY, _RATE_COLUMNS, NEEDS_SCORES, RunFolder,
    _check_dataset, _check_dataset_counts, _check_model, _check_privacy, _check_protocol, _check_provenance, _check_suppression,
    _check_weights, _csv_equals_json, _csv_name, load_run_folder,
)
from bench.verify_histograms import _histogram_checks  # noqa: E402
from bench.verify_recompute import (  # noqa: E402
    _check_primary, _cross_consistency, _cross_from_counts, _differential_rows, _differentials_from_counts, _eer_rows,
    _generalized_rows, _images_per_group, _protocol_object, _rows_from_counts, _suppress, _threshold_statements,
    _thresholds_from_scores,
)

__all__ = ["Check", "VerifyReport", "verify_run", "verify_main", "CHECK_STATUSES", "NEEDS_SCORES"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- report and figures
def _typed(df: pd.DataFrame, counts: Sequence[str]) -> pd.DataFrame:
    """Count columns as nullable integers (as the writer holds them), text columns as text."""
    df = df.copy()
    for c in counts:
        if c in df.columns:
            v = pd.to_numeric(df[c], errors="coerce")
            if v.dropna().map(lambda x: float(x).is_integer()).all():
                df[c] = v.astype("Int64")
    return df


def _report_tables(run: RunFolder) -> dict[str, pd.DataFrame]:
    """The tables the report renderer reads (:data:`bench.report.markdown.TABLE_FILES`), parsed as
    :func:`bench.report.markdown.load_published_tables` parses them, but read through this module
    (regular files inside the folder, UTF-8)."""
    from bench.report.markdown import TABLE_FILES

    out = {}
    for key, name in TABLE_FILES.items():
        if (run.path / name).exists() or (run.path / name).is_symlink():
            text = read_text_checked(run.path, name, what="a CSV table written by fvbench")
            try:
                out[key] = pd.read_csv(io.StringIO(text), keep_default_na=True)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
                raise DataError(f"{str(run.path / name)!r} cannot be parsed as CSV ({str(err)[:100]})") from None
    return out


def _figure_names(run: RunFolder, tables: dict[str, pd.DataFrame]) -> dict[str, dict[str, str | None]]:
    """Figure files per attribute, as the writer plans them (:func:`bench.report.markdown.figure_plan`)."""
    from bench.report.markdown import figure_plan

    return {a: f for a, f in figure_plan(run.metrics, tables).items() if f}


def _check_report(run: RunFolder, tables: dict[str, pd.DataFrame]) -> Check:
    """report.md equals the package's renderer applied to the published (verified) data."""
    from bench.report.markdown import render_report

    if not (run.path / "report.md").exists():
        return Check("report.md", "mismatch", "report.md is missing")
    try:
        stored = read_text_checked(run.path, "report.md", what="the report.md fvbench writes")
    except DataError as err:
        return Check("report.md", "mismatch", str(err))
    try:
        text = render_report(run.metrics, tables)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        return Check("report.md", "mismatch", f"the report cannot be rendered from the published data ({type(err).__name__}: {str(err)[:120]})")
    if text == stored:
        return Check("report.md", "ok", f"equal to the report rendered from the verified tables ({len(text.splitlines())} lines)")
    a, b = stored.splitlines(), text.splitlines()
    for i in range(max(len(a), len(b))):
        x, y = (a[i] if i < len(a) else ""), (b[i] if i < len(b) else "")
        if x != y:
            return Check("report.md", "mismatch", f"line {i + 1} differs from the report rendered from the verified tables:\n"
                         f"stored:   {x[:160]}\nrendered: {y[:160]}")
    return Check("report.md", "mismatch", "differs from the report rendered from the verified tables")


def read_text_checked(folder: Path, name: str, *, what: str) -> str:
    """Text of ``folder/name`` through :mod:`bench.verify_core` (symlinks outside refused, UTF-8)."""
    from bench.verify_core import read_text

    return read_text(folder_file(folder, name), what=what)


def _render_png(plot, *args, **kwargs) -> bytes:
    buf = io.BytesIO()
    plot(*args, buf, **kwargs)
    return buf.getvalue()


def _check_figures(run: RunFolder, figs: dict, small: dict[str, list[str]], det_source: tuple[dict, pd.DataFrame] | None, score_plot) -> list[Check]:
    """Re-render every figure from the data it was drawn from and compare (module docstring)."""
    from bench.report.plots import plot_det, plot_error_rates, plot_fmr_matrix

    if not figs:
        return [Check("figures", "ok", "the run wrote no figures")]
    m = run.metrics
    mpl_then = ((m.get("provenance") or {}).get("packages") or {}).get("matplotlib") if isinstance(m.get("provenance"), dict) else None
    from bench.report.provenance import package_versions

    mpl_now = package_versions().get("matplotlib")
    from bench.report.scenario import title_suffix  # issue #14: scenario runs name it in figure titles

    title = f"{m['model']['name']} on {m['dataset']['name']}" + title_suffix(m.get("scenario"))
    per_group = _typed(_json_table(m["per_group"]), ["errors", "comparisons", "subjects"])
    eer = _typed(_json_table(m["eer"]), ["n_mated", "n_nonmated"])
    primary = next((t for t in m["thresholds"] if t["name"] == m["protocol"].get("primary_threshold")), None)
    checked, skipped, diffs = [], [], []
    for attr, f in figs.items():
        interval = "boot" if "boot_low" in per_group.columns and per_group["boot_low"].notna().any() else "wilson"
        jobs = [(f["error_rates"], lambda a=attr: _render_png(plot_error_rates, per_group, a, title=f"Error rates by {a}: {title}", interval=interval))]
        if primary is not None:
            cross = _typed(_json_table(m["cross_group_fmr"][attr]), ["false_matches", "comparisons"])
            jobs.append((f["fmr_matrix"], lambda a=attr, c=cross: _render_png(plot_fmr_matrix, c, a, primary, title=f"Cross-group FMR by {a}: {title}")))
        if not f.get("det"):
            pass  # not drawn: every EER is 0 (the report shows the operating points instead)
        elif det_source is not None:
            dets, eer_tab = det_source
            jobs.append((f["det"], lambda a=attr: _render_png(plot_det, {k: v for k, v in dets.items() if k[1] not in small.get(k[0], [])}, eer,
                                                              per_group, a, m["thresholds"], title=f"DET by {a}: {title}")))
        else:
            skipped.append(f["det"])
        if score_plot is not None:
            jobs.append((f["scores"], lambda a=attr: score_plot(a, title=f"Comparison scores by {a}: {title}")))
        else:
            skipped.append(f["scores"])
        for name, render in jobs:
            why = compare_png(run.path, name, render())
            checked.append(name)
            if why:
                diffs.append(why)
    if diffs and mpl_then != mpl_now:
        return [Check("figures", "skipped", f"figures drawn with matplotlib {mpl_then}, here {mpl_now}: pixels cannot be compared "
                      f"({len(diffs)} differ)")]
    out = [_result("figures", diffs, f"{len(checked)} figure(s) equal their re-rendering from the verified tables")]
    if skipped:
        out.append(Check("figures (DET, score distributions)", "skipped", f"{NEEDS_SCORES} (or histograms.npz): {', '.join(skipped)}"))
    return out


# ----------------------------------------------------------------------------- run folder
def verify_run(
    run_dir: str | Path,
    *,
    dataset_root: str | Path | None = None,
    check_dataset: bool = True,
    check_weights: bool = True,
    check_bootstrap: bool = True,
    check_figures: bool = True,
    rtol: float = 1e-9,
    dataset_metadata: str | Path | None = None,
) -> VerifyReport:
    """Verify a result folder: every published number recomputed or cross-checked.

    Parameters
    ----------
    run_dir : path
        A run folder (``metrics.json``), a sweep (``sweep.json``), a calibration
        (``calibration.json``) or a power folder (``power.json``).
    dataset_root : path, optional
        Where the dataset lives now, if not at the recorded ``root``.
    check_dataset : bool
        Rebuild the manifest (through this package's own loaders only) to compare its hash.
    check_weights : bool
        Compare the recorded weights SHA-256 with the shipped registry.
    check_bootstrap : bool
        Re-draw the subject bootstrap (needs ``scores.parquet``; costs about as much as
        the run's own bootstrap).
    check_figures : bool
        Re-render the figures and compare them (a few seconds per figure).
    rtol : float
        Relative tolerance of float comparisons (CSV cells carry 10 significant digits).
    dataset_metadata : path, optional
        A newer release's metadata file (FHIBE): flag a result whose release has since
        been revised (:mod:`bench.verify_dataset_revision`).

    Returns
    -------
    VerifyReport
        One :class:`Check` per area; ``report.ok`` is False when anything differs.

    Raises
    ------
    DataError
        The folder cannot be read: one line naming the file and what was expected.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run folder {str(run_dir)!r} does not exist")
    from bench.verify_identification import GALLERY_FILE, SEARCH_FILE, is_identification_run, verify_identification_run
    from bench.verify_html import html_check, is_leaderboard, verify_leaderboard_report  # issue 15: report.html, leaderboards
    if dataset_metadata is not None:  # refused, not silently ignored: a missing file or a folder it cannot apply to
        if not Path(dataset_metadata).is_file():
            raise DataError(f"--dataset-metadata {str(dataset_metadata)!r}: no such file (expected a FHIBE fhibe_face_crop_align.csv)")
        if not (run_dir / "metrics.json").is_file() or is_leaderboard(run_dir) or is_identification_run(run_dir):
            raise DataError(f"--dataset-metadata applies to a FHIBE 1:1 run folder (metrics.json); {str(run_dir)!r} is not one")

    if is_leaderboard(run_dir):  # issue 15: a leaderboard folder (fvbench-aggregate) is recomputed from its sources
        return verify_leaderboard_report(run_dir)
    if is_identification_run(run_dir) and not any((run_dir / f).exists() for f in (SEARCH_FILE, GALLERY_FILE)):  # issue 13/15
        from bench.verify_identification_counts import verify_published_identification  # a published folder: from its counts

        return verify_published_identification(run_dir, dataset_root=dataset_root, check_dataset=check_dataset,
                                               check_weights=check_weights, rtol=rtol)
    if is_identification_run(run_dir):  # 1:N run (issue 13): recomputed from its stored searches
        return verify_identification_run(run_dir, dataset_root=dataset_root, check_dataset=check_dataset, check_weights=check_weights,
                                         check_bootstrap=check_bootstrap, rtol=rtol)
    if not (run_dir / "metrics.json").exists() and not (run_dir / "metrics.json").is_symlink():
        from bench.verify_other import verify_other

        kind = next((k for k, f in (("sweep", "sweep.json"), ("calibration", "calibration.json"), ("power", "power.json")) if (run_dir / f).exists()), None)
        if kind is None:
            raise DataError(f"{str(run_dir / 'metrics.json')!r} not found: not an fvbench result folder "
                            "(expected metrics.json, sweep.json, calibration.json or power.json)")
        return verify_other(run_dir, kind, rtol=rtol, check_weights=check_weights)
    run = load_run_folder(run_dir)
    report = VerifyReport(run_dir=run_dir)
    checks = report.checks
    m = run.metrics
    if dataset_metadata is not None:
        from bench.verify_dataset_revision import records_release

        if not records_release(m):
            raise DataError(f"--dataset-metadata applies to FHIBE runs only: {str(run_dir / 'metrics.json')!r} records no dataset release "
                            "(dataset.provenance); drop --dataset-metadata")
    checks.append(check_file_manifest(run_dir))
    checks.append(Check("source", "info", {
        "scores": "recomputed from the comparison-score table scores.parquet",
        "histograms": "streamed run: recomputed from its score histograms (histograms.npz); counts exact, error counts exact at bin edges and bracketed between them",
        "counts": "published folder (no scores.parquet): rates, intervals, differentials and threshold statements recomputed from the published counts; "
                  "checks that need the score table say so",
    }[run.source]))
    checks += _csv_equals_json(run, rtol)
    supp_check, small = _check_suppression(run)
    checks.append(supp_check)
    checks.append(_check_dataset_counts(run))
    checks.append(_check_protocol(run))
    checks.append(_check_model(run))
    checks.append(_check_privacy(run))
    confidence = float(m["protocol"]["confidence"])
    protocol_cfg = run.protocol_config
    protocol = _protocol_object(protocol_cfg)
    attributes = run.attributes
    stored_pg = _json_table(m["per_group"])
    det_source = None
    score_plot = None

    if run.scores is not None:
        comp = run.scores
        try:
            validate_comparisons(comp)
            for a in attributes:
                validate_comparisons(comp, a)
        except DataError as err:
            raise DataError(f"{str(run_dir / 'scores.parquet')!r} is not a valid comparison table: {err}") from None
        th_check, usable, recalibrate = _thresholds_from_scores(comp, m["thresholds"], m["model"], protocol_cfg, rtol)
        checks.append(th_check)
        checks.append(_scores_vs_counts(run, comp, small))
        # per group (+ bootstrap), read through the score-store interface as the pipeline reads them
        from bench.metrics.bootstrap import bootstrap_group_rates, with_overall_rows

        store = TableStore(comp, attributes)

        stored_has_boot = "boot_low" in stored_pg.columns
        redraw = stored_has_boot and check_bootstrap and protocol is not None and bool(protocol.bootstrap_replicates) and bool(usable)
        if stored_has_boot and not redraw:
            why = "not requested" if not check_bootstrap else "the recorded protocol does not rebuild here" if protocol is None else "no usable threshold"
            checks.append(Check("bootstrap", "skipped", f"bootstrap intervals not re-drawn ({why})"))
        rates_by_attr: dict[str, pd.DataFrame] = {}
        reps_by_attr: dict[str, Any] = {}
        parts = []
        fta_stored = stored_pg[stored_pg["metric"] == "FTA"]
        overall = None  # the (all) interval, drawn once per run as the pipeline does
        if redraw:
            overall = store.bootstrap_overall(usable, recalibrate, int(protocol.bootstrap_replicates), int(protocol.seed), confidence)
        for attr in attributes:
            parts.append(_rows_from_counts(fta_stored[fta_stored["attribute"] == attr], confidence, {}))
            if not usable:
                continue
            rates = store.group_rates(attr, usable, confidence)
            if redraw:
                reps = store.bootstrap(attr, usable, recalibrate, int(protocol.bootstrap_replicates), int(protocol.seed))
                boot = with_overall_rows(bootstrap_group_rates(None, attribute=attr, thresholds=usable, confidence=confidence, replicates=reps), overall)
                rates = rates.merge(boot, on=_PER_GROUP_KEY, how="left")
                reps_by_attr[attr] = reps
            rates_by_attr[attr] = rates
            parts.append(rates)
        expected_pg = pd.concat(parts, ignore_index=True)
        eer = _suppress(_eer_rows(comp, attributes), small, _EER_VALUES, flag=False)
        _, dets = store.eer_det()
        det_source = (dets, _typed(_json_table(m["eer"]), ["n_mated", "n_nonmated"]))
        from bench.report.plots import plot_score_distributions

        score_plot = lambda a, title: _render_png(plot_score_distributions, comp, a, m["thresholds"], title=title, suppressed=small.get(a, []))  # noqa: E731
    else:
        th_check, usable = _threshold_statements(run)
        checks.append(th_check)
        recalibrate, reps_by_attr, redraw = {}, {}, False
        expected_pg = _rows_from_counts(stored_pg, confidence, usable)
        rates_by_attr = {a: expected_pg[(expected_pg["attribute"] == a) & (expected_pg["metric"] != "FTA")].reset_index(drop=True) for a in attributes}
        eer = None
        if run.histograms_path is not None:
            hist_checks, scores_obj, dets = _histogram_checks(run, usable, rtol)
            checks += hist_checks
            if scores_obj is not None:
                from bench.report.plots import plot_score_histograms

                det_source = (dets, _typed(_json_table(m["eer"]), ["n_mated", "n_nonmated"]))
                score_plot = lambda a, title: _render_png(plot_score_histograms, scores_obj.score_counts(a), m["thresholds"], title=title, suppressed=small.get(a, []))  # noqa: E731
        else:
            if isinstance(m.get("engine"), dict) and m["engine"].get("engine") == "stream":
                checks.append(Check("histograms", "skipped", "histograms.npz of this streamed run is not here (git-ignored in published folders): "
                                    "verified from the published counts"))
            checks.append(Check("eer", "skipped", f"EER values: {NEEDS_SCORES} (their comparison counts are checked under 'dataset counts')"))
        checks.append(Check("bootstrap", "skipped", f"bootstrap intervals not re-drawn: {NEEDS_SCORES}"))

    expected_pg["reasons"] = expected_pg["reasons"].fillna("") if "reasons" in expected_pg else ""
    published_pg = _suppress(expected_pg, small, [*_RATE_COLUMNS, "errors", "reasons"], flag=True)
    note = "" if run.scores is not None else NEEDS_SCORES
    checks += _table_checks("per_group", published_pg, stored_pg, run, key=_PER_GROUP_KEY, rtol=rtol, note=note)

    if "generalized_rates" in m:
        stored_gen = _json_table(m["generalized_rates"])
        if {"lost_mated", "lost_nonmated", *_GEN_KEY} <= set(stored_gen.columns) or stored_gen.empty:
            gen = _suppress(_generalized_rows(expected_pg, stored_gen), small, _GEN_RATES, flag=False) if len(stored_gen) else pd.DataFrame(columns=[*_GEN_KEY, *_GEN_RATES])
            checks += _table_checks("generalized_rates", gen, stored_gen, run, key=_GEN_KEY, rtol=rtol)
        else:
            checks.append(Check("generalized_rates", "mismatch", f"stored rows lack {sorted({'lost_mated', 'lost_nonmated', *_GEN_KEY} - set(stored_gen.columns))}"))

    if "differentials" in m:
        if protocol is None:
            checks.append(Check("differentials", "skipped", "the recorded protocol values do not build a Protocol here"))
        elif not usable:
            checks.append(Check("differentials", "skipped", "no usable threshold"))
        else:
            stored_diff = _json_table(m["differentials"])
            note = "" if redraw else f"bootstrap columns: {NEEDS_SCORES}" if run.scores is None else "bootstrap not re-drawn"
            try:
                diff = _differential_rows(rates_by_attr, attributes, usable, protocol, reps_by_attr, small, redraw)
                if run.scores is None and small:
                    diff, stored_diff, n_open = _differentials_from_counts(diff, stored_diff, rates_by_attr, attributes, usable, protocol, small)
                    if n_open:
                        note += f"; {n_open} row(s) depend on the unpublished errors of a counts-only group: {NEEDS_SCORES}"
            except (BenchError, TypeError, ValueError, AttributeError, KeyError) as err:
                checks.append(Check("differentials", "mismatch", f"cannot be recomputed with the recorded protocol values ({type(err).__name__}: {str(err)[:120]})"))
            else:
                kept = {tuple(k) for k in stored_diff[_DIFF_KEY].itertuples(index=False)}
                csv = run.csv["differentials.csv"]
                csv = csv[[tuple(k) in kept for k in csv[_DIFF_KEY].itertuples(index=False)]]
                checks += _table_checks("differentials", diff, stored_diff, run, key=_DIFF_KEY, rtol=rtol, note=note, stored_csv=csv)

    if eer is not None:
        checks += _table_checks("eer", eer, _json_table(m["eer"]), run, key=_EER_KEY, rtol=rtol)

    prim_check, primary = _check_primary(run, usable)
    checks.append(prim_check)
    for attr in attributes:
        name = f"cross_group_fmr[{attr}]"
        if run.scores is not None and primary is not None:
            c = TableStore(run.scores, attributes).cross_group(attr, primary, usable[primary])
            c.insert(0, "threshold", usable[primary])
            c.insert(0, "threshold_name", primary)
            hide = c["group_a"].isin(small.get(attr, [])) | c["group_b"].isin(small.get(attr, []))
            c["false_matches"] = c["false_matches"].astype("float64")
            c.loc[hide, ["fmr", "false_matches"]] = np.nan
        else:
            c = _cross_from_counts(run, attr, primary, usable, small)
        extra = _cross_consistency(run, attr, primary, small)
        got = _table_checks(name, c, _json_table(m["cross_group_fmr"][attr]), run, key=_CROSS_KEY, rtol=rtol, csv=_csv_name(attr))
        if extra:
            got[0] = Check(name, "mismatch", _listing(([got[0].detail] if got[0].status == "mismatch" else []) + extra))
        checks += got

    tables = _report_tables(run)
    figs = _figure_names(run, tables)
    checks.append(_check_report(run, tables))
    checks.append(html_check(run_dir))  # issue 15: report.html re-rendered from the verified files
    checks += _check_figures(run, figs, small, det_source, score_plot) if check_figures else [Check("figures", "skipped", "not requested")]
    checks.append(_check_dataset(run, None if dataset_root is None else Path(dataset_root)) if check_dataset else Check("dataset", "skipped", "not requested"))
    checks.append(_check_weights(run) if check_weights else Check("weights", "skipped", "not requested"))
    checks.append(_check_provenance(m))
    if dataset_metadata is not None:  # issue #14: the run's dataset release vs a newer one
        from bench.verify_dataset_revision import check_dataset_revision

        checks.append(check_dataset_revision(m, run.config, dataset_metadata, dataset_root))
    return report


def _scores_vs_counts(run: RunFolder, comp: pd.DataFrame, small: dict[str, list[str]]) -> Check:
    """The score table's comparison and image counts equal the published ones."""
    m = run.metrics
    ds = m["dataset"]
    mated = comp["mated"].to_numpy(dtype=bool)
    protocol_cfg = run.protocol_config
    sampled = protocol_cfg.get("max_nonmated") is not None or "seeded sample" in str(m["protocol"].get("nonmated", ""))
    # a pair-list run (RFW, BFW, a user's list) scores only the listed pairs: an acquired image in no listed
    # pair is in no comparison, so the per-group image counts cannot be compared with the FTA counts
    listed = bool(protocol_cfg.get("pair_list") or ds.get("pair_list") or m["protocol"].get("pair_list"))
    diffs = []
    for name, value in (("mated_comparisons", int(mated.sum())), ("nonmated_comparisons", int((~mated).sum()))):
        if ds.get(name) != value:
            diffs.append(f"dataset.{name}: stored {ds.get(name)!r}, scores.parquet has {value}")
    if not sampled and not listed:
        pg = _json_table(m["per_group"])
        fta = pg[pg["metric"] == "FTA"]
        for attr in run.attributes:
            present = _images_per_group(comp, attr)
            rows = fta[fta["attribute"] == attr]
            for _, r in rows.iterrows():
                if r["group"] in small.get(attr, []) or pd.isna(r["errors"]):
                    continue  # counts only: the number of failures is not published
                acquired = int(r["comparisons"]) - int(r["errors"])
                if present.get(r["group"], 0) != acquired:
                    diffs.append(f"{attr}/{r['group']}: FTA counts say {acquired} acquired image(s), scores.parquet has {present.get(r['group'], 0)}")
            extra = sorted(set(present) - set(rows["group"]))
            if extra:
                diffs.append(f"{attr}: group(s) {extra} in scores.parquet have no FTA row")
    images = ("acquired images per group agree with the FTA counts" if not (sampled or listed) else
              "images per group not checked: " + ("non-mated pairs were sampled" if sampled else
                                                  "a pair list scores only the images its pairs name"))
    return _result("scores", diffs, f"{len(comp)} comparisons ({int(mated.sum())} mated); {images}")


def _table_checks(name: str, expected: pd.DataFrame, stored: pd.DataFrame, run: RunFolder, *, key: Sequence[str], rtol: float,
                  csv: str | None = None, note: str = "", stored_csv: pd.DataFrame | None = None) -> list[Check]:
    """Compare a recomputed table with its copy in metrics.json and its CSV file."""
    csv = csv or f"{name}.csv"
    out = [_table_check(name, *_compare_tables(expected, stored, key=key, rtol=rtol, json_side=True), len(expected), note)]
    table = run.csv[csv] if stored_csv is None else stored_csv
    out.append(_table_check(csv, *_compare_tables(expected, table, key=key, rtol=rtol), len(expected), note))
    return out


# ----------------------------------------------------------------------------- entry point
def verify_main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``fvbench-verify FOLDER [options]``; returns the exit status.

    Exit status: 0 verified, 1 mismatch, 2 folder unreadable (one line on stderr), 3 a
    check was skipped and ``--require-all`` was given.
    """
    parser = argparse.ArgumentParser(
        prog="fvbench-verify",
        description="Check every published number of a result folder (1:1 run, 1:N identification run, sweep, scenario run, "
        "leaderboard from fvbench-aggregate, calibration or power) against the data it derives from, without running anything "
        "the folder names; non-zero exit status on any mismatch. Published FRL London folders record the data root of the "
        "machine that made them: pass --dataset-root ../shared/datasets/frl_london (or wherever the data lies) for the manifest check.",
    )
    parser.add_argument("run_dir", help="result folder, e.g. results/frl_london_dlib")
    parser.add_argument("--dataset-root", default=None, help="where the dataset is now, if not at the recorded root "
                        "(e.g. ../shared/datasets/frl_london for the published London folders)")
    parser.add_argument("--skip-dataset", action="store_true", help="do not rebuild the manifest")
    parser.add_argument("--skip-weights", action="store_true", help="do not compare the weights hashes with the registry")
    parser.add_argument("--skip-bootstrap", action="store_true", help="do not re-draw the subject bootstrap")
    parser.add_argument("--skip-figures", action="store_true", help="do not re-render the figures to compare them")
    parser.add_argument("--require-all", action="store_true", help="exit 3 if any check had to be skipped")
    parser.add_argument("--rtol", type=float, default=1e-9, help="relative tolerance of float comparisons (default 1e-9)")
    parser.add_argument("--dataset-metadata", default=None, metavar="NEWER.csv",
                        help="a newer release's metadata (FHIBE fhibe_face_crop_align.csv): flag a result computed on a release since revised "
                        "(FHIBE 1:1 run folders only; otherwise, or a missing file, exit 2)")
    args = parser.parse_args(argv)
    try:
        report = verify_run(args.run_dir, dataset_root=args.dataset_root, check_dataset=not args.skip_dataset,
                            check_weights=not args.skip_weights, check_bootstrap=not args.skip_bootstrap, check_figures=not args.skip_figures, rtol=args.rtol,
                            dataset_metadata=args.dataset_metadata)
    except DataError as err:
        print(f"fvbench-verify: cannot verify {args.run_dir}: {err}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, ZeroDivisionError, RecursionError, MemoryError) as err:
        # the type checks of bench.verify_core should catch malformed content first; this keeps the promise of one line
        print(f"fvbench-verify: cannot verify {args.run_dir}: unexpected content ({type(err).__name__}: {str(err)[:200]}); "
              "expected a folder as fvbench writes it", file=sys.stderr)
        return 2
    print(report.to_text())
    if not report.ok:
        return 1
    if args.require_all and report.skipped:
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(verify_main())
