"""Grids on Hydra's launchers (issue #15): submitit_local and joblib run a tiny synthetic grid.

Each job writes its own result folder and a record; the multirun ends with one line per
job and an aggregate line; a refused job is recorded as failed without stopping the
others and the command exits 1; a SLURM submission refuses a dirty tree; a job refuses
code that changed since submission; what travels to a job pickles.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench import multirun
from bench.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _multirun(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bench", "-m", "debug=smoke", f"paths.results_dir={tmp / 'results'}",
           f"paths.cache_dir={tmp / 'cache'}", f"hydra.sweep.dir={tmp / 'multirun'}", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_submitit_local_grid(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    done = _multirun(tmp_path, "hydra/launcher=submitit_local", "seed=1,2", "run_name=grid_${seed}")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(("job ", "multirun:"))]
    assert len(lines) == 3, done.stdout
    assert lines[0].startswith("job 0 ok") and "seed=1" in lines[0] and str(tmp_path / "results" / "grid_1") in lines[0]
    assert lines[1].startswith("job 1 ok") and "seed=2" in lines[1]
    # the smoke population: 160 subjects x 2 images -> 160 mated comparisons; FMR=1e-2 on 50,880 non-mated -> k = 508
    assert "FMR 508/50880, FNMR 0/160" in lines[0]
    assert lines[2].startswith("multirun: 2 job(s), 2 ok, 0 failed")
    summary = json.loads((tmp_path / "multirun" / multirun.SUMMARY_FILE).read_text())
    assert [r["status"] for r in summary["jobs"]] == ["ok", "ok"]
    assert {r["code"] for r in summary["jobs"]} == {multirun._code_tag()}  # the commit each job ran (+dirty if so)
    for k in (1, 2):
        out = tmp_path / "results" / f"grid_{k}"
        assert (out / "metrics.json").is_file() and (out / "report.html").is_file()
        assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == k


def test_joblib_grid_with_a_refused_job(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    stale = tmp_path / "multirun" / "7_old" / multirun.JOB_FILE  # a record of an earlier multirun in the same folder
    stale.parent.mkdir(parents=True)
    stale.write_text('{"job": 7, "status": "failed", "overrides": [], "multirun": "0123"}')
    done = _multirun(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "protocol.confidence=0.95,2",
                     "run_name=conf_${protocol.confidence}")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "job 0 ok" in done.stdout and "job 1 failed" in done.stdout
    assert "protocol.confidence must be in (0, 1), got 2" in done.stdout
    assert "multirun: 2 job(s), 1 ok, 1 failed" in done.stdout
    assert "Traceback" not in done.stderr
    assert (tmp_path / "results" / "conf_0.95" / "metrics.json").is_file()


def test_slurm_refuses_a_dirty_tree(monkeypatch, capsys):
    cfg = OmegaConf.create({"allow_dirty_tree": False, "hydra": {"launcher": {
        "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}}})
    monkeypatch.setattr(multirun, "_code_state", lambda: "0123abcd:4567+dirty")
    monkeypatch.delenv(multirun.CODE_ENV, raising=False)
    with pytest.raises(SystemExit) as err:
        multirun.JobSummary().on_multirun_start(cfg)
    assert err.value.code == 2 and "allow_dirty_tree=true" in capsys.readouterr().err
    cfg.allow_dirty_tree = True  # told otherwise: submitted, and the dirty tag is what jobs must match
    multirun.JobSummary().on_multirun_start(cfg)
    assert os.environ[multirun.CODE_ENV] == "0123abcd:4567+dirty"
    monkeypatch.delenv(multirun.CODE_ENV)
    monkeypatch.delenv(multirun.LAUNCHER_ENV)


def test_job_refuses_code_changed_since_submission(monkeypatch, caplog):
    monkeypatch.setenv(multirun.CODE_ENV, "1111111111")
    monkeypatch.setattr(multirun, "_code_state", lambda: "2222222222")
    with pytest.raises(ConfigError, match="code changed since this multirun was submitted"):
        multirun.job_guard(OmegaConf.create({}))
    monkeypatch.setattr(multirun, "_code_state", lambda: "1111111111")
    monkeypatch.setenv(multirun.LAUNCHER_ENV, "hydra._internal.core_plugins.basic_launcher.BasicLauncher")
    cfg = OmegaConf.create({"hydra": {"launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}}})
    multirun.job_guard(cfg)  # same code: runs, but says the launcher in its (swept) config was ignored
    assert "set inside a swept config is ignored" in caplog.text


def test_code_state_ignores_commits_outside_bench_and_configs():
    state = multirun._code_state()
    import subprocess

    trees = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD:bench", "HEAD:configs"], capture_output=True, text=True)
    if trees.returncode != 0:
        pytest.skip("not a git checkout")
    assert state.split("+")[0] == ":".join(trees.stdout.split())  # trees, not the commit: a docs commit changes nothing


def test_what_travels_to_jobs_pickles():
    cloudpickle = pytest.importorskip("cloudpickle")
    from bench.cli import _hydra_main, _hydra_sweep_main

    for fn in (_hydra_main, _hydra_sweep_main):  # submitit and loky send the task function by cloudpickle
        assert cloudpickle.loads(cloudpickle.dumps(fn)) is not None
    assert isinstance(pickle.loads(pickle.dumps(multirun.JobSummary())), multirun.JobSummary)


def test_summary_lines_show_what_differs():
    recs = [{"job": 1, "status": "failed", "wall_s": 0.5, "overrides": ["debug=smoke", "seed=2"], "error": "bad"},
            {"job": 0, "status": "ok", "wall_s": 2.0, "overrides": ["debug=smoke", "seed=1"], "out": "r/a", "headline": "h"}]
    lines = multirun.summary_lines(recs, wall_s=2.5)
    assert lines == ["job 0 ok 2.0 s seed=1 -> r/a | h", "job 1 failed 0.5 s seed=2 | bad",
                     "multirun: 2 job(s), 1 ok, 1 failed; sum of job times 2.5 s, wall 2.5 s"]
