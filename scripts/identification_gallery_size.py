#!/usr/bin/env python3
"""Published synthetic result: per-group FPIR as the gallery grows and as its mix changes (issue 13).

Population: the generator calibrated to dlib x FRL London (``configs/dataset/
synthetic_london_dlib.yaml``; generated embeddings, no real person), scaled up, one image
per subject. Subjects are split, per group, into (i) 1:1 calibration subjects, (ii)
non-enrolled probes (non-mated searches) and (iii) the gallery pool; the three sets are
disjoint.

* Threshold: fixed, the generator threshold of dlib's FMR = 1e-3 threshold on London
  (``calibration.source_thresholds``), so the numbers speak about that operating point.
* Gallery size: a seeded random order of the pool (the London mix in expectation); the
  gallery of size N is its first N entries, so one search per probe against the whole
  pool, keeping every candidate at or above T (list length ``--top-l``; the script stops if
  a list is full), gives FPIR at every N at once. Mean and range over ``--orders`` orders.
* Composition: galleries of fixed size N0 in which one group's share runs from 0 to 1
  (the rest in the pool's mix).
* Prediction: ``1 - prod_h (1 - FMR_gh(T))^n_h`` with FMR_gh measured 1:1 on the
  calibration subjects (all pairs across the two halves of each group's calibration set).

Writes ``results/synthetic_gallery_size/`` (or ``--out``): ``gallery_size.csv``,
``composition.csv``, ``cross_fmr.csv``, ``gallery_size.png``, ``composition.png``,
``run.json`` (parameters, versions) and ``README.md``.

Usage::

    python scripts/identification_gallery_size.py            # about 2-4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from bench.synthetic.generator import SyntheticPopulation  # noqa: E402
from bench.metrics.identification import predicted_fpir  # noqa: E402
from bench.protocol.search import search  # noqa: E402
from bench.report.provenance import code_version, package_versions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAVE = {"dpi": 130, "metadata": {"Software": None}, "bbox_inches": "tight"}


OWN_FILES = {"gallery_size.csv", "composition.csv", "cross_fmr.csv", "gallery_size.png", "composition.png", "run.json", "README.md"}


def _check_out(out: Path) -> None:
    """Exit with one line unless ``out`` is absent, empty, or holds only this script's files (plain files)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise SystemExit(f"identification_gallery_size: --out {str(out)!r} exists and is not a folder; choose another --out")
    if not out.exists():
        return
    foreign = sorted(p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in out.iterdir()
                     if p.name not in OWN_FILES or p.is_symlink() or not p.is_file())
    if foreign:
        raise SystemExit(f"identification_gallery_size: --out {str(out)!r} holds files this script did not write "
                         f"({', '.join(foreign[:5])}); refusing to replace it: choose another --out or move them away")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=600, help="subjects_scale of the calibrated groups (101 subjects x scale)")
    ap.add_argument("--probes", type=int, default=1000, help="non-mated probes per group")
    ap.add_argument("--calib", type=int, default=2000, help="1:1 calibration subjects per group")
    ap.add_argument("--orders", type=int, default=10, help="random gallery orders averaged")
    ap.add_argument("--n0", type=int, default=500, help="gallery size of the composition sweep")
    ap.add_argument("--top-l", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "results" / "synthetic_gallery_size"))
    args = ap.parse_args()
    _check_out(Path(args.out))  # before computing: never replace a folder this script did not write

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "configs/dataset/synthetic_london_dlib.yaml"), resolve=False)
    groups = {g: {**spec, "images_per_subject": 1} for g, spec in cfg["loader"]["groups"].items()}
    thr = next(t for t in cfg["calibration"]["source_thresholds"] if t["name"] == "FMR=1e-03")
    t = float(thr["generator_threshold"])
    pop = SyntheticPopulation(groups, dim=int(cfg["loader"]["dim"]), seed=args.seed, subjects_scale=args.scale, name="synthetic_london_dlib")
    manifest, emb, _ = pop.generate()
    label = manifest.table["face_eth"].astype(str).to_numpy()
    names = sorted(set(label.tolist()))
    rng = np.random.default_rng(np.random.SeedSequence(entropy=args.seed, spawn_key=(13, 7)))
    calib, probes, pool = {}, {}, []
    for g in names:
        idx = rng.permutation(np.flatnonzero(label == g))
        calib[g], probes[g] = idx[: args.calib], idx[args.calib: args.calib + args.probes]
        pool.append(idx[args.calib + args.probes:])
    pool = np.concatenate(pool)
    pool_g = np.searchsorted(names, label[pool])

    # 1:1 cross-group FMR on the calibration subjects
    rows = []
    fmr = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            x, y = calib[a][: args.calib // 2], calib[b][args.calib // 2:]
            s = emb[x] @ emb[y].T
            fmr[i, j] = (s >= t).mean()
            rows.append({"probe_group": a, "gallery_group": b, "threshold": t, "comparisons": s.size,
                         "false_matches": int((s >= t).sum()), "fmr": fmr[i, j]})
    cross = pd.DataFrame(rows)

    # one search of every probe against the whole pool, every candidate >= T kept
    q_idx = np.concatenate([probes[g] for g in names])
    q_g = np.repeat(np.arange(len(names)), [probes[g].size for g in names])
    res = search(emb[q_idx], emb[pool], top_l=args.top_l, thresholds=[t], gallery_groups=pool_g, dtype="float32", device="cpu")
    hits = res.scores >= np.float32(t)
    full = res.counts[:, 0, :].sum(axis=1)
    if (full > args.top_l).any():
        raise SystemExit(f"{int((full > args.top_l).sum())} searches have more than --top-l={args.top_l} candidates >= T; raise --top-l")
    h_rows, h_cols = np.nonzero(hits)
    h_pos = res.candidates[h_rows, h_cols]  # pool index of every false candidate

    sizes = np.unique(np.round(np.logspace(1, np.log10(pool.size), 25)).astype(int))
    meas = np.zeros((args.orders, len(names), sizes.size))
    pred = np.zeros((args.orders, len(names), sizes.size))
    for o in range(args.orders):
        order = np.random.default_rng(np.random.SeedSequence(entropy=args.seed, spawn_key=(13, 8, o))).permutation(pool.size)
        place = np.empty(pool.size, dtype=np.int64)
        place[order] = np.arange(pool.size)
        first = np.full(q_idx.size, np.iinfo(np.int64).max)
        np.minimum.at(first, h_rows, place[h_pos])  # earliest place of a hit in this order
        cum = np.stack([np.cumsum(pool_g[order] == k) for k in range(len(names))], axis=1)  # (pool, H)
        for gi in range(len(names)):
            sel = q_g == gi
            meas[o, gi] = (first[sel][:, None] < sizes[None, :]).mean(axis=0)
        pred[o] = predicted_fpir(fmr, cum[sizes - 1]).T
    size_rows = []
    for gi, g in enumerate(names):
        for k, n in enumerate(sizes):
            size_rows.append({"probe_group": g, "gallery_size": int(n), "threshold": t, "threshold_source": "dlib FMR=1e-03 on FRL London",
                              "nonmated_searches": int(probes[g].size), "orders": args.orders,
                              "fpir_measured": meas[:, gi, k].mean(), "fpir_min": meas[:, gi, k].min(), "fpir_max": meas[:, gi, k].max(),
                              "fpir_predicted": pred[:, gi, k].mean()})
    size_df = pd.DataFrame(size_rows)

    # composition: gallery of n0 with a share s of group h
    comp_rows = []
    shares = np.linspace(0, 1, 11)
    perm = np.random.default_rng(np.random.SeedSequence(entropy=args.seed, spawn_key=(13, 9))).permutation(pool.size)
    for hi, h in enumerate(names):
        own = perm[pool_g[perm] == hi]
        rest = perm[pool_g[perm] != hi]
        for s in shares:
            k = int(round(s * args.n0))
            if k > own.size or args.n0 - k > rest.size:
                continue
            member = np.zeros(pool.size, dtype=bool)
            member[own[:k]] = True
            member[rest[: args.n0 - k]] = True
            alarmed = np.zeros(q_idx.size, dtype=bool)
            alarmed[np.unique(h_rows[member[h_pos]])] = True
            n_h = np.bincount(pool_g[member], minlength=len(names))
            p = predicted_fpir(fmr, n_h)
            for gi, g in enumerate(names):
                comp_rows.append({"varied_group": h, "share": float(s), "gallery_size": args.n0, "probe_group": g,
                                  "fpir_measured": alarmed[q_g == gi].mean(), "fpir_predicted": float(p[gi]), "threshold": t})
    comp_df = pd.DataFrame(comp_rows)

    out = Path(args.out)
    _check_out(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for df, name in ((size_df, "gallery_size.csv"), (comp_df, "composition.csv"), (cross, "cross_fmr.csv")):
        df.to_csv(out / name, index=False, float_format="%.8g", lineterminator="\n")
    plot_size(size_df, out / "gallery_size.png", t)
    plot_composition(comp_df, out / "composition.png", args.n0)
    params = {**vars(args), "out": None, "threshold": t, "pool": int(pool.size), "population_subjects": int(len(manifest.table)),
              "groups": pop.settings()["groups"], "dim": pop.dim}
    (out / "run.json").write_text(json.dumps({"script": "scripts/identification_gallery_size.py", "parameters": params,
                                              "provenance": {"code": code_version(), "packages": package_versions()}}, indent=2, default=str) + "\n")
    big = size_df[size_df["gallery_size"] == sizes[-1]].set_index("probe_group")
    lines = ["# Synthetic: per-group FPIR vs gallery size and mix", "",
             "Generated embeddings (no real person) from the generator calibrated to dlib x FRL London "
             "(`configs/dataset/synthetic_london_dlib.yaml`), fixed threshold = dlib's FMR=1e-3 threshold on London "
             f"(generator score {t:.4f}). {int(probes[names[0]].size)} non-mated searches per group; galleries drawn from a pool of "
             f"{pool.size:,} enrolled people in the London mix. Made by `python scripts/identification_gallery_size.py`; "
             "definitions in `docs/identification.md`.", "",
             "![FPIR vs gallery size](gallery_size.png)", "", "![FPIR vs gallery mix](composition.png)", "",
             f"At N = {sizes[-1]:,}: " + "; ".join(f"{g} FPIR {r['fpir_measured']:.3f} (predicted {r['fpir_predicted']:.3f})" for g, r in big.iterrows()) + ".",
             "", "Files: `gallery_size.csv`, `composition.csv`, `cross_fmr.csv` (1:1 FMR on separate calibration subjects), `run.json`."]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-3:]))


