#!/usr/bin/env python3
"""Benchmark the streaming metrics engine against scikit-learn and a bare memory pass.

One run measures, side by side, on the same seeded synthetic scores of 8 groups
(``N`` non-mated and ``N/100`` mated float32 scores, laid out group by group as the
blocked scorer emits them):

(a) ``engine``       -- :class:`bench.scores.histogram.ScoreHistogram` (2**16 bins, 8
                        cells): ``update`` of all scores, then the global threshold at
                        FMR 1e-3 and 1e-4, per-group FMR/FNMR at it, per-group
                        thresholds, DET and EER;
(a') ``engine_mixed`` -- the same with the group codes interleaved at random (the slow
                        path of ``update``: one bincount over all cells);
(b) ``sklearn``      -- the same outputs from ``sklearn.metrics.roc_curve(...,
                        drop_intermediate=False)`` (pooled, then per group; DET and EER
                        from the same ROC arrays) plus the target-FMR threshold search
                        with ``np.searchsorted`` -- the cheapest exact sklearn route;
(c) ``floor``        -- ``np.sum`` over the same float32 scores: one bare pass.

and, separately,

``boot``  -- scores ~1e7 comparisons (8 groups x 112 subjects x 5 images, 128-d
             synthetic embeddings) with the blocked scorer into a histogram and
             :class:`~bench.scores.subjects.SubjectAggregates`, then times 1000
             subject-level bootstrap replicates (fixed global threshold at FMR 1e-3 and
             a threshold re-calibrated in every replicate at FMR 1e-3);
``ties``  -- (``--ties 5e4``) N manifest rows over 4 image files: scores tied at the
             maximum, through the streaming engine with the subject bootstrap;
``scale`` -- (``--scale 1e9``) an all-vs-all run of ``n`` 128-d embeddings with
             ``n (n-1) / 2 ~= scale`` comparisons, scored with torch matmul and binned
             in one streamed pass (histogram only, and with subject aggregates).

Every case runs in its own subprocess so that memory measurements do not pollute each
other. Time is wall-clock (``perf_counter``) and process CPU time; memory is the peak
resident set size sampled every 5 ms (``/proc/self/statm``), reported both as the peak
above the RSS before the timed section ("extra") and as the absolute peak of the
process (interpreter, torch and data included). The machine's load average is
printed: other jobs on a shared machine inflate wall time, CPU time much less.

Usage::

    python scripts/bench_metrics.py                      # 1e6, 1e7, 1e8 + boot
    python scripts/bench_metrics.py --sizes 1e6 1e7 --no-boot
    python scripts/bench_metrics.py --sizes --no-boot --scale 1e9
    python scripts/bench_metrics.py --json /tmp/bench.json
    python scripts/bench_metrics.py --threads 2          # (a) with 2 binning threads
    python scripts/bench_metrics.py --sizes --no-boot --ties 5e3 5e4   # issue #9: rows over 4 image files

Targets (issue "Metrics engine ... streaming to 10^9 comparisons", 2-core machine):
(a) >= 200x faster than (b) and within 20x of (c) at 1e7 and 1e8; 1000 bootstrap
replicates at 1e7 comparisons < 10 s; 1e9 comparisons from 128-d embeddings scored and
binned in < 60 s with peak memory < 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

N_GROUPS = 8
TARGETS = (1e-3, 1e-4)
PAGE = os.sysconf("SC_PAGE_SIZE")


# ----------------------------------------------------------------------------- measurement
class PeakRSS:
    """Samples the resident set size in a thread; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * PAGE

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def timed(fn, *args, **kwargs):
    """(result, wall_s, cpu_s, extra_peak_bytes, abs_peak_bytes)."""
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out, wall, cpu, mem.peak - mem.start, max(mem.peak, maxrss)


