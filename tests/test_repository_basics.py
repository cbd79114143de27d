"""Repository basics a newcomer expects (issue #10): a licence that matches pyproject,
a citation file, a changelog, and a constraints file that pins every package a number
can depend on (the packages metrics.json records under provenance.packages)."""

from __future__ import annotations

import re
from pathlib import Path

from bench import __version__
from bench.report.provenance import _PACKAGES

REPO = Path(__file__).resolve().parents[1]


def test_licence_file_matches_pyproject():
    assert re.search(r'^license = "MIT"$', (REPO / "pyproject.toml").read_text(), re.M)
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_citation_file_names_this_version():
    text = (REPO / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in text
    assert re.search(rf"^version: {re.escape(__version__)}$", text, re.M)
    assert "license: MIT" in text


def test_changelog_has_an_unreleased_section_and_this_version():
    text = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text and f"## [{__version__}]" in text


def test_constraints_pin_every_package_a_number_depends_on():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: expected name==version, got {line!r}"
            pins[name.lower().replace("_", "-")] = version
    missing = [p for p in _PACKAGES if p.lower().replace("_", "-") not in pins]
    assert missing == []
