"""Acquisition-condition transforms (issue #5): identity, determinism, range checks, monotone effects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.acquisition.transforms import (
    Exposure,
    FaceGeometry,
    Gamma,
    GaussianBlur,
    GaussianNoise,
    JpegQuality,
    OcclusionBand,
    Resolution,
    linear_to_srgb,
    srgb_to_linear,
    stable_seed,
)
from bench.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]

# A face-like layout on a 400 x 400 canvas: eyes 100 px apart, face box 200 x 240.
GEOM = FaceGeometry(box=(100.0, 100.0, 300.0, 340.0), eyes=((150.0, 180.0), (250.0, 180.0)))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """Textured test image: gradients, a checkerboard and fixed-seed speckle (values 20..235, no clipping)."""
    y, x = np.mgrid[0:400, 0:400]
    base = 60 + 0.25 * x + 0.15 * y + 30 * (((x // 8) + (y // 8)) % 2)
    speckle = np.random.default_rng(7).normal(0, 12, size=(400, 400, 3))
    img = base[..., None] + speckle + np.array([0, 10, -10])
    return np.clip(np.rint(img), 20, 235).astype(np.uint8)


def _hf_energy(img: np.ndarray) -> float:
    """Mean squared 4-neighbour Laplacian of the grey image (high-frequency energy)."""
    g = img.astype(np.float64).mean(axis=2)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float((lap**2).mean())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / mse)


IDENTITY_CASES = [
    (Exposure(), 0.0),
    (Gamma(), 1.0),
    (GaussianBlur(), 0.0),
    (GaussianBlur(reference_ied_px=None), 0.0),
    (GaussianNoise(), 0.0),
    (OcclusionBand(), 0.0),
    (Resolution(), 100.0),  # target = the face's own IED: nothing to remove
    (Resolution(), 400.0),  # upsampling never happens
]


@pytest.mark.parametrize(("transform", "strength"), IDENTITY_CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_identity_returns_the_input_unchanged(image, transform, strength):
    before = image.copy()
    out = transform.apply(image, strength, geometry=GEOM, seed=3, image_key="k")
    assert out is image  # not even a copy
    assert out.tobytes() == before.tobytes()


def test_jpeg_has_no_identity_strength(image):
    t = JpegQuality()
    assert t.identity is None
    assert t.apply(image, 100).tobytes() != image.tobytes()  # even quality 100 is lossy


ALL = [
    (Exposure(), -2.5), (Exposure(), 1.5), (Gamma(), 2.0), (GaussianBlur(), 2.0), (Resolution(), 20.0),
    (JpegQuality(), 20), (GaussianNoise(), 15.0), (OcclusionBand(), 0.4),
]


@pytest.mark.parametrize(("transform", "strength"), ALL, ids=lambda v: getattr(v, "name", str(v)))
def test_output_shape_dtype_and_determinism(image, transform, strength):
    a = transform.apply(image, strength, geometry=GEOM, seed=1, image_key="abc")
    b = transform.apply(image.copy(), strength, geometry=GEOM, seed=1, image_key="abc")
    assert a.shape == image.shape and a.dtype == np.uint8 and a.flags["C_CONTIGUOUS"]
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != image.tobytes()


def test_noise_stream_depends_on_seed_and_image_only_through_stable_seed(image):
    t = GaussianNoise()
    a = t.apply(image, 10, seed=1, image_key="img1")
    assert t.apply(image, 10, seed=2, image_key="img1").tobytes() != a.tobytes()
    assert t.apply(image, 10, seed=1, image_key="img2").tobytes() != a.tobytes()
    diff = a.astype(np.float64) - image
    assert abs(diff.mean()) < 0.1 and abs(diff.std() - 10) < 0.2  # N(0, 10^2) per pixel, rounded (+1/12 var)


def test_stable_seed_is_independent_of_python_hash_randomisation():
    code = (
        "from bench.acquisition.transforms import stable_seed;"
        "print(stable_seed(5, 'a' * 64, 'noise', {'x': 1}, 20.0))"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": h}).stdout.strip()
        for h in ("0", "1", "12345")
    }
    assert outs == {str(stable_seed(5, "a" * 64, "noise", {"x": 1}, 20.0))}
    assert stable_seed(5, "a", "noise", {}, 20.0) != stable_seed(5, "a", "noise", {}, 20.5)


def test_srgb_transfer_round_trip_and_reference_value():
    v = np.linspace(0, 1, 1001)
    assert np.allclose(linear_to_srgb(srgb_to_linear(v)), v, atol=1e-12)
    # IEC 61966-2-1: linear 0.5 encodes to 1.055 * 0.5^(1/2.4) - 0.055 = 0.735357
    assert linear_to_srgb(0.5) == pytest.approx(0.735357, abs=1e-6)


def test_exposure_values_and_brightness_direction(image):
    t = Exposure()
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    down = t.apply(ramp, -1)[0, :, 0]
    up = t.apply(ramp, 1)[0, :, 0]
    assert down[0] == 0 and down[255] == 188  # white at half the light: 255 * 0.735357 = 187.5 -> 188
    assert up[255] == 255 and up[188] == 255  # one stop over: everything from 188 up clips to white
    assert np.all(np.diff(down.astype(int)) >= 0) and np.all(np.diff(up.astype(int)) >= 0)  # tone order kept
    means = [t.apply(image, s).mean() if s else image.mean() for s in (-4, -2, -1, 0, 1, 2)]
    assert all(a < b for a, b in zip(means, means[1:]))


def test_gamma_darkens_above_one_and_keeps_black_and_white(image):
    t = Gamma()
    means = [t.apply(image, g).mean() if g != 1 else image.mean() for g in (0.25, 0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(means, means[1:]))
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    out = t.apply(ramp, 2.0)[0, :, 0]
    assert out[0] == 0 and out[255] == 255 and out[128] == round(255 * (128 / 255) ** 2)


def test_blur_lowers_high_frequency_energy_monotonically(image):
    t = GaussianBlur(reference_ied_px=60)
    energies = [_hf_energy(image)] + [_hf_energy(t.apply(image, s, geometry=GEOM)) for s in (0.5, 1, 2, 4)]
    assert all(a > b for a, b in zip(energies, energies[1:]))


def test_blur_strength_is_relative_to_the_inter_eye_distance(image):
    # sigma 1.2 px at IED 60 on a face with IED 100 = sigma 2 px in image pixels
    rel = GaussianBlur(reference_ied_px=60).apply(image, 1.2, geometry=GEOM)
    absolute = GaussianBlur(reference_ied_px=None).apply(image, 2.0)
    assert rel.tobytes() == absolute.tobytes()


def test_resolution_lowers_detail_monotonically(image):
    t = Resolution()
    energies = [_hf_energy(image)] + [_hf_energy(t.apply(image, s, geometry=GEOM)) for s in (64, 32, 16, 8)]
    assert all(a > b for a, b in zip(energies, energies[1:]))


def test_jpeg_quality_lowers_psnr_monotonically(image):
    t = JpegQuality()
    psnr = [_psnr(image, t.apply(image, q)) for q in (95, 70, 40, 15, 5)]
    assert all(a > b for a, b in zip(psnr, psnr[1:]))


def test_occlusion_band_covers_the_lower_face_box(image):
    out = OcclusionBand(fill=128, width_margin=0.1).apply(image, 0.5, geometry=GEOM)
    changed = np.any(out != image, axis=2)
    ys, xs = np.nonzero(np.all(out == 128, axis=2))
    # box height 240: band from y = 340 - 120 = 220 to 340; width 200 + 2 * 20 margin
    assert ys.min() == 220 and ys.max() == 339 and xs.min() == 80 and xs.max() == 319
    assert not changed[:220].any() and not changed[340:].any()


@pytest.mark.parametrize(
    ("transform", "strength"),
    [(Exposure(), 20), (Gamma(), 0), (GaussianBlur(), -1), (Resolution(), 1), (JpegQuality(), 0), (JpegQuality(), 50.5),
     (GaussianNoise(), -3), (OcclusionBand(), 1.5), (Exposure(), float("nan")), (Exposure(), "dark")],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_out_of_range_strengths_are_refused(image, transform, strength):
    with pytest.raises(ConfigError, match=transform.name):
        transform.apply(image, strength, geometry=GEOM)


def test_bad_inputs_are_refused(image):
    with pytest.raises(DataError, match="uint8 RGB"):
        Exposure().apply(image.astype(np.float32), 1)
    with pytest.raises(DataError, match="uint8 RGB"):
        Exposure().apply(image[..., 0], 1)
    with pytest.raises(DataError, match="geometry"):
        Resolution().apply(image, 20)
    with pytest.raises(ConfigError, match="interpolation"):
        Resolution(interpolation="bogus")
    with pytest.raises(ConfigError, match="fill"):
        OcclusionBand(fill=300)


def test_geometry_locator_matches_annotated_pupils(london):
    """The locator's inter-eye distance agrees with the London set's hand-placed pupils (.tem points 0, 1)."""
    from bench.acquisition.images import load_rgb
    from bench.acquisition.transforms import FaceGeometryLocator

    loc = FaceGeometryLocator()
    for stem in ("001_03", "002_03", "003_03"):
        tem = (london / "neutral_front" / f"{stem}.tem").read_text().split("\n")
        (x0, y0), (x1, y1) = (tuple(map(float, tem[i].split())) for i in (1, 2))
        g = loc.locate(load_rgb(london / "neutral_front" / f"{stem}.jpg"))
        assert g is not None
        assert g.ied == pytest.approx(np.hypot(x1 - x0, y1 - y0), rel=0.05)
        left, top, right, bottom = g.box
        assert left < min(x0, x1) < max(x0, x1) < right and top < y0 < bottom
    assert loc.locate(np.full((300, 300, 3), 128, np.uint8)) is None  # no face: None, not an error
