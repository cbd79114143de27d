"""Streamed pipeline (``protocol.engine: stream``, bench.scores.stream.HistogramStore) against the table engine.

On small seeded synthetic populations both engines see the same comparisons; the stream
engine scores them as float32 products (the table engine in float64), so thresholds,
which are scores, agree to ~1e-7, while every count, every bootstrap interval and every
differential must be identical (metrics-reference §0 thresholds, §5.2-5.4 bootstrap).
Where the stream engine is binned (histogram fallback, binned EER) the stated
tolerance is one bin width (ScoreHistogram class notes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench.run as rs
import bench.scores.stream as stream_store
from bench.data.manifest import Manifest
from bench.synthetic.generator import SyntheticPopulation
from bench.errors import ConfigError
from bench.metrics.groups import per_group_rates
from bench.protocol.pairs import all_pairs, comparison_table
from bench.protocol.scoring import similarity_matrix
from bench.run import Protocol, evaluate

REPO = Path(__file__).resolve().parents[1]
COUNT_COLUMNS = ["attribute", "group", "threshold_name", "metric", "errors", "comparisons", "subjects", "flag", "reasons"]
RATE_COLUMNS = ["rate", "wilson_low", "wilson_high", "cp_low", "cp_high", "upper_bound_95", "boot_low", "boot_high", "n_replicates"]

ONE_ATTRIBUTE = {  # four groups of the calibrated London-like population, with failures to acquire
    "black": {"subjects": 26, "images_per_subject": 2, "identity_spread": 1.14, "image_noise": 0.21, "image_noise_sd": 0.21, "fta_rate": 0.05},
    "east_asian": {"subjects": 18, "images_per_subject": 3, "identity_spread": 1.08, "image_noise": 0.26, "image_noise_sd": 0.21},
    "west_asian": {"subjects": 20, "images_per_subject": 2, "identity_spread": 1.74, "image_noise": 0.23, "image_noise_sd": 0.21},
    "white": {"subjects": 120, "images_per_subject": 2, "identity_spread": 2.43, "image_noise": 0.28, "image_noise_sd": 0.21, "fta_rate": 0.05},
}
TWO_ATTRIBUTES = {  # eth x sex with an intersection: joint groups pooled per attribute
    f"{e}_{s}": {"subjects": n, "images_per_subject": 2, "identity_spread": sp, "image_noise": noise, "image_noise_sd": 0.3,
                 "labels": {"eth": e, "sex": s}}
    for (e, sp, noise) in (("a", 1.1, 0.25), ("b", 1.8, 0.3), ("c", 2.4, 0.2))
    for s, n in (("f", 30), ("m", 25))
}


def _run(groups: dict, engine: str, **protocol):
    pop = SyntheticPopulation(groups, dim=24, seed=7, name="t")
    kw = {"target_fmrs": [1e-2, 1e-3], "bootstrap_replicates": 200, "seed": 3, **protocol}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(pop, None, Protocol(engine=engine, **kw), cache_dir="unused", progress=False)


def _assert_same_numbers(table, stream, *, threshold_atol: float = 1e-6) -> None:
    assert [t["name"] for t in table.thresholds] == [t["name"] for t in stream.thresholds]
    for a, b in zip(table.thresholds, stream.thresholds):
        assert abs(a["threshold"] - b["threshold"]) <= threshold_atol, (a, b)
        for key in ("k", "n_nonmated", "achieved_fmr", "support", "status", "bootstrap"):
            assert a.get(key) == b.get(key), key
    pa, pb = table.per_group, stream.per_group
    assert list(pa.columns) == list(pb.columns)
    pd.testing.assert_frame_equal(pa[COUNT_COLUMNS], pb[COUNT_COLUMNS])
    pd.testing.assert_frame_equal(pa[RATE_COLUMNS], pb[RATE_COLUMNS], check_exact=True)
    np.testing.assert_allclose(pa["threshold"], pb["threshold"], atol=threshold_atol)
    pd.testing.assert_frame_equal(table.generalized, stream.generalized, check_exact=True)
    pd.testing.assert_frame_equal(table.differentials, stream.differentials, check_exact=True)
    assert table.cross.keys() == stream.cross.keys()
    for attr in table.cross:
        pd.testing.assert_frame_equal(table.cross[attr], stream.cross[attr], check_exact=True)
    for key in ("mated_comparisons", "nonmated_comparisons", "images_acquired", "manifest_sha256"):
        assert table.dataset_info[key] == stream.dataset_info[key]


@pytest.fixture(scope="module")
def one_attribute():
    return _run(ONE_ATTRIBUTE, "table"), _run(ONE_ATTRIBUTE, "stream")


def test_stream_equals_table_counts_thresholds_bootstrap(one_attribute):
    table, stream = one_attribute
    assert table.engine_info["engine"] == "table" and stream.engine_info["engine"] == "stream"
    assert stream.comparisons is None and stream.stream is not None
    _assert_same_numbers(table, stream)
    assert all(t["calibration_method"].startswith("exact") for t in stream.thresholds)
    assert stream.per_group["boot_low"].notna().sum() > 0  # the bootstrap ran
    # exact mode (< 1e6 comparisons): EER and DET from the raw float32 scores
    assert stream.engine_info["histogram"]["exact_mode"]
    pd.testing.assert_frame_equal(table.eer.drop(columns="threshold"), stream.eer.drop(columns="threshold"), atol=1e-12, rtol=0)
    np.testing.assert_allclose(table.eer["threshold"], stream.eer["threshold"], atol=1e-6)
    # float32 scoring merges a few float64-distinct scores into ties: the stream DET's points
    # are points of the table DET (as integer counts), a handful fewer
    for key, det in table.det.items():
        s = stream.det[key]
        points = set(zip(np.rint(det.fmr * det.n_nonmated).astype(int), np.rint(det.fnmr * det.n_mated).astype(int)))
        got = set(zip(np.rint(s.fmr * s.n_nonmated).astype(int), np.rint(s.fnmr * s.n_mated).astype(int)))
        assert got <= points and len(got) >= 0.999 * len(points)


def test_stream_equals_table_with_several_attributes_and_intersection():
    kw = {"intersections": [["eth", "sex"]], "target_fmrs": [1e-2], "bootstrap_replicates": 100}
    table, stream = _run(TWO_ATTRIBUTES, "table", **kw), _run(TWO_ATTRIBUTES, "stream", **kw)
    assert stream.attributes == ["eth", "sex", "eth&sex"]
    assert stream.engine_info["histogram"]["joint_groups"] == 6  # 3 x 2 (the intersection adds none)
    _assert_same_numbers(table, stream)


def test_binned_mode_within_one_bin_width(monkeypatch):
    """Tiny tail and no exact mode: thresholds fall back to bin edges, EER is binned."""
    monkeypatch.setattr(stream_store, "TAIL_MIN", 64)
    monkeypatch.setattr(stream_store, "TAIL_FACTOR", 0)
    monkeypatch.setattr(stream_store, "KEEP_SCORES_LIMIT", 0)
    table, stream = _run(ONE_ATTRIBUTE, "table"), _run(ONE_ATTRIBUTE, "stream")
    w = stream.engine_info["histogram"]["bin_width"]
    assert not stream.engine_info["histogram"]["exact_mode"]
    for a, b in zip(table.thresholds, stream.thresholds):
        # 1e-2 needs k+1 = 178 retained scores > tail: binned; §0 guarantees of ScoreHistogram.threshold_at_fmr
        if b["calibration_method"].startswith("binned"):
            assert b["threshold"] - a["threshold"] < w + 1e-6
            assert b["achieved_fmr"] <= b["target_fmr"] and b["k"] == a["k"]
            assert b["bootstrap"].startswith("unavailable")
            assert b["achieved_fmr"] == a["achieved_fmr"] or b["threshold"] > a["threshold"]
        else:
            assert abs(a["threshold"] - b["threshold"]) < 1e-6
    assert any(t["calibration_method"].startswith("binned") for t in stream.thresholds)
    # binned EER: threshold a bin edge within one bin width of the exact one
    assert (np.abs(table.eer["threshold"] - stream.eer["threshold"]) <= w + 1e-6).all()
    assert (np.abs(table.eer["eer"] - stream.eer["eer"]) <= 0.01).all()
    # comparison counts never depend on the binning
    cols = ["attribute", "group", "threshold_name", "metric", "comparisons", "subjects"]
    pd.testing.assert_frame_equal(table.per_group[cols], stream.per_group[cols])


def test_external_threshold_is_an_exact_extra_edge(monkeypatch):
    """A fixed threshold below the retained tail: rates exact from the extra edge, no bootstrap interval."""
    monkeypatch.setattr(stream_store, "TAIL_MIN", 64)
    monkeypatch.setattr(stream_store, "KEEP_SCORES_LIMIT", 0)
    ext = {"ext": 0.3141592653589793}
    table, stream = _run(ONE_ATTRIBUTE, "table", external_thresholds=ext), _run(ONE_ATTRIBUTE, "stream", external_thresholds=ext)
    assert stream.engine_info["histogram"]["extra_edges"] == [ext["ext"]]
    assert stream.engine_info["aggregates"]["tail_cutoff"] > ext["ext"]
    pd.testing.assert_frame_equal(table.per_group[COUNT_COLUMNS], stream.per_group[COUNT_COLUMNS])
    rates = stream.per_group[stream.per_group["metric"] != "FTA"]
    assert rates["boot_low"].isna().all() and rates["rate"].notna().all()
    assert stream.thresholds[0]["bootstrap"].startswith("unavailable")


def test_auto_picks_stream_above_the_limit():
    pop = SyntheticPopulation(ONE_ATTRIBUTE, dim=24, seed=7, name="t")
    n = pop.generate()[2].sum()
    kw = {"target_fmrs": [1e-2], "bootstrap_replicates": None}
    small = evaluate(pop, None, Protocol(engine="auto", table_max_comparisons=1000, **kw), cache_dir="u", progress=False)
    big = evaluate(pop, None, Protocol(engine="auto", **kw), cache_dir="u", progress=False)
    assert small.engine_info == {**small.engine_info, "engine": "stream", "selected_by": "auto", "comparisons": n * (n - 1) // 2}
    assert big.engine_info["engine"] == "table" and big.comparisons is not None
    assert Protocol(table_max_comparisons=2.0e7).table_max_comparisons == 20_000_000


def test_config_errors():
    with pytest.raises(ConfigError, match="protocol.engine"):
        Protocol(engine="fast")
    with pytest.raises(ConfigError, match="table_max_comparisons"):
        Protocol(table_max_comparisons=-1)
    pop = SyntheticPopulation(ONE_ATTRIBUTE, dim=24, seed=7, name="t")
    with pytest.raises(ConfigError, match="max_nonmated"):
        evaluate(pop, None, Protocol(engine="stream", max_nonmated=100), cache_dir="u", progress=False)


def _mixed_label_run(bootstrap: int | None, metric: str = "cosine"):
    """Eight subjects, three images each; subject s3's images carry two labels (image-level attribute)."""
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"s{i}" for i in range(8)], 3)
    label = np.where(np.arange(24) < 12, "x", "y")
    label[10] = "y"  # s3: x, y, x
    table = pd.DataFrame({"image_id": [f"i{i}" for i in range(24)], "path": [f"p{i}" for i in range(24)], "subject_id": subjects, "label_source": "test",
                          "g": label}).astype("string")
    manifest = Manifest(table=table, root=None, attributes=("g",), name="mixed")
    centres = rng.standard_normal((8, 16))
    emb = centres[np.repeat(np.arange(8), 3)] + 0.6 * rng.standard_normal((24, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    if metric == "euclidean":  # not unit norm: the histogram range follows the largest norm
        emb *= np.float32(1.7)
    labels = manifest.group_labels(["g"])
    reasons = np.full(24, None, dtype=object)
    protocol = Protocol(target_fmrs=[0.05], bootstrap_replicates=bootstrap)
    info = {"name": "test", "metric": metric, "nominal_threshold": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = rs.evaluate_acquired(manifest, emb, reasons, None, info, ["g"], labels, protocol,
                                      engine="stream")
    ia, ib, mated = all_pairs(subjects)
    comp = comparison_table(table, labels, ia, ib, mated, similarity_matrix(emb, metric)[ia, ib])
    return result, comp


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_image_level_labels_pool_image_cells_and_refuse_the_bootstrap(monkeypatch, metric):
    monkeypatch.setattr(stream_store, "KEEP_SCORES_LIMIT", 0)  # binned: the threshold is a bin edge, not a (float32) score
    result, comp = _mixed_label_run(None, metric)
    h = result.stream.histogram
    assert h.counts(mated=False)[[0, -1]].sum() == 0  # nothing outside the stated score range
    assert result.engine_info["aggregates"] is None  # no per-subject groups: histogram thresholds
    t = result.thresholds[0]
    assert t["calibration_method"].startswith("binned")
    expected = per_group_rates(comp, attribute="g", thresholds={t["name"]: t["threshold"]})
    got = result.per_group[result.per_group["metric"] != "FTA"].reset_index(drop=True)
    pd.testing.assert_frame_equal(expected[["group", "metric", "errors", "comparisons", "subjects"]],
                                  got[["group", "metric", "errors", "comparisons", "subjects"]])
    with pytest.raises(ConfigError, match="bootstrap"):
        _mixed_label_run(50)


def test_cli_stream_smoke_writes_histograms(tmp_path):
    env = {**os.environ, "FVBENCH_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "bench", "debug=smoke", "protocol.engine=stream", "report.figures=true",
           "++protocol.bootstrap_replicates=50", f"paths.results_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'h'}",
           "overwrite=true"]  # the stale folder below records another experiment: replaced only on purpose
    out = tmp_path / "synthetic__generator"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"config": {"seed": -1}}))  # an earlier (table-engine) run's folder
    from bench.report.folder import write_file_manifest

    write_file_manifest(out)
    (out / "scores.parquet").write_bytes(b"stale table of an earlier run")  # unlisted by design (UNPUBLISHED)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    files = {p.name for p in out.iterdir()}
    assert {"metrics.json", "per_group.csv", "eer.csv", "differentials.csv", "generalized_rates.csv", "report.md",
            "histograms.npz", "cross_group_fmr_face_eth.csv", "scores_face_eth.png", "error_rates_face_eth.png"} <= files
    assert "scores.parquet" not in files  # a table of another run must not sit beside streamed results
    m = json.loads((out / "metrics.json").read_text())
    eer = [r["eer"] for r in m["eer"] if r["attribute"] == "face_eth" and r["eer"] is not None]
    assert ("det_face_eth.png" in files) == (max(eer) > 0)  # no DET when every EER is 0 (docs/protocol.md §1.3)
    assert m["engine"]["engine"] == "stream" and m["engine"]["selected_by"] == "protocol.engine"
    assert m["engine"]["histogram"]["bin_width"] == 2.0**-15
    assert m["dataset"]["mated_comparisons"] + m["dataset"]["nonmated_comparisons"] == m["engine"]["comparisons"]
    from bench.scores.histogram import ScoreHistogram

    hist = ScoreHistogram.load(out / "histograms.npz")
    assert hist.n_comparisons(mated=False) == m["dataset"]["nonmated_comparisons"]
    assert "streaming engine" in (out / "report.md").read_text()

    # fvbench-verify: a streamed run is verified from its histograms, and tampering is caught
    from bench.verify import verify_run

    report = verify_run(out, check_dataset=False, check_weights=False)
    assert report.ok, report.to_text()
    assert report.status("histograms") == "ok" and report.status("per_group") == "ok"
    assert report.status("bootstrap") == "skipped" and report.status("source") == "info" and report.status("per_group (histograms)") == "ok"
    row = next(r for r in m["per_group"] if r["metric"] == "FMR" and r["group"] == "(all)")
    row["errors"] += 1000
    (out / "metrics.json").write_text(json.dumps(m))
    assert verify_run(out, check_dataset=False, check_weights=False).status("per_group") == "mismatch"
    (out / "histograms.npz").unlink()
    assert verify_run(out, check_dataset=False, check_weights=False).status("histograms") == "skipped"  # verified from the counts
