#!/usr/bin/env python3
"""Fuzz ``bench.acquisition.images.load_rgb`` with mutated image files.

Contract under test: for ANY file content, ``load_rgb(path)`` either returns a
C-contiguous ``uint8`` array of shape ``(H, W, 3)`` with ``H * W <= max_pixels``, or
raises ``bench.errors.ImageLoadError`` whose ``reason`` is in
``IMAGE_LOAD_REASONS``. Anything else is a *finding*: another exception type, a
wrong array, a warning leaking to the caller, a change to Pillow's global settings,
or one input taking longer than ``--slow-seconds``.

Inputs are small valid seed images (PNG, JPEG, GIF, BMP, TIFF, WebP, PPM in several
pixel modes and compressions, generated in memory) mutated by short programs that
Hypothesis draws: bit flips, byte overwrites with "interesting" integers (0, 0xFF,
0x7FFFFFFF, ... in both byte orders), inserts, deletes, chunk duplication, splices of
two seeds, truncation; positions are biased towards the headers. For PNG, chunk
CRCs are optionally recomputed so that mutations reach the decoders instead of
stopping at the CRC check. Findings are collected (not raised), de-duplicated by
exception type and innermost source line, and one reproducer per finding is written
to ``--out`` (outside the repository by default; never commit fuzz inputs).

A second engine, ``--engine atheris``, hands the same seeds to libFuzzer through
Atheris (``pip install atheris``; not a project dependency) for coverage-guided
mutation of Pillow's and bench's Python code (the C decoders are not instrumented).

Usage::

    python scripts/fuzz_image_loader.py --seconds 300
    python scripts/fuzz_image_loader.py --seconds 30 --seed 7 --out /tmp/fuzz-out
    python scripts/fuzz_image_loader.py --engine atheris --seconds 300

Exit status: 0 when there were no findings, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import logging
import os
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from bench.acquisition.images import DEFAULT_MAX_PIXELS, IMAGE_LOAD_REASONS, load_rgb
from bench.errors import ImageLoadError

INTERESTING = (
    0, 1, 2, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 0x7FFF, 0x8000, 0xFFFF,
    0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
)  # fmt: skip


# ------------------------------------------------------------------------- seeds
def _save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def make_seeds() -> dict[str, bytes]:
    """Small valid images covering the formats and pixel modes load_rgb handles."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), "RGB")
    rgba = Image.fromarray(rng.integers(0, 256, (12, 16, 4), dtype=np.uint8), "RGBA")
    grey = rgb.convert("L")
    la = rgba.convert("LA")
    bits = grey.convert("1")
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    i16 = Image.fromarray(rng.integers(0, 65536, (12, 16), dtype=np.uint16))
    i32 = Image.fromarray(rng.integers(0, 65536, (12, 16)).astype(np.int32), "I")
    flt = Image.fromarray(rng.random((12, 16), dtype=np.float32), "F")
    cmyk = rgb.convert("CMYK")
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [rgb.convert("P"), rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("P")]

    seeds = {
        "png_rgb": _save(rgb, "PNG"),
        "png_rgba": _save(rgba, "PNG"),
        "png_l": _save(grey, "PNG"),
        "png_la": _save(la, "PNG"),
        "png_1bit": _save(bits, "PNG"),
        "png_p_trns": _save(pal, "PNG", transparency=0),
        "png_i16": _save(i16, "PNG"),
        "png_interlaced": _save(rgb, "PNG", interlace=1),  # Pillow >= 11.? honours it
        "png_exif": _save(rgb, "PNG", exif=exif),
        "jpeg": _save(rgb, "JPEG", quality=80),
        "jpeg_progressive": _save(rgb, "JPEG", quality=80, progressive=True),
        "jpeg_grey": _save(grey, "JPEG"),
        "jpeg_cmyk": _save(cmyk, "JPEG"),
        "jpeg_exif6": _save(rgb, "JPEG", exif=exif),
        "jpeg_444": _save(rgb, "JPEG", subsampling=0),
        "gif": _save(pal, "GIF", transparency=0),
        "gif_anim": _save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "bmp_rgb": _save(rgb, "BMP"),
        "bmp_p": _save(pal, "BMP"),
        "bmp_1bit": _save(bits, "BMP"),
        "tiff_raw": _save(rgb, "TIFF"),
        "tiff_lzw": _save(rgb, "TIFF", compression="tiff_lzw"),
        "tiff_deflate": _save(rgba, "TIFF", compression="tiff_adobe_deflate"),
        "tiff_packbits": _save(grey, "TIFF", compression="packbits"),
        "tiff_jpeg": _save(rgb, "TIFF", compression="jpeg"),
        "tiff_g4": _save(bits, "TIFF", compression="group4"),
        "tiff_i16": _save(i16, "TIFF"),
        "tiff_i32": _save(i32, "TIFF"),
        "tiff_float": _save(flt, "TIFF"),
        "tiff_cmyk": _save(cmyk, "TIFF"),
        "tiff_multipage": _save(rgb, "TIFF", save_all=True, append_images=[grey]),
        "webp_lossy": _save(rgb, "WEBP", quality=60),
        "webp_lossless": _save(rgba, "WEBP", lossless=True),
        "ppm": _save(rgb, "PPM"),
        "pgm": _save(grey, "PPM"),
        "pbm": _save(bits, "PPM"),
    }
    return seeds


