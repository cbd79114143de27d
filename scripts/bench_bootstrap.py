#!/usr/bin/env python3
"""Time the subject-level bootstrap (``bench.metrics.bootstrap``) on large comparison tables.

Cases (each built the way ``bench.run.evaluate`` builds its table: seeded
:class:`bench.synthetic.generator.SyntheticPopulation`, simulated failures to acquire
dropped, ``all_pairs`` + ``similarity_matrix`` (cosine) + ``comparison_table``):

``demo``  -- the default ``fvbench`` population of commit 5fd38f5 (4 groups x 200
             subjects x 2 images, 128-d, parameters in ``DEMO_GROUPS``; ~1.24e6
             non-mated comparisons);
``1e7``   -- 4 groups x 228 subjects x 5 images (the demo's group parameters), ~1.0e7
             non-mated comparisons: few subjects with many images, so the table is
             cheap to build.

Each case times ``bootstrap_replicates(n_replicates=1000, seed=0)`` on attribute
``group`` with the threshold at FMR 1e-3 calibrated on the table and
``recalibrate={"FMR=1e-03": 1e-3}`` (what ``evaluate`` runs per attribute), then a
run with the threshold held fixed. ``--check N`` re-computes the re-calibrated
thresholds and false-match counts of the first N replicates with the dense reference
``_recalibrated_thresholds_full`` (all rows, the method used before the top-prefix
search) and fails if any value differs.

Time is wall-clock (``perf_counter``) and process CPU time; ``peak RSS`` is the
process high-water mark (``ru_maxrss``, table included). The load average is printed:
other jobs on a shared machine inflate wall time.

Usage::

    python scripts/bench_bootstrap.py                 # demo and 1e7, check 8 replicates
    python scripts/bench_bootstrap.py --cases demo --check 0

Target (issue #3): 1000 subject-level replicates at 1e7 comparisons in under 10 s
(2-core machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np

from bench.synthetic.generator import SyntheticPopulation
from bench.metrics import bootstrap as bs
from bench.metrics import bootstrap_design as bsd
from bench.metrics.rates import _allowed_false_matches, threshold_at_fmr
from bench.protocol.pairs import all_pairs, comparison_table
from bench.protocol.scoring import similarity_matrix

TARGET = 1e-3
NAME = "FMR=1e-03"


# configs/dataset/synthetic.yaml at commit 5fd38f5 (fixed here so timings stay comparable)
DEMO_GROUPS = {
    "A": {"subjects": 200, "images_per_subject": 2, "identity_spread": 1.40, "image_noise": 0.80, "fta_rate": 0.005},
    "B": {"subjects": 200, "images_per_subject": 2, "identity_spread": 1.25, "image_noise": 0.85, "fta_rate": 0.01},
    "C": {"subjects": 200, "images_per_subject": 2, "identity_spread": 1.10, "image_noise": 0.90, "fta_rate": 0.01},
    "D": {"subjects": 200, "images_per_subject": 2, "identity_spread": 1.00, "image_noise": 0.95, "fta_rate": 0.03},
}


def _groups(images: int | None = None, subjects: int | None = None) -> dict:
    cfg = {g: dict(spec) for g, spec in DEMO_GROUPS.items()}
    for spec in cfg.values():
        if images is not None:
            spec["images_per_subject"] = images
        if subjects is not None:
            spec["subjects"] = subjects
    return cfg


def build_table(groups: dict, seed: int = 0):
    """Comparison table of a synthetic population, as ``bench.run.evaluate`` builds it."""
    manifest, emb, acquired = SyntheticPopulation(groups, dim=128, seed=seed).generate()
    labels = manifest.group_labels(["group"])
    table = manifest.table[acquired].reset_index(drop=True)
    lab = labels[acquired].reset_index(drop=True)
    ia, ib, mated = all_pairs(table["subject_id"].astype(str).to_numpy(), seed=seed)
    scores = similarity_matrix(emb[acquired], "cosine")[ia, ib]
    return comparison_table(table, lab, ia, ib, mated, scores)


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def run_case(name: str, groups: dict, n_replicates: int, check: int) -> bool:
    comp, wall, _ = _timed(lambda: build_table(groups))
    nm = ~comp["mated"].to_numpy()
    thr = threshold_at_fmr(comp["score"].to_numpy()[nm], TARGET).threshold
    n_subjects = len(set(comp["subject_a"]) | set(comp["subject_b"]))
    print(f"\n[{name}] {len(comp):,} comparisons ({int(nm.sum()):,} non-mated, {int((~nm).sum()):,} mated), "
          f"{n_subjects} subjects; built in {wall:.1f} s; peak RSS {_peak_rss_gib():.2f} GiB")
    kw = dict(attribute="group", thresholds={NAME: thr}, n_replicates=n_replicates, seed=0)
    reps, wall, cpu = _timed(lambda: bs.bootstrap_replicates(comp, recalibrate={NAME: TARGET}, **kw))
    print(f"  {n_replicates} replicates, re-calibrated threshold: {wall:6.2f} s wall, {cpu:6.2f} s CPU; "
          f"peak RSS {_peak_rss_gib():.2f} GiB")
    _, wall_f, cpu_f = _timed(lambda: bs.bootstrap_replicates(comp, **kw))
    print(f"  {n_replicates} replicates, fixed threshold:        {wall_f:6.2f} s wall, {cpu_f:6.2f} s CPU")
    ok = True
    if check:
        design = bsd._design(comp, "group")
        counts = reps.subject_counts[:check]
        total = reps.comparisons[(NAME, "FMR")][:check, 0]
        k = np.array([_allowed_false_matches(TARGET, int(t)) if t > 0 else 0 for t in total], dtype=np.float64)
        thr_ref, fm_ref = [], []
        for b in range(check):  # one replicate at a time: (1 x N_nonmated) work arrays
            t, f = bsd._recalibrated_thresholds_full(design, counts[b:b + 1], k[b:b + 1])
            thr_ref.append(t)
            fm_ref.append(f)
        same_thr = np.array_equal(np.concatenate(thr_ref), reps.thresholds[NAME][:check])
        same_fm = np.array_equal(np.rint(np.concatenate(fm_ref)), reps.errors[(NAME, "FMR")][:check])
        ok = same_thr and same_fm
        print(f"  dense reference on {check} replicates: thresholds {'equal' if same_thr else 'DIFFER'}, "
              f"false matches {'equal' if same_fm else 'DIFFER'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="*", default=["demo", "1e7"], choices=["demo", "1e7"])
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--check", type=int, default=8, help="replicates compared with the dense reference (0: none)")
    args = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; python {sys.version.split()[0]}, "
          f"numpy {np.__version__}")
    cases = {"demo": _groups(), "1e7": _groups(images=5, subjects=228)}
    ok = all([run_case(c, cases[c], args.replicates, args.check) for c in args.cases])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
