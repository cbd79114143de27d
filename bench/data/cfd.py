"""Chicago Face Database 3.0 (CFD, CFD-MR, CFD-INDIA): manifest loader.

Ma, Correll & Wittenbrink (2015), "The Chicago face database: A free stimulus set of
faces and norming data", Behavior Research Methods 47:1122-1135; CFD-MR: Ma, Kantner &
Wittenbrink (2021); CFD-INDIA: Lakshmi, Wittenbrink, Correll & Ma (2021). Obtained at
https://www.chicagofaces.org/ after a free registration, for scientific research; the
models were paid volunteers photographed for the database. Layout and norming-sheet
form as documented in docs/datasets.md (sources there).

Expected layout under ``root``::

    CFD Version 3.0/                                       <- root
      CFD 3.0 Norming Data and Codebook.xlsx               <- one sheet per set (see SHEETS)
      Images/CFD/<Model>/CFD-AF-200-228-N.jpg              <- per-target folders (main set)
      Images/CFD-MR/.../CFD-MF-300-002-N.jpg               <- searched recursively
      Images/CFD-INDIA/.../CFD-IF-615-279-N.jpg

File names ``CFD-<R><G>-<n1>-<n2>[-<replicate>]-<expression>.jpg``: R race code (A, B,
L, W main set; M multiracial; I India), G F/M, expression N (neutral), HO (happy, open
mouth), HC (happy, closed), A (angry), F (fear). Images of one model with several
expressions form the mated comparisons; a model with only a neutral image contributes
non-mated comparisons only.

Norming sheets: header on 0-based row 7 (``pandas.read_excel(header=7)``), preamble
above; rows whose ``Model`` is not a target id are skipped. Labels are the models'
self-reports ``EthnicitySelf``, ``GenderSelf``, ``AgeSelf`` (reported as ``ethnicity``,
``gender``, ``age``); the raters' judgements (``AgeRated``, ``...Prob``) are
perceptions of the face, not the person's label, and are not used as groups.
"""

from __future__ import annotations

import logging
import re
import zipfile
import zlib
from pathlib import Path
from typing import Sequence
from xml.etree.ElementTree import ParseError

import pandas as pd

from bench.data.consented import DatasetCard, label_source_text, missing_root
from bench.data.manifest import Manifest
from bench.data.user_dataset import bin_labels
from bench.errors import DataError

__all__ = ["load_cfd", "read_norming", "CARD", "SETS", "SHEETS", "EXPRESSIONS", "WORKBOOK"]

log = logging.getLogger(__name__)

WORKBOOK = "CFD 3.0 Norming Data and Codebook.xlsx"
#: Image sub-folder of each set, under ``Images/``.
SETS = ("CFD", "CFD-MR", "CFD-INDIA")
#: Norming sheet with each set's self-reports (CFD-INDIA: the U.S. sheet; the India-rater
#: sheet repeats the same self-reports).
SHEETS = {"CFD": "CFD U.S. Norming Data", "CFD-MR": "CFD-MR U.S. Norming Data", "CFD-INDIA": "CFD-I U.S. Norming Data"}
EXPRESSIONS = {"N": "neutral", "HO": "happy_open", "HC": "happy_closed", "A": "angry", "F": "fear"}
#: Reported attribute -> norming column (all self-reported by the models).
COLUMNS = {"ethnicity": "EthnicitySelf", "gender": "GenderSelf", "age": "AgeSelf"}
HEADER_ROW = 7
DEFAULT_AGE_BINS = (30, 45, 60)

CARD = DatasetCard(
    name="Chicago Face Database",
    layout=f"'CFD Version 3.0/' holding '{WORKBOOK}' and Images/CFD/, Images/CFD-MR/, Images/CFD-INDIA/",
    licence_url="https://www.chicagofaces.org/ (free for scientific research; terms shown at registration)",
    get="register and download at https://www.chicagofaces.org/download/, unzip under paths.data_dir as cfd/ "
        "(or set dataset.root); a gated set: no downloader",
)

_FILE = re.compile(r"^CFD-([A-Z])([FM])-(\d+)-(\d+)(?:-(\d+))?-(N|HO|HC|A|F)$")
_MODEL = re.compile(r"^[A-Z][FM]-?\d+(?:-\d+)?$")


