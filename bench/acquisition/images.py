"""Robust loading of image files into 8-bit RGB arrays, and content hashing.

This is the single entry point through which fvbench reads image pixels. It turns
every way an image file can be bad (missing, empty, not an image, truncated,
a decompression bomb, a pixel mode with no faithful 8-bit RGB form) into an
:class:`~bench.errors.ImageLoadError` with a machine-readable ``reason`` code, which
the acquisition stage counts as a failure to acquire (ISO/IEC 19795-1 FTA).

Failure reason codes (a closed set, :data:`IMAGE_LOAD_REASONS`)
---------------------------------------------------------------
``"missing_file"``
    The path does not exist (or a parent component is not a directory).
``"not_a_file"``
    The path exists but is not a regular file (a directory, FIFO, socket or
    device). FIFOs are opened non-blocking, so they are refused without hanging.
``"unreadable"``
    The operating system refused to open or read the file (permissions, I/O error).
``"empty_file"``
    The file has zero bytes.
``"not_an_image"``
    The content does not start with the signature of any format in
    :data:`SUPPORTED_FORMATS` and Pillow cannot identify it as one (e.g. a text
    file named ``.jpg``, or a format we deliberately do not parse, such as EPS).
``"corrupt"``
    The file starts with the signature of a supported format but cannot be fully
    decoded: a header Pillow cannot parse, truncated data, a broken compressed
    stream, inconsistent header fields, zero width or height, or malformed
    metadata that the decoder cannot get past.
``"too_large"``
    The header declares more than ``max_pixels`` pixels, or more than Pillow's own
    hard limit ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (``DecompressionBombError``), or
    is an RLE-compressed BMP of more than :data:`RLE_BMP_MAX_PIXELS` pixels (Pillow
    decodes those in pure Python, padding each row end byte by byte, so a
    300-byte file declaring 38 million pixels costs about 5 s of CPU -- found by
    scripts/fuzz_image_loader.py). Checked before any pixel data are decoded.
``"unsupported_mode"``
    The pixels decode but have no faithful 8-bit RGB form under the rules below
    (floating-point ``"F"`` images, 32-bit ``"I"`` images with values outside
    0..65535, or a mode Pillow cannot convert).

Conversion rules (pixel mode -> 8-bit RGB)
------------------------------------------
* Channel order is **R, G, B** (never OpenCV's B, G, R; BGR appears only inside
  OpenCV calls elsewhere in the harness).
* EXIF orientation (tag 0x0112, values 1..8) is applied first, with the same
  transposes as ``PIL.ImageOps.exif_transpose``; the result is the image as a
  viewer displays it. Missing or out-of-range orientation values mean "as stored".
* ``"1"`` (1-bit): 0 -> 0 and 1 -> 255 on all three channels.
* ``"L"`` (greyscale): the grey value is copied to R, G and B.
* ``"I;16"``, ``"I;16L"``, ``"I;16B"``, ``"I;16N"`` (16-bit greyscale, full range
  0..65535): scaled to 8 bits by ``value >> 8`` (the high byte; exact for 8-bit data
  stored as ``v * 257``, monotone, and independent of the image content -- a
  per-image min-max stretch would change the appearance of dark or flat images).
  ``"I"`` (32-bit integer) follows the same rule when all values lie in 0..65535,
  which is how 16-bit PNG/TIFF greyscale reaches Pillow; otherwise the image is
  refused as ``"unsupported_mode"`` rather than clipped.
* Alpha (``"LA"``, ``"La"``, ``"PA"``, ``"RGBA"``, ``"RGBa"``, and ``"1"``/``"L"``/
  ``"P"``/``"RGB"``/16-bit images with a ``transparency`` key, e.g. a palette PNG
  with a tRNS chunk) is **composited onto white**:
  ``out = (c * a + 255 * (255 - a) + 127) // 255`` per channel (exact integer
  rounding). Transparent pixels therefore become white, whatever colour the file
  happens to store under them; fully opaque images are unchanged.
* ``"P"`` (palette) is expanded through its palette; ``"CMYK"``, ``"YCbCr"``,
  ``"LAB"``, ``"HSV"`` and ``"RGBX"`` use Pillow's ``convert("RGB")``; for CMYK that is
  the profile-free ``R = round((255 - C) * (255 - K) / 255)`` (likewise G from M,
  B from Y). Embedded ICC profiles are ignored for every mode.
* Multi-frame files (GIF, TIFF, MPO, animated WebP/PNG): the first frame only.

Decompression-bomb policy: the pixel count ``width * height`` from the header is
compared with ``max_pixels`` after :func:`PIL.Image.open` (which reads only the
header) and before :meth:`PIL.Image.Image.load` (which decodes). Pillow's global
``Image.MAX_IMAGE_PIXELS`` and ``ImageFile.LOAD_TRUNCATED_IMAGES`` are never
modified; Pillow's ``DecompressionBombWarning`` raised while opening is caught
locally (``warnings.catch_warnings``) and never reaches the caller. Note that
``warnings.catch_warnings`` is not thread-safe before Python 3.14: warnings emitted
by *other* threads while an image is being opened may be captured here.
Other Pillow warnings met while decoding (e.g. "Possibly corrupt EXIF data") are
logged at WARNING level with the file name instead of being re-raised as warnings.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from bench.errors import ConfigError, DataError, ImageLoadError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_LOAD_REASONS",
    "RLE_BMP_MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "as_rgb_uint8",
    "image_sha256",
    "load_rgb",
    "reset_conversion_notes",
]

logger = logging.getLogger(__name__)

#: Default upper bound on ``width * height`` accepted by :func:`load_rgb`.
DEFAULT_MAX_PIXELS: Final[int] = 50_000_000

#: The closed set of ``ImageLoadError.reason`` codes raised by this module.
IMAGE_LOAD_REASONS: Final[frozenset[str]] = frozenset(
    {
        "missing_file",
        "not_a_file",
        "unreadable",
        "empty_file",
        "not_an_image",
        "corrupt",
        "too_large",
        "unsupported_mode",
    }
)

#: Pillow format names that :func:`load_rgb` will parse. Other Pillow plugins
#: (EPS, which runs Ghostscript, PSD, FITS, ICNS, ...) are never tried: a smaller
#: parser surface for files of unknown origin. "JPEG" includes multi-picture
#: camera JPEGs (Pillow's MPO, opened through the JPEG plugin); "PPM" covers
#: PBM/PGM/PPM/PNM.
SUPPORTED_FORMATS: Final[tuple[str, ...]] = (
    "JPEG",
    "PNG",
    "GIF",
    "BMP",
    "TIFF",
    "WEBP",
    "PPM",
)

# Leading bytes that identify each supported format (the "magic numbers" of the
# PNG spec 5.2, JPEG SOI + marker, GIF87a/89a, BMP "BM", TIFF 6.0 and BigTIFF
# byte-order headers, RIFF/WEBP, Netpbm P1..P6). Used only to tell "corrupt"
# (right signature, bad content) from "not_an_image" when Pillow gives up.
_SIGNATURES: Final[tuple[tuple[int, bytes, str], ...]] = (
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"II+\x00", "TIFF"),
    (0, b"MM\x00+", "TIFF"),
    (8, b"WEBP", "WEBP"),
    *((0, b"P" + bytes([c]), "PPM") for c in b"123456"),
)

#: Pixel limit for RLE-compressed BMPs (BI_RLE8/BI_RLE4), which Pillow decodes in
#: pure Python at roughly 0.1 us per pixel even from a few hundred bytes; this bounds
#: the cost of one such file to about 1 s. Real RLE BMPs are small palette images.
RLE_BMP_MAX_PIXELS: Final[int] = 8_000_000

_HASH_CHUNK_BYTES: Final[int] = 1 << 20

# Exceptions Pillow (and the codecs beneath it) raise for undecodable content.
# Pillow documents OSError/ValueError/SyntaxError for broken files; IndexError,
# TypeError and struct.error are what Image.open itself treats as "malformed file"
# while identifying, and plugins raise them from load() too (scripts/
# fuzz_image_loader.py found a TIFF whose StripOffsets of RATIONAL type makes
# ImageFile.load raise TypeError). Used only in narrow try-blocks around Pillow
# calls, so that bugs in this module are not masked.
_DECODE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    TypeError,
)

# Pixels per block when compositing alpha, to bound temporary memory (~24 MB).
_COMPOSITE_BLOCK_PIXELS: Final[int] = 1 << 22

# EXIF Orientation tag (TIFF 6.0 / EXIF 2.32, tag 0x0112) -> transpose that displays
# the stored image upright. Same table as PIL.ImageOps.exif_transpose.
_ORIENTATION_TAG: Final[int] = 0x0112
_ORIENTATION_TRANSPOSE: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_SIXTEEN_BIT_MODES: Final[frozenset[str]] = frozenset(
    {"I;16", "I;16L", "I;16B", "I;16N", "I"}
)
_ALPHA_MODES: Final[frozenset[str]] = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_CONVERTIBLE_MODES: Final[frozenset[str]] = frozenset(
    {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
)

_O_NONBLOCK: Final[int] = getattr(os, "O_NONBLOCK", 0)
_O_BINARY: Final[int] = getattr(os, "O_BINARY", 0)


def load_rgb(
    path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> NDArray[np.uint8]:
    """Decode an image file into an 8-bit RGB array, or raise ``ImageLoadError``.

    Parameters
    ----------
    path : str or os.PathLike
        The image file. Formats: :data:`SUPPORTED_FORMATS` (JPEG/MPO, PNG, GIF, BMP,
        TIFF, WebP, PBM/PGM/PPM), recognised by content, not by extension.
    max_pixels : int, keyword-only
        Largest accepted ``width * height`` (default 50 000 000), checked from the
        header before any pixel data are decoded. Pillow's own hard limit,
        ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (about 179 million), still applies above it.

    Returns
    -------
    numpy.ndarray
        Shape ``(H, W, 3)``, dtype ``uint8``, C-contiguous, writeable, channel order
        **R, G, B**, values 0..255. ``H`` and ``W`` are the displayed height and width
        (after the EXIF orientation is applied). Conversion rules per pixel mode
        (alpha composited on white, 16-bit scaled by ``>> 8``, ...) are listed in
        the module docstring.

    Raises
    ------
    bench.errors.ImageLoadError
        With ``reason`` in :data:`IMAGE_LOAD_REASONS`: ``"missing_file"``,
        ``"not_a_file"``, ``"unreadable"``, ``"empty_file"``, ``"not_an_image"``,
        ``"corrupt"`` (truncated or undecodable; truncated files are never silently
        padded), ``"too_large"`` or ``"unsupported_mode"``.
    bench.errors.ConfigError
        If ``max_pixels`` is not a positive integer.

    Notes
    -----
    Global Pillow settings (``Image.MAX_IMAGE_PIXELS``,
    ``ImageFile.LOAD_TRUNCATED_IMAGES``) are read, never changed.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise ConfigError(f"max_pixels must be a positive int, got {max_pixels!r}")
    if max_pixels <= 0:
        raise ConfigError(f"max_pixels must be a positive int, got {max_pixels!r}")
    path_str = os.fspath(path)
    with _open_regular_file(path_str) as (fileobj, n_bytes):
        if n_bytes == 0:
            raise ImageLoadError(path_str, "empty_file", "the file has 0 bytes")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                image = _decode(fileobj, path_str, int(max_pixels))
                return _to_rgb_array(image, path_str)
            finally:
                _log_pillow_warnings(caught, path_str)


