"""Recomputation helpers of the run verifier: rates and intervals from counts, thresholds,
cross-group matrices and differentials from the verified per-group rows.

The §4 summary is the pipeline's own (:func:`bench.metrics.differentials_table.differentials_table`),
so a run and its verification cannot disagree by construction of two implementations.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError, InsufficientDataError
from bench.metrics.groups import ALL_GROUP
from bench.metrics.intervals import clopper_pearson_interval, wilson_interval, zero_error_upper_bound
from bench.metrics.rates import _allowed_false_matches, _supports, _threshold_support, equal_error_rate, threshold_at_fmr
from bench.verify_core import (
    Check, _as_float, _json_table, _result, _same_cell, _str,
)
from bench.verify_folder import NEEDS_SCORES, RunFolder, _DIFF_KEY, _EER_KEY, _EER_VALUES, _GEN_KEY, _GEN_RATES, _PER_GROUP_KEY

log = logging.getLogger(__name__)


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
    from bench.protocol.verification import Protocol

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
    from bench.protocol.verification import fmr_threshold_name

    names = []
    if protocol.get("use_nominal_threshold", True) and model.get("nominal_threshold") is not None:
        names.append("nominal")
    external = protocol.get("external_thresholds") or {}
    if isinstance(external, dict) and external:
        names += [str(n) for n in external]
    else:
        names += [fmr_threshold_name(float(f)) for f in (protocol.get("target_fmrs") or []) if isinstance(f, (int, float))]
    return names


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
    from bench.metrics.differentials_table import differentials_table  # the pipeline's own §4 summary of the per-group rates

    parts = [differentials_table(rates_by_attr[a], a, usable, protocol, reps_by_attr.get(a)) for a in attributes]
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
