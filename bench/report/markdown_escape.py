"""Markdown text safe to publish when it carries untrusted labels: no raw HTML passes through.

Used by every ``report.md`` writer (:mod:`bench.report.markdown`, :mod:`bench.report.sweep`,
:mod:`bench.report.identification`).
"""

from __future__ import annotations

import re

__all__ = ["escape_raw_html"]

_CODE_SPAN = re.compile(r"(`[^`\n]*`)")
_RAW_HTML = re.compile(r"<(?=[A-Za-z/!?])|&(?=#?[A-Za-z0-9]+;)")


def escape_raw_html(text: str) -> str:
    """Neutralise raw HTML in Markdown text outside code spans (labels come from untrusted data).

    Markdown renderers pass raw HTML through, so a group label ``<script>...`` would run in a
    reader's browser. A ``<`` that could open a tag, comment or processing instruction (before a
    letter, ``/``, ``!``, ``?``) becomes ``&lt;`` and an ``&`` that would form a character reference
    ``&amp;`` (CommonMark §6.6 raw HTML, §2.5 entity references); a lone ``>`` opens no tag and is
    kept. ``<30``, ``a < b``, ``R&D`` stay as written, as does everything inside backtick code
    spans (shown literally by renderers).
    """
    esc = {"<": "&lt;", "&": "&amp;"}
    parts = _CODE_SPAN.split(text)
    return "".join(p if i % 2 else _RAW_HTML.sub(lambda m: esc[m.group(0)], p) for i, p in enumerate(parts))
