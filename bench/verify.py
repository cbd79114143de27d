"""``fvbench-verify results/<run>``: recompute a published run and report any mismatch.

A result folder (:mod:`bench.report.writer`) records what it was computed from:
the dataset manifest's SHA-256, the model weights' SHA-256, the resolved config,
and the comparison-score table ``scores.parquet``. :func:`verify_run` checks that
these still agree with each other and with every published number (a run of the
streaming engine has no score table: it is verified from its ``histograms.npz`` by
:mod:`bench.verify_streaming`, which says what that can and cannot establish):

``scores``
    ``scores.parquet`` is a valid comparison table (finite scores, boolean
    ``mated``) whose mated / non-mated / acquired-image counts equal those in
    ``metrics.json``.
``thresholds``
    Every calibrated threshold is recomputed from the non-mated scores (all, or
    the ``protocol.calibration_group``'s) by the order-statistic rule
    (metrics-reference §0; :func:`bench.metrics.rates.threshold_at_fmr`); refused
    targets must still be refused; nominal and external thresholds must equal the
    model's / the config's; the list of thresholds must follow from the config.
``fta``
    The acquired images per group (attempted - failed, from the stored FTA counts)
    agree with the images present in the score table. (Failed images are not in
    the score table, so FTA counts themselves are inputs, not recomputed.)
``per_group`` / ``per_group.csv``
    FTA rates and intervals from the stored counts; FMR and FNMR per group at every
    threshold (:func:`bench.metrics.groups.per_group_rates`); when the run has
    them, the subject-bootstrap intervals re-drawn with the recorded seed
    (:mod:`bench.metrics.bootstrap`); small groups suppressed; compared cell by
    cell with ``metrics.json`` and the CSV.
``generalized_rates``, ``differentials`` (and their CSVs)
    FTA folded into the rates (ISO FAR/FRR, NIST convention; the numbers of
    comparisons lost to FTA are inputs taken from the stored table), and the
    differential measures with their bootstrap intervals.
``eer`` / ``eer.csv``, ``cross_group_fmr[<attribute>]`` / its CSV
    The EER table (:func:`bench.metrics.rates.equal_error_rate`) and the
    cross-group FMR matrices at the primary threshold.
``suppression``
    The groups published as counts only are exactly those with fewer than
    ``min_group_subjects`` subjects (their rates, error counts, reasons,
    lost-comparison and false-match counts blank, as the writer publishes them).
``privacy``
    An ``embeddings.npz`` in the folder must be recorded as exported in
    ``metrics.json`` (else it is a stale export of another run).
``dataset``
    When the dataset is available: the manifest is rebuilt from the recorded
    loader config and its :meth:`~bench.data.manifest.Manifest.content_hash`
    compared with ``dataset.manifest_sha256``.
``weights``
    When the model is available: the embedder is built from the recorded config
    and its weight files' SHA-256 compared with ``model.weights_sha256``.
``provenance``
    Information only: code version and package versions now vs. recorded.

Float cells are compared with a relative tolerance (default 1e-9: CSV cells carry
10 significant digits); integers and strings exactly. Configs stored in a result
folder are instantiated only through :func:`bench.cli.instantiate_bench`
(``bench.*`` objects only), so a tampered ``metrics.json`` cannot run other code.

Exit status of :func:`verify_main`: 0 every check passed (some may be skipped),
1 at least one mismatch, 2 the run folder cannot be read, 3 (``--require-all``
only) no mismatch but a check was skipped.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.report.folder import MANIFEST_FILE, read_file_manifest
from bench.errors import BenchError, DataError, InsufficientDataError, WeightsError
from bench.metrics.groups import ALL_GROUP, cross_group_fmr, per_group_rates, validate_comparisons
from bench.metrics.intervals import clopper_pearson_interval, wilson_interval, zero_error_upper_bound
from bench.metrics.rates import equal_error_rate, threshold_at_fmr

__all__ = ["Check", "VerifyReport", "verify_run", "verify_main", "CHECK_STATUSES"]

log = logging.getLogger(__name__)

#: ``ok``: recomputed and equal; ``mismatch``: recomputed and different (exit 1);
#: ``skipped``: could not be recomputed here (dataset or model unavailable);
#: ``info``: reported, never a failure (e.g. package versions changed).
CHECK_STATUSES = ("ok", "mismatch", "skipped", "info")

SUPPORTED_SCHEMA_VERSIONS = (1,)

_RATE_COLUMNS = ["rate", "wilson_low", "wilson_high", "cp_low", "cp_high", "upper_bound_95", "boot_low", "boot_high"]
_PER_GROUP_KEY = ["attribute", "group", "threshold_name", "metric"]
_EER_KEY = ["attribute", "group"]
_EER_VALUES = ["eer", "threshold", "eer_low", "eer_high", "eer_crossing"]
_GEN_KEY = ["attribute", "group", "threshold_name"]
_GEN_RATES = ["fta", "fmr", "fnmr", "far_iso", "frr_iso", "fnmr_nist", "fmr_nist"]
_DIFF_KEY = ["attribute", "threshold_name", "measure"]
_CROSS_KEY = ["group_a", "group_b"]
_MAX_LISTED = 8


@dataclass(frozen=True)
class Check:
    """Outcome of one verification.

    Attributes
    ----------
    name : str
        What was checked, e.g. ``"per_group.csv"`` or ``"dataset"``.
    status : str
        One of :data:`CHECK_STATUSES`.
    detail : str
        What was compared, or the first differences (cell, stored, recomputed).
    """

    name: str
    status: str
    detail: str = ""


@dataclass
class VerifyReport:
    """All checks of one run folder.

    Attributes
    ----------
    run_dir : pathlib.Path
    checks : list of Check
    """

    run_dir: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def mismatches(self) -> list[Check]:
        """Checks whose recomputation differs from what the run stored."""
        return [c for c in self.checks if c.status == "mismatch"]

    @property
    def skipped(self) -> list[Check]:
        """Checks that could not be run here."""
        return [c for c in self.checks if c.status == "skipped"]

    @property
    def ok(self) -> bool:
        """True when no check found a mismatch."""
        return not self.mismatches

    def status(self, name: str) -> str:
        """Status of the check called ``name`` (KeyError if there is none)."""
        for c in self.checks:
            if c.name == name:
                return c.status
        raise KeyError(f"no check named {name!r}; checks: {[c.name for c in self.checks]}")

    def to_text(self) -> str:
        """Human-readable summary, one line per check (details indented)."""
        lines = [f"fvbench-verify {self.run_dir}"]
        for c in self.checks:
            lines.append(f"  [{c.status:8}] {c.name}")
            for d in c.detail.splitlines():
                lines.append(f"             {d}")
        n_bad = len(self.mismatches)
        verdict = "OK" if self.ok else f"MISMATCH in {n_bad} check(s)"
        if self.skipped:
            verdict += f" ({len(self.skipped)} skipped)"
        lines.append(verdict)
        return "\n".join(lines)


# ----------------------------------------------------------------------------- comparison helpers
def _as_float(x: Any) -> float | None:
    """Float value of a cell (None / '' / NA -> NaN); None if the cell is not numeric."""
    if x is None or x is pd.NA or (isinstance(x, str) and x.strip() == ""):
        return math.nan
    if isinstance(x, (bool, np.bool_)):
        return float(x)
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _same_cell(a: Any, b: Any, rtol: float) -> bool:
    """Equal as numbers (integers exactly, NaN == NaN, floats within ``rtol``) or as strings."""
    x, y = _as_float(a), _as_float(b)
    if x is None or y is None:
        return _str(a) == _str(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if x.is_integer() and y.is_integer():
        return x == y
    return math.isclose(x, y, rel_tol=rtol, abs_tol=rtol * 1e-3)


def _str(x: Any) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x)


def _key(row: pd.Series | dict, cols: Sequence[str]) -> tuple[str, ...]:
    return tuple(_str(row[c]) for c in cols)


def _compare_tables(expected: pd.DataFrame, stored: pd.DataFrame, *, key: Sequence[str], rtol: float, json_side: bool = False) -> tuple[list[str], list[str]]:
    """Cell-by-cell differences between a recomputed and a stored table.

    Rows are matched on ``key``; every column of ``expected`` must be in ``stored``
    and equal (:func:`_same_cell`). With ``json_side`` the stored table comes from
    ``metrics.json``, which writes every non-finite number (NaN, +/-inf) as null.

    Returns
    -------
    diffs : list of str
        ``"<key> <column>: stored X, recomputed Y"`` lines, plus missing/extra rows.
    unverified : list of str
        Stored columns that were not recomputed (reported, not compared).
    """
    missing_cols = [c for c in expected.columns if c not in stored.columns]
    if missing_cols:
        return [f"stored table lacks column(s) {missing_cols}"], []
    unverified = [c for c in stored.columns if c not in expected.columns]
    values = [c for c in expected.columns if c not in key]
    exp = {_key(r, key): r for _, r in expected.iterrows()}
    sto: dict[tuple[str, ...], pd.Series] = {}
    diffs: list[str] = []
    for _, r in stored.iterrows():
        k = _key(r, key)
        if k in sto:
            diffs.append(f"{'/'.join(k)}: duplicate row")
        sto[k] = r
    diffs += [f"{'/'.join(k)}: row missing from the stored table" for k in exp if k not in sto]
    diffs += [f"{'/'.join(k)}: stored row that the scores do not produce" for k in sto if k not in exp]
    for k, e in exp.items():
        if k not in sto:
            continue
        s = sto[k]
        name = "/".join(x for x in k if x)
        for c in values:
            ev = e[c]
            if json_side and isinstance(ev, (float, np.floating)) and not math.isfinite(float(ev)):
                ev = math.nan
            if not _same_cell(s[c], ev, rtol):
                diffs.append(f"{name} {c}: stored {_str(s[c])!r}, recomputed {_str(e[c])!r}")
    return diffs, unverified


def _table_check(name: str, diffs: list[str], unverified: list[str], n_rows: int) -> Check:
    if diffs:
        shown = diffs[:_MAX_LISTED]
        more = f"\n... and {len(diffs) - len(shown)} more" if len(diffs) > len(shown) else ""
        return Check(name, "mismatch", "\n".join(shown) + more)
    detail = f"{n_rows} rows equal"
    if unverified:
        detail += f"; column(s) not recomputed: {unverified}"
    return Check(name, "ok", detail)


def _read_csv(path: Path) -> pd.DataFrame:
    text = {c: str for c in ("attribute", "group", "group_a", "group_b", "threshold_name", "metric", "measure", "flag", "reasons", "groups", "max_group", "min_group", "warnings", "excluded_groups", "zero_rule")}
    df = pd.read_csv(path, dtype=text, keep_default_na=False, na_values=[""])
    for c in ("attribute", "group", "group_a", "group_b", "threshold_name", "metric", "measure"):
        if c in df:
            df[c] = df[c].map(_str)
    return df


# ----------------------------------------------------------------------------- recomputation
def _calibration_scores(comp: pd.DataFrame, calibration_group: dict | None) -> np.ndarray:
    """Non-mated scores the target-FMR thresholds are calibrated on (all, or one group's)."""
    nonmated = ~comp["mated"].to_numpy(dtype=bool)
    score = comp["score"].to_numpy(dtype=np.float64)
    if not calibration_group:
        return score[nonmated]
    attr, group = str(calibration_group["attribute"]), str(calibration_group["group"])
    if f"{attr}_a" not in comp.columns:
        raise DataError(f"protocol.calibration_group names attribute {attr!r}, which scores.parquet does not carry")
    sel = nonmated & (comp[f"{attr}_a"].astype(str) == group).to_numpy() & (comp[f"{attr}_b"].astype(str) == group).to_numpy()
    return score[sel]


def _recompute_thresholds(comp: pd.DataFrame, stored: list[dict], model: dict, protocol: dict, rtol: float) -> tuple[Check, dict[str, float], dict[str, float]]:
    """Recompute every stored threshold.

    Returns
    -------
    check : Check
    usable : dict
        name -> threshold of every threshold that could be set (recomputed values).
    recalibrate : dict
        name -> target FMR of the thresholds the bootstrap re-calibrates.
    """
    from bench.run import fmr_threshold_name

    diffs: list[str] = []
    usable: dict[str, float] = {}
    recalibrate: dict[str, float] = {}
    external = protocol.get("external_thresholds") or {}
    expected_names = []
    if protocol.get("use_nominal_threshold", True) and model.get("nominal_threshold") is not None:
        expected_names.append("nominal")
    expected_names += [str(n) for n in external] if external else [fmr_threshold_name(float(f)) for f in protocol.get("target_fmrs", [])]
    names = [str(t.get("name")) for t in stored]
    if protocol and names != expected_names:
        diffs.append(f"threshold names {names} do not follow from the config (expected {expected_names})")
    try:
        calib = _calibration_scores(comp, protocol.get("calibration_group"))
    except DataError as err:
        return Check("thresholds", "mismatch", str(err)), usable, recalibrate
    for t in stored:
        name = str(t.get("name", "?"))
        kind = t.get("kind")
        if kind in ("nominal", "external"):
            expect = model.get("nominal_threshold") if kind == "nominal" else external.get(name)
            if expect is None or not _same_cell(t.get("threshold"), expect, rtol):
                diffs.append(f"{name}: threshold {t.get('threshold')!r}, but the {'model' if kind == 'nominal' else 'config'} gives {expect!r}")
            if t.get("status", "ok") == "ok" and expect is not None:
                usable[name] = float(expect)
            continue
        target = float(t["target_fmr"])
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r = threshold_at_fmr(calib, target)
        except InsufficientDataError as err:
            if t.get("status") != "refused":
                diffs.append(f"{name}: stored as set, but the scores refuse it ({err})")
            continue
        if t.get("status") != "ok":
            diffs.append(f"{name}: stored as {t.get('status')!r}, but the scores set it at {r.threshold!r}")
            continue
        for col, value in (("threshold", r.threshold), ("achieved_fmr", r.achieved_fmr), ("k", r.k), ("n_nonmated", r.n_nonmated), ("support", r.support)):
            if not _same_cell(t.get(col), value, rtol):
                diffs.append(f"{name} {col}: stored {t.get(col)!r}, recomputed {value!r}")
        got_warnings = sorted({str(w.message) for w in caught})
        if sorted(t.get("warnings", [])) != got_warnings:
            diffs.append(f"{name} warnings: stored {t.get('warnings', [])!r}, recomputed {got_warnings!r}")
        usable[name] = float(r.threshold)
        if t.get("bootstrap") == "recalibrated":
            recalibrate[name] = target
    if diffs:
        return Check("thresholds", "mismatch", "\n".join(diffs)), usable, recalibrate
    return Check("thresholds", "ok", f"{len(stored)} threshold(s) equal: {names}"), usable, recalibrate


def _primary(stored: list[dict], usable: dict[str, float]) -> str | None:
    """Name of the headline threshold: the first calibrated one set, else the first set."""
    ok = [t for t in stored if t.get("status") == "ok" and t["name"] in usable]
    calibrated = [t for t in ok if t.get("kind") == "target_fmr"]
    chosen = calibrated or ok
    return chosen[0]["name"] if chosen else None


def _fta_rows(stored_rows: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """FTA rows with rates, intervals and flags recomputed from their stored counts
    (as :func:`bench.metrics.fta.fta_by_group` computes them)."""
    cols = ["attribute", "group", "threshold_name", "threshold", "metric", "errors", "comparisons", "subjects", "reasons"]
    fta = stored_rows.loc[stored_rows["metric"] == "FTA", cols].copy().reset_index(drop=True)
    if fta.empty:
        return fta
    # counts-only groups publish no error count; their rates are blanked again afterwards
    e = pd.to_numeric(fta["errors"], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    n = fta["comparisons"].to_numpy(dtype=np.int64)
    w_lo, w_hi = wilson_interval(e, n, confidence=confidence)
    c_lo, c_hi = clopper_pearson_interval(e, n, confidence=confidence)
    return fta.assign(
        threshold=np.nan,
        rate=np.where(n > 0, e / np.maximum(n, 1), np.nan),
        wilson_low=w_lo,
        wilson_high=w_hi,
        cp_low=c_lo,
        cp_high=c_hi,
        upper_bound_95=np.where((e == 0) & (n > 0), zero_error_upper_bound(np.maximum(n, 1)), np.nan),
        flag=np.where(n == 0, "no_comparisons", np.where(e == 0, "zero_errors", np.where(e < 30, "low_precision", ""))),
    )


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
    """FTA folded into FMR/FNMR (metrics-reference §1.2): ISO transaction rates
    ``FAR = FMR (1 - FTA)``, ``FRR = FTA + FNMR (1 - FTA)`` and the NIST convention
    ``FNMR_nist = (FNM + lost mated) / (mated + lost mated)``,
    ``FMR_nist = FM / (non-mated + lost non-mated)``. The lost counts (comparisons an
    FTA removed) depend on which subjects failed, so they are taken from ``stored``."""
    pg = per_group.set_index(_PER_GROUP_KEY)
    rows = []
    for _, s in stored.iterrows():
        attr, g, name = str(s["attribute"]), str(s["group"]), str(s["threshold_name"])
        try:
            f = float(pg.loc[(attr, g, "", "FTA"), "rate"])
            fm = pg.loc[(attr, g, name, "FMR")]
            fnm = pg.loc[(attr, g, name, "FNMR")]
        except KeyError:
            continue  # reported as a stored row the scores do not produce
        if pd.isna(s["lost_mated"]) or pd.isna(s["lost_nonmated"]):  # counts-only group: not published
            lm = ln = 0
        else:
            lm, ln = int(s["lost_mated"]), int(s["lost_nonmated"])
        fmr, fnmr = float(fm["rate"]), float(fnm["rate"])
        n_m, n_n = int(fnm["comparisons"]), int(fm["comparisons"])
        rows.append(
            {
                "attribute": attr, "group": g, "threshold_name": name, "fta": f, "fmr": fmr, "fnmr": fnmr,
                "far_iso": fmr * (1 - f), "frr_iso": f + fnmr * (1 - f),
                "fnmr_nist": (int(fnm["errors"]) + lm) / (n_m + lm) if n_m + lm else np.nan,
                "fmr_nist": int(fm["errors"]) / (n_n + ln) if n_n + ln else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=[*_GEN_KEY, *_GEN_RATES])


def _suppress(df: pd.DataFrame, small: dict[str, list[str]], cols: Sequence[str], *, flag: bool) -> pd.DataFrame:
    """Blank ``cols`` of the rows of groups published as counts only."""
    df = df.copy()
    cols = [c for c in cols if c in df.columns]
    for c in cols:
        if pd.api.types.is_integer_dtype(df[c]):
            df[c] = df[c].astype("float64")
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
    """The :class:`bench.run.Protocol` of the recorded config, or None if it no longer builds."""
    from bench.run import Protocol

    try:
        return Protocol(**protocol_cfg)
    except (TypeError, BenchError) as err:
        log.warning("recorded protocol config does not build a Protocol here (%s)", err)
        return None


# ----------------------------------------------------------------------------- dataset / weights
def _instantiate(node: dict) -> Any:
    """Build a recorded ``_target_`` node through :func:`bench.cli.instantiate_bench`.

    Raises the fvbench error a constructor raised (Hydra wraps it), or
    :class:`~bench.errors.DataError` for any other failure to build it.
    """
    from hydra.errors import InstantiationException
    from omegaconf import OmegaConf

    from bench.cli import instantiate_bench  # the single, bench.*-only instantiation path

    try:
        return instantiate_bench(OmegaConf.create(node))
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, BenchError):
            raise cause from None
        raise DataError(f"cannot build {node.get('_target_')!r} from the recorded config: {cause or err}") from err


def _check_dataset(metrics: dict, dataset_root: Path | None) -> Check:
    stored = metrics.get("dataset", {}).get("manifest_sha256")
    loader = ((metrics.get("config") or {}).get("dataset") or {}).get("loader")
    if not stored:
        return Check("dataset", "skipped", "metrics.json records no dataset.manifest_sha256")
    if not isinstance(loader, dict) or "_target_" not in loader:
        return Check("dataset", "skipped", "the recorded config has no dataset.loader to rebuild the manifest from")
    loader = dict(loader)
    if "root" in loader:
        root = Path(dataset_root) if dataset_root is not None else Path(str(loader["root"])).expanduser()
        if not root.is_dir():
            return Check(
                "dataset",
                "skipped",
                f"dataset root {str(root)!r} not found (relative paths are relative to the current directory); "
                "pass --dataset-root to verify the manifest hash",
            )
        loader["root"] = str(root)
    try:
        built = _instantiate(loader)
        manifest = built.generate()[0] if hasattr(built, "generate") else built
        digest = manifest.content_hash()
    except BenchError as err:
        return Check("dataset", "mismatch", f"the dataset no longer loads from the recorded config: {err}")
    if digest != stored:
        return Check("dataset", "mismatch", f"manifest SHA-256 stored {stored}, recomputed {digest} ({len(manifest.table)} images)")
    return Check("dataset", "ok", f"manifest SHA-256 {digest} ({len(manifest.table)} images)")


def _check_weights(metrics: dict) -> Check:
    model = metrics.get("model", {})
    stored = model.get("weights_sha256")
    embedder = ((metrics.get("config") or {}).get("model") or {}).get("embedder")
    if stored is None and embedder is None:
        return Check("weights", "ok", "no model weights (embeddings generated, not learned)")
    if not isinstance(embedder, dict) or "_target_" not in embedder:
        return Check("weights", "skipped", "the recorded config has no model.embedder to rebuild the model from")
    node = dict(embedder)
    try:
        from hydra.utils import get_object

        params = inspect.signature(get_object(str(node["_target_"]))).parameters
    except (ImportError, ValueError, TypeError, AttributeError) as err:
        return Check("weights", "skipped", f"model {node['_target_']!r} is not available here: {err}")
    if "verify_weights" in params:
        node["verify_weights"] = False  # hash whatever is installed; the comparison is below
    if node.get("cache_dir") == "${paths.cache_dir}":  # runtime path left out of the recorded config
        from bench.models.weights import cache_root

        node["cache_dir"] = str(cache_root(None))
    try:
        built = _instantiate(node)
    except WeightsError as err:
        return Check("weights", "skipped", f"model weights not available: {err}")
    except BenchError as err:
        return Check("weights", "mismatch", f"the model no longer builds from the recorded config: {err}")
    now = getattr(built, "weights_sha256", None)
    if now != stored:
        return Check("weights", "mismatch", f"weights SHA-256 stored {stored}, installed {now}")
    return Check("weights", "ok", f"weights SHA-256 equal: {now}")


def _check_provenance(metrics: dict) -> Check:
    from bench.report.provenance import code_version, package_versions

    stored = metrics.get("provenance", {})
    notes = []
    code_then, code_now = stored.get("code", {}), code_version()
    for k in ("fvbench", "git_commit", "git_dirty"):
        if code_then.get(k) != code_now.get(k):
            notes.append(f"code {k}: recorded {code_then.get(k)!r}, now {code_now.get(k)!r}")
    pk_then, pk_now = stored.get("packages", {}), package_versions()
    for k in sorted(set(pk_then) | set(pk_now)):
        if pk_then.get(k) != pk_now.get(k):
            notes.append(f"package {k}: recorded {pk_then.get(k)!r}, now {pk_now.get(k)!r}")
    if notes:
        return Check("provenance", "info", "recomputed with different code or packages:\n" + "\n".join(notes))
    return Check("provenance", "info", "same code version and package versions as recorded")


# ----------------------------------------------------------------------------- main entry
def _load(run_dir: Path) -> tuple[dict, pd.DataFrame | None]:
    """metrics.json and scores.parquet; None for the scores of a streamed run (verified from its histograms)."""
    metrics_path = run_dir / "metrics.json"
    scores_path = run_dir / "scores.parquet"
    if not run_dir.is_dir():
        raise DataError(f"run folder {str(run_dir)!r} does not exist")
    if not metrics_path.is_file():
        raise DataError(f"{str(metrics_path)!r} not found: not an fvbench result folder")
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{str(metrics_path)!r} is not valid JSON: {err}") from err
    if not isinstance(metrics, dict) or metrics.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
        got = metrics.get("schema_version") if isinstance(metrics, dict) else type(metrics).__name__
        raise DataError(f"{str(metrics_path)!r}: schema_version {got!r} is not supported; expected one of {list(SUPPORTED_SCHEMA_VERSIONS)}")
    for key in ("dataset", "model", "protocol", "thresholds", "per_group", "eer", "cross_group_fmr", "suppression"):
        if key not in metrics:
            raise DataError(f"{str(metrics_path)!r} lacks the key {key!r}")
    if (metrics.get("engine") or {}).get("engine") == "stream":
        return metrics, None  # no score table by design: bench.verify_streaming
    if not scores_path.is_file():
        raise DataError(
            f"{str(scores_path)!r} not found: the score table is needed to recompute the metrics "
            "(runs with report.save_scores=false cannot be verified)"
        )
    try:
        scores = pd.read_parquet(scores_path)
    except (OSError, ValueError) as err:
        raise DataError(f"{str(scores_path)!r} cannot be read as a parquet table: {err}") from err
    return metrics, scores


def verify_run(
    run_dir: str | Path,
    *,
    dataset_root: str | Path | None = None,
    check_dataset: bool = True,
    check_weights: bool = True,
    check_bootstrap: bool = True,
    rtol: float = 1e-9,
) -> VerifyReport:
    """Recompute a run's hashes and metrics and compare them with what it stored.

    Parameters
    ----------
    run_dir : path
        A result folder written by :func:`bench.report.writer.write_results`
        (``metrics.json``, ``scores.parquet`` and the CSV tables).
    dataset_root : path, optional
        Where the dataset lives now, if not at the recorded ``root``.
    check_dataset, check_weights : bool
        Rebuild the manifest / the model to compare their hashes (skipped, not
        failed, when the data or weights are absent).
    check_bootstrap : bool
        Re-draw the subject bootstrap (same seed and replicate count) to check its
        intervals; costs about as much as the run's own bootstrap.
    rtol : float
        Relative tolerance of float comparisons.

    Returns
    -------
    VerifyReport
        One :class:`Check` per area (module docstring); ``report.ok`` is False
        when anything differs.

    Raises
    ------
    DataError
        If the folder lacks ``metrics.json`` or ``scores.parquet``, or they cannot
        be parsed.
    """
    from bench.metrics.bootstrap import bootstrap_group_rates, bootstrap_overall_rates, bootstrap_replicates, with_overall_rows
    from bench.report.plots import safe_name

    run_dir = Path(run_dir)
    from bench.verify_identification import is_identification_run, verify_identification_run

    if is_identification_run(run_dir):  # 1:N run (issue 13): recomputed from its stored searches
        return verify_identification_run(run_dir, dataset_root=dataset_root, check_dataset=check_dataset, check_weights=check_weights,
                                         check_bootstrap=check_bootstrap, rtol=rtol)
    metrics, comp = _load(run_dir)
    report = VerifyReport(run_dir=run_dir)
    checks = report.checks
    problems, listed = read_file_manifest(run_dir)  # report.md, figures: unchanged and all of one run
    checks.append(
        Check("files", "mismatch", "\n".join(problems)) if problems
        else Check("files", "ok", f"{len(listed)} published files match {MANIFEST_FILE}")
    )
    if comp is None:  # streaming engine: no score table, verified from histograms.npz
        from bench.verify_streaming import verify_streamed

        verify_streamed(run_dir, metrics, report, rtol=rtol)
        checks.append(_check_dataset(metrics, None if dataset_root is None else Path(dataset_root)) if check_dataset else Check("dataset", "skipped", "not requested"))
        checks.append(_check_weights(metrics) if check_weights else Check("weights", "skipped", "not requested"))
        checks.append(_check_provenance(metrics))
        return report
    config = metrics.get("config") or {}
    protocol_cfg = dict(config.get("protocol") or {})
    attributes = [str(a) for a in (metrics["protocol"].get("attributes") or [])]
    confidence = float(metrics["protocol"].get("confidence", protocol_cfg.get("confidence", 0.95)))

    # ---- scores
    try:
        validate_comparisons(comp)
        for a in attributes:
            validate_comparisons(comp, a)
    except DataError as err:
        checks.append(Check("scores", "mismatch", f"scores.parquet is not a valid comparison table: {err}"))
        return report
    if not attributes:
        checks.append(Check("scores", "mismatch", "metrics.json protocol.attributes is empty"))
        return report
    mated = comp["mated"].to_numpy(dtype=bool)
    ds = metrics["dataset"]
    sampled = protocol_cfg.get("max_nonmated") is not None or "seeded sample" in str(metrics["protocol"].get("nonmated", ""))
    diffs = []
    for name, value in (("mated_comparisons", int(mated.sum())), ("nonmated_comparisons", int((~mated).sum()))):
        if ds.get(name) != value:
            diffs.append(f"dataset.{name}: stored {ds.get(name)!r}, scores.parquet has {value}")
    n_images = _images_per_group(comp, attributes[0])[ALL_GROUP]
    if not sampled and ds.get("images_acquired") != n_images:
        diffs.append(f"dataset.images_acquired: stored {ds.get('images_acquired')!r}, scores.parquet has {n_images} images")
    checks.append(Check("scores", "mismatch", "\n".join(diffs)) if diffs else Check("scores", "ok", f"{len(comp)} comparisons ({int(mated.sum())} mated)"))

    # ---- thresholds
    th_check, usable, recalibrate = _recompute_thresholds(comp, metrics["thresholds"], metrics["model"], protocol_cfg, rtol)
    checks.append(th_check)

    # ---- suppression
    stored_pg = pd.DataFrame(metrics["per_group"])
    for c in ("attribute", "group", "threshold_name", "metric"):
        stored_pg[c] = stored_pg[c].map(_str) if c in stored_pg else ""
    supp = metrics["suppression"]
    min_subjects = int(supp.get("min_group_subjects", 0))
    stored_small = {a: sorted(g) for a, g in (supp.get("groups_shown_as_counts_only") or {}).items()}
    fta_stored = stored_pg[stored_pg["metric"] == "FTA"]
    small: dict[str, list[str]] = {}
    for attr in attributes:
        rows = fta_stored[(fta_stored["attribute"] == attr) & (fta_stored["group"] != ALL_GROUP)]
        groups = sorted(rows.loc[rows["subjects"] < min_subjects, "group"].tolist())
        if groups:
            small[attr] = groups
    if small != stored_small:
        checks.append(Check("suppression", "mismatch", f"groups shown as counts only: stored {stored_small}, expected {small} (groups with < {min_subjects} subjects)"))
    else:
        checks.append(Check("suppression", "ok", f"min_group_subjects {min_subjects}; counts only: {small or 'none'}"))

    # ---- FTA counts vs. the images in the score table
    diffs = []
    if not sampled:
        for attr in attributes:
            present = _images_per_group(comp, attr)
            rows = fta_stored[fta_stored["attribute"] == attr]
            for _, r in rows.iterrows():
                if r["group"] in small.get(attr, []):
                    continue  # counts only: the number of failures is not published
                acquired = int(r["comparisons"]) - int(r["errors"])
                if present.get(r["group"], 0) != acquired:
                    diffs.append(f"{attr}/{r['group']}: FTA counts say {acquired} acquired image(s), scores.parquet has {present.get(r['group'], 0)}")
            extra = sorted(set(present) - set(rows["group"]))
            if extra:
                diffs.append(f"{attr}: group(s) {extra} in scores.parquet have no FTA row")
    checks.append(
        Check("fta", "mismatch", "\n".join(diffs[:_MAX_LISTED]))
        if diffs
        else Check("fta", "ok", "acquired images per group agree with the score table" + (" (not checked: non-mated pairs were sampled)" if sampled else ""))
    )

    # ---- per group (+ bootstrap)
    protocol = _protocol_object(protocol_cfg)
    stored_has_boot = "boot_low" in stored_pg.columns
    redraw = stored_has_boot and check_bootstrap and protocol is not None and bool(protocol.bootstrap_replicates) and bool(usable)
    if stored_has_boot and not redraw:
        why = "not requested" if not check_bootstrap else "the recorded protocol does not rebuild here" if protocol is None else "no usable threshold"
        checks.append(Check("bootstrap", "skipped", f"bootstrap intervals not re-drawn ({why})"))
    rates_by_attr: dict[str, pd.DataFrame] = {}
    reps_by_attr: dict[str, Any] = {}
    parts = []
    overall = None  # the (all) interval, drawn once per run as the pipeline does
    if redraw:
        overall = bootstrap_overall_rates(comp, thresholds=usable, n_replicates=int(protocol.bootstrap_replicates), seed=int(protocol.seed), confidence=confidence, recalibrate=recalibrate or None)
    for attr in attributes:
        parts.append(_fta_rows(fta_stored[fta_stored["attribute"] == attr], confidence))
        if not usable:
            continue
        rates = per_group_rates(comp, attribute=attr, thresholds=usable, confidence=confidence)
        if redraw:
            reps = bootstrap_replicates(comp, attribute=attr, thresholds=usable, n_replicates=int(protocol.bootstrap_replicates), seed=int(protocol.seed), recalibrate=recalibrate or None)
            boot = with_overall_rows(bootstrap_group_rates(None, attribute=attr, thresholds=usable, confidence=confidence, replicates=reps), overall)
            rates = rates.merge(boot, on=_PER_GROUP_KEY, how="left")
            reps_by_attr[attr] = reps
        rates_by_attr[attr] = rates
        parts.append(rates)
    expected_pg = pd.concat(parts, ignore_index=True)
    expected_pg["reasons"] = expected_pg["reasons"].fillna("")
    published_pg = _suppress(expected_pg, small, [*_RATE_COLUMNS, "errors", "reasons"], flag=True)
    checks += _table_checks("per_group", published_pg, stored_pg, run_dir / "per_group.csv", key=_PER_GROUP_KEY, rtol=rtol)

    # ---- generalized rates
    if "generalized_rates" in metrics:
        stored_gen = pd.DataFrame(metrics["generalized_rates"])
        if {"lost_mated", "lost_nonmated", *_GEN_KEY} <= set(stored_gen.columns):
            gen = _suppress(_generalized_rows(expected_pg, stored_gen), small, _GEN_RATES, flag=False)
            checks += _table_checks("generalized_rates", gen, stored_gen, run_dir / "generalized_rates.csv", key=_GEN_KEY, rtol=rtol)
        else:
            checks.append(Check("generalized_rates", "mismatch", f"stored rows lack {sorted({'lost_mated', 'lost_nonmated', *_GEN_KEY} - set(stored_gen.columns))}"))

    # ---- differentials
    if "differentials" in metrics:
        try:
            from bench.run import _differentials  # the pipeline's own §4 summary of the per-group rates
        except ImportError as err:
            _differentials = None
            checks.append(Check("differentials", "skipped", f"bench.run has no differential summary here ({err})"))
        if _differentials is not None and protocol is not None and usable:
            parts = [_differentials(rates_by_attr[a], a, usable, protocol, reps_by_attr.get(a)) for a in attributes]
            diff = _suppress_differentials(pd.concat(parts, ignore_index=True), small)
            if not redraw:
                diff = diff.drop(columns=[c for c in diff.columns if c.startswith("boot_")])
            checks += _table_checks("differentials", diff, pd.DataFrame(metrics["differentials"]), run_dir / "differentials.csv", key=_DIFF_KEY, rtol=rtol)
        elif _differentials is not None:
            checks.append(Check("differentials", "skipped", "the recorded protocol does not rebuild here" if protocol is None else "no usable threshold"))

    # ---- EER
    eer = _suppress(_eer_rows(comp, attributes), small, _EER_VALUES, flag=False)
    checks += _table_checks("eer", eer, pd.DataFrame(metrics["eer"]), run_dir / "eer.csv", key=_EER_KEY, rtol=rtol)

    # ---- cross-group FMR at the primary threshold
    primary = _primary(metrics["thresholds"], usable)
    stored_primary = metrics["protocol"].get("primary_threshold")
    if primary != stored_primary:
        checks.append(Check("primary_threshold", "mismatch", f"stored {stored_primary!r}, recomputed {primary!r}"))
    for attr in attributes:
        name = f"cross_group_fmr[{attr}]"
        if primary is None:
            checks.append(Check(name, "mismatch", "no usable threshold to compute the matrix at"))
            continue
        c = cross_group_fmr(comp, attribute=attr, threshold=usable[primary])
        hide = c["group_a"].isin(small.get(attr, [])) | c["group_b"].isin(small.get(attr, []))
        c["false_matches"] = c["false_matches"].astype("float64")
        c.loc[hide, ["fmr", "false_matches"]] = np.nan
        stored_c = metrics["cross_group_fmr"].get(attr)
        checks += _table_checks(name, c, None if stored_c is None else pd.DataFrame(stored_c), run_dir / f"cross_group_fmr_{safe_name(attr)}.csv", key=_CROSS_KEY, rtol=rtol)

    # ---- privacy record vs. the folder
    exported = (run_dir / "embeddings.npz").is_file()
    privacy = metrics.get("privacy")
    if privacy is not None:
        if exported and not privacy.get("embeddings_exported"):
            checks.append(Check("privacy", "mismatch", "embeddings.npz is in the folder but metrics.json records no export (a stale export of another run?)"))
        else:
            checks.append(Check("privacy", "ok", f"embeddings exported: {bool(privacy.get('embeddings_exported'))}; export file present: {exported}"))

    # ---- hashes of the inputs
    checks.append(_check_dataset(metrics, None if dataset_root is None else Path(dataset_root)) if check_dataset else Check("dataset", "skipped", "not requested"))
    checks.append(_check_weights(metrics) if check_weights else Check("weights", "skipped", "not requested"))
    checks.append(_check_provenance(metrics))
    return report


def _table_checks(name: str, expected: pd.DataFrame, stored: pd.DataFrame | None, csv: Path, *, key: Sequence[str], rtol: float) -> list[Check]:
    """Compare a recomputed table with its copy in metrics.json and its CSV file."""
    out = []
    if stored is None:
        out.append(Check(name, "mismatch", f"metrics.json has no {name}"))
    else:
        out.append(_table_check(name, *_compare_tables(expected, stored, key=key, rtol=rtol, json_side=True), len(expected)))
    if csv.is_file():
        out.append(_table_check(csv.name, *_compare_tables(expected, _read_csv(csv), key=key, rtol=rtol), len(expected)))
    else:
        out.append(Check(csv.name, "mismatch", f"{str(csv)!r} is missing"))
    return out


def verify_main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``fvbench-verify RUN_DIR [options]``; returns the exit status.

    Exit status: 0 verified, 1 mismatch, 2 run folder unreadable, 3 a check was
    skipped and ``--require-all`` was given.
    """
    parser = argparse.ArgumentParser(
        prog="fvbench-verify",
        description="Recompute a result folder's dataset hash, weights hash and every metric from its "
        "stored score table, and report any mismatch (non-zero exit status).",
    )
    parser.add_argument("run_dir", help="result folder, e.g. results/frl_london_dlib")
    parser.add_argument("--dataset-root", default=None, help="where the dataset is now, if not at the recorded root")
    parser.add_argument("--skip-dataset", action="store_true", help="do not rebuild the manifest")
    parser.add_argument("--skip-weights", action="store_true", help="do not rebuild the model")
    parser.add_argument("--skip-bootstrap", action="store_true", help="do not re-draw the subject bootstrap")
    parser.add_argument("--require-all", action="store_true", help="exit 3 if any check had to be skipped")
    parser.add_argument("--rtol", type=float, default=1e-9, help="relative tolerance of float comparisons (default 1e-9)")
    args = parser.parse_args(argv)
    try:
        report = verify_run(
            args.run_dir,
            dataset_root=args.dataset_root,
            check_dataset=not args.skip_dataset,
            check_weights=not args.skip_weights,
            check_bootstrap=not args.skip_bootstrap,
            rtol=args.rtol,
        )
    except DataError as err:
        print(f"fvbench-verify: cannot verify {args.run_dir}: {err}", file=sys.stderr)
        return 2
    print(report.to_text())
    if not report.ok:
        return 1
    if args.require_all and report.skipped:
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(verify_main())
