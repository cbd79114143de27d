"""Wall time of a grid on Hydra's joblib launcher vs the same grid run serially, and of a
sharded London extraction vs an unsharded one (issue #15).

Usage (from the repository root; needs the London set)::

    .venv/bin/python scripts/bench_grid.py grid [N]    # 2 model configs x London, and the synthetic default (2 seeds)
    .venv/bin/python scripts/bench_grid.py shards [N]  # London x dlib: 4 shards (joblib, 2 workers) vs 1

N (default 1): baseline and parallel alternate N times; the median of each is compared.
The load average is printed beside each number. On Linux with sched_autogroup (the default
on desktop kernels; printed), CPU time is shared fairly between *sessions*: while other
sessions keep the cores busy, this session gets its share however many workers it starts,
so the ratio measures the machine's load, not the launcher. Measure on an idle machine.

Every measurement starts from an empty embedding cache (so extraction is measured, not cache
reads) in a scratch folder under results/_scratch/bench_grid/. The grid is two Hydra multiruns
(a multirun is a product, and the synthetic dataset has no image model): two models on London
(dlib ResNet and SFace, each with its default detector: two full extractions) and ``seed=0,1``
on the synthetic default; serial = Hydra's basic launcher, parallel = ``hydra/launcher=joblib
hydra.launcher.n_jobs=2``. The machine's load average is printed beside each number:
on a shared machine the ratio is only meaningful when nothing else runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRATCH = REPO / "results" / "_scratch" / "bench_grid"
COMMON = ["progress=false", "report.figures=false"]


def _run(args: list[str], tag: str, env_extra: dict | None = None) -> float:
    cache, results = SCRATCH / f"cache_{tag}", SCRATCH / f"results_{tag}"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(results, ignore_errors=True)
    env = {**os.environ, **(env_extra or {})}
    total = 0.0
    for k, a in enumerate(args):
        sweep = SCRATCH / f"multirun_{tag}_{k}"
        shutil.rmtree(sweep, ignore_errors=True)
        cmd = [sys.executable, "-m", "bench", "-m", *a.split(), *COMMON, f"paths.cache_dir={cache}", f"paths.results_dir={results}",
               f"hydra.sweep.dir={sweep}"]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        for line in done.stdout.splitlines():
            if line.startswith(("job ", "multirun:")):
                print("   ", line[:160])
        total += dt
    return total


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _autogroup() -> str:
    """Linux groups a session's processes for CPU fairness (sched_autogroup): on a machine where other sessions keep the
    cores busy, a session gets its fair share however many worker processes it starts."""
    try:
        on = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return "sched_autogroup: unknown"
    return "sched_autogroup on: with other busy sessions, parallel workers share this session's CPU share" if on else "sched_autogroup off"


def _compare(label_a: str, args_a: list[str], label_b: str, args_b: list[str], tag: str, repeats: int) -> None:
    """Baseline (a) and parallel (b) alternated ``repeats`` times (a b a b ...), so a change of load hits both."""
    walls: dict[str, list[float]] = {"a": [], "b": []}
    for k in range(repeats):
        for side, label, args in (("a", label_a, args_a), ("b", label_b, args_b)):
            wall = _run(args, f"{tag}_{side}")
            walls[side].append(wall)
            print(f"[{k + 1}/{repeats}] {label}: {wall:.1f} s wall   load {_load()}")
    a, b = sorted(walls["a"])[len(walls["a"]) // 2], sorted(walls["b"])[len(walls["b"]) // 2]
    print(f"speed-up (median of {repeats}): {a / b:.2f}x   ({label_a} {a:.1f} s, {label_b} {b:.1f} s; {os.cpu_count()} cores)")


def grid(repeats: int = 1) -> None:
    runs = ["dataset=frl_london model=dlib_resnet,sface run_name=grid_london_${model.name}",
            "seed=0,1 run_name=grid_synthetic_${seed}"]
    print(f"load before: {_load()}; {_autogroup()}")
    _compare("serial (basic launcher)", runs, "joblib, 2 workers", [f"hydra/launcher=joblib hydra.launcher.n_jobs=2 {r}" for r in runs],
             "grid", repeats)


def shards(repeats: int = 1) -> None:
    base = "experiment=frl_london_dlib protocol.bootstrap_replicates=null"
    print(f"load before: {_load()}; {_autogroup()}")
    _compare("unsharded extraction (1 job)", [f"{base} shard=0/1"], "4 shards, joblib 2 workers",
             [f"hydra/launcher=joblib hydra.launcher.n_jobs=2 {base} shard=0/4,1/4,2/4,3/4"], "shards", repeats)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "grid"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    {"grid": grid, "shards": shards}[what](n)
