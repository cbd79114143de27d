"""``fvbench-verify``: an untouched run verifies; every kind of tampering is caught (issues #6, #9).

Hostile folders (code execution, malformed files, forged published content) are in
``tests/test_verify_hostile.py``.

One small synthetic run is made with the real CLI (into tmp_path); each test copies its
folder and changes one thing: a rate in metrics.json, a CSV cell, a score in
scores.parquet, a threshold, the suppression list, the manifest or weights hash.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.report.folder import write_file_manifest
from bench.verify import verify_main, verify_run

REPO = Path(__file__).resolve().parents[1]
RUN = "synthetic__generator"


def _smoke_groups() -> list[str]:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return sorted(compose(config_name="fvbench", overrides=["debug=smoke"]).dataset.loader.groups)


SMALL = _smoke_groups()[-1]  # shrunk to 3 subjects: published as counts only


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("verify")
    cmd = [
        sys.executable, "-m", "bench", "debug=smoke", "++protocol.bootstrap_replicates=20", f"dataset.loader.groups.{SMALL}.subjects=3", "report.figures=true",
        f"hydra.run.dir={tmp / 'hydra'}", f"paths.results_dir={tmp / 'results'}", f"paths.cache_dir={tmp / 'cache'}",
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return tmp / "results" / RUN


@pytest.fixture
def copy(run_dir, tmp_path) -> Path:
    dst = tmp_path / RUN
    shutil.copytree(run_dir, dst)
    return dst


def _attr_groups(folder: Path) -> tuple[str, list[str]]:
    """The run's (first) attribute and its groups, whatever the synthetic config names them."""
    m = json.loads((folder / "metrics.json").read_text())
    attr = m["protocol"]["attributes"][0]
    return attr, sorted(m["dataset"]["subjects_per_group"][attr])


def _reseal(folder: Path) -> None:
    """Rewrite files.sha256 after an edit, as a careful tamperer would: the recomputation
    must still catch the edit (the file manifest alone is tested separately)."""
    write_file_manifest(folder)


def _edit_metrics(folder: Path, edit) -> None:
    m = json.loads((folder / "metrics.json").read_text())
    edit(m)
    (folder / "metrics.json").write_text(json.dumps(m, indent=2))
    _reseal(folder)


def test_edited_report_or_leftover_file_is_caught_by_the_file_manifest(copy):
    (copy / "report.md").write_text((copy / "report.md").read_text().replace("FMR", "FNMR", 1))
    (copy / "det_leftover.png").write_bytes(b"from another run")
    report = _fast(copy, check_dataset=False)
    detail = next(c.detail for c in report.mismatches if c.name == "files")
    assert "report.md: changed since the run wrote it" in detail and "det_leftover.png: not written by this run" in detail


def _fast(folder: Path, **kw):
    kw.setdefault("check_bootstrap", False)
    kw.setdefault("check_figures", False)
    kw.setdefault("check_weights", False)
    return verify_run(folder, **kw)


