"""Figure of a calibration: fitted vs real per-group score distributions and error-rate curves.

Draws what :func:`bench.synthetic.calibrate.calibrate` fitted
(:class:`~bench.synthetic.calibrate.CalibrationResult`) against the run's comparison
scores; ``fvbench-calibrate`` writes it as ``calibration.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.synthetic.calibrate import CalibrationResult
from bench.synthetic.truth import nonmated_law

__all__ = ["plot_calibration"]


def plot_calibration(result: CalibrationResult, scores: pd.DataFrame, path: str | Path, *, n_truth: int = 200_000) -> Path:
    """Figure of fitted vs real per-group score distributions and error-rate curves.

    Top row: real score histograms (mated, same-group non-mated) with the fitted
    densities; the last column shows cross-group non-mated pairs (fitted: averaged
    over random group centres). Bottom row: FMR(t) and FNMR(t), real (steps, from the
    run) vs fitted (smooth, from the ground truth of the fitted generator), on a log
    axis; vertical lines mark the run's thresholds. All x axes are in the model's own
    score units (the score map is inverted).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.synthetic.truth import group_truth

    smap = result.score_map
    attr = result.attribute
    la = scores[f"{attr}_a"].astype(str).to_numpy()
    lb = scores[f"{attr}_b"].astype(str).to_numpy()
    mated = scores["mated"].to_numpy(dtype=bool)
    raw = scores["score"].to_numpy(dtype=np.float64)
    labels = list(result.groups)
    ncol = len(labels) + 1
    fig, axes = plt.subplots(2, ncol, figsize=(3.3 * ncol, 6.4), squeeze=False)
    lo_s = float(np.quantile(raw, 0.0005)) - 0.05
    hi_s = float(raw.max()) + 0.05
    grid = np.linspace(lo_s, hi_s, 240)
    grid_c = smap.to_generator(grid)
    # d(cos)/d(score) for the density change of variable
    dc = np.gradient(grid_c, grid)
    colours = {"mated": "#1b7837", "nonmated": "#b2182b"}
    rng = np.random.default_rng(0)
    for j, label in enumerate(labels):
        fit = result.groups[label]
        truth = group_truth(fit.spec(result.image_noise_sd), result.dim, n_samples=n_truth, seed=j)
        in_g = (la == label) & (lb == label)
        ax = axes[0, j]
        for cls, sel, law in (("mated", in_g & mated, truth.mated), ("nonmated", in_g & ~mated, truth.nonmated)):
            ax.hist(raw[sel], bins=30, range=(lo_s, hi_s), density=True, alpha=0.35, color=colours[cls],
                    label=f"real {cls.replace('nonmated', 'non-mated')} (n={int(sel.sum())})")
            dens = np.array([law.pdf(float(c)) for c in grid_c]) * dc
            ax.plot(grid, dens, color=colours[cls], lw=1.5, label=f"fitted {cls.replace('nonmated', 'non-mated')}")
        ax.set_title(f"{attr} = {label}\n({fit.subjects} subjects)", fontsize=9)
        ax.set_xlabel(smap.score_label(str(result.source.get("model") or "")), fontsize=8)
        ax.set_ylabel("density (per score unit)", fontsize=8)
        ax.legend(fontsize=6, loc="upper left")
        ax2 = axes[1, j]
        m_sorted = np.sort(raw[in_g & mated])
        n_sorted = np.sort(raw[in_g & ~mated])
        fmr_real = 1.0 - np.searchsorted(n_sorted, grid, side="left") / n_sorted.size
        fnmr_real = np.searchsorted(m_sorted, grid, side="left") / m_sorted.size
        ax2.step(grid, np.where(fmr_real > 0, fmr_real, np.nan), where="post", color=colours["nonmated"], lw=1, label="FMR real")
        ax2.step(grid, np.where(fnmr_real > 0, fnmr_real, np.nan), where="post", color=colours["mated"], lw=1, label="FNMR real")
        ax2.plot(grid, truth.fmr(grid_c), color=colours["nonmated"], ls="--", lw=1.5, label="FMR fitted (truth)")
        ax2.plot(grid, truth.fnmr(grid_c), color=colours["mated"], ls="--", lw=1.5, label="FNMR fitted (truth)")
        _threshold_lines(ax2, result)
        ax2.set_yscale("log")
        ax2.set_ylim(1e-5, 1.2)
        ax2.set_xlabel("threshold t (" + smap.score_label().split(": ", 1)[1] + ")", fontsize=8)
        ax2.set_ylabel("error rate (share of comparisons)", fontsize=8)
        ax2.legend(fontsize=6, loc="lower left")
    # cross-group column
    ax = axes[0, -1]
    cross = ~mated & (la != lb)
    ax.hist(raw[cross], bins=30, range=(lo_s, hi_s), density=True, alpha=0.35, color="#2166ac", label=f"real cross-group (n={int(cross.sum())})")
    law = _expected_cross_law(result, n_truth, rng)
    dens = np.array([law.pdf(float(c)) for c in grid_c]) * dc
    ax.plot(grid, dens, color="#2166ac", lw=1.5, label="fitted cross-group\n(mean over random centres)")
    ax.set_title(f"{attr}: pairs from different groups", fontsize=9)
    ax.set_xlabel(smap.score_label(str(result.source.get("model") or "")), fontsize=8)
    ax.set_ylabel("density (per score unit)", fontsize=8)
    ax.legend(fontsize=6, loc="upper left")
    ax2 = axes[1, -1]
    n_sorted = np.sort(raw[cross])
    fmr_real = 1.0 - np.searchsorted(n_sorted, grid, side="left") / n_sorted.size
    ax2.step(grid, np.where(fmr_real > 0, fmr_real, np.nan), where="post", color="#2166ac", lw=1, label="cross-group FMR real")
    ax2.plot(grid, law.sf(grid_c), color="#2166ac", ls="--", lw=1.5, label="cross-group FMR fitted")
    _threshold_lines(ax2, result)
    ax2.set_yscale("log")
    ax2.set_ylim(1e-5, 1.2)
    ax2.set_xlabel("threshold t (" + smap.score_label().split(": ", 1)[1] + ")", fontsize=8)
    ax2.set_ylabel("error rate (share of comparisons)", fontsize=8)
    ax2.legend(fontsize=6, loc="lower left")
    src = result.source
    fig.suptitle(
        f"Synthetic generator fitted to {src.get('model')} x {src.get('dataset')} (run {src.get('run_name')}): "
        f"dim={result.dim}, image_noise_sd={result.image_noise_sd:.2f}. Real = histograms/steps, fitted = lines.",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return path


def _threshold_lines(ax: Any, result: CalibrationResult) -> None:
    for t in result.thresholds:
        ax.axvline(t["threshold"], color="0.4", lw=0.8, ls=":")
        ax.text(t["threshold"], 1.0, f" {t['name']}", rotation=90, va="top", ha="right", fontsize=6, color="0.3")


def _expected_cross_law(result: CalibrationResult, n: int, rng: np.random.Generator) -> Any:
    """Cross-group score law, pooled over group pairs (weights: subjects x subjects) and
    averaged over random centres (cosine of two random unit vectors in ``dim``)."""
    from bench.synthetic.truth import ReducedDraws, ScoreLaw

    fits = list(result.groups.values())
    pairs = [(a, b) for i, a in enumerate(fits) for b in fits[i + 1 :]]
    if not pairs:
        fits2 = fits * 2
        pairs = [(fits2[0], fits2[1])]
    w = np.array([a.subjects * b.subjects for a, b in pairs], dtype=np.float64)
    counts = rng.multinomial(n, w / w.sum())
    a_all, b_all, w_all = [], [], []
    k = (result.dim - 1) / 2.0
    for (fa, fb), c in zip(pairs, counts):
        if c == 0:
            continue
        draws = ReducedDraws.random(rng, int(c), result.dim)
        gamma = 2.0 * rng.beta(k, k, size=int(c)) - 1.0
        law = nonmated_law(fa.spec(result.image_noise_sd), fb.spec(result.image_noise_sd), result.dim, draws, centre_cosine=gamma)  # type: ignore[arg-type]
        a_all.append(law.a)
        b_all.append(law.b)
        w_all.append(np.ones(int(c)) if law.w is None else law.w)
    return ScoreLaw(np.concatenate(a_all), np.concatenate(b_all), result.dim, np.concatenate(w_all))
