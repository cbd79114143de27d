"""Privacy (issue #6, design.md "Privacy"): no embeddings, crops or images under results/
unless explicitly exported (with a printed and recorded warning); the subjects of groups
smaller than ``report.min_group_subjects`` are withheld from every published number -- the
CSV tables, metrics.json, report.md and the figures (issue #9; the London subtraction
scenario is tests/test_privacy_subtraction.py).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report.export import EXPORT_FILE, WARNING_FILE

REPO = Path(__file__).resolve().parents[1]
RUN = "synthetic__generator"


def _smoke_groups() -> list[str]:
    """Group names of the synthetic population under debug=smoke (the config owns them)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="fvbench", overrides=["debug=smoke"])
    return sorted(cfg.dataset.loader.groups)


SMALL = _smoke_groups()[0]  # shrunk to 3 subjects, below report.min_group_subjects = 5
RATE_COLUMNS = ["rate", "wilson_low", "wilson_high", "cp_low", "cp_high", "upper_bound_95", "boot_low", "boot_high"]

#: What a result folder may hold by default: aggregates, the score table and plots.
ALLOWED = re.compile(r"^(metrics\.json|report\.md|report\.html|files\.sha256|scores\.parquet|[a-z_]+\.csv|cross_group_fmr_[\w]+\.csv|(det|error_rates|fmr_matrix|scores)_[\w]+\.png)$")
IMAGE_OR_ARRAY = re.compile(r"\.(jpe?g|png|bmp|tiff?|webp|gif|npy|npz|pt|pth|pkl|pickle|h5|onnx)$", re.I)


