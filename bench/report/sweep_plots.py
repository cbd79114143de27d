"""Figure of an acquisition-condition sweep: per-group FTA, FNMR and FMR against strength.

Conventions follow :mod:`bench.report.plots`: error rates on log10 axes, every group
named with its sample sizes, 95% Wilson intervals as bars, and zero-error points drawn
as open markers at their one-sided 95% upper bound (they are bounds, not rates).
Lines join measured points solidly and are dotted where an end is a bound. Saved
without timestamps, so reruns give identical files.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from bench.report.plots import _MARKERS, _SAVE  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from bench.protocol.sweep_spec import TransformSweep

__all__ = ["plot_sweep"]

_YLABEL = {
    "FTA": "FTA (fraction of probes, log scale)",
    "FNMR": "FNMR (fraction of mated comparisons, log scale)",
    "FMR": "FMR (fraction of non-mated comparisons, log scale)",
}


def _unperturbed_x(sweep: TransformSweep, original_x: float | None) -> tuple[float, str]:
    """x position of the unperturbed run and its tick label."""
    t = sweep.transform
    grid = np.array(sorted(sweep.strengths), dtype=float)
    if t.identity is not None:
        return float(t.identity), "unperturbed"
    if original_x is not None:
        return float(original_x), f"original\n(median {original_x:.0f})"
    # no strength is the identity (JPEG): one step beyond the mildest end of the grid
    mild = grid.max() if not t.degrades_upward else grid.min()
    if t.log_x:
        return float(mild * (2.0 if not t.degrades_upward else 0.5)), "original"
    step = float(np.median(np.diff(grid))) if grid.size > 1 else 1.0
    return float(mild + (step if not t.degrades_upward else -step)), "original"


def _points(rows: pd.DataFrame, sweep: TransformSweep, attribute: str, group: str, metric: str, threshold_name: str,
            x0: float) -> pd.DataFrame:
    """Rows of one line: the sweep's strengths plus the unperturbed point, sorted by x."""
    from bench.protocol.sweep_spec import UNPERTURBED

    sel = rows[(rows["attribute"] == attribute) & (rows["group"] == group) & (rows["metric"] == metric) & (rows["threshold_name"] == threshold_name)]
    cur = sel[sel["transform"] == sweep.name].assign(x=lambda d: d["strength"].astype(float))
    if not np.isclose(cur["x"], x0).any():
        cur = pd.concat([cur, sel[sel["transform"] == UNPERTURBED].assign(x=x0)], ignore_index=True)
    return cur.sort_values("x")


