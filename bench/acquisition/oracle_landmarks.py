"""Oracle alignment from annotated eye centres (WebMorph ``.tem`` templates).

Purpose: separate detector failures from recognition differentials. With
``OracleEyesAligner`` every annotated image is aligned from its hand-placed pupil
centres, so it cannot fail to acquire and its chip does not depend on the
detector; the difference between a run with this aligner and one with
:class:`~bench.acquisition.mtcnn_align.MtcnnArcFaceAligner` is the detector's
contribution.

Annotations in FRL London (DeBruine & Jones 2017, v5; dataset README): every
``neutral_front/NNN_03.jpg`` has ``NNN_03.tem`` beside it (all 102 neutral images);
``smiling_front/NNN_08.jpg`` has none. A ``.tem`` file is: first line the point
count (189), then one ``x<TAB>y`` line per point in image pixels; points 0 and 1
are the pupil centres; lines after the points (contour definitions) are ignored.

Images without a ``.tem`` file fall back to the MTCNN 5-point alignment (in FRL
London: the smiling images), so mated neutral-smiling comparisons stay possible;
only the fallback images can fail to acquire. Alignment from two points is the
exact similarity transform that puts the image-left pupil on the ArcFace
template's image-left eye and the image-right pupil on its image-right eye
(:data:`~bench.acquisition.mtcnn_align.ARCFACE_TEMPLATE_112` rows 0 and 1).
FaceNet's box crop has no landmark-based equivalent, so this option serves the
template-aligned (ArcFace-family) models.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bench.acquisition.base import Acquisition
from bench.acquisition.images import DEFAULT_MAX_PIXELS, load_rgb
from bench.acquisition.mtcnn_align import MtcnnArcFaceAligner, arcface_template, warp_to_template
from bench.errors import DataError, ImageLoadError

__all__ = ["OracleEyesAligner", "read_tem", "tem_pupils"]

log = logging.getLogger(__name__)


def read_tem(path: str | Path) -> np.ndarray:
    """Points of a WebMorph/Psychomorph ``.tem`` template.

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    numpy.ndarray
        Shape (n_points, 2), float64, (x, y) image pixels.

    Raises
    ------
    DataError
        Missing file, bad point count, or a point line that is not two finite numbers
        (file and line number named).
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise DataError(f"cannot read template {str(p)!r}: {err}") from err
    try:
        n = int(lines[0].strip())
    except (IndexError, ValueError):
        raise DataError(f"template {str(p)!r}: line 1 must be the point count, got {lines[:1]!r}") from None
    if n < 2 or len(lines) < n + 1:
        raise DataError(f"template {str(p)!r}: declares {n} points but has {len(lines) - 1} further lines")
    pts = np.empty((n, 2), dtype=np.float64)
    for i in range(n):
        fields = lines[i + 1].split()
        try:
            pts[i] = [float(fields[0]), float(fields[1])]
        except (IndexError, ValueError):
            raise DataError(f"template {str(p)!r} line {i + 2}: expected 'x<TAB>y', got {lines[i + 1]!r}") from None
        if not np.all(np.isfinite(pts[i])):
            raise DataError(f"template {str(p)!r} line {i + 2}: non-finite coordinate {lines[i + 1]!r}")
    return pts


def tem_pupils(path: str | Path) -> np.ndarray:
    """The two pupil centres of a ``.tem`` file (points 0 and 1), image-left first.

    Returns
    -------
    numpy.ndarray
        Shape (2, 2), float64, (x, y) pixels; row 0 has the smaller x.

    Raises
    ------
    DataError
        As :func:`read_tem`, or if the two points coincide.
    """
    eyes = read_tem(path)[:2]
    if np.allclose(eyes[0], eyes[1]):
        raise DataError(f"template {str(path)!r}: pupil points 0 and 1 coincide at {eyes[0].tolist()}")
    return eyes[np.argsort(eyes[:, 0], kind="stable")]


class OracleEyesAligner:
    """Align on annotated pupils where a ``.tem`` file exists, else on MTCNN landmarks.

    Takes the same parameters as
    :class:`~bench.acquisition.mtcnn_align.MtcnnArcFaceAligner` (used for the
    fallback), so a config can swap one ``_target_`` for the other.

    Parameters
    ----------
    chip_size : int
        Output side (multiple of 112 or 128).
    max_pixels : int
        Images with more pixels are refused before decoding (FTA ``too_large``).
    **mtcnn_kwargs
        ``min_face_size``, ``thresholds``, ``factor``, ``detect_max_side``, ``device``,
        ``cpu_threads`` for the fallback aligner.
    """

    def __init__(self, *, chip_size: int = 112, max_pixels: int = DEFAULT_MAX_PIXELS, **mtcnn_kwargs: object) -> None:
        self.chip_size = int(chip_size)
        self.template = arcface_template(self.chip_size)
        self.max_pixels = int(max_pixels)
        self.fallback = MtcnnArcFaceAligner(chip_size=self.chip_size, max_pixels=self.max_pixels, **mtcnn_kwargs)
        self.weights_sha256 = dict(self.fallback.weights_sha256)

    def settings(self) -> dict:
        """Alignment settings, recorded in every result file."""
        return {
            "oracle": (
                "pupil centres = points 0, 1 of <image>.tem (WebMorph); exact 2-point similarity onto "
                f"ArcFace template eyes, cv2.warpAffine INTER_LINEAR, {self.chip_size}x{self.chip_size}"
            ),
            "fallback_without_tem": self.fallback.settings(),
        }

    def acquire_file(self, path: str | Path) -> Acquisition:
        """Acquire ``path`` from its ``.tem`` pupils, or through the MTCNN fallback.

        Never raises for a bad image (FTA with the loader's reason); a malformed
        ``.tem`` file raises :class:`~bench.errors.DataError`.
        """
        tem = Path(path).with_suffix(".tem")
        if not tem.is_file():
            return self.fallback.acquire_file(path)
        eyes = tem_pupils(tem)
        try:
            image = load_rgb(path, max_pixels=self.max_pixels)
        except ImageLoadError as err:
            return Acquisition(chip=None, fta_reason=err.reason, detail=str(err))
        chip = warp_to_template(image, eyes, self.template[:2], self.chip_size)
        return Acquisition(chip=chip, fta_reason=None, n_faces=1, box=None)
