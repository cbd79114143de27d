"""Figures of a run: DET per group, error rates with intervals, cross-group FMR matrix.

Conventions (docs/protocol.md §1.3): error rates on log10 axes (NIST FRVT
style); lower-left is better on a DET. Zero error counts cannot sit on a log axis:
they are drawn at the axis floor with an open marker, and the caption says so.
Every legend entry carries the group's sample sizes. Figures are written without
timestamps so reruns give identical files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from bench.report.markdown import safe_name  # noqa: E402  (one rule for figure file names)

__all__ = ["plot_det", "plot_error_rates", "plot_fmr_matrix", "plot_score_distributions", "plot_score_histograms", "safe_name"]

_SAVE = {"dpi": 130, "metadata": {"Software": None}, "bbox_inches": "tight"}
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]




def t_label(t: float) -> str:
    """A threshold for a figure label: ``t = x`` when 4 digits are exact, ``t just above x``, else ``t ≈ x``."""
    t = float(t)
    short = f"{t:.4g}"
    if float(short) == t:
        return f"t = {short}"
    below = float(np.nextafter(t, -np.inf))
    if float(f"{below:.6g}") == below:
        return f"t just above {below:.6g}"
    return f"t ≈ {short}"


#: Threshold lines: colour, line style and a name label each (never line style alone).
_THRESHOLD_STYLES = [("black", "--"), ("C2", ":"), ("C4", "-."), ("C1", (0, (5, 1, 1, 1)))]


def _threshold_lines(ax: plt.Axes, thresholds: list[dict]) -> None:
    """Vertical line per usable threshold, told apart by colour, style and its name at the top."""
    for j, t in enumerate(t for t in thresholds if t.get("status") == "ok"):
        colour, ls = _THRESHOLD_STYLES[j % len(_THRESHOLD_STYLES)]
        ax.axvline(t["threshold"], color=colour, ls=ls, lw=1.4, label=f"{t['name']} ({t_label(t['threshold'])})")
        ax.text(t["threshold"], 1.0, f" {t['name']}", transform=ax.get_xaxis_transform(), rotation=90, va="top",
                ha="right", fontsize=7, color=colour)


def _groups(df: pd.DataFrame) -> list[str]:
    return [g for g in df["group"].unique().tolist() if g != "(all)"]


def plot_det(dets: dict, eer: pd.DataFrame, per_group: pd.DataFrame, attribute: str, thresholds: list[dict], path: Path, *, title: str) -> None:
    """DET curves (FNMR vs FMR, log10 axes), one per group, operating points marked.

    Parameters
    ----------
    dets : dict
        (attribute, group) -> :class:`bench.metrics.rates.DetCurve`.
    eer : pandas.DataFrame
        Per-group EER table (for the legend sample sizes).
    per_group : pandas.DataFrame
        Per-group rates (operating points at the global thresholds).
    attribute : str
    thresholds : list of dict
        Thresholds of the run (usable ones are marked).
    path : pathlib.Path
        PNG to write.
    title : str
    """
    fig, ax = plt.subplots(figsize=(7.2, 6.4))
    rows = eer[eer["attribute"] == attribute]
    # separate floors: FMR resolves 1/n_nonmated, FNMR only 1/n_mated
    xfloor = 10 ** np.floor(np.log10(0.5 / max(1, int(rows["n_nonmated"].max()))))
    yfloor = 10 ** np.floor(np.log10(0.5 / max(1, int(rows["n_mated"].max()))))
    usable = [t for t in thresholds if t.get("status") == "ok"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    skipped = []
    for i, (_, r) in enumerate(rows.iterrows()):
        g = r["group"]
        c = "black" if g == "(all)" else colours[i % len(colours)]
        det = dets.get((attribute, g))
        if det is None:
            skipped.append(f"{g} (mated {r['n_mated']}, non-mated {r['n_nonmated']})")
            continue
        fmr = np.clip(det.fmr, xfloor, 1)
        fnmr = np.clip(det.fnmr, yfloor, 1)
        label = f"{g}: {r['n_mated']:,} mated / {r['n_nonmated']:,} non-mated, EER {r['eer']:.3f}"
        ax.step(fmr, fnmr, where="post", color=c, lw=2.6 if g == "(all)" else 1.5, ls="--" if g == "(all)" else "-",
                alpha=0.8 if g == "(all)" else 1.0, label=label + (" (all groups; black dashed line)" if g == "(all)" else ""))
        sel = per_group[(per_group["attribute"] == attribute) & (per_group["group"] == g)]
        for j, t in enumerate(usable):
            pts = sel[sel["threshold_name"] == t["name"]].set_index("metric")["rate"]
            if {"FMR", "FNMR"} <= set(pts.index) and np.isfinite(pts["FMR"]) and np.isfinite(pts["FNMR"]):
                x, y = max(pts["FMR"], xfloor), max(pts["FNMR"], yfloor)
                zero = pts["FMR"] == 0 or pts["FNMR"] == 0
                ax.plot(x, y, _MARKERS[j % len(_MARKERS)], ms=8, color=c, mfc="white" if zero else c, mec=c, clip_on=False, zorder=5)
    for j, t in enumerate(usable):
        ax.plot([], [], _MARKERS[j % len(_MARKERS)], color="grey", label=f"operating point at {t['name']} ({t_label(t['threshold'])})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(xfloor, 1)
    ax.set_ylim(yfloor, 1)
    ax.set_xlabel("False match rate (FMR, fraction of non-mated comparisons)")
    ax.set_ylabel("False non-match rate (FNMR, fraction of mated comparisons)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.17), ncol=1, frameon=False)
    eers = rows["eer"].to_numpy(dtype=float)
    if np.isfinite(eers).any() and np.nanmax(eers) == 0.0:
        ax.text(
            0.5, 0.5,
            "EER = 0 for every group: some threshold separates all mated\nfrom all non-mated scores, so every curve runs along\n"
            "the axes (FMR = 0 or FNMR = 0). The differentials lie in\nwhere the thresholds fall: see the operating points,\n"
            "the error-rate and the score-distribution figures.",
            transform=ax.transAxes, ha="center", va="center", fontsize=9,
            bbox={"facecolor": "white", "edgecolor": "grey"},
        )
    note = (
        f"Zero error counts are drawn at the axis floors (FMR {xfloor:.0e}, FNMR {yfloor:.0e}; open markers). "
        "Per-group FMR: both subjects in the group."
    )
    if skipped:
        note += "\nNo DET (needs mated and non-mated comparisons): " + "; ".join(skipped)
    ax.text(0.0, -0.09, note, transform=ax.transAxes, fontsize=7, va="top")
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def plot_error_rates(per_group: pd.DataFrame, attribute: str, path: Path, *, title: str, interval: str = "wilson") -> None:
    """FMR and FNMR per group at each threshold, with intervals (log10 y axis).

    Parameters
    ----------
    per_group : pandas.DataFrame
        Per-group rows with ``rate`` and ``<interval>_low/high`` columns.
    attribute : str
    path : pathlib.Path
    title : str
    interval : str
        Column prefix of the interval drawn (``"wilson"``, or ``"boot"`` when the
        subject bootstrap is present).
    """
    df = per_group[(per_group["attribute"] == attribute) & per_group["metric"].isin(["FMR", "FNMR"])]
    counts_only = sorted(set(df.loc[df["flag"].fillna("").astype(str) == "suppressed_small_group", "group"]))
    df = df[~df["group"].isin(counts_only)]  # no empty slot for a group published as counts only
    groups = ["(all)", *_groups(df)]
    names = list(dict.fromkeys(df["threshold_name"].tolist()))
    long_names = len(groups) > 6 or max(len(g) for g in groups) > 14
    if long_names:  # many or long group names: one panel per row, full width each
        fig, axes = plt.subplots(2, 1, figsize=(max(10, 1.45 * len(groups) + 3), 9.5))
    else:
        fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.4 * len(groups) + 4), 4.8))
    lows = [v for v in (df["rate"][df["rate"] > 0].min(), df["upper_bound_95"].min(), df["wilson_low"][df["wilson_low"] > 0].min()) if np.isfinite(v)]
    floor = 10 ** np.floor(np.log10(0.5 * min(lows))) if lows else 1e-4
    lo_col, hi_col = f"{interval}_low", f"{interval}_high"
    width = 0.8 / max(1, len(names))
    for ax, metric in zip(axes, ["FMR", "FNMR"]):
        for j, name in enumerate(names):
            sel = df[(df["metric"] == metric) & (df["threshold_name"] == name)].set_index("group")
            for k, g in enumerate(groups):
                if g not in sel.index:
                    continue
                r = sel.loc[g]
                x = k + (j - (len(names) - 1) / 2) * width
                c = f"C{j}"
                if r["comparisons"] == 0 or not np.isfinite(r["rate"]):
                    continue  # no comparisons, or suppressed (small group)
                if r["errors"] == 0:
                    ub = r["upper_bound_95"]
                    ax.plot([x, x], [floor, ub], color=c, lw=1.2)
                    ax.plot(x, ub, marker="v", color=c, mfc="white", ms=7)
                else:
                    lo, hi = r[lo_col], r[hi_col]
                    if np.isfinite(lo) and np.isfinite(hi):
                        ax.plot([x, x], [max(lo, floor), hi], color=c, lw=1.2)
                        if lo <= floor:  # lower end 0 (or below the axis): a flat cap at the floor, not a bar off the axis
                            ax.plot(x, floor, marker="_", color=c, ms=11, mew=2.2)
                    ax.plot(x, r["rate"], marker=_MARKERS[j % len(_MARKERS)], color=c, ms=7)
        ax.set_yscale("log")
        ax.set_ylim(floor / 1.6, 1.05)  # the floor (caps of lower ends 0) sits just above the axis
        ax.set_xticks(range(len(groups)))
        counts = df[df["metric"] == metric].drop_duplicates("group").set_index("group")
        ticks = []
        for g in groups:
            if g not in counts.index:
                ticks.append(g)
                continue
            r = counts.loc[g]
            extra = "\n(counts only)" if r["flag"] == "suppressed_small_group" else ""
            ticks.append(f"{g}\nn={int(r['comparisons']):,}\n{int(r['subjects'])} subj.{extra}")
        ax.set_xticklabels(ticks, fontsize=7)
        ax.set_ylabel(f"{metric} (fraction, log scale)")
        kind = "non-mated comparisons, both subjects in group" if metric == "FMR" else "mated comparisons"
        ax.set_title(f"{metric} per group ({kind})", fontsize=9)
        ax.grid(True, axis="y", which="major", alpha=0.4)
    handles = []
    for j, name in enumerate(names):
        t = df[df["threshold_name"] == name]["threshold"].iloc[0]
        (h,) = axes[0].plot([], [], _MARKERS[j % len(_MARKERS)], color=f"C{j}", label=f"{name} ({t_label(t)})")
        handles.append(h)
    (h,) = axes[0].plot([], [], "v", color="grey", mfc="white", ls="", label="0 errors: bar up to the one-sided 95% upper bound")
    handles.append(h)
    (h,) = axes[0].plot([], [], "_", color="grey", ms=11, mew=2.2, ls="", label=f"interval's lower end is 0 (drawn at the floor {floor:.0e})")
    handles.append(h)
    fig.suptitle(title, fontsize=10)
    label = {"wilson": "95% Wilson interval (comparison-level: a lower bound on the true uncertainty)", "boot": "95% subject-level bootstrap interval"}.get(interval, interval)
    note = f"Bars: {label}. Log axis: 0 cannot be drawn, so bars with lower end 0 stop at the floor with a flat cap."
    if counts_only:
        note += f" Not drawn (published as counts only): {', '.join(counts_only)}."
    fig.text(0.01, -0.02, note, fontsize=7, va="top")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.95), ncol=2, frameon=False)
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def plot_fmr_matrix(cross: pd.DataFrame, attribute: str, threshold: dict, path: Path, *, title: str) -> None:
    """Cross-group FMR heatmap (colour = log10 FMR) with ``errors/comparisons`` in each cell.

    Parameters
    ----------
    cross : pandas.DataFrame
        Long form with ``group_a, group_b, false_matches, comparisons, fmr``.
    attribute : str
    threshold : dict
        The threshold the matrix was computed at (name, value).
    path : pathlib.Path
    title : str
    """
    groups = sorted(set(cross["group_a"]) | set(cross["group_b"]))
    n = len(groups)
    fmr = np.full((n, n), np.nan)
    txt = [["" for _ in range(n)] for _ in range(n)]
    pos = {g: i for i, g in enumerate(groups)}
    for _, r in cross.iterrows():
        i, j = pos[r["group_a"]], pos[r["group_b"]]
        if r["comparisons"] > 0 and not np.isfinite(r["fmr"]):
            txt[i][j] = f"suppressed\n(small group)\n{int(r['comparisons']):,} pairs"
        elif r["comparisons"] > 0:
            fmr[i, j] = r["fmr"]
            txt[i][j] = f"{r['fmr']:.2g}\n{int(r['false_matches']):,}/{int(r['comparisons']):,}"
        else:
            txt[i][j] = "no pairs"
    positive = fmr[np.isfinite(fmr) & (fmr > 0)]
    vmin = float(positive.min()) if positive.size else 1e-4
    vmax = float(positive.max()) if positive.size else 1e-1
    if vmax < 3 * vmin:  # the bar spans the data, widened to a factor 3 around it so close values do not look far apart
        mid = np.sqrt(vmin * vmax)
        vmin, vmax = mid / np.sqrt(3), mid * np.sqrt(3)
    shown = np.where(fmr == 0, np.nan, fmr)  # zero and missing cells: grey, labelled in the cell
    fig, ax = plt.subplots(figsize=(1.3 * n + 3, 1.1 * n + 2))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=LogNorm(vmin=vmin, vmax=vmax))
    for i in range(n):
        for j in range(n):
            ax.text(j, i, txt[i][j], ha="center", va="center", fontsize=7, color="white" if np.isfinite(shown[i, j]) and shown[i, j] < np.sqrt(vmin * vmax) else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    ax.set_yticklabels(groups, fontsize=8)
    ax.set_xlabel(f"{attribute} of one subject")
    ax.set_ylabel(f"{attribute} of the other subject")
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label("FMR (log scale); grey: 0 false matches, no pairs, or suppressed")
    ax.set_title(f"{title}\nat {threshold['name']} ({t_label(threshold['threshold'])}); cell: FMR, false matches/comparisons", fontsize=9)
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def plot_score_distributions(comparisons: pd.DataFrame, attribute: str, thresholds: list[dict], path: Path, *, title: str, suppressed: list[str] = ()) -> None:
    """Mated and non-mated comparison-score distributions per group, thresholds marked.

    The "comparison score differential" of ISO/IEC 19795-10 (docs/protocol.md §3):
    a group whose non-mated scores sit higher gets more false matches at a common
    threshold. Non-mated: both subjects in the group. Violins show the non-mated
    distribution; mated scores are drawn as points (there are few). Groups published
    as counts only are left out.

    Parameters
    ----------
    comparisons : pandas.DataFrame
        Comparison table (``score``, ``mated``, ``<attribute>_a/_b``).
    attribute : str
    thresholds : list of dict
        Usable thresholds are drawn as vertical lines.
    path : pathlib.Path
    title : str
    suppressed : sequence of str
        Groups not to draw.
    """
    la = comparisons[f"{attribute}_a"].astype(str).to_numpy()
    lb = comparisons[f"{attribute}_b"].astype(str).to_numpy()
    mated = comparisons["mated"].to_numpy()
    score = comparisons["score"].to_numpy()
    groups = [g for g in sorted(set(la.tolist()) | set(lb.tolist())) if g not in set(suppressed)]
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(groups) + 2.2))
    rng = np.random.default_rng(0)
    for k, g in enumerate(groups):
        sel = (la == g) & (lb == g)
        nm, m = score[sel & ~mated], score[sel & mated]
        if nm.size > 1:
            parts = ax.violinplot([nm], positions=[k], orientation="horizontal", widths=0.8, showextrema=False)
            for b in parts["bodies"]:
                b.set_facecolor("C0")
                b.set_alpha(0.45)
        elif nm.size == 1:
            ax.plot(nm, [k], "|", color="C0")
        if m.size:
            ax.plot(m, k + rng.uniform(-0.15, 0.15, m.size), "o", ms=3, color="C3", alpha=0.7)
    _threshold_lines(ax, thresholds)
    ax.plot([], [], "s", color="C0", alpha=0.45, label="non-mated scores (both subjects in group)")
    ax.plot([], [], "o", color="C3", label="mated scores")
    ax.set_yticks(range(len(groups)))
    counts = []
    for g in groups:
        sel = (la == g) & (lb == g)
        counts.append(f"{g}\n{int((sel & mated).sum()):,} mated / {int((sel & ~mated).sum()):,} non-mated")
    ax.set_yticklabels(counts, fontsize=7)
    ax.set_xlabel("Comparison score (similarity; higher = more alike; match iff score >= threshold)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.12 - 0.6 / max(1, len(groups))), frameon=False)
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def plot_score_histograms(counts: dict, thresholds: list[dict], path: Path, *, title: str, suppressed: list[str] = (), display_bins: int = 240) -> None:
    """Score distributions per group from binned counts (streamed runs), thresholds marked.

    The figure of :func:`plot_score_distributions` for a run without a comparison
    table: each group's non-mated (blue) and mated (red) densities drawn as mirrored
    shapes (violins), each scaled to its own maximum, from the fine histogram bins
    regrouped into ``display_bins`` equal bins over the occupied score range.

    Parameters
    ----------
    counts : dict
        group -> (lower bin edges, mated counts, non-mated counts), arrays of equal
        length (``bench.scores.stream.StreamedScores.score_counts``).
    thresholds : list of dict
        Usable thresholds are drawn as vertical lines.
    path : pathlib.Path
    title : str
    suppressed : sequence of str
        Groups not to draw.
    display_bins : int
        Bins of the drawn densities.
    """
    groups = [g for g in counts if g not in set(suppressed)]
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(groups) + 2.2))
    used = [lower[(m + nm) > 0] for lower, m, nm in (counts[g] for g in groups)]
    finite = np.concatenate([u[np.isfinite(u)] for u in used]) if used else np.zeros(0)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    hi = hi + (hi - lo) / display_bins if hi > lo else lo + 1.0
    grid = np.linspace(lo, hi, display_bins + 1)
    centre = (grid[:-1] + grid[1:]) / 2
    labels = []
    for k, g in enumerate(groups):
        lower, m, nm = counts[g]
        pos = np.clip(np.searchsorted(grid, np.where(np.isfinite(lower), lower, lo), side="right") - 1, 0, display_bins - 1)
        for cls, colour, alpha in ((nm, "C0", 0.45), (m, "C3", 0.35)):
            d = np.bincount(pos, weights=cls, minlength=display_bins)
            if d.max() > 0:
                h = 0.4 * d / d.max()
                ax.fill_between(centre, k - h, k + h, color=colour, alpha=alpha, lw=0)
        labels.append(f"{g}\n{int(m.sum()):,} mated / {int(nm.sum()):,} non-mated")
    _threshold_lines(ax, thresholds)
    ax.plot([], [], "s", color="C0", alpha=0.45, label="non-mated scores (both subjects in group)")
    ax.plot([], [], "s", color="C3", alpha=0.35, label="mated scores")
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("Comparison score (similarity; higher = more alike; match iff score >= threshold); from the score histograms")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.12 - 0.6 / max(1, len(groups))), frameon=False)
    fig.savefig(path, **_SAVE)
    plt.close(fig)
