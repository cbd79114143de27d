"""``fvbench-verify`` checks of ``report.html`` and of leaderboard folders (issue #15).

``report.html`` is a pure function of a folder's published data files (``metrics.json``,
``sweep.json``/``sweep.csv`` or ``sources.json``/``leaderboard.csv``) and its PNG figures
(:mod:`bench.report.html`). The verifier first checks those data files against what they
are computed from; :func:`html_check` then re-renders the page from them and compares it
byte for byte. So an edited number, an injected ``<script>`` or an external URL in
``report.html`` is a mismatch named ``report.html``; a published folder without the page
is one too (every run, sweep, identification run and leaderboard writes it).

A leaderboard folder (``sources.json``) is verified by :func:`verify_leaderboard_report`:
:func:`bench.aggregate.verify_leaderboard` (sources' ``metrics.json`` SHA-256, every table
recomputed from its sources, ``files.sha256``, ``report.html``) wrapped as a
:class:`bench.verify_core.VerifyReport`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["html_check", "is_leaderboard", "verify_leaderboard_report", "HTML_CHECK"]

HTML_CHECK = "report.html"


def html_check(folder: str | Path):
    """One :class:`bench.verify_core.Check` named ``report.html``: the page equals its re-rendering."""
    from bench.report.html import check_html_report
    from bench.verify_core import Check

    problems = check_html_report(Path(folder))
    if problems:
        return Check(HTML_CHECK, "mismatch", "\n".join(p.removeprefix("report.html: ") for p in problems))
    return Check(HTML_CHECK, "ok", "equal, byte for byte, to the page the verified data files and figures render to")


def is_leaderboard(folder: str | Path) -> bool:
    """True for a leaderboard folder: ``sources.json`` and no ``metrics.json`` / ``sweep.json``."""
    folder = Path(folder)
    return (folder / "sources.json").is_file() and not any((folder / f).exists() for f in ("metrics.json", "sweep.json"))


def verify_leaderboard_report(folder: str | Path):
    """Verify a leaderboard folder; return a :class:`bench.verify_core.VerifyReport`.

    One check per published file named in a problem (``leaderboard.csv``,
    ``leaderboard_<d>.md``, ``sources.json``, ``report.html``, ``files.sha256``, a source
    folder), or one ``leaderboard`` check when all agree.
    """
    from bench.aggregate import verify_leaderboard
    from bench.verify_core import Check, VerifyReport

    folder = Path(folder)
    report = VerifyReport(run_dir=folder, kind="leaderboard")
    problems = verify_leaderboard(folder)
    by_name: dict[str, list[str]] = {}
    for p in problems:
        head, _, rest = p.partition(": ")
        name = head if rest and " " not in head.strip() else "leaderboard"
        by_name.setdefault(name, []).append(rest if name == head else p)
    for name, lines in by_name.items():
        report.checks.append(Check(name, "mismatch", "\n".join(lines)))
    if not problems:
        report.checks.append(Check("leaderboard", "ok", "sources unchanged; tables, sources.json and report.html recomputed equal; files.sha256 holds"))
    return report
