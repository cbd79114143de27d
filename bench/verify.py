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

One design for every kind of folder (:func:`verify_run` picks by the files present):

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
import math  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Iterable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.errors import BenchError, DataError, InsufficientDataError  # noqa: E402
from bench.metrics.groups import ALL_GROUP, cross_group_fmr, per_group_rates, validate_comparisons  # noqa: E402
from bench.metrics.intervals import clopper_pearson_interval, wilson_interval, zero_error_upper_bound  # noqa: E402
from bench.metrics.rates import _allowed_false_matches, _supports, _threshold_support, equal_error_rate, threshold_at_fmr  # noqa: E402
from bench.verify_core import (  # noqa: E402
    _MAX_LISTED, CHECK_STATUSES, Bool, Check, Dict, Int, List, Number, OptInt, OptNumber, OptStr, Str, VerifyReport, _as_float, _compare_tables, _json_table, _listing,
    _result, _same_cell, _str, _table_check, check_file_manifest, check_model, compare_png, check_weights, folder_file, read_csv, read_json, require, require_row_fields,
)

__all__ = ["Check", "VerifyReport", "verify_run", "verify_main", "CHECK_STATUSES", "NEEDS_SCORES"]

log = logging.getLogger(__name__)

#: Detail of a check that only the comparison-score table can do.
NEEDS_SCORES = "skipped: needs scores.parquet"

SUPPORTED_SCHEMA_VERSIONS = (1,)

_RATE_COLUMNS = ["rate", "wilson_low", "wilson_high", "cp_low", "cp_high", "upper_bound_95", "boot_low", "boot_high"]
_BOOT_COLUMNS = ["boot_low", "boot_high", "n_replicates"]
_PER_GROUP_KEY = ["attribute", "group", "threshold_name", "metric"]
_EER_KEY = ["attribute", "group"]
_EER_VALUES = ["eer", "threshold", "eer_low", "eer_high", "eer_crossing"]
_GEN_KEY = ["attribute", "group", "threshold_name"]
_GEN_RATES = ["fta", "fmr", "fnmr", "far_iso", "frr_iso", "fnmr_nist", "fmr_nist"]
_DIFF_KEY = ["attribute", "threshold_name", "measure"]
_CROSS_KEY = ["group_a", "group_b"]
_TEXT_COLUMNS = ("attribute", "group", "group_a", "group_b", "threshold_name", "metric", "measure", "flag", "reasons", "groups",
                 "max_group", "min_group", "warnings", "excluded_groups", "zero_rule")


# ----------------------------------------------------------------------------- the folder
@dataclass
class RunFolder:
    """A run folder's published content, parsed and type-checked (:func:`load_run_folder`).

    Attributes
    ----------
    path : pathlib.Path
    metrics : dict
        ``metrics.json`` (plain JSON data).
    csv : dict
        File name -> DataFrame of every published CSV table.
    scores : pandas.DataFrame or None
        ``scores.parquet`` when present (the comparison-score table).
    histograms_path : pathlib.Path or None
        ``histograms.npz`` of a streamed run, when present.
    """

    path: Path
    metrics: dict
    csv: dict[str, pd.DataFrame]
    scores: pd.DataFrame | None
    histograms_path: Path | None

    @property
    def attributes(self) -> list[str]:
        return [str(a) for a in self.metrics["protocol"]["attributes"]]

    @property
    def config(self) -> dict:
        c = self.metrics.get("config")
        return c if isinstance(c, dict) else {}

    @property
    def protocol_config(self) -> dict:
        p = self.config.get("protocol")
        return dict(p) if isinstance(p, dict) else {}

    @property
    def source(self) -> str:
        """What the numbers are recomputed from: ``scores``, ``histograms`` or ``counts``."""
        return "scores" if self.scores is not None else "histograms" if self.histograms_path is not None else "counts"


_PER_GROUP_FIELDS = {"attribute": Str, "group": Str, "threshold_name": Str, "metric": Str, "comparisons": Int, "subjects": Int}
_THRESHOLD_FIELDS = {"name": Str, "kind": Str, "status": Str}


def _csv_name(attr: str) -> str:
    from bench.report.plots import safe_name

    return f"cross_group_fmr_{safe_name(attr)}.csv"


