"""``report.md``: the human-readable summary of a run, rendered from its published files.

The report is a **pure function of published data**: :func:`render_report` takes the
parsed ``metrics.json`` and the tidy tables (``per_group.csv``, ``eer.csv``,
``differentials.csv``, ``mitigation_per_group_thresholds.csv``) and returns the
Markdown text. Nothing else enters it (no timings, no paths, no live objects), so
anyone can re-render ``report.md`` from a published folder and compare
(:func:`render_report_from_folder`; ``fvbench-verify``). The writer renders it the
same way, from the files it has just written.

Sections are data-driven (:func:`report_sections` returns ``(id, title, markdown)``
triples) so other renderers (HTML) can reuse their order and content. Every
definition the numbers follow is in ``docs/protocol.md``, which the report cites by
section.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.report.markdown_escape import escape_raw_html  # labels are untrusted: no raw HTML in report.md

__all__ = [
    "render_report",
    "render_report_from_folder",
    "load_published_tables",
    "report_sections",
    "figure_plan",
    "format_threshold",
    "rate_cell",
    "group_table",
    "TABLE_FILES",
    "PROTOCOL_DOC",
]

#: The document every report cites for definitions, conventions and tie rules.
PROTOCOL_DOC = "docs/protocol.md"

#: Tables the report reads: key -> file in the result folder (optional ones may be absent).
TABLE_FILES = {
    "per_group": "per_group.csv",
    "eer": "eer.csv",
    "differentials": "differentials.csv",
    "mitigation": "mitigation_per_group_thresholds.csv",
}

#: Human names of the differential measures (docs/protocol.md §4) and what parity is.
_MEASURES = {
    "max_min_difference": ("max − min", "0", "§4.4"),
    "max_min_ratio": ("max / min", "1", "§4.4"),
    "max_geomean_ratio": ("max / geometric mean (NISTIR 8429)", "1", "§4.4"),
    "gini": ("Gini coefficient", "0", "§4.3"),
    "max_ratio_to_reference": ("largest ratio to the reference group", "1", "§4.4"),
    "max_vs_min_group_difference": ("worst − best group, groups held fixed", "0", "§5.4"),
    "fdr": ("FDR, fairness discrepancy rate", "1", "§4.1"),
    "inequity_rate": ("IR, inequity rate (max/min)", "1", "§4.2"),
    "inequity_rate_geomean": ("IR with max/geometric mean", "1", "§4.2"),
    "garbe": ("GARBE (Gini of FMR and FNMR)", "0", "§4.3"),
}


# ----------------------------------------------------------------------------- small helpers
def _num(x: Any) -> float:
    """A float from a table or JSON cell (None, '' and NA -> NaN)."""
    if x is None or x is pd.NA:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _txt(x: Any) -> str:
    """A string from a table or JSON cell (None and NaN -> '')."""
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x)


def _true(x: Any) -> bool:
    if isinstance(x, str):
        return x.strip().lower() == "true"
    return bool(x) if not (isinstance(x, float) and math.isnan(x)) and x is not None else False


def _g(x: float) -> str:
    """Compact number: 3 significant digits, as the tables print rates."""
    return f"{x:.3g}"


def format_threshold(t: float) -> str:
    """A threshold printed so that "match iff score ≥ t" reads true.

    Six significant digits when they are exactly ``t``; "just above x" when ``t`` is the
    next float above a short value ``x`` (the §0 rule moves a threshold just above a
    tied top score); otherwise the shortest decimal that round-trips to ``t`` (a
    rounded value could sit on the wrong side of an observed score).

    Parameters
    ----------
    t : float

    Returns
    -------
    str

    Examples
    --------
    >>> format_threshold(-0.6), format_threshold(float(np.nextafter(0.9, 1.0)))
    ('-0.6', 'just above 0.9')
    >>> format_threshold(-0.5017367781150057)
    '-0.5017367781150057'
    """
    t = _num(t)
    if not math.isfinite(t):
        return _txt(t) or "n/a"
    short = f"{t:.6g}"
    if float(short) == t:
        return short
    below = float(np.nextafter(t, -np.inf))
    if float(f"{below:.6g}") == below:
        return f"just above {below:.6g}"
    return repr(t)


def _frame(tables: dict[str, pd.DataFrame], metrics: dict, key: str, metrics_key: str | None = None) -> pd.DataFrame:
    """``tables[key]`` if given, else the rows of ``metrics[metrics_key or key]`` (empty if none)."""
    if key in tables and tables[key] is not None:
        return tables[key]
    rows = metrics.get(metrics_key or key)
    return pd.DataFrame(rows) if rows else pd.DataFrame()


# ----------------------------------------------------------------------------- cells and tables
def rate_cell(row: pd.Series) -> str:
    """One table cell: rate with its counts and interval, or the zero-error upper bound.

    ``rate (errors/comparisons) [low, high]`` with the subject-bootstrap interval when
    present (else Wilson), † when fewer than 30 errors (rule of 30); ``0/n (≤ u)`` for a
    zero-error cell (one-sided 95% upper bound u); ``(counts only)`` for a group
    published as counts only.
    """
    if _txt(row.get("flag")) == "suppressed_small_group":
        what = "images" if row.get("metric") == "FTA" else "comparisons"
        return f"(counts only) {int(_num(row['comparisons'])):,} {what}"
    n = int(_num(row["comparisons"]))
    if n == 0:
        return "no comparisons"
    e = int(_num(row["errors"]))
    if e == 0:
        return f"0/{n:,} (≤ {_num(row['upper_bound_95']):.2g})"
    lo, hi = _num(row.get("boot_low")), _num(row.get("boot_high"))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = _num(row.get("wilson_low")), _num(row.get("wilson_high"))
    mark = "" if e >= 30 else "†"
    return f"{_num(row['rate']):.3g} ({e}/{n:,}) [{lo:.2g}, {hi:.2g}]{mark}"


def group_table(per_group: pd.DataFrame, attribute: str, threshold_names: list[str]) -> str:
    """Markdown table: one row per group; FTA, then FMR and FNMR at each threshold."""
    df = per_group[per_group["attribute"] == attribute]
    groups = list(dict.fromkeys(df["group"].tolist()))
    head = ["group", "subjects", "FTA"]
    for t in threshold_names:
        head += [f"FMR @ {t}", f"FNMR @ {t}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        sel = df[df["group"] == g]
        fta = sel[sel["metric"] == "FTA"]
        subj = int(_num(fta["subjects"].iloc[0])) if len(fta) else int(np.nanmax(sel["subjects"].map(_num)))
        cells = [str(g), str(subj), rate_cell(fta.iloc[0]) if len(fta) else ""]
        for t in threshold_names:
            for m in ("FMR", "FNMR"):
                r = sel[(sel["metric"] == m) & (sel["threshold_name"] == t)]
                cells.append(rate_cell(r.iloc[0]) if len(r) else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _measure_name(measure: str) -> tuple[str, str, str]:
    """(label, parity, protocol section) of a differentials.csv measure code."""
    metric, rest = (measure.split("_", 1) if measure.startswith(("FMR_", "FNMR_")) else ("", measure))
    label, parity, sec = _MEASURES.get(rest, (rest, "", "§4"))
    return (f"{metric} {label}" if metric else label), parity, sec


def _differential_rows(diff: pd.DataFrame, attribute: str, threshold_name: str) -> tuple[list[str], list[str]]:
    """Table lines of one attribute at one threshold, and notes (suppressed measures)."""
    d = diff[(diff["attribute"] == attribute) & (diff["threshold_name"] == threshold_name)]
    lines = [
        "| measure | value | 95% bootstrap interval | parity value | interval includes parity | groups (max / min) | note |",
        "|---|---|---|---|---|---|---|",
    ]
    omitted = []
    for _, r in d.iterrows():
        code = _txt(r["measure"])
        label, parity, sec = _measure_name(code)
        if _true(r.get("suppressed", False)):
            omitted.append(f"{label} (`{code}`)")
            continue
        v = _num(r["value"])
        notes = []
        if math.isfinite(v):
            value = f"{v:.4g}"
        else:
            reason = _txt(r.get("reason")) or _reason_from_warnings(_txt(r.get("warnings")), code)
            base = code.split("_", 1)[1] if code.startswith(("FMR_", "FNMR_")) else code
            own = f"{base}: not estimable ("
            if reason.startswith(own) and reason.endswith(")") and ";" not in reason[len(own):-1].replace("; enable", ""):
                reason = reason[len(own):-1]  # the row's own measure: just the why
            value = "not estimable"
            notes.append(reason or "undefined for these rates")
        lo, hi = _num(r.get("boot_low")), _num(r.get("boot_high"))
        ci, inc = "", ""
        if math.isfinite(lo) or math.isfinite(hi):
            ci = f"[{lo:.3g}, {hi:.3g}]".replace("inf", "∞")
            inc = "yes" if _true(r.get("includes_parity")) else "no"
        und = _num(r.get("n_undefined"))
        if math.isfinite(und) and und > 0 and _num(r.get("n_replicates")) > 0:
            notes.append(f"{int(und)} of {int(und + _num(r.get('n_replicates')))} replicates undefined (dropped)")
        if code.endswith("max_vs_min_group_difference"):
            notes.append("the two groups named by the point estimate, held fixed in every replicate")
        mx, mn = _txt(r.get("max_group")), _txt(r.get("min_group"))
        groups = f"{mx} / {mn}" if mx and mn else ""
        lines.append(f"| {label} (`{code}`, {sec}) | {value} | {ci} | {parity} | {inc} | {groups} | {'; '.join(notes)} |")
    return lines, omitted


def _reason_from_warnings(warnings_text: str, code: str) -> str:
    """The "measure: not estimable (why)" entry of a differentials row's warnings, if any."""
    base = code.split("_", 1)[1] if code.startswith(("FMR_", "FNMR_")) else code
    for part in warnings_text.split(" | "):
        if part.startswith(f"{base}: not estimable"):
            return part
    return ""


