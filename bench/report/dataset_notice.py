"""Notices a report must show about its data and comparisons, from the published data only.

- **Consent**: a dataset config states ``consent:`` (e.g. ``web_collected_without_consent`` for
  RFW and BFW, whose images were collected from the web without the consent of the people shown).
  :func:`consent_record` copies it into ``metrics.json`` ``dataset.consent`` with its notice;
  ``report.md`` and ``report.html`` print the notice at the top (:func:`consent_notice`).
- **Pair list**: which comparisons the run made (all pairs, or a pair list) and the file that
  reruns exactly them (:func:`pair_list_notice`; docs/protocol.md §10).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONSENT_NOTICES", "consent_record", "consent_notice", "pair_list_notice", "pair_list_protocol"]

#: Consent status (``dataset.consent``) -> notice printed at the top of every report (None: no notice).
CONSENT_NOTICES: dict[str, str | None] = {
    "consented": None,
    "synthetic": None,
    "web_collected_without_consent": (
        "The images of this dataset were collected from the web without the consent of the people shown. "
        "They are used here only to measure demographic differentials of error rates, as the field's standard bias "
        "protocols (RFW, BFW) do. Do not reuse these results or the files of this folder to build or tune systems that "
        "identify people."
    ),
    "unknown": "The consent status of the people in this dataset is not known; treat these results as derived from images "
               "whose subjects may not have consented.",
}


def consent_record(config: dict | None) -> dict:
    """``{"consent": {status, notice}}`` for ``metrics.json`` ``dataset``, or ``{}`` when the config states none.

    An unlisted status is kept verbatim with a generic notice (never dropped).
    """
    dcfg = (config or {}).get("dataset") if isinstance(config, dict) else None
    status = dcfg.get("consent") if isinstance(dcfg, dict) else None
    if status is None:
        return {}
    status = str(status)
    notice = CONSENT_NOTICES.get(status, f"Consent status of this dataset, as its config states it: {status}.")
    return {"consent": {"status": status, "notice": notice}}


def consent_notice(metrics: dict) -> str | None:
    """The consent notice of a published run (``dataset.consent.notice``), or None."""
    c = (metrics.get("dataset") or {}).get("consent")
    if isinstance(c, dict) and c.get("notice"):
        return f"Consent: {c.get('status')}. {c['notice']}"
    return None


def pair_list_protocol(result: Any) -> dict:
    """``metrics.json`` ``protocol`` wording of a pair-list run (``{}`` for an all-pairs run)."""
    info = (getattr(result, "dataset_info", None) or {}).get("pair_list")
    if not info:
        return {}
    files = ", ".join(info.get("files") or [])
    return {
        "mated": f"the pairs listed as mated in {files} ({', '.join(info.get('formats') or [])} format)",
        "nonmated": f"the pairs listed as non-mated in {files}",
        "fta": "listed pairs with an image that failed to acquire are not scored; they are counted per group "
               "(generalized_rates.csv lost_mated / lost_nonmated) and folded into the generalized rates",
    }


def pair_list_notice(metrics: dict) -> str | None:
    """One paragraph: the pair list the run read and the one it wrote (None when neither)."""
    d = metrics.get("dataset") or {}
    info = d.get("pair_list")
    written = (metrics.get("protocol") or {}).get("pair_list")
    parts = []
    if isinstance(info, dict):
        lost = info.get("lost_to_fta") or {}
        parts.append(
            f"Pair-list protocol: the comparisons are the {int(info.get('pairs_listed') or 0):,} pairs listed in "
            f"{', '.join(info.get('files') or [])} ({', '.join(sorted(set(info.get('formats') or [])))} format); "
            f"{int(info.get('pairs_withheld') or 0):,} touch withheld subjects and are left out; "
            f"{int(lost.get('mated') or 0):,} mated and {int(lost.get('nonmated') or 0):,} non-mated listed pairs touch an image "
            "that failed to acquire: not scored, counted in the generalized rates (docs/protocol.md §10).")
    if isinstance(written, dict):
        design = str(written.get("design") or "").strip()
        scenario = (metrics.get("protocol") or {}).get("scenario") or metrics.get("scenario")
        name = scenario.get("name") if isinstance(scenario, dict) else scenario if isinstance(scenario, str) else None
        if name:  # a scenario's pairs come from its reference x probe design, not a listed file
            if design in ("", "pair list"):  # the label recorded before the design was named
                design = "reference x probe"
            design = f"scenario {name}, {design}"
        parts.append(
            f"This run's comparisons ({int(written.get('pairs') or 0):,}"
            + (f": {design}" if design and design != "pair list" else "") + f") are listed in "
            f"`{written.get('file')}`; `protocol.pair_list=<that file>` reruns exactly them.")
    return " ".join(parts) or None
