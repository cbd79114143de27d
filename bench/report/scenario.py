"""The "Scenario" section of a run's reports and its ``metrics.json`` record (issue #14).

Everything here is rendered from ``metrics.json`` ``scenario`` alone (written by
:func:`scenario_metrics` from :attr:`bench.protocol.scenario.ScenarioOutcome.info`),
so ``fvbench-verify`` re-renders ``report.md`` and ``report.html`` from the folder.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCENARIO_DOC", "title_suffix", "scenario_metrics", "scenario_section", "scenario_html_section", "pairing_text"]

#: The scenarios document, relative to the repository root.
SCENARIO_DOC = "docs/scenarios.md"


def title_suffix(info: dict | None) -> str:
    """What figure titles of a scenario run add after "model on dataset": ``", scenario id_document"`` (or "")."""
    return f", scenario {info.get('name')}" if isinstance(info, dict) and info.get("name") else ""


def pairing_text(info: dict, max_nonmated: int | None = None) -> dict[str, str]:
    """``protocol.mated`` / ``protocol.nonmated`` wording of a scenario run."""
    ref, probe = info.get("enrolment_view"), info.get("probe_view")
    col = info.get("view_column")
    return {
        "mated": f"reference ({col} = {ref}) x probe ({col} = {probe}) of the same subject",
        "nonmated": f"reference of one subject x probe of another, every ordered pair (reference x reference and probe x probe "
                    f"pairs are not compared; {SCENARIO_DOC})"
                    + ("" if max_nonmated is None else f" (seeded sample of {max_nonmated})"),
        "scenario": str(info.get("name")),
    }


def scenario_metrics(metrics: dict, info: dict, max_nonmated: int | None = None) -> dict:
    """Add the scenario to a run's ``metrics`` in place: ``scenario`` and the pairing wording of ``protocol``.

    Parameters
    ----------
    metrics : dict
        The ``metrics.json`` document being written.
    info : dict
        :attr:`bench.protocol.scenario.ScenarioOutcome.info`.
    max_nonmated : int or None
        ``protocol.max_nonmated`` of the run.

    Returns
    -------
    dict
        ``metrics``.
    """
    metrics["protocol"].update(pairing_text(info, max_nonmated))
    metrics["scenario"] = info
    return metrics


def _doc_link(metrics: dict) -> str:
    depth = 2 + str(metrics.get("run_name") or "").strip("/").count("/")
    return "../" * depth + SCENARIO_DOC


def _value(step: dict) -> str:
    try:
        s = f"{float(step.get('strength')):g}"
    except (TypeError, ValueError):  # a folder written by someone else: shown as given, never trusted as a number
        s = str(step.get("strength"))
    return f"{s} ({step.get('unit')})"


def _step_rows(info: dict) -> list[list[str]]:
    rows = []
    for role, label in (("enrolment", "enrolment (reference)"), ("probe", "probe")):
        steps = [st for st in info.get(role) or [] if isinstance(st, dict)] if isinstance(info.get(role), list) else []
        if not steps:
            rows.append([label, "-", "as captured (no condition applied)", "", ""])
        for i, st in enumerate(steps, 1):
            rows.append([label, str(i), str(st.get("transform")), _value(st), str(st.get("why"))])
    return rows


def _count_lines(info: dict) -> list[str]:
    out = []
    counts = info.get("counts") if isinstance(info.get("counts"), dict) else {}
    for role in ("enrolment", "probe"):
        c = counts.get(role) or {}
        if not isinstance(c, dict) or not c:
            continue
        line = (f"{role}: {c.get('images')} images, {c.get('acquired_unperturbed')} acquired as captured, "
                f"{c.get('acquired')} acquired under the scenario ({c.get('fta_caused_by_conditions')} failure(s) to acquire caused by the conditions")
        if c.get("not_located"):
            line += f"; {c['not_located']} image(s) where the fixed geometry locator found no face, counted as failures to acquire"
        out.append(line + ")")
    return out


def scenario_section(metrics: dict) -> Any:
    """The Markdown ``Scenario`` section as ``(id, title, body)`` (markdown wraps it in its ``Section``)."""

    info = metrics["scenario"] if isinstance(metrics.get("scenario"), dict) else {}
    col = info.get("view_column")
    lines = [
        f"**{info.get('name')}**: {info.get('title')}. {info.get('purpose')}",
        "",
        f"References are the images with `{col} = {info.get('enrolment_view')}`, probes those with `{col} = {info.get('probe_view')}`; "
        "each side is captured under its own conditions, applied in order (a resolution step re-samples the face to that inter-eye "
        "distance and the steps after it act at that size; the image is then scaled back for the detector). Values and why:",
        "",
        "| side | step | condition | value | why this value |",
        "|---|---|---|---|---|",
    ]
    for r in _step_rows(info):
        lines.append("| " + " | ".join(x.replace("|", "/") for x in r) + " |")
    lines += [
        "",
        "Comparisons are **reference x probe**: mated = the reference and the probe of one subject; non-mated = the reference of "
        "one subject against the probe of another (every ordered pair). This non-mated set is not the all-pairs set of the plain "
        "protocol (no reference x reference or probe x probe pairs), so FMR here is not comparable cell by cell with a run "
        "without scenario. Target-FMR thresholds are calibrated on this scenario's own non-mated comparisons (as an operator "
        "would calibrate on the deployment); the nominal threshold is the model's published one.",
        "",
    ]
    lines += [f"- {x}" for x in _count_lines(info)]
    src = [str(x) for x in info.get("sources") or []] if isinstance(info.get("sources"), list) else []
    if src:
        lines += ["", "Sources:", ""] + [f"- {s}" for s in src]
    lines += ["", f"Definitions and the reasoning for every value: [{SCENARIO_DOC}]({_doc_link(metrics)})."]
    return ("scenario", f"Scenario: {info.get('name')}", "\n".join(lines))


def scenario_html_section(metrics: dict, *, bullets: Any, paragraph: Any, section: Any, table: Any) -> dict:
    """The same section built with :mod:`bench.report.html`'s block builders (passed in: no import cycle)."""

    info = metrics["scenario"] if isinstance(metrics.get("scenario"), dict) else {}
    col = info.get("view_column")
    blocks = [
        paragraph(f"{info.get('name')}: {info.get('title')}. {info.get('purpose')}"),
        paragraph(f"References: images with {col} = {info.get('enrolment_view')}; probes: images with {col} = {info.get('probe_view')}. "
                  "Each side's conditions are applied in order (a resolution step re-samples the face to that inter-eye distance and "
                  "the steps after it act at that size)."),
        table("Acquisition conditions per side", ["side", "step", "condition", "value", "why this value"], _step_rows(info)),
        paragraph("Comparisons are reference x probe: mated = reference and probe of one subject; non-mated = reference of one "
                  "subject against the probe of another (every ordered pair). This is not the all-pairs non-mated set of a run "
                  "without scenario. Target-FMR thresholds are calibrated on this scenario's non-mated comparisons."),
        bullets(_count_lines(info)),
    ]
    if isinstance(info.get("sources"), list) and info["sources"]:
        blocks.append(bullets([f"Source: {s}" for s in info["sources"]]))
    blocks.append(paragraph(f"Definitions and reasoning: {SCENARIO_DOC} in the fvbench repository."))
    return section(f"Scenario: {info.get('name')}", blocks, id="scenario")