def plot_size(df: pd.DataFrame, path: Path, t: float) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for i, (g, r) in enumerate(df.groupby("probe_group")):
        c = f"C{i}"
        ax.plot(r["gallery_size"], r["fpir_measured"].where(r["fpir_measured"] > 0), "o-", ms=3, color=c, label=f"{g} measured (n={r['nonmated_searches'].iloc[0]})")
        ax.fill_between(r["gallery_size"], r["fpir_min"].where(r["fpir_min"] > 0), r["fpir_max"], color=c, alpha=0.15)
        ax.plot(r["gallery_size"], r["fpir_predicted"], "--", color=c, label=f"{g} predicted from 1:1 FMR")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-3, top=1.2)
    ax.set_xlabel("gallery size N (enrolled people, London mix)")
    ax.set_ylabel("FPIR (share of non-mated searches raising an alarm)")
    ax.set_title(f"Synthetic (calibrated to dlib x FRL London): FPIR per probe group vs gallery size\n"
                 f"fixed threshold {t:.4f} (dlib FMR=1e-3 on London); band: range over gallery orders; dashed: independence prediction", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, **SAVE)
    plt.close(fig)


def plot_composition(df: pd.DataFrame, path: Path, n0: int) -> None:
    varied = sorted(df["varied_group"].unique())
    fig, axes = plt.subplots(1, len(varied), figsize=(3.6 * len(varied), 3.8), sharey=True)
    for ax, h in zip(np.atleast_1d(axes), varied):
        d = df[df["varied_group"] == h]
        for i, (g, r) in enumerate(d.groupby("probe_group")):
            ax.plot(r["share"], r["fpir_measured"].where(r["fpir_measured"] > 0), "o-", ms=3, color=f"C{i}", label=f"{g} measured")
            ax.plot(r["share"], r["fpir_predicted"], "--", color=f"C{i}", label=f"{g} predicted")
        ax.set_yscale("log")
        ax.set_xlim(-0.03, 1.03)
        ax.set_xlabel(f"share of {h} in the gallery")
        ax.set_title(f"varying {h}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel(f"FPIR at N = {n0:,}")
    np.atleast_1d(axes)[-1].legend(fontsize=6)
    fig.suptitle("Synthetic: FPIR per probe group as one group's share of the gallery changes (fixed N, fixed threshold)", fontsize=9)
    fig.savefig(path, **SAVE)
    plt.close(fig)


if __name__ == "__main__":
    main()
