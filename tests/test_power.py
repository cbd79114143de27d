"""fvbench-power: scenario solving, bootstrap equivalence, known binomial answer, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.synthetic.generator import GroupSpec, SyntheticPopulation
from bench.errors import ConfigError
from bench.metrics.bootstrap import bootstrap_replicates
from bench.synthetic.power import (
    _group_counts,
    _replicate_rates,
    binomial_power,
    make_scenario,
    normal_subjects,
    power_main,
    required_subjects,
    simulate_power,
)
from bench.protocol.pairs import all_pairs, comparison_table
from bench.protocol.scoring import similarity_matrix
from bench.synthetic.truth import group_truth

REF = GroupSpec(subjects=1, images_per_subject=2, identity_spread=1.3, image_noise=0.55, image_noise_sd=0.2)
DIM = 24


@pytest.fixture(scope="module")
def fnmr_scenario():
    return make_scenario(REF, DIM, target_fmr=0.02, fmr_ratio=1.0, fnmr_difference=0.08, n_truth=50_000)


def test_scenario_hits_the_requested_true_rates(fnmr_scenario):
    sc = make_scenario(REF, DIM, target_fmr=1e-2, fmr_ratio=2.0, fnmr_difference=0.03, n_truth=50_000)
    assert sc.true_rates["FMR"][0] == pytest.approx(1e-2, rel=1e-6)  # on the scenario's own draws
    assert sc.true_rates["FMR"][1] == pytest.approx(2e-2, rel=1e-6)
    assert sc.true_rates["FNMR"][1] - sc.true_rates["FNMR"][0] == pytest.approx(0.03, abs=1e-6)
    # independent ground truth (fresh draws) agrees with the solved rates
    t = group_truth(sc.comparison, DIM, n_samples=100_000, seed=5)
    assert t.fmr([sc.threshold])[0] == pytest.approx(2e-2, rel=0.04)
    assert sc.comparison.identity_spread < REF.identity_spread  # more alike strangers -> more false matches
    assert sc.comparison.image_noise > REF.image_noise  # noisier images -> more false non-matches
    with pytest.raises(ConfigError, match="target_fmr"):
        make_scenario(REF, DIM, target_fmr=1.5)


def test_fast_bootstrap_equals_bench_metrics_bootstrap():
    """With the same subject draws, the power module's replicate rates are exactly those of
    bench.metrics.bootstrap (two-subject FMR, cluster FNMR; metrics-reference §5.2-5.3)."""
    n, m, thr, seed = 30, 3, 0.45, 17
    spec = GroupSpec(n, m, 1.2, 0.5)
    counts = _group_counts(spec, DIM, n, m, thr, seed)
    pop = SyntheticPopulation({"g": {"subjects": n, "images_per_subject": m, "identity_spread": 1.2, "image_noise": 0.5}}, dim=DIM, seed=seed)
    manifest, emb, _ = pop.generate()
    ia, ib, mated = all_pairs(manifest.table["subject_id"].to_numpy())
    comp = comparison_table(manifest.table, manifest.group_labels(["group"]), ia, ib, mated, similarity_matrix(emb, "cosine")[ia, ib])
    reps = bootstrap_replicates(comp, attribute="group", thresholds={"t": thr}, n_replicates=40, seed=3)
    assert list(reps.subject_ids) == sorted(manifest.table["subject_id"].unique())
    fmr, fnmr = _replicate_rates(counts, reps.subject_counts)
    col = reps.groups.index("g")
    np.testing.assert_allclose(fmr, reps.rates("t", "FMR")[:, col], rtol=1e-12)
    np.testing.assert_allclose(fnmr, reps.rates("t", "FNMR")[:, col], rtol=1e-12)


def test_simulated_power_matches_the_exact_binomial_answer(fnmr_scenario):
    """Two images per subject: FNMR counts are binomial, so the power of the bootstrap test is
    known exactly (binomial_power); the simulation agrees within 3.5 Monte Carlo SEs."""
    sc = fnmr_scenario
    p_ref, p_cmp = sc.true_rates["FNMR"]
    n, reps = 120, 200
    exact = binomial_power(p_ref, p_cmp, n, alpha=0.05)
    sim = simulate_power(sc, n, 2, replicates=reps, n_bootstrap=300, alpha=0.05, seed=1)
    se = math.sqrt(exact * (1 - exact) / reps)
    assert 0.2 < exact < 0.9  # an informative point of the curve
    assert abs(sim["power_FNMR"] - exact) < 3.5 * se, (sim["power_FNMR"], exact)
    # independent comparisons: design effect 1 (within the sampling error of a variance from 200 studies)
    assert sim["deff_FNMR"] == pytest.approx(1.0, abs=0.3)


def test_binomial_power_properties():
    # no difference: the test's size stays near alpha (percentile bootstrap, discrete)
    assert binomial_power(0.1, 0.1, 200, alpha=0.05) < 0.08
    # power grows with n and agrees with the normal approximation for large n
    p1, p2 = 0.05, 0.10
    powers = [binomial_power(p1, p2, n) for n in (100, 300, 600)]
    assert powers[0] < powers[1] < powers[2]
    n_normal = normal_subjects(p1, p2, 1.0, alpha=0.05, power=0.8)
    assert binomial_power(p1, p2, int(round(n_normal))) == pytest.approx(0.8, abs=0.04)
    # closed form of the normal approximation: (1.96 + 0.8416)^2 (0.0475 + 0.09) / 0.05^2
    z = stats.norm.isf(0.025) + stats.norm.ppf(0.8)
    assert n_normal == pytest.approx(z * z * (0.05 * 0.95 + 0.1 * 0.9) / 0.05**2)


def test_required_subjects_reads_the_curve():
    curve = pd.DataFrame({
        "subjects": [50, 100, 200, 400], "images_per_subject": 2,
        "power_FMR": [0.2, 0.5, 0.7, 0.9], "power_FNMR": [0.1, 0.2, 0.3, 0.4],
    })
    need = required_subjects(curve, 0.8).set_index("metric")
    assert need.loc["FMR", "subjects_needed"] == 400
    assert need.loc["FMR", "subjects_interpolated"] == pytest.approx(math.exp(math.log(200) + 0.5 * math.log(2)))
    assert math.isnan(need.loc["FNMR", "subjects_needed"])


def test_cli_writes_curve_and_answer(tmp_path, capsys):
    code = power_main(["--target-fmr", "0.02", "--fmr-ratio", "3", "--subjects", "20", "40", "--replicates", "6",
                       "--bootstrap", "100", "--truth-draws", "50000", "--out", str(tmp_path)])
    assert code == 0
    curve = pd.read_csv(tmp_path / "power.csv")
    assert list(curve["subjects"]) == [20, 40]
    info = json.loads((tmp_path / "power.json").read_text())
    assert info["scenario"]["true_rates"]["FMR"][1] == pytest.approx(0.06, rel=1e-6)
    assert info["reference_group"] == "white"  # largest group of the dlib x London calibration
    assert (tmp_path / "power.png").read_bytes()[:4] == b"\x89PNG"
    assert "FMR, 2 images/subject" in capsys.readouterr().out
    assert power_main(["--target-fmr", "0.01", "--out", str(tmp_path)]) == 2  # no differential requested


def test_cli_prints_one_answer_with_its_bracket_and_where_it_wrote(tmp_path, capsys):
    code = power_main(["--target-fmr", "0.02", "--fmr-ratio", "4", "--subjects", "5", "10", "20", "40", "--replicates", "10",
                       "--bootstrap", "100", "--truth-draws", "50000", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    answers = [line for line in out.splitlines() if line.startswith("fvbench-power: answer:")]
    assert len(answers) == 1
    need = json.loads((tmp_path / "power.json").read_text())["required"]
    fmr = [r for r in need if r["metric"] == "FMR"][0]
    if not math.isnan(fmr["subjects_below"]):
        assert f"interpolated between {int(fmr['subjects_below'])} subjects" in answers[0]
        assert f"and {int(fmr['subjects_needed'])} (power" in answers[0]
        assert fmr["subjects_below"] < fmr["subjects_interpolated"] <= fmr["subjects_needed"]
    assert f"about {math.ceil(fmr['subjects_interpolated'])} subjects per group" in answers[0]
    assert out.strip().splitlines()[-1] == f"fvbench-power: wrote {tmp_path / 'power.csv'}, {tmp_path / 'power.json'} and {tmp_path / 'power.png'}"


def test_power_answer_brackets():
    need = pd.DataFrame([{"metric": "FMR", "images_per_subject": 2, "subjects_needed": 400.0, "subjects_interpolated": 282.8,
                          "power_at_needed": 0.9, "subjects_below": 200.0, "power_below": 0.7}])
    from bench.synthetic.power import power_answer

    (line,) = power_answer(need, ["FMR"], target_power=0.8, alpha=0.05)
    assert line == ("fvbench-power: answer: about 283 subjects per group (2 images/subject) detect the FMR differential with power 0.8 "
                    "at alpha 0.05; interpolated between 200 subjects (power 0.70) and 400 (power 0.90)")


def test_every_option_has_help():
    import argparse
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        power_main(["--help"])
    text = buf.getvalue()
    for opt in ("--target-fmr", "--fmr-ratio", "--fnmr-difference", "--alpha", "--power", "--images-per-subject", "--subjects",
                "--dataset-config", "--reference-group", "--replicates", "--bootstrap", "--seed", "--truth-draws", "--out", "--progress"):
        block = text.split(opt, 1)[1].split("\n  -", 1)[0]
        assert len(block.split()) > 2, f"{opt} has no help text"