def _cli(tmp: Path, name: str, *extra: str):
    cmd = [
        sys.executable, "-m", "bench", "debug=smoke", "report.figures=true", "++protocol.bootstrap_replicates=20",
        f"dataset.loader.groups.{SMALL}.subjects=3",
        f"hydra.run.dir={tmp / ('hydra_' + name)}", f"paths.results_dir={tmp / name}", f"paths.cache_dir={tmp / 'cache'}", *extra,
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return tmp / name / RUN, done


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("privacy")
    out, done = _cli(tmp, "default")
    return tmp, out, done


@pytest.fixture(scope="module")
def export_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    out, done = _cli(tmp, "export", "report.export_embeddings=true")
    return tmp, out, done


def _attr(out: Path) -> str:
    return json.loads((out / "metrics.json").read_text())["protocol"]["attributes"][0]


def _floats_lists(node, found):
    if isinstance(node, dict):
        for v in node.values():
            _floats_lists(v, found)
    elif isinstance(node, list):
        if len(node) >= 32 and all(isinstance(x, float) for x in node):
            found.append(len(node))
        for v in node:
            _floats_lists(v, found)
    return found


# ----------------------------------------------------------------------------- nothing biometric by default
def test_default_results_hold_no_embeddings_crops_or_images(default_run):
    tmp, out, done = default_run
    names = sorted(p.name for p in out.iterdir())
    assert all(p.is_file() for p in out.iterdir())
    assert [n for n in names if not ALLOWED.match(n)] == []
    assert [n for n in names if IMAGE_OR_ARRAY.search(n) and not n.endswith(".png")] == []
    assert EXPORT_FILE not in names and WARNING_FILE not in names
    scores = pd.read_parquet(out / "scores.parquet")
    attr = _attr(out)
    assert list(scores.columns) == ["image_a", "image_b", "subject_a", "subject_b", "mated", "score", f"{attr}_a", f"{attr}_b"]
    assert _floats_lists(json.loads((out / "metrics.json").read_text()), []) == []  # no vectors
    hydra_files = sorted(str(p.relative_to(tmp / "hydra_default")) for p in (tmp / "hydra_default").rglob("*") if p.is_file())
    assert hydra_files == [".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "cli.log"]
    assert "biometric" not in done.stdout + done.stderr


def test_image_run_writes_no_image_or_crop_and_export_reads_the_cache(tmp_path, london):
    """Real images (4 London subjects, read in place) through evaluate + write_results."""
    pytest.importorskip("dlib")
    from bench.data.manifest import Manifest
    from bench.models.cache import EmbeddingCache
    from bench.models.dlib_resnet import DlibResNet
    from bench.report.export import export_embeddings
    from bench.report.writer import write_results
    from bench.run import Protocol, evaluate

    rows = [
        {"image_id": f"{s}_{v}", "path": f"{folder}/{s}_{v}.jpg", "subject_id": s, "label_source": "self-reported", "grp": "x"}
        for s in ("001", "002", "003", "004")
        for folder, v in (("neutral_front", "03"), ("smiling_front", "08"))
    ]
    manifest = Manifest(pd.DataFrame(rows), london, ("grp",), "london4")
    res = evaluate(manifest, DlibResNet(), Protocol(target_fmrs=[0.1], bootstrap_replicates=None), cache_dir=tmp_path / "cache", progress=False)
    out = write_results(res, tmp_path / "results" / "london4", run_name="london4", config={}, min_group_subjects=1, figures=True)
    names = sorted(p.name for p in out.iterdir())
    assert [n for n in names if not ALLOWED.match(n)] == []
    assert not [n for n in names if n.endswith((".jpg", ".jpeg", ".npz", ".npy"))]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (out / "report.md").read_text())
    assert links and all(ALLOWED.match(link) and link.endswith(".png") and (out / link).is_file() for link in links)
    # the embeddings exist only in the private cache ...
    cached = sorted((tmp_path / "cache").rglob("*.npz"))
    assert len(cached) == 8 and all(tmp_path / "results" not in p.parents for p in cached)
    # ... and the opt-in export copies exactly those vectors
    path = export_embeddings(manifest, res, out, cache_dir=tmp_path / "cache")
    with np.load(path, allow_pickle=False) as z:
        assert z["embedding"].shape == (8, 128) and list(z["image_id"]) == [r["image_id"] for r in rows]
        cache = EmbeddingCache(tmp_path / "cache", res.model_info["cache_key"])
        from bench.acquisition.images import image_sha256

        first = cache.get(image_sha256(manifest.image_path(0)))
        np.testing.assert_array_equal(z["embedding"][0], first.embedding)


# ----------------------------------------------------------------------------- opt-in export
def test_export_flag_writes_embeddings_with_printed_and_recorded_warning(export_run):
    tmp, out, done = export_run
    with np.load(out / EXPORT_FILE, allow_pickle=False) as z:
        emb, ids = z["embedding"], z["image_id"]
    metrics = json.loads((out / "metrics.json").read_text())
    dim = metrics["model"]["settings"]["dim"]
    assert emb.dtype == np.float32 and emb.shape == (metrics["dataset"]["images_acquired"], dim)
    assert len(set(ids.tolist())) == len(ids)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # the generator's unit vectors
    # printed (Hydra's console log) ...
    printed = done.stdout + done.stderr
    assert "WARNING" in printed and "biometric templates that identify people" in printed and str(out / EXPORT_FILE) in printed
    # ... and recorded: beside the export, in the job log, and in the recorded config
    note = (out / WARNING_FILE).read_text()
    assert "Keep this file private" in note and f"{len(ids)} embeddings of dimension {dim}" in note
    assert "biometric templates" in (tmp / "hydra_export" / "cli.log").read_text()
    assert metrics["config"]["report"]["export_embeddings"] is True


def test_export_is_recorded_in_metrics_json(export_run):
    _, out, _ = export_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["privacy"]["embeddings_exported"] is True


@pytest.mark.parametrize("path", ["results/frl_london_dlib/embeddings.npz", "results/any_run/embeddings.npz", "results/frl_london_dlib/scores.parquet"])
def test_exports_are_git_ignored_even_in_tracked_result_folders(path):
    done = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path], capture_output=True)
    if done.returncode == 128:
        pytest.skip(f"not a git checkout: {done.stderr.decode()[:200]}")
    assert done.returncode == 0, f"{path} would be committed"


# ----------------------------------------------------------------------------- small groups: withheld
def _rows(df: pd.DataFrame, group: str) -> pd.DataFrame:
    return df[df["group"] == group]


def test_small_group_subjects_withheld_from_every_published_table(default_run):
    """Issue #9: the subjects of a group below min_group_subjects enter no published number,
    so (all) minus the visible groups is 0 subjects, not the small group."""
    _, out, _ = default_run
    metrics = json.loads((out / "metrics.json").read_text())
    attr = _attr(out)
    supp = metrics["suppression"]
    assert supp["min_group_subjects"] == 5 and supp["subjects_withheld"] == 3 and supp["images_withheld"] == 6
    assert supp["groups_withheld"] == {attr: {SMALL: 3}} and supp["groups_shown_as_counts_only"] == {}
    n_all = metrics["dataset"]["subjects"]
    assert metrics["dataset"]["subjects_published"] == n_all - 3
    csv = pd.read_csv(out / "per_group.csv", keep_default_na=False, na_values=[""])
    for table in (csv, pd.DataFrame(metrics["per_group"])):
        assert _rows(table, SMALL).empty
        fta = table[table["metric"] == "FTA"]
        visible = fta[fta["group"] != "(all)"]
        assert int(fta.loc[fta["group"] == "(all)", "subjects"].iloc[0]) == int(visible["subjects"].sum()) == n_all - 3
        for (thr, metric), rows in table[table["metric"] != "FTA"].groupby(["threshold_name", "metric"]):
            if metric == "FNMR":  # (all) = sum of the visible groups: nothing left to subtract
                assert int(rows.loc[rows["group"] == "(all)", "comparisons"].iloc[0]) == int(rows.loc[rows["group"] != "(all)", "comparisons"].sum())
    for name in ("eer", "generalized_rates"):
        for table in (pd.read_csv(out / f"{name}.csv", keep_default_na=False, na_values=[""]), pd.DataFrame(metrics[name])):
            assert _rows(table, SMALL).empty, name
    for table in (pd.read_csv(out / f"cross_group_fmr_{attr}.csv", keep_default_na=False, na_values=[""]), pd.DataFrame(metrics["cross_group_fmr"][attr])):
        assert not ((table["group_a"] == SMALL) | (table["group_b"] == SMALL)).any()
    diffs = pd.DataFrame(metrics["differentials"])
    assert not diffs["groups"].fillna("").str.split(";").map(lambda g: SMALL in g).any()
    assert SMALL not in (out / "differentials.csv").read_text()


