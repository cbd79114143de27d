"""MTCNN acquisition: face box + 5 landmarks, then the crop each model family was trained on.

Detector: the MTCNN cascade of facenet-pytorch (Zhang et al. 2016, "Joint Face
Detection and Alignment using Multitask Cascaded Convolutional Networks"), run
through the package's own ``detect_face`` with its packaged P/R/O-Net weights,
which are verified against the weights registry and loaded with
``torch.load(..., weights_only=True)``. Defaults are the package's
(``min_face_size=20``, ``thresholds=[0.6, 0.7, 0.7]``, ``factor=0.709``;
shared/docs/sources.md §1). The largest box is used (facenet-pytorch's
``select_largest=True``; ties broken by left, then top edge).

Large photographs are detected on a downscaled copy (longest side
``detect_max_side`` pixels, ``cv2.INTER_AREA``) and box and landmarks are mapped
back to full resolution (per-axis factor, pixel-centre aligned), where the chip is cut; ``detect_max_side=None`` runs the
detector at full size (on the 1350x1350 FRL London photos: ~1.9 s per image on 2
CPU cores instead of ~0.3 s at 640 px, boxes within ~3% of each other).

Two chips:

* :class:`MtcnnFaceNetAligner` -- facenet-pytorch's ``extract_face``: the box grown
  by ``margin`` pixels *of the output image*, clipped to the image, cropped and
  resized to ``image_size`` x ``image_size`` with PIL bilinear, as in the package's
  LFW evaluation example (``MTCNN(image_size=160, margin=14)``,
  ``examples/lfw_evaluate.ipynb``). No landmark alignment: FaceNet was trained on
  such crops. ``fixed_image_standardization`` is applied by the embedder.
* :class:`MtcnnArcFaceAligner` -- InsightFace's ``norm_crop``: a least-squares
  similarity transform (Umeyama 1991, as ``skimage.transform.SimilarityTransform``)
  of the 5 landmarks onto the ArcFace template (:data:`ARCFACE_TEMPLATE_112`) and
  ``cv2.warpAffine`` (bilinear, black border) to 112 x 112.

Channel order: images and chips are RGB uint8. ``cv2.resize`` and
``cv2.warpAffine`` act on each channel alike, so no BGR conversion is involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from bench.acquisition.base import Acquisition
from bench.acquisition.images import DEFAULT_MAX_PIXELS, as_rgb_uint8, load_rgb
from bench.errors import ConfigError, DataError, ImageLoadError
from bench.models.weights import locate_weights

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "Detection",
    "MtcnnArcFaceAligner",
    "MtcnnDetector",
    "MtcnnFaceNetAligner",
    "arcface_template",
    "resolve_device",
    "similarity_transform",
    "warp_to_template",
]

#: ArcFace 5-point template for 112x112 chips, pixels (x, y): image-left eye,
#: image-right eye, nose tip, image-left mouth corner, image-right mouth corner.
#: InsightFace ``utils/face_align.py`` ``arcface_dst`` (shared/docs/sources.md §2c).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other strings as ``torch.device``.

    Raises
    ------
    ConfigError
        If CUDA is asked for but not available, or the string is not a device.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device {device!r} is not a torch device; use 'auto', 'cpu' or 'cuda[:N]'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use device='auto' or 'cpu'")
    return dev


def arcface_template(size: int) -> np.ndarray:
    """The ArcFace template for a ``size`` x ``size`` chip.

    As InsightFace ``estimate_norm``: for ``size`` a multiple of 112 the 112-template
    times ``size/112``; for a multiple of 128, times ``size/128`` plus ``8*size/128``
    on x.

    Returns
    -------
    numpy.ndarray
        Shape (5, 2), float64, pixel coordinates (x, y).

    Raises
    ------
    ConfigError
        If ``size`` is a multiple of neither 112 nor 128.
    """
    if size > 0 and size % 112 == 0:
        return ARCFACE_TEMPLATE_112 * (size / 112.0)
    if size > 0 and size % 128 == 0:
        ratio = size / 128.0
        out = ARCFACE_TEMPLATE_112 * ratio
        out[:, 0] += 8.0 * ratio
        return out
    raise ConfigError(f"ArcFace chip size {size!r} must be a positive multiple of 112 or 128 (InsightFace estimate_norm)")


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) src -> dst.

    Umeyama (1991), "Least-squares estimation of transformation parameters between
    two point patterns", IEEE TPAMI 13(4), eq. 40-42; the same computation as
    ``skimage.transform.SimilarityTransform.estimate``, which InsightFace's
    ``norm_crop`` uses. Reflections are excluded.

    Parameters
    ----------
    src, dst : numpy.ndarray
        Shape (n, 2), n >= 2, pixel coordinates (x, y).

    Returns
    -------
    numpy.ndarray
        Shape (2, 3), float64, ``[s*R | t]`` for ``cv2.warpAffine``.

    Raises
    ------
    ValueError
        If the shapes differ or the source points all coincide (no scale defined).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"similarity_transform needs two (n, 2) arrays with n >= 2, got {src.shape} and {dst.shape}")
    n = src.shape[0]
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / n
    if not src_var > 0:
        raise ValueError("similarity_transform: the source points coincide")
    a = dst_c.T @ src_c / n
    d = np.ones(2)
    if np.linalg.det(a) < 0:
        d[1] = -1.0
    u, s, vt = np.linalg.svd(a)
    if np.linalg.matrix_rank(a) == 1 and np.linalg.det(u) * np.linalg.det(vt) > 0:
        rot = u @ vt
    elif np.linalg.matrix_rank(a) == 1:
        rot = u @ np.diag([d[0], -1.0]) @ vt
    else:
        rot = u @ np.diag(d) @ vt
    scale = float(s @ d) / src_var
    t = dst_mean - scale * rot @ src_mean
    return np.hstack([scale * rot, t[:, None]])


def warp_to_template(image: np.ndarray, points: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """Warp ``image`` so that ``points`` land on ``template`` (InsightFace ``norm_crop``).

    Parameters
    ----------
    image : numpy.ndarray
        Shape (H, W, 3), uint8, RGB.
    points : numpy.ndarray
        Shape (k, 2), landmark pixels (x, y) in ``image``, same order as ``template``.
    template : numpy.ndarray
        Shape (k, 2), target pixels in the chip.
    size : int
        Chip side in pixels.

    Returns
    -------
    numpy.ndarray
        Shape (size, size, 3), uint8, RGB (bilinear; outside the image is black).

    Raises
    ------
    bench.errors.DataError
        Landmarks in another order than the template: after the fit the two eyes (points
        0, 1) or, with 5 points, the mouth corners (3, 4) come out left-right swapped, or
        the face would be turned by more than 90 degrees (eyes swapped in a 2-point fit);
        a swapped pair otherwise gives a silent half-scale chip. Also shapes that differ
        or landmarks that coincide. ``image`` is normalised by
        :func:`bench.acquisition.images.as_rgb_uint8`.
    """
    image = as_rgb_uint8(image)
    pts = np.asarray(points, dtype=np.float64)
    tpl = np.asarray(template, dtype=np.float64)
    if pts.shape != tpl.shape or pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise DataError(f"landmarks: expected shape {tpl.shape} (x, y per template point), got {pts.shape}")
    if not np.isfinite(pts).all():
        raise DataError("landmarks: NaN or infinite coordinates")
    try:
        m = similarity_transform(pts, tpl)
    except ValueError as err:
        raise DataError(f"landmarks: {err}") from err
    mapped = pts @ m[:, :2].T + m[:, 2]
    pairs = [(0, 1)] + ([(3, 4)] if len(tpl) >= 5 else [])
    for i, j in pairs:
        if np.sign(mapped[j, 0] - mapped[i, 0]) != np.sign(tpl[j, 0] - tpl[i, 0]):
            raise DataError(
                f"landmarks: points {i} and {j} are left-right swapped relative to the template "
                f"(template x {tpl[i, 0]:.1f} < {tpl[j, 0]:.1f}); pass them in the template's order "
                "(ArcFace: left eye, right eye, nose, left mouth corner, right mouth corner, as seen in the image)"
            )
    roll = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    if abs(roll) > 90.0:
        raise DataError(
            f"landmarks: the fit turns the face by {roll:.0f} degrees; the eyes are probably swapped "
            "(point 0 is the eye on the image's left)"
        )
    chip = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return np.ascontiguousarray(chip, dtype=np.uint8)


@dataclass(frozen=True)
class Detection:
    """The face MTCNN selected in one image.

    Attributes
    ----------
    box : numpy.ndarray
        Shape (4,), float64: left, top, right, bottom in full-image pixels.
    landmarks : numpy.ndarray
        Shape (5, 2), float64, (x, y) pixels: image-left eye, image-right eye, nose,
        image-left mouth corner, image-right mouth corner.
    probability : float
        O-Net face probability in [0, 1].
    n_faces : int
        Faces detected (>= 1).
    """

    box: np.ndarray
    landmarks: np.ndarray
    probability: float
    n_faces: int


class MtcnnDetector:
    """facenet-pytorch MTCNN with verified packaged weights; largest face, full-size coordinates.

    Parameters
    ----------
    min_face_size : int
        Smallest face searched, in pixels of the detection copy (package default 20).
    thresholds : sequence of 3 floats
        P/R/O-Net probability thresholds (package default 0.6, 0.7, 0.7).
    factor : float
        Image-pyramid scale step (package default 0.709).
    detect_max_side : int or None
        Longest side of the detection copy; None = detect at full size.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
    cpu_threads : int or None
        torch intra-op threads while detecting on CPU (restored afterwards); None =
        leave torch's setting. Default 1: the cascade runs hundreds of small tensor
        operations whose thread synchronisation costs more than it saves (640-px
        FRL London photo on 2 busy cores: 0.11 CPU-s per image with 1 thread, 0.62
        with 2).

    Raises
    ------
    WeightsError
        If the packaged weights are missing or fail their checksum.
    ConfigError
        For out-of-range parameters.
    """

    #: Detector name recorded in results (``detector=mtcnn``).
    name = "mtcnn"

    def __init__(
        self,
        *,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] | list[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        detect_max_side: int | None = 640,
        device: str = "auto",
        cpu_threads: int | None = 1,
    ) -> None:
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        if int(min_face_size) < 12:
            raise ConfigError(f"min_face_size must be >= 12 pixels (MTCNN's P-Net window), got {min_face_size!r}")
        if len(thresholds) != 3 or not all(0 < float(t) < 1 for t in thresholds):
            raise ConfigError(f"thresholds must be 3 probabilities in (0, 1), got {list(thresholds)!r}")
        if not 0 < float(factor) < 1:
            raise ConfigError(f"factor must be in (0, 1), got {factor!r}")
        if detect_max_side is not None and int(detect_max_side) < int(min_face_size):
            raise ConfigError(f"detect_max_side {detect_max_side!r} is smaller than min_face_size {min_face_size!r}")
        self.min_face_size = int(min_face_size)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.detect_max_side = None if detect_max_side is None else int(detect_max_side)
        self.device = resolve_device(device)
        if cpu_threads is not None and int(cpu_threads) < 1:
            raise ConfigError(f"cpu_threads must be >= 1 or None, got {cpu_threads!r}")
        self.cpu_threads = None if cpu_threads is None else int(cpu_threads)
        files = locate_weights("mtcnn")
        self.weights_sha256 = {f"mtcnn/{name}": lw.sha256 for name, lw in files.items()}
        nets = []
        for cls, name in ((PNet, "pnet.pt"), (RNet, "rnet.pt"), (ONet, "onet.pt")):
            net = cls(pretrained=False)
            net.load_state_dict(torch.load(files[name].path, map_location="cpu", weights_only=True))
            nets.append(net.to(self.device).eval())
        self._pnet, self._rnet, self._onet = nets

    def settings(self) -> dict:
        """Detector settings (part of every acquisition's cache key)."""
        return {
            "detector": "MTCNN (facenet-pytorch detect_face, packaged P/R/O-Net)",
            "facenet_pytorch_version": _dist_version("facenet-pytorch"),
            "min_face_size": self.min_face_size,
            "thresholds": self.thresholds,
            "factor": self.factor,
            "detect_max_side": self.detect_max_side,
            "cpu_threads": self.cpu_threads if self.device.type == "cpu" else None,
            "downscale_interpolation": "cv2.INTER_AREA",
            "multiple_faces": "largest box area (ties: leftmost, then topmost)",
        }

    def detect(self, image: np.ndarray) -> Detection | None:
        """The largest face in an RGB image, or None when there is none.

        Parameters
        ----------
        image : numpy.ndarray
            Shape (H, W, 3), uint8, RGB.

        Returns
        -------
        Detection or None
        """
        from facenet_pytorch.models.utils.detect_face import detect_face

        image = as_rgb_uint8(image)
        h, w = image.shape[:2]
        small = image
        if self.detect_max_side is not None and max(h, w) > self.detect_max_side:
            scale = self.detect_max_side / max(h, w)
            small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        # per-axis factors of the actual resize; pixel centres map as (x + 0.5) * f - 0.5
        factors = np.array([small.shape[1] / w, small.shape[0] / h])
        if min(small.shape[:2]) < self.min_face_size:
            return None  # the image pyramid would be empty: no face of the searched size fits
        threads = torch.get_num_threads()
        limit = self.cpu_threads is not None and self.device.type == "cpu"
        try:
            if limit:
                torch.set_num_threads(self.cpu_threads)
            with torch.inference_mode():
                boxes, points = detect_face(
                    np.ascontiguousarray(small),
                    self.min_face_size,
                    self._pnet,
                    self._rnet,
                    self._onet,
                    self.thresholds,
                    self.factor,
                    self.device,
                )
        finally:
            if limit:
                torch.set_num_threads(threads)
        boxes = np.asarray(boxes[0], dtype=np.float64).reshape(-1, 5)
        points = np.asarray(points[0], dtype=np.float64).reshape(-1, 5, 2)
        if len(boxes) == 0:
            return None
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        best = int(np.lexsort((boxes[:, 1], boxes[:, 0], -area))[0])
        return Detection(
            box=((boxes[best, :4].reshape(2, 2) + 0.5) / factors - 0.5).reshape(4),
            landmarks=(points[best] + 0.5) / factors - 0.5,
            probability=float(boxes[best, 4]),
            n_faces=len(boxes),
        )


def _dist_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class _MtcnnAligner:
    """Shared file loading and detection of the two MTCNN aligners."""

    def __init__(self, detector: MtcnnDetector, max_pixels: int) -> None:
        self.detector = detector
        self.max_pixels = int(max_pixels)
        self.weights_sha256 = dict(detector.weights_sha256)

    def acquire_file(self, path: str | Path) -> Acquisition:
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
        """Acquire a face from an RGB image (H, W, 3) uint8; FTA ``no_face_detected`` if none.

        Other arrays are normalised first by :func:`bench.acquisition.images.as_rgb_uint8`
        (greyscale, RGBA, float in [0, 1], strided views) or refused with a DataError.
        """
        image = as_rgb_uint8(image)
        det = self.detector.detect(image)
        h, w = image.shape[:2]
        if det is None:
            return Acquisition(chip=None, fta_reason="no_face_detected", detail=f"MTCNN found no face in {w}x{h} image")
        try:
            chip = self._chip(image, det)
        except DataError as err:  # landmarks the template cannot take (e.g. mirrored): a failed detection
            return Acquisition(chip=None, fta_reason="no_face_detected", n_faces=det.n_faces, detail=f"MTCNN {err}")
        if chip is None:
            return Acquisition(
                chip=None,
                fta_reason="no_face_detected",
                n_faces=det.n_faces,
                detail=f"face box {det.box.round(1).tolist()} leaves no pixels inside the {w}x{h} image",
            )
        return Acquisition(chip=chip, fta_reason=None, n_faces=det.n_faces, box=tuple(float(v) for v in det.box))

    def _chip(self, image: np.ndarray, det: Detection) -> np.ndarray | None:  # pragma: no cover - abstract
        raise NotImplementedError


class MtcnnFaceNetAligner(_MtcnnAligner):
    """MTCNN box + margin crop, ``image_size`` square, as facenet-pytorch makes for FaceNet.

    Parameters
    ----------
    image_size : int
        Output side in pixels (160: "Both pretrained models were trained on 160x160 px
        images", facenet-pytorch README).
    margin : int
        Margin added around the box, in pixels of the output image (14 in the
        package's LFW evaluation example; the ``MTCNN`` default is 0).
    min_face_size, thresholds, factor, detect_max_side, device, cpu_threads
        See :class:`MtcnnDetector`.
    max_pixels : int
        Images with more pixels are refused before decoding (FTA ``too_large``).
    """

    def __init__(
        self,
        *,
        image_size: int = 160,
        margin: int = 14,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] | list[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        detect_max_side: int | None = 640,
        device: str = "auto",
        cpu_threads: int | None = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if int(image_size) < 16 or not 0 <= int(margin) < int(image_size):
            raise ConfigError(f"need image_size >= 16 and 0 <= margin < image_size, got {image_size!r}, {margin!r}")
        super().__init__(
            MtcnnDetector(
                min_face_size=min_face_size,
                thresholds=thresholds,
                factor=factor,
                detect_max_side=detect_max_side,
                device=device,
                cpu_threads=cpu_threads,
            ),
            max_pixels,
        )
        self.image_size = int(image_size)
        self.margin = int(margin)

    def settings(self) -> dict:
        """Detector and crop settings, recorded in every result file."""
        return {
            **self.detector.settings(),
            "chip": (
                f"facenet_pytorch extract_face: box + margin {self.margin} px (output units), clipped, "
                f"PIL BILINEAR resize to {self.image_size}x{self.image_size}, RGB uint8"
            ),
            "max_pixels": self.max_pixels,
        }

    def _chip(self, image: np.ndarray, det: Detection) -> np.ndarray | None:
        from facenet_pytorch.models.utils.detect_face import extract_face

        h, w = image.shape[:2]
        x0, y0, x1, y1 = det.box
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            return None
        face = extract_face(Image.fromarray(image), det.box, self.image_size, self.margin)  # (3, S, S) float 0..255
        return np.ascontiguousarray(face.permute(1, 2, 0).numpy().astype(np.uint8))


class MtcnnArcFaceAligner(_MtcnnAligner):
    """MTCNN 5 landmarks -> similarity transform onto the ArcFace template, ``chip_size`` square.

    Parameters
    ----------
    chip_size : int
        Output side in pixels (112 for the InsightFace ``w600k`` models); a multiple of
        112 or 128 (:func:`arcface_template`).
    min_face_size, thresholds, factor, detect_max_side, device, cpu_threads
        See :class:`MtcnnDetector`.
    max_pixels : int
        Images with more pixels are refused before decoding (FTA ``too_large``).
    """

    def __init__(
        self,
        *,
        chip_size: int = 112,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] | list[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        detect_max_side: int | None = 640,
        device: str = "auto",
        cpu_threads: int | None = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.template = arcface_template(int(chip_size))
        super().__init__(
            MtcnnDetector(
                min_face_size=min_face_size,
                thresholds=thresholds,
                factor=factor,
                detect_max_side=detect_max_side,
                device=device,
                cpu_threads=cpu_threads,
            ),
            max_pixels,
        )
        self.chip_size = int(chip_size)

    def settings(self) -> dict:
        """Detector and alignment settings, recorded in every result file."""
        return {
            **self.detector.settings(),
            "chip": (
                f"5-point least-squares similarity (Umeyama) onto the ArcFace template, "
                f"cv2.warpAffine INTER_LINEAR, border 0, {self.chip_size}x{self.chip_size} RGB uint8"
            ),
            "template": self.template.round(4).tolist(),
            "max_pixels": self.max_pixels,
        }

    def _chip(self, image: np.ndarray, det: Detection) -> np.ndarray | None:
        return warp_to_template(image, det.landmarks, self.template, self.chip_size)
