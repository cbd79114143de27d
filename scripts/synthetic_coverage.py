"""Full-size check that the harness recovers injected differentials (issue #5).

Three measurements (numbered as printed), printed and written to ``results/synthetic_coverage/``:

1. **Coverage, injected differentials.** 100 seeded replicate populations of four
   groups with different identity spreads and image noises (so their true FMR and
   FNMR differ by up to ~5x); the harness's 95% subject-level bootstrap intervals
   (``bench.metrics.bootstrap``, B = 1000) are checked against the true per-group
   FMR and FNMR (``bench.synthetic.truth``) at two fixed thresholds.
2. **Coverage, calibrated dlib x London population** (5x London group sizes) at the
   London run's FMR = 1e-3 operating point, translated to the generator scale. FNMR
   there is ~1e-4: most replicates have zero false non-matches, where a percentile
   interval is [0, 0] and cannot cover (the harness reports the rule-of-3 upper
   bound for such cells instead, metrics-reference §5.5); the coverage of that upper
   bound is reported too.
0. **Streaming 10^6 subjects** (peak memory allocated during the stream is printed).
   One calibrated group of 10^6 subjects is generated in chunks (no comparison
   table); FNMR over all 10^6 mated comparisons and FMR over 10^6 non-mated
   comparisons of disjoint subject pairs (each chunk against the next) are compared
   with the truth (binomial z-scores).

Usage::

    python scripts/synthetic_coverage.py            # ~15-25 min on 2 cores
    python scripts/synthetic_coverage.py --quick    # smaller, for a smoke check
"""

from __future__ import annotations

import argparse
import json
import math
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bench.synthetic.generator import GroupSpec, SyntheticPopulation
from bench.synthetic.coverage import bootstrap_coverage
from bench.synthetic.truth import group_truth

REPO = Path(__file__).resolve().parents[1]

INJECTED = {
    "A": {"subjects": 150, "images_per_subject": 3, "identity_spread": 1.2, "image_noise": 0.6, "image_noise_sd": 0.25},
    "B": {"subjects": 150, "images_per_subject": 3, "identity_spread": 1.6, "image_noise": 0.5, "image_noise_sd": 0.25},
    "C": {"subjects": 150, "images_per_subject": 3, "identity_spread": 1.4, "image_noise": 0.45, "image_noise_sd": 0.25},
    "D": {"subjects": 150, "images_per_subject": 3, "identity_spread": 1.9, "image_noise": 0.65, "image_noise_sd": 0.25},
}


def _london(scale: float) -> tuple[dict, int, float]:
    cfg = yaml.safe_load((REPO / "configs" / "dataset" / "synthetic_london_dlib.yaml").read_text())
    groups = {}
    for g, p in cfg["loader"]["groups"].items():
        p = {k: v for k, v in p.items() if k != "labels"}
        p["subjects"] = max(2, int(round(p["subjects"] * scale)))
        groups[g] = p
    op = next(t for t in cfg["calibration"]["source_thresholds"] if t["name"].startswith("FMR="))
    return groups, int(cfg["loader"]["dim"]), float(op["generator_threshold"])


def _zero_error_upper_bound_coverage(per: pd.DataFrame) -> pd.DataFrame:
    """For zero-error cells: share whose rule-of-3 bound 1 - 0.05^(1/n) is >= the truth."""
    z = per[per["errors"] == 0].copy()
    if z.empty:
        return pd.DataFrame(columns=["group", "threshold_name", "metric", "zero_error_cells", "upper_bound_coverage"])
    z["ub"] = 1.0 - 0.05 ** (1.0 / z["comparisons"])
    z["ub_covers"] = z["ub"] >= z["true_rate"]
    return (z.groupby(["group", "threshold_name", "metric"]).agg(zero_error_cells=("ub_covers", "size"),
                                                                  upper_bound_coverage=("ub_covers", "mean")).reset_index())


