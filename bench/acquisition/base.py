"""What every acquisition step returns: an aligned face chip or a failure to acquire.

Acquisition (detection, landmarking, alignment) is separate from embedding: its
failures are failures to acquire (FTA; ISO/IEC 19795-1), counted per demographic
group and reported, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Acquisition", "FTA_REASONS"]

#: Closed set of failure-to-acquire reasons. Image-loading reasons come from
#: :class:`bench.errors.ImageLoadError` (``missing_file``, ``not_a_file``,
#: ``unreadable``, ``empty_file``, ``not_an_image``, ``corrupt``, ``too_large``,
#: ``unsupported_mode``); the others
#: are raised by the detector/embedder stages.
FTA_REASONS = (
    "missing_file",
    "not_a_file",
    "unreadable",
    "empty_file",
    "not_an_image",
    "corrupt",
    "too_large",
    "unsupported_mode",
    "no_face_detected",
    "invalid_embedding",
    "simulated",
)


@dataclass(frozen=True)
class Acquisition:
    """Outcome of acquiring one image.

    Attributes
    ----------
    chip : numpy.ndarray or None
        Aligned face crop, shape (H, W, 3), uint8, RGB; ``None`` on failure.
    fta_reason : str or None
        One of :data:`FTA_REASONS` on failure, else ``None``.
    n_faces : int
        Faces the detector found (0 on failure; > 1 means the largest was used).
    box : tuple of float or None
        (left, top, right, bottom) of the face used, in pixels of the original
        (EXIF-rotated) image.
    detail : str
        Human-readable detail of a failure (empty on success).
    """

    chip: np.ndarray | None
    fta_reason: str | None
    n_faces: int = 0
    box: tuple[float, float, float, float] | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when a chip was produced."""
        return self.chip is not None