def image_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks.

    Used for embedding-cache keys and manifest hashes: it identifies the exact
    encoded file, so re-encoding an image (even losslessly) changes the hash.
    The content is not validated as an image (an empty file hashes fine).

    Parameters
    ----------
    path : str or os.PathLike
        The file to hash.

    Returns
    -------
    str
        64 lower-case hexadecimal characters (FIPS 180-4 SHA-256).

    Raises
    ------
    bench.errors.ImageLoadError
        ``"missing_file"``, ``"not_a_file"`` or ``"unreadable"``.
    """
    path_str = os.fspath(path)
    digest = hashlib.sha256()
    with _open_regular_file(path_str) as (fileobj, _n_bytes):
        try:
            while chunk := fileobj.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
        except OSError as err:
            raise ImageLoadError(path_str, "unreadable", str(err)) from err
    return digest.hexdigest()


@contextmanager
def _open_regular_file(path: str) -> Iterator[tuple[IO[bytes], int]]:
    """Open ``path`` for binary reading if, and only if, it is a regular file.

    The check is made with ``fstat`` on the opened descriptor (no race between a
    check and the open), and the open is non-blocking so a FIFO cannot hang us.
    Yields the file object and its size in bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_BINARY)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise ImageLoadError(path, "missing_file", "no such file") from err
    except IsADirectoryError as err:
        raise ImageLoadError(path, "not_a_file", "the path is a directory") from err
    except OSError as err:
        if os.path.isdir(path):  # Windows reports PermissionError for directories
            raise ImageLoadError(path, "not_a_file", "the path is a directory") from err
        raise ImageLoadError(path, "unreadable", str(err)) from err
    try:
        info = os.fstat(fd)
    except OSError as err:
        os.close(fd)
        raise ImageLoadError(path, "unreadable", str(err)) from err
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ImageLoadError(path, "not_a_file", f"the path is {kind}")
    with os.fdopen(fd, "rb") as fileobj:
        yield fileobj, info.st_size


