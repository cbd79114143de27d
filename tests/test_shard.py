"""Sharded extraction (issue #15): slices partition the manifest; a shard grid fills the shared
cache; the scoring run finds every embedding there and its result folder is byte-identical
to an unsharded run's; a failed shard reruns alone.

Real dlib model on 8 London subjects (16 images; read in place, skipped when absent), and
one CLI shard grid on the London neutral view with the joblib launcher.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.shard import extract_shard, parse_shard, shard_manifest, shard_rows

REPO = Path(__file__).resolve().parents[1]
SUBJECTS = [f"{k:03d}" for k in range(1, 9)]


@pytest.mark.parametrize("spec, expected", [("0/4", (0, 4)), ("3/4", (3, 4)), (" 1 / 2 ", (1, 2)), ("0/1", (0, 1))])
def test_parse_shard(spec, expected):
    assert parse_shard(spec) == expected


@pytest.mark.parametrize("spec", ["4/4", "1/0", "-1/4", "a/b", "1", "1/2/3", "", None])
def test_parse_shard_refuses(spec):
    with pytest.raises(ConfigError, match="shard="):
        parse_shard(spec)


@pytest.mark.parametrize("n_rows, n", [(204, 4), (204, 7), (5, 8), (0, 3), (1, 1)])
def test_slices_partition_the_rows(n_rows, n):
    got = [r for i in range(n) for r in shard_rows(n_rows, i, n)]
    assert got == list(range(n_rows))  # every row exactly once, in manifest order
    sizes = [len(shard_rows(n_rows, i, n)) for i in range(n)]
    assert max(sizes) - min(sizes) <= 1


def test_synthetic_dataset_cannot_be_sharded(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "debug=smoke", "shard=0/2", f"paths.cache_dir={tmp_path}",
                           f"paths.results_dir={tmp_path / 'r'}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "has no images" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "bench", "debug=smoke", "shard=2/2"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "shard='2/2': expected 0 <= i < n" in done.stderr


@pytest.fixture(scope="module")
def small_london(london):
    from bench.data.frl_london import load_frl_london
    from bench.data.manifest import Manifest

    full = load_frl_london(london)
    table = full.table[full.table["subject_id"].isin(SUBJECTS)].reset_index(drop=True)
    return Manifest(table=table, root=full.root, attributes=full.attributes, name=full.name)


def _write(dataset, model, cache: Path, out: Path) -> dict[str, bytes]:
    from bench.report.writer import write_results
    from bench.run import Protocol, evaluate

    proto = Protocol(target_fmrs=[0.05], bootstrap_replicates=50, seed=3)
    res = evaluate(dataset, model, proto, cache_dir=cache, progress=False)
    write_results(res, out, run_name="shard_test", config={"test": "shard"}, min_group_subjects=1, figures=True)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}, res


@pytest.mark.slow
def test_sharded_equals_unsharded_and_a_failed_shard_reruns_alone(small_london, tmp_path, caplog):
    from bench.models.dlib_resnet import DlibResNet

    model = DlibResNet()
    shared = tmp_path / "shared_cache"
    n_img = len(small_london.table)
    # a grid of 3 shards in which shard 1 "failed": only 0 and 2 ran
    reps = {i: extract_shard(small_london, model, shared, f"{i}/3", progress=False) for i in (0, 2)}
    assert [reps[i].computed for i in (0, 2)] == [len(shard_rows(n_img, i, 3)) for i in (0, 2)]
    # shard 1 rerun alone computes exactly its slice; rerunning a finished shard computes nothing
    again = extract_shard(small_london, model, shared, "1/3", progress=False)
    assert (again.computed, again.from_cache) == (len(shard_rows(n_img, 1, 3)), 0)
    assert extract_shard(small_london, model, shared, "0/3", progress=False).computed == 0
    assert sum(len(shard_manifest(small_london, i, 3).table) for i in range(3)) == n_img

    # the scoring run finds every embedding in the shared cache ...
    with caplog.at_level(logging.INFO, logger="bench.run"):
        merged, res = _write(small_london, model, shared, tmp_path / "merged")
    assert res.model_info["cache_hits"] == n_img == 16
    assert f"{n_img} of {n_img} embeddings from the cache" in caplog.text
    # ... and writes the same bytes as an unsharded run on a cold cache
    cold, res_cold = _write(small_london, model, tmp_path / "cold_cache", tmp_path / "cold")
    assert res_cold.model_info["cache_hits"] == 0
    assert merged.keys() == cold.keys() and "metrics.json" in merged and "report.html" in merged
    assert [k for k in merged if merged[k] != cold[k]] == []


@pytest.mark.slow
def test_shard_grid_is_a_multirun(london, tmp_path):
    """Two shards of the neutral view (102 images) as a joblib multirun, then the scoring run."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    env = {**os.environ, "FVBENCH_DATA_DIR": str(london.parent)}
    common = ["experiment=frl_london_dlib", "++dataset.loader.views=[neutral_front]", f"paths.cache_dir={tmp_path / 'cache'}",
              f"paths.results_dir={tmp_path / 'results'}", "progress=false", "protocol.bootstrap_replicates=null",
              "protocol.intersections=[]", "report.figures=false", "protocol.target_fmrs=[1e-2]"]
    done = subprocess.run([sys.executable, "-m", "bench", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                           f"hydra.sweep.dir={tmp_path / 'multirun'}", "shard=0/2,1/2", *common],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "job 0 ok" in done.stdout and "shard 0/2: rows 0-50, 51 images (0 from cache, 51 computed" in done.stdout
    assert "job 1 ok" in done.stdout and "shard 1/2: rows 51-101, 51 images (0 from cache, 51 computed" in done.stdout
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())  # shards publish nothing
    done = subprocess.run([sys.executable, "-m", "bench", *common], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "102 of 102 embeddings from the cache" in done.stdout + done.stderr
