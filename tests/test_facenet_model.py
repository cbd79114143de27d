"""FaceNet on random-initialised InceptionResnetV1 weights saved to a temporary cache."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch
from facenet_pytorch import InceptionResnetV1
from facenet_pytorch import fixed_image_standardization as fp_standardization

from bench.errors import ConfigError, WeightsError
from bench.models import weights as W
from bench.models.facenet import FaceNet, fixed_image_standardization

FILE = "20180402-114759-vggface2.pt"


class _NoAligner:
    """Aligner stand-in: these tests feed chips directly."""

    weights_sha256: dict = {}

    def settings(self) -> dict:
        return {"aligner": "none (test)"}


@pytest.fixture(scope="module")
def random_state():
    """A random InceptionResnetV1 state dict with non-trivial BatchNorm statistics + vggface2-shaped logits."""
    torch.manual_seed(0)
    net = InceptionResnetV1()
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0.0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    state = net.state_dict()
    state["logits.weight"] = torch.zeros(8631, 512)  # the real file holds the training classifier (sources.md §1)
    state["logits.bias"] = torch.zeros(8631)
    return state


def _install(folder, mp, obj, filename=FILE) -> None:
    """Save ``obj`` as the vggface2 file in ``folder`` (FVBENCH_CACHE) and pin its hash in the registry."""
    (folder / "weights").mkdir(parents=True, exist_ok=True)
    path = folder / "weights" / filename
    torch.save(obj, path)
    mp.setenv("FVBENCH_CACHE", str(folder))
    entry = W.WEIGHTS_REGISTRY["facenet_vggface2"]
    f = dataclasses.replace(entry.files[0], sha256=hashlib.sha256(path.read_bytes()).hexdigest(), size=path.stat().st_size)
    mp.setitem(W.WEIGHTS_REGISTRY, "facenet_vggface2", dataclasses.replace(entry, files=(f,)))


@pytest.fixture(scope="module")
def model(random_state, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # the registry pin and the env only while loading
        _install(tmp_path_factory.mktemp("cache"), mp, random_state)
        return FaceNet(weights="vggface2", aligner=_NoAligner(), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def chips():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (160, 160, 3), dtype=np.uint8) for _ in range(2)]


@pytest.fixture(scope="module")
def embedded(model, chips):
    return model.embed(chips)  # one run of 2


def test_shapes_unit_norm_and_metadata(model, embedded):
    emb = embedded
    assert emb.shape == (2, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # F.normalize in forward (sources.md §1)
    assert model.name == "facenet_vggface2" and model.metric == "euclidean" and model.nominal_threshold is None
    assert set(model.weights_sha256) == {FILE}
    assert model.settings()["embedding_dim"] == 512


def test_batch_size_invariance_in_eval_mode(model, chips, embedded):
    model.batch_size = 1
    try:
        one_by_one = model.embed(chips)  # two runs of 1
    finally:
        model.batch_size = 2
    np.testing.assert_allclose(one_by_one, embedded, atol=1e-5)
    assert not model._net.training


def test_loads_every_tensor_and_uses_the_package_standardisation(model, random_state, chips):
    loaded = model._net.state_dict()
    assert set(loaded) == {k for k in random_state if not k.startswith("logits")}  # logits dropped (sources.md §1)
    assert all(torch.equal(loaded[k], random_state[k]) for k in loaded)
    x = torch.stack([torch.from_numpy(c).permute(2, 0, 1).float() for c in chips])
    ours = fixed_image_standardization(np.stack(chips))
    np.testing.assert_allclose(ours, fp_standardization(x).numpy(), rtol=0, atol=1e-7)
    assert ours[0, 0, 0, 0] == pytest.approx((float(chips[0][0, 0, 0]) - 127.5) / 128.0)
    assert torch.equal(model.preprocess(chips), torch.from_numpy(ours))


def test_missing_weights_name_the_file_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FVBENCH_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsError, match=rf"{FILE}.*fetch it with: .*facenet_vggface2"):
        FaceNet(weights="vggface2", aligner=_NoAligner(), device="cpu")


def test_file_with_other_bytes_than_registered_is_refused(tmp_path, monkeypatch):
    """The real registry pins SHA-256 and size (sources.md §1): any other file is refused."""
    (tmp_path / "c" / "weights").mkdir(parents=True)
    (tmp_path / "c" / "weights" / FILE).write_bytes(b"\0" * 111_898_327)
    monkeypatch.setenv("FVBENCH_CACHE", str(tmp_path / "c"))
    with pytest.raises(WeightsError, match="281cebca.*refusing to load"):
        FaceNet(weights="vggface2", aligner=_NoAligner(), device="cpu")


def test_wrong_logits_shape_is_refused(tmp_path, monkeypatch):
    # a casia-sized classifier under the vggface2 name; checked before the backbone is loaded
    _install(tmp_path, monkeypatch, {"logits.weight": torch.zeros(10575, 512), "logits.bias": torch.zeros(10575)})
    with pytest.raises(WeightsError, match=r"\(8631, 512\)"):
        FaceNet(weights="vggface2", aligner=_NoAligner(), device="cpu")


def test_incomplete_state_dict_is_refused(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, {"last_linear.weight": torch.zeros(512, 1792)})
    with pytest.raises(WeightsError, match="does not fit InceptionResnetV1"):
        FaceNet(weights="vggface2", aligner=_NoAligner(), device="cpu")


class _Payload:
    """Not a tensor: torch.load(weights_only=True) must refuse to unpickle it."""


def test_pickled_code_is_not_loaded(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, {"x": _Payload()})
    with pytest.raises(WeightsError, match="weights_only=True"):
        FaceNet(weights="vggface2", aligner=_NoAligner(), device="cpu")


def test_config_errors():
    with pytest.raises(ConfigError, match="casia-webface"):
        FaceNet(weights="vggface3", aligner=_NoAligner())
    with pytest.raises(ConfigError, match="batch_size"):
        FaceNet(weights="vggface2", batch_size=0, aligner=_NoAligner())


def test_wrong_chip_shape_is_refused(model):
    with pytest.raises(ValueError, match=r"\(160, 160, 3\) uint8"):
        model.embed([np.zeros((112, 112, 3), np.uint8)])
