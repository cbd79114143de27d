"""protocol=identification end to end (issue 13): synthetic run, result folder, verify, refusals.

The numbers themselves are checked against hand vectors in test_identification.py; here:
the pipeline writes what it promises, fvbench-verify recomputes it (and catches a tampered
cell), failures to acquire reach the per-group counts, and datasets whose permitted uses
rule identification out are refused before any computation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.synthetic.generator import SyntheticPopulation
from bench.errors import ConfigError
from bench.identification_run import IdentificationProtocol, check_permitted_uses, evaluate_identification
from bench.report.identification import write_identification
from bench.verify import verify_run

REPO = Path(__file__).resolve().parents[1]
GROUPS = {
    "A": {"subjects": 60, "images_per_subject": 2, "identity_spread": 1.1, "image_noise": 0.25, "image_noise_sd": 0.2, "fta_rate": 0.05},
    "B": {"subjects": 40, "images_per_subject": 3, "identity_spread": 1.8, "image_noise": 0.3, "image_noise_sd": 0.2},
    "C": {"subjects": 3, "images_per_subject": 2, "identity_spread": 2.4, "image_noise": 0.2},
}
USES = {"uses": ["identification_research"], "source": "synthetic"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pop = SyntheticPopulation(GROUPS, dim=16, seed=4)
    protocol = IdentificationProtocol(target_fpirs=[5e-2, 1e-3], bootstrap_replicates=50, gallery_redraws=3,
                                      gallery_sizes=[0.5, 1.0], gallery_size_draws=3, candidate_list_length=10, ranks=[1, 3])
    res = evaluate_identification(pop, None, protocol, cache_dir=tmp_path_factory.mktemp("cache"), progress=False, permitted_uses=USES)
    out = tmp_path_factory.mktemp("res") / "ident"
    write_identification(res, out, run_name="ident", config={"protocol": {**protocol.__dict__}}, min_group_subjects=5)
    return res, out


def test_result_folder(run):
    res, out = run
    m = json.loads((out / "metrics.json").read_text())
    ident = m["identification"]
    th = {t["name"]: t for t in ident["thresholds"]}
    assert th["FPIR=1e-03"]["status"] == "refused"  # ~120 non-mated searches cannot resolve 1e-3
    assert th["FPIR=5e-02"]["status"] == "ok" and th["FPIR=5e-02"]["achieved_fpir"] <= 0.05
    pg = pd.read_csv(out / "identification_per_group.csv")
    assert {"FPIR", "FNIR_rank1", "FNIR_rank3", "SEL", "FTA_probe"} <= set(pg["metric"])
    # group C has 3 subjects: published as counts only
    c = pg[(pg["group"] == "C") & (pg["metric"] == "FPIR")]
    assert c["rate"].isna().all() and (c["flag"] == "suppressed_small_group").all()
    # FTA: only group A images fail (5%); every failed probe is in A's FTA_probe count
    fta_a = pg[(pg["group"] == "A") & (pg["metric"] == "FTA_probe")].iloc[0]
    failed = int((~res.split.probe_acquired).sum())
    assert failed > 0 and fta_a["errors"] == failed
    assert pg[(pg["group"] == "B") & (pg["metric"] == "FTA_probe")].iloc[0]["errors"] == 0
    for f in ("ident_rates_group.png", "ident_false_candidates_group.png", "ident_gallery_size_group.png", "report.md",
              "identification_gallery_size.csv", "identification_cross_fmr.csv"):
        assert (out / f).is_file(), f
    assert "who is harmed" in (out / "report.md").read_text()
    size = pd.read_csv(out / "identification_gallery_size.csv")
    assert set(size["gallery_fraction"]) == {0.5, 1.0}
    mix = pd.read_csv(out / "identification_gallery_composition.csv")
    assert set(mix["share"]) == {0.0, 0.25, 0.5, 0.75, 1.0}
    # share 1 of group A: every gallery is all A, so the prediction is 1 - (1 - FMR_BA)^N0 exactly
    a1 = mix[(mix["varied_group"] == "A") & (mix["share"] == 1.0) & (mix["probe_group"] == "B")].iloc[0]
    cross = pd.read_csv(out / "identification_cross_fmr.csv")
    fmr_ba = cross[(cross["attribute"] == "group") & (cross["probe_group"] == "B") & (cross["gallery_group"] == "A")]["fmr"].iloc[0]
    assert a1["fpir_predicted"] == pytest.approx(1 - (1 - fmr_ba) ** a1["gallery_size"], rel=1e-9)
    assert (out / "ident_gallery_mix_group.png").is_file()


def test_every_failure_counted(run):
    res, _ = run
    pop = SyntheticPopulation(GROUPS, dim=16, seed=4)
    _, _, acquired = pop.generate()
    split_counts = res.split_counts[res.split_counts["attribute"] == "group"]
    counted = int(split_counts[["gallery_fte", "mated_search_fta", "nonmated_search_fta"]].to_numpy().sum())
    assert counted == int((~acquired).sum()) > 0


def test_verify_and_tamper(run, tmp_path):
    _, out = run
    report = verify_run(out, check_dataset=False, check_weights=False)
    assert report.ok, report.to_text()
    assert report.status("identification_per_group") == "ok"
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(out, bad)
    m = json.loads((bad / "metrics.json").read_text())
    row = next(r for r in m["identification"]["per_group"] if r["metric"] == "FPIR" and r["group"] == "(all)" and r["rate"])
    row["rate"] *= 0.5
    (bad / "metrics.json").write_text(json.dumps(m))
    report = verify_run(bad, check_dataset=False, check_weights=False)
    assert report.status("identification_per_group") == "mismatch"


def test_permitted_uses_refusal():
    with pytest.raises(ConfigError, match="does not permit identification research.*no biometric identification"):
        check_permitted_uses("restricted", {"uses": ["verification_research"], "reason": "no biometric identification"})
    with pytest.raises(ConfigError, match="does not state permitted_uses"):
        check_permitted_uses("unknown", None)
    check_permitted_uses("ok", ["identification_research"])


def test_protocol_config_errors():
    with pytest.raises(ConfigError, match="enrolled_fraction"):
        IdentificationProtocol(enrolled_fraction=1.5)
    with pytest.raises(ConfigError, match="ranks"):
        IdentificationProtocol(candidate_list_length=5, ranks=[10])
    with pytest.raises(ConfigError, match="target_fpirs"):
        IdentificationProtocol(target_fpirs=[2.0])


def test_cli_identification_and_refusal(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "FVBENCH_RESULTS_DIR": str(tmp_path), "FVBENCH_CACHE": str(tmp_path / "c")}
    base = [sys.executable, "-m", "bench", "protocol=identification", "progress=false", "report.figures=false",
            "protocol.bootstrap_replicates=20", "protocol.gallery_redraws=null", "protocol.gallery_sizes=[1.0]", "dataset.loader.subjects_scale=1"]
    r = subprocess.run([*base, "run_name=cli_ident"], env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "cli_ident" / "identification_per_group.csv").is_file()
    r = subprocess.run([*base, "run_name=refused", "dataset.permitted_uses.uses=[verification_research]"], env=env, capture_output=True,
                       text=True, cwd=REPO, timeout=300)
    assert r.returncode == 2 and "does not permit identification research" in r.stderr
    assert not (tmp_path / "refused").exists()
