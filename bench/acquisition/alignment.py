"""Alignment as each recogniser was trained: the chip cut from any detector's output.

A recogniser declares its alignment; the detector (``detector=`` config group,
:mod:`bench.acquisition.detectors`) supplies the box and five landmarks. Three
alignments:

* :class:`ArcFaceAligner` -- five-point least-squares similarity onto the ArcFace
  112 x 112 template (InsightFace ``norm_crop``; OpenCV ``FaceRecognizerSF::alignCrop``
  uses the same template and transform). Used by SFace and the ArcFace models.
* :class:`MarginCropAligner` -- facenet-pytorch's ``extract_face``: the box grown by
  ``margin`` output pixels, cropped and resized to ``image_size`` (FaceNet). Uses the
  box only; boxes of different detectors differ in tightness, so FaceNet chips differ
  more across detectors than landmark-aligned ones do.
* :class:`DlibChipAligner` -- dlib's own: the 5-point shape predictor fitted inside the
  box, then ``dlib.get_face_chip`` (150 px, padding 0.25), as dlib documents for its
  ResNet descriptor.

Every aligner has ``acquire_file(path)`` / ``acquire(image)`` returning an
:class:`~bench.acquisition.base.Acquisition` (a failure to acquire is never an
exception), ``settings()`` (part of the embedding cache key), ``weights_sha256``
and ``detector_name`` (recorded in ``metrics.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import dlib
import numpy as np
from PIL import Image

from bench.acquisition.base import Acquisition
from bench.acquisition.images import DEFAULT_MAX_PIXELS, load_rgb
from bench.acquisition.mtcnn_align import Detection, arcface_template, warp_to_template
from bench.errors import ConfigError, ImageLoadError
from bench.models.weights import locate_weights

__all__ = ["ArcFaceAligner", "DlibChipAligner", "FaceDetector", "MarginCropAligner"]


class FaceDetector(Protocol):
    """What an aligner needs from a detector (see :mod:`bench.acquisition.detectors`)."""

    name: str
    weights_sha256: dict

    def settings(self) -> dict: ...

    def detect(self, image: np.ndarray) -> Detection | None: ...


class _DetectThenAlign:
    """Load, detect, cut the chip; failures become FTAs with their reason."""

    alignment = ""

    def __init__(self, detector: FaceDetector, max_pixels: int) -> None:
        if detector is None or not callable(getattr(detector, "detect", None)):
            raise ConfigError(f"aligner needs a detector with detect(image); got {type(detector).__name__}")
        self.detector = detector
        self.detector_name = str(getattr(detector, "name", type(detector).__name__))
        self.max_pixels = int(max_pixels)
        self.weights_sha256 = dict(getattr(detector, "weights_sha256", {}))

    def settings(self) -> dict:
        """Detector and chip settings, recorded in every result file."""
        return {
            "detector_name": self.detector_name,
            **self.detector.settings(),
            "alignment": self.alignment,
            "chip": self._chip_description(),
            "max_pixels": self.max_pixels,
        }

    def acquire_file(self, path: str | Path) -> Acquisition:
        """Load ``path`` (:func:`bench.acquisition.images.load_rgb`) and acquire it; never raises for a bad image."""
        try:
            image = load_rgb(path, max_pixels=self.max_pixels)
        except ImageLoadError as err:
            return Acquisition(chip=None, fta_reason=err.reason, detail=str(err))
        return self.acquire(image)

    def acquire(self, image: np.ndarray) -> Acquisition:
        """Acquire a face from an RGB image (H, W, 3) uint8; FTA ``no_face_detected`` if none."""
        h, w = image.shape[:2]
        det = self.detector.detect(image)
        if det is None:
            return Acquisition(chip=None, fta_reason="no_face_detected", detail=f"{self.detector_name} found no face in {w}x{h} image")
        x0, y0, x1, y1 = det.box
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            return Acquisition(
                chip=None,
                fta_reason="no_face_detected",
                n_faces=det.n_faces,
                detail=f"face box {np.round(det.box, 1).tolist()} leaves no pixels inside the {w}x{h} image",
            )
        chip = self._chip(image, det)
        return Acquisition(chip=chip, fta_reason=None, n_faces=det.n_faces, box=tuple(float(v) for v in det.box))

    def _chip_description(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _chip(self, image: np.ndarray, det: Detection) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class ArcFaceAligner(_DetectThenAlign):
    """Five landmarks -> similarity transform onto the ArcFace template, ``chip_size`` square.

    Parameters
    ----------
    detector : FaceDetector
        Any detector of :mod:`bench.acquisition.detectors`.
    chip_size : int
        Output side in pixels (112 for SFace and the InsightFace models); a multiple
        of 112 or 128 (:func:`~bench.acquisition.mtcnn_align.arcface_template`).
    max_pixels : int
        Images with more pixels are refused before decoding (FTA ``too_large``).

    Raises
    ------
    ConfigError
        No usable detector, or a chip size the template does not support.
    """

    alignment = "arcface_5point"

    def __init__(self, *, detector: FaceDetector, chip_size: int = 112, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.template = arcface_template(int(chip_size))
        self.chip_size = int(chip_size)
        super().__init__(detector, max_pixels)

    def _chip_description(self) -> str:
        return (
            "5-point least-squares similarity (Umeyama) onto the ArcFace template "
            f"{self.template.round(4).tolist()}, cv2.warpAffine INTER_LINEAR, border 0, "
            f"{self.chip_size}x{self.chip_size} RGB uint8"
        )

    def _chip(self, image: np.ndarray, det: Detection) -> np.ndarray:
        return warp_to_template(image, det.landmarks, self.template, self.chip_size)


class MarginCropAligner(_DetectThenAlign):
    """Box + margin crop, ``image_size`` square (facenet-pytorch ``extract_face``), for FaceNet.

    Parameters
    ----------
    detector : FaceDetector
    image_size : int
        Output side in pixels (160 for FaceNet: facenet-pytorch README).
    margin : int
        Margin around the box in pixels of the output image (14: facenet-pytorch
        ``examples/lfw_evaluate.ipynb``).
    max_pixels : int

    Raises
    ------
    ConfigError
        No usable detector, or ``image_size``/``margin`` out of range.
    """

    alignment = "box_margin_crop"

    def __init__(
        self, *, detector: FaceDetector, image_size: int = 160, margin: int = 14, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        if int(image_size) < 16 or not 0 <= int(margin) < int(image_size):
            raise ConfigError(f"need image_size >= 16 and 0 <= margin < image_size, got {image_size!r}, {margin!r}")
        self.image_size = int(image_size)
        self.margin = int(margin)
        super().__init__(detector, max_pixels)

    def _chip_description(self) -> str:
        return (
            f"facenet_pytorch extract_face: box + margin {self.margin} px (output units), clipped, "
            f"PIL BILINEAR resize to {self.image_size}x{self.image_size}, RGB uint8"
        )

    def _chip(self, image: np.ndarray, det: Detection) -> np.ndarray:
        from facenet_pytorch.models.utils.detect_face import extract_face

        face = extract_face(Image.fromarray(image), det.box, self.image_size, self.margin)  # (3, S, S) float 0..255
        return np.ascontiguousarray(face.permute(1, 2, 0).numpy().astype(np.uint8))


class DlibChipAligner(_DetectThenAlign):
    """dlib 5-point shape predictor in the detector's box, then ``dlib.get_face_chip``.

    With :class:`~bench.acquisition.detectors.DlibHogDetector` at the same settings this
    cuts the same chips as :class:`bench.acquisition.dlib_align.DlibAligner`.

    Parameters
    ----------
    detector : FaceDetector
    chip_size : int
        Chip side (150 for the dlib ResNet).
    padding : float
        Chip padding (0.25 for the dlib ResNet).
    max_pixels : int

    Raises
    ------
    ConfigError
        No usable detector, or parameters out of range.
    WeightsError
        The 5-point predictor missing or failing its checksum.
    """

    alignment = "dlib_5point_chip"

    def __init__(
        self, *, detector: FaceDetector, chip_size: int = 150, padding: float = 0.25, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        if int(chip_size) < 16 or not 0 <= float(padding) <= 1:
            raise ConfigError(f"need chip_size >= 16 and 0 <= padding <= 1, got {chip_size!r}, {padding!r}")
        self.chip_size = int(chip_size)
        self.padding = float(padding)
        super().__init__(detector, max_pixels)
        sp5 = locate_weights("dlib_resnet")["shape_predictor_5_face_landmarks.dat"]
        self.weights_sha256[f"dlib/{sp5.path.name}"] = sp5.sha256
        self._predictor = dlib.shape_predictor(str(sp5.path))

    def _chip_description(self) -> str:
        return f"dlib shape_predictor_5_face_landmarks in the box; dlib.get_face_chip size={self.chip_size} padding={self.padding}"

    def _chip(self, image: np.ndarray, det: Detection) -> np.ndarray:
        rect = dlib.rectangle(*(int(round(v)) for v in det.box))
        img = np.ascontiguousarray(image)
        shape = self._predictor(img, rect)
        return np.asarray(dlib.get_face_chip(img, shape, size=self.chip_size, padding=self.padding), dtype=np.uint8)