def _key(model: str) -> str:
    """Norming keys are written ``AF-200`` (main) or ``IF615-279`` (India): compare without dashes."""
    return model.replace("-", "").upper()


def read_norming(workbook: Path, sets: Sequence[str]) -> pd.DataFrame:
    """Self-reported labels of every model of ``sets``, one row per model.

    Returns
    -------
    pandas.DataFrame
        Index: dash-free model key (e.g. ``"AF200"``); columns ``model`` (as written),
        ``set``, ``ethnicity``, ``gender``, ``age`` (completed years as text, ``pd.NA`` missing).

    Raises
    ------
    DataError
        Missing workbook, sheet or column (workbook, sheet and column named), a model
        listed twice, an age that is not a number.
    """
    if not workbook.is_file():
        raise DataError(f"CFD norming workbook not found: {str(workbook)!r}; expected {WORKBOOK!r} in the root")
    try:
        sheets = pd.read_excel(workbook, sheet_name=None, header=HEADER_ROW, dtype=str)
    # a damaged or hostile workbook: not a zip (BadZipFile), a truncated member (EOFError,
    # zlib.error), malformed or entity-bomb sheet XML (ParseError), missing parts (KeyError),
    # openpyxl's InvalidFileException (an OSError)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile, ParseError, EOFError,
            IndexError, TypeError, AttributeError, RecursionError, MemoryError, zlib.error) as err:
        first = str(err).splitlines()[0] if str(err).strip() else ""
        raise DataError(f"cannot read {str(workbook)!r} as an .xlsx workbook ({type(err).__name__}: {first}); "
                        "expected the CFD norming workbook as distributed") from None
    parts = []
    for s in sets:
        sheet = SHEETS[s]
        if sheet not in sheets:
            raise DataError(f"{str(workbook)!r} has no sheet {sheet!r} (set {s}); sheets: {sorted(sheets)}")
        t = sheets[sheet]
        t.columns = [str(c).strip() for c in t.columns]
        need = ["Model", *COLUMNS.values()]
        missing = [c for c in need if c not in t.columns]
        if missing:
            raise DataError(f"{str(workbook)!r} sheet {sheet!r}: missing column(s) {missing} in header row {HEADER_ROW + 1}; expected {need}")
        model = t["Model"].fillna("").astype(str).str.strip()
        keep = model.str.fullmatch(_MODEL.pattern)
        t = t[keep.to_numpy()]
        part = pd.DataFrame({"model": model[keep].to_numpy(), "set": s})
        for attr, col in COLUMNS.items():
            v = t[col].fillna("").astype(str).str.strip().to_numpy()
            part[attr] = pd.Series(v, dtype="string").mask(pd.Series(v).isin(["", "NA", "N/A", "nan"]))
        age = pd.to_numeric(part["age"], errors="coerce")
        bad = part["age"].notna() & age.isna()
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(f"{str(workbook)!r} sheet {sheet!r} model {part['model'].iloc[i]!r} column 'AgeSelf': "
                            f"{part['age'].iloc[i]!r} is not a number")
        part["age"] = age.map(lambda x: pd.NA if pd.isna(x) else str(int(x // 1))).astype("string")  # completed years
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    table.index = pd.Index([_key(m) for m in table["model"]], name="key")
    dup = table.index[table.index.duplicated()]
    if len(dup):
        raise DataError(f"{str(workbook)!r}: model(s) {sorted(set(dup))[:3]} listed twice in the norming sheets")
    return table


def load_cfd(
    root: str | Path,
    *,
    sets: Sequence[str] | None = None,
    expressions: Sequence[str] | None = None,
    age_bins: Sequence[float] | None = DEFAULT_AGE_BINS,
) -> Manifest:
    """Build the Chicago Face Database manifest (CFD 3.0 with CFD-MR and CFD-INDIA).

    One row per image; ``subject_id`` = the model (the norming key as written in the
    workbook, e.g. ``"AF-200"``); the extra columns ``set`` and ``expression`` say where
    the image comes from. An image whose model has no norming row keeps missing labels
    (its own group, logged).

    Parameters
    ----------
    root : path
        The ``CFD Version 3.0`` folder (layout in the module docstring).
    sets : sequence of str, optional
        Any of :data:`SETS`; default every set whose image folder exists.
    expressions : sequence of str, optional
        Expression codes to include (keys of :data:`EXPRESSIONS`); default all.
    age_bins : sequence of number or None
        Age band edges (years) of ``AgeSelf``; default ``<30, 30-44, 45-59, 60+``;
        None keeps the reported value.

    Returns
    -------
    Manifest
        Attributes ``ethnicity``, ``gender``, ``age``; ``provenance`` with licence,
        consent, attribute sources, sets and image counts per expression.

    Raises
    ------
    DataError
        Missing root (layout, licence page, how to get it), missing set folder or sheet,
        a file name not of the CFD form, malformed norming data.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise missing_root(CARD, root)
    images = root / "Images"
    if sets is None:
        sets = [s for s in SETS if (images / s).is_dir()]
        if not sets:
            raise missing_root(CARD, images, "image folder (Images/CFD, Images/CFD-MR or Images/CFD-INDIA)")
    for s in sets:
        if s not in SETS:
            raise DataError(f"dataset.sets: unknown CFD set {s!r}; valid: {list(SETS)}")
        if not (images / s).is_dir():
            raise missing_root(CARD, images / s, f"set {s} folder")
    expr = list(expressions) if expressions is not None else list(EXPRESSIONS)
    bad = [e for e in expr if e not in EXPRESSIONS]
    if bad:
        raise DataError(f"dataset.expressions: unknown code(s) {bad}; valid: {list(EXPRESSIONS)} ({EXPRESSIONS})")
    norming = read_norming(root / WORKBOOK, sets)
    rows = []
    for s in sets:
        for f in sorted((images / s).rglob("*")):
            if not f.is_file() or f.suffix.lower() not in (".jpg", ".jpeg", ".png") or f.name.startswith("._"):
                continue
            m = _FILE.match(f.stem)
            if not m:
                raise DataError(f"unexpected CFD file name {str(f)!r}: expected CFD-<R><G>-<n1>-<n2>[-<replicate>]-<N|HO|HC|A|F>.jpg")
            race, gender, n1, n2, _rep, code = m.groups()
            if code not in expr:
                continue
            # the model: India keys carry both numbers (IF615-279), the others one (AF-200)
            key = next((k for k in (f"{race}{gender}{n1}{n2}", f"{race}{gender}{n1}") if k in norming.index), None)
            subject = str(norming.at[key, "model"]) if key is not None else f"{race}{gender}-{n1}"
            rows.append({"image_id": f.stem, "path": f.relative_to(root).as_posix(), "subject_id": subject,
                         "set": s, "expression": EXPRESSIONS[code], "_key": key})
    if not rows:
        raise DataError(f"no CFD images under {str(images)!r} for sets {list(sets)} and expressions {expr}")
    table = pd.DataFrame(rows)
    unlabelled = sorted(set(table.loc[table["_key"].isna(), "subject_id"]))
    if unlabelled:
        log.warning("CFD: %d model(s) have images but no norming row (labels missing): %s", len(unlabelled), unlabelled[:10])
    for attr in COLUMNS:
        vals = [norming.at[k, attr] if k is not None else pd.NA for k in table["_key"]]
        table[attr] = pd.Series(vals, dtype="string")
    if age_bins is not None:
        table["age"] = bin_labels(table["age"], list(age_bins), attribute="age")
    table = table.drop(columns="_key")
    sources = {a: "self-reported" for a in COLUMNS}
    table["label_source"] = pd.Series([label_source_text(sources)] * len(table), dtype="string")
    for c in ("image_id", "path", "subject_id", "set", "expression"):
        table[c] = table[c].astype("string")
    per_subject = table.groupby("subject_id").size()
    provenance = {
        "dataset": "Chicago Face Database 3.0",
        "sets": list(sets),
        "licence": "free for scientific research (chicagofaces.org terms accepted at registration)",
        "consent": "paid volunteers photographed for the database (Ma, Correll & Wittenbrink 2015)",
        "attribute_sources": sources,
        "phenotype_attributes": [],
        "images_per_expression": {k: int(v) for k, v in table["expression"].value_counts().sort_index().items()},
        "subjects_with_mated_images": int((per_subject > 1).sum()),
        "age_bins": None if age_bins is None else [float(x) for x in age_bins],
    }
    return Manifest(table=table, root=root, attributes=tuple(COLUMNS), name="cfd", provenance=provenance)
