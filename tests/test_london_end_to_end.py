"""End to end on the real consented London set with the real dlib model (issue #2).

Runs the installed ``fvbench`` command as a user would, into temporary folders,
twice: the second run must come from the embedding cache and give a
byte-identical metrics.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(tmp: Path, london: Path, progress: bool = False) -> tuple[dict, str]:
    env = {**os.environ, "FVBENCH_DATA_DIR": str(london.parent), "FVBENCH_CACHE": str(tmp / "cache")}
    cmd = [
        sys.executable, "-m", "bench", "experiment=frl_london_dlib", f"progress={str(progress).lower()}",
        f"paths.results_dir={tmp / 'results'}", f"hydra.run.dir={tmp / 'hydra'}",
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp / "results" / "frl_london_dlib" / "metrics.json").read_text()), done.stdout + done.stderr


@pytest.fixture(scope="module")
def london_runs(tmp_path_factory, london):
    tmp = tmp_path_factory.mktemp("london")
    first, log1 = _run(tmp, london, progress=False)  # cold cache, no progress bars
    text1 = (tmp / "results" / "frl_london_dlib" / "metrics.json").read_bytes()
    second, log2 = _run(tmp, london, progress=True)  # warm cache, progress bars
    text2 = (tmp / "results" / "frl_london_dlib" / "metrics.json").read_bytes()
    return tmp / "results" / "frl_london_dlib", first, second, text1, text2, log1, log2


def test_counts(london_runs):
    out, m, *_ = london_runs
    d = m["dataset"]
    assert d["images"] == 204 and d["subjects"] == 102
    assert d["mated_comparisons"] == 102
    # all unordered image pairs of different subjects: C(204, 2) - 102 = 20,604
    assert d["nonmated_comparisons"] == 20_604
    assert d["label_source"] == ["self-reported"]
    pg = pd.read_csv(out / "per_group.csv", keep_default_na=False, na_values=[""])
    fta = pg[(pg.metric == "FTA") & (pg.group == "(all)")]
    assert set(fta.attribute) == {"face_eth", "face_gender", "face_eth&face_gender"}
    assert (fta.comparisons == 204).all()
    assert d["images_acquired"] == 204 - int(fta.errors.iloc[0])
    groups = set(pg.group)
    assert {"black", "east_asian", "west_asian", "white", "female", "male", "east_asian/white"} <= groups
    # per-group FMR comparisons: both subjects in the group, all image pairs: 4 * C(n, 2) for n subjects
    fmr = pg[(pg.metric == "FMR") & (pg.threshold_name == "nominal") & (pg.attribute == "face_eth")].set_index("group")
    assert fmr.loc["black", "comparisons"] == 4 * 13 * 12 // 2
    assert fmr.loc["white", "comparisons"] == 4 * 69 * 68 // 2
    fnmr = pg[(pg.metric == "FNMR") & (pg.threshold_name == "nominal") & (pg.attribute == "face_gender")].set_index("group")
    assert fnmr.loc["female", "comparisons"] == 49 and fnmr.loc["male", "comparisons"] == 53


def test_thresholds_and_provenance(london_runs):
    _, m, *_ = london_runs
    th = {t["name"]: t for t in m["thresholds"]}
    assert th["nominal"]["threshold"] == -0.6
    cal = th["FMR=1e-03"]
    # order-statistic rule: k = floor(1e-3 * 20604) = 20, achieved FMR never above target
    assert cal["k"] == 20 and cal["n_nonmated"] == 20_604
    assert cal["achieved_fmr"] <= 1e-3
    assert cal["support"] == "low"  # 20,604 < 30 / 1e-3 (rule of 30)
    assert len(m["dataset"]["manifest_sha256"]) == 64
    assert m["model"]["weights_sha256"]["dlib_face_recognition_resnet_model_v1.dat"].startswith("55533b28")
    assert m["model"]["settings"]["acquisition"]["detect_max_side"] == 400
    assert m["provenance"]["packages"]["dlib-bin"]
    assert m["config"]["model"]["name"] == "dlib_resnet"


def test_rerun_uses_cache_and_is_byte_identical(london_runs):
    """Run-time flags (progress bars, cache location, cache hits) are not part of the
    recorded experiment: a warm-cache rerun with progress bars writes the same bytes."""
    *_, text1, text2, log1, log2 = london_runs
    assert "0 of 204 embeddings from the cache" in log1
    assert "204 of 204 embeddings from the cache" in log2
    assert text1 == text2
    m = json.loads(text1)
    assert "cache_hits" not in m["model"]
    assert "progress" not in m["config"] and set(m["config"]["paths"]) == {"data_dir"}


def test_figures_and_report_written(london_runs):
    out, *_ = london_runs
    eer = pd.read_csv(out / "eer.csv")
    for attr, name in (("face_eth", "face_eth"), ("face_gender", "face_gender"), ("face_eth&face_gender", "face_eth_x_face_gender")):
        for kind in ("error_rates", "fmr_matrix"):
            f = out / f"{kind}_{name}.png"
            assert f.stat().st_size > 10_000, f
        # a DET is drawn unless every group's EER is 0 (it would run along the axes, docs/protocol.md §1.3)
        all_zero = (eer.loc[eer.attribute == attr, "eer"].dropna() == 0).all()
        assert (out / f"det_{name}.png").exists() != all_zero
    report = (out / "report.md").read_text()
    assert "FMR=1e-03" in report
    assert ("No DET figure for face_eth" in report) == (eer.loc[eer.attribute == "face_eth", "eer"].dropna() == 0).all()
    # small groups (< 5 subjects) are published as counts only
    pg = pd.read_csv(out / "per_group.csv", keep_default_na=False, na_values=[""])
    small = pg[(pg.group == "east_asian/white") & (pg.metric == "FNMR")]
    assert (small.flag == "suppressed_small_group").all() and small.rate.isna().all()