def test_withheld_subjects_explained_in_report_md(default_run):
    _, out, _ = default_run
    report = (out / "report.md").read_text()
    assert not any(ln.startswith(f"| {SMALL} |") for ln in report.splitlines())
    assert "## Subjects withheld from every number" in report
    assert f"3 subject(s) (6 image(s)) belong to groups with fewer than 5 subjects: {_attr(out)}: {SMALL} (3)" in report


@pytest.fixture(scope="module")
def figure_inputs(tmp_path_factory):
    """What write_results hands to each plotting function, for a run with a small group."""
    import bench.report.writer as writer
    from bench.synthetic.generator import SyntheticPopulation
    from bench.run import Protocol, evaluate

    spec = {"identity_spread": 1.2, "image_noise": 0.9, "images_per_subject": 2}
    pop = SyntheticPopulation({"A": {"subjects": 30, **spec}, "B": {"subjects": 30, **spec}, SMALL: {"subjects": 3, **spec}}, seed=3)
    res = evaluate(pop, None, Protocol(target_fmrs=[0.01], bootstrap_replicates=None), cache_dir=tmp_path_factory.mktemp("c"), progress=False,
                   min_group_subjects=5)
    everyone = evaluate(pop, None, Protocol(target_fmrs=[0.01], bootstrap_replicates=None), cache_dir=tmp_path_factory.mktemp("c"), progress=False)
    seen: dict[str, tuple] = {"result": res, "everyone": everyone}
    mp = pytest.MonkeyPatch()
    for name in ("plot_det", "plot_error_rates", "plot_fmr_matrix", "plot_score_distributions"):
        if hasattr(writer, name):
            mp.setattr(writer, name, lambda *a, _n=name, **k: seen.__setitem__(_n, (a, k)))
    try:
        writer.write_results(res, tmp_path_factory.mktemp("out"), run_name="t", config={}, min_group_subjects=5, figures=True)
    finally:
        mp.undo()
    return seen


def test_small_group_not_plotted(figure_inputs):
    per_group = figure_inputs["plot_error_rates"][0][0]
    assert SMALL not in set(per_group["group"])
    cross = figure_inputs["plot_fmr_matrix"][0][0]
    assert SMALL not in set(cross["group_a"]) | set(cross["group_b"])
    dets = figure_inputs["plot_det"][0][0]
    assert not [k for k in dets if k[1] == SMALL]
    if "plot_score_distributions" in figure_inputs:  # the score table itself holds no comparison of a withheld subject
        comp = figure_inputs["plot_score_distributions"][0][0]
        assert SMALL not in set(comp.filter(like="_a").stack().astype(str))


def test_publishing_with_a_larger_minimum_than_evaluated_is_refused(figure_inputs, tmp_path):
    from bench.errors import ConfigError
    from bench.report.writer import write_results

    with pytest.raises(ConfigError, match=r"min_group_subjects=5: this result was evaluated with min_group_subjects=1; pass the same value"):
        write_results(figure_inputs["everyone"], tmp_path / "out", run_name="t", config={}, min_group_subjects=5, figures=False)
    assert not (tmp_path / "out").exists()


def test_suppression_threshold_is_configurable(figure_inputs, tmp_path):
    """min_group_subjects = 1 publishes every group's rates."""
    from bench.report.writer import write_results

    out = write_results(figure_inputs["everyone"], tmp_path / "out", run_name="t", config={}, min_group_subjects=1, figures=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["suppression"]["groups_shown_as_counts_only"] == {} and metrics["suppression"]["subjects_withheld"] == 0
    small = pd.DataFrame(metrics["per_group"]).query("group == @SMALL and metric == 'FMR'")
    assert small["rate"].notna().all() and not math.isnan(small["rate"].iloc[0])