# ----------------------------------------------------------------------------- figures
def figure_plan(metrics: dict, tables: dict[str, pd.DataFrame]) -> dict[str, dict[str, str | None]]:
    """Which figure files a run has, per attribute (None: not drawn, with a note instead).

    Parameters
    ----------
    metrics : dict
        Parsed ``metrics.json``.
    tables : dict
        Published tables (``eer`` used).

    Returns
    -------
    dict
        attribute -> {"det", "error_rates", "fmr_matrix", "scores"} -> file name or
        None. ``det`` is None when every group with an EER has EER 0 (the DET would
        only run along the axes; the report shows the operating points instead). All
        empty when the run's ``report.figures`` is false.
    """
    report_cfg = ((metrics.get("config") or {}).get("report") or {})
    attributes = [str(a) for a in (metrics.get("protocol") or {}).get("attributes") or []]
    if not report_cfg.get("figures", True):
        return {a: {} for a in attributes}
    eer = _frame(tables, metrics, "eer")
    out = {}
    for a in attributes:
        name = safe_name(a)
        vals = eer[eer["attribute"] == a]["eer"].map(_num).to_numpy() if len(eer) else np.zeros(0)
        vals = vals[np.isfinite(vals)]
        all_zero = vals.size > 0 and float(vals.max()) == 0.0
        out[a] = {
            "det": None if all_zero else f"det_{name}.png",
            "error_rates": f"error_rates_{name}.png",
            "fmr_matrix": f"fmr_matrix_{name}.png",
            "scores": f"scores_{name}.png",
        }
    return out


