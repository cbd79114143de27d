"""A run folder as the verifier reads it, and the checks every run folder gets.

:class:`RunFolder` / :func:`load_run_folder` read ``metrics.json``, the CSV tables and
what score data is present (``scores.parquet`` or ``histograms.npz``) as untrusted data
(:mod:`bench.verify_core`); the folder checks here (CSV vs JSON, dataset counts,
protocol, suppression, privacy, model, weights, dataset, provenance) do not depend on
which score store produced the run. Used by :mod:`bench.verify` and
:mod:`bench.verify_identification`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError, DataError
from bench.metrics.groups import ALL_GROUP
from bench.verify_core import (
    Bool, Check, Dict, Int, List, Number, OptInt, OptNumber, OptStr, Str, _MAX_LISTED, _compare_tables, _json_table, _result, check_model, check_weights, folder_file, read_csv, read_json, require, require_row_fields,
)

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
    from bench.synthetic.generator import SyntheticPopulation

    from bench.data.cfd import load_cfd
    from bench.data.fhibe import load_fhibe

    return {"bench.data.frl_london.load_frl_london": load_frl_london, "bench.synthetic.generator.SyntheticPopulation": SyntheticPopulation,
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
