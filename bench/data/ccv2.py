"""Casual Conversations v2 (Meta, 2023): videos to frames, manifest loader.

Porgali et al. (2023), "The Casual Conversations v2 Dataset", CVPR Workshops,
arXiv:2303.04838: 26,467 videos of 5,567 paid participants who consented, recorded in
Brazil, India, Indonesia, Mexico, the Philippines, the USA and Vietnam. Obtained from
https://ai.meta.com/datasets/casual-conversations-v2-downloads after accepting Meta's
data-use agreement. Metadata form as read in public loaders (docs/datasets.md).

Expected layout under ``root``::

    CasualConversationsV2.json     a JSON list, one object per video:
                                   subject_id, video_name, age, gender, geo_location
                                   ({"country": ...} or text), monk_skin_tone {scale, confidence},
                                   fitzpatrick_skin_tone {type, confidence}
    <videos_dir>/<video_name>      the .mp4 files (``videos_dir`` default ``.``)

Labels: ``age`` (banded), ``gender``, ``country`` are self-provided; ``monk_skin_tone``
(Monk scale 1-10) and ``fitzpatrick_skin_tone`` (I-VI) were given by trained annotators
(the phenotype attributes, analysed like any group). Where a person's videos carry
different values, the person's label is the most frequent one (ties: the first in sort
order) and the number of such people is recorded.

Frames (:func:`sample_frame_indices`): ``frames_per_video`` (k) frames per video, one
drawn uniformly at random inside each of k equal consecutive segments of the video, from
a generator seeded by ``(seed, SHA-256 of the video name)``: the choice is spread in
time, the same for the same seed whatever the order of the videos, and independent of
other videos. Frames are decoded with OpenCV (``cv2.VideoCapture``, sequential ``grab``
so the index is exact) and written losslessly (PNG) under ``frames_dir`` (the private
cache, never the results), reused when the video's name, size and mtime are unchanged.

Mated comparisons: frames of *different* videos of one person. Frames of one video are
near-duplicates (seconds apart, same light, same clothes) and would make FNMR look
better than any real capture pair, so the manifest's ``capture_id`` column holds the
video and the all-pairs protocol leaves out mated pairs that share one
(:func:`bench.protocol.pairs.all_pairs`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np
import pandas as pd

from bench.data.consented import DatasetCard, label_source_text, missing_root
from bench.data.manifest import Manifest
from bench.data.user_dataset import bin_labels
from bench.errors import DataError
from bench.files import loads_json

__all__ = ["load_ccv2", "read_ccv2_metadata", "sample_frame_indices", "extract_frames", "CARD", "METADATA", "ATTRIBUTE_SOURCES"]

log = logging.getLogger(__name__)

METADATA = "CasualConversationsV2.json"
ATTRIBUTE_SOURCES = {
    "age": "self-reported",
    "gender": "self-reported",
    "country": "self-reported",
    "monk_skin_tone": "annotated",
    "fitzpatrick_skin_tone": "annotated",
}
PHENOTYPE_ATTRIBUTES = ("monk_skin_tone", "fitzpatrick_skin_tone")
DEFAULT_AGE_BINS = (30, 45, 60)
_MAX_METADATA_BYTES = 512 << 20

CARD = DatasetCard(
    name="Casual Conversations v2",
    layout=f"a folder holding {METADATA} and the .mp4 videos named in it (under dataset.videos_dir)",
    licence_url="https://ai.meta.com/datasets/casual-conversations-v2-dataset/ (Meta data-use agreement)",
    get="accept the agreement and download at https://ai.meta.com/datasets/casual-conversations-v2-downloads, "
        "unpack under paths.data_dir as casual_conversations_v2/ (or set dataset.root); a gated set: no downloader",
)

_ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "6": "VI"}


def _scale(value: Any, key: str, where: str, valid: range) -> Any:
    """``{"scale": "scale 5", ...}`` / ``{"type": "type iv"}`` / ``5`` -> the number as text."""
    v = value.get(key) if isinstance(value, dict) else value
    if v is None or (isinstance(v, str) and not v.strip()):
        return pd.NA
    s = str(v).strip()
    m = re.search(r"(\d+|[ivxIVX]+)\s*$", s)
    if not m:
        raise DataError(f"{where}: {s[:40]!r} does not end in a scale value")
    tok = m.group(1)
    if not tok.isdigit():
        inv = {r: d for d, r in _ROMAN.items()}
        tok = inv.get(tok.upper(), "")
    if not tok or int(tok) not in valid:
        raise DataError(f"{where}: {s[:40]!r} is outside the scale {valid.start}-{valid.stop - 1}")
    return tok


def _two_digits(v: Any) -> Any:
    """Monk values as ``"01"``-``"10"``, so that groups sort in scale order."""
    return v if v is pd.NA else str(v).zfill(2)


def read_ccv2_metadata(path: Path) -> pd.DataFrame:
    """One row per video from ``CasualConversationsV2.json``.

    Returns
    -------
    pandas.DataFrame
        ``subject_id`` (zero-padded to 4 digits when numeric), ``video_name``, ``age``,
        ``gender``, ``country`` (text), ``monk_skin_tone`` (``"01"``-``"10"``, two digits so groups sort in scale order),
        ``fitzpatrick_skin_tone`` (``"I"``-``"VI"``); ``pd.NA`` missing.

    Raises
    ------
    DataError
        Missing or unreadable file, not a JSON list of objects, a missing
        ``subject_id``/``video_name``, a video name that is absolute or climbs out (``..``),
        a video listed twice, a skin tone off its scale (file, entry and key named).
    """
    where = str(path)
    if not path.is_file():
        raise DataError(f"Casual Conversations v2 metadata not found: {where!r}; expected {METADATA} in the root")
    if path.stat().st_size > _MAX_METADATA_BYTES:
        raise DataError(f"{where!r} is larger than {_MAX_METADATA_BYTES >> 20} MiB; not a CCv2 metadata file")
    try:
        data = loads_json(path.read_bytes())
    except ValueError as err:  # deep nesting and huge integers included (bench.files.loads_json)
        raise DataError(f"{where!r}: {err}; expected a UTF-8 JSON list with one object per video") from None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise DataError(f"{where!r}: expected a JSON list with one object per video")
    rows = []
    for i, d in enumerate(data):
        at = f"{where} entry {i}"
        for key in ("subject_id", "video_name"):
            if d.get(key) in (None, ""):
                raise DataError(f"{at}: missing {key!r}")
        subj = str(d["subject_id"]).strip()
        if subj.isdigit():
            subj = subj.zfill(4)
        video = str(d["video_name"]).strip()
        p = PurePosixPath(video.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts:
            raise DataError(f"{at} key 'video_name': {video!r} must be a relative path without '..'")
        geo = d.get("geo_location")
        country = geo.get("country") if isinstance(geo, dict) else geo
        fitz = _scale(d.get("fitzpatrick_skin_tone"), "type", f"{at} key 'fitzpatrick_skin_tone'", range(1, 7))
        rows.append({
            "subject_id": subj,
            "video_name": p.as_posix(),
            "age": pd.NA if d.get("age") in (None, "") else str(d["age"]).strip(),
            "gender": pd.NA if d.get("gender") in (None, "") else str(d["gender"]).strip(),
            "country": pd.NA if country in (None, "") else str(country).strip(),
            "monk_skin_tone": _two_digits(_scale(d.get("monk_skin_tone"), "scale", f"{at} key 'monk_skin_tone'", range(1, 11))),
            "fitzpatrick_skin_tone": fitz if fitz is pd.NA else _ROMAN[fitz],
        })
    if not rows:
        raise DataError(f"{where!r} lists no video")
    t = pd.DataFrame(rows).astype("string")
    dup = t["video_name"][t["video_name"].duplicated()]
    if len(dup):
        raise DataError(f"{where!r}: video_name {sorted(set(dup))[:3]} listed twice")
    return t


def _video_seed(seed: int, video_name: str) -> list[int]:
    return [int(seed), int(hashlib.sha256(video_name.encode("utf-8")).hexdigest()[:15], 16)]


def sample_frame_indices(n_frames: int, k: int, seed: int, video_name: str) -> list[int]:
    """k frame indices spread over a video: one uniform draw in each of k equal segments.

    Parameters
    ----------
    n_frames : int
        Frames in the video (>= 0).
    k : int
        Frames wanted (>= 1). A video with fewer than k frames gives all its frames.
    seed : int
        Run seed; with ``video_name`` it seeds the draw (order of videos does not matter).
    video_name : str

    Returns
    -------
    list of int
        Sorted, distinct, in ``[0, n_frames)``. Segment ``j`` is
        ``[floor(j n / k), floor((j + 1) n / k))``.
    """
    if k < 1:
        raise DataError(f"dataset.frames_per_video must be >= 1, got {k}")
    if n_frames <= k:
        return list(range(max(n_frames, 0)))
    rng = np.random.default_rng(_video_seed(seed, video_name))
    edges = (np.arange(k + 1) * n_frames) // k
    return [int(rng.integers(a, b)) for a, b in zip(edges[:-1], edges[1:])]


def _count_frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return -1
        n = 0
        while cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def _cached_frame_count(path: Path, folder: Path) -> int:
    """Exact frame count of a video, kept in ``folder/frames.json`` (the folder is keyed by name, size, mtime)."""
    record = folder / "frames.json"
    try:
        n = json.loads(record.read_text()).get("n_frames")
        if isinstance(n, int) and n >= 0:
            return n
    except (OSError, ValueError, AttributeError):
        pass
    n = _count_frames(path)
    if n > 0:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"n_frames": n}))
        tmp.replace(record)
    return n


def extract_frames(video: Path, indices: Sequence[int], out_dir: Path) -> list[Path]:
    """Decode the frames ``indices`` of ``video`` (exact, sequential) into ``out_dir/f<index>.png``.

    Returns the written (or already present) files, in ``indices`` order; empty if the
    video cannot be opened or is shorter than expected.
    """
    import cv2

    want = sorted(set(int(i) for i in indices))
    out = {i: out_dir / f"f{i:06d}.png" for i in want}
    if all(p.is_file() for p in out.values()):
        return [out[i] for i in want]
    out_dir.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    try:
        if not cap.isOpened():
            return []
        i, got = 0, {}
        last = want[-1] if want else -1
        while i <= last and cap.grab():
            if i in out:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    tmp = out[i].with_suffix(".tmp.png")
                    if cv2.imwrite(str(tmp), frame):
                        tmp.replace(out[i])
                        got[i] = out[i]
            i += 1
    finally:
        cap.release()
    return [got[i] for i in want if i in got]


def _mode(values: pd.Series) -> Any:
    v = values.dropna()
    if v.empty:
        return pd.NA
    counts = v.value_counts()
    top = counts[counts == counts.max()].index
    return sorted(str(x) for x in top)[0]


def load_ccv2(
    root: str | Path,
    *,
    frames_dir: str | Path,
    frames_per_video: int = 3,
    seed: int = 0,
    videos_dir: str = ".",
    attributes: Sequence[str] | None = None,
    age_bins: Sequence[float] | None = DEFAULT_AGE_BINS,
) -> Manifest:
    """Build the Casual Conversations v2 manifest: k sampled frames per video.

    Parameters
    ----------
    root : path
        Folder holding ``CasualConversationsV2.json`` (layout in the module docstring).
    frames_dir : path
        Where extracted frames are kept (the private cache; ``paths.cache_dir`` in the config).
    frames_per_video : int
        k, frames drawn per video (:func:`sample_frame_indices`).
    seed : int
        Seeds the frame draw.
    videos_dir : str
        Folder of the videos, relative to ``root``.
    attributes : sequence of str, optional
        Reported attributes; default all of :data:`ATTRIBUTE_SOURCES`.
    age_bins : sequence of number or None
        Age band edges (years); non-numeric answers (e.g. "prefer not to say") stay
        their own group.

    Returns
    -------
    Manifest
        Root ``frames_dir``; ``image_id`` = ``<video_name>#f<index>``, ``capture_id`` =
        the video; ``provenance`` records the frame policy, the frames chosen per
        video count, unreadable videos, label sources and disagreements.

    Raises
    ------
    DataError
        Missing root (layout, licence page, how to get it), malformed metadata, an
        unknown attribute, no video readable at all.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise missing_root(CARD, root)
    meta = read_ccv2_metadata(root / METADATA)
    chosen = list(attributes) if attributes is not None else list(ATTRIBUTE_SOURCES)
    unknown = [a for a in chosen if a not in ATTRIBUTE_SOURCES]
    if unknown:
        raise DataError(f"Casual Conversations v2 attribute(s) {unknown} unknown; available: {list(ATTRIBUTE_SOURCES)}")
    if int(frames_per_video) < 1:
        raise DataError(f"dataset.frames_per_video must be >= 1, got {frames_per_video}")
    frames_root = Path(frames_dir).expanduser()
    vdir = root / videos_dir
    # a person's label: the most frequent value over their videos
    labels = meta.groupby("subject_id")[chosen].agg(_mode) if chosen else pd.DataFrame(index=meta["subject_id"].unique())
    disagree = {a: int((meta.groupby("subject_id")[a].nunique() > 1).sum()) for a in chosen}
    rows, unreadable, missing = [], 0, 0
    for _, v in meta.iterrows():
        name = str(v["video_name"])
        path = vdir / name
        if not path.suffix:
            path = path.with_suffix(".mp4")
        if not path.is_file():
            missing += 1
            continue
        st = path.stat()
        tag = hashlib.sha256(f"{name}\n{st.st_size}\n{st.st_mtime_ns}".encode()).hexdigest()[:16]
        n = _cached_frame_count(path, frames_root / tag)
        idx = sample_frame_indices(n, int(frames_per_video), int(seed), name) if n > 0 else []
        files = extract_frames(path, idx, frames_root / tag) if idx else []
        if not files:
            unreadable += 1
            log.warning("Casual Conversations v2: video %r could not be decoded; left out", name)
            continue
        for i, f in zip(sorted(set(idx)), files):
            rows.append({"image_id": f"{name}#f{i}", "path": f.relative_to(frames_root).as_posix(),
                         "subject_id": str(v["subject_id"]), "capture_id": name, "frame_index": i})
    if missing:
        log.warning("Casual Conversations v2: %d video(s) named in %s not found under %s", missing, METADATA, str(vdir))
    if not rows:
        raise DataError(f"no readable Casual Conversations v2 video under {str(vdir)!r} ({len(meta)} listed in {METADATA}, "
                        f"{missing} missing, {unreadable} unreadable)")
    table = pd.DataFrame(rows)
    for a in chosen:
        col = table["subject_id"].map(labels[a]).astype("string")
        if a == "age" and age_bins is not None:
            num = pd.to_numeric(col, errors="coerce")
            banded = bin_labels(col.where(num.notna()), list(age_bins), attribute="age")
            col = banded.fillna(col).astype("string")
        table[a] = col
    sources = {a: ATTRIBUTE_SOURCES[a] for a in chosen}
    table["label_source"] = pd.Series([label_source_text(sources)] * len(table), dtype="string")
    for c in ("image_id", "path", "subject_id", "capture_id"):
        table[c] = table[c].astype("string")
    provenance = {
        "dataset": "Casual Conversations v2",
        "licence": "Meta Casual Conversations v2 data-use agreement",
        "consent": "paid participants who consented to the use of their recordings (Porgali et al. 2023)",
        "attribute_sources": sources,
        "phenotype_attributes": [a for a in PHENOTYPE_ATTRIBUTES if a in chosen],
        "frame_policy": {"frames_per_video": int(frames_per_video), "seed": int(seed),
                         "rule": "one uniform draw in each of k equal segments of the video; seeded by (seed, SHA-256 of the video name)",
                         "decoder": "OpenCV VideoCapture, sequential grab (exact frame index)"},
        "mated_pairs": "frames of different videos of one person; frames of one video are never paired as mated (capture_id)",
        "videos_listed": int(len(meta)), "videos_used": int(table["capture_id"].nunique()),
        "videos_missing": int(missing), "videos_unreadable": int(unreadable),
        "subjects_with_disagreeing_labels": disagree,
        "age_bins": None if age_bins is None else [float(x) for x in age_bins],
    }
    return Manifest(table=table, root=frames_root, attributes=tuple(chosen), name="ccv2", provenance=provenance)
