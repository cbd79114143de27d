"""Tests for bench.acquisition.images: load_rgb and image_sha256.

Every input is generated here into ``tmp_path`` (no image is committed). Expected
pixel values follow the conversion rules documented in bench/acquisition/images.py
(alpha composited on white, 16-bit scaled by >> 8, EXIF orientation per the
EXIF 2.32 / TIFF 6.0 Orientation tag 0x0112 definitions).
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from bench.acquisition.images import (
    IMAGE_LOAD_REASONS,
    SUPPORTED_FORMATS,
    image_sha256,
    load_rgb,
)
from bench.errors import ConfigError, ImageLoadError

LONDON_ROOT = Path(__file__).resolve().parents[2] / "shared/datasets/frl_london"

RED = (255, 0, 0)
GREY = (128, 128, 128)


# ----------------------------------------------------------------------------- helpers
def _assert_rgb(arr: np.ndarray, height: int, width: int) -> None:
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint8
    assert arr.shape == (height, width, 3)
    assert arr.flags["C_CONTIGUOUS"]
    assert arr.flags["WRITEABLE"]


def _reason(path: Path, **kwargs: int) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_rgb(path, **kwargs)
    assert info.value.reason in IMAGE_LOAD_REASONS
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    return info.value.reason


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny 8-bit greyscale PNG whose IHDR declares width x height (PNG spec 11.2.2)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


def _noise_jpeg(path: Path, size: tuple[int, int] = (96, 96)) -> Path:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path, "JPEG", quality=90)
    return path


# ------------------------------------------------------------------ lossless formats
@pytest.mark.parametrize(
    ("fmt", "suffix", "save_kwargs"),
    [
        ("PNG", ".png", {}),
        ("BMP", ".bmp", {}),
        ("TIFF", ".tif", {"compression": "tiff_lzw"}),
        ("GIF", ".gif", {}),
        ("WEBP", ".webp", {"lossless": True}),
        ("PPM", ".ppm", {}),
    ],
)
def test_load_rgb_lossless_formats_roundtrip_exactly(
    tmp_path: Path, fmt: str, suffix: str, save_kwargs: dict
) -> None:
    pixels = np.zeros((5, 7, 3), dtype=np.uint8)
    pixels[0, 0] = RED
    pixels[4, 6] = (10, 200, 30)
    pixels[2, 3] = GREY
    path = tmp_path / f"img{suffix}"
    Image.fromarray(pixels, "RGB").save(path, fmt, **save_kwargs)
    arr = load_rgb(path)
    _assert_rgb(arr, 5, 7)
    np.testing.assert_array_equal(arr, pixels)


def test_load_rgb_detects_format_by_content_not_extension(tmp_path: Path) -> None:
    path = tmp_path / "really_a_png.jpg"
    Image.new("RGB", (3, 2), RED).save(path, "PNG")
    arr = load_rgb(path)
    _assert_rgb(arr, 2, 3)
    assert (arr == RED).all()


def test_supported_formats_are_pillow_format_names() -> None:
    Image.init()
    assert set(SUPPORTED_FORMATS) <= set(Image.OPEN)
    assert "EPS" not in SUPPORTED_FORMATS  # would run Ghostscript on untrusted files


# --------------------------------------------------------------------- pixel modes
def test_load_rgb_greyscale_copies_grey_to_three_channels(tmp_path: Path) -> None:
    grey = np.array([[0, 1, 127], [128, 254, 255]], dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(grey, "L").save(path)
    arr = load_rgb(path)
    _assert_rgb(arr, 2, 3)
    for channel in range(3):
        np.testing.assert_array_equal(arr[:, :, channel], grey)


def test_load_rgb_one_bit_maps_to_0_and_255(tmp_path: Path) -> None:
    img = Image.new("1", (4, 2), 0)
    img.putpixel((1, 0), 1)
    img.putpixel((3, 1), 1)
    path = tmp_path / "bits.png"
    img.save(path)
    assert Image.open(path).mode == "1"
    arr = load_rgb(path)
    _assert_rgb(arr, 2, 4)
    expected = np.zeros((2, 4), dtype=np.uint8)
    expected[0, 1] = expected[1, 3] = 255
    for channel in range(3):
        np.testing.assert_array_equal(arr[:, :, channel], expected)


def test_load_rgb_16bit_png_is_scaled_by_high_byte(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 0x1234], [0x7FFF, 0x8000, 0xFF00, 0xFFFF]], np.uint16)
    path = tmp_path / "sixteen.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode in {"I;16", "I"}
    arr = load_rgb(path)
    _assert_rgb(arr, 2, 4)
    # >> 8: the high byte. Pillow's own convert("L") would clip 256 to 255 instead.
    expected = np.array([[0, 0, 1, 0x12], [0x7F, 0x80, 0xFF, 0xFF]], dtype=np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(arr[:, :, channel], expected)


def test_load_rgb_32bit_int_within_16bit_range_uses_same_rule(tmp_path: Path) -> None:
    values = np.array([[0, 256, 0xFFFF]], dtype=np.int32)
    path = tmp_path / "int32.tif"
    Image.fromarray(values, "I").save(path)
    assert Image.open(path).mode == "I"
    arr = load_rgb(path)
    _assert_rgb(arr, 1, 3)
    np.testing.assert_array_equal(arr[0, :, 0], [0, 1, 255])


def test_load_rgb_refuses_32bit_int_outside_16bit_range(tmp_path: Path) -> None:
    path = tmp_path / "int32_negative.tif"
    Image.fromarray(np.array([[-5, 70000]], dtype=np.int32), "I").save(path)
    assert _reason(path) == "unsupported_mode"


def test_load_rgb_refuses_float_images(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5]], dtype=np.float32), "F").save(path)
    assert _reason(path) == "unsupported_mode"


def test_load_rgb_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.array(
        [[[10, 20, 30, 0], [10, 20, 30, 255], [200, 100, 0, 128]]], dtype=np.uint8
    )
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    arr = load_rgb(path)
    _assert_rgb(arr, 1, 3)
    # (c*a + 255*(255-a) + 127) // 255 by hand: 200*128+255*127 = 58 |-> 227.9 -> 227.
    np.testing.assert_array_equal(
        arr[0], [[255, 255, 255], [10, 20, 30], [227, 177, 127]]
    )


def test_load_rgb_grey_alpha_is_composited_on_white(tmp_path: Path) -> None:
    la = np.array([[[100, 0], [100, 255], [0, 128]]], dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    arr = load_rgb(path)
    _assert_rgb(arr, 1, 3)
    # 0*128 + 255*127 + 127 = 32512 -> // 255 = 127
    np.testing.assert_array_equal(arr[0, :, 0], [255, 100, 127])
    assert (arr[0, :, 0:1] == arr[0, :, :]).all()


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_load_rgb_palette_with_transparency(tmp_path: Path, fmt: str) -> None:
    img = Image.new("P", (4, 1), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    img.putpixel((2, 0), 1)
    img.putpixel((3, 0), 1)
    path = tmp_path / f"palette.{fmt.lower()}"
    img.save(path, fmt, transparency=0)  # palette index 0 (red) is transparent
    reopened = Image.open(path)
    assert reopened.mode == "P" and "transparency" in reopened.info
    arr = load_rgb(path)
    _assert_rgb(arr, 1, 4)
    np.testing.assert_array_equal(
        arr[0], [[255, 255, 255], [255, 255, 255], [0, 0, 255], [0, 0, 255]]
    )


def test_load_rgb_palette_without_transparency_expands_palette(tmp_path: Path) -> None:
    img = Image.new("P", (2, 1), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    img.putpixel((1, 0), 1)
    path = tmp_path / "palette.png"
    img.save(path)
    np.testing.assert_array_equal(load_rgb(path)[0], [[255, 0, 0], [0, 0, 255]])


def test_load_rgb_cmyk_jpeg(tmp_path: Path) -> None:
    img = Image.new("CMYK", (32, 16), (255, 0, 0, 0))  # left half pure cyan
    img.paste((0, 0, 0, 255), (16, 0, 32, 16))  # right half pure black (K)
    path = tmp_path / "cmyk.jpg"
    img.save(path, "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    arr = load_rgb(path)
    _assert_rgb(arr, 16, 32)
    # R = (255-C)(255-K)/255: cyan -> (0, 255, 255); K=255 -> (0, 0, 0). JPEG tolerance.
    np.testing.assert_allclose(arr[8, 4], [0, 255, 255], atol=8)
    np.testing.assert_allclose(arr[8, 28], [0, 0, 0], atol=8)


# --------------------------------------------------------------- EXIF orientation
@pytest.mark.parametrize(
    ("orientation", "marker_rc"),
    [
        (1, (8, 8)),  # as stored: marker top-left
        (6, (8, 24)),  # "0th row = visual right side": rotate 90 deg CW -> top-right
        (8, (56, 8)),  # "0th row = visual left side": rotate 90 deg CCW -> bottom-left
    ],
)
def test_load_rgb_applies_exif_orientation(
    tmp_path: Path, orientation: int, marker_rc: tuple[int, int]
) -> None:
    img = Image.new("RGB", (64, 32), GREY)  # stored landscape: W=64, H=32
    img.paste(RED, (0, 0, 16, 16))  # marker block at stored top-left
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"orient{orientation}.jpg"
    img.save(path, "JPEG", quality=95, exif=exif)
    arr = load_rgb(path)
    if orientation == 1:
        _assert_rgb(arr, 32, 64)
    else:
        _assert_rgb(arr, 64, 32)  # portrait after rotation
    row, col = marker_rc
    np.testing.assert_allclose(arr[row, col], RED, atol=30)
    # The marker is nowhere else: the opposite corner stays grey.
    np.testing.assert_allclose(arr[-row - 1, -col - 1], GREY, atol=30)


def test_load_rgb_orientation_keeps_palette_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (4, 2), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    img.putpixel((0, 0), 1)  # blue marker at stored top-left; index 0 transparent
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "p_orient6.png"
    img.save(path, transparency=0, exif=exif)
    arr = load_rgb(path)
    _assert_rgb(arr, 4, 2)
    expected = np.full((4, 2, 3), 255, dtype=np.uint8)
    expected[0, 1] = (0, 0, 255)  # rotated 90 deg CW: top-left -> top-right
    np.testing.assert_array_equal(arr, expected)


def test_load_rgb_ignores_invalid_exif_orientation(tmp_path: Path) -> None:
    img = Image.new("RGB", (4, 2), GREY)
    exif = Image.Exif()
    exif[0x0112] = 9  # not in 1..8
    path = tmp_path / "orient9.png"
    img.save(path, "PNG", exif=exif)
    _assert_rgb(load_rgb(path), 2, 4)


# --------------------------------------------------------------- failure reasons
def test_load_rgb_truncated_jpeg_is_corrupt(tmp_path: Path) -> None:
    whole = _noise_jpeg(tmp_path / "whole.jpg").read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(whole[: len(whole) // 2])
    assert _reason(path) == "corrupt"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # and it was not changed


def test_load_rgb_truncated_png_is_corrupt(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        tmp_path / "whole.png"
    )
    whole = (tmp_path / "whole.png").read_bytes()
    path = tmp_path / "truncated.png"
    path.write_bytes(whole[: len(whole) // 2])
    assert _reason(path) == "corrupt"


def test_load_rgb_garbled_png_stream_is_corrupt(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)
    garbage = bytes(range(7, 250))  # not a zlib stream
    path = tmp_path / "garbled.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", garbage)
        + _png_chunk(b"IEND", b"")
    )
    assert _reason(path) == "corrupt"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_load_rgb_right_signature_broken_header_is_corrupt(tmp_path: Path, fmt: str) -> None:
    whole = tmp_path / "whole"
    Image.new("RGB", (8, 8), GREY).save(whole, fmt)
    path = tmp_path / "header_cut"
    path.write_bytes(whole.read_bytes()[:14])  # signature kept, header cut short
    assert _reason(path) == "corrupt"


def test_load_rgb_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert _reason(path) == "empty_file"


def test_load_rgb_text_file_with_jpg_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("subject 001, session 3: this is not a JPEG\n", encoding="utf-8")
    assert _reason(path) == "not_an_image"


def test_load_rgb_never_parses_eps(tmp_path: Path) -> None:
    path = tmp_path / "drawing.jpg"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    assert _reason(path) == "not_an_image"


def test_load_rgb_missing_file(tmp_path: Path) -> None:
    assert _reason(tmp_path / "nope.jpg") == "missing_file"


def test_load_rgb_missing_when_parent_is_a_file(tmp_path: Path) -> None:
    parent = tmp_path / "file.txt"
    parent.write_text("x", encoding="utf-8")
    assert _reason(parent / "child.jpg") == "missing_file"


def test_load_rgb_directory_is_not_a_file(tmp_path: Path) -> None:
    directory = tmp_path / "folder.jpg"
    directory.mkdir()
    assert _reason(directory) == "not_a_file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_load_rgb_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert _reason(fifo) == "not_a_file"  # would hang forever if opened blocking


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root ignores file permissions"
)
def test_load_rgb_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)
    path.chmod(0)
    try:
        assert _reason(path) == "unreadable"
    finally:
        path.chmod(0o600)


def test_load_rgb_unicode_and_spaces_in_path(tmp_path: Path) -> None:
    folder = tmp_path / "visages é 顔 😀"
    folder.mkdir()
    path = folder / "photo 1 — ü.png"
    Image.new("RGB", (3, 2), RED).save(path)
    arr = load_rgb(path)
    _assert_rgb(arr, 2, 3)
    assert (arr == RED).all()
    assert load_rgb(str(path)).shape == (2, 3, 3)


# ------------------------------------------------------------ decompression bombs
def test_load_rgb_huge_declared_size_is_too_large_before_decoding(tmp_path: Path) -> None:
    path = _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)  # 1e10 pixels
    assert path.stat().st_size < 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning may leak out either
        assert _reason(path) == "too_large"
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow default, untouched


def test_load_rgb_max_pixels_is_checked_before_decoding(tmp_path: Path) -> None:
    # 8000 x 8000 = 64e6 > 50e6 default, below Pillow's own limit: our check refuses
    # it; the header-only file would otherwise fail as "corrupt" during decoding.
    path = _png_header_only(tmp_path / "big.png", 8000, 8000)
    assert _reason(path) == "too_large"


def test_load_rgb_max_pixels_boundary(tmp_path: Path) -> None:
    path = tmp_path / "ten_by_ten.png"
    Image.new("RGB", (10, 10), GREY).save(path)
    assert _reason(path, max_pixels=99) == "too_large"
    _assert_rgb(load_rgb(path, max_pixels=100), 10, 10)


def test_load_rgb_above_pillow_warning_limit_when_allowed(tmp_path: Path) -> None:
    # 9500^2 = 90.25e6 > Image.MAX_IMAGE_PIXELS (89.48e6): Pillow warns on open.
    # The caller allowed 1e8, so the warning is swallowed and decoding is attempted;
    # the header-only file then fails as corrupt.
    path = _png_header_only(tmp_path / "warn.png", 9500, 9500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _reason(path, max_pixels=100_000_000) == "corrupt"
    assert Image.MAX_IMAGE_PIXELS == 89_478_485


def _rle8_bmp(path: Path, width: int, height: int, rle: bytes) -> Path:
    """BMP with BITMAPINFOHEADER, BI_RLE8 compression and a 2-colour palette."""
    palette = bytes([0, 0, 255, 0, 0, 255, 0, 0])  # BGRx: index 0 red, 1 green
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rle), 0, 0, 2, 0)
    offset = 14 + len(info) + len(palette)
    header = b"BM" + struct.pack("<IHHI", offset + len(rle), 0, 0, offset)
    path.write_bytes(header + info + palette + rle)
    return path


def test_load_rgb_small_rle_bmp_decodes(tmp_path: Path) -> None:
    # Rows are stored bottom-up: 4 x index 1, end of line, 4 x index 0, end of bitmap.
    rle = b"\x04\x01" + b"\x00\x00" + b"\x04\x00" + b"\x00\x01"
    arr = load_rgb(_rle8_bmp(tmp_path / "rle.bmp", 4, 2, rle))
    _assert_rgb(arr, 2, 4)
    assert (arr[0] == RED).all() and (arr[1] == (0, 255, 0)).all()


def test_load_rgb_large_rle_bmp_is_too_large(tmp_path: Path) -> None:
    from bench.acquisition.images import RLE_BMP_MAX_PIXELS

    # 4000 x 2001 = 8.004e6 > RLE_BMP_MAX_PIXELS, from a 66-byte file (fuzzing finding).
    path = _rle8_bmp(tmp_path / "rle_big.bmp", 4000, 2001, b"\x00\x00\x00\x01")
    assert 4000 * 2001 > RLE_BMP_MAX_PIXELS
    assert _reason(path) == "too_large"
    rle_small = _rle8_bmp(tmp_path / "rle_ok.bmp", 4000, 1999, b"\x00\x00\x00\x01")
    assert _reason(rle_small) == "corrupt"  # within the limit: decoded, found short


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "100"])
def test_load_rgb_rejects_bad_max_pixels(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "x.png"
    Image.new("RGB", (1, 1)).save(path)
    with pytest.raises(ConfigError, match="max_pixels"):
        load_rgb(path, max_pixels=bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------- hashing
def test_image_sha256_matches_hashlib_over_several_chunks(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(0, 256, 5 * 2**19 + 7, np.uint8).tobytes()
    path = tmp_path / "blob é.bin"
    path.write_bytes(data)
    assert image_sha256(path) == hashlib.sha256(data).hexdigest()


def test_image_sha256_empty_file_is_sha256_of_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    # FIPS 180-4 SHA-256 of the empty message.
    assert image_sha256(path) == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_image_sha256_failures(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError) as info:
        image_sha256(tmp_path / "missing.jpg")
    assert info.value.reason == "missing_file"
    with pytest.raises(ImageLoadError) as info:
        image_sha256(tmp_path)
    assert info.value.reason == "not_a_file"


# ------------------------------------------------------------------ real London image
def test_load_rgb_real_london_image() -> None:
    path = LONDON_ROOT / "neutral_front" / "001_03.jpg"
    if not path.is_file():
        pytest.skip(f"FRL London dataset not present at {LONDON_ROOT}")
    arr = load_rgb(path)
    _assert_rgb(arr, 1350, 1350)
    assert 20 < float(arr.mean()) < 235  # a photograph, not a blank frame
    assert len(image_sha256(path)) == 64


def test_load_rgb_os_refusal_is_unreadable(tmp_path: Path, monkeypatch) -> None:
    # Same branch as a permission error for non-root users (the test above skips as root).
    path = tmp_path / "x.png"
    Image.new("RGB", (1, 1)).save(path)

    def refuse(*_args: object, **_kwargs: object) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "open", refuse)
    assert _reason(path) == "unreadable"


def test_composite_on_white_is_exact_for_every_colour_alpha_pair() -> None:
    from bench.acquisition.images import _composite_on_white

    colour, alpha = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgb = np.repeat(colour[:, :, np.newaxis], 3, axis=2).astype(np.uint8)
    out = _composite_on_white(rgb, alpha.astype(np.uint8))
    expected = (colour * alpha + 255 * (255 - alpha) + 127) // 255  # Python ints
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], expected)


def test_load_rgb_tiff_with_rational_strip_offsets_is_corrupt(tmp_path: Path) -> None:
    # Found by scripts/fuzz_image_loader.py: Pillow's ImageFile.load raised TypeError.
    from PIL import TiffImagePlugin

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[256], ifd[257], ifd[258], ifd[259], ifd[262] = 2, 2, 8, 1, 1
    ifd[277], ifd[278], ifd[279] = 1, 2, 4
    ifd[273] = TiffImagePlugin.IFDRational(8, 1)  # StripOffsets as a RATIONAL
    ifd.tagtype[273] = 5
    body = ifd.tobytes(offset=8)
    data = b"II*\x00" + struct.pack("<I", 8) + body + b"\x00" * 4
    path = tmp_path / "rational.tif"
    path.write_bytes(data)
    assert _reason(path) == "corrupt"