def test_untouched_run_verifies_with_exit_0(run_dir, capsys):
    assert verify_main([str(run_dir), "--skip-bootstrap"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("OK (1 skipped)") and "[skipped ] bootstrap" in out, out
    report = verify_run(run_dir)  # everything, the bootstrap re-drawn with the recorded seed
    statuses = {c.name: c.status for c in report.checks}
    assert statuses.pop("provenance") == "info" and statuses.pop("source") == "info"
    assert set(statuses.values()) == {"ok"}, report.to_text()
    assert "figure(s) equal their re-rendering" in report.detail("figures")  # score distributions too: from scores.parquet
    assert "figures (DET, score distributions)" not in statuses  # nothing skipped with the score table
    # everything published was recomputed: thresholds, tables, their CSVs, the inputs' hashes
    attr, _ = _attr_groups(run_dir)
    assert {"thresholds", "per_group", "per_group.csv", "eer", "eer.csv", f"cross_group_fmr[{attr}]", "dataset", "weights", "suppression", "scores", "report.md", "model", "privacy"} <= set(statuses)
    per_group = next(c for c in report.checks if c.name == "per_group")
    assert "not recomputed" not in per_group.detail  # bootstrap intervals re-drawn too
    suppression = next(c for c in report.checks if c.name == "suppression")
    # the small group's subjects are withheld from every number (issue #9): nothing is shown as counts only
    assert "counts only: none" in suppression.detail


def test_tampered_rate_in_metrics_json_is_named(copy, capsys):
    _, groups = _attr_groups(copy)

    def edit(m):
        row = next(r for r in m["per_group"] if r["group"] == groups[0] and r["metric"] == "FNMR")
        row["rate"] = row["rate"] + 0.01

    _edit_metrics(copy, edit)
    assert verify_main([str(copy), "--skip-bootstrap", "--skip-weights", "--skip-figures"]) == 1
    out = capsys.readouterr().out
    assert "[mismatch] per_group\n" in out and f"{groups[0]}/FMR=1e-02/FNMR rate: stored" in out
    assert "[mismatch] per_group.csv = metrics.json" in out and "[ok      ] per_group.csv\n" in out  # the CSV still agrees with the scores


def test_tampered_csv_cell_is_caught(copy):
    _, groups = _attr_groups(copy)
    pg = pd.read_csv(copy / "per_group.csv", keep_default_na=False, na_values=[""])
    i = pg.index[(pg["group"] == groups[1]) & (pg["metric"] == "FMR")][0]
    pg.loc[i, "errors"] += 1
    pg.to_csv(copy / "per_group.csv", index=False)
    _reseal(copy)
    report = _fast(copy, check_dataset=False)
    # report.md is rendered from the CSV tables, so it no longer matches the edited one either
    assert {c.name for c in report.mismatches} == {"per_group.csv", "per_group.csv = metrics.json", "report.md"}
    assert f"{groups[1]}/FMR=1e-02/FMR errors" in report.detail("per_group.csv")


def test_tampered_score_changes_recomputed_metrics(copy):
    scores = pd.read_parquet(copy / "scores.parquet")
    t = json.loads((copy / "metrics.json").read_text())["thresholds"][0]["threshold"]
    i = scores.index[scores["mated"] & (scores["score"] >= t)][0]
    attr, _ = _attr_groups(copy)
    scores.loc[i, "score"] = -1.0  # a genuine match turned into a false non-match
    scores.to_parquet(copy / "scores.parquet", index=False)
    report = _fast(copy, check_dataset=False)
    bad = {c.name for c in report.mismatches}
    assert {"per_group", "per_group.csv", "eer", "eer.csv"} <= bad
    detail = next(c.detail for c in report.mismatches if c.name == "per_group")
    assert f"{attr}/(all)/FMR=1e-02/FNMR errors: stored" in detail  # the first of the changed cells


def test_tampered_threshold_and_count_are_caught(copy):
    def edit(m):
        m["thresholds"][0]["threshold"] += 1e-6
        m["dataset"]["mated_comparisons"] += 1

    _edit_metrics(copy, edit)
    report = _fast(copy, check_dataset=False)
    bad = {c.name: c.detail for c in report.mismatches}
    assert "FMR=1e-02 threshold: stored" in bad["thresholds"]
    assert "dataset.mated_comparisons: stored" in bad["scores"]


def test_suppression_must_follow_min_group_subjects(copy):
    _edit_metrics(copy, lambda m: m["suppression"].update(min_group_subjects=1000))
    report = _fast(copy, check_dataset=False)
    assert "suppression" in {c.name for c in report.mismatches}
    assert "groups with < 1000 subjects" in report.detail("suppression")


def test_manifest_hash_mismatch(copy):
    _edit_metrics(copy, lambda m: m["dataset"].update(manifest_sha256="0" * 64))
    report = _fast(copy)
    assert {c.name for c in report.mismatches} == {"dataset", "report.md", "report.html"}  # both reports print the hash too
    assert "manifest SHA-256 stored 0000" in report.detail("dataset")


def test_frl_london_manifest_hash_and_dataset_root(copy, london, tmp_path, capsys):
    from bench.data.frl_london import load_frl_london

    digest = load_frl_london(london).content_hash()

    old = json.loads((copy / "metrics.json").read_text())["dataset"]["manifest_sha256"]

    def edit(m):
        m["config"]["dataset"]["loader"] = {"_target_": "bench.data.frl_london.load_frl_london", "root": str(tmp_path / "moved")}
        m["dataset"]["manifest_sha256"] = digest

    (copy / "report.md").write_text((copy / "report.md").read_text().replace(old, digest))
    _edit_metrics(copy, edit)
    from bench.report.html import write_html_report

    write_html_report(copy)  # the page shows the hash too (issue 15)
    _reseal(copy)
    report = _fast(copy)
    check = next(c for c in report.checks if c.name == "dataset")
    assert check.status == "skipped" and "pass --dataset-root" in check.detail
    assert verify_main([str(copy), "--skip-bootstrap", "--skip-weights", "--skip-figures", "--require-all"]) == 3
    capsys.readouterr()
    assert _fast(copy, dataset_root=london).status("dataset") == "ok"
    _edit_metrics(copy, lambda m: m["dataset"].update(manifest_sha256=digest[::-1]))
    assert _fast(copy, dataset_root=london).status("dataset") == "mismatch"


def test_weights_hash_is_compared_with_the_shipped_registry(copy):
    from bench.models.weights import WEIGHTS_REGISTRY

    registry = {f.filename: f.sha256 for f in WEIGHTS_REGISTRY["dlib_resnet"].files}

    def edit(m):
        m["model"].update(name="dlib_resnet", weights_sha256=dict(registry), weights_verified=True, unverified_weights=[])
        m["config"]["model"]["name"] = "dlib_resnet"

    _edit_metrics(copy, edit)
    assert _fast(copy, check_weights=True, check_dataset=False).status("weights") == "ok"
    tampered = dict(registry, **{"shape_predictor_5_face_landmarks.dat": "f" * 64})
    _edit_metrics(copy, lambda m: m["model"].update(weights_sha256=tampered))  # still claims weights_verified=True
    report = _fast(copy, check_weights=True, check_dataset=False)
    assert report.status("weights") == "mismatch" and "the recorded hashes against the shipped registry give" in report.detail("weights")
    _edit_metrics(copy, lambda m: m["model"].update(weights_verified=False, unverified_weights=["shape_predictor_5_face_landmarks.dat"]))
    report = _fast(copy, check_weights=True, check_dataset=False)
    assert report.status("weights") == "mismatch" and "registry c4b1e980" in report.detail("weights")
    _edit_metrics(copy, lambda m: m["model"].update(name="my_own_model"))
    assert _fast(copy, check_weights=True, check_dataset=False).status("weights") == "skipped"


def test_recorded_config_cannot_run_code_outside_bench(copy, tmp_path):
    marker = tmp_path / "pwned"
    _edit_metrics(copy, lambda m: m["config"]["dataset"].update(loader={"_target_": "bench.report.provenance.subprocess.getoutput", "cmd": f"touch {marker}"}))
    report = _fast(copy)
    assert report.status("dataset") == "skipped" and "is not one this package can rebuild" in report.detail("dataset")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["bad_json", "no_folder", "old_schema"])
def test_unreadable_run_folder_exits_2(copy, capsys, damage):
    target = copy
    if damage == "bad_json":
        (copy / "metrics.json").write_text("{not json")
    elif damage == "no_folder":
        target = copy / "nope"
    else:
        _edit_metrics(copy, lambda m: m.update(schema_version=999))
    assert verify_main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fvbench-verify: cannot verify") and err.count("\n") == 1
    expected = {"bad_json": "is not valid JSON", "no_folder": "does not exist", "old_schema": "schema_version 999 is not supported"}
    assert expected[damage] in err


def test_without_scores_everything_is_checked_from_the_counts(copy, capsys):
    """A published folder (no scores.parquet) verifies from its counts and says what needs the score table."""
    (copy / "scores.parquet").unlink()
    assert verify_main([str(copy), "--skip-weights", "--skip-figures"]) == 0
    out = capsys.readouterr().out
    assert "published folder (no scores.parquet)" in out and "skipped: needs scores.parquet" in out
    report = _fast(copy, check_dataset=False)
    assert report.status("per_group") == "ok" and report.status("differentials") == "ok" and report.status("eer") == "skipped"
    _edit_metrics(copy, lambda m: next(r for r in m["per_group"] if r["metric"] == "FMR" and r["errors"]).update(rate=0.5))
    report = _fast(copy, check_dataset=False)
    assert "per_group" in {c.name for c in report.mismatches}


def test_verify_does_not_write_into_the_run_folder(run_dir):
    before = {p: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    verify_run(run_dir, check_bootstrap=False, check_weights=False)
    assert {p: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before
    assert os.listdir(run_dir) == [p.name for p in before]


def test_stale_embedding_export_is_flagged(copy):
    (copy / "embeddings.npz").write_bytes(b"left over from another run")
    report = _fast(copy, check_dataset=False)
    assert report.status("privacy") == "mismatch" and "metrics.json records no export" in report.detail("privacy")


def test_swapped_score_figure_is_caught_when_the_scores_are_present(copy):
    """Score-distribution (and DET) figures are re-rendered from scores.parquet (issue #9)."""
    attr, _ = _attr_groups(copy)
    det, scores = copy / f"fmr_matrix_{attr}.png", copy / f"scores_{attr}.png"
    a, b = det.read_bytes(), scores.read_bytes()
    det.write_bytes(b)
    scores.write_bytes(a)
    _reseal(copy)
    report = _fast(copy, check_dataset=False, check_figures=True)
    assert {c.name for c in report.mismatches} == {"figures", "report.html"}  # the page embeds the figures (issue 15)
    assert f"fmr_matrix_{attr}.png: differs" in report.detail("figures") and f"scores_{attr}.png: differs" in report.detail("figures")


def test_recorded_synthetic_population_is_not_regenerated_without_bound(copy):
    """A folder cannot make verify allocate without limit: a huge recorded population is not rebuilt."""
    def edit(m):
        for g in m["config"]["dataset"]["loader"]["groups"].values():
            g["subjects"] = 10**9

    _edit_metrics(copy, edit)
    report = _fast(copy)
    assert report.status("dataset") == "skipped" and "more than verify rebuilds" in report.detail("dataset")
