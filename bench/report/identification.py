"""Result folder of an identification run: metrics.json ``identification``, CSVs, figures, report.md.

Files (``results/<run_name>/``):

- ``metrics.json``: config, provenance, dataset, model, and the ``identification`` section
  (protocol in words, split counts, thresholds, per-group rates, false candidates,
  gallery-size sweep).
- ``identification_per_group.csv``: per probe group FPIR / FNIR (rank 1 and R, at each
  threshold and in investigation mode) / SEL / FTA_probe, counts, Wilson, probe-subject
  bootstrap and gallery re-draw intervals.
- ``identification_split.csv``: per group enrolled / not enrolled subjects, templates,
  failures to enrol, searches and failures to acquire.
- ``identification_false_candidates.csv`` (per gallery group) and
  ``identification_false_candidate_cells.csv`` (probe group x gallery group).
- ``identification_gallery_size.csv``: measured and predicted per-group FPIR vs gallery size.
- ``identification_gallery_composition.csv``: the same vs one group's share of a fixed-size gallery.
- ``identification_cross_fmr.csv``: the 1:1 cross-group FMR the prediction uses.
- figures ``ident_rates_<attr>.png``, ``ident_false_candidates_<attr>.png``,
  ``ident_gallery_size_<attr>.png``, ``ident_gallery_mix_<attr>.png``; ``report.md`` and
  ``report.html`` (:mod:`bench.report.identification_html`).
- ``identification_search.parquet`` (git-ignored, like ``scores.parquet``): every
  search's candidate list, from which ``fvbench-verify`` recomputes the numbers.

Groups with fewer subjects than ``min_group_subjects`` are published as counts only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from bench.protocol.identification import IdentificationResult  # noqa: E402
from bench.metrics.identification import INVESTIGATION  # noqa: E402
from bench.report.folder import write_file_manifest  # noqa: E402
from bench.report.plots import safe_name  # noqa: E402
from bench.report.provenance import code_version, package_versions  # noqa: E402
from bench.report.writer import SCHEMA_VERSION, _jsonable  # noqa: E402

__all__ = ["write_identification", "SEARCH_FILE", "GALLERY_FILE"]

SEARCH_FILE = "identification_search.parquet"
GALLERY_FILE = "identification_gallery.parquet"
_SAVE = {"dpi": 130, "metadata": {"Software": None}, "bbox_inches": "tight"}
_RATE_COLS = ["errors", "rate", "ci_low", "ci_high", "boot_low", "boot_high", "redraw_low", "redraw_high", "generalized_rate"]


def _small(result: IdentificationResult, min_subjects: int) -> dict[str, list[str]]:
    subj = result.manifest.table["subject_id"].astype(str)
    labels = result.manifest.group_labels(result.attributes)
    out = {}
    for a in result.attributes:
        n = pd.DataFrame({"s": subj, "g": labels[a]}).drop_duplicates().groupby("g")["s"].size()
        if (n < min_subjects).any():
            out[a] = sorted(n[n < min_subjects].index.tolist())
    return out


def _blank(df: pd.DataFrame, small: dict, group_cols: list[str], cols: list[str]) -> pd.DataFrame:
    df = df.copy()
    cols = [c for c in cols if c in df.columns]
    for c in cols:
        df[c] = df[c].astype(object)
    for attr, groups in small.items():
        m = df["attribute"] == attr
        hit = np.zeros(len(df), dtype=bool)
        for gc in group_cols:
            hit |= (m & df[gc].isin(groups)).to_numpy()
        df.loc[hit, cols] = None
        if "flag" in df.columns:
            df.loc[hit, "flag"] = "suppressed_small_group"
    return df


def _csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, float_format="%.10g", lineterminator="\n")


def _protocol_words(result: IdentificationResult) -> dict:
    p, s = result.protocol, result.split
    return {
        "type": "identification (1:N)",
        "gallery": ("explicit list of enrolled subjects (protocol.gallery_subjects)" if s.seed is None else
                    f"seeded draw (seed {s.seed}) of {s.fraction:g} of each stratum's subjects, strata = joint label "
                    "of the subject over the base attributes; a stratum of >= 2 subjects has both enrolled and not"),
        "gallery_template": f"one per enrolled subject: the {p.gallery_image} image of the subject"
                            + (" (manifest order)" if p.gallery_image == "first" else " (seeded draw)"),
        "mated_search": "every other image of an enrolled subject",
        "nonmated_search": "every image of a subject who is not enrolled",
        "decision_rule": "a candidate is returned iff score >= T; scores are similarities (distances negated)",
        "candidate_list_length": p.candidate_list_length,
        "ranks": p.ranks,
        "threshold_rule": "order statistic on the top scores of the completed non-mated searches, achieved FPIR never above "
                          "target, tie-aware (the 1:1 rule of docs/protocol.md §0.3)",
        "false_candidates": "list entries scoring >= T in non-mated searches (a reviewer sees at most L of them)",
        "fta": "a probe that failed to acquire is a search not completed (FTA, reported per probe group); a gallery image that "
               "failed to acquire is a failure to enrol: the subject's mated searches are counted as FTE",
        "bootstrap": f"{p.bootstrap_replicates} replicates resampling probe subjects within each probe group, thresholds fixed"
                     if p.bootstrap_replicates else None,
        "gallery_redraws": f"{p.gallery_redraws} re-drawn splits (seeds {p.seed + 1}..{p.seed + (p.gallery_redraws or 0)}), thresholds fixed"
                           if p.gallery_redraws else None,
        "prediction": "FPIR_g(T) = 1 - prod_h (1 - FMR_gh(T))^n_h with FMR_gh the 1:1 cross-group FMR of the non-mated probe x "
                      "gallery comparisons at T (independence assumed)",
        "confidence": p.confidence,
        "seed": p.seed,
        "attributes": result.attributes,
        "target_fpirs": list(p.target_fpirs),
    }


def write_identification(result: IdentificationResult, out_dir: Path, *, run_name: str, config: dict, min_group_subjects: int = 5,
                         figures: bool = True, save_search: bool = True) -> Path:
    """Write the result folder of an identification run into ``out_dir``.

    Parameters
    ----------
    result : IdentificationResult
    out_dir : pathlib.Path
        (Staging) folder, created if needed.
    run_name : str
    config : dict
        Resolved config, recorded verbatim.
    min_group_subjects : int
        Smaller groups are published as counts only.
    figures : bool
    save_search : bool
        Write ``identification_search.parquet`` (git-ignored; needed by fvbench-verify).

    Returns
    -------
    pathlib.Path
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    small = _small(result, min_group_subjects)
    per_group = _blank(result.per_group, small, ["group"], _RATE_COLS)
    by_g = _blank(result.false_by_gallery, small, ["gallery_group"], ["false_candidates", "per_enrolled_person", "rate"])
    cells = _blank(result.false_cells, small, ["probe_group", "gallery_group"], ["false_candidates", "rate"])
    size = _blank(result.gallery_size, small, ["probe_group"], ["fpir_measured", "fpir_min", "fpir_max", "fpir_predicted"]) if len(result.gallery_size) else result.gallery_size
    cross = result.cross_fmr
    if len(cross):
        cross = _blank(cross, small, ["probe_group", "gallery_group"], ["false_matches", "fmr"])
    _csv(per_group, out_dir / "identification_per_group.csv")
    _csv(result.split_counts, out_dir / "identification_split.csv")
    _csv(by_g, out_dir / "identification_false_candidates.csv")
    _csv(cells, out_dir / "identification_false_candidate_cells.csv")
    if len(size):
        _csv(size, out_dir / "identification_gallery_size.csv")
    if len(cross):
        _csv(cross, out_dir / "identification_cross_fmr.csv")
    comp = result.gallery_composition
    if len(comp):
        comp = _blank(comp, small, ["probe_group", "varied_group"], ["fpir_measured", "fpir_min", "fpir_max", "fpir_predicted"])
        _csv(comp, out_dir / "identification_gallery_composition.csv")
    if save_search:
        result.search_table.to_parquet(out_dir / SEARCH_FILE, index=False)
        result.gallery_table.to_parquet(out_dir / GALLERY_FILE, index=False)
    primary = result.primary_threshold
    ident = {
        "protocol": _protocol_words(result),
        "split": {"seed": result.split.seed, "fraction": result.split.fraction, "gallery_image": result.split.gallery_image,
                  "per_group": result.split_counts.to_dict(orient="records")},
        "thresholds": result.thresholds,
        "primary_threshold": None if primary is None else primary["name"],
        "per_group": per_group.to_dict(orient="records"),
        "false_candidates_by_gallery_group": by_g.to_dict(orient="records"),
        "false_candidate_cells": cells.to_dict(orient="records"),
        "gallery_size": size.to_dict(orient="records") if len(size) else [],
        "gallery_composition": comp.to_dict(orient="records") if len(comp) else [],
        "cross_group_fmr": cross.to_dict(orient="records") if len(cross) else [],
        "suppression": {"min_group_subjects": min_group_subjects, "groups_shown_as_counts_only": small},
    }
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "run_name": run_name,
        "config": config,
        "provenance": {"code": code_version(), "packages": package_versions()},
        "dataset": result.dataset_info,
        "model": result.model_info,
        "identification": ident,
    }
    (out_dir / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n")
    figs: dict[str, dict[str, str]] = {}
    if figures:
        title = f"{result.model_info['name']} on {result.dataset_info['name']}"
        for attr in result.attributes:
            n = safe_name(attr)
            f = {"rates": f"ident_rates_{n}.png", "false_candidates": f"ident_false_candidates_{n}.png"}
            plot_identification_rates(per_group, attr, out_dir / f["rates"], title=f"1:N error rates by probe {attr}: {title}")
            if primary is not None:
                plot_false_candidate_matrix(cells, attr, primary["name"], out_dir / f["false_candidates"],
                                            title=f"False candidates by {attr}: {title}")
            else:
                f.pop("false_candidates")
            if len(size):
                f["gallery_size"] = f"ident_gallery_size_{n}.png"
                plot_gallery_size(size, attr, out_dir / f["gallery_size"], title=f"FPIR vs gallery size by probe {attr}: {title}")
            if len(comp) and (comp["attribute"] == attr).any():
                f["composition"] = f"ident_gallery_mix_{n}.png"
                plot_gallery_mix(comp, attr, out_dir / f["composition"], title=f"FPIR vs gallery mix by {attr}: {title}")
            figs[attr] = f
    write_identification_report(out_dir / "report.md", result, per_group=per_group, by_g=by_g, size=size, figures=figs,
                                run_name=run_name, small=small)
    from bench.report.html import write_html_report  # issue 15: report.html from metrics.json and the figures

    write_html_report(out_dir)
    write_file_manifest(out_dir)
    return out_dir


# ----------------------------------------------------------------------------- figures
def _interval(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    lo = rows["boot_low"] if "boot_low" in rows and rows["boot_low"].notna().any() else rows["ci_low"]
    hi = rows["boot_high"] if "boot_high" in rows and rows["boot_high"].notna().any() else rows["ci_high"]
    return pd.to_numeric(lo, errors="coerce").to_numpy(float), pd.to_numeric(hi, errors="coerce").to_numpy(float)


def plot_identification_rates(per_group: pd.DataFrame, attribute: str, path: Path, *, title: str) -> None:
    """FPIR (left) and FNIR at rank 1 (right) per probe group at each threshold, log10 axis, intervals.

    Zero rates sit at the axis floor with open markers; legend entries carry the searches.
    """
    d = per_group[(per_group["attribute"] == attribute) & (per_group["group"] != "(all)")]
    names = [n for n in d["threshold_name"].unique().tolist() if n]
    groups = sorted(d["group"].unique().tolist())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=False)
    for ax, metric, label in ((axes[0], "FPIR", "FPIR (non-mated searches that raise an alarm)"),
                              (axes[1], "FNIR_rank1", "FNIR at rank 1 (mated searches that miss)")):
        rows = d[d["metric"] == metric]
        thr_names = [n for n in names if ((rows["threshold_name"] == n)).any()]
        width = 0.8 / max(1, len(thr_names))
        n_max = pd.to_numeric(rows["n"], errors="coerce").max() if len(rows) else 1
        floor = 10 ** np.floor(np.log10(0.5 / max(1, n_max if pd.notna(n_max) else 1)))
        for j, name in enumerate(thr_names):
            r = rows[rows["threshold_name"] == name].set_index("group").reindex(groups).reset_index()
            x = np.arange(len(groups)) + (j - (len(thr_names) - 1) / 2) * width
            y = pd.to_numeric(r["rate"], errors="coerce").to_numpy(float)
            lo, hi = _interval(r)
            # zero errors: the bootstrap interval collapses to 0; show the Wilson upper bound instead
            w_hi = pd.to_numeric(r["ci_high"], errors="coerce").to_numpy(float)
            hi = np.where(y == 0, w_hi, hi)
            yy = np.where(y > 0, y, floor)
            lo_c = np.where(np.isfinite(lo) & (lo > floor), lo, floor)
            hi_c = np.where(np.isfinite(hi), np.maximum(hi, yy), yy)
            err = np.vstack([yy - np.minimum(lo_c, yy), hi_c - yy])
            color = f"C{j}"
            ax.errorbar(x[y > 0], yy[y > 0], yerr=err[:, y > 0], fmt="o", capsize=3, color=color, label=name)
            ax.errorbar(x[y == 0], yy[y == 0], yerr=err[:, y == 0], fmt="o", mfc="white", capsize=3, color=color,
                        label=f"{name}: zero errors (bar: Wilson upper bound)" if (y == 0).any() else None)
        n = rows[rows["threshold_name"] == thr_names[0]].set_index("group").reindex(groups)["n"] if thr_names else pd.Series(0, index=groups)
        flags = rows.drop_duplicates("group").set_index("group").reindex(groups)["flag"] if len(rows) else pd.Series("", index=groups)
        ax.set_xticks(np.arange(len(groups)), [f"{g}\n(n={int(v) if pd.notna(v) else 0})" + ("\nsuppressed" if f == "suppressed_small_group" else "")
                                               for g, v, f in zip(groups, n, flags)], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylim(floor * 0.7, 1.2)
        ax.set_ylabel(label)
        ax.set_xlabel(f"probe group ({attribute}); n = completed searches")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="threshold", fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.36), ncol=2)
    fig.suptitle(title + "\n95% intervals: probe-subject bootstrap; open circles: zero errors drawn at the axis floor", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def plot_false_candidate_matrix(cells: pd.DataFrame, attribute: str, threshold_name: str, path: Path, *, title: str) -> None:
    """Heat map of false candidates per (probe group, gallery group) at one threshold, rate per comparison (log colour)."""
    d = cells[(cells["attribute"] == attribute) & (cells["threshold_name"] == threshold_name)]
    piv = d.pivot(index="probe_group", columns="gallery_group", values="rate").astype(float)
    cnt = d.pivot(index="probe_group", columns="gallery_group", values="false_candidates")
    fig, ax = plt.subplots(figsize=(1.2 * piv.shape[1] + 3.5, 0.8 * piv.shape[0] + 2.5))
    pos = piv.to_numpy()[np.isfinite(piv.to_numpy()) & (piv.to_numpy() > 0)]
    vmin = pos.min() if pos.size else 1e-6
    vmax = max(pos.max(), vmin * 10) if pos.size else 1e-3
    shown = np.where(piv.to_numpy() > 0, piv.to_numpy(), np.nan)
    im = ax.imshow(shown, cmap="viridis", norm=LogNorm(vmin=vmin, vmax=vmax))
    for i in range(piv.shape[0]):
        for j in range(piv.shape[1]):
            c = cnt.iloc[i, j]
            ax.text(j, i, "—" if pd.isna(c) else str(int(c)), ha="center", va="center", color="w" if np.isfinite(shown[i, j]) else "k", fontsize=9)
    ax.set_xticks(range(piv.shape[1]), piv.columns, rotation=30, ha="right")
    ax.set_yticks(range(piv.shape[0]), piv.index)
    ax.set_xlabel(f"gallery group ({attribute}): the enrolled person wrongly returned")
    ax.set_ylabel(f"probe group ({attribute}): the non-mated searcher")
    fig.colorbar(im, ax=ax, label="false candidates per probe-template comparison (log)")
    ax.set_title(f"{title}\nat {threshold_name}; cell text: count (— suppressed small group; blank colour: 0)", fontsize=9)
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def plot_gallery_size(size: pd.DataFrame, attribute: str, path: Path, *, title: str) -> None:
    """Per probe group FPIR at a fixed threshold vs gallery size: measured (range over draws) and predicted."""
    d = size[size["attribute"] == attribute]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for i, (g, r) in enumerate(d.groupby("probe_group", sort=True)):
        r = r.sort_values("gallery_size")
        y = pd.to_numeric(r["fpir_measured"], errors="coerce").to_numpy(float)
        if not np.isfinite(y).any():
            continue
        if not (y > 0).any():
            ax.plot([], [], "o", color=f"C{i}", mfc="white", label=f"{g}: 0 at every size (n={int(r['nonmated_searches'].iloc[0])})")
            continue
        lo = pd.to_numeric(r["fpir_min"], errors="coerce").to_numpy(float)
        hi = pd.to_numeric(r["fpir_max"], errors="coerce").to_numpy(float)
        color = f"C{i}"
        n = int(r["nonmated_searches"].iloc[0])
        ax.plot(r["gallery_size"], np.where(y > 0, y, np.nan), "o-", color=color, label=f"{g} measured (n={n})")
        ax.fill_between(r["gallery_size"], np.where(lo > 0, lo, y.min() / 2 if (y > 0).any() else np.nan), np.where(hi > 0, hi, np.nan),
                        color=color, alpha=0.15)
        ax.plot(r["gallery_size"], pd.to_numeric(r["fpir_predicted"], errors="coerce"), "--", color=color, label=f"{g} predicted from 1:1 FMR")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("gallery size N (enrolled people)")
    ax.set_ylabel("FPIR (share of non-mated searches raising an alarm)")
    thr = d["threshold_name"].iloc[0] if len(d) else ""
    ax.set_title(f"{title}\nat fixed threshold {thr}; band: range over seeded subsets; dashed: independence prediction", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def plot_gallery_mix(comp: pd.DataFrame, attribute: str, path: Path, *, title: str) -> None:
    """One panel per varied gallery group: per probe group FPIR vs that group's share of the gallery (fixed size)."""
    d = comp[comp["attribute"] == attribute]
    varied = sorted(d["varied_group"].unique())
    fig, axes = plt.subplots(1, len(varied), figsize=(3.4 * len(varied) + 0.6, 3.9), sharey=True, squeeze=False)
    for ax, h in zip(axes[0], varied):
        dd = d[d["varied_group"] == h]
        for i, (g, r) in enumerate(dd.groupby("probe_group", sort=True)):
            y = pd.to_numeric(r["fpir_measured"], errors="coerce")
            ax.plot(r["share"], y.where(y > 0), "o-", ms=3, color=f"C{i}", label=f"{g} measured")
            p = pd.to_numeric(r["fpir_predicted"], errors="coerce")
            ax.plot(r["share"], p.where(p > 0), "--", color=f"C{i}", label=f"{g} predicted")
        ax.set_yscale("log")
        ax.set_xlim(-0.05, 1.05)
        ax.set_xlabel(f"share of {h} (N = {int(dd['gallery_size'].iloc[0])})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("FPIR of the probe group")
    axes[0][-1].legend(fontsize=6)
    thr = d["threshold_name"].iloc[0] if len(d) else ""
    fig.suptitle(f"{title}\nat fixed threshold {thr}; mean over seeded galleries; zero FPIR not drawn (log axis)", fontsize=9)
    fig.savefig(path, **_SAVE)
    plt.close(fig)


# ----------------------------------------------------------------------------- report
def _cell(r: pd.Series) -> str:
    if r.get("flag") == "suppressed_small_group":
        return "suppressed"
    if r["n"] == 0 or r["rate"] is None or (isinstance(r["rate"], float) and math.isnan(r["rate"])):
        return "n/a (0 searches)"
    if pd.notna(r["errors"]) and int(r["errors"]) == 0:  # as the 1:1 report: exact one-sided 95% upper bound (docs/protocol.md §5.5)
        from bench.metrics.intervals import zero_error_upper_bound

        return f"0/{int(r['n']):,} (≤ {float(zero_error_upper_bound(int(r['n']))):.2g})"
    lo, hi = r.get("boot_low"), r.get("boot_high")
    iv = f" [{lo:.3g}, {hi:.3g}]" if lo is not None and isinstance(lo, float) and math.isfinite(lo) else ""
    red = r.get("redraw_low")
    rd = f" {{{red:.3g}, {r['redraw_high']:.3g}}}" if isinstance(red, float) and math.isfinite(red) else ""
    dag = "†" if r.get("flag") == "low_precision" else ""
    return f"{r['rate']:.3g}{dag} ({int(r['errors'])}/{int(r['n'])}){iv}{rd}"


def write_identification_report(path: Path, result: IdentificationResult, *, per_group: pd.DataFrame, by_g: pd.DataFrame,
                                size: pd.DataFrame, figures: dict, run_name: str, small: dict) -> None:
    """``report.md`` of an identification run, with the reading guide (who is harmed by which error)."""
    d, m, p = result.dataset_info, result.model_info, result.protocol
    out = [f"# fvbench identification result: {run_name}", ""]
    out += [f"Model **{m['name']}** on dataset **{d['name']}** in **1:N identification** mode: {d['images']:,} images of "
            f"{d['subjects']:,} subjects (labels: {', '.join(d['label_source'])}); {d['enrolled_subjects']:,} enrolled with "
            f"{d['gallery_templates']:,} gallery templates (the {p.gallery_image} image of each), {d['mated_searches']:,} mated "
            f"and {d['nonmated_searches']:,} non-mated searches, candidate lists of length {p.candidate_list_length}. "
            "Definitions: `docs/identification.md`.", ""]
    out += ["## Reading guide: who is harmed by which error", "",
            "- **FPIR by probe group** (watchlist / lights-out mode): the share of people *not* on the list whose search "
            "raises an alarm. A high FPIR for group g means passers-by of group g are more often stopped or questioned "
            "as if they were someone on the list.",
            "- **False candidates by gallery group** (investigation mode): how often an *enrolled* person of group h is "
            "returned as a candidate for a stranger's search. They are the people exposed to being wrongly named.",
            "- **FNIR by probe group**: the share of listed people of group g whom the search misses (the mate is not "
            "within rank R or scores below T). A high FNIR means the system protects group g less, or that members of g "
            "evade it more easily, depending on the deployment.",
            "- FPIR grows with the gallery: each added person is another chance of a false match, mostly from people of "
            "similar demographics. The gallery-size figure shows measured FPIR beside the prediction from 1:1 FMRs.",
            "", "## Thresholds", "", "| name | threshold | target FPIR | achieved FPIR (k / N searches) | note |", "|---|---|---|---|---|"]
    for t in result.thresholds:
        if t["kind"] == "investigation":
            out.append(f"| {INVESTIGATION} | none (rank only) | | | FNIR in investigation mode |")
        elif t.get("status") != "ok":
            out.append(f"| {t['name']} | refused | {t['target_fpir']:g} | | {t['reason']} |")
        elif t["kind"] == "nominal":
            out.append(f"| nominal (model's 1:1 threshold) | {t['threshold']:.6g} | | {t['achieved_fpir']:.3g} | {t.get('source') or ''} |")
        else:
            note = "fewer than 30/target non-mated searches: imprecise (rule of 30)" if t["support"] != "ok" else ""
            out.append(f"| {t['name']} | {t['threshold']:.6g} | {t['target_fpir']:g} | {t['achieved_fpir']:.3g} "
                       f"({t['k']} / {t['n_nonmated_searches']}) | {note} |")
    out += ["", "## Per probe group", "",
            "Cells: rate († fewer than 30 errors) (errors/completed searches) [95% probe-subject bootstrap interval] "
            "{95% range over re-drawn gallery splits}; `0/n (≤ u)`: no errors, one-sided exact 95% upper bound u "
            "(docs/protocol.md §5.5). FTA and FTE counts and generalized rates are in "
            "`identification_per_group.csv`.", ""]
    names = [t["name"] for t in result.thresholds if t.get("status") == "ok"]
    metrics = [("FPIR", n) for n in names if n != INVESTIGATION] + [(f"FNIR_rank{r}", n) for n in names for r in p.ranks]
    for attr in result.attributes:
        pg = per_group[per_group["attribute"] == attr]
        groups = pg["group"].unique().tolist()
        out += [f"### {attr}", "", "| metric | threshold | " + " | ".join(groups) + " |", "|---|---|" + "---|" * len(groups)]
        for metric, name in metrics:
            cells = []
            for g in groups:
                r = pg[(pg["group"] == g) & (pg["metric"] == metric) & (pg["threshold_name"] == name)]
                cells.append(_cell(r.iloc[0]) if len(r) else "")
            out.append(f"| {metric} | {name} | " + " | ".join(cells) + " |")
        fta = pg[pg["metric"] == "FTA_probe"]
        out.append("| FTA (probes) | | " + " | ".join(f"{int(r['errors']) if pd.notna(r['errors']) else '—'}/{int(r['n'])}" for _, r in fta.iterrows()) + " |")
        split = result.split_counts[result.split_counts["attribute"] == attr]
        out += ["", "Split: " + "; ".join(f"{r['group']}: {r['enrolled_subjects']} enrolled ({r['gallery_fte']} failed to enrol), "
                                          f"{r['not_enrolled_subjects']} not enrolled" for _, r in split.iterrows()), ""]
        primary = result.primary_threshold
        if primary is not None:
            b = by_g[(by_g["attribute"] == attr) & (by_g["threshold_name"] == primary["name"])]
            out += [f"False candidates per enrolled person at {primary['name']} (non-mated searches): "
                    + "; ".join(f"{r['gallery_group']}: {r['false_candidates'] if r['false_candidates'] is not None else 'suppressed'} "
                                f"over {r['enrolled']} enrolled" for _, r in b.iterrows()), ""]
        for key, cap in (("rates", "FPIR and FNIR per probe group"), ("false_candidates", "false-candidate heat map"),
                         ("gallery_size", "FPIR vs gallery size, measured and predicted"),
                         ("composition", "FPIR vs the share of each group in the gallery")):
            if key in figures.get(attr, {}):
                out += [f"![{cap}]({figures[attr][key]})", ""]
    if small:
        out += [f"Groups with fewer than the minimum subjects are shown as counts only: {small}.", ""]
    from bench.report.markdown_escape import escape_raw_html  # labels are untrusted: no raw HTML in report.md

    path.write_text(escape_raw_html("\n".join(out) + "\n"))