def safe_name(attribute: str) -> str:
    """File-name form of an attribute (``a&b`` -> ``a_x_b``)."""
    return attribute.replace("&", "_x_").replace("/", "_")


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Section:
    """One report section: a stable id, its title (None: no heading) and Markdown body."""

    id: str
    title: str | None
    body: str


def _doc_link(metrics: dict) -> str:
    """Relative link from ``results/<run_name>/report.md`` to the repository's protocol document."""
    depth = 2 + str(metrics.get("run_name") or "").strip("/").count("/")
    return "../" * depth + PROTOCOL_DOC


def _threshold_section(metrics: dict) -> str:
    out = [
        f"A comparison is a match iff its score ≥ the threshold t ({PROTOCOL_DOC} §0.2). Target-FMR thresholds are set by "
        f"the order-statistic rule on all non-mated comparisons, never above the target (§0.3); \"just above x\" means the "
        "next representable number above x (a tie at x was moved past).",
        "",
        "| name | kind | threshold t (match iff score ≥ t) | target FMR | achieved FMR (k / N) | note |",
        "|---|---|---|---|---|---|",
    ]
    for t in metrics.get("thresholds") or []:
        if t.get("status") != "ok":
            out.append(f"| {t['name']} | {t.get('kind', '')} | refused | {_num(t.get('target_fmr')):g} | | {_txt(t.get('reason'))} |")
        elif t.get("kind") == "nominal":
            origin = "set in the config (overrides the published value)" if t.get("overridden") else "published by the model's authors"
            out.append(f"| {t['name']} | {origin} | {format_threshold(t['threshold'])} | | | {_txt(t.get('source'))} |")
        elif t.get("kind") == "external":
            out.append(f"| {t['name']} | external (held fixed) | {format_threshold(t['threshold'])} | | | {_txt(t.get('source'))} |")
        else:
            notes = []
            if t.get("support") not in (None, "ok"):
                notes.append(f"fewer than 30/target = {30 / _num(t['target_fmr']):,.0f} non-mated comparisons: imprecise (rule of 30, §5.5)")
            if _txt(t.get("calibration_method")).startswith("binned"):
                notes.append("histogram bin edge (streaming engine)")
            cal = _txt(t.get("calibration")) or "all non-mated comparisons"
            out.append(
                f"| {t['name']} | global, calibrated on {cal} | {format_threshold(t['threshold'])} | {_num(t['target_fmr']):g} | "
                f"{_num(t['achieved_fmr']):.3g} ({int(_num(t['k'])):,} / {int(_num(t['n_nonmated'])):,}) | {'; '.join(notes)} |"
            )
    return "\n".join(out)


def _undefined_replicates(per_group: pd.DataFrame) -> list[str]:
    """Per-group rates with undefined bootstrap replicates: 'attribute/group metric @ threshold: n of B'."""
    if "n_undefined" not in per_group.columns:
        return []
    out = []
    for _, r in per_group.iterrows():
        if _txt(r.get("flag")) == "suppressed_small_group" or not _num(r.get("comparisons")) > 0:
            continue  # no published rate: nothing to resample
        u = _num(r.get("n_undefined"))
        if math.isfinite(u) and u > 0:
            total = int(u + _num(r.get("n_replicates")))
            out.append(f"{r['attribute']}/{r['group']} {r['metric']} @ {r['threshold_name']}: {int(u)} of {total}")
    return out


