"""Bring your own data without editing the package: ``dataset=csv`` and ``dataset=folder``.

Two loaders build a :class:`~bench.data.manifest.Manifest` from files a user already has:

- :func:`load_csv_manifest`: a CSV or Parquet table with one row per image; a column
  mapping in the config says which column holds the image path, the subject id and each
  demographic attribute (``configs/dataset/csv.yaml``).
- :func:`load_folder_dataset`: one folder per subject (``root/<subject_id>/*.jpg``) plus a
  side table with one row per subject and its attributes (``configs/dataset/folder.yaml``).

Both then apply the same label rules (:func:`prepare_labels`), in this order:

1. values are stripped; empty cells are missing;
2. ``bins``: a numeric attribute is cut into bands at the given edges, e.g. age with
   ``[18, 30, 45, 60]`` gives ``<18``, ``18-29``, ``30-44``, ``45-59``, ``60+`` (integer
   edges; ``[a, b)`` labels otherwise). Bands are half-open, ``a <= x < b``;
3. ``rename``: ``{old: new}`` per attribute; mapping several old values onto one new value
   collapses categories (e.g. ``{man: male, m: male}``);
4. ``missing``: ``keep`` (default; a missing label is its own group, ``"missing"``, reported
   like any other, as the manifest contract requires), ``drop`` (the image leaves the run;
   the count is logged) or ``error``.

Labels are never predicted: they come from the table, and ``label_source`` records how
they were obtained (``self-reported``, ``annotated``, ``administrative`` or ``unknown``),
for the whole table or per row from a column.

Nothing named in these files is imported or executed: the tables are read with
``pandas.read_csv`` (all cells as text) or ``pandas.read_parquet``; image paths must stay
inside the dataset root (checked by :class:`Manifest`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.suggest import did_you_mean
from bench.data.manifest import INTERSECTION_SEPARATOR, REQUIRED_COLUMNS, Manifest
from bench.errors import ConfigError, DataError

__all__ = [
    "LABEL_SOURCES",
    "MISSING_POLICIES",
    "IMAGE_SUFFIXES",
    "read_table",
    "bin_labels",
    "prepare_labels",
    "load_csv_manifest",
    "load_folder_dataset",
]

log = logging.getLogger(__name__)

#: How demographic labels may have been obtained (recorded per image as ``label_source``).
#: Predicted or inferred labels are not accepted: fvbench never predicts demographics.
LABEL_SOURCES = ("self-reported", "annotated", "administrative", "unknown")
MISSING_POLICIES = ("keep", "drop", "error")
#: Image files a subject folder may hold (case-insensitive); other files are ignored.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _check_keys(where: str, given: Mapping, valid: Sequence[str]) -> None:
    for k in given:
        if k not in valid:
            raise ConfigError(f"{where}: unknown key {k!r}{did_you_mean(k, valid) or ';'} valid: {sorted(valid)}")


def read_table(path: str | Path, *, what: str = "manifest") -> pd.DataFrame:
    """Read a CSV (every cell as text) or Parquet table.

    Parameters
    ----------
    path : path
        ``.csv`` / ``.tsv`` (tab-separated) / ``.parquet`` / ``.pq``.
    what : str
        The config key that named it, for messages.

    Raises
    ------
    DataError
        Missing file, unknown extension, or a file pandas cannot parse (named).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{what} file not found: {str(p.absolute())!r}")
    suffix = p.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(p, dtype=str, keep_default_na=False, sep="\t" if suffix == ".tsv" else ",")
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
    except (ValueError, OSError, pd.errors.ParserError, ImportError) as err:
        raise DataError(f"{what} {str(p)!r} cannot be read: {str(err).splitlines()[0]}") from err
    raise DataError(f"{what} {str(p)!r}: expected a .csv, .tsv, .parquet or .pq file, got {suffix or 'no extension'!r}")


def _column(table: pd.DataFrame, column: str, key: str, source: str) -> pd.Series:
    if column not in table.columns:
        cols = [str(c) for c in table.columns]
        raise ConfigError(f"{key}: column {column!r} not in {source}{did_you_mean(column, cols) or ';'} columns: {cols}")
    return table[column]


def _text(col: pd.Series) -> pd.Series:
    """Strings, stripped; empty and NA cells -> pd.NA. Whole floats print without '.0'."""
    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return pd.NA
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        s = str(v).strip()
        return s if s else pd.NA

    return col.map(one).astype("string")


