"""Shared base of :mod:`bench.verify`: checks and reports, and reading an untrusted folder as plain data.

Everything ``fvbench-verify`` reads from a folder goes through this module:

- a file is read only if it is a regular file inside the folder (a symbolic link that
  resolves outside the folder is refused), at most :data:`MAX_FILE_BYTES` bytes;
- text must be UTF-8; JSON is parsed with :func:`json.loads` and nothing else (no YAML,
  no OmegaConf: ``${...}`` stays a plain string and is never resolved), refusing
  ``NaN``/``Infinity`` constants, numbers that overflow to infinity and integers beyond
  :data:`MAX_INT` (the writer never produces any of them);
- CSV files are parsed by pandas from the decoded text, their columns checked;
- JSON documents are checked against a small schema (:func:`require`) before any value
  is used, so a wrong type is named with its key path instead of failing later.

Every problem raises :class:`~bench.errors.DataError` with one line that names the file
(and key or column) and what was expected; :func:`bench.verify.verify_main` prints it
and exits 2. Nothing here imports, instantiates or resolves anything a folder names.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import DataError

#: ``ok``: recomputed and equal; ``mismatch``: recomputed and different (exit 1);
#: ``skipped``: could not be recomputed here (data, dataset or model absent);
#: ``info``: reported, never a failure (e.g. package versions changed).
CHECK_STATUSES = ("ok", "mismatch", "skipped", "info")
_MAX_LISTED = 8


@dataclass(frozen=True)
class Check:
    """Outcome of one verification.

    Attributes
    ----------
    name : str
        What was checked, e.g. ``"per_group.csv"`` or ``"dataset"``.
    status : str
        One of :data:`CHECK_STATUSES`.
    detail : str
        What was compared, or the first differences (cell, stored, recomputed).
    """

    name: str
    status: str
    detail: str = ""


@dataclass
class VerifyReport:
    """All checks of one folder.

    Attributes
    ----------
    run_dir : pathlib.Path
    checks : list of Check
    kind : str
        ``run``, ``sweep``, ``calibration`` or ``power``.
    """

    run_dir: Path
    checks: list[Check] = field(default_factory=list)
    kind: str = "run"

    @property
    def mismatches(self) -> list[Check]:
        """Checks whose recomputation differs from what the folder holds."""
        return [c for c in self.checks if c.status == "mismatch"]

    @property
    def skipped(self) -> list[Check]:
        """Checks that could not be run here."""
        return [c for c in self.checks if c.status == "skipped"]

    @property
    def ok(self) -> bool:
        """True when no check found a mismatch."""
        return not self.mismatches

    def status(self, name: str) -> str:
        """Status of the check called ``name`` (KeyError if there is none)."""
        for c in self.checks:
            if c.name == name:
                return c.status
        raise KeyError(f"no check named {name!r}; checks: {[c.name for c in self.checks]}")

    def detail(self, name: str) -> str:
        """Detail of the check called ``name`` (KeyError if there is none)."""
        for c in self.checks:
            if c.name == name:
                return c.detail
        raise KeyError(f"no check named {name!r}; checks: {[c.name for c in self.checks]}")

    def to_text(self) -> str:
        """Human-readable summary, one line per check (details indented)."""
        lines = [f"fvbench-verify {self.run_dir} ({self.kind} folder)"]
        for c in self.checks:
            lines.append(f"  [{c.status:8}] {c.name}")
            for d in c.detail.splitlines():
                lines.append(f"             {d}")
        verdict = "OK" if self.ok else f"MISMATCH in {len(self.mismatches)} check(s)"
        if self.skipped:
            verdict += f" ({len(self.skipped)} skipped)"
        lines.append(verdict)
        return "\n".join(lines)


def shipped_model_config(name: str) -> dict | None:
    """``configs/model/<name>.yaml`` of this installation, parsed as plain YAML (None if absent)."""
    import yaml

    if not name.replace("_", "").replace("-", "").isalnum():
        return None
    path = Path(__file__).resolve().parents[1] / "configs" / "model" / f"{name}.yaml"
    if not path.is_file():
        return None
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return doc if isinstance(doc, dict) else None


def check_model(model: dict, cfg_model: dict, thresholds: list[dict]) -> Check:
    """Model name, metric, licence, nominal threshold and its source vs the weights registry and the shipped
    ``configs/model/<name>.yaml`` (looked up by the recorded name; read as plain YAML)."""
    from bench.models.weights import WEIGHTS_REGISTRY

    name = model["name"]
    diffs = []
    if cfg_model and cfg_model.get("name") != name:
        diffs.append(f"model.name is {name!r}, but the recorded config model.name is {cfg_model.get('name')!r}")
    if name == "generator":
        if model.get("weights_sha256") is not None or model.get("nominal_threshold") is not None:
            diffs.append("model 'generator' (synthetic embeddings) records weights or a nominal threshold")
        return _result("model", diffs, "synthetic generator: no weights, no nominal threshold")
    shipped = shipped_model_config(name)
    if shipped is None:
        return Check("model", "skipped" if not diffs else "mismatch",
                     _listing(diffs) if diffs else f"model {name!r} has no shipped config here (configs/model/{name}.yaml); its facts cannot be checked")
    for key in ("metric", "nominal_threshold", "nominal_threshold_source", "family", "embedding_dim"):
        if key in model and not _same_cell(model.get(key), shipped.get(key), 0.0):
            diffs.append(f"model.{key} is {model.get(key)!r}, but the shipped configs/model/{name}.yaml says {shipped.get(key)!r}")
        if cfg_model and key in cfg_model and not _same_cell(cfg_model.get(key), shipped.get(key), 0.0):
            diffs.append(f"config model.{key} is {cfg_model.get(key)!r}, but the shipped configs/model/{name}.yaml says {shipped.get(key)!r}")
    if cfg_model and "licence" in cfg_model and cfg_model.get("licence") != shipped.get("licence"):
        diffs.append(f"config model.licence is {cfg_model.get('licence')!r}, but the shipped configs/model/{name}.yaml says {shipped.get('licence')!r}")
    entry = WEIGHTS_REGISTRY.get(name)
    if entry is not None and model.get("licence") != entry.licence:
        diffs.append(f"model.licence is {model.get('licence')!r}, but the weights registry says {entry.licence!r}")
    for t in thresholds:
        if t["kind"] == "nominal":
            if not _same_cell(t.get("threshold"), shipped.get("nominal_threshold"), 0.0):
                diffs.append(f"threshold 'nominal' is {t.get('threshold')!r}, but the shipped config says {shipped.get('nominal_threshold')!r}")
            if t.get("source") != shipped.get("nominal_threshold_source"):
                diffs.append(f"threshold 'nominal' source is {t.get('source')!r}, but the shipped config says {shipped.get('nominal_threshold_source')!r}")
    return _result("model", diffs, f"{name}: metric, licence, nominal threshold and its source equal configs/model/{name}.yaml"
                   + (" and the weights registry" if entry else ""))


def check_weights(model: dict) -> Check:
    """Recorded weights SHA-256 vs :data:`bench.models.weights.WEIGHTS_REGISTRY` (looked up by model name)."""
    from bench.models.weights import WEIGHTS_REGISTRY

    name, stored = model["name"], model.get("weights_sha256")
    if "weights_verified" in model:  # the run's own statement, recomputed from the recorded hashes
        from bench.models.weights import weights_verification

        want = weights_verification(stored if isinstance(stored, dict) else None)
        got = {k: model.get(k) for k in want}
        if got != want:
            return Check("weights", "mismatch", f"model.weights_verified / unverified_weights are {got}, but the recorded hashes "
                         f"against the shipped registry give {want}")
    if name == "generator":
        return _result("weights", [] if stored is None else ["model 'generator' records weights"], "no model weights (embeddings generated, not learned)")
    entry = WEIGHTS_REGISTRY.get(name)
    if entry is None:
        return Check("weights", "skipped", f"model {name!r} is not in the shipped weights registry ({sorted(WEIGHTS_REGISTRY)}): custom weights cannot be checked")
    if not isinstance(stored, dict):
        return Check("weights", "mismatch", f"model.weights_sha256 is {stored!r}; expected the SHA-256 of each of {[f.filename for f in entry.files]}")
    # Every recorded file must be a registry file (the recogniser's own, or a detector's under
    # "<detector>/"), or a file derived deterministically from one (weights.derived_weights).
    from bench.models.weights import derived_weights

    by_name: dict[str, list[tuple[str, str | None]]] = {}
    for entry_name, e in WEIGHTS_REGISTRY.items():
        for f in e.files:
            by_name.setdefault(f.filename, []).append((entry_name, f.sha256))
    derived = derived_weights()
    expected = {f.filename: f.sha256 for f in entry.files}
    diffs, unknown = [], []
    own_recorded = [k for k in stored if "/" not in k]
    if not any(k in derived for k in own_recorded):  # a pinned conversion stands in for the model's downloadable file
        diffs += [f"{fname}: not recorded" for fname in expected if fname not in stored]
    for key, digest in sorted(stored.items()):
        fname = key.rsplit("/", 1)[-1]
        if fname in derived:
            if digest != derived[fname]:
                diffs.append(f"{key}: recorded {digest!r}, the pinned conversion gives {derived[fname]}")
            continue
        candidates = by_name.get(fname)
        if not candidates:
            diffs.append(f"recorded file {key!r} is not a weights file of the shipped registry")
        elif all(sha is None for _, sha in candidates):
            unknown.append(key)
        elif digest not in {sha for _, sha in candidates}:
            diffs.append(f"{key}: recorded {digest!r}, registry {' or '.join(sha for _, sha in candidates if sha)}")
    if diffs:
        return Check("weights", "mismatch", "\n".join(diffs))
    if unknown:
        return Check("weights", "skipped", f"the registry publishes no SHA-256 for {unknown} (pinned on first download): not checkable")
    return Check("weights", "ok", f"{len(stored)} weight file SHA-256 equal the registry's (or its pinned conversions): {sorted(stored)}")



# ----------------------------------------------------------------------------- comparison helpers
def _as_float(x: Any) -> float | None:
    """Float value of a cell (None / '' / NA -> NaN); None if the cell is not numeric."""
    if x is None or x is pd.NA or (isinstance(x, str) and x.strip() == ""):
        return math.nan
    if isinstance(x, (bool, np.bool_)):
        return float(x)
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError):
        return None


def _same_cell(a: Any, b: Any, rtol: float) -> bool:
    """Equal as numbers (integers exactly, NaN == NaN, floats within ``rtol``) or as strings."""
    x, y = _as_float(a), _as_float(b)
    if x is None or y is None:
        return _str(a) == _str(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    if x.is_integer() and y.is_integer():
        return x == y
    return math.isclose(x, y, rel_tol=rtol, abs_tol=rtol * 1e-3)


def _str(x: Any) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x)


def _key(row: pd.Series | dict, cols: Sequence[str]) -> tuple[str, ...]:
    return tuple(_str(row[c]) for c in cols)


def _compare_tables(expected: pd.DataFrame, stored: pd.DataFrame, *, key: Sequence[str], rtol: float, json_side: bool = False) -> tuple[list[str], list[str]]:
    """Cell-by-cell differences between a recomputed and a stored table.

    Rows are matched on ``key``; every column of ``expected`` must be in ``stored``
    and equal (:func:`_same_cell`). With ``json_side`` the stored table comes from
    ``metrics.json``, which writes every non-finite number (NaN, +/-inf) as null.

    Returns
    -------
    diffs : list of str
        ``"<key> <column>: stored X, recomputed Y"`` lines, plus missing/extra rows.
    unverified : list of str
        Stored columns that were not recomputed (reported, not compared).
    """
    missing_cols = [c for c in expected.columns if c not in stored.columns]
    if missing_cols:
        return [f"stored table lacks column(s) {missing_cols}"], []
    unverified = [c for c in stored.columns if c not in expected.columns]
    values = [c for c in expected.columns if c not in key]
    exp = {_key(r, key): r for _, r in expected.iterrows()}
    sto: dict[tuple[str, ...], pd.Series] = {}
    diffs: list[str] = []
    for _, r in stored.iterrows():
        k = _key(r, key)
        if k in sto:
            diffs.append(f"{'/'.join(k)}: duplicate row")
        sto[k] = r
    diffs += [f"{'/'.join(k)}: row missing from the stored table" for k in exp if k not in sto]
    diffs += [f"{'/'.join(k)}: stored row that the data do not produce" for k in sto if k not in exp]
    for k, e in exp.items():
        if k not in sto:
            continue
        s = sto[k]
        name = "/".join(x for x in k if x)
        for c in values:
            ev = e[c]
            if json_side and isinstance(ev, (float, np.floating)) and not math.isfinite(float(ev)):
                ev = math.nan
            if not _same_cell(s[c], ev, rtol):
                diffs.append(f"{name} {c}: stored {_str(s[c])!r}, recomputed {_str(e[c])!r}")
    return diffs, unverified


def _listing(diffs: list[str]) -> str:
    shown = diffs[:_MAX_LISTED]
    more = f"\n... and {len(diffs) - len(shown)} more" if len(diffs) > len(shown) else ""
    return "\n".join(shown) + more


def _result(name: str, diffs: list[str], ok_detail: str) -> Check:
    return Check(name, "mismatch", _listing(diffs)) if diffs else Check(name, "ok", ok_detail)


def _table_check(name: str, diffs: list[str], unverified: list[str], n_rows: int, note: str = "") -> Check:
    if diffs:
        return Check(name, "mismatch", _listing(diffs))
    detail = f"{n_rows} rows equal"
    if unverified:
        detail += f"; column(s) not recomputed: {unverified}" + (f" ({note})" if note else "")
    return Check(name, "ok", detail)


def _json_table(rows: list[dict]) -> pd.DataFrame:
    """A metrics.json table as a DataFrame (text keys as strings, null as NaN)."""
    df = pd.DataFrame(rows)
    for c in ("attribute", "group", "group_a", "group_b", "threshold_name", "metric", "measure"):
        if c in df:
            df[c] = df[c].map(_str)
    return df




__all__ = ["Check", "VerifyReport", "CHECK_STATUSES", "MAX_FILE_BYTES", "MAX_INT", "folder_file", "read_text", "read_json", "read_csv", "require", "Number", "Int", "Str", "OptStr", "OptNumber"]

#: Largest file fvbench-verify reads (a metrics.json of 10^5 per-group rows is ~60 MB).
MAX_FILE_BYTES = 512 * 2**20
#: Largest integer accepted anywhere (2^53: counts beyond it are not exact in a float).
MAX_INT = 2**53


def folder_file(folder: Path, name: str) -> Path:
    """``folder/name`` if it is a regular file inside ``folder``; else raise DataError.

    Raises
    ------
    DataError
        The file is missing, is not a regular file, or is a symbolic link (or lies under
        one) that resolves outside ``folder``.
    """
    path = folder / name
    if not path.exists() and not path.is_symlink():
        raise DataError(f"{str(path)!r} not found")
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as err:
        raise DataError(f"{str(path)!r} cannot be resolved ({err}); expected a regular file inside the result folder") from err
    base = folder.resolve()
    if not real.is_relative_to(base):
        raise DataError(f"{str(path)!r} is a symbolic link to {str(real)!r}, outside the result folder; expected a regular file inside it")
    if not real.is_file():
        raise DataError(f"{str(path)!r} is not a regular file")
    return path


def read_text(path: Path, *, what: str) -> str:
    """The UTF-8 text of ``path`` (already checked by :func:`folder_file`).

    Raises
    ------
    DataError
        Larger than :data:`MAX_FILE_BYTES`, unreadable, or not UTF-8.
    """
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataError(f"{str(path)!r} is {size:,} bytes; expected {what} of at most {MAX_FILE_BYTES:,} bytes")
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{str(path)!r} cannot be read ({err.strerror or err})") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{str(path)!r} is not UTF-8 text (invalid byte at offset {err.start}); expected {what}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"the constant {name} (fvbench writes non-finite numbers as null)")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"the number {text[:40]} overflows to infinity")
    return x


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 16:
        raise ValueError(f"the integer {text[:40]}... has more than 16 digits")
    return int(text)


def read_json(path: Path, *, what: str) -> Any:
    """Parse ``path`` as strict JSON: plain dicts, lists, strings, finite numbers, bools, null.

    Strings are never interpreted (``"${oc.env:HOME}"`` stays those 16 characters).

    Raises
    ------
    DataError
        One line: the file, where parsing stopped and why, and ``what`` was expected.
    """
    text = read_text(path, what=what)
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except json.JSONDecodeError as err:
        raise DataError(f"{str(path)!r} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); expected {what}") from None
    except (ValueError, RecursionError) as err:
        raise DataError(f"{str(path)!r}: {err}; expected {what}") from None


def read_csv(path: Path, *, columns: Iterable[str], text_columns: Iterable[str] = ()) -> pd.DataFrame:
    """Parse a published CSV table (blank cells are missing values; text columns kept as text).

    Parameters
    ----------
    path : pathlib.Path
    columns : iterable of str
        Columns the table must have.
    text_columns : iterable of str
        Columns read as strings ("" where blank).

    Raises
    ------
    DataError
        Not UTF-8, not parseable, or lacking a required column (named).
    """
    text = read_text(path, what="a CSV table written by fvbench")
    text_columns = list(text_columns)
    try:
        df = pd.read_csv(io.StringIO(text), dtype={c: str for c in text_columns}, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise DataError(f"{str(path)!r} cannot be parsed as CSV ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{str(path)!r} lacks column(s) {missing}; expected the columns fvbench writes ({list(columns)})")
    for c in text_columns:
        if c in df.columns:
            df[c] = df[c].fillna("").astype(str)
    return df


_MANIFEST_LINE = re.compile(r"^[0-9a-f]{64}  (?P<name>[^\x00-\x1f\\]+)$")


def check_file_manifest(folder: Path) -> Check:
    """``files.sha256`` against the folder: every listed file unchanged, none missing, none added.

    Before anything is hashed: the manifest must be UTF-8 lines ``<64 hex>  <relative path>``
    with no ``..``, and no file in the folder (listed or not) may be a symbolic link that
    leaves it, so nothing outside the folder is ever read.

    Raises
    ------
    DataError
        A malformed manifest line or a symbolic link out of the folder (named).
    """
    from bench.report.folder import MANIFEST_FILE, read_file_manifest

    if not (folder / MANIFEST_FILE).exists() and not (folder / MANIFEST_FILE).is_symlink():
        return Check("files", "mismatch", f"{MANIFEST_FILE} is missing (folder not written by this fvbench version, or edited)")
    path = folder_file(folder, MANIFEST_FILE)
    for i, line in enumerate(read_text(path, what="sha256 / file name lines").splitlines(), 1):
        if not line.strip():
            continue
        hit = _MANIFEST_LINE.match(line)
        name = hit.group("name") if hit else ""
        parts = Path(name).parts
        if not hit or Path(name).is_absolute() or ".." in parts or not parts:
            raise DataError(f"{str(path)!r} line {i} is {line[:80]!r}; expected '<64 hex digits>  <path inside the folder>'")
        if (folder / name).exists() or (folder / name).is_symlink():
            folder_file(folder, name)
    for root, dirs, files in os.walk(folder, followlinks=False):
        for entry in [*files, *dirs]:
            p = Path(root) / entry
            if p.is_symlink():
                folder_file(folder, str(p.relative_to(folder))) if p.is_file() or not p.exists() else _inside_dir(folder, p)
    problems, listed = read_file_manifest(folder)
    if problems:
        return Check("files", "mismatch", "\n".join(problems))
    return Check("files", "ok", f"{len(listed)} published files match {MANIFEST_FILE}")


def _inside_dir(folder: Path, p: Path) -> None:
    real = p.resolve()
    if not real.is_relative_to(folder.resolve()):
        raise DataError(f"{str(p)!r} is a symbolic link to {str(real)!r}, outside the result folder; expected a folder inside it")


def compare_png(folder: Path, name: str, rendered: bytes) -> str | None:
    """None if the stored figure equals ``rendered`` (bytes; else decoded pixels), else why not."""
    try:
        stored = folder_file(folder, name).read_bytes()
    except (DataError, OSError) as err:
        return str(err)
    if stored == rendered:
        return None
    from PIL import Image

    try:
        a = np.asarray(Image.open(io.BytesIO(stored)).convert("RGBA"))
        b = np.asarray(Image.open(io.BytesIO(rendered)).convert("RGBA"))
    except Exception as err:  # a damaged or non-PNG file  # noqa: BLE001
        return f"{name}: not a readable image ({type(err).__name__})"
    if a.shape == b.shape and np.array_equal(a, b):
        return None
    return f"{name}: differs from its re-rendering from the verified tables" + (f" (size {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]})" if a.shape != b.shape else "")



# ----------------------------------------------------------------------------- schema
class _Type:
    """A JSON value type for :func:`require` (name shown in errors)."""

    def __init__(self, name: str, test):
        self.name, self.test = name, test

    def __call__(self, v: Any) -> bool:
        return bool(self.test(v))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) <= MAX_INT


def _is_num(v: Any) -> bool:
    return (isinstance(v, float) and math.isfinite(v)) or _is_int(v)


Int = _Type("an integer", _is_int)
Number = _Type("a finite number", _is_num)
Str = _Type("a string", lambda v: isinstance(v, str))
OptStr = _Type("a string or null", lambda v: v is None or isinstance(v, str))
OptNumber = _Type("a finite number or null", lambda v: v is None or _is_num(v))
OptInt = _Type("an integer or null", lambda v: v is None or _is_int(v))
Dict = _Type("an object", lambda v: isinstance(v, dict))
List = _Type("a list", lambda v: isinstance(v, list))
Bool = _Type("true or false", lambda v: isinstance(v, bool))


def require(doc: Any, path: Path, key_path: str, kind: _Type, *, optional: bool = False) -> Any:
    """The value at ``key_path`` (``"a.b.0.c"``) of ``doc``, checked to be of ``kind``.

    Raises
    ------
    DataError
        ``"<file>: <key_path> is <what it is>; expected <kind>"``.
    """
    node = doc
    for part in key_path.split(".") if key_path else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            if optional:
                return None
            raise DataError(f"{str(path)!r} lacks {key_path!r}; expected {kind.name} there")
    if not kind(node):
        shown = repr(node)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise DataError(f"{str(path)!r}: {key_path} is {shown} ({type(node).__name__}); expected {kind.name}")
    return node


def require_row_fields(rows: list[dict], path: Path, key_path: str, fields: dict[str, _Type]) -> None:
    """Check ``fields`` of every row (error names ``key_path.<i>.<field>``)."""
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{str(path)!r}: {key_path}.{i} is {type(row).__name__}; expected an object")
        for name, kind in fields.items():
            if name not in row:
                raise DataError(f"{str(path)!r} lacks {key_path}.{i}.{name}; expected {kind.name} there")
            if not kind(row[name]):
                shown = repr(row[name])
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise DataError(f"{str(path)!r}: {key_path}.{i}.{name} is {shown}; expected {kind.name}")


__all__ += ["check_file_manifest", "OptInt", "Dict", "List", "Bool", "require_row_fields"]