def _intervals_text(metrics: dict, per_group: pd.DataFrame) -> str:
    cfg = (metrics.get("config") or {}).get("protocol") or {}
    has_boot = "boot_low" in per_group.columns and per_group["boot_low"].map(_num).notna().any()
    conf = _num((metrics.get("protocol") or {}).get("confidence", 0.95))
    if has_boot:
        b = cfg.get("bootstrap_replicates")
        if b is None:  # from the table: defined + undefined replicates of any row
            counts = per_group["n_replicates"].map(_num) + (per_group["n_undefined"].map(_num) if "n_undefined" in per_group else 0)
            b = int(np.nanmax(counts.to_numpy())) if counts.notna().any() else "?"
        text = (
            f"Intervals: {conf:.0%} subject-level bootstrap ({b} replicates; {PROTOCOL_DOC} §5.2–5.4): subjects resampled "
            "within their group, subjects with and without a mated comparison resampled separately (so FNMR always has "
            "mated comparisons to draw), two-subject bootstrap for FMR, calibrated thresholds re-calibrated in each replicate. "
            "The `(all)` row has one interval per run, resampled without demographic strata, and is repeated under every "
            "attribute. Wilson and Clopper–Pearson intervals over comparisons (too narrow when comparisons share subjects, "
            "§5.1) are in per_group.csv."
        )
    else:
        text = (
            f"Intervals: {conf:.0%} Wilson over comparisons, which understate the uncertainty because comparisons sharing a "
            f"subject are correlated ({PROTOCOL_DOC} §5.1); the subject bootstrap was not run."
        )
    und = _undefined_replicates(per_group)
    if und:
        text += (
            " **Undefined bootstrap replicates** (nothing of that kind drawn; dropped, the interval uses the rest, §5.6): "
            + "; ".join(und) + "."
        )
    return text


def _eer_line(eer: pd.DataFrame, attribute: str) -> str:
    e = eer[eer["attribute"] == attribute] if len(eer) else eer
    cells = []
    for _, r in e.iterrows():
        v = _num(r.get("eer"))
        if not math.isfinite(v):
            continue
        lo, hi, cr = _num(r.get("eer_low")), _num(r.get("eer_high")), _num(r.get("eer_crossing"))
        cell = f"{r['group']}: {_g(v)}"
        if math.isfinite(lo) and math.isfinite(hi) and _g(lo) != _g(hi):
            cell += f" (FMR and FNMR {_g(lo)} and {_g(hi)} at its threshold" + (f"; the curves cross at {_g(cr)}" if math.isfinite(cr) else "") + ")"
        cells.append(cell)
    if not cells:
        return ""
    return (
        f"EER ({PROTOCOL_DOC} §1.4: bob.measure's rule, the threshold with the smallest |FMR − FNMR|, the larger one on ties; "
        "a separability descriptor, not an operating point): " + "; ".join(cells)
    )