def load_run_folder(folder: Path) -> RunFolder:
    """Read and type-check a run folder (nothing is instantiated or resolved).

    Raises
    ------
    DataError
        One line naming the file and key/column and what was expected.
    """
    mpath = folder_file(folder, "metrics.json")
    m = read_json(mpath, what="the metrics.json fvbench writes (a JSON object)")
    require(m, mpath, "", Dict)
    version = m.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(version, bool):
        raise DataError(f"{str(mpath)!r}: schema_version {version!r} is not supported; expected one of {list(SUPPORTED_SCHEMA_VERSIONS)}")
    for key, kind in (("dataset", Dict), ("model", Dict), ("protocol", Dict), ("thresholds", List), ("per_group", List), ("eer", List),
                      ("cross_group_fmr", Dict), ("suppression", Dict)):
        require(m, mpath, key, kind)
    if "config" in m and m["config"] is not None:
        require(m, mpath, "config", Dict)
    attrs = require(m, mpath, "protocol.attributes", List)
    if not attrs or not all(isinstance(a, str) and a for a in attrs):
        raise DataError(f"{str(mpath)!r}: protocol.attributes is {attrs!r}; expected a non-empty list of attribute names")
    require(m, mpath, "protocol.primary_threshold", OptStr)
    conf = require(m, mpath, "protocol.confidence", Number)
    if not 0 < conf < 1:
        raise DataError(f"{str(mpath)!r}: protocol.confidence is {conf!r}; expected a number in (0, 1)")
    for k in ("images", "subjects", "mated_comparisons", "nonmated_comparisons", "images_acquired"):
        if require(m, mpath, f"dataset.{k}", Int) < 0:
            raise DataError(f"{str(mpath)!r}: dataset.{k} is negative; expected a count >= 0")
    require(m, mpath, "dataset.name", Str)
    require(m, mpath, "model.name", Str)
    require(m, mpath, "model.metric", Str)
    require(m, mpath, "model.nominal_threshold", OptNumber)
    require(m, mpath, "suppression.min_group_subjects", Int)
    small = require(m, mpath, "suppression.groups_shown_as_counts_only", Dict)
    for a, groups in small.items():
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise DataError(f"{str(mpath)!r}: suppression.groups_shown_as_counts_only.{a} is {groups!r}; expected a list of group names")
    require_row_fields(m["thresholds"], mpath, "thresholds", _THRESHOLD_FIELDS)
    for i, t in enumerate(m["thresholds"]):
        if t["kind"] not in ("nominal", "target_fmr", "external"):
            raise DataError(f"{str(mpath)!r}: thresholds.{i}.kind is {t['kind']!r}; expected nominal, target_fmr or external")
        if t["status"] == "ok":
            require(m, mpath, f"thresholds.{i}.threshold", Number)
        if t["kind"] == "target_fmr":
            f = require(m, mpath, f"thresholds.{i}.target_fmr", Number)
            if not 0 < f < 1:
                raise DataError(f"{str(mpath)!r}: thresholds.{i}.target_fmr is {f!r}; expected a number in (0, 1)")
            if t["status"] == "ok":
                for k, kind in (("achieved_fmr", Number), ("k", Int), ("n_nonmated", Int)):
                    require(m, mpath, f"thresholds.{i}.{k}", kind)
    require_row_fields(m["per_group"], mpath, "per_group", _PER_GROUP_FIELDS)
    for i, r in enumerate(m["per_group"]):
        if r["metric"] not in ("FTA", "FMR", "FNMR"):
            raise DataError(f"{str(mpath)!r}: per_group.{i}.metric is {r['metric']!r}; expected FTA, FMR or FNMR")
        require(m, mpath, f"per_group.{i}.errors", OptInt)
        if r["comparisons"] < 0 or (r.get("errors") or 0) < 0 or (r.get("errors") or 0) > r["comparisons"]:
            raise DataError(f"{str(mpath)!r}: per_group.{i} has errors={r.get('errors')!r} of comparisons={r['comparisons']!r}; "
                            "expected 0 <= errors <= comparisons")
    require_row_fields(m["eer"], mpath, "eer", {"attribute": Str, "group": Str, "n_mated": Int, "n_nonmated": Int})
    for a in attrs:
        rows = require(m, mpath, f"cross_group_fmr.{a}", List)
        require_row_fields(rows, mpath, f"cross_group_fmr.{a}", {"group_a": Str, "group_b": Str, "comparisons": Int})
    for key, fields in (("generalized_rates", {"attribute": Str, "group": Str, "threshold_name": Str}),
                        ("differentials", {"attribute": Str, "threshold_name": Str, "measure": Str})):
        if key in m:
            require_row_fields(require(m, mpath, key, List), mpath, key, fields)
    if isinstance(m.get("privacy"), dict):
        require(m, mpath, "privacy.embeddings_exported", Bool)

    csv: dict[str, pd.DataFrame] = {}
    wanted = {"per_group.csv": [*_PER_GROUP_KEY, "errors", "comparisons", "rate"], "eer.csv": [*_EER_KEY, "n_mated", "n_nonmated"]}
    if "generalized_rates" in m:
        wanted["generalized_rates.csv"] = [*_GEN_KEY]
    if "differentials" in m:
        wanted["differentials.csv"] = [*_DIFF_KEY, "value"]
    for a in attrs:
        wanted[_csv_name(a)] = ["threshold_name", "threshold", *_CROSS_KEY, "false_matches", "comparisons", "fmr"]
    for name, cols in wanted.items():
        csv[name] = read_csv(folder_file(folder, name), columns=cols, text_columns=_TEXT_COLUMNS)

    scores = None
    hist_path = None
    stream = isinstance(m.get("engine"), dict) and m["engine"].get("engine") == "stream"
    if not stream and (folder / "scores.parquet").exists():
        spath = folder_file(folder, "scores.parquet")
        try:
            scores = pd.read_parquet(spath)
        except Exception as err:  # pyarrow raises many types for a damaged file
            raise DataError(f"{str(spath)!r} cannot be read as a parquet table ({type(err).__name__}: {str(err)[:120]})") from None
    if stream and (folder / "histograms.npz").exists():
        hist_path = folder_file(folder, "histograms.npz")
    return RunFolder(folder, m, csv, scores, hist_path)



# ----------------------------------------------------------------------------- recomputation helpers
def _interval_columns(e: np.ndarray, n: np.ndarray, confidence: float) -> dict[str, np.ndarray]:
    """Rate, Wilson and Clopper-Pearson intervals, zero-error bound and flag from counts
    (metrics-reference §5.1, §5.5; as :func:`bench.metrics.groups.per_group_rates` writes them)."""
    e = e.astype(np.int64)
    n = n.astype(np.int64)
    w_lo, w_hi = wilson_interval(e, n, confidence=confidence)
    c_lo, c_hi = clopper_pearson_interval(e, n, confidence=confidence)
    return {
        "rate": np.where(n > 0, e / np.maximum(n, 1), np.nan),
        "wilson_low": w_lo, "wilson_high": w_hi, "cp_low": c_lo, "cp_high": c_hi,
        "upper_bound_95": np.where((e == 0) & (n > 0), zero_error_upper_bound(np.maximum(n, 1)), np.nan),
        "flag": np.where(n == 0, "no_comparisons", np.where(e == 0, "zero_errors", np.where(e < 30, "low_precision", ""))),
    }