def _decode(fileobj: IO[bytes], path: str, max_pixels: int) -> Image.Image:
    """Identify, size-check, fully decode and orient one image (first frame)."""
    try:
        image = Image.open(fileobj, formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as err:
        raise ImageLoadError(path, "too_large", str(err)) from err
    except UnidentifiedImageError as err:
        sniffed = _sniff_format(fileobj)
        if sniffed is not None:
            raise ImageLoadError(
                path, "corrupt", f"{sniffed} signature but the header cannot be parsed"
            ) from err
        raise ImageLoadError(
            path,
            "not_an_image",
            f"content is not recognised as any of {', '.join(SUPPORTED_FORMATS)}",
        ) from err
    except _DECODE_ERRORS as err:
        raise ImageLoadError(path, "corrupt", f"bad header: {err!r}") from err

    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageLoadError(path, "corrupt", f"header declares size {width}x{height}")
    if width * height > max_pixels:
        raise ImageLoadError(
            path,
            "too_large",
            f"header declares {width}x{height} = {width * height} pixels, "
            f"more than max_pixels={max_pixels}",
        )
    if width * height > RLE_BMP_MAX_PIXELS and any(
        tile[0] == "bmp_rle" for tile in image.tile  # tile[0]: the codec name
    ):
        raise ImageLoadError(
            path,
            "too_large",
            f"RLE-compressed BMP of {width}x{height} pixels, more than "
            f"RLE_BMP_MAX_PIXELS={RLE_BMP_MAX_PIXELS} (slow pure-Python decoder)",
        )
    try:
        image.load()  # full decode; raises on truncation (LOAD_TRUNCATED_IMAGES unset)
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS as err:
        raise ImageLoadError(path, "corrupt", f"cannot decode: {err!r}") from err
    transpose = (
        _ORIENTATION_TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    )
    if transpose is None and orientation != 1:
        logger.warning("%s: ignoring invalid EXIF orientation %r", path, orientation)
    if transpose is not None:
        image = image.transpose(transpose)
    return image


def _sniff_format(fileobj: IO[bytes]) -> str | None:
    """Name of the supported format whose signature the file starts with, or None."""
    try:
        fileobj.seek(0)
        head = fileobj.read(16)
    except OSError:
        return None
    for offset, magic, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            if name == "WEBP" and not head.startswith(b"RIFF"):
                continue
            return name
    return None


def _to_rgb_array(image: Image.Image, path: str) -> NDArray[np.uint8]:
    """Apply the module's conversion rules; returns (H, W, 3) uint8, C-contiguous."""
    mode = image.mode
    transparency = image.info.get("transparency")
    if mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_rgb(image, path, transparency)
    try:
        if mode in _ALPHA_MODES or (
            transparency is not None and mode in {"1", "L", "P", "RGB"}
        ):
            if mode == "La":  # premultiplied; Pillow converts it only to "LA"
                image = image.convert("LA")
            rgba = np.array(image.convert("RGBA"), dtype=np.uint8)
            _note_once("alpha", f"{path}: transparency composited onto white (mode {mode}); later images are not logged")
            return _composite_on_white(rgba[..., :3], rgba[..., 3])
        if mode in ("1", "L"):
            _note_once("greyscale", f"{path}: greyscale image copied to R, G and B; later images are not logged")
        if mode in _CONVERTIBLE_MODES:
            return np.array(image.convert("RGB"), dtype=np.uint8, order="C")
    except _DECODE_ERRORS as err:
        raise ImageLoadError(
            path, "unsupported_mode", f"cannot convert mode {mode!r} to RGB: {err!r}"
        ) from err
    raise ImageLoadError(
        path, "unsupported_mode", f"pixel mode {mode!r} has no faithful 8-bit RGB form"
    )


def _sixteen_bit_to_rgb(
    image: Image.Image, path: str, transparency: object
) -> NDArray[np.uint8]:
    """16-bit greyscale (or "I" holding 0..65535) -> RGB by ``>> 8``; tRNS -> alpha."""
    values = np.asarray(image)  # uint16 (either byte order) or int32 for mode "I"
    if values.ndim != 2:
        raise ImageLoadError(path, "corrupt", f"mode {image.mode} decoded to {values.shape}")
    if values.dtype.kind == "i" and (values.min() < 0 or values.max() > 0xFFFF):
        raise ImageLoadError(
            path,
            "unsupported_mode",
            f"mode {image.mode!r} values span {values.min()}..{values.max()}, "
            "outside the 16-bit range 0..65535",
        )
    grey = (values >> 8).astype(np.uint8)
    _note_once("greyscale", f"{path}: 16-bit greyscale image scaled by >> 8 and copied to R, G and B; later images are not logged")
    rgb = np.repeat(grey[:, :, np.newaxis], 3, axis=2)
    if isinstance(transparency, int) and not isinstance(transparency, bool):
        alpha = np.where(values == transparency, 0, 255).astype(np.uint8)
        return _composite_on_white(rgb, alpha)
    return np.ascontiguousarray(rgb)


def _composite_on_white(
    rgb: NDArray[np.uint8], alpha: NDArray[np.uint8]
) -> NDArray[np.uint8]:
    """``(c * a + 255 * (255 - a) + 127) // 255`` per channel; (H, W, 3) uint8.

    The sum is at most 255 * 255 + 127 = 65152, so it fits ``uint16``, and for
    every ``0 <= x <= 65535``, ``x // 255 == (x + (x >> 8) + 1) >> 8`` (checked
    exhaustively in tests/test_images.py), which avoids a slow integer division.
    Processed in row blocks so temporaries stay small for large images.
    """
    if alpha.size == 0 or int(alpha.min()) == 255:
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = alpha.shape
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, _COMPOSITE_BLOCK_PIXELS // max(1, width))
    for top in range(0, height, rows):
        a = alpha[top : top + rows, :, np.newaxis].astype(np.uint16)
        x = rgb[top : top + rows].astype(np.uint16) * a
        x += 255 * (255 - a) + 127
        out[top : top + rows] = (x + (x >> 8) + 1) >> 8
    return out


def _log_pillow_warnings(caught: list[warnings.WarningMessage], path: str) -> None:
    """Route warnings captured during decoding to the log (bomb warnings are moot)."""
    for record in caught:
        if issubclass(record.category, Image.DecompressionBombWarning):
            # Only possible when max_pixels > Image.MAX_IMAGE_PIXELS: the caller
            # asked for large images, or the file was refused as too_large anyway.
            logger.debug("%s: %s", path, record.message)
        else:
            logger.warning("%s: Pillow warning while decoding: %s", path, record.message)


# ----------------------------------------------------------------------------- arrays from callers
_NOTED: set[str] = set()


def _note_once(kind: str, message: str) -> None:
    """Log a conversion the first time it happens in this process (one line per kind per run)."""
    if kind not in _NOTED:
        _NOTED.add(kind)
        logger.info(message)


def reset_conversion_notes() -> None:
    """Forget which conversions were logged (the next one of each kind is logged again)."""
    _NOTED.clear()


def as_rgb_uint8(image: object, *, name: str = "image") -> NDArray[np.uint8]:
    """The one input normaliser of the acquisition functions: any array a notebook user
    passes becomes (H, W, 3) uint8 RGB, C-contiguous, or a clear error.

    Every aligner's ``acquire(image)`` calls this, so the rules are the same for every
    backend (dlib, MTCNN, oracle landmarks) and the same as for files (:func:`load_rgb`).

    Conversions
    -----------
    * a view with negative or non-unit strides (``img[::-1]``, ``img[..., ::-1]``) or a
      read-only array: copied to a C-contiguous array;
    * 2-D ``(H, W)`` or ``(H, W, 1)`` greyscale: copied to R, G and B (logged once per run);
    * ``(H, W, 4)`` RGBA: composited onto white as for files, ``(c*a + 255*(255-a) + 127) // 255``
      (logged once per run);
    * float in ``[0, 1]`` (scikit-image/matplotlib convention): ``round(x * 255)``;
    * uint16: ``x >> 8`` (the file loader's 16-bit rule); other integer types and bool:
      used as is when every value lies in 0..255.

    Channel order is assumed RGB (fvbench's convention); a BGR array from ``cv2.imread``
    must be converted by the caller (``cv2.cvtColor(img, cv2.COLOR_BGR2RGB)``): the
    two cannot be told apart from the values.

    Parameters
    ----------
    image : array-like or PIL.Image.Image
    name : str
        Used in messages.

    Returns
    -------
    numpy.ndarray
        Shape (H, W, 3), uint8, C-contiguous, values 0..255.

    Raises
    ------
    bench.errors.DataError
        Not an array of numbers; wrong number of dimensions or channels; empty; float
        values outside [0, 1] or not finite; integers outside 0..255 (uint16 excepted).
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGBA") if "A" in image.mode or "transparency" in image.info else image.convert("RGB"))
    try:
        arr = np.asarray(image)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: expected an (H, W, 3) RGB array, got {type(image).__name__} ({err})") from err
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DataError(f"{name}: expected an array of numbers (uint8 RGB), got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise DataError(f"{name}: expected shape (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) greyscale, got {arr.shape}")
    if arr.size == 0 or min(arr.shape[:2]) == 0:
        raise DataError(f"{name}: empty image of shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise DataError(f"{name}: float image holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{name}: float image values span {lo:g}..{hi:g}; expected [0, 1] "
                "(or pass uint8 0..255, e.g. image.astype(np.uint8) for a float array holding 0..255)"
            )
        arr = np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    elif arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype != np.uint8:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{name}: {arr.dtype} image values span {lo}..{hi}; expected 0..255 (uint8 RGB)")
        arr = arr.astype(np.uint8) * (255 if arr.dtype == np.bool_ else 1)
    if arr.ndim == 2:
        _note_once("greyscale", f"{name}: greyscale array copied to R, G and B; later images are not logged")
        return np.ascontiguousarray(np.repeat(arr[:, :, np.newaxis], 3, axis=2))
    if arr.shape[2] == 4:
        _note_once("alpha", f"{name}: RGBA array composited onto white; later images are not logged")
        return _composite_on_white(np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3]))
    if not arr.flags.c_contiguous or not arr.flags.writeable:
        arr = np.array(arr, dtype=np.uint8, order="C")
    return arr