def _band_label(lo: float | None, hi: float | None, integer: bool) -> str:
    fmt = (lambda v: str(int(v))) if integer else (lambda v: f"{v:g}")
    if lo is None:
        return f"<{fmt(hi)}"
    if hi is None:
        return f"{fmt(lo)}+"
    return f"{fmt(lo)}-{fmt(hi - 1)}" if integer else f"[{fmt(lo)}, {fmt(hi)})"


def bin_labels(values: pd.Series, edges: Sequence[float], *, attribute: str = "attribute") -> pd.Series:
    """Cut numeric values into half-open bands ``edges[i] <= x < edges[i+1]``.

    Parameters
    ----------
    values : pandas.Series
        Numbers or numeric text; missing cells stay missing.
    edges : sequence of float
        Strictly increasing, at least one. Values below the first edge get ``"<e0"``,
        values at or above the last ``"eN+"``.
    attribute : str
        Name used in messages.

    Returns
    -------
    pandas.Series
        String labels, e.g. edges ``[18, 30, 45, 60]``: ``<18``, ``18-29``, ``30-44``,
        ``45-59``, ``60+`` (integer edges and values), else ``[a, b)``.

    Raises
    ------
    ConfigError
        Edges not numbers or not strictly increasing.
    DataError
        A non-numeric value (row named).
    """
    try:
        e = [float(x) for x in edges]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"dataset.bins.{attribute}: edges must be numbers, got {list(edges)!r}") from err
    if not e or any(not math.isfinite(x) for x in e) or any(b <= a for a, b in zip(e, e[1:])):
        raise ConfigError(f"dataset.bins.{attribute}: edges must be finite and strictly increasing, got {list(edges)!r}")
    text = _text(values)
    num = pd.to_numeric(text, errors="coerce")
    bad = text.notna() & num.isna()
    if bad.any():
        i = bad.idxmax()
        raise DataError(f"attribute {attribute!r}: value {text[i]!r} in row {i} is not a number; bins {list(edges)} need numbers")
    integer = all(x.is_integer() for x in e) and bool((num.dropna() % 1 == 0).all())
    bounds = [None, *e, None]
    names = [_band_label(lo, hi, integer) for lo, hi in zip(bounds, bounds[1:])]
    idx = np.searchsorted(np.asarray(e), num.to_numpy(dtype=float, na_value=np.nan), side="right")
    out = pd.Series([names[int(k)] if not math.isnan(v) else pd.NA for k, v in zip(idx, num.to_numpy(dtype=float, na_value=np.nan))],
                    index=values.index, dtype="string")
    return out


def prepare_labels(
    table: pd.DataFrame,
    attributes: Mapping[str, str],
    *,
    source: str,
    bins: Mapping[str, Sequence[float]] | None = None,
    rename: Mapping[str, Mapping[str, str]] | None = None,
    missing: str = "keep",
) -> tuple[pd.DataFrame, list[str]]:
    """Attribute columns of a manifest from a user table (see the module docstring).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per image (already joined with a per-subject table where needed).
    attributes : mapping
        Attribute name (as reported) -> column of ``table``.
    source : str
        The table, for messages.
    bins, rename : mapping, optional
        Per attribute name; see :func:`bin_labels` and the module docstring.
    missing : {"keep", "drop", "error"}

    Returns
    -------
    (pandas.DataFrame, list of str)
        ``table`` with one string column per attribute (rows dropped under ``drop``), and
        the attribute names in config order.

    Raises
    ------
    ConfigError
        Unknown attribute named in ``bins``/``rename``, a bad attribute name, unknown policy.
    DataError
        A label missing under ``missing: error`` (rows named).
    """
    if not attributes:
        raise ConfigError(f"dataset.attributes: map at least one attribute to a column of {source}, e.g. {{gender: sex}}")
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"dataset.missing must be one of {list(MISSING_POLICIES)}, got {missing!r}")
    names = [str(a) for a in attributes]
    for a in names:
        if INTERSECTION_SEPARATOR in a or a in REQUIRED_COLUMNS or not a.strip():
            raise ConfigError(f"dataset.attributes: {a!r} cannot name an attribute (no {INTERSECTION_SEPARATOR!r}, not one of {list(REQUIRED_COLUMNS)})")
    for key, spec in (("bins", bins or {}), ("rename", rename or {})):
        for a in spec:
            if a not in names:
                raise ConfigError(f"dataset.{key}.{a}: {a!r} is not a configured attribute{did_you_mean(a, names) or ';'} attributes: {names}")
    out = table.copy()
    for a, column in attributes.items():
        col = _column(table, str(column), f"dataset.attributes.{a}", source)
        labels = bin_labels(col, (bins or {})[a], attribute=a) if a in (bins or {}) else _text(col)
        if a in (rename or {}):
            mapping = {str(k): str(v) for k, v in dict((rename or {})[a]).items()}
            labels = labels.map(lambda v: mapping.get(v, v) if v is not pd.NA else v).astype("string")
        out[a] = labels
    gaps = out[names].isna().any(axis=1)
    if gaps.any():
        if missing == "error":
            rows = list(out.index[gaps][:5])
            raise DataError(f"{source}: {int(gaps.sum())} image(s) lack a label (dataset.missing: error); first rows {rows}")
        if missing == "drop":
            log.warning("%s: %d image(s) without a complete label left out (dataset.missing: drop)", source, int(gaps.sum()))
            out = out[~gaps].reset_index(drop=True)
            if out.empty:
                raise DataError(f"{source}: every image lacks a label; nothing left under dataset.missing: drop")
    return out, names


