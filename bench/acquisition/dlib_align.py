"""dlib acquisition: HOG frontal face detector, 5-point landmarks, aligned 150x150 chip.

This is the preprocessing dlib documents for its ResNet face descriptor
(``dlib.get_face_chip(img, shape, size=150, padding=0.25)`` equals what
``compute_face_descriptor(img, shape)`` crops internally; davisking/dlib
``tools/python/src/face_recognition.cpp``).

Large photographs are detected on a downscaled copy (longest side
``detect_max_side`` pixels, ``cv2.INTER_AREA``) and the box is mapped back to full
resolution, where the landmarks and the chip are computed. On the FRL London
1350x1350 photos this cuts detection from ~140 ms to ~12 ms without changing
which faces are found.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import dlib
import numpy as np

from bench.acquisition.base import Acquisition
from bench.acquisition.images import as_rgb_uint8, load_rgb
from bench.errors import ImageLoadError, WeightsError

__all__ = ["DlibAligner", "face_recognition_models_dir"]


def face_recognition_models_dir() -> Path:
    """Folder of the dlib model files shipped by the ``face_recognition_models`` package.

    Located without importing the package (its ``__init__`` needs the deprecated
    ``pkg_resources``).

    Raises
    ------
    WeightsError
        If the package is not installed, with the command that installs it.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "the dlib model files come from the 'face_recognition_models' package, which is not "
            "installed; run: pip install face_recognition_models"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class DlibAligner:
    """Detect the largest frontal face, fit 5 landmarks, cut the aligned chip.

    Parameters
    ----------
    landmarks_path : pathlib.Path
        dlib 5-point shape predictor (``shape_predictor_5_face_landmarks.dat``).
    detect_max_side : int
        Longest side (pixels) of the copy the detector runs on; images already
        smaller are used as they are.
    upsample : int
        Detector upsampling passes (0 finds faces from about 80 px in the
        detection copy; each pass halves that and costs ~4x time).
    chip_size : int
        Side of the aligned chip in pixels (150 for the dlib ResNet).
    padding : float
        Chip padding around the landmarks, as a fraction (0.25 for the dlib ResNet).
    max_pixels : int
        Images with more pixels are refused before decoding (FTA ``too_large``).
    """

    def __init__(
        self,
        landmarks_path: Path,
        *,
        detect_max_side: int = 400,
        upsample: int = 0,
        chip_size: int = 150,
        padding: float = 0.25,
        max_pixels: int = 50_000_000,
    ) -> None:
        self.landmarks_path = Path(landmarks_path)
        if not self.landmarks_path.is_file():
            raise WeightsError(f"dlib landmark model not found: {str(self.landmarks_path)!r}")
        self.detect_max_side = int(detect_max_side)
        self.upsample = int(upsample)
        self.chip_size = int(chip_size)
        self.padding = float(padding)
        self.max_pixels = int(max_pixels)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(self.landmarks_path))

    def settings(self) -> dict:
        """Detector and alignment settings, recorded in every result file."""
        return {
            "detector": "dlib.get_frontal_face_detector (HOG)",
            "landmarks": "dlib shape_predictor_5_face_landmarks",
            "detect_max_side": self.detect_max_side,
            "upsample": self.upsample,
            "downscale_interpolation": "cv2.INTER_AREA",
            "chip": f"dlib.get_face_chip size={self.chip_size} padding={self.padding}",
            "multiple_faces": "largest box area",
            "max_pixels": self.max_pixels,
        }

    def acquire_file(self, path: Path) -> Acquisition:
        """Load ``path`` (see :func:`bench.acquisition.images.load_rgb`) and acquire it.

        Never raises for a bad image: decoding problems become an FTA with the
        loader's reason code.
        """
        try:
            image = load_rgb(path, max_pixels=self.max_pixels)
        except ImageLoadError as err:
            return Acquisition(chip=None, fta_reason=err.reason, detail=str(err))
        return self.acquire(image)

    def acquire(self, image: np.ndarray) -> Acquisition:
        """Acquire a face from an RGB image.

        Parameters
        ----------
        image : numpy.ndarray
            Shape (H, W, 3), uint8, RGB.

        Returns
        -------
        Acquisition
            Chip of shape (chip_size, chip_size, 3) uint8 RGB, or an FTA with reason
            ``no_face_detected``.
        """
        image = as_rgb_uint8(image)  # greyscale, RGBA, float [0, 1], strided views (one shared rule)
        h, w = image.shape[:2]
        scale = min(1.0, self.detect_max_side / max(h, w))
        small = image
        if scale < 1.0:
            small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        rects = self._detector(np.ascontiguousarray(small), self.upsample)
        if len(rects) == 0:
            return Acquisition(chip=None, fta_reason="no_face_detected", detail=f"no face in {w}x{h} image")
        best = max(rects, key=lambda r: (r.width() * r.height(), -r.left(), -r.top()))
        box = (best.left() / scale, best.top() / scale, best.right() / scale, best.bottom() / scale)
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(image, rect)
        chip = dlib.get_face_chip(image, shape, size=self.chip_size, padding=self.padding)
        return Acquisition(chip=np.asarray(chip, dtype=np.uint8), fta_reason=None, n_faces=len(rects), box=box)
