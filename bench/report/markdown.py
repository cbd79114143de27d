"""``report.md``: the human-readable summary of a run, with a short reading guide."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from bench.run import RunResult

__all__ = ["write_report", "render_report", "rate_cell", "group_table"]


def rate_cell(row: pd.Series) -> str:
    """One table cell: rate with its counts and interval, or the zero-error upper bound."""
    if row["flag"] == "suppressed_small_group":
        return f"(counts only) {int(row['comparisons']):,} {'images' if row['metric'] == 'FTA' else 'comparisons'}"
    if row["comparisons"] == 0:
        return "no comparisons"
    e, n = int(row["errors"]), int(row["comparisons"])
    if e == 0:
        return f"0/{n:,} (≤ {row['upper_bound_95']:.2g})"
    lo_col = "boot_low" if "boot_low" in row.index and np.isfinite(row.get("boot_low", np.nan)) else "wilson_low"
    hi_col = lo_col.replace("low", "high")
    mark = "" if e >= 30 else "†"
    return f"{row['rate']:.3g} ({e}/{n:,}) [{row[lo_col]:.2g}, {row[hi_col]:.2g}]{mark}"


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
        subj = int(fta["subjects"].iloc[0]) if len(fta) else int(sel["subjects"].max())
        cells = [g, str(subj), rate_cell(fta.iloc[0]) if len(fta) else ""]
        for t in threshold_names:
            for m in ("FMR", "FNMR"):
                r = sel[(sel["metric"] == m) & (sel["threshold_name"] == t)]
                cells.append(rate_cell(r.iloc[0]) if len(r) else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differential_table(diff: pd.DataFrame, attribute: str, threshold_name: str) -> str:
    """Markdown table of the differential measures of one attribute at one threshold."""
    d = diff[(diff["attribute"] == attribute) & (diff["threshold_name"] == threshold_name)]
    lines = ["| measure | value | 95% bootstrap interval | parity | groups (max / min) |", "|---|---|---|---|---|"]
    for _, r in d.iterrows():
        if r.get("suppressed", False):
            lines.append(f"| {r['measure']} | suppressed (includes a counts-only group) | | {r['parity_value']:g} | |")
            continue
        v = "not estimable" if not np.isfinite(r["value"]) else f"{r['value']:.4g}"
        ci = ""
        if "boot_low" in r.index and (np.isfinite(r["boot_low"]) or np.isfinite(r["boot_high"])):
            ci = f"[{r['boot_low']:.3g}, {r['boot_high']:.3g}]" + (" (includes parity)" if r.get("includes_parity") else "")
        mm = f"{r['max_group']} / {r['min_group']}" if isinstance(r.get("max_group"), str) else ""
        lines.append(f"| {r['measure']} | {v} | {ci} | {r['parity_value']:g} | {mm} |")
    return "\n".join(lines)


def write_report(path: Path, result: "RunResult", **tables) -> None:
    """Write ``report.md`` for a run (see :func:`bench.report.writer.write_results`): :func:`render_report`'s text."""
    Path(path).write_text(render_report(result, **tables))