def _operating_point_table(per_group: pd.DataFrame, attribute: str, names: list[str]) -> str:
    """FMR and FNMR (errors/comparisons) per group at each threshold: what a DET would mark."""
    df = per_group[(per_group["attribute"] == attribute) & per_group["metric"].isin(["FMR", "FNMR"])]
    head = ["group"] + [f"(FMR, FNMR) @ {n}" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    shown = df[df["flag"].map(_txt) != "suppressed_small_group"] if "flag" in df.columns else df
    for g in dict.fromkeys(shown["group"].tolist()):
        cells = [str(g)]
        for n in names:
            sel = df[(df["group"] == g) & (df["threshold_name"] == n)].set_index("metric")
            pts = []
            for m in ("FMR", "FNMR"):
                if m in sel.index and _txt(sel.loc[m].get("flag")) != "suppressed_small_group" and _num(sel.loc[m, "comparisons"]) > 0:
                    pts.append(f"{int(_num(sel.loc[m, 'errors']))}/{int(_num(sel.loc[m, 'comparisons'])):,}")
                else:
                    pts.append("–")
            cells.append(f"({pts[0]}, {pts[1]})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_DIFF_GUIDE = (
    f"How to read the differentials tables ({PROTOCOL_DOC} §4): each measure summarises how far the groups' rates are "
    "from one another at one common threshold. **value**: the measure on the observed rates. **95% bootstrap interval**: "
    "its percentile interval over the subject-bootstrap replicates (∞: a replicate divided by a zero-error group). "
    "**parity value**: what the measure would be if every group had the same rate (0 for differences and Gini-type "
    "measures, 1 for ratios, IR and FDR). **interval includes parity**: whether that value lies inside the interval. "
    "**not estimable**: the measure is undefined for these rates (the note says why: e.g. a ratio divides by a group with "
    "zero errors, unless `protocol.zero_rule: upper_bound`; a Gini of all-zero rates). "
    "**Max-type measures are biased upward**: the largest of several noisy rates overstates the largest true rate, and "
    "the smallest understates the smallest, so max − min, max/min, max/geometric mean and Gini come out above parity "
    "even when the groups do not differ, and their intervals rarely include parity (§5.4). The "
    "`max_vs_min_group_difference` rows hold the two extreme groups fixed: an interval there that includes 0 means the "
    "data do not show that these two groups differ."
)


def _limitations(metrics: dict, per_group: pd.DataFrame) -> str:
    d = metrics.get("dataset") or {}
    cfg = metrics.get("config") or {}
    dcfg = cfg.get("dataset") or {}
    supp = metrics.get("suppression") or {}
    thresholds = metrics.get("thresholds") or []
    label_source = ", ".join(d.get("label_source") or []) or "not recorded"
    synthetic = "generator" in label_source
    desc = _txt(dcfg.get("description"))
    out = []
    if synthetic:
        out.append(
            f"- **Data**: a synthetic population (`{d.get('name')}`): generated embeddings, no face image and no real person. "
            "Its groups are generator settings, so the rates describe the generator, not any population of people."
            + (f" {desc}" if desc else "")
        )
    else:
        out.append(
            f"- **Data source and capture conditions**: `{d.get('name')}`. "
            + (desc if desc else "The dataset config records no description of the capture conditions (`dataset.description`).")
            + " Rates measured under these conditions say little about other cameras, lighting, poses, ages or image quality."
        )
    images, subjects = int(_num(d.get("images"))), int(_num(d.get("subjects")))
    all_fnmr = per_group[(per_group["group"] == "(all)") & (per_group["metric"] == "FNMR")] if len(per_group) else per_group
    mated_subjects = int(_num(all_fnmr["subjects"].iloc[0])) if len(all_fnmr) else 0
    out.append(
        f"- **Images per subject**: {images:,} images of {subjects:,} subjects ({images / max(subjects, 1):.2g} per subject on average); "
        f"{int(_num(d.get('images_acquired'))):,} acquired. FNMR rests on {int(_num(d.get('mated_comparisons'))):,} mated comparisons "
        f"from {mated_subjects:,} subjects with at least two acquired images; with so few images per person it measures one "
        "kind of variation (the pair of photographs in the set), not ageing or changing conditions."
    )
    out.append(
        f"- **Labels**: {label_source} ({PROTOCOL_DOC} §6.1). fvbench never infers a demographic label; the groups are "
        "as the data record them, with their categories and any errors in them."
    )
    prov = d.get("provenance") if isinstance(d.get("provenance"), dict) else {}
    if prov:  # issue #14: release, licence and consent of a consented set (docs/datasets.md)
        bits = [f"version {_txt(prov['version'])}" if prov.get("version") else "",
                f"licence: {_txt(prov['licence'])}" if prov.get("licence") else "",
                f"consent: {_txt(prov['consent'])}" if prov.get("consent") else "",
                f"phenotype attributes: {', '.join(map(str, prov['phenotype_attributes']))}" if prov.get("phenotype_attributes") else "",
                _txt(prov.get("mated_pairs")) if prov.get("mated_pairs") else ""]
        out.append(f"- **Release**: {'; '.join(b for b in bits if b)} (docs/datasets.md).")
    low = [t["name"] for t in thresholds if t.get("status") == "ok" and t.get("support") not in (None, "ok")]
    refused = [t["name"] for t in thresholds if t.get("status") != "ok"]
    rates = per_group[per_group["metric"].isin(["FMR", "FNMR"]) & (per_group["flag"].map(_txt) != "suppressed_small_group")] if len(per_group) else per_group
    n_cells = int((rates["comparisons"].map(_num) > 0).sum()) if len(rates) else 0
    n_low = int((rates["flag"].map(_txt) == "low_precision").sum()) if len(rates) else 0
    n_zero = int((rates["flag"].map(_txt) == "zero_errors").sum()) if len(rates) else 0
    text = (
        f"- **Rule of 30** ({PROTOCOL_DOC} §5.5): of {n_cells} published FMR/FNMR cells, {n_low} have fewer than 30 errors "
        f"(†, low precision) and {n_zero} have none (only an upper bound)."
    )
    if low:
        text += f" Thresholds set on fewer than 30/target non-mated comparisons: {', '.join(low)}."
    if refused:
        text += f" Targets refused (fewer than 1/target non-mated comparisons): {', '.join(refused)}."
    out.append(text)
    withheld = int(_num(supp.get("subjects_withheld"))) if supp.get("subjects_withheld") is not None else 0
    counts_only = supp.get("groups_shown_as_counts_only") or {}
    min_subj = supp.get("min_group_subjects")
    if withheld:
        groups = "; ".join(f"{a}: {', '.join(map(str, gs))}" for a, gs in (supp.get("groups_withheld") or {}).items())
        out.append(
            f"- **Small groups** ({PROTOCOL_DOC} §6.2): {withheld} subject(s) in groups with fewer than {min_subj} subjects "
            f"({groups}) are withheld from every number; all rates describe the other subjects."
            + _mated_sentence(supp)
        )
    elif counts_only:
        groups = "; ".join(f"{a}: {', '.join(map(str, gs))}" for a, gs in counts_only.items())
        out.append(
            f"- **Small groups** ({PROTOCOL_DOC} §6.2): groups with fewer than {min_subj} subjects are shown as counts only "
            f"({groups}); differential measures leave them out."
        )
    else:
        out.append(f"- **Small groups** ({PROTOCOL_DOC} §6.2): every reported group has at least {min_subj} subject(s) "
                   "(`report.min_group_subjects`).")
    und = _undefined_replicates(per_group)
    out.append(
        f"- **What the intervals cover** ({PROTOCOL_DOC} §5): the sampling of *subjects* — another draw of people like "
        "these, photographed the same way, with thresholds re-set on them. **What they do not cover**: errors in the labels, "
        "capture conditions or populations unlike these, a different model version or pre-processing, failures to acquire "
        "(reported as FTA with their own interval, not inside FMR/FNMR), and the many comparisons made at once (groups × "
        "thresholds × measures: some interval will miss by chance). Zero-error cells have a one-sided bound only."
        + (f" {len(und)} rate(s) had undefined bootstrap replicates (listed under the per-group tables)." if und else "")
    )
    out.append(
        f"- **Per-group FMR** counts non-mated comparisons with both subjects in the group ({PROTOCOL_DOC} §2.3); "
        "comparisons across groups are in the cross-group matrix. Ranking groups whose intervals overlap is not supported."
    )
    return "\n".join(out)


def report_sections(metrics: dict, tables: dict[str, pd.DataFrame]) -> list[Section]:
    """The report's sections, in order, from published data only.

    Parameters
    ----------
    metrics : dict
        Parsed ``metrics.json`` of a run (keys of
        :data:`bench.report.writer.METRICS_SCHEMA`; older folders may lack some).
    tables : dict of str to pandas.DataFrame
        Published tables keyed as :data:`TABLE_FILES` (missing keys fall back to the
        rows stored in ``metrics``).

    Returns
    -------
    list of Section
        Ids: ``consent`` (a dataset config's consent notice, first), ``summary``, ``pairs`` (pair list read
        and written), ``weights`` (unverified weights only), ``engine`` (streamed runs), ``thresholds``, ``rates``, one
        ``attribute:<name>`` per attribute, ``fta`` (failures), ``mitigation``,
        ``withheld``, ``limitations``, ``reading``, ``provenance``.
    """
    d = metrics.get("dataset") or {}
    m = metrics.get("model") or {}
    per_group = _frame(tables, metrics, "per_group")
    eer = _frame(tables, metrics, "eer")
    diff = _frame(tables, metrics, "differentials")
    # metrics.json keeps the mitigation thresholds at full precision (the CSV at 10 digits): "score >= t" stays exact
    mitigation = pd.DataFrame(metrics["mitigation"]) if metrics.get("mitigation") else _frame(tables, metrics, "mitigation")
    protocol = metrics.get("protocol") or {}
    attributes = [str(a) for a in protocol.get("attributes") or []]
    names = [t["name"] for t in metrics.get("thresholds") or [] if t.get("status") == "ok"]
    primary = protocol.get("primary_threshold") or (names[-1] if names else "")
    figures = figure_plan(metrics, tables)
    secs: list[Section] = []

    score = "negated Euclidean distance" if m.get("metric") == "euclidean" else "cosine similarity"
    withheld = (metrics.get("suppression") or {}).get("subjects_withheld") or 0
    summary = (
        f"Model **{m.get('name')}** (score: {score}) on dataset **{d.get('name')}**: {int(_num(d.get('images'))):,} images of "
        f"{int(_num(d.get('subjects'))):,} subjects (labels: {', '.join(d.get('label_source') or []) or 'not recorded'}), "
        + (f"{int(withheld)} subject(s) of small groups withheld, " if withheld else "")
        + f"{int(_num(d.get('images_acquired'))):,} images acquired, {int(_num(d.get('mated_comparisons'))):,} mated and "
        f"{int(_num(d.get('nonmated_comparisons'))):,} non-mated comparisons. Definitions, conventions and tie rules: "
        f"[{PROTOCOL_DOC}]({_doc_link(metrics)}) (cited by section below); limitations of these numbers: see *Limitations*."
    )
    from bench.report.dataset_notice import consent_notice, pair_list_notice  # issue #14

    if consent_notice(metrics):
        secs.append(Section("consent", None, f"> **{consent_notice(metrics)}**"))
    secs.append(Section("summary", None, summary))
    if pair_list_notice(metrics):
        secs.append(Section("pairs", None, str(pair_list_notice(metrics))))
    if metrics.get("scenario"):  # issue #14: deployment scenario (bench/report/scenario.py)
        from bench.report.scenario import scenario_section

        secs.append(Section(*scenario_section(metrics)))
    if m.get("weights_verified") is False:  # bench.models.weights.weights_verification
        secs.append(Section("weights", None, (
            f"**Unverified weights:** {', '.join(f'`{n}`' for n in m.get('unverified_weights', []))} "
            "did not match a SHA-256 published in fvbench's weights registry (custom file, first-download pin, "
            "or `verify_weights=false`); these numbers describe the files whose hashes are listed under Provenance."
        )))
    eng = metrics.get("engine") or {}
    if eng.get("engine") == "stream":
        h = eng.get("histogram") or {}
        binned = [t["name"] for t in metrics.get("thresholds") or [] if _txt(t.get("calibration_method")).startswith("binned")]
        exact = ("Thresholds, error counts and bootstrap intervals are exact" if not binned and eng.get("aggregates")
                 else f"Thresholds {', '.join(binned) or 'at target FMRs'} are bin edges (within one bin width of the exact ones)")
        secs.append(Section("engine", None, (
            f"Computed by the **streaming engine** ({eng.get('selected_by')}: {int(_num(eng.get('comparisons'))):,} comparisons, table limit "
            f"{int(_num(eng.get('table_max_comparisons'))):,}): scores binned into histograms (bin width {_num(h.get('bin_width')):.3g}) and the exact top "
            f"tail of the non-mated scores kept with its subjects. {exact}; EER and DET are read from the bins (tolerances in "
            "`metrics.json` `engine`). No score table: `histograms.npz`."
        )))
    secs.append(Section("thresholds", "Thresholds", _threshold_section(metrics)))
    rates_intro = (
        "Cells: rate (errors/comparisons) [95% interval]; † fewer than 30 errors (low precision, rule of 30, "
        f"{PROTOCOL_DOC} §5.5); `0/n (≤ u)`: no errors, one-sided 95% upper bound u (§5.5). An interval whose lower end is 0 "
        "means some replicates drew no error. " + _intervals_text(metrics, per_group)
        + " Per-group FMR counts non-mated comparisons with both subjects in the group (§2.3)."
    )
    if len(diff):
        rates_intro += "\n\n" + _DIFF_GUIDE
    secs.append(Section("rates", "Per-group error rates", rates_intro))
    for attr in attributes:
        body = [group_table(per_group, attr, names)] if len(per_group) else []
        line = _eer_line(eer, attr)
        if line:
            body.append(line)
        if len(diff) and (diff["attribute"] == attr).any() and primary:
            lines, omitted = _differential_rows(diff, attr, primary)
            if len(lines) > 2:
                body.append(f"Demographic differentials at {primary}:")
                body.append("\n".join(lines))
            if omitted:
                body.append(
                    f"Differential measures left out at {primary} because they would include a group shown as counts only "
                    f"({PROTOCOL_DOC} §6.2): " + ", ".join(omitted) + "."
                )
        f = figures.get(attr) or {}
        if f:
            if f.get("det"):
                body.append(f"![DET by {attr}]({f['det']})")
            else:
                body.append(
                    f"No DET figure for {attr}: every group has EER 0 (some threshold separates all its mated from all its "
                    "non-mated scores), so each curve would run along the axes. The differentials lie in where the thresholds "
                    "fall; the operating points (errors/comparisons) that a DET would mark:"
                )
                body.append(_operating_point_table(per_group, attr, names))
            body.append(f"![Error rates by {attr}]({f['error_rates']})")
            body.append(f"![Cross-group FMR by {attr}]({f['fmr_matrix']})")
            body.append(f"![Scores by {attr}]({f['scores']})")
        secs.append(Section(f"attribute:{attr}", attr, "\n\n".join(body)))

    fta_all = per_group[(per_group["metric"] == "FTA") & (per_group["group"] == "(all)")] if len(per_group) else per_group
    if len(fta_all) and _num(fta_all["errors"].iloc[0]) > 0:
        secs.append(Section("fta", "Failures to acquire",
                            f"Reasons (all images; {PROTOCOL_DOC} §1.2): {_txt(fta_all['reasons'].iloc[0])}. Failed images take part in "
                            "no comparison; generalized_rates.csv folds them into the rates both ways (ISO and NIST conventions)."))
    if len(mitigation):
        lines = [
            "Each group at its own threshold for the target FMR, calibrated on its own non-mated comparisons "
            f"({PROTOCOL_DOC} §7). A deployed system could do this only by knowing each person's group at decision time, which "
            "may be unlawful or unacceptable. Compare with the global-threshold FNMR above.",
            "",
            "| attribute | group | target FMR | group threshold (match iff score ≥ t) | achieved FMR (k / N) | FNMR at group threshold | refused because |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, r in mitigation.iterrows():
            head = f"| {r['attribute']} | {r['group']} | {_num(r['target_fmr']):g}"
            if _txt(r.get("status")) != "ok":
                lines.append(f"{head} | refused | | | {_txt(r.get('reason'))} |")
            elif not math.isfinite(_num(r.get("threshold"))):
                lines.append(f"{head} | (counts only) | | | |")
            else:
                n_m = int(_num(r["n_mated"]))
                fn = f"{_num(r['fnmr']):.3g} ({int(_num(r['false_non_matches']))}/{n_m})" if n_m else "no mated comparisons"
                achieved = f"{_num(r['achieved_fmr']):.3g} ({int(_num(r['k']))} / {int(_num(r['n_nonmated'])):,})"
                lines.append(f"{head} | {format_threshold(r['threshold'])} | {achieved} | {fn} | |")
        secs.append(Section("mitigation", "Mitigation analysis: per-group thresholds (not an operating point)", "\n".join(lines)))

    supp = metrics.get("suppression") or {}
    if supp.get("subjects_withheld"):
        gw = supp.get("groups_withheld") or {}
        secs.append(Section("withheld", "Subjects withheld from every number", (
            f"{supp['subjects_withheld']} subject(s) ({supp.get('images_withheld', '?')} image(s)) belong to groups with fewer than "
            f"{supp.get('min_group_subjects')} subjects: "
            + "; ".join(f"{a}: " + ", ".join(f"{g} ({n})" for g, n in gs.items()) for a, gs in gw.items())
            + f". They enter no number, table or figure of this report ({PROTOCOL_DOC} §6.2), so that no one's result can be "
            "derived by subtracting published cells from a total. Subject counts in brackets are from the manifest."
            + _mated_sentence(supp)
        )))
    elif supp.get("groups_shown_as_counts_only"):
        small = supp["groups_shown_as_counts_only"]
        secs.append(Section("withheld", "Groups shown as counts only", (
            f"Groups with fewer than {supp.get('min_group_subjects')} subjects: "
            + "; ".join(f"{a}: {', '.join(map(str, g))}" for a, g in small.items())
            + f". Their rates are not published (a rate of a very small group describes individuals; {PROTOCOL_DOC} §6.2)."
        )))
    secs.append(Section("limitations", "Limitations", _limitations(metrics, per_group)))
    secs.append(Section("reading", "How to read this", "\n".join([
        "- **FMR** (false match rate): share of comparisons of two *different* people that the system wrongly accepts. "
        "A higher FMR for a group means its members are more often mistaken for one another.",
        "- **FNMR** (false non-match rate): share of comparisons of the *same* person that the system wrongly rejects.",
        "- **FTA** (failure to acquire): share of images for which no face template was produced; those images take part in no comparison.",
        "- All groups are judged at the **same global threshold** (NIST FRVT practice); differences in rates at that threshold are the demographic differentials.",
        "- **DET**: each curve traces FNMR against FMR over all thresholds for one group (log axes; lower-left is better). Markers are the operating points at the thresholds above: the same threshold lands groups at different points.",
        "- **Cross-group matrix**: FMR for pairs of people from two groups; the diagonal is the per-group FMR.",
        "- **Score distributions**: per group, where non-mated (violins) and mated (points) scores fall relative to the thresholds; a group whose non-mated scores reach past a threshold has false matches there.",
        f"- Small samples: a rate with few errors is imprecise; zero errors only bound the rate. Do not rank groups whose intervals overlap. Full definitions: [{PROTOCOL_DOC}]({_doc_link(metrics)}).",
    ])))
    ws = m.get("weights_sha256")
    if isinstance(ws, dict):
        weights = "; ".join(f"`{k}`: `{v}`" for k, v in ws.items())
    else:
        weights = f"`{ws}`"
    secs.append(Section("provenance", "Provenance", "\n".join([
        f"- dataset manifest SHA-256: `{d.get('manifest_sha256')}`",
        f"- model weights SHA-256: {weights}"
        + ("" if m.get("weights_verified") is None else f" (verified against the registry: {'yes' if m['weights_verified'] else 'no'})"),
        "- resolved config, package versions and git commit: `metrics.json`",
    ])))
    return secs


def render_report(metrics: dict, tables: dict[str, pd.DataFrame]) -> str:
    """``report.md`` text of a run, from its published data only.

    Parameters
    ----------
    metrics : dict
        Parsed ``metrics.json``.
    tables : dict of str to pandas.DataFrame
        Published tables keyed as :data:`TABLE_FILES` (read with
        :func:`load_published_tables`); a missing key falls back to ``metrics``.

    Returns
    -------
    str
        Markdown, ending with a newline. Deterministic: the same inputs give the same text.
    """
    out = [f"# fvbench result: {metrics.get('run_name')}", ""]
    for s in report_sections(metrics, tables):
        if s.title:
            level = "###" if s.id.startswith("attribute:") else "##"
            out += [f"{level} {s.title}", ""]
        out += [s.body, ""]
    return escape_raw_html("\n".join(out).rstrip("\n") + "\n")


def load_published_tables(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The tables :func:`render_report` reads, from a result folder (absent optional files skipped).

    Parameters
    ----------
    run_dir : path
        A result folder (``results/<run_name>``).

    Returns
    -------
    dict of str to pandas.DataFrame
        Keys of :data:`TABLE_FILES` whose files exist. Empty cells read as NaN.
    """
    run_dir = Path(run_dir)
    out = {}
    for key, name in TABLE_FILES.items():
        p = run_dir / name
        if p.is_file():
            out[key] = pd.read_csv(p, keep_default_na=True)
    return out


def render_report_from_folder(run_dir: str | Path) -> str:
    """Re-render ``report.md`` of a published result folder (for checks such as fvbench-verify).

    Raises
    ------
    FileNotFoundError, json.JSONDecodeError
        If ``metrics.json`` is missing or unreadable.
    """
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return render_report(metrics, load_published_tables(run_dir))


def _mated_sentence(supp: dict) -> str:
    """The withholding sentence's part on groups with too few mated contributors (counts only; docs/protocol.md §6.2)."""
    gm = supp.get("groups_withheld_mated") or {}
    if not gm:
        return ""
    return (" Also withheld: the subjects with scored mated comparisons in groups where fewer than "
            f"{supp.get('min_group_subjects')} subjects have any ("
            + "; ".join(f"{a}: " + ", ".join(f"{g} ({_num(n):.0f})" for g, n in gs.items()) for a, gs in gm.items())
            + "), since such a group's FNMR would describe those few people.")
