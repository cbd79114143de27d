"""What the consented-dataset loaders share: the missing-root message, label provenance, safe cell parsing.

Used by :mod:`bench.data.fhibe`, :mod:`bench.data.cfd` and :mod:`bench.data.ccv2`
(issue #14). Each of those datasets is gated (a registration form or a data-use
agreement), so the harness cannot download it: a missing root names the layout the
loader reads, the licence page and the one step that gets the data
(:func:`missing_root`). Labels are never predicted: every attribute's source is
stated per attribute (:func:`label_source_text`), and the per-row ``label_source``
of the manifest carries that text into every report (``docs/datasets.md``).
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from bench.errors import DataError

__all__ = ["DatasetCard", "missing_root", "label_source_text", "parse_list_cell", "file_sha256", "subject_set_sha256", "MULTI_JOIN"]

#: Joins the choices of a multi-selection answer into one group label (e.g. two pronoun
#: sets ``"He/him/his + They/them/their"``); a multi-selection is its own group, never
#: split or re-assigned (as London's ``east_asian/white``).
MULTI_JOIN = " + "

#: Longest list cell :func:`parse_list_cell` parses (characters): a metadata file is
#: untrusted input, and a huge literal must not stall the parser.
_MAX_CELL = 4096


@dataclass(frozen=True)
class DatasetCard:
    """Where a gated dataset comes from, for messages and the README table.

    Attributes
    ----------
    name : str
        Display name, e.g. ``"FHIBE"``.
    layout : str
        The folder layout the loader reads, one line.
    licence_url : str
        The page with the licence or data-use terms.
    get : str
        The one step that gets the data (these sets cannot be downloaded by the harness).
    """

    name: str
    layout: str
    licence_url: str
    get: str


def missing_root(card: DatasetCard, root: Path, what: str = "root") -> DataError:
    """The one-line error for a dataset folder that is not there.

    Returns (does not raise) a :class:`DataError` naming the path, the expected layout,
    the licence page and how to get the data.
    """
    return DataError(
        f"{card.name} {what} {str(root)!r} not found; expected {card.layout}; "
        f"licence: {card.licence_url}; get it: {card.get}"
    )


def label_source_text(sources: Mapping[str, str]) -> str:
    """One line saying how each attribute was obtained, grouped by source.

    Parameters
    ----------
    sources : mapping
        attribute -> ``"self-reported"`` | ``"annotated"`` | ...

    Returns
    -------
    str
        e.g. ``"self-reported: age, gender | annotated: monk_skin_tone"`` (sources in
        first-seen order); the manifest's ``label_source`` column, printed in every report.
    """
    by: dict[str, list[str]] = {}
    for attr, src in sources.items():
        by.setdefault(str(src), []).append(str(attr))
    if len(by) == 1:
        return next(iter(by))
    return " | ".join(f"{src}: {', '.join(attrs)}" for src, attrs in by.items())


def parse_list_cell(value: str, *, where: str) -> list[str]:
    """A multi-selection cell written as a Python/JSON list literal, e.g. ``"['0. She/her/hers']"``.

    Parsed with :func:`ast.literal_eval` (literals only: nothing is executed); a plain
    string without brackets is one choice. A leading option number (``"0. "``) is
    removed, choices are stripped, de-duplicated and sorted.

    Raises
    ------
    DataError
        A cell longer than 4096 characters, or one that is not a list of strings (``where`` names it).
    """
    text = str(value).strip()
    if not text:
        return []
    if len(text) > _MAX_CELL:
        raise DataError(f"{where}: cell of {len(text)} characters (limit {_MAX_CELL}); expected a short list such as \"['0. She/her/hers']\"")
    if text.startswith("["):
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
            raise DataError(f"{where}: {text[:60]!r} is not a list literal such as \"['0. She/her/hers']\" ({type(err).__name__})") from err
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, (str, int)) for i in items):
            raise DataError(f"{where}: {text[:60]!r} is not a list of strings")
    else:
        items = [text]
    out = set()
    for item in items:
        s = str(item).strip()
        head, dot, rest = s.partition(". ")
        if dot and head.isdigit():
            s = rest.strip()
        if s:
            out.add(s)
    return sorted(out)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def subject_set_sha256(subject_ids) -> str:
    """SHA-256 of the sorted, distinct subject ids joined by newlines.

    One digest for the whole set: a later release with the same digest holds exactly
    the same people; it names no one (``bench.verify_dataset_revision``).
    """
    ids = sorted({str(s) for s in subject_ids})
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()