def _label_source(table: pd.DataFrame, label_source: str, column: str | None, source: str) -> pd.Series:
    if column:
        values = _text(_column(table, column, "dataset.columns.label_source", source)).fillna("unknown")
    else:
        values = pd.Series([label_source] * len(table), index=table.index, dtype="string")
    bad = sorted(set(values) - set(LABEL_SOURCES))
    if bad:
        raise ConfigError(
            f"dataset.label_source: {bad[0]!r} is not a recorded way of obtaining labels; valid: {list(LABEL_SOURCES)} "
            "(fvbench never uses predicted demographic labels)"
        )
    return values


def _finish(rows: pd.DataFrame, *, name: str, root: Path, attributes: Mapping[str, str], label_source: str,
            label_source_column: str | None, bins: Any, rename: Any, missing: str, source: str) -> Manifest:
    rows = rows.reset_index(drop=True)
    rows["label_source"] = _label_source(rows, label_source, label_source_column, source)
    out, names = prepare_labels(rows, attributes, source=source, bins=bins, rename=rename, missing=missing)
    keep = [*REQUIRED_COLUMNS, *names]
    table = out[keep].copy()
    for c in REQUIRED_COLUMNS:
        table[c] = table[c].astype("string")
    return Manifest(table=table, root=root, attributes=tuple(names), name=str(name))


def load_csv_manifest(
    manifest: str | Path,
    *,
    name: str = "csv",
    root: str | Path | None = None,
    columns: Mapping[str, str | None] | None = None,
    attributes: Mapping[str, str] | None = None,
    label_source: str = "self-reported",
    bins: Mapping[str, Sequence[float]] | None = None,
    rename: Mapping[str, Mapping[str, str]] | None = None,
    missing: str = "keep",
) -> Manifest:
    """Manifest from a CSV or Parquet table with one row per image.

    Parameters
    ----------
    manifest : path
        The table (``.csv``, ``.tsv``, ``.parquet``, ``.pq``).
    name : str
        Dataset name used in reports and the default run name.
    root : path or None
        Folder the image paths are relative to; None = the table's folder.
    columns : mapping
        ``path`` (default ``"path"``), ``subject_id`` (default ``"subject_id"``),
        ``image_id`` (default None: the path), ``label_source`` (default None: the
        ``label_source`` value for every row).
    attributes : mapping
        Attribute name -> column, e.g. ``{ethnicity: eth, gender: sex, age: age}``.
    label_source : str
        One of :data:`LABEL_SOURCES`, for every row (unless ``columns.label_source``).
    bins, rename, missing
        See :func:`prepare_labels`.

    Returns
    -------
    Manifest

    Raises
    ------
    ConfigError
        A column, key or option that does not exist (with the nearest valid one).
    DataError
        Unreadable table, duplicate image ids, paths that are absolute, escape the root or
        do not exist (via :class:`Manifest`).
    """
    columns = dict(columns or {})
    _check_keys("dataset.columns", columns, ("path", "subject_id", "image_id", "label_source"))
    path = Path(manifest).expanduser()
    raw = read_table(path, what="dataset.manifest")
    source = f"manifest {str(path)!r}"
    if raw.empty:
        raise DataError(f"{source} has no rows")
    rows = raw.copy()
    rows["path"] = _text(_column(raw, columns.get("path") or "path", "dataset.columns.path", source))
    rows["subject_id"] = _text(_column(raw, columns.get("subject_id") or "subject_id", "dataset.columns.subject_id", source))
    id_col = columns.get("image_id")
    rows["image_id"] = _text(_column(raw, id_col, "dataset.columns.image_id", source)) if id_col else rows["path"]
    base = Path(root).expanduser() if root else path.parent
    if not base.is_dir():
        raise DataError(f"dataset.root {str(base.absolute())!r} does not exist; the image paths of {source} are relative to it")
    return _finish(rows, name=name, root=base, attributes=dict(attributes or {}), label_source=label_source,
                   label_source_column=columns.get("label_source"), bins=bins, rename=rename, missing=missing, source=source)


