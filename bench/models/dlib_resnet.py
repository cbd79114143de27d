"""dlib ResNet face descriptor (128-d), the offline real model of fvbench.

Weights ship with the ``face_recognition_models`` PyPI package (0.3.0; models by
Davis King, CC0). The descriptor's native measure is Euclidean distance with the
published same-person threshold 0.6 ("When using a distance threshold of 0.6, the
dlib model obtains an accuracy of 99.38% on the standard LFW face recognition
benchmark", davisking/dlib ``python_examples/face_recognition.py``). fvbench scores
are similarities, so the score is ``-distance`` and the nominal threshold ``-0.6``.
"""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np

from bench.acquisition.dlib_align import DlibAligner, face_recognition_models_dir
from bench.errors import WeightsError
from bench.models.weights import WEIGHTS_REGISTRY, sha256_file

__all__ = ["DlibResNet", "DLIB_WEIGHTS_SHA256"]

#: SHA-256 of the files in face_recognition_models 0.3.0 (shared/docs/sources.md §3),
#: from the weights registry (:data:`bench.models.weights.WEIGHTS_REGISTRY` ``["dlib_resnet"]``).
DLIB_WEIGHTS_SHA256 = {f.filename: f.sha256 for f in WEIGHTS_REGISTRY["dlib_resnet"].files}


class DlibResNet:
    """dlib's ResNet-34-style face descriptor with its documented acquisition.

    Parameters
    ----------
    detect_max_side, upsample : int
        Passed to :class:`bench.acquisition.dlib_align.DlibAligner`.
    num_jitters : int
        dlib's test-time augmentation (0 = none, the default; 99.13% LFW per
        dlib's example, 99.38% with 100 jitters).
    batch_size : int
        Chips per ``compute_face_descriptor`` call.
    models_dir : str or None
        Folder with the ``.dat`` files; default: the installed
        ``face_recognition_models`` package.
    verify_weights : bool
        Refuse files whose SHA-256 differs from :data:`DLIB_WEIGHTS_SHA256`.
    aligner : object or None
        Acquisition step making 150x150 dlib chips from any detector
        (:class:`bench.acquisition.alignment.DlibChipAligner`); None = the built-in HOG
        :class:`~bench.acquisition.dlib_align.DlibAligner` (``detect_max_side``, ``upsample``).

    Attributes
    ----------
    name : str
    metric : str
        ``"euclidean"``: score = -||a - b||, in [-2, 0] for these descriptors
        (norms are about 1 but not exactly).
    nominal_threshold : float
        -0.6 (similarity units), with ``nominal_threshold_source``.
    embedding_dim : int
        128.

    Raises
    ------
    WeightsError
        If a weights file is missing or fails its checksum.
    """

    name = "dlib_resnet"
    metric = "euclidean"
    embedding_dim = 128
    nominal_threshold = -0.6
    nominal_threshold_source = (
        "Euclidean distance 0.6, davisking/dlib python_examples/face_recognition.py (LFW 99.38%)"
    )
    licence = "CC0-1.0 (face_recognition_models; dlib models by Davis King)"
    training_data = "about 3 million faces of 7485 identities (FaceScrub, VGG and web images; davisking/dlib-models README)"

    def __init__(
        self,
        *,
        detect_max_side: int = 400,
        upsample: int = 0,
        num_jitters: int = 0,
        batch_size: int = 32,
        models_dir: str | None = None,
        verify_weights: bool = True,
        aligner: object | None = None,
    ) -> None:
        folder = Path(models_dir) if models_dir else face_recognition_models_dir()
        self.files = {n: folder / n for n in DLIB_WEIGHTS_SHA256}
        self.weights_sha256 = {}
        for n, p in self.files.items():
            if not p.is_file():
                raise WeightsError(
                    f"dlib weights file not found: {str(p)!r}; install it with: pip install face_recognition_models"
                )
            digest = sha256_file(p)
            if verify_weights and digest != DLIB_WEIGHTS_SHA256[n]:
                raise WeightsError(
                    f"dlib weights file {str(p)!r} has SHA-256 {digest}, expected {DLIB_WEIGHTS_SHA256[n]} "
                    "(face_recognition_models 0.3.0); refusing to load it"
                )
            self.weights_sha256[n] = digest
        self.num_jitters = int(num_jitters)
        self.batch_size = int(batch_size)
        if aligner is None:
            self.aligner = DlibAligner(
                self.files["shape_predictor_5_face_landmarks.dat"], detect_max_side=detect_max_side, upsample=upsample
            )
        else:  # any detector, dlib's own chip (bench.acquisition.alignment.DlibChipAligner)
            self.aligner = aligner
            self.weights_sha256.update(getattr(aligner, "weights_sha256", {}))
        self._net = dlib.face_recognition_model_v1(str(self.files["dlib_face_recognition_resnet_model_v1.dat"]))

    def settings(self) -> dict:
        """Preprocessing and model settings; part of the embedding cache key."""
        return {
            "model": self.name,
            "embedding_dim": self.embedding_dim,
            "metric": self.metric,
            "num_jitters": self.num_jitters,
            "acquisition": self.aligner.settings(),
            "dlib_version": dlib.__version__,
        }

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        """Descriptors of aligned chips.

        Parameters
        ----------
        chips : list of numpy.ndarray
            Each (150, 150, 3) uint8 RGB, as made by :class:`DlibAligner`.

        Returns
        -------
        numpy.ndarray
            Shape (len(chips), 128), float32 (not normalised; norms near 1).
        """
        out = np.empty((len(chips), self.embedding_dim), dtype=np.float32)
        for start in range(0, len(chips), self.batch_size):
            batch = [np.ascontiguousarray(c) for c in chips[start : start + self.batch_size]]
            vecs = self._net.compute_face_descriptor(batch, self.num_jitters)
            out[start : start + len(batch)] = np.asarray([np.asarray(v) for v in vecs], dtype=np.float32)
        return out