# --------------------------------------------------------------------- mutations
# Signature length per seed family (PNG 8, JPEG SOI+marker 3, GIF87a/89a 6, BM 2,
# II*\0 / MM\0* 4, RIFF....WEBP 12, P1..P6 2).
_MAGIC_BYTES = {"png": 8, "jpeg": 3, "gif": 6, "bmp": 2, "tiff": 4, "webp": 12,
                "ppm": 2, "pgm": 2, "pbm": 2}  # fmt: skip

def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every PNG chunk CRC (PNG spec 5.3) so mutations pass CRC checks."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out = bytearray(data[:8])
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 8 + length
        if end + 4 > len(data):
            out += data[pos:]
            return bytes(out)
        body = data[pos + 4 : end]
        out += data[pos : pos + 4] + body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "big")
        pos = end + 4
    out += data[pos:]
    return bytes(out)


@st.composite
def mutated_inputs(draw: st.DrawFn, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """Draw a seed and a program of 1..8 mutations; return (label, bytes)."""
    names = sorted(seeds)
    name = draw(st.sampled_from(names))
    data = bytearray(seeds[name])
    n_ops = draw(st.integers(1, 8))
    for _ in range(n_ops):
        if not data:
            data = bytearray(seeds[name][:16])
        size = len(data)
        header = draw(st.booleans())
        pos = draw(st.integers(0, min(size, 96) - 1 if header else size - 1))
        op = draw(
            st.sampled_from(
                ["flip", "byte", "interesting", "insert", "delete", "dup", "splice", "cut"]
            )
        )
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif op == "interesting":
            width = draw(st.sampled_from([1, 2, 4]))
            value = draw(st.sampled_from(INTERESTING)) & ((1 << (8 * width)) - 1)
            order = draw(st.sampled_from(["big", "little"]))
            data[pos : pos + width] = value.to_bytes(width, order)
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "dup":
            length = draw(st.integers(1, 256))
            dest = draw(st.integers(0, size))
            data[dest:dest] = data[pos : pos + length]
        elif op == "splice":
            other = seeds[draw(st.sampled_from(names))]
            start = draw(st.integers(0, len(other) - 1))
            data[pos:] = other[start:]
        elif op == "cut":
            del data[max(pos, 1) :]
    magic = seeds[name][: _MAGIC_BYTES[name.split("_")[0]]]
    if draw(st.integers(0, 3)) > 0:  # mostly keep the signature: reach the parsers
        data[: len(magic)] = magic
    out = bytes(data)
    if name.startswith("png") and draw(st.booleans()):
        out = fix_png_crcs(out)
    return name, out


# ----------------------------------------------------------------------- harness
@dataclass
class Finding:
    signature: str
    count: int
    seed_name: str
    reproducer: str
    detail: str


@dataclass
class FuzzStats:
    tried: int = 0
    returned: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)
    per_seed: collections.Counter = field(default_factory=collections.Counter)
    findings: dict[str, Finding] = field(default_factory=dict)
    slowest_s: float = 0.0
    slowest_seed: str = ""


def _signature(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(err).__name__} at {where}"


