"""fvbench-calibrate: score map, parameter recovery, config output, published London fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from bench.synthetic.calibrate import ScoreMap, calibrate, read_run
from bench.synthetic.calibrate_cli import calibrate_main
from bench.synthetic.calibration_figure import plot_calibration
from bench.cli import instantiate_bench
from bench.synthetic.generator import SyntheticPopulation
from bench.errors import ConfigError, DataError
from bench.protocol.pairs import all_pairs, comparison_table
from bench.protocol.scoring import similarity_matrix

REPO = Path(__file__).resolve().parents[1]
TRUE = {
    "A": {"subjects": 160, "images_per_subject": 2, "identity_spread": 1.2, "image_noise": 0.25, "image_noise_sd": 0.2},
    "B": {"subjects": 160, "images_per_subject": 2, "identity_spread": 2.2, "image_noise": 0.35, "image_noise_sd": 0.2},
}
DIM = 30


def _synthetic_run(radius: float | None = None) -> tuple[pd.DataFrame, dict]:
    """A generated population scored like a real run (cosine, or -Euclidean at a common norm)."""
    pop = SyntheticPopulation(TRUE, dim=DIM, seed=2)
    manifest, emb, _ = pop.generate()
    table = manifest.table
    ia, ib, mated = all_pairs(table["subject_id"].to_numpy())
    cos = similarity_matrix(emb, "cosine")[ia, ib]
    score = cos if radius is None else -radius * np.sqrt(np.maximum(2.0 * (1.0 - cos), 0.0))
    comp = comparison_table(table, manifest.group_labels(["group"]), ia, ib, mated, score)
    fta_rows = [
        {"attribute": "group", "group": g, "metric": "FTA", "errors": 0, "comparisons": 2 * p["subjects"], "subjects": p["subjects"]}
        for g, p in TRUE.items()
    ]
    metrics = {
        "run_name": "synthetic_check",
        "model": {"name": "generator", "metric": "cosine" if radius is None else "euclidean"},
        "dataset": {"name": "synthetic", "subjects_per_group": {"group": {g: p["subjects"] for g, p in TRUE.items()}}},
        "per_group": fta_rows,
        "thresholds": [{"name": "FMR=1e-02", "kind": "target_fmr", "status": "ok", "threshold": float(np.quantile(score[~mated], 0.99))}],
    }
    return comp, metrics


@pytest.fixture(scope="module")
def cosine_run():
    return _synthetic_run()


def test_score_map_is_increasing_and_invertible():
    m = ScoreMap("euclidean", 0.8)
    s = np.array([-1.2, -0.9, -0.5, -0.1, 0.0])
    c = m.to_generator(s)
    assert np.all(np.diff(c) > 0)
    np.testing.assert_allclose(m.from_generator(c), s, atol=1e-12)
    np.testing.assert_allclose(c, 1 - s**2 / 0.8)
    cm = ScoreMap("cosine", 1.0)
    np.testing.assert_allclose(cm.to_generator([0.3, 0.9]), [0.3, 0.9])
    with pytest.raises(DataError, match="negated distances"):
        m.to_generator(np.array([0.2]))
    with pytest.raises(ConfigError, match="not supported"):
        ScoreMap("manhattan", 1.0)


def test_euclidean_common_norm_maps_back_to_cosine():
    """-r*sqrt(2(1-cos)) with delta_bar = 2 r^2 recovers the cosine exactly."""
    r = 1.47
    cos = np.linspace(-0.5, 1.0, 7)
    m = ScoreMap("euclidean", 2 * r * r)
    np.testing.assert_allclose(m.to_generator(-r * np.sqrt(2 * (1 - cos))), cos, atol=1e-12)


def test_recovers_known_parameters(cosine_run):
    comp, metrics = cosine_run
    res = calibrate(comp, metrics, attribute="group", dim=DIM, image_noise_sd=0.2, dissimilarity_scale=1.0, n_draws=8000)
    assert res.dim == DIM and res.image_noise_sd == 0.2
    for g, p in TRUE.items():
        fit = res.groups[g]
        assert fit.identity_spread == pytest.approx(p["identity_spread"], rel=0.08), g
        assert fit.image_noise == pytest.approx(p["image_noise"], rel=0.12), g
        assert fit.subjects == p["subjects"] and fit.images_per_subject == 2 and fit.fta_rate == 0.0
        assert fit.ks_nonmated < 0.05
    assert res.excluded == {}


def test_default_anchor_is_mean_cross_group_dissimilarity():
    comp, metrics = _synthetic_run(radius=1.3)
    res = calibrate(comp, metrics, attribute="group", dim=DIM, image_noise_sd=0.2, n_draws=4000)
    cross = (~comp["mated"]) & (comp["group_a"].astype(str) != comp["group_b"].astype(str))
    assert res.score_map.metric == "euclidean"
    assert res.score_map.dissimilarity_scale == pytest.approx(float((comp["score"][cross] ** 2).mean()))
    # the run's threshold is translated to the generator scale
    assert res.thresholds[0]["generator_threshold"] == pytest.approx(float(res.score_map.to_generator(res.thresholds[0]["threshold"])))


def test_errors_are_named(cosine_run):
    comp, metrics = cosine_run
    with pytest.raises(DataError, match="no group has"):
        calibrate(comp, metrics, attribute="group", min_subjects=500, dim=DIM, image_noise_sd=0.2, n_draws=2000)
    with pytest.raises(DataError, match="attributes present"):
        calibrate(comp, metrics, attribute="face_eth", dim=DIM, image_noise_sd=0.2, n_draws=2000)
    with pytest.raises(DataError, match="supports"):
        calibrate(comp, {**metrics, "model": {"metric": "hamming"}}, attribute="group")
    with pytest.raises(ConfigError, match="dim"):
        calibrate(comp, metrics, attribute="group", dim=2)


def test_cli_writes_a_config_that_instantiates(tmp_path, cosine_run):
    comp, metrics = cosine_run
    run = tmp_path / "run"
    run.mkdir()
    comp.to_parquet(run / "scores.parquet")
    (run / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "syn.yaml"
    code = calibrate_main([str(run), "--attribute", "group", "--dim", str(DIM), "--image-noise-sd", "0.2", "--draws", "3000",
                           "--output", str(out), "--figure-dir", str(tmp_path / "fig"), "--name", "syn", "--no-figure"])
    assert code == 0
    text = out.read_text()
    assert text.startswith("# SYNTHETIC population")
    cfg = OmegaConf.create(yaml.safe_load(text))
    cfg.loader.seed = 0  # ${seed} is resolved by the app config
    pop = instantiate_bench(cfg.loader)
    assert isinstance(pop, SyntheticPopulation) and pop.dim == DIM and set(pop.specs) == {"A", "B"}
    assert cfg.calibration.synthetic is True and cfg.calibration.source.run_name == "synthetic_check"
    summary = json.loads((tmp_path / "fig" / "calibration.json").read_text())
    assert summary["groups"]["A"]["subjects"] == 160
    # a folder without scores.parquet: exit code 2 and the reason on stderr
    (run / "scores.parquet").unlink()
    assert calibrate_main([str(run)]) == 2
    with pytest.raises(DataError, match="scores.parquet"):
        read_run(run)


def test_figure_is_written(tmp_path, cosine_run):
    comp, metrics = cosine_run
    res = calibrate(comp, metrics, attribute="group", dim=DIM, image_noise_sd=0.2, dissimilarity_scale=1.0, n_draws=2000)
    path = plot_calibration(res, comp, tmp_path / "c.png", n_truth=3000)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_published_london_fit_is_reproducible():
    """The published config equals a refit of the London run (dim and noise heterogeneity fixed
    to the published values; the per-group fit is deterministic)."""
    published = yaml.safe_load((REPO / "configs" / "dataset" / "synthetic_london_dlib.yaml").read_text())
    assert published["calibration"]["synthetic"] is True
    run = REPO / "results" / "frl_london_dlib"
    if not (run / "scores.parquet").is_file():
        pytest.skip("results/frl_london_dlib/scores.parquet absent (run `fvbench experiment=frl_london_dlib` to create it)")
    scores, metrics = read_run(run)
    groups = published["loader"]["groups"]
    sd = next(iter(groups.values()))["image_noise_sd"]
    res = calibrate(scores, metrics, attribute="face_eth", dim=published["loader"]["dim"], image_noise_sd=sd)
    assert res.score_map.dissimilarity_scale == pytest.approx(published["calibration"]["score_map"]["dissimilarity_scale"], rel=1e-9)
    for label, fit in res.groups.items():
        assert fit.identity_spread == pytest.approx(groups[fit.key]["identity_spread"], abs=2e-3), label
        assert fit.image_noise == pytest.approx(groups[fit.key]["image_noise"], abs=2e-3), label
    # the one-person group is withheld from the published run (PRIVACY.md), so it is neither fitted nor listed
    assert "east_asian/white" not in res.excluded and all(fit.key != "east_asian/white" for fit in res.groups.values())
    assert set(groups) == {fit.key for fit in res.groups.values()}
