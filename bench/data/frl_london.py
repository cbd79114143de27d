"""Face Research Lab London Set (front views): manifest loader.

DeBruine, L. & Jones, B. (2017). Face Research Lab London Set (Version 5).
figshare. https://doi.org/10.6084/m9.figshare.5047666.v5 (CC-BY 4.0; every
person signed consent for research use).

Expected layout under ``root`` (what the figshare zips unpack to)::

    neutral_front/NNN_03.jpg   (+ NNN_03.tem WebMorph templates, pupils = points 0, 1)
    smiling_front/NNN_08.jpg
    london_info.csv            face_id,face_age,face_gender,face_eth  (self-reported)

Older copies of the CSV name the gender column ``face_sex`` and write ids as
``X001``; both are accepted. ``face_id`` stays a string (leading zeros), ``NA``
age is missing (never 0), and the mixed label ``east_asian/white`` is kept as its
own group.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path

import pandas as pd

from bench.data.manifest import Manifest
from bench.errors import DataError

__all__ = ["load_frl_london", "missing_hint", "read_london_info", "VIEWS", "DOI", "LICENCE", "LICENCE_PAGE", "DOWNLOAD_COMMAND", "RECORD_NAME", "release_of"]

log = logging.getLogger(__name__)

#: Image folders and view codes used (file name ``NNN_<code>.jpg``).
VIEWS: dict[str, str] = {"neutral_front": "03", "smiling_front": "08"}

_ID = re.compile(r"^X?(\d{1,3})$")


def read_london_info(csv_path: Path) -> pd.DataFrame:
    """Read ``london_info.csv`` into a table indexed by 3-digit ``face_id`` string.

    Parameters
    ----------
    csv_path : pathlib.Path
        The info CSV (columns ``face_id, face_age, face_gender|face_sex, face_eth``).

    Returns
    -------
    pandas.DataFrame
        Columns ``face_age`` (nullable Int64, years), ``face_gender``, ``face_eth``
        (strings, ``pd.NA`` when missing); index ``face_id`` (e.g. ``"001"``).

    Raises
    ------
    DataError
        If the file is missing, a column is missing, an id is malformed or
        duplicated, or an age is not an integer (row and value named).
    """
    if not csv_path.is_file():
        raise DataError(f"FRL London info file not found: {str(csv_path)!r}")
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {str(csv_path)!r} as a UTF-8 CSV with a header line: {err}") from err
    raw.columns = [c.strip() for c in raw.columns]
    if "face_gender" not in raw.columns and "face_sex" in raw.columns:
        raw = raw.rename(columns={"face_sex": "face_gender"})
    need = ["face_id", "face_age", "face_gender", "face_eth"]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise DataError(
            f"{str(csv_path)!r} is missing column(s) {missing}; expected {need} "
            "(face_sex is accepted for face_gender)"
        )
    ids = []
    for i, v in enumerate(raw["face_id"], start=2):  # row 1 is the header
        m = _ID.match(v.strip())
        if not m:
            raise DataError(
                f"{str(csv_path)!r} line {i}: face_id {v!r} is not a 3-digit id like '001' or 'X001'"
            )
        ids.append(m.group(1).zfill(3))
    raw["face_id"] = ids
    dup = raw["face_id"][raw["face_id"].duplicated()]
    if len(dup):
        raise DataError(f"{str(csv_path)!r}: duplicate face_id {sorted(set(dup))}")

    def _na(col: pd.Series) -> pd.Series:
        s = col.str.strip()
        return s.mask(s.isin(["", "NA", "N/A", "NaN", "nan"])).astype("string")

    age = _na(raw["face_age"])
    bad = age.notna() & ~age.fillna("").str.fullmatch(r"\d+")
    if bad.any():
        i = int(bad.idxmax())
        raise DataError(
            f"{str(csv_path)!r} line {i + 2}: face_age {raw['face_age'][i]!r} is not a whole number or NA"
        )
    out = pd.DataFrame(
        {
            "face_age": pd.to_numeric(age).astype("Int64"),
            "face_gender": _na(raw["face_gender"]),
            "face_eth": _na(raw["face_eth"]),
        }
    )
    out.index = pd.Index(raw["face_id"], name="face_id")
    return out


#: Where the set is published, its licence, and the command that fetches it
#: (:mod:`bench.data.frl_london_download`; ``{dest}`` = the dataset root).
DOI = "10.6084/m9.figshare.5047666.v5"
LICENCE = "CC BY 4.0"
LICENCE_PAGE = "https://creativecommons.org/licenses/by/4.0/"
DOWNLOAD_COMMAND = "fvbench-download frl_london --dest {dest}"


#: The record ``fvbench-download frl_london`` leaves in the dataset root.
RECORD_NAME = "fvbench_download.json"
_MAX_RECORD_BYTES = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def release_of(root: str | Path) -> dict | None:
    """Which figshare release a dataset root holds, read from its download record.

    Parameters
    ----------
    root : str or pathlib.Path
        The dataset root.

    Returns
    -------
    dict or None
        ``{"source": "figshare", "doi": str, "article_id": int, "version": int,
        "licence": str, "files_sha256": {file name: SHA-256 hex}}`` (what a run records to
        cite the dataset version), or ``None`` when the root has no ``fvbench_download.json``
        (a copy obtained another way).

    Raises
    ------
    DataError
        The record is larger than 1 MiB, not JSON, or lacks one of these fields with the
        right type (the file and field named).
    """
    path = Path(root) / RECORD_NAME
    if not path.is_file():
        return None
    if path.stat().st_size > _MAX_RECORD_BYTES:
        raise DataError(f"download record {str(path)!r} is larger than {_MAX_RECORD_BYTES} bytes")
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"download record {str(path)!r} is not JSON: {err}") from err
    if not isinstance(rec, dict):
        raise DataError(f"download record {str(path)!r} is not a JSON object")
    for key, kind in (("doi", str), ("article_id", int), ("version", int), ("licence", str), ("files", list)):
        if not isinstance(rec.get(key), kind) or isinstance(rec.get(key), bool):
            raise DataError(f"download record {str(path)!r}: {key!r} is {rec.get(key)!r}; expected a {kind.__name__}")
    files = {}
    for f in rec["files"]:
        if not (isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("sha256"), str)
                and _HEX64.fullmatch(f["sha256"])):
            raise DataError(f"download record {str(path)!r}: file entry {str(f)[:120]!r} lacks a name or a 64-hex sha256")
        files[f["name"]] = f["sha256"]
    return {"source": "figshare", "doi": rec["doi"], "article_id": rec["article_id"], "version": rec["version"],
            "licence": rec["licence"], "files_sha256": files}


def missing_hint(root: str | Path) -> str:
    """One clause telling how to get the set into ``root``: command, licence page, layout.

    Example: ``get it with: fvbench-download frl_london --dest /data/frl_london (figshare
    doi:10.6084/m9.figshare.5047666.v5, licence CC BY 4.0 https://creativecommons.org/licenses/by/4.0/;
    expected layout: neutral_front/NNN_03.jpg (+ .tem), smiling_front/NNN_08.jpg, london_info.csv)``.
    """
    cmd = DOWNLOAD_COMMAND.format(dest=shlex.quote(str(Path(root).absolute())))
    return (
        f"get it with: {cmd} (figshare doi:{DOI}, licence {LICENCE} {LICENCE_PAGE}; expected layout: "
        "neutral_front/NNN_03.jpg (+ .tem), smiling_front/NNN_08.jpg, london_info.csv)"
    )


def load_frl_london(root: str | Path, *, views: tuple[str, ...] = ("neutral_front", "smiling_front")) -> Manifest:
    """Build the manifest of the London set's front views.

    One row per image found on disk (``image_id`` = file stem, e.g. ``"001_03"``;
    ``subject_id`` = ``face_id``). Labels are self-reported (``label_source``).
    An image whose subject is absent from the CSV keeps missing labels (own group);
    a CSV subject without images is logged.

    Parameters
    ----------
    root : str or pathlib.Path
        Dataset root holding the layout described in the module docstring.
    views : tuple of str
        Which of :data:`VIEWS` to include.

    Returns
    -------
    Manifest
        Attributes ``face_eth``, ``face_gender``; the extra column ``face_age``
        (Int64) is kept for age analyses.

    Raises
    ------
    DataError
        If ``root``, ``london_info.csv`` or a view folder does not exist (the message
        names the layout, the licence page and the download command), a file name does not follow
        ``NNN_SS.jpg``, or the CSV is malformed.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"FRL London root {str(root.absolute())!r} does not exist; set paths.data_dir "
            f"(or FVBENCH_DATA_DIR) to the folder that holds frl_london/, or {missing_hint(root)}"
        )
    if not (root / "london_info.csv").is_file():
        raise DataError(f"FRL London info file {str(root / 'london_info.csv')!r} not found; {missing_hint(root)}")
    info = read_london_info(root / "london_info.csv")
    release = release_of(root)
    if release is not None:
        log.info("FRL London: figshare article %d version %d (doi:%s)", release["article_id"], release["version"], release["doi"])
    rows = []
    for view in views:
        if view not in VIEWS:
            raise DataError(f"unknown FRL London view {view!r}; valid: {sorted(VIEWS)}")
        folder = root / view
        if not folder.is_dir():
            raise DataError(f"FRL London view folder {str(folder)!r} not found; {missing_hint(root)}")
        code = VIEWS[view]
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in (".jpg", ".jpeg"))
        if not files:
            raise DataError(f"FRL London view folder {str(folder)!r} holds no .jpg images")
        for f in files:
            m = re.fullmatch(rf"(\d{{3}})_{code}", f.stem)
            if not m:
                raise DataError(f"unexpected file name {str(f)!r}: expected NNN_{code}.jpg")
            rows.append({"image_id": f.stem, "path": f"{view}/{f.name}", "subject_id": m.group(1), "view": view})
    if not rows:
        raise DataError(f"no images found under {str(root)!r} for views {list(views)}")
    table = pd.DataFrame(rows)
    table = table.join(info, on="subject_id")
    no_info = sorted(set(table["subject_id"]) - set(info.index))
    if no_info:
        log.warning("FRL London: %d subject(s) have images but no row in london_info.csv: %s", len(no_info), no_info)
    no_images = sorted(set(info.index) - set(table["subject_id"]))
    if no_images:
        log.info("FRL London: %d subject(s) in london_info.csv have no images: %s", len(no_images), no_images)
    table["label_source"] = "self-reported"
    for c in ("image_id", "path", "subject_id", "view", "label_source", "face_gender", "face_eth"):
        table[c] = table[c].astype("string")
    # the figshare version fvbench-download fetched (None for a copy made otherwise), cited in metrics.json
    return Manifest(table=table, root=root, attributes=("face_eth", "face_gender"), name="frl_london",
                    provenance={"download": release} if release else None)
