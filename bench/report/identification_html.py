"""``report.html`` of an identification (1:N) run folder, from its published files only.

Read: ``metrics.json`` (its ``identification`` section: protocol in words, split,
thresholds, per-probe-group rates, false candidates, gallery-size and composition
sweeps, suppression; dataset, model, provenance) and the figures
``ident_rates_<attr>.png``, ``ident_false_candidates_<attr>.png``,
``ident_gallery_size_<attr>.png``, ``ident_gallery_mix_<attr>.png``. Definitions:
docs/identification.md (ISO/IEC 19795-1 §7.3, NIST FRVT 1:N / NISTIR 8271 and 8280).

False candidates per gallery group carry an interval the folder does not publish: a 95%
Wilson interval of the share of (non-mated search, enrolled person of the group) pairs
in which that person was returned (:func:`false_candidate_interval`). The pairs share
searches and people, so it is a floor on the uncertainty, and it is labelled so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.report.html_blocks import (_g, _int, _jsonload, _num, _provenance_blocks, _safe_name, bullets, figure, key_values, page,
                               paragraph, section, table)

__all__ = ["identification_page", "false_candidate_interval", "IDENTIFICATION_GUIDE"]

#: Who is harmed by which error (the reading guide of report.md, as sentences).
IDENTIFICATION_GUIDE = [
    "FPIR by probe group (watchlist / lights-out mode): the share of people not on the list whose search raises an alarm. "
    "A high FPIR for group g means passers-by of group g are more often stopped or questioned as if they were someone on the list.",
    "False candidates by gallery group (investigation mode): how often an enrolled person of group h is returned as a candidate "
    "for a stranger's search. They are the people exposed to being wrongly named.",
    "FNIR by probe group: the share of listed people of group g whom the search misses (the mate is not within rank R or scores "
    "below T). A high FNIR means the system protects group g less, or that members of g evade it more easily, depending on the deployment.",
    "SEL (selectivity): mean number of candidates at or above the threshold per non-mated search.",
    "FPIR grows with the gallery: each added person is another chance of a false match, mostly from people of similar "
    "demographics. The gallery-size figure shows measured FPIR beside the prediction from 1:1 FMRs.",
    "Cells: rate, (errors / completed searches), [95% probe-subject bootstrap interval, else Wilson], {range over re-drawn "
    "gallery splits}; † fewer than 30 errors (rule of 30: imprecise); 0/n: no error, ≤ u is the one-sided exact 95% upper bound (docs/protocol.md §5.5).",
]


def false_candidate_interval(false_candidates: Any, searches: Any, enrolled: Any, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson interval of the false-candidate rate ``k / (searches x enrolled)``.

    Parameters
    ----------
    false_candidates : int
        k, list entries of enrolled people of one gallery group scoring at or above T over
        the non-mated searches (each person at most once per search: one template each).
    searches, enrolled : int
        Completed non-mated searches; enrolled people of the group (pairs n = searches x enrolled).
    confidence : float in (0, 1)

    Returns
    -------
    (low, high) in [0, 1], or None when a count is missing (suppressed group) or n = 0.
    Source: Wilson (1927); the pairs are not independent, so this is a floor on the uncertainty.
    """
    from bench.metrics.intervals import wilson_interval

    k, s, e = _num(false_candidates), _num(searches), _num(enrolled)
    if not all(math.isfinite(x) for x in (k, s, e)) or s * e <= 0:
        return None
    lo, hi = wilson_interval(int(k), int(s * e), confidence=confidence)
    return float(lo), float(hi)


def _cell(r: dict | None) -> Any:
    if r is None:
        return ""
    if r.get("flag") == "suppressed_small_group":
        return ["counts only", f"{_int(r.get('n')):,} searches"]
    n = _int(r.get("n"))
    if n == 0 or not math.isfinite(_num(r.get("rate"))):
        return "no completed searches"
    metric = str(r.get("metric", ""))
    e = _num(r.get("errors"))
    lines: list[str] = []
    if metric == "SEL":
        lines.append(f"{_g(r.get('rate'))} candidates / search")
    elif math.isfinite(e) and e == 0:
        from bench.metrics.intervals import zero_error_upper_bound  # the 1:1 report's bound (docs/protocol.md §5.5)

        lines += [f"0/{n:,}", f"≤ {_g(float(zero_error_upper_bound(n)), 2)} (one-sided exact 95% upper bound)"]
        return lines
    else:
        lines += [f"{_g(r.get('rate'))}{' †' if math.isfinite(e) and e < 30 else ''}", f"({_int(e):,} / {n:,})"]
    if math.isfinite(_num(r.get("boot_low"))):
        lines.append(f"[{_g(r.get('boot_low'), 2)}, {_g(r.get('boot_high'), 2)}]")
    elif math.isfinite(_num(r.get("ci_low"))):
        lines.append(f"[{_g(r.get('ci_low'), 2)}, {_g(r.get('ci_high'), 2)}] Wilson")
    if math.isfinite(_num(r.get("redraw_low"))):
        lines.append(f"{{{_g(r.get('redraw_low'), 2)}, {_g(r.get('redraw_high'), 2)}}}")
    return lines