def _global_state() -> tuple[object, ...]:
    return (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, len(warnings.filters))


def run_one(
    stats: FuzzStats, name: str, data: bytes, work: Path, out: Path, max_pixels: int,
    slow_s: float,
) -> None:
    """Run load_rgb on one input and file any contract breach as a finding."""
    path = work / "input.img"
    path.write_bytes(data)
    stats.tried += 1
    stats.per_seed[name] += 1
    before = _global_state()
    problem: str | None = None
    detail = ""
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        try:
            arr = load_rgb(path, max_pixels=max_pixels)
        except ImageLoadError as err:
            stats.reasons[err.reason] += 1
            if err.reason not in IMAGE_LOAD_REASONS:
                problem, detail = f"unknown reason {err.reason!r}", str(err)
        except Exception as err:  # noqa: BLE001 - the fuzzer's job is to catch anything
            problem, detail = _signature(err), traceback.format_exc()
        else:
            stats.returned += 1
            ok = (
                isinstance(arr, np.ndarray)
                and arr.dtype == np.uint8
                and arr.ndim == 3
                and arr.shape[2] == 3
                and arr.shape[0] * arr.shape[1] > 0
                and arr.shape[0] * arr.shape[1] <= max_pixels
                and arr.flags["C_CONTIGUOUS"]
            )
            if not ok:
                problem = "bad array"
                detail = f"{type(arr)} {getattr(arr, 'dtype', '')} {getattr(arr, 'shape', '')}"
    elapsed = time.perf_counter() - started
    if elapsed > stats.slowest_s:
        stats.slowest_s, stats.slowest_seed = elapsed, name
    if problem is None and leaked:
        problem = f"leaked warning {leaked[0].category.__name__}"
        detail = str(leaked[0].message)
    if problem is None and _global_state() != before:
        problem, detail = "global state changed", f"{before} -> {_global_state()}"
    if problem is None and elapsed > slow_s:
        problem, detail = "slow input", f"{elapsed:.2f} s"
    if problem is None:
        return
    finding = stats.findings.get(problem)
    if finding is None:
        reproducer = out / f"finding_{len(stats.findings):03d}_{name}.bin"
        reproducer.write_bytes(data)
        stats.findings[problem] = Finding(problem, 1, name, str(reproducer), detail)
        print(f"[finding] {problem} (seed {name}) -> {reproducer}", flush=True)
    else:
        finding.count += 1


