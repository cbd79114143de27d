"""Face detectors as their own axis: each finds the largest face, its box and five landmarks.

Every detector here returns a :class:`~bench.acquisition.mtcnn_align.Detection`
(box ``left, top, right, bottom`` and five landmarks, in full-image pixels) in the
one landmark order the ArcFace template uses: image-left eye, image-right eye, nose
tip, image-left mouth corner, image-right mouth corner (for a frontal face the
image-left eye is the subject's right eye). Recognisers then cut the chip they were
trained on from those landmarks or that box (:mod:`bench.acquisition.alignment`),
so any detector can feed any recogniser.

Detectors (weights from registry packages, SHA-256 checked before use through
:func:`bench.models.weights.locate_weights`; shared/docs/sources.md §3, §8):

* :class:`DlibHogDetector` -- ``dlib.get_frontal_face_detector`` (HOG + linear SVM).
* :class:`DlibMmodDetector` -- dlib's MMOD CNN (``mmod_human_face_detector.dat``).
* :class:`~bench.acquisition.mtcnn_align.MtcnnDetector` -- MTCNN (facenet-pytorch),
  whose O-Net gives the five landmarks directly (config: ``detector=mtcnn``).
* :class:`YuNetDetector` -- OpenCV Zoo YuNet 2023mar int8 through ``cv2.FaceDetectorYN``,
  five landmarks from the network.

The dlib detectors give boxes only; their five landmarks come from dlib's 68-point
shape predictor fitted in the box (iBUG 300-W numbering: eye centres = mean of points
36-41 and 42-47, nose tip = 30, mouth corners = 48 and 54).

All detectors run on a copy whose longest side is at most ``detect_max_side`` pixels
(``cv2.INTER_AREA``). MTCNN and YuNet map box and landmarks back to full resolution with the
per-axis factor of the actual resize, pixel-centre aligned (``(x + 0.5) / f - 0.5``); the dlib
detectors divide the rectangle corners by the uniform scale (dlib's convention, as the dlib
ResNet's original acquisition :class:`~bench.acquisition.dlib_align.DlibAligner` does, so that
``dlib_hog`` + :class:`~bench.acquisition.alignment.DlibChipAligner` cuts identical chips).
With several faces, the largest box is used (ties: leftmost, then topmost).
"""

from __future__ import annotations

import cv2
import dlib
import numpy as np

from bench.acquisition.mtcnn_align import Detection, MtcnnDetector
from bench.errors import ConfigError, WeightsError
from bench.models.weights import locate_weights

__all__ = [
    "DlibHogDetector",
    "DlibMmodDetector",
    "MtcnnDetector",
    "YuNetDetector",
    "downscale",
    "landmarks5_from_68",
]

_DLIB = "dlib_detectors"
_MMOD_FILE = "mmod_human_face_detector.dat"
_SP68_FILE = "shape_predictor_68_face_landmarks.dat"


def downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Copy of ``image`` with longest side at most ``max_side`` (``cv2.INTER_AREA``).

    Parameters
    ----------
    image : numpy.ndarray
        Shape (H, W, C), uint8.
    max_side : int or None
        None or a side >= the image's: the image itself.

    Returns
    -------
    small : numpy.ndarray
        The copy (or ``image``).
    factors : numpy.ndarray
        Shape (2,), float64: (x, y) factors of the actual resize (small / full).
    """
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image, np.ones(2)
    scale = max_side / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, np.array([small.shape[1] / w, small.shape[0] / h])


def _to_full(points: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Map (..., 2) pixel coordinates of the detection copy back to the full image."""
    return (np.asarray(points, dtype=np.float64) + 0.5) / factors - 0.5


