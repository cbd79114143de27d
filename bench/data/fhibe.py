"""FHIBE-Face (Sony AI's Fair Human-centric Image Benchmark, face crops): manifest loader.

Xiang et al. (2025), "Fair human-centric image dataset for ethical AI benchmarking",
Nature, doi:10.1038/s41586-025-09716-2. About 10,000 images of 1,981 people from 81
countries who consented to the use of their images; obtained at
https://fairnessbenchmark.ai.sony/ after accepting Sony AI's terms of use, which
bar surveillance uses (``configs/dataset/fhibe.yaml`` records ``permitted_uses``;
``protocol=identification`` refuses the set). Layout, columns and versioning as read
in the public evaluation code ``SonyResearch/fhibe_evaluation_api`` (docs/datasets.md).

Expected layout under ``root`` (what the release tar unpacks to)::

    fhibe.<version>_downsampled_public/                     <- root; its name carries the version
      data/processed/fhibe_face_crop_align/fhibe_face_crop_align.csv   <- metadata, one row per face image
      data/raw/fhibe_downsampled/<filepath>                 <- images, ``filepath`` column of the CSV

Metadata columns read: ``subject_id``, ``filepath`` (required); ``image_id``,
``multiple_subjects`` (optional); attributes (see :data:`ATTRIBUTE_SOURCES`): ``pronoun``,
``age``, ``ancestry`` (required, self-reported), ``natural_skin_color``,
``apparent_skin_color`` (Fitzpatrick type, self-reported), ``location_country``
(self-reported), ``head_pose`` (annotated) when present. Multi-selection cells are list
literals (``"['0. She/her/hers', '2. They/them/their']"``), parsed without evaluation
(:func:`bench.data.consented.parse_list_cell`); a multi-selection is its own group.
``apparent_skin_color_hue_lum`` is left out on purpose: it is computed from the images,
and fvbench uses no label inferred from an image.

Versioning: Sony AI re-releases FHIBE (monthly) without the people who withdrew their
consent. The manifest's provenance records the version (from the root's name, or
``version``), the metadata file's SHA-256 and the SHA-256 of the set of subject ids;
``fvbench-verify --dataset-metadata NEWER.csv`` flags a result whose release has since
been revised and counts the people dropped (:mod:`bench.verify_dataset_revision`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import Sequence

import pandas as pd

from bench.data.consented import (
    MULTI_JOIN, DatasetCard, file_sha256, label_source_text, missing_root, parse_list_cell, subject_set_sha256,
)
from bench.data.manifest import Manifest
from bench.data.user_dataset import bin_labels
from bench.errors import DataError

__all__ = ["load_fhibe", "read_fhibe_metadata", "fhibe_version", "release_folders", "CARD", "ATTRIBUTE_SOURCES", "METADATA", "IMAGES_DIR"]

log = logging.getLogger(__name__)

#: Metadata file, relative to the root.
METADATA = "data/processed/fhibe_face_crop_align/fhibe_face_crop_align.csv"
#: Folder the ``filepath`` column is relative to, relative to the root.
IMAGES_DIR = "data/raw/fhibe_downsampled"

CARD = DatasetCard(
    name="FHIBE",
    layout=f"fhibe.<version>_downsampled_public/ holding {METADATA} and the images under {IMAGES_DIR}/",
    licence_url="https://fairnessbenchmark.ai.sony/ (FHIBE terms of use; no surveillance uses)",
    get="accept the terms and download the *downsampled_public.tar at https://fairnessbenchmark.ai.sony/download, "
        "unpack it under paths.data_dir and pass dataset.root=<data_dir>/fhibe.<version>_downsampled_public "
        "(the folder it unpacks to; the default root <data_dir>/fhibe is only a link or renamed copy of it); "
        "a gated set: no downloader",
)

#: Attribute -> how it was obtained, per the attribute descriptions of
#: ``fhibe_evaluation_api`` (``evaluate/constants.py``). Fitzpatrick skin types are the
#: phenotype attributes (:data:`PHENOTYPE_ATTRIBUTES`).
ATTRIBUTE_SOURCES: dict[str, str] = {
    "pronoun": "self-reported",
    "age": "self-reported",
    "ancestry": "self-reported",
    "natural_skin_color": "self-reported",
    "apparent_skin_color": "self-reported",
    "location_country": "self-reported",
    "head_pose": "annotated",
}
REQUIRED_ATTRIBUTES = ("pronoun", "age", "ancestry")
#: Skin-tone attributes (six-point Fitzpatrick scale), analysed like any group label.
PHENOTYPE_ATTRIBUTES = ("natural_skin_color", "apparent_skin_color")
#: FHIBE's own age bands, [18, 30), [30, 40), [40, 50), [50, 60), 60+.
DEFAULT_AGE_BINS = (30, 40, 50, 60)

_VERSION = re.compile(r"^(fhibe\..+)_downsampled_public$")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


def fhibe_version(root: Path, version: str | None = None) -> str:
    """The release version of a FHIBE root.

    The release unpacks to ``fhibe.<version>_downsampled_public``; the version recorded
    is that name without ``_downsampled_public`` (e.g. ``fhibe.20250708.m.k_2vTAkV``).

    Raises
    ------
    DataError
        Neither the folder name nor ``version`` gives one, or they disagree.
    """
    m = _VERSION.match(root.name)
    found = m.group(1) if m else None
    if version is not None and found is not None and str(version) != found:
        raise DataError(f"dataset.version {version!r} disagrees with the FHIBE root's name {root.name!r} (version {found!r})")
    if version is None and found is None:
        raise DataError(f"FHIBE root {root.name!r} does not carry the release version (expected fhibe.<version>_downsampled_public "
                        "as unpacked); rename it back or set dataset.version")
    return str(version if version is not None else found)


def _cell_list(raw: pd.Series, col: str, where: str) -> pd.Series:
    vals = []
    for i, v in zip(raw.index, raw):  # the index is the row of the file (rows may have been left out)
        items = parse_list_cell(v, where=f"{where} line {int(i) + 2} column {col!r}")
        vals.append(MULTI_JOIN.join(items) if items else pd.NA)
    return pd.Series(vals, index=raw.index, dtype="string")


def read_fhibe_metadata(csv_path: Path, *, drop_multiple_subjects: bool = True) -> tuple[pd.DataFrame, int]:
    """Read FHIBE-Face metadata into one row per usable face image.

    Parameters
    ----------
    csv_path : pathlib.Path
        ``fhibe_face_crop_align.csv`` (any FHIBE release).
    drop_multiple_subjects : bool
        Leave out images flagged ``multiple_subjects`` (two people in the frame; the
        evaluation API does the same for face verification).

    Returns
    -------
    table : pandas.DataFrame
        Columns ``subject_id``, ``filepath``, ``image_id`` and each attribute of
        :data:`ATTRIBUTE_SOURCES` present in the file (strings, ``pd.NA`` missing; ``age``
        as whole years in text).
    dropped : int
        Images left out as ``multiple_subjects``.

    Raises
    ------
    DataError
        Missing file or required column, an unparsable cell, an age that is not a whole
        number, a ``filepath`` that is absolute or climbs out (``..``), a duplicate
        ``image_id`` (file, line and column named).
    """
    where = str(csv_path)
    if not csv_path.is_file():
        raise DataError(f"FHIBE metadata file not found: {where!r}; expected {METADATA} under the root")
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {where!r} as a UTF-8 CSV with a header line: {str(err).splitlines()[0]}") from err
    raw.columns = [c.strip() for c in raw.columns]
    need = ["subject_id", "filepath", *REQUIRED_ATTRIBUTES]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise DataError(f"{where!r} is missing column(s) {missing}; a FHIBE-Face metadata file has at least {need}")
    dropped = 0
    if drop_multiple_subjects and "multiple_subjects" in raw.columns:
        flag = raw["multiple_subjects"].str.strip().str.lower()
        bad = ~flag.isin(_TRUE | _FALSE)
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(f"{where!r} line {i + 2} column 'multiple_subjects': {raw['multiple_subjects'].iloc[i]!r} is not True/False")
        multi = flag.isin(_TRUE)
        dropped = int(multi.sum())
        raw = raw[~multi.to_numpy()]
    out = pd.DataFrame(index=raw.index)
    for col in ("subject_id", "filepath"):
        s = raw[col].str.strip()
        empty = s == ""
        if empty.any():
            i = int(empty.to_numpy().nonzero()[0][0])
            raise DataError(f"{where!r} line {int(raw.index[i]) + 2} column {col!r}: empty")
        out[col] = s.astype("string")
    for i, fp in zip(raw.index, out["filepath"]):
        p = PurePosixPath(fp.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts:
            raise DataError(f"{where!r} line {int(i) + 2} column 'filepath': {fp!r} must be relative to {IMAGES_DIR}/ without '..'")
    out["image_id"] = (raw["image_id"].str.strip() if "image_id" in raw.columns else out["filepath"]).astype("string")
    out.loc[out["image_id"] == "", "image_id"] = out["filepath"]
    dup = out["image_id"][out["image_id"].duplicated()]
    if len(dup):
        raise DataError(f"{where!r}: duplicate image_id {sorted(set(dup))[:3]}; each row is one image")
    for col in ATTRIBUTE_SOURCES:
        if col not in raw.columns:
            continue
        if col == "age":
            age = raw[col].str.strip()
            bad = ~(age.str.fullmatch(r"\d{1,3}") | age.isin(["", "NA"]))
            if bad.any():
                i = int(bad.to_numpy().nonzero()[0][0])
                raise DataError(f"{where!r} line {int(raw.index[i]) + 2} column 'age': {raw[col].iloc[i]!r} is not a whole number of years")
            out[col] = age.mask(age.isin(["", "NA"])).astype("string")
        else:
            out[col] = _cell_list(raw[col], col, where)
    return out.reset_index(drop=True), dropped


def release_folders(root: Path) -> list[Path]:
    """Unpacked FHIBE releases (folders named ``fhibe.<version>_downsampled_public``) next to
    a missing ``root``, or inside an existing ``root`` that is not itself a release; newest
    name first. Only names are listed: nothing inside them is read."""
    where = root if root.is_dir() else root.parent
    try:
        found = [p for p in where.iterdir() if _VERSION.match(p.name) and p.is_dir()]
    except OSError:
        return []
    return sorted(found, key=lambda p: p.name, reverse=True)


def load_fhibe(
    root: str | Path,
    *,
    version: str | None = None,
    attributes: Sequence[str] | None = None,
    age_bins: Sequence[float] | None = DEFAULT_AGE_BINS,
    drop_multiple_subjects: bool = True,
    check_files: bool = True,
) -> Manifest:
    """Build the FHIBE-Face manifest (crop + aligned face images).

    One row per face image (``image_id`` from the metadata, ``subject_id`` the
    pseudonymous person id, ``path`` = ``data/raw/fhibe_downsampled/<filepath>``); mated
    comparisons are the pairs of images of one person. ``label_source`` states per
    attribute how it was obtained (:data:`ATTRIBUTE_SOURCES`).

    Parameters
    ----------
    root : path
        The unpacked release folder (layout in the module docstring).
    version : str, optional
        Release version, when the root's name does not carry it (:func:`fhibe_version`).
    attributes : sequence of str, optional
        Attributes to report; default every attribute of :data:`ATTRIBUTE_SOURCES` the file has.
    age_bins : sequence of number or None
        Age band edges (years); default FHIBE's own bands ``<30, 30-39, 40-49, 50-59, 60+``;
        None keeps whole years.
    drop_multiple_subjects : bool
        Leave out images with two people (:func:`read_fhibe_metadata`).
    check_files : bool
        Require every image file to exist (False only to read metadata, e.g. in verify).

    Returns
    -------
    Manifest
        With ``provenance``: dataset, version, metadata file and its SHA-256, the
        SHA-256 of the subject set, images dropped as multi-person, licence, consent,
        ``attribute_sources`` and ``phenotype_attributes``.

    Raises
    ------
    DataError
        Missing root (layout, licence page and how to get it named), unknown version,
        malformed metadata (file, line, column), an attribute not in the file, missing images.
    """
    root = Path(root).expanduser()
    if not root.is_dir() or not (root / METADATA).exists():
        found = release_folders(root)
        if found:  # the release unpacked beside (or inside) the configured root: name it
            raise DataError(f"FHIBE root {str(root)!r} {'not found' if not root.is_dir() else 'holds no ' + METADATA}; "
                            f"found the release folder {str(found[0])!r}: pass dataset.root={found[0]}"
                            + (f" (also there: {[p.name for p in found[1:]]})" if len(found) > 1 else ""))
    if not root.is_dir():
        raise missing_root(CARD, root)
    ver = fhibe_version(root, version)
    csv_path = root / METADATA
    meta, dropped = read_fhibe_metadata(csv_path, drop_multiple_subjects=drop_multiple_subjects)
    present = [a for a in ATTRIBUTE_SOURCES if a in meta.columns]
    chosen = list(attributes) if attributes is not None else present
    unknown = [a for a in chosen if a not in present]
    if unknown:
        raise DataError(f"FHIBE attribute(s) {unknown} not in {str(csv_path)!r}; available: {present}")
    table = pd.DataFrame({
        "image_id": meta["image_id"],
        "path": (IMAGES_DIR + "/" + meta["filepath"].str.replace("\\", "/", regex=False)).astype("string"),
        "subject_id": meta["subject_id"],
    })
    for a in chosen:
        col = meta[a]
        if a == "age" and age_bins is not None:
            col = bin_labels(col, list(age_bins), attribute="age")
        table[a] = col.astype("string")
    sources = {a: ATTRIBUTE_SOURCES[a] for a in chosen}
    table["label_source"] = label_source_text(sources)
    table["label_source"] = table["label_source"].astype("string")
    if dropped:
        log.info("FHIBE: %d image(s) with several people left out (multiple_subjects)", dropped)
    provenance = {
        "dataset": "FHIBE-Face (crop + align)",
        "version": ver,
        "metadata_file": METADATA,
        "metadata_sha256": file_sha256(csv_path),
        "subject_set_sha256": subject_set_sha256(table["subject_id"]),
        "images_multiple_subjects_dropped": dropped,
        "licence": "FHIBE terms of use (Sony AI); no surveillance uses",
        "consent": "each person consented to the use of their images; consent can be withdrawn, and later releases drop those people",
        "attribute_sources": sources,
        "phenotype_attributes": [a for a in PHENOTYPE_ATTRIBUTES if a in chosen],
        "age_bins": None if age_bins is None else [float(x) for x in age_bins],
    }
    return Manifest(table=table, root=root, attributes=tuple(chosen), name="fhibe", check_files=check_files, provenance=provenance)