def _rows_from_counts(stored: pd.DataFrame, confidence: float, thresholds: dict[str, float]) -> pd.DataFrame:
    """Per-group rows recomputed from their stored counts (suppressed counts read as 0, blanked again later)."""
    cols = ["attribute", "group", "threshold_name", "metric", "errors", "comparisons", "subjects", "reasons"]
    df = stored[[c for c in cols if c in stored.columns]].copy().reset_index(drop=True)
    if "reasons" not in df:
        df["reasons"] = ""
    df["reasons"] = df["reasons"].map(_str)
    e = pd.to_numeric(df["errors"], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    n = pd.to_numeric(df["comparisons"], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    df["errors"] = e
    df["threshold"] = [thresholds.get(t, np.nan) if m != "FTA" else np.nan for t, m in zip(df["threshold_name"], df["metric"])]
    for k, v in _interval_columns(e, n, confidence).items():
        df[k] = v
    return df


def _images_per_group(comp: pd.DataFrame, attribute: str) -> dict[str, int]:
    """Distinct images per group label of ``attribute`` among the compared images."""
    a = pd.DataFrame({"img": comp["image_a"].astype(str), "g": comp[f"{attribute}_a"].astype(str)})
    b = pd.DataFrame({"img": comp["image_b"].astype(str), "g": comp[f"{attribute}_b"].astype(str)})
    both = pd.concat([a, b]).drop_duplicates()
    out = both.groupby("g")["img"].size().to_dict()
    out[ALL_GROUP] = int(both["img"].nunique())
    return {str(k): int(v) for k, v in out.items()}


def _eer_rows(comp: pd.DataFrame, attributes: Iterable[str]) -> pd.DataFrame:
    """EER per (attribute, group) as the pipeline computes it (same group on both sides)."""
    rows = []
    mated = comp["mated"].to_numpy(dtype=bool)
    score = comp["score"].to_numpy(dtype=np.float64)
    for attr in attributes:
        la = comp[f"{attr}_a"].astype(str).to_numpy()
        lb = comp[f"{attr}_b"].astype(str).to_numpy()
        for g in [ALL_GROUP, *sorted(set(la.tolist()) | set(lb.tolist()))]:
            sel = np.ones(len(comp), bool) if g == ALL_GROUP else (la == g) & (lb == g)
            m, nm = score[sel & mated], score[sel & ~mated]
            row: dict[str, Any] = {"attribute": attr, "group": g, "n_mated": int(m.size), "n_nonmated": int(nm.size)}
            if m.size and nm.size:
                e = equal_error_rate(m, nm)
                row.update(eer=e.eer, threshold=e.threshold, eer_low=e.low, eer_high=e.high, eer_crossing=e.crossing)
            else:
                row.update(eer=np.nan, threshold=np.nan, eer_low=np.nan, eer_high=np.nan, eer_crossing=np.nan)
            rows.append(row)
    return pd.DataFrame(rows, columns=[*_EER_KEY, "n_mated", "n_nonmated", *_EER_VALUES])


def _generalized_rows(per_group: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """FTA folded into FMR/FNMR (metrics-reference §1.2): ISO ``FAR = FMR (1 - FTA)``,
    ``FRR = FTA + FNMR (1 - FTA)``; NIST ``FNMR_nist = (FNM + lost mated) / (mated + lost mated)``,
    ``FMR_nist = FM / (non-mated + lost non-mated)``. The lost counts (comparisons an FTA
    removed) depend on which subjects failed, so they are taken from ``stored``."""
    pg = per_group.set_index(_PER_GROUP_KEY)
    rows = []
    for _, s in stored.iterrows():
        attr, g, name = _str(s["attribute"]), _str(s["group"]), _str(s["threshold_name"])
        try:
            f = float(pg.loc[(attr, g, "", "FTA"), "rate"])
            fm = pg.loc[(attr, g, name, "FMR")]
            fnm = pg.loc[(attr, g, name, "FNMR")]
        except KeyError:
            continue  # reported as a stored row the data do not produce
        lm = _as_float(s.get("lost_mated"))
        ln = _as_float(s.get("lost_nonmated"))
        lm = 0 if lm is None or math.isnan(lm) else int(lm)  # counts-only group: not published
        ln = 0 if ln is None or math.isnan(ln) else int(ln)
        fmr, fnmr = float(fm["rate"]), float(fnm["rate"])
        n_m, n_n = int(fnm["comparisons"]), int(fm["comparisons"])
        rows.append({
            "attribute": attr, "group": g, "threshold_name": name, "fta": f, "fmr": fmr, "fnmr": fnmr,
            "far_iso": fmr * (1 - f), "frr_iso": f + fnmr * (1 - f),
            "fnmr_nist": (int(fnm["errors"]) + lm) / (n_m + lm) if n_m + lm else np.nan,
            "fmr_nist": int(fm["errors"]) / (n_n + ln) if n_n + ln else np.nan,
        })
    return pd.DataFrame(rows, columns=[*_GEN_KEY, *_GEN_RATES])


def _suppress(df: pd.DataFrame, small: dict[str, list[str]], cols: Sequence[str], *, flag: bool) -> pd.DataFrame:
    """Blank ``cols`` of the rows of groups published as counts only."""
    df = df.copy()
    cols = [c for c in cols if c in df.columns]
    for c in cols:
        if pd.api.types.is_integer_dtype(df[c]):
            df[c] = df[c].astype("float64")
        elif df[c].dtype == object or pd.api.types.is_string_dtype(df[c]):
            df[c] = df[c].astype(object)
    for attr, groups in small.items():
        m = (df["attribute"] == attr) & df["group"].isin(groups)
        df.loc[m, cols] = np.nan
        if flag:
            df.loc[m, "flag"] = "suppressed_small_group"
    return df


def _suppress_differentials(df: pd.DataFrame, small: dict[str, list[str]]) -> pd.DataFrame:
    """Blank a differential measure computed over a group published as counts only."""
    df = df.copy()
    df["suppressed"] = False
    for attr, groups in small.items():
        hit = (df["attribute"] == attr) & df["groups"].fillna("").map(lambda s: any(g in str(s).split(";") for g in groups))
        cols = [c for c in ("value", "boot_low", "boot_high", "max_group", "min_group") if c in df.columns]
        df.loc[hit, cols] = np.nan
        df.loc[hit, "suppressed"] = True
    return df


def _protocol_object(protocol_cfg: dict) -> Any:
    """The :class:`bench.run.Protocol` of the recorded protocol values, or None if they do not build one.

    ``Protocol`` is this package's own dataclass, chosen here, not by the folder; the folder
    supplies plain values only, which the dataclass validates.
    """
    from bench.run import Protocol

    try:
        return Protocol(**protocol_cfg)
    except (TypeError, ValueError, BenchError) as err:
        log.warning("recorded protocol config does not build a Protocol here (%s)", err)
        return None


def _primary(stored: list[dict], usable: dict[str, float]) -> str | None:
    """Name of the headline threshold: the first calibrated one set, else the first set."""
    ok = [t for t in stored if t.get("status") == "ok" and t["name"] in usable]
    calibrated = [t for t in ok if t.get("kind") == "target_fmr"]
    chosen = calibrated or ok
    return chosen[0]["name"] if chosen else None


def _expected_threshold_names(model: dict, protocol: dict) -> list[str]:
    from bench.run import fmr_threshold_name

    names = []
    if protocol.get("use_nominal_threshold", True) and model.get("nominal_threshold") is not None:
        names.append("nominal")
    external = protocol.get("external_thresholds") or {}
    if isinstance(external, dict) and external:
        names += [str(n) for n in external]
    else:
        names += [fmr_threshold_name(float(f)) for f in (protocol.get("target_fmrs") or []) if isinstance(f, (int, float))]
    return names


# ----------------------------------------------------------------------------- checks of every run folder
def _csv_equals_json(run: RunFolder, rtol: float) -> list[Check]:
    """Each CSV table equals its copy in metrics.json, cell by cell (all columns)."""
    m = run.metrics
    pairs = [("per_group.csv", m["per_group"], _PER_GROUP_KEY), ("eer.csv", m["eer"], _EER_KEY)]
    if "generalized_rates" in m:
        pairs.append(("generalized_rates.csv", m["generalized_rates"], _GEN_KEY))
    if "differentials" in m:
        pairs.append(("differentials.csv", m["differentials"], _DIFF_KEY))
    for a in run.attributes:
        pairs.append((_csv_name(a), m["cross_group_fmr"][a], _CROSS_KEY))
    out = []
    for name, rows, key in pairs:
        js = _json_table(rows)
        csv = run.csv[name].replace([np.inf, -np.inf], np.nan)  # metrics.json writes +/-inf as null
        diffs = []
        if sorted(js.columns) != sorted(csv.columns) and len(js):
            diffs.append(f"columns differ: {name} has {list(csv.columns)}, metrics.json {list(js.columns)}")
        else:
            d, _ = _compare_tables(js, csv, key=key, rtol=rtol)
            diffs += d
        out.append(_result(f"{name} = metrics.json", diffs, f"{len(js)} rows, every cell equal"))
    return out


def _check_dataset_counts(run: RunFolder) -> Check:
    """dataset.* counts against the per-group counts they are the totals of."""
    m = run.metrics
    ds = m["dataset"]
    pg = _json_table(m["per_group"])
    diffs = []
    for attr in run.attributes:
        rows = pg[(pg["attribute"] == attr) & (pg["group"] == ALL_GROUP)]
        fta = rows[rows["metric"] == "FTA"]
        if len(fta) != 1:
            diffs.append(f"{attr}: expected one (all) FTA row, found {len(fta)}")
            continue
        f = fta.iloc[0]
        expect = {"images": int(f["comparisons"]), "subjects": int(f["subjects"])}
        if not pd.isna(f["errors"]):
            expect["images_acquired"] = int(f["comparisons"]) - int(f["errors"])
        for metric, key in (("FNMR", "mated_comparisons"), ("FMR", "nonmated_comparisons")):
            for n in rows.loc[rows["metric"] == metric, "comparisons"].unique():
                if int(n) != ds[key]:
                    diffs.append(f"dataset.{key} is {ds[key]}, but per_group {attr}/(all) {metric} rows count {int(n)} comparisons")
        withheld = int((ds.get("withheld") or {}).get("subjects") or 0)  # small groups' subjects: in no number (issue #9)
        for k, v in expect.items():
            k = {"images": "images_published", "subjects": "subjects_published"}.get(k, k) if withheld else k
            if ds.get(k) != v:
                diffs.append(f"dataset.{k} is {ds.get(k)!r}, but per_group {attr}/(all) FTA gives {v}")
        spg = (ds.get("subjects_per_group") or {}).get(attr)
        if isinstance(spg, dict) and not withheld:  # manifest counts; with withheld subjects they cover more people
            got = {r["group"]: int(r["subjects"]) for _, r in pg[(pg["attribute"] == attr) & (pg["metric"] == "FTA") & (pg["group"] != ALL_GROUP)].iterrows()}
            if {str(k): v for k, v in spg.items()} != got:
                diffs.append(f"dataset.subjects_per_group.{attr} is {spg}, but the per_group FTA rows give {got}")
        eer = _json_table(m["eer"])
        for _, r in eer[eer["attribute"] == attr].iterrows():
            sel = pg[(pg["attribute"] == attr) & (pg["group"] == r["group"])]
            for metric, col in (("FNMR", "n_mated"), ("FMR", "n_nonmated")):
                ns = {int(x) for x in sel.loc[sel["metric"] == metric, "comparisons"]}
                if ns and ns != {int(r[col])}:
                    diffs.append(f"eer {attr}/{r['group']} {col} is {int(r[col])}, but per_group {metric} rows count {sorted(ns)}")
    return _result("dataset counts", diffs, "images, subjects, acquired images, mated / non-mated comparisons and eer counts agree with the per-group counts")


def _check_protocol(run: RunFolder) -> Check:
    """The published protocol values follow from the recorded config: attributes (the
    config's, or the dataset's, then the intersections), target FMRs, confidence, seed, and
    each threshold's bootstrap rule (fixed, or re-calibrated when calibrated on all data)."""
    m = run.metrics
    cfg = run.protocol_config
    diffs = []
    if cfg:
        base = cfg.get("attributes") or list((m["dataset"].get("subjects_per_group") or {}).keys())
        inter = cfg.get("intersections") or []
        if isinstance(base, list) and isinstance(inter, list) and all(isinstance(c, list) for c in inter):
            expected = [str(a) for a in base] + ["&".join(str(a) for a in c) for c in inter]
            if sorted(expected) != sorted(run.attributes):
                diffs.append(f"protocol.attributes {run.attributes} do not follow from the config (expected {expected})")
        else:
            diffs.append(f"config protocol.attributes / intersections are not lists: {str(base)[:60]} / {str(inter)[:60]}")
        for key in ("target_fmrs", "confidence", "seed"):
            if key in cfg and key in m["protocol"] and m["protocol"][key] != cfg[key]:
                diffs.append(f"protocol.{key} is {str(m['protocol'][key])[:60]}, but the recorded config says {str(cfg[key])[:60]}")
    boot_recal = not isinstance(cfg.get("calibration_group"), dict)
    for t in m["thresholds"]:
        if t["status"] != "ok" or "bootstrap" not in t:
            continue
        want = "recalibrated" if t["kind"] == "target_fmr" and boot_recal else "fixed"
        if t["bootstrap"] != want:
            diffs.append(f"threshold {t['name']}: bootstrap {str(t['bootstrap'])[:40]!r}, but a {t['kind']} threshold"
                         f"{' calibrated on all data' if t['kind'] == 'target_fmr' and boot_recal else ''} is {want!r} (metrics-reference §5.4)")
    return _result("protocol", diffs, "attributes, target FMRs, confidence, seed and bootstrap rules follow from the recorded config")


def _check_suppression(run: RunFolder) -> tuple[Check, dict[str, list[str]]]:
    m = run.metrics
    supp = m["suppression"]
    min_subjects = int(supp["min_group_subjects"])
    stored_small = {a: sorted(g) for a, g in supp["groups_shown_as_counts_only"].items() if g}
    pg = _json_table(m["per_group"])
    fta = pg[pg["metric"] == "FTA"]
    small: dict[str, list[str]] = {}
    for attr in run.attributes:
        rows = fta[(fta["attribute"] == attr) & (fta["group"] != ALL_GROUP)]
        groups = sorted(rows.loc[rows["subjects"] < min_subjects, "group"].tolist())
        if groups:
            small[attr] = groups
    diffs = []
    if small != stored_small:
        diffs.append(f"groups shown as counts only: stored {stored_small}, expected {small} (groups with < {min_subjects} subjects)")
    configured = ((run.config.get("report") or {}) if isinstance(run.config.get("report"), dict) else {}).get("min_group_subjects")
    if configured is not None and configured != min_subjects:
        diffs.append(f"suppression.min_group_subjects is {min_subjects}, but the recorded config report.min_group_subjects is {configured!r}")
    return _result("suppression", diffs, f"min_group_subjects {min_subjects}; counts only: {small or 'none'}"), small


def _check_privacy(run: RunFolder) -> Check:
    """The privacy record equals what the recorded config asked for, and the folder agrees."""
    privacy = run.metrics.get("privacy")
    exported_file = (run.path / "embeddings.npz").exists()
    report_cfg = run.config.get("report") if isinstance(run.config.get("report"), dict) else {}
    asked = report_cfg.get("export_embeddings")
    if not isinstance(privacy, dict):
        return Check("privacy", "mismatch", "metrics.json has no privacy record (embeddings_exported)")
    flag = privacy["embeddings_exported"]
    diffs = []
    if exported_file and not flag:
        diffs.append("embeddings.npz is in the folder but metrics.json records no export (a stale export of another run?)")
    if asked is not None and bool(asked) != flag:
        diffs.append(f"privacy.embeddings_exported is {flag}, but the recorded config report.export_embeddings is {asked!r}")
    if flag != (privacy.get("warning") is not None):
        diffs.append(f"privacy.embeddings_exported is {flag} but the export warning is {'absent' if flag else 'present'}")
    return _result("privacy", diffs, f"embeddings exported: {flag} (config report.export_embeddings: {asked!r}); export file present: {exported_file}")


def _check_model(run: RunFolder) -> Check:
    return check_model(run.metrics["model"], run.config.get("model") if isinstance(run.config.get("model"), dict) else {}, run.metrics["thresholds"])


def _check_weights(run: RunFolder) -> Check:
    return check_weights(run.metrics["model"])


#: Largest synthetic population (images x dimension) verify regenerates to check its manifest hash.
_MAX_SYNTHETIC_VALUES = 5e7


def _dataset_loaders() -> dict[str, Any]:
    """The dataset loaders verify may call, keyed by their recorded ``_target_`` string (plain lookup, no import by name)."""
    from bench.data.frl_london import load_frl_london
    from bench.data.synthetic import SyntheticPopulation

    from bench.data.cfd import load_cfd
    from bench.data.fhibe import load_fhibe

    return {"bench.data.frl_london.load_frl_london": load_frl_london, "bench.data.synthetic.SyntheticPopulation": SyntheticPopulation,
            "bench.data.fhibe.load_fhibe": load_fhibe, "bench.data.cfd.load_cfd": load_cfd}  # issue #14


def _plain(value: Any) -> bool:
    """JSON scalars, and lists/dicts of them, with no ``_target_`` anywhere."""
    if isinstance(value, dict):
        return "_target_" not in value and all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def _check_dataset(run: RunFolder, dataset_root: Path | None) -> Check:
    stored = run.metrics["dataset"].get("manifest_sha256")
    ds_cfg = run.config.get("dataset") if isinstance(run.config.get("dataset"), dict) else {}
    loader = ds_cfg.get("loader")
    if not isinstance(stored, str):
        return Check("dataset", "skipped", "metrics.json records no dataset.manifest_sha256")
    if not isinstance(loader, dict) or not isinstance(loader.get("_target_"), str):
        return Check("dataset", "skipped", "the recorded config has no dataset.loader to rebuild the manifest from")
    loaders = _dataset_loaders()
    target = loader["_target_"]
    if target not in loaders:
        return Check("dataset", "skipped", f"dataset loader {target[:80]!r} is not one this package can rebuild ({sorted(loaders)}); nothing named by the folder is imported")
    kwargs = {k: v for k, v in loader.items() if k != "_target_"}
    if not _plain(kwargs) or any("${" in str(v) for v in kwargs.values() if isinstance(v, str)):
        return Check("dataset", "mismatch", f"dataset.loader arguments are not plain values (nested _target_ or an unresolved ${{...}}): {str(kwargs)[:120]}")
    if target.endswith("SyntheticPopulation"):  # bounded before generating: a folder must not make verify allocate without limit
        groups = kwargs.get("groups") if isinstance(kwargs.get("groups"), dict) else {}
        try:
            scale = float(kwargs.get("subjects_scale", 1.0))
            size = sum(float(g.get("subjects", 0)) * float(g.get("images_per_subject", 1)) for g in groups.values() if isinstance(g, dict)) * scale
            size *= float(kwargs.get("dim", 1))
        except (TypeError, ValueError):
            return Check("dataset", "mismatch", "dataset.loader of the synthetic population has non-numeric sizes")
        if not math.isfinite(size) or size > _MAX_SYNTHETIC_VALUES:
            return Check("dataset", "skipped", f"the recorded synthetic population has {size:.3g} embedding values, more than verify "
                         f"rebuilds ({_MAX_SYNTHETIC_VALUES:.0e})")
    if target.endswith(("load_fhibe", "load_cfd")):  # issue #14: same rules as London below (plain keywords, --dataset-root)
        import inspect

        known = set(inspect.signature(loaders[target]).parameters) - {"check_files"}
        if set(kwargs) - known:
            return Check("dataset", "mismatch", f"dataset.loader has argument(s) {sorted(set(kwargs) - known)} that {target.rsplit('.', 1)[1]} does not take")
        root = Path(dataset_root) if dataset_root is not None else Path(str(kwargs.get("root", ""))).expanduser()
        if not root.is_dir():
            return Check("dataset", "skipped", f"dataset root {str(root)!r} not found; pass --dataset-root to verify the manifest hash")
        kwargs["root"] = str(root)
    if target.endswith("load_frl_london"):
        if set(kwargs) - {"root", "views"}:
            return Check("dataset", "mismatch", f"dataset.loader has argument(s) {sorted(set(kwargs) - {'root', 'views'})} that load_frl_london does not take")
        root = Path(dataset_root) if dataset_root is not None else Path(str(kwargs.get("root", ""))).expanduser()
        if not root.is_dir():
            return Check("dataset", "skipped", f"dataset root {str(root)!r} not found (relative paths are relative to the current directory); "
                         "pass --dataset-root to verify the manifest hash")
        kwargs["root"] = str(root)
        if "views" in kwargs:
            kwargs["views"] = tuple(kwargs["views"])
    try:
        built = loaders[target](**kwargs)
        manifest = built.generate()[0] if hasattr(built, "generate") else built
        digest = manifest.content_hash()
    except (BenchError, TypeError, ValueError) as err:
        return Check("dataset", "mismatch", f"the dataset no longer loads from the recorded loader values: {str(err)[:200]}")
    if digest != stored:
        return Check("dataset", "mismatch", f"manifest SHA-256 stored {stored}, recomputed {digest} ({len(manifest.table)} images)")
    return Check("dataset", "ok", f"manifest SHA-256 {digest} ({len(manifest.table)} images)")


def _check_provenance(metrics: dict) -> Check:
    from bench.report.provenance import code_version, package_versions

    stored = metrics.get("provenance") if isinstance(metrics.get("provenance"), dict) else {}
    notes = []
    code_then = stored.get("code") if isinstance(stored.get("code"), dict) else {}
    code_now = code_version()
    for k in ("fvbench", "git_commit", "git_dirty"):
        if code_then.get(k) != code_now.get(k):
            notes.append(f"code {k}: recorded {code_then.get(k)!r}, now {code_now.get(k)!r}")
    pk_then = stored.get("packages") if isinstance(stored.get("packages"), dict) else {}
    pk_now = package_versions()
    for k in sorted(set(pk_then) | set(pk_now)):
        if pk_then.get(k) != pk_now.get(k):
            notes.append(f"package {k}: recorded {str(pk_then.get(k))[:40]!r}, now {pk_now.get(k)!r}")
    if notes:
        return Check("provenance", "info", "recomputed with different code or packages:\n" + "\n".join(notes[:_MAX_LISTED]))
    return Check("provenance", "info", "same code version and package versions as recorded")


# ----------------------------------------------------------------------------- thresholds
def _thresholds_from_scores(comp: pd.DataFrame, stored: list[dict], model: dict, protocol: dict, rtol: float) -> tuple[Check, dict[str, float], dict[str, float]]:
    """Recompute every stored threshold from the non-mated scores (metrics-reference §0).

    Returns the check, the usable thresholds (name -> value) and the names -> target FMR
    of those the bootstrap re-calibrates.
    """
    diffs: list[str] = []
    usable: dict[str, float] = {}
    recalibrate: dict[str, float] = {}
    external = protocol.get("external_thresholds") or {}
    names = [t["name"] for t in stored]
    expected_names = _expected_threshold_names(model, protocol)
    if protocol and names != expected_names:
        diffs.append(f"threshold names {names} do not follow from the config (expected {expected_names})")
    nonmated = ~comp["mated"].to_numpy(dtype=bool)
    score = comp["score"].to_numpy(dtype=np.float64)
    cal = protocol.get("calibration_group")
    if isinstance(cal, dict):
        attr, group = str(cal.get("attribute")), str(cal.get("group"))
        if f"{attr}_a" not in comp.columns:
            return Check("thresholds", "mismatch", f"protocol.calibration_group names attribute {attr!r}, which scores.parquet does not carry"), usable, recalibrate
        sel = nonmated & (comp[f"{attr}_a"].astype(str) == group).to_numpy() & (comp[f"{attr}_b"].astype(str) == group).to_numpy()
        calib = score[sel]
    else:
        calib = score[nonmated]
    for t in stored:
        name, kind = t["name"], t["kind"]
        if kind in ("nominal", "external"):
            expect = model.get("nominal_threshold") if kind == "nominal" else (external.get(name) if isinstance(external, dict) else None)
            if expect is None or not _same_cell(t.get("threshold"), expect, rtol):
                diffs.append(f"{name}: threshold {t.get('threshold')!r}, but the {'model' if kind == 'nominal' else 'config'} gives {expect!r}")
            if t["status"] == "ok" and expect is not None:
                usable[name] = float(expect)
            continue
        target = float(t["target_fmr"])
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r = threshold_at_fmr(calib, target)
        except InsufficientDataError as err:
            if t["status"] != "refused":
                diffs.append(f"{name}: stored as set, but the scores refuse it ({err})")
            continue
        if t["status"] != "ok":
            diffs.append(f"{name}: stored as {t['status']!r}, but the scores set it at {r.threshold!r}")
            continue
        for col, value in (("threshold", r.threshold), ("achieved_fmr", r.achieved_fmr), ("k", r.k), ("n_nonmated", r.n_nonmated), ("support", r.support)):
            if not _same_cell(t.get(col), value, rtol):
                diffs.append(f"{name} {col}: stored {t.get(col)!r}, recomputed {value!r}")
        got_warnings = sorted({str(w.message) for w in caught})
        if sorted(str(w) for w in (t.get("warnings") or [])) != got_warnings:
            diffs.append(f"{name} warnings: stored {t.get('warnings', [])!r}, recomputed {got_warnings!r}")
        usable[name] = float(r.threshold)
        if t.get("bootstrap") == "recalibrated":
            recalibrate[name] = target
    return _result("thresholds", diffs, f"{len(stored)} threshold(s) recomputed from the scores: {names}"), usable, recalibrate


def _threshold_statements(run: RunFolder) -> tuple[Check, dict[str, float]]:
    """What the published counts establish about the thresholds (no score table).

    Names follow from the config; nominal/external values equal the model's/config's;
    for a calibrated threshold ``N`` (the calibration population) equals the published
    non-mated count, ``k`` is the largest integer with ``k/N <= target`` (§0), the
    achieved FMR is a whole number of false matches ``<= k`` equal to the per-group
    ``(all)`` (or calibration group's) FMR errors at that threshold, the support follows
    the rule of 30, and a refused target is one ``N`` cannot resolve (``N < 1/target``).
    The threshold values themselves need the scores.
    """
    m = run.metrics
    model, protocol = m["model"], run.protocol_config
    external = protocol.get("external_thresholds") or {}
    pg = _json_table(m["per_group"])
    diffs, usable = [], {}
    names = [t["name"] for t in m["thresholds"]]
    expected_names = _expected_threshold_names(model, protocol)
    if protocol and names != expected_names:
        diffs.append(f"threshold names {names} do not follow from the config (expected {expected_names})")
    cal = protocol.get("calibration_group") if isinstance(protocol.get("calibration_group"), dict) else None
    for t in m["thresholds"]:
        name, kind = t["name"], t["kind"]
        if t["status"] == "ok":
            usable[name] = float(t["threshold"])
        if kind in ("nominal", "external"):
            expect = model.get("nominal_threshold") if kind == "nominal" else (external.get(name) if isinstance(external, dict) else None)
            if expect is None or not _same_cell(t.get("threshold"), expect, 1e-12):
                diffs.append(f"{name}: threshold {t.get('threshold')!r}, but the {'model' if kind == 'nominal' else 'config'} gives {expect!r}")
            continue
        target = float(t["target_fmr"])
        if cal:
            sel = pg[(pg["attribute"] == str(cal.get("attribute"))) & (pg["group"] == str(cal.get("group"))) & (pg["metric"] == "FMR")]
        else:
            sel = pg[(pg["group"] == ALL_GROUP) & (pg["metric"] == "FMR")]
        ns = sorted({int(x) for x in sel["comparisons"]})
        if len(ns) != 1:
            diffs.append(f"{name}: the per-group FMR rows of the calibration population count {ns} comparisons; expected one number")
            continue
        n = ns[0]
        if t["status"] != "ok":
            if _supports(n, target, 1.0):
                diffs.append(f"{name}: stored as {t['status']!r}, but N={n} non-mated comparisons resolve target {target:g} (>= 1/target)")
            continue
        if not _supports(n, target, 1.0):
            diffs.append(f"{name}: stored as set, but N={n} non-mated comparisons cannot resolve target {target:g} (fewer than 1/target)")
            continue
        k = _allowed_false_matches(target, n)
        if t["n_nonmated"] != n or t["k"] != k:
            diffs.append(f"{name}: stored N={t['n_nonmated']}, k={t['k']}; the counts give N={n}, k={k} (largest k with k/N <= {target:g})")
        fm = float(t["achieved_fmr"]) * n
        if abs(fm - round(fm)) > 1e-6 * max(1.0, fm) or round(fm) > k:
            diffs.append(f"{name}: achieved FMR {t['achieved_fmr']!r} is {fm:.6g} false matches of N={n}; expected a whole number <= k={k}")
        for _, r in sel[sel["threshold_name"] == name].iterrows():
            if not pd.isna(r["errors"]) and int(r["errors"]) != round(fm):
                diffs.append(f"{name}: achieved FMR gives {round(fm)} false matches, but per_group {r['attribute']}/{r['group']} FMR at {name} has {int(r['errors'])}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            support = _threshold_support(n, target)
        if t.get("support") != support:
            diffs.append(f"{name}: support {t.get('support')!r}, but N={n} against 30/target = {30 / target:g} gives {support!r} (rule of 30)")
        stored_warnings = [str(w) for w in (t.get("warnings") or [])] if isinstance(t.get("warnings"), list) else []
        missing = [str(w.message) for w in caught if str(w.message) not in stored_warnings]
        if missing:
            diffs.append(f"{name}: the rule-of-30 warning is not recorded: {missing[0][:120]!r}")
    for _, r in pg[pg["metric"] != "FTA"].iterrows():
        if r["threshold_name"] not in usable:
            diffs.append(f"per_group {r['attribute']}/{r['group']}/{r['metric']}: threshold {r['threshold_name']!r} is not a usable threshold")
            break
    return _result("thresholds", diffs, f"{len(names)} threshold(s): names, nominal values, N, k, achieved FMR and support follow from the counts"
                   "; calibrated threshold values: " + NEEDS_SCORES), usable


def _check_primary(run: RunFolder, usable: dict[str, float]) -> tuple[Check, str | None]:
    primary = _primary(run.metrics["thresholds"], usable)
    stored = run.metrics["protocol"].get("primary_threshold")
    if primary != stored:
        return Check("primary_threshold", "mismatch", f"stored {stored!r}, but the first usable calibrated threshold is {primary!r}"), primary
    return Check("primary_threshold", "ok", f"{primary!r}: the first usable calibrated threshold"), primary


# ----------------------------------------------------------------------------- cross-group matrix from counts
def _cross_from_counts(run: RunFolder, attr: str, primary: str | None, usable: dict[str, float], small: dict[str, list[str]]) -> pd.DataFrame:
    """The published matrix rows recomputed from their counts: threshold name/value of the
    primary threshold, ``fmr = false_matches / comparisons``, suppression of counts-only groups."""
    c = _json_table(run.metrics["cross_group_fmr"][attr])
    out = c[["group_a", "group_b", "comparisons"]].copy()
    out.insert(0, "threshold", usable.get(primary, np.nan) if primary else np.nan)
    out.insert(0, "threshold_name", primary or "")
    fm = pd.to_numeric(c.get("false_matches"), errors="coerce") if "false_matches" in c else pd.Series(np.nan, index=c.index)
    n = out["comparisons"].to_numpy(dtype=np.int64)
    out["false_matches"] = fm.astype(object)
    out["fmr"] = np.where(n > 0, fm.fillna(0).to_numpy() / np.maximum(n, 1), np.nan)
    hide = out["group_a"].isin(small.get(attr, [])) | out["group_b"].isin(small.get(attr, []))
    out.loc[hide, ["fmr", "false_matches"]] = np.nan
    out.loc[~hide & fm.isna(), "false_matches"] = "a count (the cell is not of a counts-only group)"
    return out


def _cross_consistency(run: RunFolder, attr: str, primary: str | None, small: dict[str, list[str]]) -> list[str]:
    """Matrix cells vs per-group FMR at the primary threshold: the diagonal is the per-group
    FMR (same comparisons and errors); the cells sum to all non-mated comparisons and, with no
    suppressed cell, to the (all) false matches; every unordered pair of groups appears once."""
    c = _json_table(run.metrics["cross_group_fmr"][attr])
    pg = _json_table(run.metrics["per_group"])
    fmr = pg[(pg["attribute"] == attr) & (pg["metric"] == "FMR") & (pg["threshold_name"] == (primary or ""))]
    diffs = []
    groups = sorted(set(fmr["group"]) - {ALL_GROUP})
    pairs = {(r["group_a"], r["group_b"]) for _, r in c.iterrows()}
    want = {(a, b) for a in groups for b in groups}
    if pairs != want:
        diffs.append(f"cells {sorted(pairs ^ want)[:4]} differ from the pairs of the groups {groups}")
    cell = {(r["group_a"], r["group_b"]): r for _, r in c.iterrows()}
    for (a, b), r in cell.items():  # the matrix is symmetric: unordered pairs of subjects
        o = cell.get((b, a))
        if a < b and o is not None and (int(o["comparisons"]) != int(r["comparisons"]) or not _same_cell(o.get("false_matches"), r.get("false_matches"), 0.0)):
            diffs.append(f"{a}/{b} and {b}/{a} differ ({_str(r.get('false_matches'))}/{int(r['comparisons'])} vs {_str(o.get('false_matches'))}/{int(o['comparisons'])})")
    c = c[c["group_a"] <= c["group_b"]]
    for _, r in fmr[fmr["group"] != ALL_GROUP].iterrows():
        cell = c[(c["group_a"] == r["group"]) & (c["group_b"] == r["group"])]
        if len(cell) != 1:
            continue
        cell = cell.iloc[0]
        if int(cell["comparisons"]) != int(r["comparisons"]):
            diffs.append(f"{r['group']}/{r['group']} comparisons {int(cell['comparisons'])}, but per_group FMR at {primary} counts {int(r['comparisons'])}")
        if not pd.isna(r["errors"]) and _as_float(cell.get("false_matches")) is not None and not _same_cell(cell.get("false_matches"), r["errors"], 0.0):
            diffs.append(f"{r['group']}/{r['group']} false matches {_str(cell.get('false_matches'))}, but per_group FMR at {primary} has {int(r['errors'])}")
    total = fmr[fmr["group"] == ALL_GROUP]
    if len(total) == 1:
        n_all = int(c["comparisons"].sum())
        if n_all != int(total.iloc[0]["comparisons"]):
            diffs.append(f"cells hold {n_all} comparisons, but per_group (all) FMR at {primary} counts {int(total.iloc[0]['comparisons'])}")
        fm = pd.to_numeric(c.get("false_matches"), errors="coerce")
        if not fm.isna().any() and int(fm.sum()) != int(total.iloc[0]["errors"]):
            diffs.append(f"cells hold {int(fm.sum())} false matches, but per_group (all) FMR at {primary} has {int(total.iloc[0]['errors'])}")
        elif fm.isna().any() and int(fm.fillna(0).sum()) > int(total.iloc[0]["errors"]):
            diffs.append(f"visible cells hold {int(fm.fillna(0).sum())} false matches, more than the (all) {int(total.iloc[0]['errors'])}")
    return diffs


# ----------------------------------------------------------------------------- differentials
def _differential_rows(rates_by_attr: dict[str, pd.DataFrame], attributes: list[str], usable: dict[str, float], protocol: Any,
                       reps_by_attr: dict[str, Any], small: dict[str, list[str]], redraw: bool) -> pd.DataFrame:
    from bench.run import _differentials  # the pipeline's own §4 summary of the per-group rates

    parts = [_differentials(rates_by_attr[a], a, usable, protocol, reps_by_attr.get(a)) for a in attributes]
    diff = _suppress_differentials(pd.concat(parts, ignore_index=True), small)
    if not redraw:
        diff = diff.drop(columns=[c for c in diff.columns if c.startswith("boot_") or c in ("n_replicates", "n_undefined", "includes_parity")])
    return diff


def _differentials_from_counts(diff: pd.DataFrame, stored: pd.DataFrame, rates_by_attr: dict[str, pd.DataFrame], attributes: list[str],
                               usable: dict[str, float], protocol: Any, small: dict[str, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Differentials of a published folder, where counts-only groups publish no error count.

    The measures are recomputed twice, with every counts-only group's errors at 0 and at
    their maximum (= comparisons). Rows equal in both do not depend on the unpublished
    counts and are compared; the others are left out (their number is returned), except
    the ``max_vs_min_group_difference`` rows, whose value is ``rate(max_group) -
    rate(min_group)`` of two published groups and is checked as such.

    Returns the expected rows, the stored rows to compare them with, and the number left out.
    """
    high = {}
    for a, r in rates_by_attr.items():
        r = r.copy()
        hit = r["group"].isin(small.get(a, []))
        r.loc[hit, "errors"] = r.loc[hit, "comparisons"]
        r.loc[hit, "rate"] = np.where(r.loc[hit, "comparisons"] > 0, 1.0, np.nan)
        high[a] = r
    other = _differential_rows(high, attributes, usable, protocol, {}, small, False).set_index(_DIFF_KEY)
    base = diff.set_index(_DIFF_KEY)
    cols = [c for c in base.columns if c in other.columns]
    same = [k for k in base.index if k in other.index and all(_same_cell(base.at[k, c], other.at[k, c], 1e-12) for c in cols)]
    keep = set(same)
    extreme = stored[stored["measure"].str.endswith("_max_vs_min_group_difference")]
    checked_extreme = []
    for _, r in extreme.iterrows():
        k = tuple(r[c] for c in _DIFF_KEY)
        if k in keep:
            continue
        metric = r["measure"].split("_", 1)[0]
        rates = rates_by_attr.get(r["attribute"])
        gmax, gmin = _str(r.get("max_group")), _str(r.get("min_group"))
        if rates is None or not gmax or gmax in small.get(r["attribute"], []) or gmin in small.get(r["attribute"], []):
            continue
        sel = rates[(rates["metric"] == metric) & (rates["threshold_name"] == r["threshold_name"])].set_index("group")["rate"]
        if gmax in sel.index and gmin in sel.index:
            checked_extreme.append({"attribute": r["attribute"], "threshold_name": r["threshold_name"], "measure": r["measure"],
                                    "value": float(sel[gmax] - sel[gmin]), "max_group": gmax, "min_group": gmin, "groups": f"{gmax};{gmin}"})
    expected = diff[[tuple(k) in keep for k in diff[_DIFF_KEY].itertuples(index=False)]]
    if checked_extreme:
        ext = pd.DataFrame(checked_extreme)
        ext_cols = [*_DIFF_KEY, "value", "max_group", "min_group", "groups"]
        expected_ext = ext[ext_cols]
        stored_keys = {tuple(x) for x in expected_ext[_DIFF_KEY].itertuples(index=False)}
        # compared separately (fewer columns): appended as rows with the stored values of the other columns
        st = stored.set_index(_DIFF_KEY)
        filled = []
        for _, e in expected_ext.iterrows():
            row = st.loc[tuple(e[c] for c in _DIFF_KEY)].to_dict()
            row.update({c: e[c] for c in ext_cols})
            filled.append(row)
        expected = pd.concat([expected, pd.DataFrame(filled).reindex(columns=expected.columns)], ignore_index=True)
        keep |= stored_keys
    stored_kept = stored[[tuple(k) in keep for k in stored[_DIFF_KEY].itertuples(index=False)]]
    return expected, stored_kept, len(stored) - len(stored_kept)


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
    title = f"{m['model']['name']} on {m['dataset']['name']}"
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
    from bench.verify_identification import is_identification_run, verify_identification_run

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
        # per group (+ bootstrap)
        from bench.metrics.bootstrap import bootstrap_group_rates, bootstrap_overall_rates, bootstrap_replicates, with_overall_rows

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
            overall = bootstrap_overall_rates(comp, thresholds=usable, n_replicates=int(protocol.bootstrap_replicates), seed=int(protocol.seed),
                                              confidence=confidence, recalibrate=recalibrate or None)
        for attr in attributes:
            parts.append(_rows_from_counts(fta_stored[fta_stored["attribute"] == attr], confidence, {}))
            if not usable:
                continue
            rates = per_group_rates(comp, attribute=attr, thresholds=usable, confidence=confidence)
            if redraw:
                reps = bootstrap_replicates(comp, attribute=attr, thresholds=usable, n_replicates=int(protocol.bootstrap_replicates), seed=int(protocol.seed),
                                            recalibrate=recalibrate or None)
                boot = with_overall_rows(bootstrap_group_rates(None, attribute=attr, thresholds=usable, confidence=confidence, replicates=reps), overall)
                rates = rates.merge(boot, on=_PER_GROUP_KEY, how="left")
                reps_by_attr[attr] = reps
            rates_by_attr[attr] = rates
            parts.append(rates)
        expected_pg = pd.concat(parts, ignore_index=True)
        eer = _suppress(_eer_rows(comp, attributes), small, _EER_VALUES, flag=False)
        from bench.run import _eer_table

        _, dets = _eer_table(comp, attributes)
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
            c = cross_group_fmr(run.scores, attribute=attr, threshold=usable[primary])
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
    diffs = []
    for name, value in (("mated_comparisons", int(mated.sum())), ("nonmated_comparisons", int((~mated).sum()))):
        if ds.get(name) != value:
            diffs.append(f"dataset.{name}: stored {ds.get(name)!r}, scores.parquet has {value}")
    if not sampled:
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
    return _result("scores", diffs, f"{len(comp)} comparisons ({int(mated.sum())} mated); acquired images per group agree with the FTA counts"
                   + (" (images not checked: non-mated pairs were sampled)" if sampled else ""))


def _table_checks(name: str, expected: pd.DataFrame, stored: pd.DataFrame, run: RunFolder, *, key: Sequence[str], rtol: float,
                  csv: str | None = None, note: str = "", stored_csv: pd.DataFrame | None = None) -> list[Check]:
    """Compare a recomputed table with its copy in metrics.json and its CSV file."""
    csv = csv or f"{name}.csv"
    out = [_table_check(name, *_compare_tables(expected, stored, key=key, rtol=rtol, json_side=True), len(expected), note)]
    table = run.csv[csv] if stored_csv is None else stored_csv
    out.append(_table_check(csv, *_compare_tables(expected, table, key=key, rtol=rtol), len(expected), note))
    return out


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

    Returns the checks, the :class:`~bench.run_streaming.StreamedScores` (None if the file
    is unusable) and the DET curves per (attribute, group).
    """
    from bench.metrics.histogram import ScoreHistogram
    from bench.run_streaming import StreamedScores, _eer_table, _triu_cells

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
    a, b, _ = _triu_cells(len(joint))
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
    _, dets = _eer_table(scores)
    return checks, scores, dets


# ----------------------------------------------------------------------------- entry point
def verify_main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``fvbench-verify FOLDER [options]``; returns the exit status.

    Exit status: 0 verified, 1 mismatch, 2 folder unreadable (one line on stderr), 3 a
    check was skipped and ``--require-all`` was given.
    """
    parser = argparse.ArgumentParser(
        prog="fvbench-verify",
        description="Check every published number of a result folder (run, sweep, calibration or power) against the data it "
        "derives from, without running anything the folder names; non-zero exit status on any mismatch.",
    )
    parser.add_argument("run_dir", help="result folder, e.g. results/frl_london_dlib")
    parser.add_argument("--dataset-root", default=None, help="where the dataset is now, if not at the recorded root")
    parser.add_argument("--skip-dataset", action="store_true", help="do not rebuild the manifest")
    parser.add_argument("--skip-weights", action="store_true", help="do not compare the weights hashes with the registry")
    parser.add_argument("--skip-bootstrap", action="store_true", help="do not re-draw the subject bootstrap")
    parser.add_argument("--skip-figures", action="store_true", help="do not re-render the figures to compare them")
    parser.add_argument("--require-all", action="store_true", help="exit 3 if any check had to be skipped")
    parser.add_argument("--rtol", type=float, default=1e-9, help="relative tolerance of float comparisons (default 1e-9)")
    parser.add_argument("--dataset-metadata", default=None, metavar="NEWER.csv",
                        help="a newer release's metadata (FHIBE fhibe_face_crop_align.csv): flag a result computed on a release since revised")
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