def streaming_check(n_subjects: int, chunk: int, seed: int = 0) -> dict:
    """Stream one calibrated group (white) of ``n_subjects``; compare rates with the truth."""
    groups, dim, _ = _london(1.0)
    spec = dict(groups["white"], subjects=n_subjects)
    pop = SyntheticPopulation({"white": spec}, dim=dim, seed=seed)
    truth = group_truth(GroupSpec(**spec), dim, n_samples=1_000_000, seed=seed)
    t_fnmr = truth.threshold_at_fnmr(1e-3)  # a threshold where FNMR is measurable on 10^6 subjects
    t_fmr = truth.threshold_at_fmr(1e-3)
    fnmr_true, fmr_true = float(truth.fnmr([t_fnmr])[0]), float(truth.fmr([t_fmr])[0])
    del truth  # the truth's draws are not part of the streaming footprint
    fnm = n_mated = fm = n_nm = 0
    prev = None
    tracemalloc.start()
    t0 = time.perf_counter()
    for c in pop.iter_chunks(chunk_subjects=chunk):
        x = c.embeddings.astype(np.float64)
        s = np.einsum("id,id->i", x[:, 0], x[:, 1])
        fnm += int(np.count_nonzero(s < t_fnmr))
        n_mated += s.size
        if prev is not None:  # non-mated: image 0 of each subject vs image 1 of the same position in the previous chunk
            k = min(len(prev), len(x))
            s2 = np.einsum("id,id->i", prev[:k, 0], x[:k, 1])
            fm += int(np.count_nonzero(s2 >= t_fmr))
            n_nm += k
        prev = x
    secs = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out = {
        "subjects": n_subjects,
        "chunk_subjects": chunk,
        "seconds": secs,
        "peak_traced_mb": peak / 2**20,
        "all_embeddings_would_need_mb": n_subjects * 2 * dim * 4 / 2**20,
        "fnmr_threshold": t_fnmr,
        "fnmr_observed": fnm / n_mated,
        "fnmr_true": fnmr_true,
        "fnmr_errors": fnm,
        "mated_comparisons": n_mated,
        "fmr_threshold": t_fmr,
        "fmr_observed": fm / n_nm,
        "fmr_true": fmr_true,
        "fmr_errors": fm,
        "nonmated_comparisons": n_nm,
    }
    # independent comparisons (distinct subjects / disjoint subject pairs): binomial z-scores
    for m, n in (("fnmr", n_mated), ("fmr", n_nm)):
        p = out[f"{m}_true"]
        out[f"{m}_z"] = (out[f"{m}_observed"] - p) / math.sqrt(p * (1 - p) / n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="20 replicates, B=200, smaller populations")
    ap.add_argument("--out", default=str(REPO / "results" / "synthetic_coverage"))
    args = ap.parse_args()
    reps, boot = (20, 200) if args.quick else (args.replicates, args.bootstrap)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 200)
    report: dict = {"replicates": reps, "bootstrap": boot}

    n_stream = 100_000 if args.quick else 1_000_000
    s = streaming_check(n_stream, chunk=20_000)
    print(f"\n[0] streaming {n_stream:,} subjects in chunks of 20,000 ({s['seconds']:.0f} s; peak memory allocated while streaming "
          f"{s['peak_traced_mb']:.0f} MB, vs {s['all_embeddings_would_need_mb']:.0f} MB to hold all embeddings)")
    print(f"  FNMR at t={s['fnmr_threshold']:.4f}: observed {s['fnmr_observed']:.3e} ({s['fnmr_errors']} / {s['mated_comparisons']:,}),"
          f" true {s['fnmr_true']:.3e}, z = {s['fnmr_z']:+.2f}")
    print(f"  FMR  at t={s['fmr_threshold']:.4f}: observed {s['fmr_observed']:.3e} ({s['fmr_errors']} / {s['nonmated_comparisons']:,}),"
          f" true {s['fmr_true']:.3e}, z = {s['fmr_z']:+.2f}")
    report["streaming"] = s

    t0 = time.perf_counter()
    per1, sum1 = bootstrap_coverage(INJECTED, 24, {"t=0.60": 0.60, "t=0.65": 0.65}, replicates=reps, n_bootstrap=boot, seed=0)
    print(f"\n[1] injected differentials: 4 groups x 150 subjects x 3 images, dim 24, {reps} populations, B={boot} "
          f"({time.perf_counter() - t0:.0f} s)")
    print(sum1.to_string(index=False))
    sum1.to_csv(out / "coverage_injected.csv", index=False)
    report["injected"] = {"min_coverage": float(sum1["coverage"].min()), "mean_coverage": float(sum1["coverage"].mean())}

    scale = 2.0 if args.quick else 5.0
    groups, dim, t_op = _london(scale)
    t0 = time.perf_counter()
    per2, sum2 = bootstrap_coverage(groups, dim, {"London FMR=1e-3": t_op}, replicates=reps, n_bootstrap=boot, seed=10_000)
    zero = _zero_error_upper_bound_coverage(per2)
    print(f"\n[2] calibrated dlib x London, {scale:g}x group sizes, threshold {t_op:.4f} (London FMR=1e-3), "
          f"{reps} populations, B={boot} ({time.perf_counter() - t0:.0f} s)")
    print(sum2.to_string(index=False))
    if not zero.empty:
        print("zero-error cells: coverage of the one-sided 95% rule-of-3 upper bound")
        print(zero.to_string(index=False))
    sum2.to_csv(out / "coverage_london.csv", index=False)
    report["london"] = {"fmr_coverage": sum2.query("metric == 'FMR'")[["group", "coverage"]].to_dict(orient="records"),
                        "fnmr_coverage": sum2.query("metric == 'FNMR'")[["group", "coverage", "zero_error_share"]].to_dict(orient="records")}

    (out / "coverage.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
