"""RFW (Racial Faces in-the-Wild) test set: manifest loader.

Wang, M., Deng, W., Hu, J., Tao, X. & Huang, Y. (2019). Racial Faces in-the-Wild: Reducing
Racial Bias by Information Maximization Adaptation Network. ICCV 2019. Access: by e-mail
request for research use (http://whdeng.cn/RFW/testing.html). The images are MS-Celeb-1M web
images, collected WITHOUT the consent of the people shown (the dataset config says so and every
report prints it: ``consent: web_collected_without_consent``).

Expected layout (``test.tar.gz`` unpacked; ../shared sources §7, bob.bio.face ``rfw.py``)::

    test/data/<Race>/<subject_id>/<subject_id>_<NNNN>.jpg     Race in African, Asian, Caucasian, Indian
    test/txts/<Race>/<Race>_pairs.txt                         the official 6,000 pairs per race

The loader reads ``test/data``: one manifest row per image, ``path`` = ``<Race>/<id>/<file>``
(the key :func:`bench.protocol.pair_list.rfw_image_key` builds from a pairs.txt line),
``subject_id`` = ``<Race>/<id>`` (a few ids occur under two races; keeping them apart keeps every
subject in one group), attribute ``race`` = the subset folder (labels of the dataset's
authors, ``label_source = annotated``; fvbench never infers race). The comparisons are the
official pair lists (``protocol.pair_list``, set by ``configs/dataset/rfw.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from bench.data.manifest import Manifest
from bench.errors import DataError

__all__ = ["RACES", "load_rfw", "rfw_pair_files", "ACCESS_PAGE"]

#: The four race subsets of RFW, as folder names.
RACES = ("African", "Asian", "Caucasian", "Indian")
#: Where RFW is requested.
ACCESS_PAGE = "http://whdeng.cn/RFW/testing.html"

_LAYOUT = "test/data/<Race>/<subject_id>/<subject_id>_<NNNN>.jpg and test/txts/<Race>/<Race>_pairs.txt"


def _races(races: Sequence[str] | None) -> list[str]:
    out = list(races) if races else list(RACES)
    bad = [r for r in out if r not in RACES]
    if bad or len(set(out)) != len(out):
        raise DataError(f"dataset.races: {bad or out} — expected distinct values among {list(RACES)}")
    return out


def load_rfw(root: str | Path, races: Sequence[str] | None = None, name: str = "rfw") -> Manifest:
    """Manifest of the RFW test images of the chosen race subsets.

    Parameters
    ----------
    root : path
        The unpacked ``test`` folder (holding ``data/`` and ``txts/``).
    races : sequence of str, optional
        Subsets to load (default all four, :data:`RACES`).
    name : str

    Returns
    -------
    Manifest
        Columns ``image_id`` (= ``path``), ``path`` (``<Race>/<id>/<file>``, relative to
        ``root/data``), ``subject_id`` (``<Race>/<id>``), ``label_source`` (``annotated``),
        ``race``.

    Raises
    ------
    DataError
        Missing root or race folder (naming the expected layout and where RFW is requested),
        a race folder without images, or a file name that does not follow ``<id>_<NNNN>.jpg``.
    """
    root = Path(root).expanduser()
    data = root / "data"
    if not data.is_dir():
        raise DataError(f"RFW: {str(data)!r} not found; expected the unpacked test set ({_LAYOUT}); RFW is requested by e-mail "
                        f"for research use at {ACCESS_PAGE} (no downloader: it is gated)")
    rows = []
    for race in _races(races):
        folder = data / race
        if not folder.is_dir():
            raise DataError(f"RFW: race folder {str(folder)!r} not found; expected {_LAYOUT}")
        n0 = len(rows)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() == ".jpg"):
                stem = f.stem
                if not (stem.startswith(sub.name + "_") and stem[len(sub.name) + 1:].isdigit()):
                    raise DataError(f"RFW: image {str(f)!r} is not named <subject_id>_<NNNN>.jpg after its folder {sub.name!r}")
                rel = f"{race}/{sub.name}/{f.name}"
                rows.append({"image_id": rel, "path": rel, "subject_id": f"{race}/{sub.name}", "label_source": "annotated", "race": race})
        if len(rows) == n0:
            raise DataError(f"RFW: race folder {str(folder)!r} holds no <subject_id>/<subject_id>_<NNNN>.jpg images")
    table = pd.DataFrame(rows).astype("string")
    return Manifest(table=table, root=data, attributes=("race",), name=name)


def rfw_pair_files(root: str | Path, races: Sequence[str] | None = None) -> list[str]:
    """The official pair lists ``root/txts/<Race>/<Race>_pairs.txt`` of the chosen subsets (as strings)."""
    root = Path(root).expanduser()
    return [str(root / "txts" / r / f"{r}_pairs.txt") for r in _races(races)]