def render_report(result: "RunResult", *, per_group: pd.DataFrame, eer: pd.DataFrame, differentials: pd.DataFrame, figures: dict,
                  mitigation: pd.DataFrame | None = None, run_name: str, small: dict, min_group_subjects: int) -> str:
    """The text of ``report.md``: a pure function of what the result folder publishes.

    ``result`` is read only for fields that ``metrics.json`` also records (``dataset_info``,
    ``model_info``, ``thresholds``, ``attributes``, ``primary_threshold``,
    ``protocol.bootstrap_replicates``, ``engine_info``), so ``fvbench-verify`` re-renders
    the report from a folder alone and compares it byte for byte; keep it that way.
    """
    d, m = result.dataset_info, result.model_info
    names = [t["name"] for t in result.thresholds if t.get("status") == "ok"]
    out = [f"# fvbench result: {run_name}", ""]
    out += [
        f"Model **{m['name']}** (score: {'negated Euclidean distance' if m['metric'] == 'euclidean' else 'cosine similarity'}) "
        f"on dataset **{d['name']}**: {d['images']:,} images of {d['subjects']:,} subjects "
        f"(labels: {', '.join(d['label_source'])}), {d['images_acquired']:,} acquired, "
        f"{d['mated_comparisons']:,} mated and {d['nonmated_comparisons']:,} non-mated comparisons.",
        "",
    ]
    if m.get("weights_verified") is False:  # bench.models.weights.weights_verification
        out += [
            f"**Unverified weights:** {', '.join(f'`{n}`' for n in m.get('unverified_weights', []))} "
            "did not match a SHA-256 published in fvbench's weights registry (custom file, first-download pin, "
            "or `verify_weights=false`); these numbers describe the files whose hashes are listed under Provenance.",
            "",
        ]
    eng = getattr(result, "engine_info", None) or {}
    if eng.get("engine") == "stream":
        h = eng["histogram"]
        binned = [t["name"] for t in result.thresholds if str(t.get("calibration_method", "")).startswith("binned")]
        exact = ("Thresholds, error counts and bootstrap intervals are exact" if not binned and eng.get("aggregates")
                 else f"Thresholds {', '.join(binned) or 'at target FMRs'} are bin edges (within one bin width of the exact ones)")
        out += [
            f"Computed by the **streaming engine** ({eng['selected_by']}: {eng['comparisons']:,} comparisons, table limit "
            f"{eng['table_max_comparisons']:,}): scores binned into histograms (bin width {h['bin_width']:.3g}) and the exact top "
            f"tail of the non-mated scores kept with its subjects. {exact}; EER and DET are read from the bins (tolerances in "
            "`metrics.json` `engine`). No score table: `histograms.npz`.",
            "",
        ]
    out += [
        "## Thresholds",
        "",
        "| name | kind | threshold | target FMR | achieved FMR (k / N) | note |",
        "|---|---|---|---|---|---|",
    ]
    for t in result.thresholds:
        if t.get("status") != "ok":
            out.append(f"| {t['name']} | {t['kind']} | refused | {t['target_fmr']:g} | | {t['reason']} |")
        elif t["kind"] == "nominal":
            out.append(f"| {t['name']} | published by the model's authors | {t['threshold']:.6g} | | | {t.get('source') or ''} |")
        else:
            note = "fewer than 30/target non-mated comparisons: threshold imprecise (rule of 30)" if t["support"] != "ok" else ""
            out.append(
                f"| {t['name']} | global, calibrated on all non-mated comparisons | {t['threshold']:.6g} | {t['target_fmr']:g} | "
                f"{t['achieved_fmr']:.3g} ({t['k']:,} / {t['n_nonmated']:,}) | {note} |"
            )
    out += ["", "## Per-group error rates", ""]
    out += [
        "Cells: rate (errors/comparisons) [95% interval]; † fewer than 30 errors (low precision, rule of 30); "
        "`0/n (≤ u)`: no errors, one-sided 95% upper bound u. "
        + (
            f"Intervals: 95% subject-level bootstrap ({result.protocol.bootstrap_replicates} replicates; subjects resampled within group, "
            "two-subject bootstrap for FMR, calibrated thresholds re-calibrated in each replicate; metrics-reference §5.2-5.4); "
            "Wilson and Clopper-Pearson intervals (comparison-level floors) are in per_group.csv. "
            if result.protocol.bootstrap_replicates
            else "Intervals: Wilson over comparisons, which understate the uncertainty because comparisons sharing a subject are correlated (metrics-reference §5.1). "
        )
        + 
        "Per-group FMR counts non-mated comparisons with both subjects in the group.",
        "",
    ]
    for attr in result.attributes:
        out += [f"### {attr}", "", group_table(per_group, attr, names), ""]
        e = eer[eer["attribute"] == attr]
        cells = [f"{r['group']}: {r['eer']:.3g}" for _, r in e.iterrows() if np.isfinite(r["eer"])]
        if cells:
            out += ["EER (bob.measure convention, minimum |FMR−FNMR|; threshold-free separability, not an operating point): " + "; ".join(cells), ""]
        primary = result.primary_threshold["name"]
        if len(differentials) and (differentials["attribute"] == attr).any():
            out += [
                f"Demographic differentials at {primary} (metrics-reference §4; ratios need every group to have errors unless a zero rule is set). "
                "Max-type measures are biased upward and their intervals rarely include parity even when groups do not differ; "
                "the `max_vs_min_group_difference` rows hold the two extreme groups fixed: an interval including 0 there means "
                "the data do not show that they differ.",
                "",
                differential_table(differentials, attr, primary),
                "",
            ]
        if attr in figures:
            f = figures[attr]
            out += [f"![DET by {attr}]({f['det']})", "", f"![Error rates by {attr}]({f['error_rates']})", "", f"![Cross-group FMR by {attr}]({f['fmr_matrix']})", "", f"![Scores by {attr}]({f['scores']})", ""]
    fta_all = per_group[(per_group["metric"] == "FTA") & (per_group["group"] == "(all)")]
    if len(fta_all) and fta_all["errors"].iloc[0] > 0:
        out += ["## Failures to acquire", "", f"Reasons (all images): {fta_all['reasons'].iloc[0]}", ""]
    if mitigation is not None and len(mitigation):
        out += [
            "## Mitigation analysis: per-group thresholds (not an operating point)",
            "",
            "Each group at its own threshold for the target FMR, calibrated on its own non-mated comparisons. "
            "A deployed system could do this only by knowing each person's group at decision time, which may be "
            "unlawful or unacceptable (metrics-reference §7). Compare with the global-threshold FNMR above.",
            "",
            "| attribute | group | target FMR | group threshold | achieved FMR | FNMR at group threshold |",
            "|---|---|---|---|---|---|",
        ]
        for _, r in mitigation.iterrows():
            if r["status"] != "ok":
                out.append(f"| {r['attribute']} | {r['group']} | {r['target_fmr']:g} | refused | | {r['reason'][:80]} |")
            elif pd.isna(r["threshold"]):
                out.append(f"| {r['attribute']} | {r['group']} | {r['target_fmr']:g} | (counts only) | | |")
            else:
                fn = f"{r['fnmr']:.3g} ({int(r['false_non_matches'])}/{int(r['n_mated'])})" if r["n_mated"] else "no mated"
                out.append(f"| {r['attribute']} | {r['group']} | {r['target_fmr']:g} | {r['threshold']:.5g} | {r['achieved_fmr']:.3g} | {fn} |")
        out.append("")
    if small:
        out += [
            "## Groups shown as counts only",
            "",
            f"Groups with fewer than {min_group_subjects} subjects: "
            + "; ".join(f"{a}: {', '.join(g)}" for a, g in small.items())
            + ". Their rates are not published (a rate of a very small group describes individuals).",
            "",
        ]
    out += [
        "## How to read this",
        "",
        "- **FMR** (false match rate): share of comparisons of two *different* people that the system wrongly accepts. "
        "A higher FMR for a group means its members are more often mistaken for one another.",
        "- **FNMR** (false non-match rate): share of comparisons of the *same* person that the system wrongly rejects.",
        "- **FTA** (failure to acquire): share of images for which no face template was produced; those images take part in no comparison.",
        "- All groups are judged at the **same global threshold** (NIST FRVT practice); differences in rates at that threshold are the demographic differentials.",
        "- **DET**: each curve traces FNMR against FMR over all thresholds for one group (log axes; lower-left is better). Markers are the operating points at the thresholds above: the same threshold lands groups at different points.",
        "- **Cross-group matrix**: FMR for pairs of people from two groups; the diagonal is the per-group FMR.",
        "- **Score distributions**: per group, where non-mated (violins) and mated (points) scores fall relative to the thresholds (dashed lines); a group whose non-mated scores reach past a threshold has false matches there.",
        "- Small samples: a rate with few errors is imprecise; zero errors only bound the rate. Do not rank groups whose intervals overlap.",
        "",
        "## Provenance",
        "",
        f"- dataset manifest SHA-256: `{d['manifest_sha256']}`",
        f"- model weights SHA-256: `{m.get('weights_sha256')}`"
        + ("" if m.get("weights_verified") is None else f" (verified against the registry: {'yes' if m['weights_verified'] else 'no'})"),
        "- resolved config, package versions and git commit: `metrics.json`",
    ]
    return "\n".join(out) + "\n"