def _largest(boxes: np.ndarray) -> int:
    """Index of the largest (left, top, right, bottom) box; ties: leftmost, then topmost."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.lexsort((boxes[:, 1], boxes[:, 0], -area))[0])


def landmarks5_from_68(points68: np.ndarray) -> np.ndarray:
    """Five ArcFace-order landmarks from 68 iBUG 300-W points.

    Parameters
    ----------
    points68 : numpy.ndarray
        Shape (68, 2), (x, y) pixels, 0-based iBUG numbering (dlib's 68-point model).

    Returns
    -------
    numpy.ndarray
        Shape (5, 2), float64: image-left eye centre (mean of 36-41), image-right eye
        centre (mean of 42-47), nose tip (30), image-left mouth corner (48),
        image-right mouth corner (54).

    Raises
    ------
    ValueError
        If the shape is not (68, 2).
    """
    p = np.asarray(points68, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"need (68, 2) landmarks, got {p.shape}")
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


class _DlibDetector:
    """Shared part of the dlib detectors: 68-point landmarks in the chosen box."""

    def __init__(self, detect_max_side: int | None, upsample: int) -> None:
        if detect_max_side is not None and int(detect_max_side) < 40:
            raise ConfigError(f"detect_max_side must be >= 40 pixels or null, got {detect_max_side!r}")
        if not 0 <= int(upsample) <= 3:
            raise ConfigError(f"upsample must be 0..3 (each pass costs ~4x time), got {upsample!r}")
        self.detect_max_side = None if detect_max_side is None else int(detect_max_side)
        self.upsample = int(upsample)
        self._files = locate_weights(_DLIB)
        self.weights_sha256 = {f"dlib/{_SP68_FILE}": self._files[_SP68_FILE].sha256}
        self._predictor = dlib.shape_predictor(str(self._files[_SP68_FILE].path))

    def _rects(self, small: np.ndarray) -> list[tuple[float, float, float, float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> Detection | None:
        """The largest face in an RGB image (H, W, 3) uint8, or None when there is none.

        Box from the detector on the detection copy; the 68-point predictor runs on the
        full image inside the mapped box; five landmarks by :func:`landmarks5_from_68`.
        """
        small, _ = downscale(image, self.detect_max_side)
        found = self._rects(np.ascontiguousarray(small))
        if not found:
            return None
        boxes = np.asarray(found, dtype=np.float64).reshape(-1, 5)
        best = _largest(boxes[:, :4])
        # dlib's rectangle convention (as bench.acquisition.dlib_align.DlibAligner): corner
        # coordinates divided by the uniform scale, so that dlib_hog + DlibChipAligner cuts
        # exactly the chips of the dlib ResNet's original acquisition
        h, w = image.shape[:2]
        scale = 1.0 if self.detect_max_side is None else min(1.0, self.detect_max_side / max(h, w))
        box = boxes[best, :4] / scale
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(np.ascontiguousarray(image), rect)
        pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=np.float64)
        return Detection(box=box, landmarks=landmarks5_from_68(pts), probability=float(boxes[best, 4]), n_faces=len(boxes))


class DlibHogDetector(_DlibDetector):
    """dlib HOG frontal face detector; five landmarks from the 68-point predictor.

    Parameters
    ----------
    detect_max_side : int or None
        Longest side of the detection copy (400: on the 1350-px FRL London photos this
        finds the same faces as full size at ~1/10 of the time; see
        :mod:`bench.acquisition.dlib_align`).
    upsample : int
        Detector upsampling passes, 0..3.

    Attributes
    ----------
    name : str
        ``"dlib_hog"``.
    weights_sha256 : dict
        SHA-256 of the 68-point predictor (the HOG model is compiled into dlib).

    Raises
    ------
    ConfigError
        Parameters out of range.
    WeightsError
        Predictor file missing or failing its checksum.
    """

    name = "dlib_hog"

    def __init__(self, *, detect_max_side: int | None = 400, upsample: int = 0) -> None:
        super().__init__(detect_max_side, upsample)
        self._detector = dlib.get_frontal_face_detector()

    def settings(self) -> dict:
        """Detector settings (part of every acquisition's cache key)."""
        return {
            "detector": "dlib.get_frontal_face_detector (HOG)",
            "dlib_version": dlib.__version__,
            "landmarks": "dlib shape_predictor_68_face_landmarks in the box -> 5 points (eye centres, nose 30, mouth 48/54)",
            "detect_max_side": self.detect_max_side,
            "upsample": self.upsample,
            "downscale_interpolation": "cv2.INTER_AREA",
            "box_mapping": "rectangle corners / uniform scale (dlib convention)",
            "multiple_faces": "largest box area (ties: leftmost, then topmost)",
        }

    def _rects(self, small: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        rects, scores, _ = self._detector.run(small, self.upsample, 0.0)
        return [(r.left(), r.top(), r.right(), r.bottom(), s) for r, s in zip(rects, scores)]


class DlibMmodDetector(_DlibDetector):
    """dlib MMOD CNN face detector (``mmod_human_face_detector.dat``); 68-point landmarks.

    Parameters
    ----------
    detect_max_side : int or None
        Longest side of the detection copy (default 400; the CNN finds faces from
        about 80 px per side with ``upsample=0``).
    upsample : int
        Upsampling passes, 0..3.

    Attributes
    ----------
    name : str
        ``"dlib_mmod"``.
    weights_sha256 : dict
        SHA-256 of the MMOD model and of the 68-point predictor.

    Raises
    ------
    ConfigError, WeightsError
        As :class:`DlibHogDetector`.
    """

    name = "dlib_mmod"

    def __init__(self, *, detect_max_side: int | None = 400, upsample: int = 0) -> None:
        super().__init__(detect_max_side, upsample)
        self.weights_sha256[f"dlib/{_MMOD_FILE}"] = self._files[_MMOD_FILE].sha256
        self._detector = dlib.cnn_face_detection_model_v1(str(self._files[_MMOD_FILE].path))

    def settings(self) -> dict:
        """Detector settings (part of every acquisition's cache key)."""
        return {
            "detector": "dlib.cnn_face_detection_model_v1 (MMOD CNN, mmod_human_face_detector.dat)",
            "dlib_version": dlib.__version__,
            "landmarks": "dlib shape_predictor_68_face_landmarks in the box -> 5 points (eye centres, nose 30, mouth 48/54)",
            "detect_max_side": self.detect_max_side,
            "upsample": self.upsample,
            "downscale_interpolation": "cv2.INTER_AREA",
            "box_mapping": "rectangle corners / uniform scale (dlib convention)",
            "multiple_faces": "largest box area (ties: leftmost, then topmost)",
        }

    def _rects(self, small: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        found = self._detector(small, self.upsample)
        return [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence) for d in found]


class YuNetDetector:
    """OpenCV Zoo YuNet (2023mar, int8 block-quantised) through ``cv2.FaceDetectorYN``.

    The network returns, per face, ``x, y, w, h``, five landmarks (right eye, left eye,
    nose tip, right and left mouth corners: the *subject's* right and left, i.e.
    image-left first -- OpenCV ``doc/tutorials/dnn/dnn_face``) and a score; that is
    already the ArcFace template order. Input is BGR (converted here from RGB).

    Parameters
    ----------
    score_threshold : float
        Faces below this score are dropped (0.9: OpenCV's ``samples/dnn/face_detect.py``).
    nms_threshold : float
        IoU for non-maximum suppression (0.3, same sample).
    top_k : int
        Boxes kept before NMS (5000, same sample).
    detect_max_side : int or None
        Longest side of the detection copy (default 640).

    Attributes
    ----------
    name : str
        ``"yunet"``.
    weights_sha256 : dict

    Raises
    ------
    ConfigError
        Parameters out of range.
    WeightsError
        Model missing, failing its checksum, or refused by OpenCV.
    """

    name = "yunet"

    def __init__(
        self,
        *,
        score_threshold: float = 0.9,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        detect_max_side: int | None = 640,
    ) -> None:
        if not 0 < float(score_threshold) < 1 or not 0 < float(nms_threshold) < 1:
            raise ConfigError(
                f"score_threshold and nms_threshold must be in (0, 1), got {score_threshold!r}, {nms_threshold!r}"
            )
        if int(top_k) < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k!r}")
        if detect_max_side is not None and int(detect_max_side) < 40:
            raise ConfigError(f"detect_max_side must be >= 40 pixels or null, got {detect_max_side!r}")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.detect_max_side = None if detect_max_side is None else int(detect_max_side)
        (local,) = locate_weights("yunet").values()
        self.weights_sha256 = {f"yunet/{local.path.name}": local.sha256}
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(local.path), "", (320, 320), self.score_threshold, self.nms_threshold, self.top_k
            )
        except cv2.error as err:
            raise WeightsError(f"OpenCV {cv2.__version__} cannot load YuNet from {str(local.path)!r}: {err}") from err

    def settings(self) -> dict:
        """Detector settings (part of every acquisition's cache key)."""
        return {
            "detector": "YuNet 2023mar int8bq (OpenCV Zoo) via cv2.FaceDetectorYN",
            "opencv_version": cv2.__version__,
            "landmarks": "5 points from the network",
            "score_threshold": self.score_threshold,
            "nms_threshold": self.nms_threshold,
            "top_k": self.top_k,
            "detect_max_side": self.detect_max_side,
            "downscale_interpolation": "cv2.INTER_AREA",
            "multiple_faces": "largest box area (ties: leftmost, then topmost)",
        }

    def detect(self, image: np.ndarray) -> Detection | None:
        """The largest face in an RGB image (H, W, 3) uint8, or None when there is none."""
        small, factors = downscale(image, self.detect_max_side)
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self._net.detect(bgr)
        if faces is None or len(faces) == 0:
            return None
        faces = np.asarray(faces, dtype=np.float64).reshape(-1, 15)
        boxes = np.column_stack([faces[:, 0], faces[:, 1], faces[:, 0] + faces[:, 2], faces[:, 1] + faces[:, 3]])
        best = _largest(boxes)
        return Detection(
            box=_to_full(boxes[best].reshape(2, 2), factors).reshape(4),
            landmarks=_to_full(faces[best, 4:14].reshape(5, 2), factors),
            probability=float(faces[best, 14]),
            n_faces=len(faces),
        )
