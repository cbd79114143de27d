"""OnnxArcFace on tiny ONNX graphs exported here from a small torch module (real onnxruntime)."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch

from bench.errors import ConfigError, WeightsError
from bench.models.onnx_arcface import OnnxArcFace

SIZE, DIM = 112, 8


class _Tiny(torch.nn.Module):
    """Conv -> pool -> linear: a stand-in for an ArcFace backbone (NCHW in, DIM out)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 4, stride=4)  # 112 -> 28, pooled to 2x2
        self.pool = torch.nn.AdaptiveAvgPool2d(2)
        self.fc = torch.nn.Linear(24, DIM)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return _Tiny().eval()


def _export(net, path, *, batch: int | None, input_name: str = "input.1") -> None:
    x = torch.randn(batch or 2, 3, SIZE, SIZE)
    dyn = {input_name: {0: "n"}, "emb": {0: "n"}} if batch is None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice that this is the TorchScript exporter
        torch.onnx.export(
            net, (x,), str(path), dynamo=False, input_names=[input_name], output_names=["emb"], dynamic_axes=dyn, opset_version=17
        )


@pytest.fixture(scope="module")
def graphs(net, tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    _export(net, d / "dynamic.onnx", batch=None)
    _export(net, d / "fixed4.onnx", batch=4)
    return d


@pytest.fixture(scope="module")
def chips():
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(5)]


def _model(path, **kw) -> OnnxArcFace:
    kw.setdefault("embedding_dim", DIM)
    return OnnxArcFace(weights_path=str(path), input_size=SIZE, device="cpu", aligner=_NoAligner(), **kw)


class _NoAligner:
    """Aligner stand-in: these tests feed chips directly."""

    weights_sha256: dict = {}

    def settings(self) -> dict:
        return {"aligner": "none (test)"}


def _reference(net, chips, *, bgr=False, mean=127.5, std=127.5):
    x = np.stack(chips).astype(np.float32)
    if bgr:
        x = x[..., ::-1]
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def test_dynamic_batch_matches_torch_and_is_unit_norm(net, graphs, chips):
    m = _model(graphs / "dynamic.onnx", batch_size=2)  # 5 chips -> runs of 2, 2, 1
    assert m.input_name == "input.1" and m.fixed_batch is None and m.metric == "cosine"
    emb = m.embed(chips)
    assert emb.shape == (5, DIM) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(emb, _reference(net, chips), atol=1e-5)
    np.testing.assert_allclose(m.embed(chips[:1]), emb[:1], atol=1e-6)  # batch-size invariance


def test_fixed_batch_pads_partial_batches(net, graphs, chips):
    m = _model(graphs / "fixed4.onnx", batch=4)  # 5 chips -> 4 + (1 padded to 4)
    assert m.batch_size == 4
    emb = m.embed(chips)
    np.testing.assert_allclose(emb, _reference(net, chips), atol=1e-5)


def test_fixed_graph_rejects_dynamic_or_other_batch(graphs):
    with pytest.raises(ConfigError, match="fixed batch of 4; set batch: 4"):
        _model(graphs / "fixed4.onnx")
    with pytest.raises(ConfigError, match="fixed batch of 4, but batch is 3"):
        _model(graphs / "fixed4.onnx", batch=3)


def test_dynamic_graph_accepts_a_fixed_run_size(net, graphs, chips):
    emb = _model(graphs / "dynamic.onnx", batch=2).embed(chips)
    np.testing.assert_allclose(emb, _reference(net, chips), atol=1e-5)


def test_bgr_and_per_channel_normalisation(net, graphs, chips):
    mean, std = [100.0, 120.0, 140.0], [50.0, 60.0, 70.0]
    m = _model(graphs / "dynamic.onnx", channel_order="BGR", input_mean=mean, input_std=std)
    np.testing.assert_allclose(m.embed(chips), _reference(net, chips, bgr=True, mean=mean, std=std), atol=1e-5)
    rgb = _model(graphs / "dynamic.onnx").embed(chips)
    assert not np.allclose(m.embed(chips), rgb, atol=1e-3)  # the channel order matters


def test_preprocess_is_insightface_normalisation(graphs, chips):
    x = _model(graphs / "dynamic.onnx").preprocess(chips[:2])
    assert x.shape == (2, 3, SIZE, SIZE) and x.dtype == np.float32
    # arcface_onnx.py: (x - 127.5) / 127.5 on RGB, NCHW (sources.md §2c)
    np.testing.assert_allclose(x[1, 2, 5, 9], (float(chips[1][5, 9, 2]) - 127.5) / 127.5, rtol=1e-6)
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_description_mismatches_are_config_errors(graphs):
    with pytest.raises(ConfigError, match="input_name 'data' not in"):
        _model(graphs / "dynamic.onnx", input_name="data")
    with pytest.raises(ConfigError, match="outputs 8 values per image, but embedding_dim is 512"):
        _model(graphs / "dynamic.onnx", embedding_dim=512)
    with pytest.raises(ConfigError, match="input height is 112, but input_size is 128"):
        OnnxArcFace(weights_path=str(graphs / "dynamic.onnx"), input_size=128, embedding_dim=DIM, device="cpu", aligner=_NoAligner())
    with pytest.raises(ConfigError, match="channel_order"):
        _model(graphs / "dynamic.onnx", channel_order="RBG")
    with pytest.raises(ConfigError, match="exactly one of weights"):
        OnnxArcFace(weights="arcface_buffalo_l", weights_path=str(graphs / "dynamic.onnx"), aligner=_NoAligner())


def test_weights_checksum_and_missing_file(graphs, tmp_path):
    path = graphs / "dynamic.onnx"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    m = _model(path, weights_sha256=digest)
    assert m.weights_sha256 == {"dynamic.onnx": digest}
    with pytest.raises(WeightsError, match="refusing to load"):
        _model(path, weights_sha256="0" * 64)
    with pytest.raises(WeightsError, match="not found"):
        _model(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(WeightsError, match="onnxruntime cannot load"):
        _model(bad)


def test_wrong_chip_shape_is_refused(graphs):
    with pytest.raises(ValueError, match=r"\(112, 112, 3\) uint8"):
        _model(graphs / "dynamic.onnx").embed([np.zeros((160, 160, 3), np.uint8)])
