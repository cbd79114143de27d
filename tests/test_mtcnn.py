"""MTCNN acquisition on FRL London images (read in place), alignment geometry, oracle landmarks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.acquisition.mtcnn_align import (
    ARCFACE_TEMPLATE_112,
    MtcnnArcFaceAligner,
    MtcnnDetector,
    MtcnnFaceNetAligner,
    arcface_template,
    similarity_transform,
)
from bench.acquisition.oracle_landmarks import OracleEyesAligner, read_tem, tem_pupils
from bench.errors import ConfigError, DataError

LONDON = Path(__file__).resolve().parents[2] / "shared/datasets/frl_london"
NEUTRAL = ["001_03", "025_03", "030_03"]  # white, black, east_asian (london_info.csv)
SMILING = ["042_08"]


@pytest.fixture(scope="module")
def london() -> Path:
    if not (LONDON / "neutral_front" / "001_03.jpg").is_file():
        pytest.skip(f"FRL London images not found at {LONDON}; they are read in place, never copied")
    return LONDON


def _path(london: Path, stem: str) -> Path:
    return london / ("neutral_front" if stem.endswith("_03") else "smiling_front") / f"{stem}.jpg"


@pytest.fixture(scope="module")
def detector() -> MtcnnDetector:
    return MtcnnDetector(device="cpu")


@pytest.fixture(scope="module")
def detections(london, detector):
    from bench.acquisition.images import load_rgb

    return {s: detector.detect(load_rgb(_path(london, s))) for s in NEUTRAL + SMILING}


@pytest.mark.parametrize("stem", NEUTRAL + SMILING)
def test_five_landmarks_are_plausible(detections, stem):
    det = detections[stem]
    assert det is not None and det.n_faces >= 1 and det.probability > 0.95
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = det.landmarks
    assert max(ly, ry) < ny < min(mly, mry), "eyes above nose above mouth"
    assert lx < nx < rx and mlx < mrx and lx < rx, "image-left points left of image-right points"
    x0, y0, x1, y1 = det.box
    assert np.all((det.landmarks[:, 0] > x0) & (det.landmarks[:, 0] < x1))
    assert np.all((det.landmarks[:, 1] > y0) & (det.landmarks[:, 1] < y1))
    assert 300 < x1 - x0 < 900, "1350 px portraits: the face spans a third to two thirds of the width"


@pytest.mark.parametrize("stem", NEUTRAL)
def test_mtcnn_eyes_agree_with_annotated_pupils(london, detections, stem):
    pupils = tem_pupils(_path(london, stem).with_suffix(".tem"))
    iod = np.linalg.norm(pupils[1] - pupils[0])
    err = np.linalg.norm(detections[stem].landmarks[:2] - pupils, axis=1)
    assert np.all(err < 0.1 * iod), f"eye error {err.round(1)} px vs inter-ocular {iod:.0f} px"


def test_facenet_and_arcface_chips_are_deterministic(london):
    path = _path(london, "025_03")
    fn = MtcnnFaceNetAligner(device="cpu")
    a, b = fn.acquire_file(path), fn.acquire_file(path)
    assert a.ok and a.chip.shape == (160, 160, 3) and a.chip.dtype == np.uint8
    assert np.array_equal(a.chip, b.chip) and a.box == b.box
    arc = MtcnnArcFaceAligner(device="cpu")
    c = arc.acquire_file(path)
    assert c.ok and c.chip.shape == (112, 112, 3) and np.array_equal(c.chip, arc.acquire_file(path).chip)
    assert "margin 14" in fn.settings()["chip"] and fn.settings()["min_face_size"] == 20


def test_arcface_chip_puts_the_landmarks_on_the_template(london, detections):
    det = detections["030_03"]
    m = similarity_transform(det.landmarks, ARCFACE_TEMPLATE_112)
    mapped = det.landmarks @ m[:, :2].T + m[:, 2]
    # least squares over 5 points: residuals of a few template pixels, not zero
    assert np.sqrt(((mapped - ARCFACE_TEMPLATE_112) ** 2).sum(axis=1)).max() < 6.0


def test_oracle_uses_tem_pupils_and_falls_back_without_annotation(london):
    oracle = OracleEyesAligner(device="cpu")
    neutral = _path(london, "001_03")
    got = oracle.acquire_file(neutral)
    assert got.ok and got.chip.shape == (112, 112, 3) and got.box is None
    eyes = tem_pupils(neutral.with_suffix(".tem"))
    m = similarity_transform(eyes, ARCFACE_TEMPLATE_112[:2])
    np.testing.assert_allclose(eyes @ m[:, :2].T + m[:, 2], ARCFACE_TEMPLATE_112[:2], atol=1e-9)  # exact for 2 points
    smiling = _path(london, "001_08")
    assert not smiling.with_suffix(".tem").exists()
    assert np.array_equal(oracle.acquire_file(smiling).chip, oracle.fallback.acquire_file(smiling).chip)


def test_london_annotations_cover_the_neutral_images_only(london):
    tems = sorted(p.stem for p in (london / "neutral_front").glob("*.tem"))
    jpgs = sorted(p.stem for p in (london / "neutral_front").glob("*.jpg"))
    assert tems == jpgs and len(tems) == 102  # dataset README: every neutral image has a template
    assert not list((london / "smiling_front").glob("*.tem"))
    pts = read_tem(london / "neutral_front" / "001_03.tem")
    assert pts.shape == (189, 2)


def test_no_face_and_bad_files_are_failures_to_acquire(tmp_path):
    arc = MtcnnArcFaceAligner(device="cpu")
    blank = np.full((240, 240, 3), 128, np.uint8)
    assert arc.acquire(blank).fta_reason == "no_face_detected"
    assert arc.acquire(np.zeros((10, 10, 3), np.uint8)).fta_reason == "no_face_detected"  # smaller than min_face_size
    txt = tmp_path / "face.jpg"
    txt.write_text("not an image")
    assert arc.acquire_file(txt).fta_reason == "not_an_image"
    assert arc.acquire_file(tmp_path / "absent.jpg").fta_reason == "missing_file"


def test_similarity_transform_recovers_a_known_similarity_and_matches_opencv():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (5, 2))
    ang, scale, t = 0.3, 0.45, np.array([12.0, -7.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ (scale * rot).T + t
    np.testing.assert_allclose(similarity_transform(src, dst), np.hstack([scale * rot, t[:, None]]), atol=1e-10)
    noisy = dst + rng.normal(0, 2.0, dst.shape)
    # OpenCV's Levenberg-Marquardt refinement over all points reaches the same least-squares optimum
    cv, inliers = cv2.estimateAffinePartial2D(src, noisy, method=cv2.RANSAC, ransacReprojThreshold=1e6, refineIters=100)
    assert inliers.all()
    np.testing.assert_allclose(similarity_transform(src, noisy), cv, atol=1e-5)


def test_template_scaling_and_errors(tmp_path):
    np.testing.assert_allclose(arcface_template(224), ARCFACE_TEMPLATE_112 * 2)
    np.testing.assert_allclose(arcface_template(128)[0], [38.2946 + 8.0, 51.6963])  # InsightFace estimate_norm
    with pytest.raises(ConfigError, match="multiple of 112 or 128"):
        arcface_template(100)
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE_112)
    bad = tmp_path / "x.tem"
    bad.write_text("3\n1\t2\n3\tfoo\n5\t6\n")
    with pytest.raises(DataError, match="line 3"):
        read_tem(bad)
    with pytest.raises(ConfigError, match="min_face_size"):
        MtcnnDetector(min_face_size=5)
    with pytest.raises(ConfigError, match="cpu_threads"):
        MtcnnDetector(cpu_threads=0)


def test_detection_restores_torch_threads(detector):
    import torch

    before = torch.get_num_threads()
    detector.detect(np.full((64, 64, 3), 90, np.uint8))
    assert torch.get_num_threads() == before and detector.cpu_threads == 1
