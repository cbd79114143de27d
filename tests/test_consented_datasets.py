"""Issue #14: FHIBE, Chicago Face Database and Casual Conversations v2 loaders on fixtures built here.

Each test writes a tiny fake copy of the dataset in its documented layout (images drawn
with OpenCV, videos written with cv2.VideoWriter, metadata files with pandas/json) and
checks the manifest the loader builds: subjects, images, pairs, labels and where each
label comes from, the release facts recorded, and one-line errors for malformed input.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from bench.data.ccv2 import load_ccv2, sample_frame_indices
from bench.data.cfd import WORKBOOK, load_cfd
from bench.data.consented import parse_list_cell, subject_set_sha256
from bench.data.fhibe import METADATA as FHIBE_META, load_fhibe
from bench.errors import DataError
from bench.protocol.pairs import all_pairs, capture_ids_of

VERSION = "fhibe.20250708.m.k_2vTAkV"


def _face(path: Path, seed: int, size: int = 48) -> None:
    """A drawn face-like picture (ellipse, eyes), distinct per seed."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), int(rng.integers(60, 200)), np.uint8)
    cv2.ellipse(img, (size // 2, size // 2), (size // 3, size // 2 - 4), 0, 0, 360, tuple(int(x) for x in rng.integers(80, 250, 3)), -1)
    cv2.circle(img, (size // 3, size // 2 - 4), 3, (0, 0, 0), -1)
    cv2.circle(img, (2 * size // 3, size // 2 - 4), 3, (0, 0, 0), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


# ----------------------------------------------------------------------------- FHIBE
def _fhibe(tmp_path: Path, rows: list[dict] | None = None, name: str = f"{VERSION}_downsampled_public") -> Path:
    root = tmp_path / name
    if rows is None:
        rows = []
        people = {"s1": ("['0. She/her/hers']", "24", "['3. Eastern Africa']", "['4. Type IV']"),
                  "s2": ("['1. He/him/his', '2. They/them/their']", "41", "['10. Northern Europe']", "['1. Type I']"),
                  "s3": ("['1. He/him/his']", "67", "['3. Eastern Africa', '10. Northern Europe']", "['6. Type VI']")}
        for k, (s, (pr, age, anc, skin)) in enumerate(people.items()):
            for j in range(3 if s != "s3" else 1):
                rows.append({"image_id": f"{s}_img{j}", "subject_id": s, "filepath": f"faces/{s}/{s}_img{j}.png",
                             "pronoun": pr, "age": age, "ancestry": anc, "natural_skin_color": skin,
                             "apparent_skin_color": skin, "head_pose": "['0. Typical']", "location_country": "Kenya",
                             "multiple_subjects": "False", "apparent_skin_color_hue_lum": "light_red"})
        rows.append({**rows[0], "image_id": "s1_two_people", "filepath": "faces/s1/s1_two.png", "multiple_subjects": "True"})
    meta = root / FHIBE_META
    meta.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(meta, index=False)
    for i, r in enumerate(rows):
        _face(root / "data/raw/fhibe_downsampled" / r["filepath"], i)
    return root


def test_fhibe_manifest_labels_provenance_and_version(tmp_path):
    root = _fhibe(tmp_path)
    m = load_fhibe(root)
    t = m.table
    assert len(t) == 7 and t["subject_id"].nunique() == 3  # the two-person image is left out
    assert m.attributes == ("pronoun", "age", "ancestry", "natural_skin_color", "apparent_skin_color", "location_country", "head_pose")
    s2 = t[t["subject_id"] == "s2"].iloc[0]
    assert s2["pronoun"] == "He/him/his + They/them/their"  # a multi-selection is its own group, numbering removed
    assert s2["age"] == "40-49" and s2["natural_skin_color"] == "Type I"
    assert t[t["subject_id"] == "s3"].iloc[0]["ancestry"] == "Eastern Africa + Northern Europe"
    assert t[t["subject_id"] == "s1"].iloc[0]["age"] == "<30"
    assert t[t["subject_id"] == "s3"].iloc[0]["age"] == "60+"
    assert "apparent_skin_color_hue_lum" not in t.columns  # computed from the images: never a label here
    assert set(t["label_source"]) == {"self-reported: pronoun, age, ancestry, natural_skin_color, apparent_skin_color, location_country | annotated: head_pose"}
    assert t["path"].iloc[0].startswith("data/raw/fhibe_downsampled/faces/")
    p = m.summary()["provenance"]
    assert p["version"] == VERSION and p["images_multiple_subjects_dropped"] == 1
    assert p["subject_set_sha256"] == subject_set_sha256(["s1", "s2", "s3"])
    assert p["attribute_sources"]["head_pose"] == "annotated" and p["phenotype_attributes"] == ["natural_skin_color", "apparent_skin_color"]
    assert len(p["metadata_sha256"]) == 64
    # 3 + 3 images of s1, s2 and one of s3: mated pairs 3 + 3 = 6 (s3 has no mate)
    _, _, mated = all_pairs(t["subject_id"].astype(str).to_numpy())
    assert int(mated.sum()) == 6 and int((~mated).sum()) == 21 - 6


def test_fhibe_version_and_errors(tmp_path):
    root = _fhibe(tmp_path, name="my_copy")
    with pytest.raises(DataError, match="does not carry the release version"):
        load_fhibe(root)
    assert load_fhibe(root, version="fhibe.20251201.x").summary()["provenance"]["version"] == "fhibe.20251201.x"
    good = _fhibe(tmp_path / "b")
    with pytest.raises(DataError, match="disagrees with the FHIBE root's name"):
        load_fhibe(good, version="fhibe.other")
    # malformed metadata: one line naming the file, the line and the column
    meta = pd.read_csv(good / FHIBE_META, dtype=str, keep_default_na=False)
    meta.loc[2, "age"] = "forty"
    meta.to_csv(good / FHIBE_META, index=False)
    with pytest.raises(DataError, match=r"fhibe_face_crop_align.csv' line 4 column 'age': 'forty' is not a whole number") as e:
        load_fhibe(good)
    assert "\n" not in str(e.value)
    meta.loc[2, "age"] = "30"
    meta.loc[1, "pronoun"] = "[__import__('os').system('x')]"
    meta.to_csv(good / FHIBE_META, index=False)
    with pytest.raises(DataError, match=r"line 3 column 'pronoun'.*not a list literal"):
        load_fhibe(good)
    meta.drop(columns=["ancestry"]).to_csv(good / FHIBE_META, index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['ancestry'\]"):
        load_fhibe(good)
    meta2 = meta.copy()
    meta2.loc[1, "pronoun"] = "['1. He/him/his']"
    meta2.loc[0, "filepath"] = "../../../etc/passwd"
    meta2.to_csv(good / FHIBE_META, index=False)
    with pytest.raises(DataError, match=r"line 2 column 'filepath'.*without '\.\.'"):
        load_fhibe(good)


def test_missing_roots_name_layout_licence_and_how_to_get(tmp_path):
    for load, words in ((load_fhibe, ("fhibe.<version>_downsampled_public", "fairnessbenchmark.ai.sony", "gated set")),
                        (load_cfd, ("CFD Version 3.0", "chicagofaces.org", "register")),
                        (lambda r: load_ccv2(r, frames_dir=tmp_path / "f"), ("CasualConversationsV2.json", "ai.meta.com", "agreement"))):
        with pytest.raises(DataError) as e:
            load(tmp_path / "nowhere")
        msg = str(e.value)
        assert "\n" not in msg and "nowhere" in msg and all(w in msg for w in words), msg


def test_fhibe_missing_root_hint_names_the_unpacked_release_folder(tmp_path):
    # unpacked under paths.data_dir, the release keeps its own name; the default root is <data_dir>/fhibe
    data_dir = tmp_path / "data"
    release = _fhibe(data_dir)
    assert release.name == f"{VERSION}_downsampled_public"
    with pytest.raises(DataError) as e:
        load_fhibe(data_dir / "fhibe")
    msg = str(e.value)
    assert "\n" not in msg and f"pass dataset.root={release}" in msg and "not found" in msg
    # a folder named fhibe holding the release one level down: named too
    holder = tmp_path / "other" / "fhibe"
    _fhibe(holder)
    with pytest.raises(DataError, match=rf"holds no .*fhibe_face_crop_align.csv; found the release folder .*pass dataset.root=.*{VERSION}_downsampled_public"):
        load_fhibe(holder)
    # nothing there: the generic hint says to pass the unpacked folder as dataset.root
    with pytest.raises(DataError, match=r"pass dataset.root=<data_dir>/fhibe.<version>_downsampled_public"):
        load_fhibe(tmp_path / "empty" / "fhibe")


def test_parse_list_cell_never_evaluates():
    assert parse_list_cell("['1. He/him/his', '1. He/him/his']", where="x") == ["He/him/his"]
    assert parse_list_cell("Kenya", where="x") == ["Kenya"]
    with pytest.raises(DataError, match="not a list literal"):
        parse_list_cell("[open('/etc/passwd').read()]", where="x")
    with pytest.raises(DataError, match="4096"):
        parse_list_cell("[" + "'a'," * 2000 + "]", where="x")


# ----------------------------------------------------------------------------- CFD
def _workbook(path: Path, sheets: dict[str, pd.DataFrame]) -> None:
    """Norming sheets as distributed: 7 preamble rows (row 6 = variable ids), labels on row 7."""
    with pd.ExcelWriter(path, engine="openpyxl") as xw:
        for name, df in sheets.items():
            df.to_excel(xw, sheet_name=name, startrow=7, index=False)
            ws = xw.sheets[name]
            ws.cell(row=1, column=1, value="Chicago Face Database norming data (fixture)")
            for j, _ in enumerate(df.columns, start=1):
                ws.cell(row=7, column=j, value=f"V{j:03d}")


def _cfd(tmp_path: Path) -> Path:
    root = tmp_path / "CFD Version 3.0"
    main = pd.DataFrame({"Model": ["Target", "AF-200", "BM-201", "WF-202"], "EthnicitySelf": ["", "A", "B", "W"],
                         "GenderSelf": ["", "F", "M", "F"], "AgeSelf": ["", "24.5", "47", "61"], "AgeRated": ["", "25", "40", "55"]})
    mr = pd.DataFrame({"Model": ["MF-300"], "EthnicitySelf": ["Multiracial"], "GenderSelf": ["F"], "AgeSelf": ["33"]})
    india = pd.DataFrame({"Model": ["IF615-279"], "EthnicitySelf": ["I"], "GenderSelf": ["F"], "AgeSelf": ["29"]})
    root.mkdir(parents=True)
    _workbook(root / WORKBOOK, {"CFD U.S. Norming Data": main, "CFD-MR U.S. Norming Data": mr,
                                "CFD-I U.S. Norming Data": india, "CFD 3.0 Codebook": pd.DataFrame({"x": [1]})})
    files = ["CFD/AF-200/CFD-AF-200-228-N.jpg", "CFD/AF-200/CFD-AF-200-228-HC.jpg", "CFD/AF-200/CFD-AF-200-228-HO.jpg",
             "CFD/BM-201/CFD-BM-201-011-N.jpg", "CFD/BM-201/CFD-BM-201-011-A.jpg",
             "CFD/WF-202/CFD-WF-202-100-N.jpg",
             "CFD-MR/CFD-MF-300-002-N.jpg", "CFD-INDIA/CFD-IF-615-279-1-N.jpg"]
    for i, f in enumerate(files):
        _face(root / "Images" / f, 100 + i)
    return root


@pytest.mark.filterwarnings("ignore:manifest .cfd.:bench.errors.DatasetWarning")
def test_cfd_expressions_form_mated_pairs_and_norming_labels(tmp_path):
    m = load_cfd(_cfd(tmp_path))
    t = m.table.set_index("image_id")
    assert len(t) == 8 and m.table["subject_id"].nunique() == 5
    assert t.loc["CFD-AF-200-228-HC", "subject_id"] == "AF-200" and t.loc["CFD-AF-200-228-HC", "expression"] == "happy_closed"
    assert t.loc["CFD-IF-615-279-1-N", "subject_id"] == "IF615-279"  # India keys written without the dash
    assert (t.loc["CFD-MF-300-002-N", "ethnicity"], t.loc["CFD-MF-300-002-N", "set"]) == ("Multiracial", "CFD-MR")
    assert t.loc["CFD-AF-200-228-N", "age"] == "<30" and t.loc["CFD-BM-201-011-A", "age"] == "45-59"
    assert t.loc["CFD-WF-202-100-N", "age"] == "60+" and t.loc["CFD-IF-615-279-1-N", "gender"] == "F"
    assert set(m.table["label_source"]) == {"self-reported"}
    _, _, mated = all_pairs(m.table["subject_id"].astype(str).to_numpy())
    assert int(mated.sum()) == 3 + 1  # AF-200: 3 expressions -> 3 pairs; BM-201: 2 -> 1
    p = m.summary()["provenance"]
    assert p["sets"] == ["CFD", "CFD-MR", "CFD-INDIA"] and p["subjects_with_mated_images"] == 2
    assert p["images_per_expression"] == {"angry": 1, "happy_closed": 1, "happy_open": 1, "neutral": 5}
    neutral = load_cfd(tmp_path / "CFD Version 3.0", expressions=["N"], sets=["CFD"])
    assert len(neutral.table) == 3


def test_cfd_malformed_inputs(tmp_path):
    root = _cfd(tmp_path)
    _face(root / "Images/CFD/AF-200/holiday.jpg", 1)
    with pytest.raises(DataError, match=r"unexpected CFD file name .*holiday.jpg"):
        load_cfd(root)
    (root / "Images/CFD/AF-200/holiday.jpg").unlink()
    bad = pd.DataFrame({"Model": ["AF-200"], "EthnicitySelf": ["A"], "GenderSelf": ["F"]})
    _workbook(root / WORKBOOK, {"CFD U.S. Norming Data": bad})
    with pytest.raises(DataError, match=r"sheet 'CFD U.S. Norming Data': missing column\(s\) \['AgeSelf'\] in header row 8"):
        load_cfd(root, sets=["CFD"])
    _workbook(root / WORKBOOK, {"CFD U.S. Norming Data": bad.assign(AgeSelf=["30"])})
    with pytest.raises(DataError, match=r"has no sheet 'CFD-MR U.S. Norming Data' \(set CFD-MR\)"):
        load_cfd(root)
    _workbook(root / WORKBOOK, {"CFD U.S. Norming Data": bad.assign(AgeSelf=["old"])})
    with pytest.raises(DataError, match=r"model 'AF-200' column 'AgeSelf': 'old' is not a number"):
        load_cfd(root, sets=["CFD"])


def test_cfd_damaged_or_hostile_workbook_is_one_line_error(tmp_path):
    import zipfile

    root = _cfd(tmp_path)
    wb = root / WORKBOOK
    with zipfile.ZipFile(wb) as z:
        items = {i.filename: z.read(i) for i in z.infolist()}
    (root / WORKBOOK).write_bytes(b"PK\x03\x04garbage" * 10)  # truncated zip
    with pytest.raises(DataError, match=r"cannot read .*Norming Data and Codebook.xlsx' as an .xlsx workbook \(BadZipFile"):
        load_cfd(root)
    # a billion-laughs entity bomb in a sheet: expat refuses the amplification (ParseError), never expands it
    sheet = sorted(k for k in items if k.startswith("xl/worksheets/sheet"))[0]
    ents = "".join(f'<!ENTITY l{i} "{("&l%d;" % (i - 1)) * 10 if i else "lol" * 10}">' for i in range(10))
    body = items[sheet].split(b"?>", 1)[1] if items[sheet].startswith(b"<?xml") else items[sheet]
    body = body.replace(b"<sheetData>", b'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&l9;</t></is></c></row>', 1)
    with zipfile.ZipFile(wb, "w") as z:
        for k, v in items.items():
            z.writestr(k, f'<?xml version="1.0"?><!DOCTYPE x [{ents}]>'.encode() + body if k == sheet else v)
    with pytest.raises(DataError, match=r"as an .xlsx workbook \((ParseError|ValueError|.*Entit)") as e:
        load_cfd(root)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- CCv2
def _video(path: Path, n_frames: int, seed: int) -> None:
    """A tiny lossless-enough video whose frame i shows the number i in its pixel values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 32))
    assert w.isOpened()
    for i in range(n_frames):
        img = np.full((32, 32, 3), (i * 7 + seed * 40) % 256, np.uint8)
        w.write(img)
    w.release()


def _ccv2(tmp_path: Path) -> Path:
    root = tmp_path / "ccv2"
    entries = []
    spec = {"1": (["a", "b"], "27", "cis woman", "brazil", "scale 3", "type ii"),
            "2": (["c", "d"], "52", "cis man", "india", "scale 8", "type v"),
            "3": (["e"], "prefer not to say", "non-binary", "mexico", "scale 5", "type iv")}
    for s, (videos, age, gender, country, monk, fitz) in spec.items():
        for v in videos:
            entries.append({"subject_id": s, "video_name": f"{v}.avi", "age": age, "gender": gender,
                            "geo_location": {"country": country}, "monk_skin_tone": {"scale": monk, "confidence": "high"},
                            "fitzpatrick_skin_tone": {"type": fitz, "confidence": "medium"}})
    entries[1]["monk_skin_tone"] = {"scale": "scale 4", "confidence": "low"}  # subject 1's videos disagree (3 vs 4)
    root.mkdir(parents=True)
    (root / "CasualConversationsV2.json").write_text(json.dumps(entries))
    for i, e in enumerate(entries):
        _video(root / e["video_name"], 20, i)
    return root


def test_frame_sampling_is_seeded_and_spread():
    a = sample_frame_indices(20, 3, 0, "a.avi")
    assert a == sample_frame_indices(20, 3, 0, "a.avi") and len(a) == 3
    assert 0 <= a[0] < 6 and 6 <= a[1] < 13 and 13 <= a[2] < 20  # one per segment [0,6), [6,13), [13,20)
    draws = {tuple(sample_frame_indices(20, 3, s, "a.avi")) for s in range(10)}
    assert len(draws) > 1  # the seed changes the draw
    assert sample_frame_indices(2, 3, 0, "x") == [0, 1]


def test_ccv2_frames_pairs_and_label_provenance(tmp_path):
    root = _ccv2(tmp_path)
    m = load_ccv2(root, frames_dir=tmp_path / "frames", frames_per_video=3, seed=7)
    t = m.table
    assert len(t) == 15 and t["subject_id"].nunique() == 3 and t["capture_id"].nunique() == 5
    assert list(t["subject_id"].unique()) == ["0001", "0002", "0003"]  # zero-padded as CCv2 loaders do
    for video, g in t.groupby("capture_id"):
        assert sorted(g["frame_index"]) == sample_frame_indices(20, 3, 7, video)
        # the frame written is the frame decoded at that index (pixel value encodes the index)
        i = int(g["frame_index"].iloc[0])
        img = cv2.imread(str(m.root / g["path"].iloc[0]))
        k = [e["video_name"] for e in json.loads((root / "CasualConversationsV2.json").read_text())].index(video)
        assert abs(int(img.mean()) - (i * 7 + k * 40) % 256) <= 3
    first = t.set_index("image_id")
    row = first[first["subject_id"] == "0001"].iloc[0]
    assert (row["age"], row["gender"], row["country"], row["fitzpatrick_skin_tone"]) == ("<30", "cis woman", "brazil", "II")
    assert row["monk_skin_tone"] == "03"  # 3 vs 4 over the two videos: a tie, the first in sort order
    assert first[first["subject_id"] == "0003"].iloc[0]["age"] == "prefer not to say"
    assert first[first["subject_id"] == "0002"].iloc[0]["age"] == "45-59"
    assert set(t["label_source"]) == {"self-reported: age, gender, country | annotated: monk_skin_tone, fitzpatrick_skin_tone"}
    p = m.summary()["provenance"]
    assert p["phenotype_attributes"] == ["monk_skin_tone", "fitzpatrick_skin_tone"]
    assert p["subjects_with_disagreeing_labels"]["monk_skin_tone"] == 1 and p["videos_used"] == 5
    # mated pairs: frames of different videos of a person only: 2 people x (3 x 3) = 18; never within a video
    caps = capture_ids_of(t)
    ia, ib, mated = all_pairs(t["subject_id"].astype(str).to_numpy(), capture_ids=caps)
    assert int(mated.sum()) == 18 and not (caps[ia[mated]] == caps[ib[mated]]).any()
    assert int((~mated).sum()) == 6 * 6 + 6 * 3 + 6 * 3  # frames of 0001x0002, 0001x0003, 0002x0003
    # same seed, same frames (cache reused); another seed, other frames
    again = load_ccv2(root, frames_dir=tmp_path / "frames", frames_per_video=3, seed=7)
    assert again.content_hash() == m.content_hash()
    other = load_ccv2(root, frames_dir=tmp_path / "frames", frames_per_video=3, seed=8)
    assert other.content_hash() != m.content_hash()


def test_ccv2_malformed_metadata(tmp_path):
    root = _ccv2(tmp_path)
    meta = root / "CasualConversationsV2.json"
    entries = json.loads(meta.read_text())
    entries[2]["monk_skin_tone"] = {"scale": "scale 12"}
    meta.write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"entry 2 key 'monk_skin_tone': 'scale 12' is outside the scale 1-10"):
        load_ccv2(root, frames_dir=tmp_path / "f")
    entries[2]["monk_skin_tone"] = {"scale": "scale 2"}
    entries[0]["video_name"] = "../outside.mp4"
    meta.write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"entry 0 key 'video_name': '\.\./outside.mp4' must be a relative path"):
        load_ccv2(root, frames_dir=tmp_path / "f")
    meta.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DataError, match="expected a JSON list with one object per video"):
        load_ccv2(root, frames_dir=tmp_path / "f")
    # hostile metadata: nesting past the recursion limit, an integer past Python's 4300-digit limit
    meta.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"CasualConversationsV2.json': JSON nested deeper than the parser's recursion limit; expected"):
        load_ccv2(root, frames_dir=tmp_path / "f")
    meta.write_text('[{"subject_id": ' + "9" * 5000 + "}]")
    with pytest.raises(DataError, match=r"CasualConversationsV2.json': Exceeds the limit \(4300 digits\).*; expected") as e:
        load_ccv2(root, frames_dir=tmp_path / "f")
    assert "\n" not in str(e.value) and "sys.set_int_max_str_digits" not in str(e.value)


class _PixelAligner:
    def acquire_file(self, path):
        from bench.acquisition.base import Acquisition

        img = cv2.imread(str(path))
        return Acquisition(chip=img, fta_reason=None, n_faces=1)


class _PixelEmbedder:
    """Mean colour plus a fixed random projection: frames of one video score alike."""

    name = "pixels"
    metric = "cosine"
    embedding_dim = 4
    nominal_threshold = None
    weights_sha256: dict = {}

    def __init__(self) -> None:
        self.aligner = _PixelAligner()

    def settings(self) -> dict:
        return {"pixels": 1}

    def embed(self, chips):
        return np.stack([np.array([c.mean() / 255, 1.0, np.sin(c.mean()), np.cos(c.mean())], np.float32) for c in chips])


@pytest.mark.filterwarnings("ignore::bench.errors.DatasetWarning")
def test_ccv2_run_scores_only_cross_video_mated_pairs_and_refuses_streaming(tmp_path):
    from bench.errors import ConfigError
    from bench.run import Protocol, evaluate

    m = load_ccv2(_ccv2(tmp_path), frames_dir=tmp_path / "frames", frames_per_video=3, seed=1)
    res = evaluate(m, _PixelEmbedder(), Protocol(target_fmrs=[0.1], use_nominal_threshold=False, engine="table"),
                   cache_dir=tmp_path / "cache", progress=False)
    assert res.dataset_info["mated_comparisons"] == 18 and res.dataset_info["nonmated_comparisons"] == 72
    comp = res.comparisons
    video = dict(zip(m.table["image_id"], m.table["capture_id"]))
    mated = comp[comp["mated"]]
    assert not (mated["image_a"].map(video).astype(str) == mated["image_b"].map(video).astype(str)).any()
    assert res.dataset_info["provenance"]["frame_policy"]["frames_per_video"] == 3
    # the phenotype attributes get per-group rows like any label
    assert {"monk_skin_tone", "fitzpatrick_skin_tone"} <= set(res.per_group["attribute"])
    with pytest.raises(ConfigError, match="streaming engine cannot leave out their mated pairs"):
        evaluate(m, _PixelEmbedder(), Protocol(target_fmrs=[0.1], use_nominal_threshold=False, engine="stream"),
                 cache_dir=tmp_path / "cache", progress=False)


@pytest.mark.filterwarnings("ignore::bench.errors.DatasetWarning")
def test_ccv2_result_folder_verifies(tmp_path):
    """The published folder of a CCv2 run (cross-video mated pairs only) passes fvbench-verify."""
    from bench.report.writer import write_results
    from bench.run import Protocol, evaluate
    from bench.verify import verify_run

    m = load_ccv2(_ccv2(tmp_path), frames_dir=tmp_path / "frames", frames_per_video=2, seed=3)
    res = evaluate(m, _PixelEmbedder(), Protocol(target_fmrs=[0.1], use_nominal_threshold=False, engine="table"),
                   cache_dir=tmp_path / "cache", progress=False)
    write_results(res, tmp_path / "results" / "ccv2", run_name="ccv2", config={}, min_group_subjects=1, figures=False)
    metrics = json.loads((tmp_path / "results" / "ccv2" / "metrics.json").read_text())
    assert metrics["dataset"]["mated_comparisons"] == 2 * (2 * 2)  # two people, 2 frames x 2 frames across their two videos
    assert "frames of one video are never a mated pair" in metrics["protocol"]["mated"]
    rep = verify_run(tmp_path / "results" / "ccv2", check_dataset=False, check_weights=False, check_figures=False)
    assert rep.ok, rep.to_text()[-2000:]


def test_fhibe_error_line_counts_rows_left_out(tmp_path):
    """A row dropped as multi-person still counts when a later error names its line."""
    base = {"subject_id": "s1", "pronoun": "['0. She/her/hers']", "age": "30", "ancestry": "['1. Northern Africa']"}
    rows = [{**base, "image_id": "a", "filepath": "a.png", "multiple_subjects": "True"},
            {**base, "image_id": "b", "filepath": "b.png", "multiple_subjects": "False", "pronoun": "[1 +]"}]
    root = _fhibe(tmp_path, rows=rows)
    with pytest.raises(DataError, match=r"line 3 column 'pronoun'"):
        load_fhibe(root)
