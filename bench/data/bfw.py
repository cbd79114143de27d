"""BFW (Balanced Faces in the Wild): manifest loader from its data table.

Robinson, J. P., Livitz, G., Henon, Y., Qin, C., Fu, Y. & Timoner, S. (2020). Face Recognition:
Too Bias, or Not Too Bias? CVPR Workshops 2020. Data: ``BFW-Release.zip`` (links in
github.com/visionjo/facerec-bias-bfw, IEEE DataPort "Balanced Faces in the Wild"), released for
research; the images are VGGFace2 web images collected WITHOUT the consent of the people shown
(``consent: web_collected_without_consent`` in the dataset config; every report prints it).

Input: ``bfw-<version>-datatable.csv`` (../shared sources §7) with columns ``p1, p2`` (image
paths relative to the face-samples folder, ``<subgroup>/<vggface2 id>/<NNNN_NN>.jpg``),
``label`` (1 = mated), ``id1, id2`` (subject ids), ``a1, a2`` (subgroup, e.g. ``AF``),
``g1, g2`` (``F``/``M``), ``e1, e2`` (``A``/``B``/``I``/``W``); other columns (fold, model
scores) are ignored. Every image named in the table becomes one manifest row; its attributes
are the table's annotated labels, spelled out (:data:`ETHNICITY`, :data:`GENDER`); an image
whose labels or subject differ between rows is refused. The table itself is the pair list
(``protocol.pair_list``, set by ``configs/dataset/bfw.yaml``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from bench.data.manifest import Manifest
from bench.errors import DataError

__all__ = ["load_bfw", "ETHNICITY", "GENDER", "REQUIRED", "LAYOUT", "TERMS"]

#: BFW ethnicity codes -> group names.
ETHNICITY = {"A": "asian", "B": "black", "I": "indian", "W": "white"}
#: BFW gender codes -> group names.
GENDER = {"F": "female", "M": "male"}
#: Columns the loader reads.
REQUIRED = ("p1", "p2", "label", "id1", "id2", "g1", "g2", "e1", "e2")
#: Where the data lie by default (configs/dataset/bfw.yaml; BFW-Release.zip unpacked under paths.data_dir).
LAYOUT = ("<data_dir>/bfw/bfw-v0.1.5-datatable.csv (the data table, set dataset.datatable) and "
          "<data_dir>/bfw/face-samples/<subgroup>/<vggface2 id>/<NNNN_NN>.jpg (set dataset.root)")
#: Terms and how to get it (../shared sources §7; no downloader: no published checksum).
TERMS = ("terms: released for research purposes (README of github.com/visionjo/facerec-bias-bfw; images collected "
         "without consent); get BFW-Release.zip from the links in that README or IEEE DataPort "
         "https://ieee-dataport.org/documents/balanced-faces-wild")
#: Largest data table read (bytes); the v0.1.5 table is about 100 MB.
MAX_TABLE_BYTES = 4 * 2**30


def load_bfw(datatable: str | Path, root: str | Path, name: str = "bfw") -> Manifest:
    """Manifest of the images a BFW data table names.

    Parameters
    ----------
    datatable : path
        ``bfw-*-datatable.csv``.
    root : path
        The face-samples folder ``p1``/``p2`` are relative to.
    name : str

    Returns
    -------
    Manifest
        Columns ``image_id`` (= ``path``), ``path``, ``subject_id`` (the table's id),
        ``label_source`` (``annotated``), ``ethnicity``, ``gender``.

    Raises
    ------
    DataError
        Missing table or root (naming the layout and where BFW is published), missing
        columns, unknown label codes, or an image with two subjects or two labels
        (``file:line`` named); image files that do not exist (via :class:`Manifest`).
    """
    datatable, root = Path(datatable).expanduser(), Path(root).expanduser()
    if not datatable.is_file():
        raise DataError(f"BFW data table {str(datatable)!r} not found; expected {LAYOUT}; {TERMS}")
    if not root.is_dir():
        raise DataError(f"BFW image root {str(root)!r} not found; expected the face-samples folder holding "
                        f"<subgroup>/<id>/<NNNN_NN>.jpg ({LAYOUT}); {TERMS}")
    if os.stat(datatable).st_size > MAX_TABLE_BYTES:
        raise DataError(f"{datatable.name}: larger than {MAX_TABLE_BYTES:,} bytes; expected a BFW data table")
    try:
        t = pd.read_csv(datatable, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{datatable.name}: not a UTF-8 CSV with a header line ({err})") from None
    t.columns = [str(c).strip() for c in t.columns]
    missing = [c for c in REQUIRED if c not in t.columns]
    if missing:
        raise DataError(f"{datatable.name}: missing column(s) {missing}; expected at least {list(REQUIRED)} (BFW data table)")
    sides = []
    for s in ("1", "2"):
        side = pd.DataFrame({"path": t[f"p{s}"].str.strip().str.replace("\\", "/", regex=False),
                             "subject_id": t[f"id{s}"].str.strip(), "e": t[f"e{s}"].str.strip(), "g": t[f"g{s}"].str.strip(),
                             "line": t.index.to_numpy() + 2})
        sides.append(side)
    img = pd.concat(sides, ignore_index=True)
    for col, codes, what in (("e", ETHNICITY, "e1/e2 (ethnicity)"), ("g", GENDER, "g1/g2 (gender)")):
        bad = ~img[col].isin(list(codes))
        if bad.any():
            r = img[bad].iloc[0]
            raise DataError(f"{datatable.name}:{int(r['line'])}: {what} code {r[col][:20]!r}; expected one of {sorted(codes)}")
    empty = (img["path"] == "") | (img["subject_id"] == "")
    if empty.any():
        raise DataError(f"{datatable.name}:{int(img[empty].iloc[0]['line'])}: empty image path or subject id")
    first = img.drop_duplicates("path", keep="first").set_index("path")
    conflict = img[(img[["subject_id", "e", "g"]].to_numpy() != first.loc[img["path"], ["subject_id", "e", "g"]].to_numpy()).any(axis=1)]
    if len(conflict):
        r = conflict.iloc[0]
        f = first.loc[r["path"]]
        raise DataError(f"{datatable.name}:{int(r['line'])}: image {r['path']!r} has subject/labels ({r['subject_id']}, {r['e']}, {r['g']}) "
                        f"but line {int(f['line'])} gives ({f['subject_id']}, {f['e']}, {f['g']}); each image needs one subject and one label set")
    first = first.reset_index().sort_values("path", kind="stable")
    table = pd.DataFrame({
        "image_id": first["path"], "path": first["path"], "subject_id": first["subject_id"], "label_source": "annotated",
        "ethnicity": first["e"].map(ETHNICITY), "gender": first["g"].map(GENDER),
    }).reset_index(drop=True).astype("string")
    return Manifest(table=table, root=root, attributes=("ethnicity", "gender"), name=name)