def _fuzz_hypothesis(
    args: argparse.Namespace, seeds: dict[str, bytes], stats: FuzzStats, work: Path
) -> dict[str, object]:
    """Hypothesis engine: batches of seeded, reproducible mutation programs."""
    deadline = time.monotonic() + args.seconds

    def body(drawn: tuple[str, bytes]) -> None:
        if time.monotonic() < deadline:
            run_one(stats, *drawn, work, args.out, args.max_pixels, args.slow_seconds)

    batch_seed = args.seed
    while time.monotonic() < deadline:
        test = settings(
            max_examples=args.batch,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(seed(batch_seed)(given(mutated_inputs(seeds))(body)))
        test()
        batch_seed += 1
        print(
            f"  {stats.tried} inputs, {stats.returned} decoded, "
            f"{len(stats.findings)} findings",
            flush=True,
        )
    return {"first_seed": args.seed, "last_seed": batch_seed - 1}


def _fuzz_atheris(
    args: argparse.Namespace, seeds: dict[str, bytes], stats: FuzzStats, work: Path
) -> None:
    """Atheris (libFuzzer) engine: coverage-guided on Pillow's and bench's Python code.

    Never returns: libFuzzer owns the loop, so the summary is written and the
    process exits from inside the callback once the time budget is spent.
    """
    import atheris  # optional; pip install atheris

    # Re-import Pillow and bench under instrumentation (instrument_all() would also
    # instrument numpy, hypothesis, ... and take minutes), then point this module's
    # globals at the instrumented copies.
    for module in [m for m in sys.modules if m.split(".")[0] in {"PIL", "bench"}]:
        del sys.modules[module]
    with atheris.instrument_imports(include=["PIL", "bench"]):
        import bench.acquisition.images as images
        import bench.errors as errors
        from PIL import (  # noqa: F401 - the plugins load_rgb may reach
            BmpImagePlugin,
            GifImagePlugin,
            Image as PilImage,
            ImageFile as PilImageFile,
            JpegImagePlugin,
            MpoImagePlugin,
            PngImagePlugin,
            PpmImagePlugin,
            TiffImagePlugin,
            TiffTags,
            WebPImagePlugin,
        )
    globals().update(
        load_rgb=images.load_rgb,
        IMAGE_LOAD_REASONS=images.IMAGE_LOAD_REASONS,
        ImageLoadError=errors.ImageLoadError,
        Image=PilImage,
        ImageFile=PilImageFile,
    )
    corpus = work / "corpus"
    corpus.mkdir()
    for name, data in seeds.items():
        (corpus / name).write_bytes(data)
    deadline = time.monotonic() + args.seconds

    def one_input(data: bytes) -> None:
        if time.monotonic() >= deadline:
            code = _report(args, stats, {"engine_seed": args.seed})
            sys.stdout.flush()
            os._exit(code)
        run_one(stats, "libfuzzer", data, work, args.out, args.max_pixels, args.slow_seconds)
        if stats.tried % 5000 == 0:
            print(f"  {stats.tried} inputs, {len(stats.findings)} findings", flush=True)

    libfuzzer_args = [
        sys.argv[0],
        str(corpus),
        f"-seed={args.seed or 1}",
        "-max_len=65536",
        "-rss_limit_mb=6144",
        "-timeout=60",
        f"-artifact_prefix={args.out}{os.sep}",  # libFuzzer's own slow/crash units
    ]
    atheris.Setup(libfuzzer_args, one_input)
    atheris.Fuzz()


def _report(args: argparse.Namespace, stats: FuzzStats, extra: dict[str, object]) -> int:
    """Write summary.json, print it and the findings; return the exit status."""
    summary = {
        "engine": args.engine,
        "seconds": args.seconds,
        **extra,
        "max_pixels": args.max_pixels,
        "inputs_tried": stats.tried,
        "decoded": stats.returned,
        "refused_by_reason": dict(stats.reasons.most_common()),
        "inputs_per_seed_image": dict(sorted(stats.per_seed.items())),
        "slowest_input_s": round(stats.slowest_s, 3),
        "slowest_seed_image": stats.slowest_seed,
        "findings": [f.__dict__ for f in stats.findings.values()],
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "findings"}, indent=2))
    for finding in stats.findings.values():
        print(f"\n=== {finding.signature} x{finding.count} (seed {finding.seed_name})")
        print(f"reproducer: {finding.reproducer}\n{finding.detail}")
    return 1 if stats.findings else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="time budget (s)")
    parser.add_argument(
        "--engine",
        choices=["hypothesis", "atheris"],
        default="hypothesis",
        help="hypothesis: seeded mutation programs (default, no extra dependency); "
        "atheris: coverage-guided libFuzzer (needs `pip install atheris`)",
    )
    parser.add_argument("--seed", type=int, default=0, help="first Hypothesis / libFuzzer seed")
    parser.add_argument("--batch", type=int, default=200, help="examples per Hypothesis run")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fvbench-fuzz-findings",
        help="where reproducers and summary.json go (keep it outside the repository)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show the loader's WARNING log lines"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR)
    if not args.verbose:  # Pillow logs every malformed TIFF tag at ERROR level
        logging.getLogger("PIL").setLevel(logging.CRITICAL)
    args.out.mkdir(parents=True, exist_ok=True)

    seeds = make_seeds()
    for name, data in seeds.items():  # every seed loads, except the refused "F" mode
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "seed").write_bytes(data)
            try:
                load_rgb(Path(tmp) / "seed")
            except ImageLoadError as err:
                if (name, err.reason) != ("tiff_float", "unsupported_mode"):
                    raise
    print(f"{len(seeds)} seeds ok; fuzzing with {args.engine} for {args.seconds:.0f} s")

    stats = FuzzStats()
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        if args.engine == "atheris":
            _fuzz_atheris(args, seeds, stats, Path(tmp))
        extra = _fuzz_hypothesis(args, seeds, stats, Path(tmp))
    return _report(args, stats, extra)


if __name__ == "__main__":
    sys.exit(main())