def load_folder_dataset(
    root: str | Path,
    subjects: str | Path,
    *,
    name: str = "folder",
    columns: Mapping[str, str | None] | None = None,
    attributes: Mapping[str, str] | None = None,
    label_source: str = "self-reported",
    bins: Mapping[str, Sequence[float]] | None = None,
    rename: Mapping[str, Mapping[str, str]] | None = None,
    missing: str = "keep",
) -> Manifest:
    """Manifest from one folder per subject plus a per-subject attribute table.

    Layout: ``root/<subject_id>/<image>`` (files with a suffix in
    :data:`IMAGE_SUFFIXES`, sorted by name; hidden files and deeper folders ignored).
    ``image_id`` is ``<subject_id>/<file stem>``.

    Parameters
    ----------
    root : path
        The folder of subject folders.
    subjects : path
        CSV or Parquet table, one row per subject.
    columns : mapping
        ``subject_id`` (default ``"subject_id"``): the table column matching the folder
        names; ``label_source`` (default None).
    attributes, label_source, bins, rename, missing
        As in :func:`load_csv_manifest`. A folder without a table row has missing labels
        (then ``missing`` decides); a table row without a folder is logged.

    Raises
    ------
    ConfigError, DataError
        As :func:`load_csv_manifest`; also a root without subject folders or images, or a
        subject listed twice in the table.
    """
    columns = dict(columns or {})
    _check_keys("dataset.columns", columns, ("subject_id", "label_source"))
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"dataset.root {str(base.absolute())!r} does not exist; expected one folder per subject in it")
    table_path = Path(subjects).expanduser()
    info = read_table(table_path, what="dataset.subjects")
    source = f"subject table {str(table_path)!r}"
    sid = _text(_column(info, columns.get("subject_id") or "subject_id", "dataset.columns.subject_id", source))
    if sid.isna().any():
        raise DataError(f"{source}: empty subject id in row(s) {list(sid.index[sid.isna()][:5])}")
    dup = sorted(set(sid[sid.duplicated()]))
    if dup:
        raise DataError(f"{source}: subject(s) {dup[:5]} listed more than once; one row per subject")
    info = info.assign(subject_id=sid).set_index("subject_id", drop=True)
    rows = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES):
            rows.append({"image_id": f"{folder.name}/{f.stem}", "path": f"{folder.name}/{f.name}", "subject_id": folder.name})
    if not rows:
        raise DataError(f"dataset.root {str(base)!r} holds no subject folder with images ({', '.join(IMAGE_SUFFIXES)})")
    images = pd.DataFrame(rows)
    no_row = sorted(set(images["subject_id"]) - set(info.index))
    if no_row:
        log.warning("%s: %d subject folder(s) have no row (labels missing): %s", source, len(no_row), no_row[:10])
    no_folder = sorted(set(info.index) - set(images["subject_id"]))
    if no_folder:
        log.info("%s: %d subject(s) have no folder under the root: %s", source, len(no_folder), no_folder[:10])
    joined = images.merge(info, left_on="subject_id", right_index=True, how="left", suffixes=("", "_table"))
    return _finish(joined, name=name, root=base, attributes=dict(attributes or {}), label_source=label_source,
                   label_source_column=columns.get("label_source"), bins=bins, rename=rename, missing=missing, source=source)
