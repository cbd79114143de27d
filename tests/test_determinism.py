"""Same config + seed -> byte-identical result files (issue #6).

The CLI runs the smoke config (figures on, a short subject bootstrap) once as a single
run and once as a Hydra multirun with two jobs in one process (basic launcher): the
multirun's first job is the same config in another process, its second job runs after
another job in the same process. Every file of the result folder -- metrics.json, the CSV tables, scores.parquet,
report.md and the PNG figures -- must be byte-identical.

The code version recorded in metrics.json (git commit, dirty flag) is part of the
provenance, not of the computation; other developers commit into this working tree
while tests run, so the runs here hide git (``GIT_DIR`` pointing nowhere) to hold it
fixed. Everything else is compared byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMON = ["debug=smoke", "report.figures=true", "++protocol.bootstrap_replicates=30", "seed=7"]


def _cli(tmp: Path, args: list[str]) -> None:
    env = {**os.environ, "GIT_DIR": str(tmp / "no-git-here")}
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags (-m) go before the overrides
    overrides = [a for a in args if not a.startswith("-")]
    cmd = [sys.executable, "-m", "bench", *flags, *COMMON, f"paths.results_dir={tmp / 'results'}", f"paths.cache_dir={tmp / 'cache'}", *overrides]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _differences(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    out = [f"only in one run: {sorted(set(a) ^ set(b))}"] if set(a) != set(b) else []
    for name in sorted(set(a) & set(b)):
        if a[name] != b[name]:
            out.append(name)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("determinism")
    out = {}
    _cli(tmp, ["run_name=detA", f"hydra.run.dir={tmp / 'hydra_first'}"])
    out["first"] = _files(tmp / "results" / "detA")
    shutil.rmtree(tmp / "results" / "detA")
    # a second CLI process: a multirun whose first job is the same config, whose second job
    # runs after it in the same process
    _cli(tmp, ["-m", "run_name=detA,detB", f"hydra.sweep.dir={tmp / 'sweep'}"])
    out["job0"] = _files(tmp / "results" / "detA")
    # job 1 ran second in the same process; its only intended difference is its name
    # (files.sha256 hashes the un-renamed bytes, so it is compared through the other files)
    out["job1"] = {k: v.replace(b"detB", b"detA") for k, v in _files(tmp / "results" / "detB").items() if k != "files.sha256"}
    return out


def test_two_runs_are_byte_identical(runs):
    """Two CLI processes, same config and seed."""
    files = runs["first"]
    attr = json.loads(files["metrics.json"])["protocol"]["attributes"][0].replace("&", "_x_")
    assert {"metrics.json", "per_group.csv", "eer.csv", f"cross_group_fmr_{attr}.csv", "scores.parquet", "report.md"} <= set(files)
    assert {f"error_rates_{attr}.png", f"fmr_matrix_{attr}.png"} <= set(files)
    # a DET is drawn only when some group's EER is above 0 (else the report holds the operating-point table)
    eer_rows = [line.split(",") for line in files["eer.csv"].decode().splitlines()[1:]]
    assert (f"det_{attr}.png" in files) == any(float(r[4]) > 0 for r in eer_rows if r[0] == attr.replace("_x_", "&"))
    assert _differences(runs["first"], runs["job0"]) == []


def test_second_multirun_job_in_the_same_process_is_byte_identical(runs):
    """No state leaks from one job into the next (matplotlib, RNGs, caches)."""
    first = {k: v for k, v in runs["first"].items() if k != "files.sha256"}
    assert _differences(first, runs["job1"]) == []


def test_metrics_json_carries_no_clock_or_host(runs):
    text = runs["first"]["metrics.json"].decode()
    m = json.loads(text)
    assert "timings" not in m and "acquire_embed_s" not in text
    assert os.uname().nodename not in text
    assert m["config"]["seed"] == 7 and m["protocol"]["seed"] == 7
