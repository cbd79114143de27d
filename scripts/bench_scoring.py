#!/usr/bin/env python3
"""Throughput of blocked all-vs-all scoring versus the machine's matrix-product FLOP rate.

For each embedding size ``d`` and block size ``b`` this measures

1. ``matmul``  -- the FLOP rate of ``torch.mm`` on one ``(b, d) x (d, b)`` block, repeated
   (the ceiling for scoring: one comparison costs ``2 d`` flops);
2. ``blocks``  -- the same block schedule as the scorer (upper-triangle blocks of ``n``
   embeddings) doing only the matrix products;
3. ``stream``  -- :func:`bench.protocol.streaming.score_all_vs_all` into a
   :class:`~bench.scores.histogram.ScoreHistogram` (8 groups, 64 cells, 2**16 bins);
4. ``stream+agg`` -- the same, also feeding :class:`~bench.scores.subjects.SubjectAggregates`;

and prints comparisons per second and the share of the matmul FLOP rate each achieves
(``comparisons/s * 2 d / matmul_flops``). Wall and CPU time are both shown; on a shared
machine the load average (printed) inflates wall time.

Usage::

    python scripts/bench_scoring.py                       # n = 12000, d in (128, 512)
    python scripts/bench_scoring.py --n 20000 --d 128 --block 2048 4096 --device cuda
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from bench.scores.histogram import ScoreHistogram
from bench.scores.subjects import SubjectAggregates
from bench.protocol.streaming import score_all_vs_all


def synthetic_embeddings(n_images: int, d: int, images_per_subject: int = 5, n_groups: int = 8, seed: int = 0):
    """Unit-norm float32 embeddings with subject and group structure (as in bench_metrics.py)."""
    rng = np.random.default_rng(seed)
    n_subjects = -(-n_images // images_per_subject)
    subj_group = np.arange(n_subjects) % n_groups
    cent = rng.standard_normal((n_subjects, d)).astype(np.float32)
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    subj = np.repeat(np.arange(n_subjects), images_per_subject)[:n_images]
    x = cent[subj] + rng.standard_normal((n_images, d)).astype(np.float32) * np.float32(0.9 / np.sqrt(d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), subj, subj_group[subj], subj_group, np.bincount(subj, minlength=n_subjects)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, float]:
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def matmul_rate(b: int, d: int, device: torch.device, reps: int = 10) -> tuple[float, float]:
    """(wall, cpu) FLOP/s of one (b, d) x (d, b) product."""
    a = torch.randn(b, d, device=device)
    c = torch.randn(b, d, device=device)
    out = torch.empty(b, b, device=device)
    torch.mm(a, c.T, out=out)

    def run():
        for _ in range(reps):
            torch.mm(a, c.T, out=out)

    w, cpu = timed(run, device)
    flops = 2.0 * b * b * d * reps
    return flops / w, flops / cpu if cpu > 0 else float("nan")


def block_schedule(x: torch.Tensor, b: int) -> int:
    """Matrix products of the upper-triangle block schedule only; returns comparisons."""
    n = x.shape[0]
    comps = 0
    for r0 in range(0, n, b):
        xr = x[r0 : r0 + b]
        for c0 in range(r0, n, b):
            s = xr @ x[c0 : c0 + b].T
            comps += s.numel() if c0 != r0 else s.shape[0] * (s.shape[0] - 1) // 2
    return comps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=12000, help="embeddings (n(n-1)/2 comparisons)")
    ap.add_argument("--d", type=int, nargs="+", default=[128, 512], help="embedding sizes")
    ap.add_argument("--block", type=int, nargs="+", default=[2048, 4096], help="block sizes")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    print(f"device={dev} torch threads={torch.get_num_threads()} cpus={os.cpu_count()} "
          f"loadavg={os.getloadavg()}")
    n_cmp = args.n * (args.n - 1) // 2
    # warm-up outside timing: first-call costs of torch and numpy kernels
    xw, sw, gw, sgw, mw = synthetic_embeddings(600, args.d[0])
    score_all_vs_all(xw, sw, gw, ScoreHistogram.for_groups(range(8)), device=dev, block_size=256,
                     aggregates=SubjectAggregates(sgw, mw, tail_size=1000))
    print(f"{'d':>4} {'block':>6} {'case':>11} {'wall s':>8} {'cpu s':>8} {'Mcmp/s':>9} {'Mcmp/s cpu':>11} "
          f"{'GFLOP/s':>8} {'% matmul':>9} {'% mm cpu':>9}")
    for d in args.d:
        x_np, subj, grp, subj_group, m = synthetic_embeddings(args.n, d=d)
        x = torch.from_numpy(x_np).to(dev)
        for b in args.block:
            mm_w, mm_c = matmul_rate(b, d, dev)
            rows = [("matmul", None, None, mm_w, mm_c)]
            w, c = timed(lambda: block_schedule(x, b), dev)
            rows.append(("blocks", w, c, None, None))
            for case in ("stream", "stream+agg"):
                h = ScoreHistogram.for_groups(range(8), keep_scores="never")
                agg = SubjectAggregates(subj_group, m, tail_size=1 << 18) if case == "stream+agg" else None
                w, c = timed(lambda: score_all_vs_all(x_np, subj, grp, h, aggregates=agg, device=dev, block_size=b), dev)
                rows.append((case, w, c, None, None))
            for case, w, c, fw, fc in rows:
                if w is None:
                    print(f"{d:>4} {b:>6} {case:>11} {'':>8} {'':>8} {fw / (2 * d) / 1e6:>9.0f} {fc / (2 * d) / 1e6:>11.0f} "
                          f"{fw / 1e9:>8.1f} {100.0:>9.1f} {100.0:>9.1f}")
                    continue
                rate, rate_c = n_cmp / w, n_cmp / c if c > 0 else float("nan")
                print(f"{d:>4} {b:>6} {case:>11} {w:>8.2f} {c:>8.2f} {rate / 1e6:>9.0f} {rate_c / 1e6:>11.0f} "
                      f"{rate * 2 * d / 1e9:>8.1f} {100 * rate * 2 * d / mm_w:>9.1f} {100 * rate_c * 2 * d / mm_c:>9.1f}")
    print(f"loadavg at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
