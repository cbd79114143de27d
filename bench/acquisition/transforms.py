"""Acquisition-condition transforms: controlled degradations of real images (issue #5).

Each transform maps an RGB ``uint8`` image and a *strength* to a degraded image of the
same shape and dtype, simulating one acquisition condition: exposure, tone curve
(gamma), optical blur, low resolution, JPEG compression, sensor noise, or an occluding
band over the lower face. They are applied to the probe side of comparisons by
:mod:`bench.sweep`.

Rules shared by every transform
-------------------------------
- **Identity.** The identity strength (``Transform.identity``; for resolution any target
  at or above the face's own inter-eye distance) returns the input array itself,
  byte-identical and not copied. Callers may test ``out is image`` to know that nothing
  changed.
- **Determinism.** Given the same image, strength, settings and seed, the output is
  the same bytes. The only random transform (noise) draws from a generator seeded by
  :func:`stable_seed` -- a SHA-256 of (seed, image key, transform, settings, strength),
  never Python's salted ``hash()``.
- **Face-relative scale.** Blur and resolution are stated relative to the face, not the
  photo: the inter-eye distance (IED, distance between the eye centres, the measure of
  ISO/IEC 19794-5 and ICAO 9303 portrait rules) comes from a :class:`FaceGeometry`
  located on the *unperturbed* image by :class:`FaceGeometryLocator`, a fixed dlib
  HOG + 5-point locator independent of the model under test. The occlusion band uses
  the same locator's face box.
- Operations use OpenCV (resize, Gaussian blur) and Pillow (JPEG codec); the versions of
  both are part of :meth:`Transform.settings` (and so of the embedding cache key).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bench.errors import ConfigError, DataError

__all__ = [
    "TRANSFORMS_VERSION",
    "FaceGeometry",
    "FaceGeometryLocator",
    "Transform",
    "Exposure",
    "Gamma",
    "GaussianBlur",
    "Resolution",
    "JpegQuality",
    "GaussianNoise",
    "OcclusionBand",
    "Contrast",
    "stable_seed",
    "srgb_to_linear",
    "linear_to_srgb",
]

#: Bumped whenever a transform's output changes for the same inputs (part of cache keys).
TRANSFORMS_VERSION = 1

#: Inter-eye distance (pixels) of the ISO/IEC 19794-5 "token" frontal image (240 x 320,
#: eyes 60 px apart): the default reference scale for blur strengths.
ISO_TOKEN_IED_PX = 60.0


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def stable_seed(seed: int, image_key: str, transform: str, settings: dict, strength: float) -> int:
    """64-bit seed for one (image, transform, strength), stable across processes and machines.

    Parameters
    ----------
    seed : int
        The run's seed.
    image_key : str
        Identity of the image (fvbench uses its content SHA-256, so that the seed and
        the embedding cache key name the same thing).
    transform : str
        Transform name.
    settings : dict
        The transform's settings (JSON-serialisable).
    strength : float
        The strength.

    Returns
    -------
    int
        First 8 bytes of the SHA-256 of the canonical JSON of the inputs, as an
        unsigned integer in [0, 2**64).
    """
    blob = json.dumps([int(seed), str(image_key), str(transform), settings, repr(float(strength))], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(blob.encode("utf-8")).digest()[:8], "big")


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB electro-optical transfer (IEC 61966-2-1): encoded [0, 1] -> linear light [0, 1]."""
    v = np.asarray(v, dtype=np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`srgb_to_linear`: linear light [0, 1] -> encoded [0, 1]."""
    v = np.asarray(v, dtype=np.float64)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(np.maximum(v, 0.0), 1 / 2.4) - 0.055)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise DataError(f"transform input must be an (H, W, 3) uint8 RGB array, got shape {shape} dtype {dtype}")


def _lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(table[image])


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class FaceGeometry:
    """Where the face is in an unperturbed image.

    Attributes
    ----------
    box : tuple of float
        (left, top, right, bottom) of the detector's face box, pixels.
    eyes : tuple of tuple of float
        ((x, y), (x, y)) eye centres in pixels, the one with the smaller x first; each
        the midpoint of the two eye-corner landmarks of dlib's 5-point model.
    """

    box: tuple[float, float, float, float]
    eyes: tuple[tuple[float, float], tuple[float, float]]

    @property
    def ied(self) -> float:
        """Inter-eye distance in pixels (distance between the eye centres)."""
        (xa, ya), (xb, yb) = self.eyes
        return float(math.hypot(xb - xa, yb - ya))


class FaceGeometryLocator:
    """Fixed locator of :class:`FaceGeometry`: dlib HOG detector + 5-point landmarks.

    It is the same for every model under test, so that "IED 16 px" means the same
    image whichever model is being swept. The detector runs on a copy whose longest
    side is ``detect_max_side`` (``cv2.INTER_AREA``); the landmarks are fitted at full
    resolution on the largest box. Eye centres are the midpoints of landmark pairs
    (0, 1) and (2, 3) of ``shape_predictor_5_face_landmarks`` (two corners per eye;
    point 4 is under the nose).

    Parameters
    ----------
    detect_max_side : int
        Longest side of the detection copy, pixels.
    max_upsample : int
        The detector first runs without upsampling (faces from ~80 px in the
        detection copy) and, when it finds none, with 1, 2, ... passes up to this.
    landmarks_path : str or None
        5-point model file; default: the ``face_recognition_models`` package.

    Raises
    ------
    WeightsError
        If the landmark model file is absent.
    """

    def __init__(self, *, detect_max_side: int = 400, max_upsample: int = 1, landmarks_path: str | None = None) -> None:
        import dlib

        from bench.acquisition.dlib_align import face_recognition_models_dir
        from bench.errors import WeightsError

        path = Path(landmarks_path) if landmarks_path else face_recognition_models_dir() / "shape_predictor_5_face_landmarks.dat"
        if not path.is_file():
            raise WeightsError(f"dlib 5-point landmark model not found: {str(path)!r}")
        if int(detect_max_side) < 32 or not 0 <= int(max_upsample) <= 3:
            raise ConfigError(f"geometry locator: need detect_max_side >= 32 and 0 <= max_upsample <= 3, got {detect_max_side!r}, {max_upsample!r}")
        self.detect_max_side = int(detect_max_side)
        self.max_upsample = int(max_upsample)
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))

    def settings(self) -> dict:
        """Locator settings, recorded in results and in cache keys."""
        return {
            "locator": "dlib HOG frontal detector + shape_predictor_5_face_landmarks",
            "detect_max_side": self.detect_max_side,
            "upsample": f"0, then up to {self.max_upsample} when no face is found",
            "eye_centre": "midpoint of the two eye-corner landmarks",
            "dlib_version": self._dlib.__version__,
        }

    def locate(self, image: np.ndarray) -> FaceGeometry | None:
        """Geometry of the largest frontal face in ``image`` ((H, W, 3) uint8 RGB), or None."""
        _check_image(image)
        h, w = image.shape[:2]
        scale = min(1.0, self.detect_max_side / max(h, w))
        small = image if scale == 1.0 else cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        small = np.ascontiguousarray(small)
        rects = []
        for upsample in range(self.max_upsample + 1):
            rects = self._detector(small, upsample)
            if len(rects):
                break
        if len(rects) == 0:
            return None
        best = max(rects, key=lambda r: (r.width() * r.height(), -r.left(), -r.top()))
        box = (best.left() / scale, best.top() / scale, best.right() / scale, best.bottom() / scale)
        shape = self._predictor(image, self._dlib.rectangle(*(int(round(v)) for v in box)))
        pts = [(float(shape.part(i).x), float(shape.part(i).y)) for i in range(shape.num_parts)]
        a = ((pts[0][0] + pts[1][0]) / 2, (pts[0][1] + pts[1][1]) / 2)
        b = ((pts[2][0] + pts[3][0]) / 2, (pts[2][1] + pts[3][1]) / 2)
        return FaceGeometry(box=tuple(float(v) for v in box), eyes=tuple(sorted((a, b))))


# ----------------------------------------------------------------------------- transforms
class Transform:
    """One acquisition condition with a strength parameter (base class).

    Attributes
    ----------
    name : str
        Short name used in file names and tables.
    unit : str
        What the strength means, with units (axis label of the sweep figure).
    identity : float or None
        The strength that leaves every image unchanged; None when no strength does
        (JPEG re-encoding) or it depends on the image (resolution).
    needs_geometry : bool
        Whether :meth:`apply` needs the unperturbed image's :class:`FaceGeometry`.
    log_x : bool
        Whether the sweep figure draws the strength on a log axis.
    degrades_upward : bool
        True when a larger strength means a worse image (blur, noise); False when a
        smaller one does (JPEG quality, resolution); exposure and gamma degrade both
        ways and say True.
    """

    name = "transform"
    unit = ""
    identity: float | None = 0.0
    needs_geometry = False
    log_x = False
    degrades_upward = True

    def settings(self) -> dict:
        """Everything that defines the output besides image and strength (JSON-able)."""
        return {"transform": self.name, "version": TRANSFORMS_VERSION}

    def check_strength(self, strength: float) -> float:
        """Validate one strength; return it as float.

        Raises
        ------
        ConfigError
            If the strength is not a finite number in the transform's range.
        """
        try:
            s = float(strength)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"transform {self.name!r}: strength {strength!r} is not a number") from err
        if not math.isfinite(s):
            raise ConfigError(f"transform {self.name!r}: strength {strength!r} is not finite")
        return s

    def original_x(self, ieds: np.ndarray | None = None) -> float | None:
        """Where the unperturbed images sit on the strength axis (None: no natural place)."""
        return self.identity

    def apply(self, image: np.ndarray, strength: float, *, geometry: FaceGeometry | None = None, seed: int = 0, image_key: str = "") -> np.ndarray:
        """Degrade ``image`` at ``strength``.

        Parameters
        ----------
        image : numpy.ndarray
            Shape (H, W, 3), uint8, RGB.
        strength : float
            In the units of :attr:`unit`.
        geometry : FaceGeometry or None
            Of the unperturbed image; required when :attr:`needs_geometry`.
        seed : int
            Run seed (random transforms only).
        image_key : str
            Image identity for the random stream (its content SHA-256 in fvbench).

        Returns
        -------
        numpy.ndarray
            Shape (H, W, 3), uint8, RGB; the input object itself when unchanged.

        Raises
        ------
        ConfigError
            Strength out of range.
        DataError
            Wrong image shape/dtype, or missing geometry when needed.
        """
        _check_image(image)
        s = self.check_strength(strength)
        if self.needs_geometry and geometry is None:
            raise DataError(f"transform {self.name!r} needs the face geometry of the unperturbed image; none was given")
        return self._apply(image, s, geometry, seed, image_key)

    def _apply(self, image: np.ndarray, s: float, geometry: FaceGeometry | None, seed: int, image_key: str) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings()})"


class Exposure(Transform):
    """Exposure change in stops: gain ``2**strength`` in linear light, clipped at white.

    The image is decoded from sRGB to linear light (IEC 61966-2-1), multiplied by
    ``2**strength``, clipped to [0, 1] (over-exposure saturates highlights) and
    re-encoded to 8-bit sRGB (under-exposure crushes shadows into few levels), through
    a 256-entry lookup table. ``strength < 0``: under-exposed; ``> 0``: over-exposed;
    0: unchanged.
    """

    name = "exposure"
    unit = "exposure change (stops = log2 gain in linear light; < 0 under-, > 0 over-exposed)"
    identity = 0.0

    def check_strength(self, strength: float) -> float:
        s = super().check_strength(strength)
        if abs(s) > 16:
            raise ConfigError(f"transform 'exposure': strength {s} stops is outside [-16, 16]")
        return s

    def _apply(self, image, s, geometry, seed, image_key):
        if s == 0.0:
            return image
        x = np.arange(256, dtype=np.float64) / 255.0
        out = linear_to_srgb(np.clip(srgb_to_linear(x) * 2.0**s, 0.0, 1.0))
        return _lut(image, np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8))


class Gamma(Transform):
    """Tone-curve change: ``out = 255 (in / 255) ** strength`` (no clipping; black and white fixed).

    ``strength > 1`` darkens mid-tones, ``< 1`` brightens them; 1 is unchanged.
    """

    name = "gamma"
    unit = "gamma exponent (out = in^gamma on [0, 1]; > 1 darker mid-tones, < 1 brighter)"
    identity = 1.0
    log_x = True

    def check_strength(self, strength: float) -> float:
        s = super().check_strength(strength)
        if not 0.05 <= s <= 20:
            raise ConfigError(f"transform 'gamma': exponent {s} is outside [0.05, 20]")
        return s

    def _apply(self, image, s, geometry, seed, image_key):
        if s == 1.0:
            return image
        x = np.arange(256, dtype=np.float64) / 255.0
        return _lut(image, np.clip(np.rint(255.0 * x**s), 0, 255).astype(np.uint8))


class GaussianBlur(Transform):
    """Isotropic Gaussian blur (defocus / motion-free optical blur), ``cv2.GaussianBlur``.

    Parameters
    ----------
    reference_ied_px : float or None
        Scale at which ``strength`` is stated. With a value (default 60 px, the
        ISO/IEC 19794-5 token image), ``strength`` is sigma in pixels *of an image whose
        inter-eye distance is that many pixels*; the sigma applied is
        ``strength * IED / reference_ied_px``, so the blur is the same relative to the
        face at any photo resolution (needs geometry). With None, ``strength`` is sigma
        in pixels of the image as given.
    """

    name = "blur"
    identity = 0.0

    def __init__(self, *, reference_ied_px: float | None = ISO_TOKEN_IED_PX) -> None:
        if reference_ied_px is not None and not float(reference_ied_px) > 0:
            raise ConfigError(f"transform 'blur': reference_ied_px must be > 0 or null, got {reference_ied_px!r}")
        self.reference_ied_px = None if reference_ied_px is None else float(reference_ied_px)
        self.needs_geometry = self.reference_ied_px is not None
        self.unit = (
            f"Gaussian blur sigma (pixels at an inter-eye distance of {self.reference_ied_px:g} px)"
            if self.reference_ied_px is not None
            else "Gaussian blur sigma (pixels of the image)"
        )

    def settings(self) -> dict:
        return {**super().settings(), "reference_ied_px": self.reference_ied_px, "border": "BORDER_REFLECT_101",
                "opencv": cv2.__version__}

    def check_strength(self, strength: float) -> float:
        s = super().check_strength(strength)
        if s < 0:
            raise ConfigError(f"transform 'blur': sigma {s} is negative")
        return s

    def _apply(self, image, s, geometry, seed, image_key):
        if s == 0.0:
            return image
        sigma = s if self.reference_ied_px is None else s * geometry.ied / self.reference_ied_px
        return np.ascontiguousarray(cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101))


class Resolution(Transform):
    """Low resolution: downscale so the inter-eye distance becomes ``strength`` pixels, then upscale back.

    The scale factor is ``strength / IED`` of the unperturbed image (needs geometry);
    a factor >= 1 leaves the image unchanged (upsampling adds no information). The
    downscale uses ``cv2.INTER_AREA`` (anti-aliased), the upscale back to the original
    size ``interpolation`` (default ``cv2.INTER_CUBIC``), so the detector and aligner
    see the original geometry with the detail of a ``strength``-pixel IED face.

    Parameters
    ----------
    interpolation : {"cubic", "linear", "nearest", "lanczos"}
        Upscaling kernel.
    """

    name = "resolution"
    unit = "inter-eye distance after downscaling (pixels)"
    identity = None
    needs_geometry = True
    log_x = True
    degrades_upward = False
    _INTERPOLATIONS = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST, "lanczos": cv2.INTER_LANCZOS4}

    def __init__(self, *, interpolation: str = "cubic") -> None:
        if interpolation not in self._INTERPOLATIONS:
            raise ConfigError(f"transform 'resolution': interpolation {interpolation!r} is not one of {sorted(self._INTERPOLATIONS)}")
        self.interpolation = interpolation

    def settings(self) -> dict:
        return {**super().settings(), "downscale": "INTER_AREA", "upscale": self.interpolation, "opencv": cv2.__version__}

    def check_strength(self, strength: float) -> float:
        s = super().check_strength(strength)
        if s < 2:
            raise ConfigError(f"transform 'resolution': target inter-eye distance {s} px is below 2 px")
        return s

    def original_x(self, ieds: np.ndarray | None = None) -> float | None:
        """Median inter-eye distance of the unperturbed images (where they sit on the axis)."""
        if ieds is None or len(ieds) == 0:
            return None
        return float(np.median(ieds))

    def _apply(self, image, s, geometry, seed, image_key):
        factor = s / geometry.ied
        if factor >= 1.0:
            return image
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(cv2.resize(small, (w, h), interpolation=self._INTERPOLATIONS[self.interpolation]))


class JpegQuality(Transform):
    """JPEG re-encoding at quality ``strength`` (1-100) with Pillow (libjpeg), then decoding.

    Pillow's defaults otherwise (standard IJG quantisation tables scaled by quality,
    4:2:0 chroma subsampling, baseline, no optimisation). No strength is the identity:
    even quality 100 changes pixels; the unperturbed image is the sweep's separate
    "original" point.
    """

    name = "jpeg"
    unit = "JPEG quality (Pillow/libjpeg, 1-100; lower = more compression)"
    identity = None
    degrades_upward = False

    def settings(self) -> dict:
        return {**super().settings(), "codec": "Pillow JPEG, default tables and 4:2:0 subsampling", "pillow": _version("Pillow")}

    def check_strength(self, strength: float) -> float:
        s = super().check_strength(strength)
        if s != round(s) or not 1 <= s <= 100:
            raise ConfigError(f"transform 'jpeg': quality {strength!r} is not an integer in [1, 100]")
        return s

    def _apply(self, image, s, geometry, seed, image_key):
        buf = io.BytesIO()
        Image.fromarray(image, mode="RGB").save(buf, format="JPEG", quality=int(s))
        buf.seek(0)
        with Image.open(buf) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


class GaussianNoise(Transform):
    """Additive white Gaussian noise, sigma in 8-bit levels, per pixel and channel of the image as given.

    ``out = clip(round(in + N(0, sigma^2)), 0, 255)``. The noise is drawn at the
    image's own resolution (like sensor noise), so detection and alignment, which
    downsample large photos, average part of it away; its effect therefore depends
    on the photo's resolution. The generator is ``numpy.random.default_rng`` seeded by
    :func:`stable_seed`.
    """

    name = "noise"
    unit = "Gaussian noise sigma (8-bit levels, per pixel of the original image)"
    identity = 0.0

    def settings(self) -> dict:
        return {**super().settings(), "rng": "numpy PCG64 default_rng(stable_seed).standard_normal float32", "numpy": np.__version__}

    def check_strength(self, strength: float) -> float:
        s = super().check_strength(strength)
        if s < 0:
            raise ConfigError(f"transform 'noise': sigma {s} is negative")
        return s

    def _apply(self, image, s, geometry, seed, image_key):
        if s == 0.0:
            return image
        rng = np.random.default_rng(stable_seed(seed, image_key, self.name, self.settings(), s))
        noisy = rng.standard_normal(size=image.shape, dtype=np.float32)
        noisy *= np.float32(s)
        noisy += image
        return np.ascontiguousarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


class OcclusionBand(Transform):
    """A flat band over the lower face (a synthetic mask): the bottom ``strength`` of the face box.

    The band spans the face box (from the geometry locator on the unperturbed image)
    widened by ``width_margin`` of its width on each side, from the box's bottom edge
    up by ``strength`` x box height, and is filled with one grey level.

    Parameters
    ----------
    fill : int
        Grey level 0-255 of the band.
    width_margin : float
        Extra width on each side, as a fraction of the box width.
    """

    name = "occlusion"
    unit = "occluded fraction of the face-box height, from the bottom"
    identity = 0.0
    needs_geometry = True

    def __init__(self, *, fill: int = 128, width_margin: float = 0.1) -> None:
        if not 0 <= int(fill) <= 255:
            raise ConfigError(f"transform 'occlusion': fill {fill!r} is not a grey level in [0, 255]")
        if not 0 <= float(width_margin) <= 1:
            raise ConfigError(f"transform 'occlusion': width_margin {width_margin!r} is outside [0, 1]")
        self.fill = int(fill)
        self.width_margin = float(width_margin)

    def settings(self) -> dict:
        return {**super().settings(), "fill": self.fill, "width_margin": self.width_margin}

    def check_strength(self, strength: float) -> float:
        s = super().check_strength(strength)
        if not 0 <= s <= 1:
            raise ConfigError(f"transform 'occlusion': fraction {s} is outside [0, 1]")
        return s

    def _apply(self, image, s, geometry, seed, image_key):
        if s == 0.0:
            return image
        left, top, right, bottom = geometry.box
        h, w = image.shape[:2]
        margin = self.width_margin * (right - left)
        x0, x1 = max(0, int(round(left - margin))), min(w, int(round(right + margin)))
        y1 = min(h, int(round(bottom)))
        y0 = max(0, int(round(bottom - s * (bottom - top))))
        if x1 <= x0 or y1 <= y0:
            return image
        out = image.copy()
        out[y0:y1, x0:x1] = self.fill
        return out


class Contrast(Transform):
    """Flattened contrast: the 8-bit range compressed linearly around mid-grey (a print under ambient light).

    ``out = round(127.5 + strength * (in - 127.5))`` per channel, through a 256-entry
    lookup table: ``strength`` is the fraction of the 0-255 range kept (1 = unchanged,
    0.6 maps black to 51 and white to 204). It models the reduced density range of a
    printed portrait re-captured under ambient light (paper and ink reflect at best
    about 1.5-2.0 optical density; veiling glare of the re-capture lowers it further;
    docs/scenarios.md): 0.6 gives a black-to-white ratio of about 18:1 in linear light
    (sRGB, IEC 61966-2-1), an optical density range of about 1.26.
    """

    name = "contrast"
    unit = "fraction of the 8-bit range kept around mid-grey (1 = unchanged; lower = flatter)"
    identity = 1.0
    degrades_upward = False

    def check_strength(self, strength: float) -> float:
        s = super().check_strength(strength)
        if not 0.05 <= s <= 1:
            raise ConfigError(f"transform 'contrast': fraction {s} is outside [0.05, 1]")
        return s

    def _apply(self, image, s, geometry, seed, image_key):
        if s == 1.0:
            return image
        x = np.arange(256, dtype=np.float64)
        return _lut(image, np.clip(np.rint(127.5 + s * (x - 127.5)), 0, 255).astype(np.uint8))