def plot_sweep(rows: pd.DataFrame, sweep: TransformSweep, attribute: str, thresholds: list[dict], path: Path, *, title: str,
               original_x: float | None = None, suppressed: Sequence[str] = (), subjects: dict | None = None) -> None:
    """One figure for one transform and attribute: FTA, then FNMR and FMR at each threshold.

    Parameters
    ----------
    rows : pandas.DataFrame
        Published sweep rows (:data:`bench.protocol.sweep_spec.SWEEP_COLUMNS`; suppressed groups
        already blanked).
    sweep : TransformSweep
        Gives the strengths, the axis label (``transform.unit``) and scale.
    attribute : str
    thresholds : list of dict
        Thresholds of the unperturbed run; usable ones get a row of panels.
    path : pathlib.Path
        PNG to write.
    title : str
    original_x : float or None
        Where the unperturbed images sit on the strength axis when no strength is the
        identity (resolution: their median inter-eye distance).
    suppressed : sequence of str
        Groups published as counts only (not drawn; named in the note).
    subjects : dict or None
        group -> subjects, for the legend.
    """
    usable = [t for t in thresholds if t.get("status") == "ok"]
    usable = [t for t in usable if t["kind"] == "target_fmr"] + [t for t in usable if t["kind"] != "target_fmr"]
    subjects = subjects or {}
    x0, x0_label = _unperturbed_x(sweep, original_x)
    df = rows[rows["attribute"] == attribute].assign(threshold_name=lambda d: d["threshold_name"].fillna("").astype(str))
    groups = [g for g in dict.fromkeys(df["group"].tolist()) if g != "(all)" and g not in set(suppressed)]
    shown = ["(all)", *groups]
    nrow = max(1, len(usable))
    fig, axes = plt.subplots(nrow, 3, figsize=(15, 4.3 * nrow + 1.4), squeeze=False)
    xs = np.array(sorted({*sweep.strengths, x0}), dtype=float)
    log_x = sweep.transform.log_x
    if log_x:
        span = np.log10(xs.max() / xs.min()) if xs.min() > 0 else 1.0
    else:
        span = float(xs.max() - xs.min()) or 1.0

    def dodge(x: np.ndarray, k: int) -> np.ndarray:
        off = (k - (len(shown) - 1) / 2) * 0.007
        return x * 10 ** (off * span) if log_x else x + off * span

    panels = [(axes[0, 0], "FTA", "")]
    for j, t in enumerate(usable):
        panels += [(axes[j, 1], "FNMR", t["name"]), (axes[j, 2], "FMR", t["name"])]
    capped_any = False
    for ax, metric, tname in panels:
        lows = []
        bars = []  # drawn once the axis floor is known (a bootstrap lower end can be 0: capped at the floor)
        for k, g in enumerate(shown):
            pts = _points(df, sweep, attribute, g, metric, tname, x0)
            pts = pts[(pts["comparisons"] > 0) & np.isfinite(pts["rate"].astype(float))]
            if pts.empty:
                continue
            zero = (pts["errors"] == 0).to_numpy()
            y = np.where(zero, pts["upper_bound_95"].astype(float), pts["rate"].astype(float))
            x = dodge(pts["x"].to_numpy(dtype=float), k)
            colour = "black" if g == "(all)" else f"C{(k - 1) % 10}"
            marker = "o" if g == "(all)" else _MARKERS[(k - 1) % len(_MARKERS)]
            lw = 2.0 if g == "(all)" else 1.3
            for a in range(len(x) - 1):
                both = not zero[a] and not zero[a + 1]
                ax.plot(x[a : a + 2], y[a : a + 2], color=colour, lw=lw, ls=("--" if g == "(all)" else "-") if both else ":", alpha=0.9)
            meas = ~zero
            if meas.any():
                lo = pts["wilson_low"].astype(float).to_numpy()[meas]
                hi = pts["wilson_high"].astype(float).to_numpy()[meas]
                if "boot_low" in pts.columns:  # issue #14: the subject bootstrap where the cell has one (FNMR, FMR)
                    bl, bh = pts["boot_low"].astype(float).to_numpy()[meas], pts["boot_high"].astype(float).to_numpy()[meas]
                    use = np.isfinite(bl) & np.isfinite(bh)
                    lo, hi = np.where(use, bl, lo), np.where(use, bh, hi)
                bars.append((x[meas], y[meas], lo, hi, marker, colour))
                lows += [v for v in lo if v > 0] + list(y[meas])
            if zero.any():
                ax.plot(x[zero], y[zero], "v", color=colour, mfc="white", ms=6.5, mew=1.2)
                lows += list(y[zero])
        floor = 10 ** np.floor(np.log10(0.5 * min(lows))) if lows else 1e-3
        capped = False
        for bx, by, lo, hi, marker, colour in bars:
            low = np.maximum(lo, floor)  # log axis: a lower end of 0 (percentile bootstrap) stops at the floor
            ax.errorbar(bx, by, yerr=[np.maximum(by - low, 0), np.maximum(hi - by, 0)], fmt=marker, color=colour, ms=5.5, capsize=2, lw=0.9)
            cap = lo <= floor
            if cap.any():
                ax.plot(bx[cap], np.full(int(cap.sum()), floor), ls="", marker="_", color=colour, ms=11, mew=2.2)
                capped = True
        capped_any |= capped
        ax.set_yscale("log")
        ax.set_ylim(floor / 1.6 if capped else floor, 1.3)  # the flat caps sit just above the axis
        if log_x:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(xs)
        ticks = []
        for v in xs:
            if not np.isclose(v, x0):
                ticks.append(f"{v:g}")
            else:
                ticks.append(f"{v:g}\n(unperturbed)" if x0_label == "unperturbed" else x0_label)
        ax.set_xticklabels(ticks, fontsize=7)
        ax.axvline(x0, color="grey", ls=":", lw=1)
        ax.set_xlabel(textwrap.fill(sweep.transform.unit, 60), fontsize=8)
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel(_YLABEL[metric], fontsize=8)
        t = next((u for u in usable if u["name"] == tname), None)
        head = {"FTA": "FTA per group (probes)", "FNMR": "FNMR per group", "FMR": "FMR per group (both subjects in group)"}[metric]
        ax.set_title(head + (f" at {tname} (t = {t['threshold']:.4g})" if t else ""), fontsize=9)
        ax.grid(True, which="major", alpha=0.35)
    # legend: groups with their sample sizes at the unperturbed run
    from bench.protocol.sweep_spec import UNPERTURBED

    base = df[df["transform"] == UNPERTURBED]
    first = usable[0]["name"] if usable else ""
    handles = []
    for k, g in enumerate(shown):
        b = base[base["group"] == g]
        fta = b[b["metric"] == "FTA"]
        fn = b[(b["metric"] == "FNMR") & (b["threshold_name"] == first)]
        fm = b[(b["metric"] == "FMR") & (b["threshold_name"] == first)]
        n_p = int(fta["comparisons"].iloc[0]) if len(fta) else 0
        n_m = int(fn["comparisons"].iloc[0]) if len(fn) else 0
        n_nm = int(fm["comparisons"].iloc[0]) if len(fm) else 0
        subj = subjects.get(g, int(fta["subjects"].iloc[0]) if len(fta) else 0) if g != "(all)" else sum(subjects.values()) if subjects else None
        who = f"{g} ({subj} subj.)" if subj is not None else g
        label = f"{who}: {n_p} probes, {n_m:,} mated / {n_nm:,} non-mated"
        colour = "black" if g == "(all)" else f"C{(k - 1) % 10}"
        marker = "o" if g == "(all)" else _MARKERS[(k - 1) % len(_MARKERS)]
        (h,) = axes[0, 0].plot([], [], marker=marker, color=colour, ls="--" if g == "(all)" else "-", label=label)
        handles.append(h)
    (hz,) = axes[0, 0].plot([], [], "v", color="grey", mfc="white", ls="", label="0 errors: one-sided 95% upper bound (not a rate)")
    handles.append(hz)
    note = (
        "Thresholds are set on the unperturbed run and held fixed; only the probe images are transformed.\n"
        + ("Bars: FNMR/FMR 95% subject-bootstrap intervals (thresholds fixed); FTA 95% Wilson. Dotted segments end at a bound.\n"
           if "boot_low" in rows.columns and rows["boot_low"].notna().any() else  # issue #14
           "Bars: 95% Wilson intervals (comparison-level: a floor on the true uncertainty). Dotted segments end at a bound.\n")
        + "FNMR/FMR exclude probes that failed to acquire (see FTA)."
        + ("\nLog axis: 0 cannot be drawn; a bar whose lower end is 0 stops at the axis floor with a flat cap." if capped_any else "")
    )
    if suppressed:
        note += "\nCounts only, not drawn (fewer subjects than the publication minimum): " + ", ".join(suppressed) + "."
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    # legend and notes are placed after the layout so that they do not widen the gaps
    note = "\n".join(textwrap.fill(line, 80) for line in note.split("\n"))
    legend_title = f"Groups ({attribute}); counts at the unperturbed run"
    if nrow > 1:
        for j in range(1, nrow):
            axes[j, 0].axis("off")
        axes[1, 0].legend(handles=handles, loc="upper left", fontsize=7.5, frameon=False, title=legend_title, title_fontsize=8)
        axes[1, 0].text(0.0, 0.0, note, transform=axes[1, 0].transAxes, fontsize=7, va="bottom")
    else:
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, 0.0), fontsize=7.5, frameon=False, title=legend_title, title_fontsize=8)
        fig.text(0.5, 0.0, note, fontsize=7, va="top")
    fig.savefig(path, **_SAVE)
    plt.close(fig)
