"""``report.html``: a self-contained web page of a result folder, rendered with Jinja2.

The page is built **only from the published files of the folder** (``metrics.json`` or
``sweep.json``, ``sweep.csv``, the PNG figures), never from in-memory results, so

- it says exactly what the published data say (the same numbers as ``report.md``);
- ``fvbench-verify`` can re-render it from the folder and compare it byte for byte
  (:func:`check_html_report`);
- it is a pure function of those files: no time stamps, host names or paths.

Self-contained: the figures are embedded as ``data:image/png;base64`` URIs, the CSS is
inline, there is no script, no web font and no external link; a Content-Security-Policy
meta tag (``default-src 'none'; img-src data:; style-src 'unsafe-inline'``) makes the
browser refuse any network access or script even if some text slipped through.
Autoescaping is on for every template: labels, group names and config values come from
data someone else produced.

A page is a plain dict (:func:`page`) of sections (:func:`section`) holding blocks
(:func:`paragraph`, :func:`note`, :func:`bullets`, :func:`table`, :func:`figure`,
:func:`preformatted`, :func:`key_values`). The run report (:func:`run_page`), the sweep
report (:func:`sweep_page`), the identification report
(:func:`bench.report.identification_html.identification_page`), the leaderboard
(:func:`bench.report.leaderboard_html.leaderboard_page`) and any other summary (build a
:func:`page` and call :func:`write_page`) share one template (``templates/page.html.j2``)
and one style sheet, readable on a phone: tables scroll sideways inside their box,
figures shrink to the screen width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import DataError
from bench.report.html_blocks import (  # noqa: F401 - the page model, re-exported: html.page, html.table, ...
    _MAX_FIGURE_BYTES, _PNG_MAGIC, _TEMPLATES, HTML_FILE, _anchor, _assign_ids, _environment, _fin, _g, _int, _jsonload, _num,
    _png_size, _provenance_blocks, _safe_name, bullets, figure, key_values, note, page, paragraph, preformatted, render_page,
    section, table, write_page,
)

__all__ = [
    "HTML_FILE", "page", "section", "paragraph", "note", "bullets", "table", "figure", "preformatted", "key_values",
    "render_page", "write_page", "run_page", "sweep_page", "render_folder", "write_html_report", "check_html_report",
    "rate_cell", "limitations", "READING_GUIDE",
]


#: The reading guide of a 1:1 run report (plain sentences; also used by report.md's guide in spirit).
READING_GUIDE = [
    "FMR (false match rate): share of comparisons of two different people that the system wrongly accepts. "
    "A higher FMR for a group means its members are more often mistaken for one another.",
    "FNMR (false non-match rate): share of comparisons of the same person that the system wrongly rejects.",
    "FTA (failure to acquire): share of images for which no face template was produced; those images take part in no comparison.",
    "All groups are judged at the same global threshold (NIST FRVT practice); differences in rates at that threshold are the "
    "demographic differentials.",
    "Cells: rate, then (errors / comparisons), then the 95% interval; † marks fewer than 30 errors (low precision, rule of 30); "
    "0/n (≤ u): no errors, one-sided 95% upper bound u.",
    "DET: each curve traces FNMR against FMR over all thresholds for one group (log axes; lower-left is better). Markers are "
    "the operating points at the thresholds: the same threshold lands groups at different points.",
    "Cross-group matrix: FMR for pairs of people from two groups; the diagonal is the per-group FMR.",
    "Score distributions: per group, where non-mated (violins) and mated (points) scores fall relative to the thresholds "
    "(dashed lines); a group whose non-mated scores reach past a threshold has false matches there.",
    "Small samples: a rate with few errors is imprecise; zero errors only bound the rate. Do not rank groups whose intervals overlap.",
]


# --------------------------------------------------------------------------- blocks


# --------------------------------------------------------------------------- numbers


def rate_cell(row: dict) -> list[str] | str:
    """One rate cell as lines: rate, (errors / comparisons), interval; or counts only.

    ``row``: a published per-group row (``metrics.json`` ``per_group`` or ``sweep.csv``):
    ``metric, errors, comparisons, rate, flag, upper_bound_95`` and intervals
    (``boot_low/boot_high`` when finite, else ``wilson_low/wilson_high``).
    """
    n = _int(row.get("comparisons"))
    if row.get("flag") == "suppressed_small_group":
        unit = "image" if row.get("metric") == "FTA" else "comparison"
        return ["counts only", f"{n:,} {unit}{'' if n == 1 else 's'}"]
    if n == 0:
        return "no comparisons"
    e = _int(row.get("errors"))
    if e == 0:
        return [f"0/{n:,}", f"≤ {_g(row.get('upper_bound_95'), 2)} (95% upper bound)"]
    lo, hi = ("boot_low", "boot_high") if _fin(row.get("boot_low")) or _fin(row.get("boot_high")) else ("wilson_low", "wilson_high")
    mark = "" if e >= 30 else " †"
    return [f"{_g(row.get('rate'))}{mark}", f"({e:,} / {n:,})", f"[{_g(row.get(lo), 2)}, {_g(row.get(hi), 2)}]"]


# --------------------------------------------------------------------------- limitations


def limitations(metrics: dict) -> list[str]:
    """Plain-sentence limitations of a run, derived from its ``metrics.json``.

    What the numbers can and cannot support: label source, group sizes and the rule of
    30 (ISO/IEC 19795-1 §7; Doddington et al. 2000), threshold support, the kind of
    interval, counts-only groups, the engine's tolerances and the scope of the protocol.
    """
    d, m = metrics.get("dataset") or {}, metrics.get("model") or {}
    proto = metrics.get("protocol") or {}
    primary = proto.get("primary_threshold")
    out = []
    src = ", ".join(str(s) for s in (d.get("label_source") or [])) or "not recorded"
    out.append(f"Demographic labels are the dataset's own ({src}); the harness never infers them. Group names and "
               "categories are the dataset's and do not generalise to other populations or category systems.")
    rows = [r for r in metrics.get("per_group") or [] if r.get("threshold_name") == primary and r.get("metric") in ("FMR", "FNMR")
            and r.get("group") != "(all)" and r.get("flag") != "suppressed_small_group"]
    few = [r for r in rows if 0 < _int(r.get("errors")) < 30]
    zero = [r for r in rows if _int(r.get("comparisons")) > 0 and _int(r.get("errors")) == 0]
    if rows:
        out.append(f"Of {len(rows)} per-group FMR/FNMR cells at {primary}, {len(few)} rest on 1-29 errors (imprecise: rule of 30, "
                   f"ISO/IEC 19795-1) and {len(zero)} have no error at all (only an upper bound is known).")
    sizes = [(a, g, k) for a, gs in (d.get("subjects_per_group") or {}).items() if isinstance(gs, dict) for g, k in gs.items()]
    if sizes:
        a, g, k = min(sizes, key=lambda t: _num(t[2]))
        out.append(f"{_int(d.get('subjects'))} subjects in all; the smallest group ({a} = {g}) has {_int(k)}. "
                   "Results describe this sample, not a population.")
    low = [t["name"] for t in metrics.get("thresholds") or [] if t.get("kind") == "target_fmr" and t.get("status") == "ok"
           and t.get("support") not in (None, "ok")]
    if low:
        out.append(f"Threshold(s) {', '.join(low)} are calibrated on fewer than 30/target non-mated comparisons: imprecise (rule of 30).")
    refused = [t["name"] for t in metrics.get("thresholds") or [] if t.get("status") not in (None, "ok")]
    if refused:
        out.append(f"Threshold(s) {', '.join(refused)} could not be set from these data and are not reported.")
    boot = (metrics.get("config") or {}).get("protocol", {}).get("bootstrap_replicates") if isinstance(metrics.get("config"), dict) else None
    if boot:
        out.append(f"Intervals are {_int(boot)}-replicate subject-level bootstrap percentiles; with few subjects per group they are "
                   "themselves uncertain. Max-type differential measures are biased upward (docs/protocol.md §5.4).")
    else:
        out.append("Intervals are Wilson intervals over comparisons, which understate the uncertainty because comparisons "
                   "sharing a subject are correlated (docs/protocol.md §5.1).")
    small = (metrics.get("suppression") or {}).get("groups_shown_as_counts_only") or {}
    if small:
        out.append("Groups with fewer than "
                   f"{_int((metrics.get('suppression') or {}).get('min_group_subjects'))} subjects are shown as counts only: "
                   + "; ".join(f"{a}: {', '.join(map(str, g))}" for a, g in small.items()) + ".")
    if (metrics.get("engine") or {}).get("engine") == "stream":
        out.append("Computed by the streaming engine: EER and DET are read from score histograms (tolerances in metrics.json engine).")
    if m.get("name") == "generator":
        out.append("Synthetic population: the numbers describe the generator's built-in structure, not any real system.")
    out.append(f"One model ({m.get('name')}, these settings and weights) on one dataset ({d.get('name')}), 1:1 verification only; "
               "other capture conditions, thresholds or model versions can give different differentials.")
    return out


# --------------------------------------------------------------------------- run report


def _threshold_rows(thresholds: list[dict]) -> list[list[Any]]:
    rows = []
    for t in thresholds:
        if t.get("status") != "ok":
            rows.append([t.get("name", ""), t.get("kind", ""), "refused", _g(t.get("target_fmr")), "", str(t.get("reason", ""))])
        elif t.get("kind") == "nominal":
            rows.append([t["name"], "published by the model's authors", _g(t.get("threshold"), 6), "", "", str(t.get("source") or "")])
        else:
            note_ = "fewer than 30/target non-mated comparisons: imprecise (rule of 30)" if t.get("support") not in (None, "ok") else ""
            kind = f"global, calibrated on {t.get('calibration') or 'all non-mated comparisons'}"
            rows.append([t["name"], kind, _g(t.get("threshold"), 6), _g(t.get("target_fmr")),
                         [_g(t.get("achieved_fmr")), f"({_int(t.get('k')):,} / {_int(t.get('n_nonmated')):,})"], note_])
    return rows


def _group_table(per_group: list[dict], attribute: str, names: list[str]) -> dict:
    rows = [r for r in per_group if r.get("attribute") == attribute]
    groups = list(dict.fromkeys(str(r.get("group")) for r in rows))
    head = ["group", "subjects", "FTA"]
    for t in names:
        head += [f"FMR @ {t}", f"FNMR @ {t}"]
    out = []
    for g in groups:
        sel = [r for r in rows if str(r.get("group")) == g]
        fta = [r for r in sel if r.get("metric") == "FTA"]
        subj = _int(fta[0].get("subjects")) if fta else max((_int(r.get("subjects")) for r in sel), default=0)
        cells: list[Any] = [g, f"{subj:,}", rate_cell(fta[0]) if fta else ""]
        for t in names:
            for metric in ("FMR", "FNMR"):
                hit = [r for r in sel if r.get("metric") == metric and r.get("threshold_name") == t]
                cells.append(rate_cell(hit[0]) if hit else "")
        out.append(cells)
    return table(f"Per-group error rates by {attribute}", head, out, numeric=(1,))


def _eer_table(eer: list[dict], attribute: str) -> dict | None:
    rows = []
    for r in eer:
        if r.get("attribute") != attribute:
            continue
        if not _fin(r.get("eer")):
            rows.append([str(r.get("group")), "counts only" if r.get("eer") is None else "", "", f"{_int(r.get('n_mated')):,}",
                         f"{_int(r.get('n_nonmated')):,}"])
            continue
        rows.append([str(r.get("group")), _g(r.get("eer")), f"[{_g(r.get('eer_low'))}, {_g(r.get('eer_high'))}]",
                     f"{_int(r.get('n_mated')):,}", f"{_int(r.get('n_nonmated')):,}"])
    if not rows:
        return None
    return table(f"Equal error rate by {attribute} (threshold-free separability, not an operating point)",
                 ["group", "EER", "bracket", "mated", "non-mated"], rows, numeric=(1, 3, 4))


def _differential_table(diff: list[dict], attribute: str, threshold_name: str) -> dict | None:
    rows = []
    for r in diff:
        if r.get("attribute") != attribute or r.get("threshold_name") != threshold_name:
            continue
        parity = _g(r.get("parity_value"))
        if r.get("suppressed"):
            rows.append([str(r.get("measure")), "suppressed (includes a counts-only group)", "", parity, ""])
            continue
        v = _g(r.get("value"), 4) if _fin(r.get("value")) else "not estimable"
        ci = ""
        if _fin(r.get("boot_low")) or _fin(r.get("boot_high")):
            ci = f"[{_g(r.get('boot_low'))}, {_g(r.get('boot_high'))}]" + (" includes parity" if r.get("includes_parity") else "")
        mm = f"{r.get('max_group')} / {r.get('min_group')}" if isinstance(r.get("max_group"), str) else ""
        rows.append([str(r.get("measure")), v, ci, parity, mm])
    if not rows:
        return None
    return table(f"Demographic differentials by {attribute} at {threshold_name}",
                 ["measure", "value", "95% bootstrap interval", "parity value", "groups (max / min)"], rows, numeric=(1, 3))


def _cross_table(cells: list[dict], attribute: str) -> dict | None:
    if not cells:
        return None
    name = cells[0].get("threshold_name", "")
    rows = []
    for c in cells:
        n = _int(c.get("comparisons"))
        if c.get("fmr") is None and c.get("false_matches") is None:
            val: Any = ["counts only", f"{n:,} comparisons"]
        elif n == 0:
            val = "no comparisons"
        else:
            val = [_g(c.get("fmr")), f"({_int(c.get('false_matches')):,} / {n:,})"]
        rows.append([f"{c.get('group_a')} × {c.get('group_b')}", val])
    return table(f"Cross-group FMR by {attribute} at {name}", ["group pair", "FMR (false matches / comparisons)"], rows)


def run_page(folder: Path) -> dict:
    """The page of a run folder, from its ``metrics.json`` and figures.

    Raises
    ------
    DataError
        When ``metrics.json`` is missing or unreadable, or a figure is not a PNG.
    """
    folder = Path(folder)
    mx = _jsonload(folder / "metrics.json")
    d, m = mx.get("dataset") or {}, mx.get("model") or {}
    thresholds = mx.get("thresholds") or []
    names = [t["name"] for t in thresholds if t.get("status") == "ok"]
    primary = (mx.get("protocol") or {}).get("primary_threshold") or (names[0] if names else "")
    per_group, eer, diff = mx.get("per_group") or [], mx.get("eer") or [], mx.get("differentials") or []
    attributes = (mx.get("protocol") or {}).get("attributes") or list(dict.fromkeys(r.get("attribute") for r in per_group))
    run_name = str(mx.get("run_name", folder.name))
    score = {"euclidean": "negated Euclidean distance", "cosine": "cosine similarity"}.get(m.get("metric"), str(m.get("metric")))

    summary = [paragraph(
        f"Model {m.get('name')} (comparison score: {score}) on dataset {d.get('name')}: {_int(d.get('images')):,} images of "
        f"{_int(d.get('subjects')):,} subjects (labels: {', '.join(map(str, d.get('label_source') or [])) or 'not recorded'}), "
        f"{_int(d.get('images_acquired')):,} acquired, {_int(d.get('mated_comparisons')):,} mated and "
        f"{_int(d.get('nonmated_comparisons')):,} non-mated comparisons. Headline threshold: {primary}.")]
    from bench.report.dataset_notice import consent_notice, pair_list_notice  # issue #14

    if consent_notice(mx):
        summary.insert(0, note(str(consent_notice(mx))))
    if pair_list_notice(mx):
        summary.append(paragraph(str(pair_list_notice(mx))))
    eng = mx.get("engine") or {}
    if eng.get("engine") == "stream":
        summary.append(paragraph(
            f"Computed by the streaming engine ({eng.get('selected_by')}: {_int(eng.get('comparisons')):,} comparisons): scores "
            "binned into histograms; EER and DET read from the bins (tolerances in metrics.json, engine)."))
    priv = mx.get("privacy") or {}
    if priv.get("embeddings_exported"):
        summary.append(note(str(priv.get("warning") or "This run exported embeddings (biometric data) into its folder.")))
    proto = mx.get("protocol") or {}
    summary.append(bullets([f"{k.replace('_', ' ')}: {proto[k]}" for k in ("mated", "nonmated", "per_group_fmr", "decision_rule",
                                                                            "threshold_rule", "fta") if k in proto]))

    sections = [section("Summary", summary, id="summary"),
                section("Thresholds", [table("Thresholds", ["name", "kind", "threshold", "target FMR", "achieved FMR (k / N)", "note"],
                                             _threshold_rows(thresholds), numeric=(2, 3))], id="thresholds")]
    if mx.get("scenario"):  # issue #14: deployment scenario (bench/report/scenario.py)
        from bench.report.scenario import scenario_html_section

        sections.insert(1, scenario_html_section(mx, bullets=bullets, paragraph=paragraph, section=section, table=table))
    boot = (mx.get("config") or {}).get("protocol", {}).get("bootstrap_replicates") if isinstance(mx.get("config"), dict) else None
    interval = (f"95% subject-level bootstrap intervals ({_int(boot)} replicates; docs/protocol.md §5.2–5.4); Wilson and "
                "Clopper-Pearson intervals are in per_group.csv." if boot else
                "95% Wilson intervals over comparisons (a floor on the uncertainty; docs/protocol.md §5.1).")
    children = []
    for attr in attributes:
        blocks = [_group_table(per_group, attr, names)]
        for b in (_eer_table(eer, attr), _differential_table(diff, attr, primary), _cross_table((mx.get("cross_group_fmr") or {}).get(attr) or [], attr)):
            if b is not None:
                blocks.append(b)
        sn = _safe_name(attr)
        for key, label in (("det", "DET curves"), ("error_rates", "Error rates"), ("fmr_matrix", "Cross-group FMR"), ("scores", "Comparison scores")):
            f = figure(folder, f"{key}_{sn}.png", alt=f"{label} by {attr}", caption=f"{label} by {attr} ({key}_{sn}.png)")
            if f is not None:
                blocks.append(f)
        children.append(section(attr, blocks, id=f"attr-{attr}"))
    sections.append(section("Per-group error rates", [paragraph(
        f"Cells: rate, (errors / comparisons), interval: {interval} Per-group FMR counts non-mated comparisons with both "
        "subjects in the group; † fewer than 30 errors.")], children, id="per-group"))

    fta_all = [r for r in per_group if r.get("metric") == "FTA" and r.get("group") == "(all)"]
    if fta_all and _int(fta_all[0].get("errors")) > 0:
        sections.append(section("Failures to acquire", [paragraph(f"Reasons (all images): {fta_all[0].get('reasons')}")], id="fta"))
    mit = mx.get("mitigation") or []
    if mit:
        rows = []
        for r in mit:
            if r.get("status") != "ok":
                rows.append([f"{r.get('attribute')}: {r.get('group')}", _g(r.get("target_fmr")), "refused", "", str(r.get("reason") or "")[:120]])
            elif r.get("threshold") is None:
                rows.append([f"{r.get('attribute')}: {r.get('group')}", _g(r.get("target_fmr")), "counts only", "", ""])
            else:
                fn = [_g(r.get("fnmr")), f"({_int(r.get('false_non_matches'))} / {_int(r.get('n_mated'))})"] if _int(r.get("n_mated")) else "no mated"
                rows.append([f"{r.get('attribute')}: {r.get('group')}", _g(r.get("target_fmr")), _g(r.get("threshold"), 5),
                             _g(r.get("achieved_fmr")), fn])
        sections.append(section("Mitigation analysis: per-group thresholds (not an operating point)", [
            paragraph("Each group at its own threshold for the target FMR, calibrated on its own non-mated comparisons. A deployed "
                      "system could do this only by knowing each person's group at decision time, which may be unlawful or "
                      "unacceptable (docs/protocol.md §7)."),
            table("Per-group thresholds", ["group", "target FMR", "group threshold", "achieved FMR", "FNMR at group threshold"], rows,
                  numeric=(1, 2, 3, 4))], id="mitigation"))
    sections += [
        section("How to read this", [bullets(READING_GUIDE)], id="reading-guide"),
        section("Limitations", [bullets(limitations(mx))], id="limitations"),
        section("Provenance", _provenance_blocks(mx, "metrics.json"), id="provenance"),
    ]
    return page(f"fvbench result: {run_name}", sections,
                subtitle=f"{m.get('name')} on {d.get('name')}: per-group FMR, FNMR and FTA (ISO/IEC 19795-1, NIST FRVT conventions)")


# --------------------------------------------------------------------------- sweep report


def sweep_page(folder: Path) -> dict:
    """The page of an acquisition-condition sweep folder, from ``sweep.json``, ``sweep.csv`` and its figures.

    Raises
    ------
    DataError
        When ``sweep.json`` or ``sweep.csv`` is missing or unreadable.
    """
    import pandas as pd

    folder = Path(folder)
    doc = _jsonload(folder / "sweep.json")
    try:
        rows = pd.read_csv(folder / "sweep.csv", keep_default_na=False, na_values=[""], dtype={"group": str, "transform": str})
    except (OSError, ValueError) as err:
        raise DataError(f"{folder / 'sweep.csv'}: cannot read it ({err})") from err
    rows = rows.astype(object).where(rows.notna(), None)
    recs = rows.to_dict(orient="records")
    d, m, c = doc.get("dataset") or {}, doc.get("model") or {}, doc.get("counts") or {}
    thresholds = doc.get("thresholds") or []
    usable = [t for t in thresholds if t.get("status") == "ok"]
    primary = ([t for t in usable if t.get("kind") == "target_fmr"] or usable or [{"name": ""}])[0]["name"]
    proto = doc.get("protocol") or {}
    sections = [
        section("Summary", [paragraph(
            f"Model {m.get('name')} on {d.get('name')}. References: {proto.get('references', '')}; probes: {proto.get('probes', '')}. Unperturbed run: "
            f"{_int(c.get('mated_comparisons_unperturbed')):,} mated and {_int(c.get('nonmated_comparisons_unperturbed')):,} non-mated "
            "comparisons. Thresholds are set once on the unperturbed run and held fixed for every transform and strength.")], id="summary"),
        section("Thresholds", [table("Thresholds", ["name", "kind", "threshold", "target FMR", "achieved FMR (k / N)", "note"],
                                     _threshold_rows(thresholds), numeric=(2, 3))], id="thresholds"),
    ]
    attributes = proto.get("attributes") or list(dict.fromkeys(r["attribute"] for r in recs))
    for tr in doc.get("transforms") or []:
        name = str(tr.get("name"))
        strengths = sorted(_num(s) for s in tr.get("strengths") or [])
        children = []
        for attr in attributes:
            blocks: list[dict] = []
            f = figure(folder, f"sweep_{_safe_name(name)}_{_safe_name(attr)}.png", alt=f"{name} sweep by {attr}")
            if f is not None:
                blocks.append(f)
            for metric, tname in (("FTA", None), ("FNMR", primary), ("FMR", primary)):
                sel = [r for r in recs if r.get("attribute") == attr and r.get("metric") == metric
                       and (r.get("threshold_name") or None) == tname]
                base = {str(r["group"]): r for r in sel if r.get("transform") == "none"}
                cur = [r for r in sel if r.get("transform") == name]
                head = ["group", "unperturbed", *[f"{s:g}" for s in strengths]]
                body = []
                for g, b in base.items():
                    cells: list[Any] = [g, rate_cell(b)]
                    for s in strengths:
                        hit = [r for r in cur if str(r["group"]) == g and _num(r.get("strength")) == s]
                        cells.append(rate_cell(hit[0]) if hit else "")
                    body.append(cells)
                label = metric if not tname else f"{metric} @ {tname}"
                blocks.append(table(f"{label} by {attr}, {name} strength", head, body))
            children.append(section(f"{name} by {attr}", blocks, id=f"{name}-{attr}"))
        sections.append(section(f"{name}: {tr.get('unit', '')}", [], children, id=f"transform-{name}"))
    small = (doc.get("suppression") or {}).get("groups_shown_as_counts_only") or {}
    n_boot = proto.get("bootstrap_replicates")  # issue #14: subject bootstrap beside Wilson (bench/report/sweep.py)
    boot = bool(n_boot) and any(_fin(r.get("boot_low")) for r in recs)
    bars = (f"Bars: FNMR and FMR 95% subject-bootstrap intervals ({_int(n_boot):,} replicates; subjects resampled within their "
            "group, thresholds held fixed; docs/protocol.md §5.2-5.3), FTA 95% Wilson." if boot else
            "Bars are 95% Wilson intervals (comparison-level: a floor on the uncertainty).")
    sections += [
        section("How to read this", [bullets([
            "Each figure: x = transform strength (units on the axis), one line per group (black dashed: all subjects); panels FTA, "
            f"then FNMR and FMR at each threshold, on log axes. {bars} A zero-error point is an open triangle at its one-sided 95% upper bound.",
            "FNMR and FMR are over probes that were acquired; a probe that fails to acquire is an FTA (FNMR_incl_FTA in sweep.csv "
            "counts it as a false non-match, NIST convention).",
            "Per-group FMR uses non-mated pairs with both subjects in the group; small groups have few such pairs.",
            ("Cells: rate, (errors / comparisons), [95% interval: subject bootstrap for FNMR and FMR, Wilson for FTA; every cell's "
             "Wilson interval is in sweep.csv]" if boot else "Cells: rate, (errors / comparisons), [95% Wilson]")
            + "; † fewer than 30 errors; 0/n with ≤ u: zero errors, one-sided 95% bound u.",
        ])], id="reading-guide"),
        section("Limitations", [bullets([
            ("FNMR and FMR intervals resample subjects at thresholds held fixed: they cover the sampling of subjects, not the "
             "uncertainty of the thresholds themselves; FTA intervals are Wilson intervals over probes." if boot else
             "Intervals are Wilson intervals over comparisons: a floor on the uncertainty (comparisons sharing a subject are correlated)."),
            "Transforms are simulations of capture conditions, not captured images; real degradations combine several effects.",
            *([f"Groups shown as counts only: {'; '.join(f'{a}: ' + ', '.join(map(str, g)) for a, g in small.items())}."] if small else []),
            f"One model ({m.get('name')}) on one dataset ({d.get('name')}); results describe this sample, not a population.",
        ])], id="limitations"),
        section("Provenance", _provenance_blocks(doc, "sweep.json"), id="provenance"),
    ]
    return page(f"Acquisition-condition sweep: {doc.get('run_name', folder.name)}", sections,
                subtitle=f"{m.get('name')} on {d.get('name')}: per-group FTA, FNMR and FMR as probe images degrade")


# --------------------------------------------------------------------------- folders


def render_folder(folder: Path) -> str:
    """The ``report.html`` text of a result folder: a 1:1 run or an identification run (``metrics.json``),
    a sweep (``sweep.json``) or a leaderboard (``sources.json``).

    Raises
    ------
    DataError
        When the folder holds neither, or its files cannot be read.
    """
    folder = Path(folder)
    if (folder / "metrics.json").is_file():
        mx = _jsonload(folder / "metrics.json")
        if isinstance(mx.get("identification"), dict):  # a 1:N identification run
            from bench.report.identification_html import identification_page

            return render_page(identification_page(folder))
        if "per_group" not in mx:
            raise DataError(f"{folder / 'metrics.json'}: neither a 1:1 verification run (per_group) nor an identification run; "
                            f"no {HTML_FILE} page for it")
        return render_page(run_page(folder))
    if (folder / "sweep.json").is_file():
        return render_page(sweep_page(folder))
    if (folder / "sources.json").is_file():  # a leaderboard (fvbench-aggregate)
        from bench.report.leaderboard_html import leaderboard_page

        return render_page(leaderboard_page(folder))
    raise DataError(f"{folder}: no metrics.json, sweep.json or sources.json to build {HTML_FILE} from")


def write_html_report(folder: Path) -> Path:
    """Write ``folder/report.html`` from the folder's published files; return its path."""
    path = Path(folder) / HTML_FILE
    path.write_bytes(render_folder(folder).encode("utf-8"))
    return path


def check_html_report(folder: Path) -> list[str]:
    """Re-render ``report.html`` from the folder and compare bytes (for ``fvbench-verify``).

    Returns
    -------
    list of str
        Problems found (empty: the page is exactly what the published files render to).
    """
    folder = Path(folder)
    path = folder / HTML_FILE
    if not path.is_file() or path.is_symlink():
        return [f"{HTML_FILE}: missing (or not a regular file)"]
    try:
        expected = render_folder(folder).encode("utf-8")
    except DataError as err:
        return [f"{HTML_FILE}: cannot be re-rendered: {err}"]
    if path.read_bytes() != expected:
        return [f"{HTML_FILE}: differs from the page the published files render to (edited, or written by another fvbench version)"]
    return []
