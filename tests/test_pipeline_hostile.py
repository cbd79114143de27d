"""Hostile images through the whole pipeline with the real dlib model (issue #6).

A small dataset is built per test module: 7 London subjects read in place (never
copied), plus modified copies written to tmp_path (RGBA, 16-bit, palette, greyscale,
CMYK, EXIF orientation 6 and 8, two faces, a 20 px face, a face-less image) and
broken files (truncated JPEG, zero bytes, text named .jpg). The manifest's root is
the common ancestor of the London folder and tmp_path, so both are read where they
are. Every file either yields a template or is a failure to acquire (FTA) with its
reason, counted in its group; nothing crashes and every count adds up.

NaN / zero-norm embeddings and inverted (distance-like) scores are exercised with a
fake embedder, since the real model produces neither.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.acquisition.base import Acquisition
from bench.data.manifest import MISSING_LABEL, Manifest
from bench.errors import ScoreSanityWarning
from bench.metrics.rates import score_sanity_check
from bench.run import Protocol, evaluate

NOMINAL = -0.6  # dlib's published same-person threshold, as a similarity (bench.models.dlib_resnet)

# (image id, subject, group label, source) -- source "london:<file>" is read in place,
# anything else is a file the fixture writes into tmp_path.
_LONDON = [(f"{s}_{v}", s, g) for s, g in [("001", "a"), ("002", "a"), ("003", "a"), ("004", "b"), ("005", "b"), ("006", "b"), ("007", None)] for v in ("03", "08")]
_MADE = [
    # acquired: another encoding of a subject's own photo
    ("001_rgba", "001", "a", "rgba"),
    ("001_two", "001", "a", "two_faces"),
    ("002_g16", "002", "a", "gray16"),
    ("003_cmyk", "003", "a", "cmyk"),
    ("004_rot6", "004", "b", "exif6"),
    ("005_rot8", "005", "b", "exif8"),
    ("006_pal", "006", "b", "palette"),
    ("006_grey", "006", "b", "grey"),
    # failures to acquire
    ("004_rot_noexif", "004", "b", "rotated_without_exif"),
    ("h1_trunc", "h1", "a", "truncated"),
    ("h2_zero", "h2", "a", "zero_bytes"),
    ("h3_text", "h3", "b", "text"),
    ("h4_blank", "h4", "b", "faceless"),
    ("h5_tiny", "h5", None, "tiny_face"),
]
EXPECTED_FTA = {
    "004_rot_noexif": "no_face_detected",
    "h1_trunc": "corrupt",
    "h2_zero": "empty_file",
    "h3_text": "not_an_image",
    "h4_blank": "no_face_detected",
    "h5_tiny": "no_face_detected",
}


def _london_file(london: Path, image_id: str) -> Path:
    subject, view = image_id.split("_")
    return london / ("neutral_front" if view == "03" else "smiling_front") / f"{subject}_{view}.jpg"


def _make(kind: str, subject: str, london: Path, dest: Path) -> Path:
    """Write one modified copy into tmp_path (never into the repository)."""
    source = subject if subject.isdigit() else "001"  # made-up subjects borrow pixels from 001
    src = Image.open(_london_file(london, f"{source}_03")).convert("RGB").resize((500, 500))
    ext = {"rgba": "png", "gray16": "png", "palette": "png", "grey": "png", "faceless": "png", "tiny_face": "png", "text": "jpg"}.get(kind, "jpg")
    path = dest / f"{subject} {kind} ü.{ext}"  # spaces and non-ASCII on purpose
    if kind == "rgba":
        src.convert("RGBA").save(path)
    elif kind == "gray16":
        Image.fromarray(np.asarray(src.convert("L")).astype(np.uint16) * 257).save(path)
    elif kind == "palette":
        src.convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    elif kind == "grey":
        src.convert("L").save(path)
    elif kind == "cmyk":
        src.convert("CMYK").save(path)
    elif kind in ("exif6", "exif8"):
        # stored sideways; the orientation tag says how to display it upright
        stored = src.transpose(Image.Transpose.ROTATE_90 if kind == "exif6" else Image.Transpose.ROTATE_270)
        exif = Image.Exif()
        exif[0x0112] = 6 if kind == "exif6" else 8
        stored.save(path, exif=exif)
    elif kind == "rotated_without_exif":
        src.transpose(Image.Transpose.ROTATE_90).save(path)
    elif kind == "two_faces":
        other = Image.open(_london_file(london, "004_03")).convert("RGB")
        canvas = Image.new("RGB", (900, 500), (200, 200, 200))
        canvas.paste(src.resize((450, 450)), (0, 25))  # the larger face is the subject's
        canvas.paste(other.resize((350, 350)), (500, 75))
        canvas.save(path)
    elif kind == "tiny_face":
        canvas = Image.new("RGB", (400, 400), (128, 128, 128))
        canvas.paste(src.resize((54, 54)), (170, 170))  # face about 20 px wide
        canvas.save(path)
    elif kind == "faceless":
        Image.fromarray(np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (400, 1))).convert("RGB").save(path)
    elif kind == "truncated":
        data = _london_file(london, f"{source}_08").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a JPEG\n")
    else:  # pragma: no cover
        raise ValueError(kind)
    return path


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("dlib")
    from bench.models.dlib_resnet import DlibResNet

    return DlibResNet()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, london, model):
    tmp = tmp_path_factory.mktemp("hostile")
    made = tmp / "made files"
    made.mkdir()
    files = {i: _london_file(london, i) for i, _, _ in _LONDON}
    for image_id, subject, _, kind in _MADE:
        files[image_id] = _make(kind, subject, london, made)
    root = Path(os.path.commonpath([str(london.resolve()), str(tmp.resolve())]))
    rows = [(i, s, g) for i, s, g in _LONDON] + [(i, s, g) for i, s, g, _ in _MADE]
    table = pd.DataFrame(
        {
            "image_id": [i for i, _, _ in rows],
            "path": [os.path.relpath(files[i].resolve(), root) for i, _, _ in rows],
            "subject_id": [s for _, s, _ in rows],
            "label_source": "annotated",
            "grp": [g for _, _, g in rows],
        }
    )
    manifest = Manifest(table, root, ("grp",), "hostile")
    protocol = Protocol(target_fmrs=[1e-2, 1e-3], use_nominal_threshold=True)
    first = evaluate(manifest, model, protocol, cache_dir=tmp / "cache", progress=False)
    second = evaluate(manifest, model, protocol, cache_dir=tmp / "cache", progress=False)
    return manifest, first, second


def test_every_file_is_acquired_or_fta_with_its_reason(hostile):
    manifest, res, _ = hostile
    got = dict(zip(manifest.table["image_id"], res.fta_reason))
    assert {k: v for k, v in got.items() if v is not None} == EXPECTED_FTA
    # the EXIF-tagged copies are found upright; the same pixels without the tag are not
    assert got["004_rot6"] is None and got["005_rot8"] is None and got["004_rot_noexif"] == "no_face_detected"
    assert res.dataset_info["images_with_several_faces"] == 1
    assert res.n_faces[list(manifest.table["image_id"]).index("001_two")] == 2


def test_fta_per_group_with_reason_codes_and_counts_adding_up(hostile):
    _, res, _ = hostile
    fta = res.per_group[res.per_group["metric"] == "FTA"].set_index("group")
    assert fta.loc["(all)", ["errors", "comparisons", "subjects"]].tolist() == [6, 28, 12]  # 7 London + 5 made-up subjects
    assert fta.loc["(all)", "reasons"] == "corrupt:1;empty_file:1;no_face_detected:3;not_an_image:1"
    assert fta.loc["a", ["errors", "comparisons", "subjects"]].tolist() == [2, 12, 5]
    assert fta.loc["a", "reasons"] == "corrupt:1;empty_file:1"
    assert fta.loc["b", ["errors", "comparisons", "subjects"]].tolist() == [3, 13, 5]
    assert fta.loc["b", "reasons"] == "no_face_detected:2;not_an_image:1"
    assert fta.loc[MISSING_LABEL, ["errors", "comparisons", "subjects"]].tolist() == [1, 3, 2]
    assert fta.loc[MISSING_LABEL, "reasons"] == "no_face_detected:1"
    groups = fta.drop(index="(all)")
    assert groups["errors"].sum() == 6 and groups["comparisons"].sum() == 28
    assert fta.loc["a", "rate"] == pytest.approx(2 / 12)


def test_comparison_counts_follow_from_the_acquired_images(hostile):
    _, res, _ = hostile
    d = res.dataset_info
    assert d["images"] == 28 and d["images_acquired"] == 22
    # acquired images per subject: 001:4, 002:3, 003:3, 004:3, 005:3, 006:4, 007:2
    mated = sum(math.comb(k, 2) for k in (4, 3, 3, 3, 3, 4, 2))
    assert d["mated_comparisons"] == mated == 25
    assert d["nonmated_comparisons"] == math.comb(22, 2) - mated == 206
    comp = res.comparisons
    assert np.isfinite(comp["score"]).all() and len(comp) == math.comb(22, 2)
    failed = set(EXPECTED_FTA)
    assert not (set(comp["image_a"].astype(str)) | set(comp["image_b"].astype(str))) & failed
    fnmr = res.per_group[(res.per_group["metric"] == "FNMR") & (res.per_group["threshold_name"] == "nominal")].set_index("group")
    assert fnmr.loc["a", "comparisons"] == 6 + 3 + 3 and fnmr.loc["b", "comparisons"] == 3 + 3 + 6
    assert fnmr.loc[MISSING_LABEL, "comparisons"] == 1
    refused = [t for t in res.thresholds if t["status"] == "refused"]
    assert [t["name"] for t in refused] == ["FMR=1e-03"]  # 206 non-mated scores cannot resolve 1e-3


def test_converted_copies_embed_like_their_originals(hostile):
    """Each re-encoded copy matches its subject's original at dlib's published threshold."""
    _, res, _ = hostile
    comp = res.comparisons
    ia, ib = comp["image_a"].astype(str), comp["image_b"].astype(str)
    for copy in ("001_rgba", "001_two", "002_g16", "003_cmyk", "004_rot6", "005_rot8", "006_pal", "006_grey"):
        original = f"{copy[:3]}_03"
        row = comp[((ia == copy) & (ib == original)) | ((ia == original) & (ib == copy))]
        assert len(row) == 1 and bool(row["mated"].iloc[0])
        assert row["score"].iloc[0] >= NOMINAL, copy


def test_rerun_from_cache_keeps_every_reason(hostile):
    manifest, first, second = hostile
    assert second.model_info["cache_hits"] == len(manifest.table)  # every file, failures included
    assert list(second.fta_reason) == list(first.fta_reason)
    pd.testing.assert_frame_equal(second.per_group, first.per_group)
    pd.testing.assert_frame_equal(second.comparisons, first.comparisons)


def test_distances_passed_as_similarities_trigger_the_sanity_warning(hostile):
    _, res, _ = hostile
    comp = res.comparisons
    mated = comp["mated"].to_numpy()
    similarity = comp["score"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScoreSanityWarning)
        score_sanity_check(similarity[mated], similarity[~mated])  # the pipeline's own scores pass
    distance = -similarity  # dlib's native Euclidean distances (lower = more alike)
    with pytest.warns(ScoreSanityWarning, match="look like distances"):
        score_sanity_check(distance[mated], distance[~mated])


# ----------------------------------------------------------------------------- fake embedder
class _FakeAligner:
    def acquire_file(self, path: Path) -> Acquisition:
        return Acquisition(chip=np.frombuffer(Path(path).read_bytes(), dtype=np.uint8).copy(), fta_reason=None, n_faces=1)


class _FakeEmbedder:
    """Subject s -> basis vector e_s (+ noise); 'nan'/'zero' files give NaN / all-zero
    vectors; with ``inverted`` the second image of a subject points the other way."""

    name = "fake"
    metric = "cosine"
    embedding_dim = 8
    nominal_threshold = None
    weights_sha256: dict = {}

    def __init__(self, inverted: bool = False) -> None:
        self.aligner = _FakeAligner()
        self.inverted = inverted

    def settings(self) -> dict:
        return {"fake": 2, "inverted": self.inverted}

    def embed(self, chips):
        out = np.zeros((len(chips), self.embedding_dim), np.float32)
        for i, chip in enumerate(chips):
            info = json.loads(bytes(chip).decode())
            if info["kind"] == "nan":
                out[i] = np.nan
            elif info["kind"] == "zero":
                out[i] = 0.0
            else:
                seed = int(hashlib.sha256(bytes(chip)).hexdigest()[:8], 16)
                v = np.zeros(self.embedding_dim)
                v[info["subject"]] = 1.0
                v += 0.05 * np.random.default_rng(seed).standard_normal(self.embedding_dim)
                out[i] = -v if (self.inverted and info["k"] == 1) else v
        return out


def _fake_manifest(root: Path, kinds: dict[tuple[int, int], str]) -> Manifest:
    rows = []
    for s in range(6):
        for k in range(2):
            kind = kinds.get((s, k), "ok")
            p = root / f"s{s}" / f"{k}.bin"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps({"subject": s, "k": k, "kind": kind}))
            rows.append({"image_id": f"s{s}_{k}", "path": f"s{s}/{k}.bin", "subject_id": f"s{s}", "label_source": "annotated", "grp": "a" if s < 3 else "b"})
    return Manifest(pd.DataFrame(rows), root, ("grp",), "fake")


def test_nan_and_zero_norm_embeddings_are_fta_invalid_embedding_never_nan_scores(tmp_path):
    manifest = _fake_manifest(tmp_path / "root", {(0, 1): "nan", (4, 0): "zero", (5, 1): "nan"})
    protocol = Protocol(target_fmrs=[0.1], use_nominal_threshold=False)
    for run in range(2):  # the second run reads the failures back from the cache
        res = evaluate(manifest, _FakeEmbedder(), protocol, cache_dir=tmp_path / "cache", progress=False)
        reasons = dict(zip(manifest.table["image_id"], res.fta_reason))
        assert {k: v for k, v in reasons.items() if v} == {"s0_1": "invalid_embedding", "s4_0": "invalid_embedding", "s5_1": "invalid_embedding"}
        fta = res.per_group[res.per_group["metric"] == "FTA"].set_index("group")
        assert fta.loc["a", ["errors", "comparisons"]].tolist() == [1, 6]
        assert fta.loc["b", ["errors", "comparisons", "reasons"]].tolist() == [2, 6, "invalid_embedding:2"]
        assert np.isfinite(res.comparisons["score"]).all()
        assert len(res.comparisons) == math.comb(9, 2)
        for det in res.det.values():
            assert np.isfinite(det.fmr).all() and np.isfinite(det.fnmr).all() and np.isfinite(det.thresholds).all()
        assert res.eer["eer"].notna().any() and np.isfinite(res.eer["eer"].dropna()).all()
    assert res.model_info["cache_hits"] == 12


def test_inverted_scores_are_caught_by_the_pipeline_sanity_check(tmp_path):
    manifest = _fake_manifest(tmp_path / "root", {})
    protocol = Protocol(target_fmrs=[0.1], use_nominal_threshold=False)
    with pytest.warns(ScoreSanityWarning, match=r"mean mated score .* <= mean non-mated score"):
        evaluate(manifest, _FakeEmbedder(inverted=True), protocol, cache_dir=tmp_path / "cache", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScoreSanityWarning)
        evaluate(manifest, _FakeEmbedder(), protocol, cache_dir=tmp_path / "cache", progress=False)
