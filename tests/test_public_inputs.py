"""Public API inputs (issue #10): the acquisition and scoring functions give clear errors or
documented conversions for arrays a notebook user passes -- a float image in [0, 1], a
negative-stride view, a 2-D greyscale array, swapped eye landmarks, a zero-norm embedding --
through one shared normaliser (bench.acquisition.images.as_rgb_uint8), and log each
conversion once per run."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from bench.acquisition.images import as_rgb_uint8, load_rgb, reset_conversion_notes
from bench.acquisition.mtcnn_align import arcface_template, warp_to_template
from bench.errors import DataError
from bench.protocol.scoring import pair_scores, similarity_matrix


# ----------------------------------------------------------------------------- the normaliser
def test_float_in_unit_interval_is_scaled_to_uint8():
    img = np.array([[[0.0, 0.5, 1.0]]])
    out = as_rgb_uint8(img)
    assert out.dtype == np.uint8 and out.tolist() == [[[0, 128, 255]]]  # round(0.5 * 255) = 128 (half to even: 127.5 -> 128)


@pytest.mark.parametrize("bad,msg", [
    (np.full((2, 2, 3), 200.0), r"float image values span 200..200; expected \[0, 1\]"),
    (np.full((2, 2, 3), -0.1), r"span -0.1..-0.1"),
    (np.full((2, 2, 3), np.nan), r"NaN or infinite"),
    (np.zeros((2, 2, 2)), r"expected shape \(H, W, 3\) RGB, \(H, W, 4\) RGBA or \(H, W\) greyscale, got \(2, 2, 2\)"),
    (np.zeros((0, 4, 3), np.uint8), r"empty image"),
    (np.full((2, 2, 3), 300, np.int32), r"int32 image values span 300..300; expected 0..255"),
    (np.array([["a"]]), r"expected an array of numbers"),
])
def test_unusable_arrays_are_refused_with_the_reason(bad, msg):
    with pytest.raises(DataError, match=msg):
        as_rgb_uint8(bad)


def test_negative_stride_view_becomes_contiguous_and_equal():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    view = img[::-1, ::-1]
    out = as_rgb_uint8(view)
    assert out.flags.c_contiguous and np.array_equal(out, view)
    ro = img.copy()
    ro.setflags(write=False)
    assert as_rgb_uint8(ro).flags.writeable


def test_greyscale_and_rgba_conversions_and_logged_once(caplog):
    reset_conversion_notes()
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with caplog.at_level(logging.INFO, logger="bench.acquisition.images"):
        a = as_rgb_uint8(grey)
        as_rgb_uint8(grey[:, :, None])
        rgba = np.zeros((1, 2, 4), np.uint8)
        rgba[0, 0] = (10, 20, 30, 255)  # opaque: unchanged
        rgba[0, 1] = (10, 20, 30, 0)    # transparent: white
        b = as_rgb_uint8(rgba)
        as_rgb_uint8(rgba)
    assert a.shape == (3, 4, 3) and (a[..., 0] == grey).all() and (a[..., 2] == grey).all()
    assert b.tolist() == [[[10, 20, 30], [255, 255, 255]]]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("greyscale" in m for m in messages) == 1
    assert sum("composited onto white" in m for m in messages) == 1


def test_uint16_follows_the_file_rule():
    assert as_rgb_uint8(np.full((1, 1, 3), 257 * 200, np.uint16)).tolist() == [[[200, 200, 200]]]


# ----------------------------------------------------------------------------- backends on a real face
def test_dlib_aligner_accepts_float_strided_and_greyscale_the_same_way(london):
    from bench.acquisition.dlib_align import DlibAligner, face_recognition_models_dir

    aligner = DlibAligner(face_recognition_models_dir() / "shape_predictor_5_face_landmarks.dat")
    img = load_rgb(london / "neutral_front" / "001_03.jpg")
    ref = aligner.acquire(img)
    assert ref.ok
    as_float = aligner.acquire(img.astype(np.float64) / 255.0)  # float in [0, 1]: exactly the same pixels
    assert as_float.ok and np.array_equal(as_float.chip, ref.chip)
    flipped = aligner.acquire(img[:, ::-1])  # negative stride (was a dlib TypeError)
    assert flipped.ok
    grey = aligner.acquire(img.mean(axis=2).round().astype(np.uint8))  # 2-D (crashed inside dlib)
    assert grey.ok and grey.chip.shape == ref.chip.shape


def test_mtcnn_finds_the_face_in_a_float_image(london):
    """A float image in [0, 1] used to give no face (MTCNN scaled it as 0..255): same box now."""
    from bench.acquisition.mtcnn_align import MtcnnDetector

    det = MtcnnDetector(device="cpu")
    img = load_rgb(london / "neutral_front" / "001_03.jpg")
    ref = det.detect(img)
    got = det.detect(img.astype(np.float32) / 255.0)
    assert ref is not None and got is not None
    np.testing.assert_allclose(got.box, ref.box, atol=1e-6)
    grey = det.detect(img.mean(axis=2).round().astype(np.uint8))
    assert grey is not None


# ----------------------------------------------------------------------------- template warp
def _face_points(scale=3.0, offset=(200.0, 100.0)):
    return arcface_template(112) * scale + np.array(offset)


def test_warp_in_template_order_gives_the_chip():
    img = np.zeros((600, 600, 3), np.uint8)
    chip = warp_to_template(img, _face_points(), arcface_template(112), 112)
    assert chip.shape == (112, 112, 3)


@pytest.mark.parametrize("order,what", [([1, 0, 2, 3, 4], "points 0 and 1"), ([0, 1, 2, 4, 3], "points 3 and 4"), ([1, 0, 2, 4, 3], "points 0 and 1")])
def test_swapped_landmarks_are_refused_not_cropped_at_half_scale(order, what):
    """Eyes given right-then-left used to fit at about half the scale (0.18 vs 0.33) silently."""
    with pytest.raises(DataError, match=rf"landmarks: {what} are left-right swapped relative to the template"):
        warp_to_template(np.zeros((600, 600, 3), np.uint8), _face_points()[order], arcface_template(112), 112)


def test_swapped_eyes_in_a_two_point_warp_are_refused():
    tpl = arcface_template(112)[:2]
    eyes = _face_points()[:2]
    warp_to_template(np.zeros((600, 600, 3), np.uint8), eyes, tpl, 112)
    with pytest.raises(DataError, match=r"turns the face by 180 degrees; the eyes are probably swapped"):
        warp_to_template(np.zeros((600, 600, 3), np.uint8), eyes[::-1], tpl, 112)


def test_warp_takes_a_float_greyscale_image():
    chip = warp_to_template(np.full((600, 600), 0.5), _face_points(), arcface_template(112), 112)
    assert chip.shape == (112, 112, 3) and chip[56, 56].tolist() == [128, 128, 128]


# ----------------------------------------------------------------------------- scoring
def test_zero_norm_embedding_is_refused_without_a_numpy_warning():
    emb = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning 'invalid value encountered'
        with pytest.raises(DataError, match=r"row\(s\) \[1\] have zero norm; their cosine similarity is undefined"):
            pair_scores(emb, np.array([0]), np.array([1]), "cosine")
        with pytest.raises(DataError, match=r"zero norm"):
            similarity_matrix(emb, "cosine")
    # Euclidean distance to a zero vector is defined
    assert pair_scores(emb, np.array([0]), np.array([1]), "euclidean").tolist() == [-1.0]


@pytest.mark.parametrize("emb,a,b,msg", [
    (np.array([[np.nan, 1.0], [1.0, 0.0]]), [0], [1], r"row\(s\) \[0\] hold NaN or infinite values"),
    (np.ones(3), [0], [1], r"expected shape \(n_images, d\)"),
    (np.eye(2), [0], [2], r"indices must lie in \[0, 2\)"),
    (np.eye(2), [0, 1], [1], r"equal length"),
])
def test_pair_scores_input_errors(emb, a, b, msg):
    with pytest.raises(DataError, match=msg):
        pair_scores(emb, np.array(a), np.array(b), "cosine")
