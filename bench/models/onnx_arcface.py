"""ArcFace-family face embedders in ONNX format, run with onnxruntime.

Covers the InsightFace ``buffalo_l`` (``w600k_r50.onnx``, ResNet50 @ WebFace600K)
and ``buffalo_s`` (``w600k_mbf.onnx``, MobileFaceNet @ WebFace600K) recognition
models, and any ArcFace-style ONNX whose input is described in the config.

Preprocessing for the InsightFace models (shared/docs/sources.md §2c,
``model_zoo/arcface_onnx.py``): 112x112 chip aligned on the 5-point ArcFace
template (:class:`bench.acquisition.mtcnn_align.MtcnnArcFaceAligner`), **RGB**,
``(x - 127.5) / 127.5``, NCHW float32. The raw output is not normalised; like
InsightFace's ``Face.normed_embedding`` it is divided by its L2 norm here, and
compared with cosine similarity (``compute_sim``).

Licence of the InsightFace weights: non-commercial research purposes only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.acquisition.mtcnn_align import MtcnnArcFaceAligner
from bench.errors import ConfigError, WeightsError
from bench.models.weights import WEIGHTS_REGISTRY, locate_weights, onnx_weights_sha256, sha256_file

__all__ = ["OnnxArcFace", "providers_for"]

log = logging.getLogger(__name__)


def providers_for(device: str) -> list[str]:
    """onnxruntime execution providers for ``device``.

    ``"auto"``: CUDA then CPU when ``CUDAExecutionProvider`` is available, else CPU;
    ``"cpu"``: CPU only; ``"cuda"``: CUDA then CPU.

    Raises
    ------
    ConfigError
        Unknown ``device``, or ``"cuda"`` without the CUDA provider installed.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("auto", "cuda"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device == "cuda":
            raise ConfigError(
                f"device 'cuda' requested but onnxruntime offers only {available}; install onnxruntime-gpu or use 'auto'/'cpu'"
            )
        return ["CPUExecutionProvider"]
    raise ConfigError(f"device {device!r} unknown for onnxruntime; valid: 'auto', 'cpu', 'cuda'")


def _per_channel(value: float | Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or not np.all(np.isfinite(arr)):
        raise ConfigError(f"{what} must be one number or 3 numbers (one per channel), got {value!r}")
    return arr


class OnnxArcFace:
    """An ArcFace-style ONNX face embedder with a config-described input.

    Parameters
    ----------
    weights : str or None
        Registry key (``"arcface_buffalo_l"``, ``"arcface_buffalo_s"``); the file is
        located and verified in the cache (never downloaded here).
    weights_path : str or None
        A custom ONNX file instead of ``weights`` (exactly one of the two).
    weights_sha256 : str or None
        Expected SHA-256 of ``weights_path``; None = unchecked (a warning names the
        file's hash so it can be pinned).
    name : str or None
        Model name in results; default the registry key or the file stem.
    input_size : int
        Side of the square input (and aligned chip) in pixels.
    channel_order : {"RGB", "BGR"}
        Channel order the network expects (InsightFace models: RGB).
    input_mean, input_std : float or 3 floats
        ``x' = (x - mean) / std`` on 0..255 values, per channel in ``channel_order``.
    embedding_dim : int
        Output size.
    input_name : str or None
        Graph input to feed; None = the model's only input (checked if given).
    batch : "dynamic" or int
        ``"dynamic"``: the graph accepts any batch size (checked); an int N: the graph
        takes exactly N images per run (partial batches are zero-padded, padding
        outputs dropped).
    batch_size : int
        Images per run when ``batch`` is dynamic.
    nominal_threshold : float or None
        Published cosine threshold, if any (similarity units), with
        ``nominal_threshold_source``.
    licence : str or None
        Licence of the weights; default the registry's, else "unknown".
    aligner : object or None
        Acquisition step producing (input_size, input_size, 3) uint8 RGB chips;
        default :class:`~bench.acquisition.mtcnn_align.MtcnnArcFaceAligner`.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (onnxruntime providers and the default aligner).
    intra_op_threads : int
        onnxruntime intra-op threads (0 = onnxruntime's default, all cores).
    cache_dir : str or None
        Cache root holding ``weights/`` (default ``$FVBENCH_CACHE`` or ``~/.cache/fvbench``).

    Attributes
    ----------
    metric : str
        ``"cosine"`` (score in [-1, 1]).
    embedding_dim : int
    weights_sha256 : dict
        File name -> SHA-256 of the ONNX file, its external-data files (``<onnx>:<file>``) and the aligner's weights.

    Raises
    ------
    ConfigError
        Inconsistent description (both or neither weights source, bad channel order,
        mean/std shape, input name or size not in the graph, fixed batch declared by
        the graph but ``batch="dynamic"`` configured, output size mismatch).
    WeightsError
        Missing or corrupt weights, or a file onnxruntime cannot load.
    """

    metric = "cosine"

    def __init__(
        self,
        *,
        weights: str | None = None,
        weights_path: str | None = None,
        weights_sha256: str | None = None,
        name: str | None = None,
        input_size: int = 112,
        channel_order: str = "RGB",
        input_mean: float | Sequence[float] = 127.5,
        input_std: float | Sequence[float] = 127.5,
        embedding_dim: int = 512,
        input_name: str | None = None,
        batch: str | int = "dynamic",
        batch_size: int = 32,
        nominal_threshold: float | None = None,
        nominal_threshold_source: str | None = None,
        licence: str | None = None,
        aligner: object | None = None,
        device: str = "auto",
        intra_op_threads: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        import onnxruntime as ort

        if (weights is None) == (weights_path is None):
            raise ConfigError("OnnxArcFace: give exactly one of weights (a registry key) or weights_path (a file)")
        if weights is not None:
            (local,) = locate_weights(weights, cache_dir=cache_dir).values()
            path, digest = local.path, local.sha256
            self.licence = licence or WEIGHTS_REGISTRY[weights].licence
        else:
            path = Path(str(weights_path)).expanduser()
            if not path.is_file():
                raise WeightsError(f"ONNX weights file not found: {str(path)!r} (model.embedder.weights_path)")
            digest = sha256_file(path)
            if weights_sha256 is not None and digest != weights_sha256.lower():
                raise WeightsError(
                    f"ONNX weights file {str(path)!r} has SHA-256 {digest}, expected {weights_sha256} "
                    "(model.embedder.weights_sha256); refusing to load it"
                )
            if weights_sha256 is None:
                log.warning("%s: no weights_sha256 configured; this file's SHA-256 is %s (pin it in the config)", path, digest)
            self.licence = licence or "unknown (custom ONNX model; state it in the config)"
        self.name = name or weights or path.stem
        self.weights_path = path
        self.weights_sha256 = {path.name: digest}

        if channel_order not in ("RGB", "BGR"):
            raise ConfigError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        self.channel_order = channel_order
        self.input_size = int(input_size)
        self.input_mean = _per_channel(input_mean, "input_mean")
        self.input_std = _per_channel(input_std, "input_std")
        if np.any(self.input_std == 0):
            raise ConfigError(f"input_std must not be 0, got {input_std!r}")
        self.embedding_dim = int(embedding_dim)
        if batch == "dynamic":
            self.fixed_batch = None
        elif isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1:
            self.fixed_batch = batch
        else:
            raise ConfigError(f"batch must be 'dynamic' or a positive int, got {batch!r}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
        self.batch_size = self.fixed_batch or int(batch_size)
        self.nominal_threshold = None if nominal_threshold is None else float(nominal_threshold)
        self.nominal_threshold_source = nominal_threshold_source

        opts = ort.SessionOptions()
        from bench.job_threads import onnx_threads  # issue 15: one pool per parallel job, not one per core

        opts.intra_op_num_threads = onnx_threads(intra_op_threads)
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=providers_for(device))
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own untyped exception classes
            raise WeightsError(f"onnxruntime cannot load {str(path)!r}: {err}") from err
        self.providers = self._session.get_providers()
        # external-data files (``.bin`` beside the graph) are weights too: hashed, and so part of the cache key
        self.weights_sha256 = onnx_weights_sha256(path, digest)
        self._check_graph(input_name)
        self.aligner = aligner if aligner is not None else MtcnnArcFaceAligner(chip_size=self.input_size, device=device)
        self.weights_sha256.update(getattr(self.aligner, "weights_sha256", {}))

    def _check_graph(self, input_name: str | None) -> None:
        inputs = self._session.get_inputs()
        names = [i.name for i in inputs]
        if input_name is None:
            if len(inputs) != 1:
                raise ConfigError(f"{self.weights_path.name} has inputs {names}; set input_name")
            inp = inputs[0]
        elif input_name in names:
            inp = inputs[names.index(input_name)]
        else:
            raise ConfigError(f"input_name {input_name!r} not in {self.weights_path.name}; its inputs: {names}")
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ConfigError(f"{self.weights_path.name} input {inp.name!r} has shape {shape}; expected NCHW (4 dims)")
        n, c, h, w = shape
        if isinstance(c, int) and c != 3:
            raise ConfigError(f"{self.weights_path.name} input {inp.name!r} has {c} channels, expected 3 (NCHW)")
        for dim, what in ((h, "height"), (w, "width")):
            if isinstance(dim, int) and dim != self.input_size:
                raise ConfigError(f"{self.weights_path.name} input {what} is {dim}, but input_size is {self.input_size}")
        if isinstance(n, int) and self.fixed_batch is None:
            raise ConfigError(f"{self.weights_path.name} takes a fixed batch of {n}; set batch: {n}")
        if isinstance(n, int) and n != self.fixed_batch:
            raise ConfigError(f"{self.weights_path.name} takes a fixed batch of {n}, but batch is {self.fixed_batch}")
        out = self._session.get_outputs()[0]
        self.output_name = out.name
        last = out.shape[-1] if out.shape else None
        if isinstance(last, int) and last != self.embedding_dim:
            raise ConfigError(f"{self.weights_path.name} outputs {last} values per image, but embedding_dim is {self.embedding_dim}")

    def settings(self) -> dict:
        """Preprocessing and model settings; part of the embedding cache key."""
        import onnxruntime as ort

        return {
            "model": self.name,
            "runtime": f"onnxruntime {ort.__version__}",
            "embedding_dim": self.embedding_dim,
            "metric": self.metric,
            "input": {
                "name": self.input_name,
                "size": self.input_size,
                "channel_order": self.channel_order,
                "mean": self.input_mean.tolist(),
                "std": self.input_std.tolist(),
                "layout": "NCHW float32",
                "batch": self.fixed_batch or "dynamic",
            },
            "output": f"{self.output_name}, L2-normalised here",
            "acquisition": self.aligner.settings(),
        }

    def preprocess(self, chips: list[np.ndarray]) -> np.ndarray:
        """Chips -> network input.

        Parameters
        ----------
        chips : list of numpy.ndarray
            Each (input_size, input_size, 3) uint8 RGB.

        Returns
        -------
        numpy.ndarray
            Shape (n, 3, input_size, input_size), float32, channels in
            ``channel_order``, ``(x - mean) / std``.

        Raises
        ------
        ValueError
            If a chip has another shape or dtype.
        """
        s = self.input_size
        for c in chips:
            if c.shape != (s, s, 3) or c.dtype != np.uint8:
                raise ValueError(f"{self.name} chips must be ({s}, {s}, 3) uint8 RGB, got {c.shape} {c.dtype}")
        x = np.stack(chips).astype(np.float32)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        x = (x - self.input_mean) / self.input_std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Bare onnxruntime run: (n, 3, S, S) float32 -> raw (n, embedding_dim) float32.

        With a fixed graph batch N, ``n`` must equal N.

        Raises
        ------
        WeightsError
            If the output is not (n, embedding_dim).
        """
        (out,) = self._session.run([self.output_name], {self.input_name: batch})
        out = np.asarray(out, dtype=np.float32).reshape(len(batch), -1)
        if out.shape[1] != self.embedding_dim:
            raise WeightsError(f"{self.name} returned {out.shape[1]} values per image, expected {self.embedding_dim}")
        return out

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings of chips.

        Parameters
        ----------
        chips : list of numpy.ndarray
            Each (input_size, input_size, 3) uint8 RGB.

        Returns
        -------
        numpy.ndarray
            Shape (len(chips), embedding_dim), float32, unit L2 norm (a zero output
            stays zero and becomes an ``invalid_embedding`` FTA downstream).
        """
        out = np.empty((len(chips), self.embedding_dim), dtype=np.float32)
        for start in range(0, len(chips), self.batch_size):
            part = chips[start : start + self.batch_size]
            x = self.preprocess(part)
            if self.fixed_batch is not None and len(part) < self.fixed_batch:
                pad = np.zeros((self.fixed_batch - len(part), *x.shape[1:]), dtype=np.float32)
                x = np.concatenate([x, pad])
            out[start : start + len(part)] = self.forward(x)[: len(part)]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out
