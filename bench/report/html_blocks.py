"""The page model of fvbench's web pages (``report.html``) and its rendering with Jinja2.

A page is a plain dict (:func:`page`) of sections (:func:`section`) holding blocks
(:func:`paragraph`, :func:`note`, :func:`bullets`, :func:`table`, :func:`figure`,
:func:`preformatted`, :func:`key_values`), rendered by one template
(``templates/page.html.j2``, autoescaping on, a Content-Security-Policy that forbids any
network access or script) and one style sheet readable on a phone. Also the number
formatting and the provenance blocks every page shares. The pages themselves live in
:mod:`bench.report.html` (run, sweep, folder dispatch),
:mod:`bench.report.identification_html` and :mod:`bench.report.leaderboard_html`.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from pathlib import Path
from typing import Any, Iterable, Sequence

import jinja2

import bench
from bench.errors import DataError

__all__ = ["HTML_FILE", "page", "section", "paragraph", "note", "bullets", "table", "figure", "preformatted", "key_values",
           "render_page", "write_page"]

HTML_FILE = "report.html"
_TEMPLATES = Path(__file__).with_name("templates")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MAX_FIGURE_BYTES = 20 * 1024 * 1024
def page(title: str, sections: Sequence[dict], *, subtitle: str = "", footer: str = "") -> dict:
    """A page: ``title``, ``subtitle``, ``sections`` (from :func:`section`) and a footer line."""
    return {
        "title": str(title), "subtitle": str(subtitle), "sections": list(sections),
        "footer": footer or f"Written by fvbench {bench.__version__} from the files of this folder; self-contained (no network).",
        "generator_version": bench.__version__,
    }


def _anchor(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "s"
    out, i = base, 2
    while out in taken:
        out, i = f"{base}-{i}", i + 1
    taken.add(out)
    return out


def section(title: str, blocks: Iterable[dict] = (), children: Iterable[dict] = (), *, id: str | None = None) -> dict:
    """A level-2 section (listed in the table of contents) with blocks and level-3 ``children``."""
    return {"id": id, "title": str(title), "blocks": list(blocks), "children": list(children)}


def paragraph(text: str) -> dict:
    """A paragraph of plain text (escaped)."""
    return {"kind": "p", "text": str(text)}


def note(text: str) -> dict:
    """A highlighted paragraph (warnings the reader must not miss)."""
    return {"kind": "note", "text": str(text)}


def bullets(items: Iterable[str]) -> dict:
    """A bulleted list of plain-text items."""
    return {"kind": "list", "items": [str(i) for i in items]}


def table(caption: str, head: Sequence[str], rows: Sequence[Sequence[Any]], *, numeric: Iterable[int] = ()) -> dict:
    """A table; the first cell of each row is its header.

    A cell is a string or a list of strings (first line, then smaller lines below it,
    e.g. counts and interval). ``numeric``: column indices aligned right.
    """
    norm = [[c if isinstance(c, str) else [str(x) for x in c] if isinstance(c, (list, tuple)) else str(c) for c in r] for r in rows]
    return {"kind": "table", "caption": str(caption), "head": [str(h) for h in head], "rows": norm,
            "numeric": sorted(set(numeric)), "id": None}


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or not data.startswith(_PNG_MAGIC) or data[12:16] != b"IHDR":
        raise DataError("not a PNG file")
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def figure(folder: Path, name: str, *, alt: str, caption: str = "") -> dict | None:
    """An embedded PNG of ``folder`` (a plain file directly inside it), or None when absent.

    Raises
    ------
    DataError
        When the file is a link, lies outside the folder, is too large (> 20 MiB) or is not a PNG.
    """
    folder = Path(folder)
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise DataError(f"figure name {name!r}: expected a file name inside {folder}")
    p = folder / name
    if not p.exists() and not p.is_symlink():
        return None
    if p.is_symlink() or not p.is_file():
        raise DataError(f"{p}: figure is a link or not a regular file; refusing to embed it")
    if p.stat().st_size > _MAX_FIGURE_BYTES:
        raise DataError(f"{p}: figure larger than {_MAX_FIGURE_BYTES} bytes; refusing to embed it")
    data = p.read_bytes()
    try:
        w, h = _png_size(data)
    except DataError:
        raise DataError(f"{p}: not a PNG image (expected the PNG signature); refusing to embed it") from None
    return {"kind": "figure", "src": "data:image/png;base64," + base64.b64encode(data).decode("ascii"),
            "alt": str(alt), "caption": str(caption or alt), "width": w, "height": h, "id": None, "file": name}


def preformatted(summary: str, text: str) -> dict:
    """Collapsed preformatted text (e.g. the resolved config)."""
    return {"kind": "pre", "summary": str(summary), "text": str(text)}


def key_values(items: Iterable[tuple[str, Any]]) -> dict:
    """A definition list of ``(key, value)`` pairs."""
    return {"kind": "kv", "items": [(str(k), "" if v is None else str(v)) for k, v in items]}


# --------------------------------------------------------------------------- rendering


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,  # every template: labels and config values are untrusted
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
    )


def _assign_ids(pg: dict) -> dict:
    taken: set[str] = set()
    for s in pg["sections"]:
        s["id"] = _anchor(s["id"] or s["title"], taken)
        for c in s["children"]:
            c["id"] = _anchor(c["id"] or f"{s['id']}-{c['title']}", taken)
        for b in [*s["blocks"], *(b for c in s["children"] for b in c["blocks"])]:
            if b.get("kind") in ("table", "figure"):
                b["id"] = _anchor(f"{b['kind']}-{b.get('caption') or b.get('alt')}", taken)
    return pg


def render_page(pg: dict) -> str:
    """The HTML text of a page built with :func:`page` (deterministic for equal input)."""
    pg = _assign_ids(json.loads(json.dumps(pg)))  # a private deep copy; tuples become lists
    return _environment().get_template("page.html.j2").render(page=pg)


def write_page(folder: Path, pg: dict, name: str = HTML_FILE) -> Path:
    """Render ``pg`` and write it to ``folder/name`` (UTF-8); return the path."""
    path = Path(folder) / name
    path.write_bytes(render_page(pg).encode("utf-8"))
    return path


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _fin(x: Any) -> bool:
    return math.isfinite(_num(x))


def _g(x: Any, digits: int = 3) -> str:
    v = _num(x)
    return f"{v:.{digits}g}" if math.isfinite(v) else ""


def _int(x: Any) -> int:
    v = _num(x)
    return int(v) if math.isfinite(v) else 0


def _jsonload(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read it as JSON ({err})") from err
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object at the top level")
    return doc


def _safe_name(attribute: str) -> str:
    from bench.report.plots import safe_name

    return safe_name(str(attribute))


def _provenance_blocks(doc: dict, data_file: str) -> list[dict]:
    d, m = doc.get("dataset") or {}, doc.get("model") or {}
    prov = doc.get("provenance") or {}
    code = prov.get("code") or {}
    items = [
        ("run name", doc.get("run_name")),
        ("dataset manifest SHA-256", d.get("manifest_sha256")),
        ("model", m.get("name")),
        ("fvbench version", code.get("fvbench")),
        ("git commit", code.get("git_commit")),
        ("uncommitted changes in bench/ or configs/", code.get("git_dirty")),
    ]
    for f, h in sorted((m.get("weights_sha256") or {}).items()):
        items.append((f"weights SHA-256: {f}", h))
    pk = sorted((prov.get("packages") or {}).items())
    blocks = [key_values(items)]
    if pk:
        blocks.append(table("Package versions", ["package", "version"], [[k, str(v)] for k, v in pk]))
    from bench.report.folder import RUNTIME_KEYS

    cfg = doc.get("config")
    if isinstance(cfg, dict):  # what was measured; how it was run (paths, progress, overwrite, ...) is in the data file
        cfg = {k: v for k, v in cfg.items() if k not in RUNTIME_KEYS}
    blocks.append(preformatted("Configuration of the experiment (run-time settings such as paths: in the data file)",
                               json.dumps(cfg, indent=2, sort_keys=True)))
    blocks.append(paragraph(f"Everything above comes from {data_file} in this folder; files.sha256 lists the SHA-256 of every "
                            "published file and fvbench-verify recomputes the numbers."))
    return blocks
