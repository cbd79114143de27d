"""Synthetic population generator: seeding, shapes, streaming, configs (issue #5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from bench.cli import instantiate_bench
from bench.synthetic.generator import BLOCK_SUBJECTS, SyntheticPopulation
from bench.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

GROUPS = {
    "A": {"subjects": 2 * BLOCK_SUBJECTS + 37, "images_per_subject": 3, "identity_spread": 1.2, "image_noise": 0.5, "fta_rate": 0.1},
    "B": {"subjects": 11, "images_per_subject": 2, "identity_spread": 2.0, "image_noise": 0.3, "image_noise_sd": 0.4,
          "labels": {"eth": "b", "sex": "f"}},
}


def _pop(seed: int = 3, **kw) -> SyntheticPopulation:
    return SyntheticPopulation(GROUPS, dim=16, seed=seed, name="t", **kw)


def test_shapes_norms_and_manifest():
    manifest, emb, acq = _pop().generate()
    n_img = GROUPS["A"]["subjects"] * 3 + 11 * 2
    assert emb.shape == (n_img, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert acq.shape == (n_img,) and acq.dtype == bool
    t = manifest.table
    assert list(t.columns) == ["image_id", "path", "subject_id", "label_source", "group", "eth", "sex"]
    assert t["image_id"].is_unique
    assert (t["label_source"] == "generator").all()
    assert t["subject_id"].nunique() == GROUPS["A"]["subjects"] + 11
    assert t.loc[0, "image_id"] == "A_000000_00" and t.loc[0, "group"] == "A"
    # group A has no eth label -> missing; group B has no "group" label
    assert t["eth"].isna().sum() == GROUPS["A"]["subjects"] * 3
    assert (t.loc[t["subject_id"].str.startswith("B_"), "eth"] == "b").all()


def test_same_seed_same_arrays_other_seed_differs():
    _, e1, a1 = _pop(seed=5).generate()
    _, e2, a2 = _pop(seed=5).generate()
    _, e3, _ = _pop(seed=6).generate()
    assert np.array_equal(e1, e2) and np.array_equal(a1, a2)
    assert not np.array_equal(e1, e3)


@pytest.mark.parametrize("chunk", [1, 7, BLOCK_SUBJECTS, 300, 10_000])
def test_chunked_path_equals_in_memory(chunk):
    pop = _pop()
    _, emb, acq = pop.generate()
    parts, flags, firsts = [], [], []
    for c in pop.iter_chunks(chunk_subjects=chunk):
        assert c.n_subjects <= chunk
        firsts.append((c.group, c.first_subject))
        parts.append(c.embeddings.reshape(-1, 16))
        flags.append(c.acquired.reshape(-1))
    assert np.array_equal(np.concatenate(parts), emb)
    assert np.array_equal(np.concatenate(flags), acq)
    assert firsts[0] == ("A", 0) and ("B", 0) in firsts


def test_streaming_a_million_subjects_is_lazy():
    """10^6 subjects: the first chunk arrives without drawing (or holding) the rest."""
    pop = SyntheticPopulation({"G": {"subjects": 1_000_000, "images_per_subject": 2, "identity_spread": 1.0, "image_noise": 0.3}}, dim=32)
    it = pop.iter_chunks(chunk_subjects=1000)
    first = next(it)
    second = next(it)
    assert first.embeddings.shape == (1000, 2, 32) and second.first_subject == 1000
    # the same subjects as a small population with the same seed and group (blocks are keyed by group and block)
    small = SyntheticPopulation({"G": {"subjects": 1000, "images_per_subject": 2, "identity_spread": 1.0, "image_noise": 0.3}}, dim=32)
    _, emb, _ = small.generate()
    assert np.array_equal(first.embeddings.reshape(-1, 32), emb)


def test_fta_rate_and_subjects_scale():
    pop = _pop(subjects_scale=2.0)
    assert pop.subjects == {"A": 2 * GROUPS["A"]["subjects"], "B": 22}
    _, _, acq = pop.generate()
    n_a = 2 * GROUPS["A"]["subjects"] * 3
    fails = int((~acq[:n_a]).sum())
    # Binomial(n_a, 0.1): within 4 standard deviations
    assert abs(fails - 0.1 * n_a) < 4 * np.sqrt(n_a * 0.1 * 0.9)
    assert acq[n_a:].all()  # group B has fta_rate 0


def test_model_moments():
    """Cosine of two images of one subject ~ 1/(1+noise^2); of two identities ~ 1/(1+spread^2) (d large)."""
    pop = SyntheticPopulation({"G": {"subjects": 2000, "images_per_subject": 2, "identity_spread": 1.0, "image_noise": 0.5}}, dim=512)
    _, emb, _ = pop.generate()
    x = emb.reshape(2000, 2, 512).astype(np.float64)
    mated = (x[:, 0] * x[:, 1]).sum(1)
    assert abs(mated.mean() - 1 / 1.25) < 0.01
    nm = (x[0::2, 0] * x[1::2, 0]).sum(1)
    assert abs(nm.mean() - (1 / 2) / 1.25) < 0.02


@pytest.mark.parametrize(
    "groups,dim,match",
    [
        ({"A": {"subjects": 0, "images_per_subject": 2, "identity_spread": 1, "image_noise": 1}}, 8, "subjects"),
        ({"A": {"subjects": 5, "images_per_subject": 2, "identity_spread": 0, "image_noise": 1}}, 8, "identity_spread"),
        ({"A": {"subjects": 5, "images_per_subject": 2, "identity_spread": 1, "image_noise": 1, "image_noise_sd": -1}}, 8, "image_noise_sd"),
        ({"A": {"subjects": 5, "images_per_subject": 2, "identity_spread": 1, "image_noise": 1, "fta_rate": 1.0}}, 8, "fta_rate"),
        ({"A": {"subjects": 5, "images_per_subject": 2, "identity_spread": 1, "image_noise": 1, "colour": 3}}, 8, "valid keys"),
        ({"A": {"subjects": 5, "images_per_subject": 2, "identity_spread": 1, "image_noise": 1}}, 3, "dim"),
        ({}, 8, "at least one group"),
    ],
)
def test_bad_parameters_raise_config_error(groups, dim, match):
    with pytest.raises(ConfigError, match=match):
        SyntheticPopulation(groups, dim=dim)


def test_chunk_size_must_be_positive():
    with pytest.raises(ConfigError, match="chunk_subjects"):
        next(_pop().iter_chunks(chunk_subjects=0))


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="fvbench", overrides=overrides)


def test_default_demo_is_the_calibrated_population():
    cfg = _compose([])
    assert cfg.dataset.calibration.synthetic is True
    assert cfg.dataset.calibration.source.run_name == "frl_london_dlib"
    pop = instantiate_bench(cfg.dataset.loader)
    london = _compose(["dataset=synthetic_london_dlib"])
    base = instantiate_bench(london.dataset.loader)
    assert pop.attributes == ("face_eth",) == base.attributes
    assert pop.subjects == {g: 10 * n for g, n in base.subjects.items()}
    assert pop.specs["white"].identity_spread == base.specs["white"].identity_spread
    # FRL London face_eth groups as published: the 4 east_asian&female participants (a group of
    # fewer than 5) are withheld from every number (PRIVACY.md), so the fit sees 5 East Asian people
    assert base.subjects == {"black": 13, "east_asian": 5, "west_asian": 10, "white": 69}


def test_smoke_config_is_small():
    pop = instantiate_bench(_compose(["debug=smoke"]).dataset.loader)
    assert pop.subjects == {"black": 40, "east_asian": 40, "west_asian": 40, "white": 40}