def _threshold_rows(thresholds: list[dict]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for t in thresholds:
        if t.get("kind") == "investigation":
            rows.append([str(t.get("name")), "none (rank only)", "", "", "FNIR in investigation mode"])
        elif t.get("status") != "ok":
            rows.append([str(t.get("name")), "refused", _g(t.get("target_fpir")), "", str(t.get("reason", ""))])
        elif t.get("kind") == "nominal":
            rows.append(["nominal (the model's 1:1 threshold)", _g(t.get("threshold"), 6), "", _g(t.get("achieved_fpir")),
                         str(t.get("source") or "")])
        else:
            low = "fewer than 30/target non-mated searches: imprecise (rule of 30)" if t.get("support") not in (None, "ok") else ""
            rows.append([str(t.get("name")), _g(t.get("threshold"), 6), _g(t.get("target_fpir")),
                         [_g(t.get("achieved_fpir")), f"({_int(t.get('k')):,} / {_int(t.get('n_nonmated_searches')):,} searches)"], low])
    return rows


def identification_page(folder: Path) -> dict:
    """The page of an identification run folder (see the module docstring for what is read).

    Raises
    ------
    DataError
        ``metrics.json`` is missing or unreadable, or a figure is not a PNG.
    """
    folder = Path(folder)
    mx = _jsonload(folder / "metrics.json")
    ident = mx.get("identification") or {}
    d, m = mx.get("dataset") or {}, mx.get("model") or {}
    proto = ident.get("protocol") or {}
    thresholds = [t for t in ident.get("thresholds") or [] if isinstance(t, dict)]
    names = [str(t.get("name")) for t in thresholds if t.get("status") == "ok"]
    primary = ident.get("primary_threshold")
    per_group = [r for r in ident.get("per_group") or [] if isinstance(r, dict)]
    by_g = [r for r in ident.get("false_candidates_by_gallery_group") or [] if isinstance(r, dict)]
    split = [r for r in (ident.get("split") or {}).get("per_group") or [] if isinstance(r, dict)]
    attributes = [str(a) for a in proto.get("attributes") or dict.fromkeys(r.get("attribute") for r in per_group)]
    ranks = [int(r) for r in proto.get("ranks") or [1]]
    run_name = str(mx.get("run_name", folder.name))
    confidence = _num(proto.get("confidence"))
    confidence = confidence if 0 < confidence < 1 else 0.95

    summary = [paragraph(
        f"Model {m.get('name')} on dataset {d.get('name')} in 1:N identification mode: {_int(d.get('images')):,} images of "
        f"{_int(d.get('subjects')):,} subjects (labels: {', '.join(map(str, d.get('label_source') or [])) or 'not recorded'}); "
        f"{_int(d.get('enrolled_subjects')):,} enrolled with {_int(d.get('gallery_templates')):,} gallery templates, "
        f"{_int(d.get('mated_searches')):,} mated and {_int(d.get('nonmated_searches')):,} non-mated searches, candidate lists of "
        f"length {proto.get('candidate_list_length')}. Headline threshold: {primary}. Definitions: docs/identification.md."),
        key_values([(k.replace("_", " "), proto.get(k)) for k in ("gallery", "gallery_template", "mated_search", "nonmated_search",
                                                                   "decision_rule", "threshold_rule", "false_candidates", "fta",
                                                                   "bootstrap", "gallery_redraws", "prediction") if proto.get(k)])]
    sections = [section("Summary", summary, id="summary"),
                section("Thresholds", [table("Thresholds", ["name", "threshold", "target FPIR", "achieved FPIR (k / N searches)", "note"],
                                             _threshold_rows(thresholds), numeric=(1, 2))], id="thresholds")]

    metrics = [("FPIR", n) for n in names if n != "investigation"] + [(f"FNIR_rank{r}", n) for n in names for r in ranks]
    metrics += [("SEL", n) for n in names if n != "investigation"]
    children = []
    for attr in attributes:
        pg = [r for r in per_group if str(r.get("attribute")) == attr]
        groups = list(dict.fromkeys(str(r.get("group")) for r in pg))
        body = []
        for metric, name in metrics:
            cells: list[Any] = [f"{metric} @ {name}"]
            for g in groups:
                cells.append(_cell(next((r for r in pg if str(r.get("group")) == g and r.get("metric") == metric
                                         and str(r.get("threshold_name")) == name), None)))
            body.append(cells)
        fta = [next((r for r in pg if str(r.get("group")) == g and r.get("metric") == "FTA_probe"), None) for g in groups]
        body.append(["FTA (probes)", *[("counts only" if (r or {}).get("flag") == "suppressed_small_group" else
                                        f"{_int(r.get('errors')):,} / {_int(r.get('n')):,}") if r else "" for r in fta]])
        blocks: list[dict] = [table(f"Per probe group: {attr}", ["metric @ threshold", *groups], body)]
        sp = [r for r in split if str(r.get("attribute")) == attr]
        if sp:
            blocks.append(table(f"Gallery split by {attr}", ["group", "enrolled", "failed to enrol", "not enrolled",
                                                             "mated searches (FTA)", "non-mated searches (FTA)"],
                                [[str(r.get("group")), f"{_int(r.get('enrolled_subjects')):,}", f"{_int(r.get('gallery_fte')):,}",
                                  f"{_int(r.get('not_enrolled_subjects')):,}",
                                  f"{_int(r.get('mated_searches')):,} ({_int(r.get('mated_search_fta')):,})",
                                  f"{_int(r.get('nonmated_searches')):,} ({_int(r.get('nonmated_search_fta')):,})"] for r in sp],
                                numeric=(1, 2, 3)))
        fc = [r for r in by_g if str(r.get("attribute")) == attr and str(r.get("threshold_name")) == str(primary)]
        if fc:
            rows = []
            for r in fc:
                if r.get("false_candidates") is None:
                    rows.append([str(r.get("gallery_group")), "counts only", f"{_int(r.get('enrolled')):,}", "", ""])
                    continue
                iv = false_candidate_interval(r.get("false_candidates"), r.get("nonmated_searches"), r.get("enrolled"), confidence)
                rows.append([str(r.get("gallery_group")), f"{_int(r.get('false_candidates')):,}", f"{_int(r.get('enrolled')):,}",
                             _g(r.get("per_enrolled_person")),
                             [f"{_g(r.get('rate'))} ({_int(r.get('false_candidates')):,} / "
                              f"{_int(r.get('nonmated_searches')) * _int(r.get('enrolled')):,} pairs)",
                              f"[{_g(iv[0], 2)}, {_g(iv[1], 2)}] Wilson (a floor)" if iv else ""]])
            blocks.append(table(f"False candidates by gallery {attr} at {primary} ({_int(fc[0].get('nonmated_searches')):,} non-mated searches)",
                                ["gallery group", "false candidates", "enrolled", "per enrolled person", "rate per search and person, 95% interval"],
                                rows, numeric=(1, 2, 3)))
        sn = _safe_name(attr)
        for key, label in (("ident_rates", "FPIR and FNIR per probe group"), ("ident_false_candidates", "False candidates, probe × gallery group"),
                           ("ident_gallery_size", "FPIR vs gallery size, measured and predicted"),
                           ("ident_gallery_mix", "FPIR vs the share of each group in the gallery")):
            f = figure(folder, f"{key}_{sn}.png", alt=f"{label}, by {attr}", caption=f"{label}, by {attr}")
            if f is not None:
                blocks.append(f)
        children.append(section(attr, blocks, id=f"attr-{attr}"))
    sections.append(section("Per-group results", [paragraph(
        "Per probe group: rates over completed searches; per gallery group: the people exposed to being wrongly named.")],
        children, id="per-group"))

    small = (ident.get("suppression") or {}).get("groups_shown_as_counts_only") or {}
    low = [t.get("name") for t in thresholds if t.get("kind") == "target_fpir" and t.get("status") == "ok" and t.get("support") not in (None, "ok")]
    lim = [
        f"Demographic labels are the dataset's own ({', '.join(map(str, d.get('label_source') or [])) or 'not recorded'}); the "
        "harness never infers them. Results describe this sample and this gallery, not a population.",
        f"The gallery holds {_int(d.get('gallery_templates')):,} templates; FPIR grows with gallery size, so these rates do not "
        "transfer to a larger gallery (see the gallery-size figure and its 1:1-based prediction, which assumes independence).",
        "Probe-subject bootstrap intervals hold the thresholds fixed; the {…} range over re-drawn gallery splits shows how "
        "much the split alone moves a rate.",
        "False-candidate intervals are Wilson intervals over search × person pairs, which share searches and people: a floor "
        "on the uncertainty.",
        f"One model ({m.get('name')}) on one dataset ({d.get('name')}); other capture conditions, thresholds or list lengths "
        "can give different differentials.",
    ]
    if low:
        lim.insert(1, f"Threshold(s) {', '.join(map(str, low))} rest on fewer than 30/target non-mated searches: imprecise (rule of 30).")
    if small:
        lim.append("Groups with fewer than "
                   f"{_int((ident.get('suppression') or {}).get('min_group_subjects'))} subjects are shown as counts only: "
                   + "; ".join(f"{a}: {', '.join(map(str, g))}" for a, g in small.items()) + ".")
    sections += [
        section("How to read this", [bullets(IDENTIFICATION_GUIDE)], id="reading-guide"),
        section("Limitations", [bullets(lim)], id="limitations"),
        section("Provenance", _provenance_blocks(mx, "metrics.json"), id="provenance"),
    ]
    return page(f"fvbench identification result: {run_name}", sections,
                subtitle=f"{m.get('name')} on {d.get('name')}: per-group FPIR, FNIR and false candidates (1:N, ISO/IEC 19795-1, NIST FRVT 1:N)")
