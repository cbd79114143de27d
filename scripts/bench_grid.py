"""Wall time of a grid on Hydra's joblib launcher vs the same grid run serially, and of a
sharded London extraction vs an unsharded one (issue #15).

Usage (from the repository root; needs the London set)::

    .venv/bin/python scripts/bench_grid.py grid     # 2 model configs x London, and the synthetic default (2 seeds)
    .venv/bin/python scripts/bench_grid.py shards   # London x dlib: 4 shards (joblib, 2 workers) vs 1

Every measurement starts from an empty embedding cache (so extraction is measured, not cache
reads) in a scratch folder under results/_scratch/bench_grid/. The grid is two Hydra multiruns
(a multirun is a product, and the synthetic dataset has no image model): two model
configurations on London (dlib ResNet with detector upsampling 0 and 1: two cache keys, two
full extractions; the only model whose weights install from the registry on this machine when
this was written) and ``seed=0,1`` on the synthetic default; serial = Hydra's basic launcher, parallel = ``hydra/launcher=joblib
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


def grid() -> None:
    runs = ["dataset=frl_london model=dlib_resnet model.embedder.upsample=0,1 run_name=grid_dlib_up${model.embedder.upsample}",
            "seed=0,1 run_name=grid_synthetic_${seed}"]
    print(f"load before: {_load()}")
    serial = _run(runs, "serial")
    print(f"serial (basic launcher): {serial:.1f} s   load {_load()}")
    par = _run([f"hydra/launcher=joblib hydra.launcher.n_jobs=2 {r}" for r in runs], "joblib")
    print(f"joblib, 2 workers: {par:.1f} s   load {_load()}")
    print(f"speed-up: {serial / par:.2f}x")


def shards() -> None:
    base = "experiment=frl_london_dlib protocol.bootstrap_replicates=null"
    print(f"load before: {_load()}")
    one = _run([f"{base} shard=0/1"], "unsharded")
    print(f"unsharded extraction (1 job): {one:.1f} s   load {_load()}")
    four = _run([f"hydra/launcher=joblib hydra.launcher.n_jobs=2 {base} shard=0/4,1/4,2/4,3/4"], "sharded")
    print(f"4 shards, joblib 2 workers: {four:.1f} s   load {_load()}")
    print(f"speed-up: {one / four:.2f}x")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "grid"
    {"grid": grid, "shards": shards}[what]()
