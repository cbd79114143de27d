"""The four detectors of the detector axis on FRL London photos (read in place): boxes, five
landmarks in ArcFace order, agreement with the annotated pupils; alignments from any detector."""

from __future__ import annotations

import numpy as np
import pytest

from bench.acquisition.alignment import ArcFaceAligner, DlibChipAligner, MarginCropAligner
from bench.acquisition.detectors import (
    DlibHogDetector,
    DlibMmodDetector,
    MtcnnDetector,
    YuNetDetector,
    downscale,
    landmarks5_from_68,
)
from bench.acquisition.images import load_rgb
from bench.acquisition.oracle_landmarks import tem_pupils
from bench.errors import ConfigError

STEMS = ["001_03", "025_03", "030_03"]  # white, black, east_asian (london_info.csv), all with .tem pupils
DETECTORS = {
    "dlib_hog": lambda: DlibHogDetector(),
    "dlib_mmod": lambda: DlibMmodDetector(),
    "mtcnn": lambda: MtcnnDetector(device="cpu"),
    "yunet": lambda: YuNetDetector(),
}


@pytest.fixture(scope="module")
def images(london):
    return {s: load_rgb(london / "neutral_front" / f"{s}.jpg") for s in STEMS}


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def detector(request):
    return DETECTORS[request.param]()


def test_each_detector_finds_the_face_with_arcface_order_landmarks(detector, images, london):
    for stem, image in images.items():
        det = detector.detect(image)
        assert det is not None, f"{detector.name} missed {stem}"
        assert det.n_faces == 1
        (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = det.landmarks
        assert max(ly, ry) < ny < min(mly, mry), "eyes above nose tip above mouth corners"
        assert lx < nx < rx and mlx < mrx, "image-left points first (ArcFace template order)"
        x0, y0, x1, y1 = det.box
        assert 300 < x1 - x0 < 900, "1350 px portraits: the face spans a third to two thirds of the width"
        # annotated pupils (WebMorph .tem): detected eye centres within 6% of the inter-pupil distance
        # for the landmark detectors; the dlib boxes' 68-point eye centres (mean of the eye contour) within 10%
        pupils = tem_pupils(london / "neutral_front" / f"{stem}.tem")
        iod = float(np.linalg.norm(pupils[1] - pupils[0]))
        err = np.linalg.norm(det.landmarks[:2] - pupils, axis=1).max() / iod
        assert err < (0.10 if detector.name.startswith("dlib") else 0.06), f"{detector.name} {stem}: eye error {err:.3f} IOD"


def test_no_face_in_a_flat_image(detector):
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) is None


def test_every_alignment_takes_any_detector(detector, images):
    image = images["001_03"]
    for aligner, shape in (
        (ArcFaceAligner(detector=detector), (112, 112, 3)),
        (MarginCropAligner(detector=detector), (160, 160, 3)),
        (DlibChipAligner(detector=detector), (150, 150, 3)),
    ):
        acq = aligner.acquire(image)
        assert acq.ok and acq.chip.shape == shape and acq.chip.dtype == np.uint8
        assert aligner.settings()["detector_name"] == detector.name
        assert aligner.detector_name == detector.name
    flat = ArcFaceAligner(detector=detector).acquire(np.zeros((200, 200, 3), np.uint8))
    assert not flat.ok and flat.fta_reason == "no_face_detected"


def test_arcface_alignment_maps_detected_eyes_onto_the_template(detector, images):
    """The 5-point least-squares similarity puts each detector's eyes within 4 chip pixels of the
    ArcFace template eyes (38.29, 51.70) / (73.53, 51.50) (InsightFace arcface_dst)."""
    from bench.acquisition.mtcnn_align import ARCFACE_TEMPLATE_112, similarity_transform

    det = detector.detect(images["001_03"])
    m = similarity_transform(det.landmarks, ARCFACE_TEMPLATE_112)
    eyes = det.landmarks[:2] @ m[:, :2].T + m[:, 2]
    assert np.abs(eyes - ARCFACE_TEMPLATE_112[:2]).max() < 4.0


def test_landmarks5_from_68_uses_ibug_points():
    pts = np.zeros((68, 2))
    pts[36:42] = [10, 20]
    pts[42:48] = [30, 20]
    pts[30] = [20, 30]
    pts[48] = [12, 40]
    pts[54] = [28, 40]
    assert np.array_equal(landmarks5_from_68(pts), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])
    with pytest.raises(ValueError):
        landmarks5_from_68(np.zeros((5, 2)))


def test_downscale_factors_are_per_axis():
    small, f = downscale(np.zeros((1350, 1000, 3), np.uint8), 640)
    assert small.shape[:2] == (640, 474)
    assert np.allclose(f, [474 / 1000, 640 / 1350])
    same, f1 = downscale(np.zeros((100, 80, 3), np.uint8), 640)
    assert same.shape == (100, 80, 3) and np.array_equal(f1, [1, 1])


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="score_threshold"):
        YuNetDetector(score_threshold=1.5)
    with pytest.raises(ConfigError, match="upsample"):
        DlibHogDetector(upsample=7)
    with pytest.raises(ConfigError, match="detector"):
        ArcFaceAligner(detector=None)


def test_dlib_hog_with_dlib_chip_equals_the_original_dlib_acquisition(images):
    """detector=dlib_hog + the dlib chip cuts exactly the chips of the dlib ResNet's original
    acquisition (bench.acquisition.dlib_align.DlibAligner), so published dlib results do not move."""
    from bench.acquisition.dlib_align import DlibAligner
    from bench.models.weights import locate_weights

    old = DlibAligner(locate_weights("dlib_resnet")["shape_predictor_5_face_landmarks.dat"].path)
    new = DlibChipAligner(detector=DlibHogDetector())
    for image in images.values():
        assert np.array_equal(old.acquire(image).chip, new.acquire(image).chip)