# ----------------------------------------------------------------------------- synthetic scores
def synthetic_scores(n_nonmated: int, seed: int = 0, interleaved: bool = False):
    """Seeded float32 scores of 8 groups: (nonmated, codes, mated, codes)."""
    rng = np.random.default_rng(seed)
    n_mated = max(n_nonmated // 100, 1000)
    nm_mean = 0.01 * np.arange(N_GROUPS, dtype=np.float32)
    nm_sd = (0.09 + 0.005 * np.arange(N_GROUPS)).astype(np.float32)
    m_mean = (0.6 - 0.02 * np.arange(N_GROUPS)).astype(np.float32)

    def draw(n, mean, sd):
        if interleaved:
            codes = rng.integers(0, N_GROUPS, n).astype(np.int8)
        else:
            codes = np.repeat(np.arange(N_GROUPS, dtype=np.int8), np.diff(np.linspace(0, n, N_GROUPS + 1).astype(int)))
        s = rng.standard_normal(n, dtype=np.float32)
        s *= sd[codes] if np.ndim(sd) else np.float32(sd)
        s += mean[codes]
        return s, codes

    s_nm, g_nm = draw(n_nonmated, nm_mean, nm_sd)
    s_m, g_m = draw(n_mated, m_mean, np.float32(0.12))
    return s_nm, g_nm, s_m, g_m


# ----------------------------------------------------------------------------- cases
ENGINE_THREADS = 1


def run_engine(s_nm, g_nm, s_m, g_m) -> dict:
    from bench.scores.histogram import ScoreHistogram

    h = ScoreHistogram(N_GROUPS, lo=-1.0, hi=1.0, n_bins=1 << 16, keep_scores="never", threads=ENGINE_THREADS)
    t0 = time.perf_counter()
    h.update(s_nm, g_nm, False)
    h.update(s_m, g_m, True)
    t_update = time.perf_counter() - t0
    out = {"update_s": t_update}
    for f in TARGETS:
        t = h.threshold_at_fmr(f)
        out[f"global_t@{f:g}"] = t.threshold
        out[f"global_fmr@{f:g}"] = t.achieved_fmr
        for g in range(N_GROUPS):
            r = h.error_rates(t.threshold, cells=g)
            out[f"g{g}_fmr@{f:g}"] = r.fmr
            out[f"g{g}_fnmr@{f:g}"] = r.fnmr
            tg = h.threshold_at_fmr(f, cells=g)
            out[f"g{g}_t@{f:g}"] = tg.threshold
            out[f"g{g}_fm@{f:g}"] = round(tg.achieved_fmr * tg.n_nonmated)
    for g in range(N_GROUPS):
        d = h.det_curve(cells=g)
        out[f"g{g}_det_points"] = int(d.thresholds.size)
        out[f"g{g}_eer"] = h.equal_error_rate(cells=g).eer
    out["resolution"] = h.resolution
    return out


def run_sklearn(s_nm, g_nm, s_m, g_m) -> dict:
    from sklearn.metrics import roc_curve

    from bench.metrics.rates import _allowed_false_matches

    def roc(nm, m):
        y = np.r_[np.zeros(nm.size, dtype=np.int8), np.ones(m.size, dtype=np.int8)]
        fpr, tpr, thr = roc_curve(y, np.r_[nm, m], drop_intermediate=False)
        return fpr, tpr, thr

    def threshold(fpr, thr, n, f):
        k = _allowed_false_matches(f, n)
        fps = np.rint(fpr * n)  # non-decreasing as thresholds decrease
        i = int(np.searchsorted(fps, k, side="right")) - 1  # last index with fps <= k
        return float(thr[i]), int(fps[i])

    def rates_at(fpr, tpr, thr, t):
        i = int(np.searchsorted(-thr, -t, side="right")) - 1  # smallest listed threshold >= t
        return (float(fpr[i]), float(1 - tpr[i])) if i >= 0 else (0.0, 1.0)

    out = {}
    fpr, tpr, thr = roc(s_nm, s_m)
    per = {}
    for g in range(N_GROUPS):
        nm, m = s_nm[g_nm == g], s_m[g_m == g]
        per[g] = (roc(nm, m), nm.size)
    for f in TARGETS:
        t, _ = threshold(fpr, thr, s_nm.size, f)
        out[f"global_t@{f:g}"] = t
        for g in range(N_GROUPS):
            (gf, gt, gth), n = per[g]
            out[f"g{g}_fmr@{f:g}"], out[f"g{g}_fnmr@{f:g}"] = rates_at(gf, gt, gth, t)
            out[f"g{g}_t@{f:g}"], out[f"g{g}_fm@{f:g}"] = threshold(gf, gth, n, f)
    for g in range(N_GROUPS):
        (gf, gt, _), _ = per[g]
        fnr = 1 - gt
        i = int(np.argmin(np.abs(gf - fnr)))
        out[f"g{g}_det_points"] = int(gf.size)
        out[f"g{g}_eer"] = float((gf[i] + fnr[i]) / 2)
    return out


def run_floor(s_nm, g_nm, s_m, g_m) -> dict:
    return {"sum": float(np.sum(s_nm)) + float(np.sum(s_m))}


def synthetic_embeddings(n_images: int, d: int = 128, images_per_subject: int = 5, seed: int = 0):
    """Unit-norm float32 embeddings with subject and group structure."""
    rng = np.random.default_rng(seed)
    n_subjects = -(-n_images // images_per_subject)
    subj_group = np.arange(n_subjects) % N_GROUPS
    u = rng.standard_normal((N_GROUPS, d)).astype(np.float32)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    alpha = np.linspace(0.0, 0.35, N_GROUPS, dtype=np.float32)  # same-group similarity
    cent = rng.standard_normal((n_subjects, d)).astype(np.float32)
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    cent += alpha[subj_group, None] * u[subj_group]
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    subj = np.repeat(np.arange(n_subjects), images_per_subject)[:n_images]
    x = cent[subj] + rng.standard_normal((n_images, d)).astype(np.float32) * np.float32(0.9 / np.sqrt(d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    m = np.bincount(subj, minlength=n_subjects)
    return x.astype(np.float32), subj, subj_group[subj], subj_group, m


def run_boot(n_images: int, n_boot: int) -> dict:
    from bench.scores.histogram import ScoreHistogram
from bench.scores.subjects import SubjectAggregates
    from bench.protocol.streaming import score_all_vs_all

    x, subj, grp, subj_group, m = synthetic_embeddings(n_images)
    h = ScoreHistogram.for_groups(range(N_GROUPS), keep_scores="never")
    agg = SubjectAggregates(subj_group, m, tail_size=1 << 16)
    (stats, wall_s, cpu_s, extra_s, abs_s) = timed(score_all_vs_all, x, subj, grp, h, aggregates=agg)
    t_exact = agg.threshold_at_fmr(1e-3)
    t_hist = h.threshold_at_fmr(1e-3)

    def boot():
        counts = agg.draw_subject_counts(n_boot, np.random.default_rng(0))
        return agg.replicate_counts(counts, thresholds={"fixed": t_exact.threshold}, recalibrate={"recal": 1e-3})

    rep, wall, cpu, extra, peak = timed(boot)
    fmr = rep.fmr_diagonal("recal")
    return {
        "comparisons": stats.n_comparisons,
        "mated": stats.n_mated,
        "score_wall_s": wall_s,
        "score_cpu_s": cpu_s,
        "tail": agg.n_tail,
        "threshold_exact": t_exact.threshold,
        "threshold_hist": t_hist.threshold,
        "boot_wall_s": wall,
        "boot_cpu_s": cpu,
        "boot_extra_MiB": extra / 2**20,
        "peak_MiB": peak / 2**20,
        "n_boot": n_boot,
        "unresolved": rep.unresolved["recal"],
        "fmr_g7_ci95": [float(np.nanpercentile(fmr[:, 7], 2.5)), float(np.nanpercentile(fmr[:, 7], 97.5))],
    }


def run_scale(scale: float, with_aggregates: bool, device: str) -> dict:
    from bench.scores.histogram import ScoreHistogram
from bench.scores.subjects import SubjectAggregates
    from bench.protocol.streaming import score_all_vs_all

    n = int(np.ceil((1 + np.sqrt(1 + 8 * scale)) / 2))
    x, subj, grp, subj_group, m = synthetic_embeddings(n)
    h = ScoreHistogram.for_groups(range(N_GROUPS), keep_scores="never")
    agg = SubjectAggregates(subj_group, m, tail_size=1 << 18) if with_aggregates else None
    stats, wall, cpu, extra, peak = timed(score_all_vs_all, x, subj, grp, h, aggregates=agg, device=device)
    out = {
        "n_images": n,
        "comparisons": stats.n_comparisons,
        "mated": stats.n_mated,
        "blocks": stats.n_blocks,
        "wall_s": wall,
        "cpu_s": cpu,
        "extra_MiB": extra / 2**20,
        "peak_MiB": peak / 2**20,
        "hist_MiB": h.nbytes / 2**20,
        "device": stats.device,
        "threshold_hist@1e-4": h.threshold_at_fmr(1e-4).threshold,
    }
    if agg is not None:
        out["threshold_exact@1e-4"] = agg.threshold_at_fmr(1e-4).threshold
        out["tail"] = agg.n_tail
        out["agg_MiB"] = agg.nbytes / 2**20
    return out


def run_ties(n_rows: int) -> dict:
    """Issue #9: ``n_rows`` manifest rows over only 4 distinct image files (2 rows per subject).

    Every comparison takes one of a handful of score values, a quarter of the non-mated
    ones tied at the largest possible score (identical images, distance 0): the exact
    tail must not keep the ties (memory) and the threshold must still be read.
    """
    import warnings

    import pandas as pd

    import bench.run as rs
    from bench.data.manifest import Manifest
    from bench.run import Protocol

    subjects = np.repeat([f"s{i}" for i in range(n_rows // 2)], 2)
    table = pd.DataFrame({"image_id": [f"i{i}" for i in range(n_rows)], "path": [f"p{i}" for i in range(n_rows)],
                          "subject_id": subjects, "label_source": "test",
                          "g": np.where(np.arange(n_rows) % 4 < 2, "x", "y")}).astype("string")
    manifest = Manifest(table=table, root=None, attributes=("g",), name="ties")
    four = np.random.default_rng(0).standard_normal((4, 128))
    emb = (four / np.linalg.norm(four, axis=1, keepdims=True))[np.arange(n_rows) % 4].astype(np.float32)
    labels = manifest.group_labels(["g"])

    def go():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return rs.evaluate_acquired(manifest, emb, np.full(n_rows, None, dtype=object), None,
                                        {"name": "ties", "metric": "euclidean", "nominal_threshold": None}, ["g"], labels,
                                        Protocol(target_fmrs=[1e-3], bootstrap_replicates=100),
                                        engine="stream")

    res, wall, cpu, extra, peak = timed(go)
    t = res.thresholds[0]
    return {"rows": n_rows, "comparisons": n_rows * (n_rows - 1) // 2, "wall_s": wall, "cpu_s": cpu,
            "extra_MiB": extra / 2**20, "peak_MiB": peak / 2**20, "threshold": t.get("threshold"),
            "achieved_fmr": t.get("achieved_fmr"), "tail": res.engine_info["aggregates"]["retained_nonmated"]}


def child(args: argparse.Namespace) -> None:
    """Run one case in this (fresh) process and print its JSON result."""
    import torch

    global ENGINE_THREADS
    ENGINE_THREADS = args.threads
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.case == "boot":
        res = run_boot(args.n_images, args.n_boot)
    elif args.case == "ties":
        res = run_ties(int(args.n))
    elif args.case == "scale":
        res = run_scale(args.scale, args.aggregates, args.device)
    else:
        mixed = args.case == "engine_mixed"
        fn = {"engine": run_engine, "engine_mixed": run_engine, "sklearn": run_sklearn, "floor": run_floor}[args.case]
        fn(*synthetic_scores(200_000, seed=1, interleaved=mixed))  # warm-up: imports, first calls
        data = synthetic_scores(int(args.n), seed=0, interleaved=mixed)
        # best of `repeats` (min wall time; the other figures from the same repeat)
        repeats = 1 if args.case == "sklearn" and args.n >= 1e7 else (3 if args.case == "sklearn" else 7)
        best = None
        for _ in range(repeats):
            run = timed(fn, *data)
            if best is None or run[1] < best[1]:
                best = run
        out, wall, cpu, extra, peak = best
        res = {"wall_s": wall, "cpu_s": cpu, "extra_MiB": extra / 2**20, "peak_MiB": peak / 2**20,
               "scores": int(data[0].size + data[2].size), "repeats": repeats, **out}
    res["loadavg"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(res))


def spawn(case: str, timeout: float, **kw) -> dict | None:
    cmd = [sys.executable, __file__, "--child", "--case", case]
    for k, v in kw.items():
        if isinstance(v, bool):
            if v:
                cmd.append(f"--{k.replace('_', '-')}")
        else:
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  {case} {kw}: timed out after {timeout:.0f} s", flush=True)
        return None
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print(f"  {case} {kw}: failed (rc {p.returncode})\n{p.stderr[-2000:]}", flush=True)
    return None


def sklearn_fits(n: int) -> bool:
    """roc_curve needs ~48 bytes per score (float64 copies, argsort, cumsums)."""
    need = 48 * n * 1.01 + 2**30
    avail = os.sysconf("SC_AVPHYS_PAGES") * PAGE
    return need < 0.8 * avail


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="*", type=float, default=[1e6, 1e7, 1e8], help="non-mated comparisons")
    ap.add_argument("--no-boot", action="store_true", help="skip the bootstrap case")
    ap.add_argument("--no-mixed", action="store_true", help="skip the interleaved-codes engine case")
    ap.add_argument("--scale", type=float, default=None, help="also run an all-vs-all scoring of this many comparisons")
    ap.add_argument("--device", default="cpu", help="torch device for --scale (cpu or cuda)")
    ap.add_argument("--json", type=Path, default=None, help="write all results to this JSON file")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    ap.add_argument("--threads", type=int, default=1, help="ScoreHistogram worker threads for (a)")
    ap.add_argument("--ties", type=float, nargs="*", default=[], help="also run N manifest rows over 4 image files (issue #9), e.g. 5e4")
    # child-process options
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--n-images", type=int, default=4480, help=argparse.SUPPRESS)
    ap.add_argument("--n-boot", type=int, default=1000, help=argparse.SUPPRESS)
    ap.add_argument("--aggregates", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    print(f"cpus={os.cpu_count()} loadavg={os.getloadavg()} numpy={np.__version__} "
          f"engine threads={args.threads}", flush=True)
    results: dict = {"metrics": {}, "boot": None, "scale": []}
    header = (f"{'N non-mated':>12} {'case':>13} {'wall s':>9} {'cpu s':>8} {'ns/score':>9} "
              f"{'extra MiB':>10} {'peak MiB':>9} {'sklearn/x':>10} {'x/floor':>8} "
              f"{'skl/x cpu':>10} {'x/fl cpu':>9} {'load':>5}")
    rows = []
    for n in args.sizes:
        n = int(n)
        case_res = {}
        cases = ["floor", "engine"] + ([] if args.no_mixed else ["engine_mixed"]) + ["sklearn"]
        for case in cases:
            if case == "sklearn" and not sklearn_fits(n):
                print(f"  sklearn at N={n:.0e}: skipped (would not fit in memory)", flush=True)
                continue
            print(f"  running {case} N={n:.0e} ...", flush=True)
            r = spawn(case, args.timeout, n=n, threads=args.threads)
            if r is not None:
                case_res[case] = r
        results["metrics"][n] = case_res
        floor = case_res.get("floor", {}).get("wall_s")
        skl = case_res.get("sklearn", {}).get("wall_s")
        floor_c = case_res.get("floor", {}).get("cpu_s")
        skl_c = case_res.get("sklearn", {}).get("cpu_s")
        nan = float("nan")
        for case, r in case_res.items():
            rows.append(
                f"{n:>12.0e} {case:>13} {r['wall_s']:>9.3f} {r['cpu_s']:>8.3f} "
                f"{r['wall_s'] / r['scores'] * 1e9:>9.2f} {r['extra_MiB']:>10.1f} {r['peak_MiB']:>9.0f} "
                f"{(skl / r['wall_s']) if skl else nan:>10.1f} "
                f"{(r['wall_s'] / floor) if floor else nan:>8.1f} "
                f"{(skl_c / r['cpu_s']) if skl_c and r['cpu_s'] else nan:>10.1f} "
                f"{(r['cpu_s'] / floor_c) if floor_c else nan:>9.1f} {r['loadavg']:>5.2f}"
            )
        if "engine" in case_res and "sklearn" in case_res:
            e, s = case_res["engine"], case_res["sklearn"]
            for f in TARGETS:
                dt = [e[f"g{g}_t@{f:g}"] - s[f"g{g}_t@{f:g}"] for g in range(N_GROUPS)]
                dfm = [s[f"g{g}_fm@{f:g}"] - e[f"g{g}_fm@{f:g}"] for g in range(N_GROUPS)]
                print(f"  N={n:.0e} f={f:g}: per-group t_engine - t_sklearn in [{min(dt):.2e}, {max(dt):.2e}] "
                      f"(bin width {e['resolution']:.2e}); false matches lost to binning: max {max(dfm)} "
                      f"(engine never more: min {min(dfm)} >= 0)", flush=True)
    print()
    print(header)
    print("\n".join(rows))
    if not args.no_boot:
        print("\n  running boot ...", flush=True)
        r = spawn("boot", args.timeout, n_images=4480, n_boot=1000)
        results["boot"] = r
        if r:
            print(f"boot: {r['comparisons']:.3e} comparisons ({r['mated']} mated) scored+aggregated in "
                  f"{r['score_wall_s']:.1f} s wall / {r['score_cpu_s']:.1f} s cpu; tail {r['tail']} scores; "
                  f"{r['n_boot']} replicates (fixed + re-calibrated threshold at FMR 1e-3) in "
                  f"{r['boot_wall_s']:.2f} s wall / {r['boot_cpu_s']:.2f} s cpu, extra {r['boot_extra_MiB']:.0f} MiB; "
                  f"unresolved {r['unresolved']}; load {r['loadavg']:.2f}")
    if args.scale:
        for with_agg in (False, True):
            print(f"\n  running scale {args.scale:.0e} (aggregates={with_agg}) ...", flush=True)
            r = spawn("scale", args.timeout, scale=args.scale, aggregates=with_agg, device=args.device)
            results["scale"].append(r)
            if r:
                print(f"scale: {r['comparisons']:.4e} comparisons of {r['n_images']} x 128-d embeddings on "
                      f"{r['device']}, aggregates={with_agg}: {r['wall_s']:.1f} s wall / {r['cpu_s']:.1f} s cpu "
                      f"({r['wall_s'] / r['comparisons'] * 1e9:.2f} ns/comparison), peak RSS {r['peak_MiB']:.0f} MiB "
                      f"(extra {r['extra_MiB']:.0f} MiB; histogram {r['hist_MiB']:.0f} MiB"
                      + (f", aggregates {r['agg_MiB']:.0f} MiB, tail {r['tail']}" if with_agg else "")
                      + f"); load {r['loadavg']:.2f}")
    results["ties"] = []
    for n in args.ties:
        print(f"\n  running ties rows={int(n):,} ...", flush=True)
        r = spawn("ties", args.timeout, n=int(n))
        results["ties"].append(r)
        if r:
            print(f"ties: {r['rows']:,} rows over 4 image files = {r['comparisons']:.3e} comparisons (streaming engine, "
                  f"100 bootstrap replicates): {r['wall_s']:.1f} s wall / {r['cpu_s']:.1f} s cpu, peak RSS {r['peak_MiB']:.0f} MiB "
                  f"(extra {r['extra_MiB']:.0f} MiB); tail kept {r['tail']}; threshold at FMR 1e-3 {r['threshold']:.3g} "
                  f"(achieved {r['achieved_fmr']:.3g}); load {r['loadavg']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
