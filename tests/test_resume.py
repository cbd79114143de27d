"""Resume (issue #15): a run killed with SIGKILL at any point and rerun with the same command
reuses the finished work and ends byte-identical to an uninterrupted run.

Kill points are observed from outside, never injected: mid-extraction = after the first
embeddings appear in the cache (London, real dlib model); mid-computation = the process
is running but has not started writing; mid-writing = the hidden staging folder of the
result exists but is not complete. After each kill the published folder is unchanged
(absent, or the previous run's), and the rerun removes the dead run's staging folder.
Git is hidden from the runs (``GIT_DIR`` pointing nowhere), as in test_determinism, so
commits made meanwhile by other developers do not change the recorded provenance; every
run of a comparison uses the same results and cache paths (they are part of the recorded
config), emptied in between.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["debug=smoke", "dataset.loader.subjects_scale=3", "report.figures=true", "++protocol.bootstrap_replicates=100", "seed=5",
         "overwrite=true"]  # the computing test replaces a folder of another seed on purpose


def _cmd(tmp: Path, results: Path, cache: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench", *extra, "run_name=resume", f"paths.results_dir={results}", f"paths.cache_dir={cache}",
            f"hydra.run.dir={tmp / 'outputs'}"]


def _env(tmp: Path, **more: str) -> dict:
    return {**os.environ, "GIT_DIR": str(tmp / "no-git-here"), **more}


def _run(cmd: list[str], env: dict) -> str:
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _kill_when(cmd: list[str], env: dict, ready, timeout: float = 300) -> bool:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` is true; True if it was killed while running."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                return False
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.005)
        raise AssertionError("kill point never reached")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stages(results: Path) -> list[Path]:
    return sorted(results.glob(".resume.partial-*")) if results.is_dir() else []


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("resume")


def _fresh(work: Path) -> tuple[Path, Path]:
    results, cache = work / "results", work / "cache"
    shutil.rmtree(results, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return results, cache


@pytest.fixture(scope="module")
def baseline(work) -> dict[str, bytes]:
    results, cache = _fresh(work)
    _run(_cmd(work, results, cache, SMOKE), _env(work))
    return _files(results / "resume")


def test_killed_while_writing(baseline, work):
    results, cache = _fresh(work)

    def writing() -> bool:  # staging folder exists and already holds tables, but is not finished
        return any((s / "metrics.json").is_file() and not (s / "files.sha256").exists() for s in _stages(results))

    assert _kill_when(_cmd(work, results, cache, SMOKE), _env(work), writing)
    assert not (results / "resume").exists()  # nothing half-written was published
    assert len(_stages(results)) == 1  # the dead run's staging folder ...
    _run(_cmd(work, results, cache, SMOKE), _env(work))
    assert _stages(results) == []  # ... is removed by the rerun
    assert _files(results / "resume") == baseline


def test_killed_while_computing_keeps_the_previous_folder(baseline, work):
    results, cache = _fresh(work)
    # a previous result of the same name, from another seed: it must survive the killed run untouched
    _run(_cmd(work, results, cache, [*SMOKE, "seed=6"]), _env(work))
    before = _files(results / "resume")
    assert before != baseline
    marker = work / "outputs" / ".hydra" / "config.yaml"  # Hydra writes it just before the run starts
    marker.unlink(missing_ok=True)
    seen: list[float] = []

    def computing() -> bool:  # the run has started (config written), nothing staged, the old folder untouched
        if not marker.is_file():
            return False
        seen.append(seen[0] if seen else time.monotonic())
        return (time.monotonic() - seen[0] > 0.5 and not _stages(results)
                and (results / "resume" / "files.sha256").read_bytes() == before["files.sha256"])

    killed = _kill_when(_cmd(work, results, cache, SMOKE), _env(work), computing)
    if not killed:
        pytest.skip("the run finished before the kill point (machine much faster than expected)")
    assert _files(results / "resume") == before
    _run(_cmd(work, results, cache, SMOKE), _env(work))
    assert _files(results / "resume") == baseline and _stages(results) == []


@pytest.mark.slow
def test_killed_while_extracting(london, work):
    """London neutral view (102 images, real dlib): killed after the first cache entries appear."""
    args = ["experiment=frl_london_dlib", "++dataset.loader.views=[neutral_front]", "protocol.intersections=[]",
            "protocol.target_fmrs=[1e-2]", "++protocol.bootstrap_replicates=50", "report.figures=false", "progress=false"]
    env = _env(work, FVBENCH_DATA_DIR=str(london.parent))
    results, cache = _fresh(work)
    _run(_cmd(work, results, cache, args), env)  # uninterrupted, cold cache
    uninterrupted = _files(results / "resume")
    results, cache = _fresh(work)

    def entries() -> int:
        return sum(1 for _ in cache.rglob("*.npz")) if cache.is_dir() else 0

    assert _kill_when(_cmd(work, results, cache, args), env, lambda: entries() > 0)
    done_before = entries()
    assert 0 < done_before < 102 and not (results / "resume").exists()
    log = _run(_cmd(work, results, cache, args), env)
    assert f"{done_before} of 102 embeddings from the cache" in log  # finished work reused
    assert _files(results / "resume") == uninterrupted
