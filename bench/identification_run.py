"""The 1:N identification pipeline (``protocol=identification``, issue 13).

Same data, models and embedding cache as verification (:func:`bench.run.acquire_embeddings`),
then: seeded stratified gallery split (:mod:`bench.protocol.identification`) -> streamed
search (:mod:`bench.protocol.search`) -> per-group FPIR/FNIR/selectivity/false candidates
(:mod:`bench.metrics.identification`) -> gallery-size sweep with the prediction from the
cross-group FMR. :func:`evaluate_identification` computes; the writer is
:mod:`bench.report.identification`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import ConfigError, DataError
from bench.metrics.groups import withhold_small_groups
from bench.metrics.identification import (
    INVESTIGATION,
    false_candidates,
    identification_rates,
    mate_ranks,
    predicted_fpir,
    probe_statistics,
    threshold_at_fpir,
)
from bench.protocol.identification import (  # the protocol's definitions, re-exported
    GALLERY_IMAGE_RULES, IDENTIFICATION_USE, GallerySplit, IdentificationProtocol, IdentificationResult, check_permitted_uses,
    split_gallery,
)
from bench.protocol.search import search

__all__ = ["IdentificationProtocol", "IdentificationResult", "evaluate_identification", "check_permitted_uses", "IDENTIFICATION_USE"]

log = logging.getLogger(__name__)

def _search_split(emb: np.ndarray, split: GallerySplit, metric: str, protocol: IdentificationProtocol,
                  thresholds: np.ndarray = np.empty(0), gallery_codes: np.ndarray | None = None, probe_rows: np.ndarray | None = None) -> Any:
    rows = split.probe_rows[split.probe_acquired] if probe_rows is None else probe_rows
    return search(emb[rows], emb[split.template_rows], top_l=protocol.candidate_list_length, thresholds=thresholds,
                  gallery_groups=gallery_codes, metric=metric, device=protocol.device, dtype=protocol.search_dtype)


def _outcomes(emb: np.ndarray, split: GallerySplit, metric: str, protocol: IdentificationProtocol):
    """Search every completed probe; return (per-search statistics, full-length candidate arrays)."""
    p = split.probe_rows.size
    res = _search_split(emb, split, metric, protocol)
    L = res.candidates.shape[1]
    cand = np.full((p, L), -1, dtype=np.int64)
    sc = np.full((p, L), -np.inf)
    cand[split.probe_acquired] = res.candidates
    sc[split.probe_acquired] = res.scores
    kind = split.probe_template
    rank, ms = mate_ranks(cand, sc, np.where(kind >= 0, kind, -1))
    return cand, sc, kind, rank, ms


def _thresholds(top_nonmated: np.ndarray, model_info: dict, protocol: IdentificationProtocol) -> list[dict]:
    out: list[dict] = [{"name": INVESTIGATION, "kind": "investigation", "threshold": -math.inf, "status": "ok",
                        "note": "no threshold: candidate lists read by rank (FNIR only)"}]
    if protocol.use_nominal_threshold and model_info.get("nominal_threshold") is not None:
        t = float(model_info["nominal_threshold"])
        n = int(top_nonmated.size)
        out.append({"name": "nominal", "kind": "nominal", "threshold": t, "status": "ok",
                    "source": model_info.get("nominal_threshold_source"), "n_nonmated_searches": n,
                    "achieved_fpir": float((top_nonmated >= t).mean()) if n else math.nan})
    for f in protocol.target_fpirs:
        out.append(threshold_at_fpir(top_nonmated, float(f)))
    return out


def _subset_galleries(split: GallerySplit, labels: pd.DataFrame, fraction: float, draws: int, seed: int) -> list[np.ndarray]:
    """Seeded stratified subsets (positions in ``split.template_rows``) keeping the joint-label composition."""
    tl = labels.iloc[split.template_rows].astype(str).agg("|".join, axis=1).to_numpy() if labels.shape[1] else np.zeros(split.template_rows.size, str)
    out = []
    for d in range(draws):
        rng = np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(13, 2, int(round(fraction * 1e6)), d)))
        keep = []
        for st in sorted(set(tl.tolist())):
            pos = np.flatnonzero(tl == st)
            k = max(1, int(round(fraction * pos.size)))
            keep.append(rng.choice(pos, size=min(k, pos.size), replace=False))
        out.append(np.sort(np.concatenate(keep)))
    return out


def _gallery_size_sweep(split: GallerySplit, labels: pd.DataFrame, attributes: list[str], cand: np.ndarray, sc: np.ndarray,
                        kind: np.ndarray, threshold: dict, fmr_cells: dict[str, pd.DataFrame], protocol: IdentificationProtocol) -> pd.DataFrame:
    """Measured per-group FPIR on stratified gallery subsets, beside the prediction from the cross-group FMR.

    A subset's search returns the full gallery's list entries that belong to it, so the
    measured FPIR of a subset is exact whenever the full list held every entry ``>= T``
    (``saturated`` counts the searches where it may not).
    """
    t = float(threshold["threshold"])
    nm = (kind == -1) & split.probe_acquired
    hit = (sc >= t) & nm[:, None] & (cand >= 0)
    saturated = int((hit.all(axis=1) & nm).sum())
    rows = []
    n_t = split.template_rows.size
    for frac in sorted(set(float(f) for f in protocol.gallery_sizes)):
        subsets = _subset_galleries(split, labels, frac, 1 if frac == 1.0 else int(protocol.gallery_size_draws), protocol.seed)
        for attr in attributes:
            pl = labels[attr].astype(str).to_numpy()[split.probe_rows]
            gl = labels[attr].astype(str).to_numpy()[split.template_rows]
            cells = fmr_cells[attr]
            gnames = sorted(set(gl.tolist()))
            fmr = cells.pivot(index="probe_group", columns="gallery_group", values="fmr").reindex(columns=gnames).fillna(0.0)
            per_draw = {g: [] for g in sorted(set(pl[nm].tolist()))}
            preds = {g: [] for g in per_draw}
            sizes = []
            for sub in subsets:
                member = np.zeros(n_t, dtype=bool)
                member[sub] = True
                in_sub = np.zeros_like(hit)
                ok = cand >= 0
                in_sub[ok] = member[cand[ok]]
                alarmed = (hit & in_sub).any(axis=1)
                n_h = np.array([(gl[sub] == h).sum() for h in gnames], dtype=float)
                sizes.append(int(sub.size))
                for g in per_draw:
                    sel = nm & (pl == g)
                    per_draw[g].append(alarmed[sel].mean() if sel.any() else math.nan)
                    if g in fmr.index:
                        preds[g].append(float(predicted_fpir(fmr.loc[[g]].to_numpy(), n_h)[0]))
                    else:
                        preds[g].append(math.nan)
            for g in per_draw:
                m = np.asarray(per_draw[g], dtype=float)
                rows.append({"attribute": attr, "gallery_fraction": frac, "gallery_size": int(np.mean(sizes)),
                             "probe_group": g, "threshold_name": threshold["name"], "threshold": t,
                             "nonmated_searches": int((nm & (pl == g)).sum()), "draws": len(subsets),
                             "fpir_measured": float(np.nanmean(m)), "fpir_min": float(np.nanmin(m)), "fpir_max": float(np.nanmax(m)),
                             "fpir_predicted": float(np.nanmean(preds[g])), "saturated_searches": saturated})
    return pd.DataFrame(rows)


def _composition_sweep(split: GallerySplit, labels: pd.DataFrame, attributes: list[str], cand: np.ndarray, sc: np.ndarray,
                       kind: np.ndarray, threshold: dict, fmr_cells: dict[str, pd.DataFrame], protocol: IdentificationProtocol) -> pd.DataFrame:
    """Per-group FPIR at a fixed threshold as one gallery group's share changes (fixed gallery size), measured and predicted.

    For gallery group h with ``n_h`` of ``N`` templates the gallery size is
    ``N0 = min(n_h, N - n_h)``, so every share in ``protocol.gallery_shares`` can be drawn;
    ``gallery_size_draws`` seeded galleries per share. Alarms are read from the full
    search's candidate lists, as in the gallery-size sweep.
    """
    t = float(threshold["threshold"])
    nm = (kind == -1) & split.probe_acquired
    hit = (sc >= t) & nm[:, None] & (cand >= 0)
    h_rows, h_cols = np.nonzero(hit)
    h_tmpl = cand[h_rows, h_cols]
    rows = []
    for attr in attributes:
        pl = labels[attr].astype(str).to_numpy()[split.probe_rows]
        gl = labels[attr].astype(str).to_numpy()[split.template_rows]
        gnames = sorted(set(gl.tolist()))
        fmr = fmr_cells[attr].pivot(index="probe_group", columns="gallery_group", values="fmr").reindex(columns=gnames).fillna(0.0)
        probe_groups = sorted(set(pl[nm].tolist()))
        for hi, h in enumerate(gnames):
            own, rest = np.flatnonzero(gl == h), np.flatnonzero(gl != h)
            n0 = min(own.size, rest.size)
            if n0 == 0:
                continue
            for share in sorted(set(float(x) for x in protocol.gallery_shares)):
                k = int(round(share * n0))
                meas = {g: [] for g in probe_groups}
                pred = {g: [] for g in probe_groups}
                for d in range(int(protocol.gallery_size_draws)):
                    rng = np.random.default_rng(np.random.SeedSequence(entropy=int(protocol.seed), spawn_key=(13, 3, hi, int(round(share * 1e6)), d)))
                    member = np.zeros(split.template_rows.size, dtype=bool)
                    member[rng.choice(own, size=k, replace=False)] = True
                    member[rng.choice(rest, size=n0 - k, replace=False)] = True
                    alarmed = np.zeros(kind.size, dtype=bool)
                    alarmed[np.unique(h_rows[member[h_tmpl]])] = True
                    n_h = np.array([(member & (gl == x)).sum() for x in gnames], dtype=float)
                    for g in probe_groups:
                        sel = nm & (pl == g)
                        meas[g].append(alarmed[sel].mean())
                        pred[g].append(float(predicted_fpir(fmr.loc[[g]].to_numpy(), n_h)[0]) if g in fmr.index else math.nan)
                for g in probe_groups:
                    m = np.asarray(meas[g])
                    rows.append({"attribute": attr, "varied_group": h, "share": share, "gallery_size": n0, "probe_group": g,
                                 "threshold_name": threshold["name"], "threshold": t, "nonmated_searches": int((nm & (pl == g)).sum()),
                                 "draws": int(protocol.gallery_size_draws), "fpir_measured": float(m.mean()), "fpir_min": float(m.min()),
                                 "fpir_max": float(m.max()), "fpir_predicted": float(np.nanmean(pred[g]))})
    return pd.DataFrame(rows)


def _cross_fmr(emb: np.ndarray, split: GallerySplit, labels: pd.DataFrame, attributes: list[str], metric: str,
               protocol: IdentificationProtocol, threshold: float) -> dict[str, pd.DataFrame]:
    """1:1 cross-group FMR at ``threshold`` over the non-mated probe x gallery comparisons (exact, streamed)."""
    nm_rows = split.probe_rows[(split.probe_mate < 0) & split.probe_acquired]
    out = {}
    for attr in attributes:
        gl = labels[attr].astype(str).to_numpy()[split.template_rows]
        gnames = sorted(set(gl.tolist()))
        codes = np.searchsorted(gnames, gl)
        res = _search_split(emb, split, metric, protocol, np.array([threshold]), codes, probe_rows=nm_rows)
        pl = labels[attr].astype(str).to_numpy()[nm_rows]
        n_h = np.bincount(codes, minlength=len(gnames))
        rows = []
        for g in sorted(set(pl.tolist())):
            c = res.counts[pl == g, 0, :].sum(axis=0)
            n_g = int((pl == g).sum())
            for i, h in enumerate(gnames):
                n = n_g * int(n_h[i])
                rows.append({"attribute": attr, "probe_group": g, "gallery_group": h, "false_matches": int(c[i]),
                             "comparisons": n, "fmr": c[i] / n if n else math.nan})
        out[attr] = pd.DataFrame(rows)
    return out


def _redraw_intervals(emb, acquired, subject_ids, labels, attributes, metric, protocol, thresholds: dict[str, float]) -> pd.DataFrame:
    """Per-group rates over ``gallery_redraws`` re-drawn splits at the fixed thresholds: percentile interval."""
    reps = []
    for r in range(int(protocol.gallery_redraws)):
        sp = split_gallery(subject_ids, acquired, labels[attributes], fraction=protocol.enrolled_fraction,
                           seed=protocol.seed + 1 + r, gallery_image=protocol.gallery_image)
        cand, sc, kind, rank, ms = _outcomes(emb, sp, metric, protocol)
        out = probe_statistics(sc[:, 0], rank, ms, kind, sp.probe_acquired, thresholds, ranks=protocol.ranks, list_scores=sc)
        for attr in attributes:
            pl = labels[attr].astype(str).to_numpy()[sp.probe_rows]
            rates = identification_rates(out, pl, subject_ids[sp.probe_rows], attribute=attr, bootstrap_replicates=None)
            rates["redraw"] = r
            reps.append(rates[["attribute", "group", "threshold_name", "metric", "rate", "redraw"]])
    allr = pd.concat(reps, ignore_index=True)
    a = (1 - protocol.confidence) / 2
    q = allr.groupby(["attribute", "group", "threshold_name", "metric"])["rate"]
    return pd.DataFrame({"redraw_low": q.quantile(a), "redraw_high": q.quantile(1 - a), "redraws": q.count()}).reset_index()


def metrics_from_lists(cand: np.ndarray, sc: np.ndarray, kind: np.ndarray, acquired: np.ndarray, probe_labels: dict[str, np.ndarray],
                       probe_subjects: np.ndarray, gallery_labels: dict[str, np.ndarray], model_info: dict,
                       protocol: IdentificationProtocol) -> tuple[list[dict], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Thresholds, per-probe-group rates and false candidates from the stored candidate lists.

    The one computation shared by the pipeline and ``fvbench-verify``.

    Parameters
    ----------
    cand, sc : ndarray, shape (P, L)
        Candidate lists (template indices, -1 for a search not completed) and scores (-inf there).
    kind : ndarray of int, shape (P,)
        Template of the mate (>= 0), -1 non-mated, -2 mate failed to enrol.
    acquired : ndarray of bool, shape (P,)
    probe_labels, gallery_labels : dict attribute -> ndarray of str
        Group of each search / each template.
    probe_subjects : ndarray of str, shape (P,)
    model_info : dict
        For the nominal threshold.
    protocol : IdentificationProtocol

    Returns
    -------
    thresholds, per_group, false_by_gallery, false_cells
    """
    nm = (kind == -1) & acquired
    rank, ms = mate_ranks(cand, sc, np.where(kind >= 0, kind, -1))
    thresholds = _thresholds(sc[nm, 0], model_info, protocol)
    usable = {t["name"]: float(t["threshold"]) for t in thresholds if t.get("status") == "ok"}
    out = probe_statistics(sc[:, 0], rank, ms, kind, acquired, usable, ranks=protocol.ranks, list_scores=sc)
    named = {k: v for k, v in usable.items() if k != INVESTIGATION}
    per_group, by_g, cells = [], [], []
    for attr, pl in probe_labels.items():
        per_group.append(identification_rates(out, pl, probe_subjects, attribute=attr, confidence=protocol.confidence,
                                              bootstrap_replicates=protocol.bootstrap_replicates, seed=protocol.seed))
        bg, cl = false_candidates(cand, sc, nm, pl, gallery_labels[attr], named, attribute=attr)
        by_g.append(bg)
        cells.append(cl)
    return thresholds, pd.concat(per_group, ignore_index=True), pd.concat(by_g, ignore_index=True), pd.concat(cells, ignore_index=True)


def evaluate_identification(dataset: Any, model: Any, protocol: IdentificationProtocol, *, cache_dir: Any, progress: bool = True,
                            permitted_uses: Any = None, dataset_name: str | None = None,
                            min_group_subjects: int = 1) -> IdentificationResult:
    """Run the identification protocol on a dataset and model; nothing is written.

    Parameters
    ----------
    dataset, model, cache_dir, progress
        As in :func:`bench.run.evaluate`.
    protocol : IdentificationProtocol
    min_group_subjects : int
        Subjects of any group (any reported attribute or intersection) with fewer subjects
        are withheld before the gallery split, from every number, as in the 1:1 protocol
        (:func:`bench.metrics.groups.withhold_small_groups`; PRIVACY.md): a small group's
        result then cannot be read off by subtracting the other groups from ``(all)``.
        1 (the default) withholds no one.
    permitted_uses : dict or list or None
        The dataset config's ``permitted_uses``; checked by :func:`check_permitted_uses`
        before anything is computed.
    dataset_name : str, optional
        Name used in the refusal message.

    Returns
    -------
    IdentificationResult

    Raises
    ------
    ConfigError
        A dataset that does not permit identification research; bad attributes.
    DataError
        Too few subjects or acquired images for any search.
    """
    from pathlib import Path

    from bench.run import Protocol, acquire_embeddings, reported_attributes

    check_permitted_uses(dataset_name or getattr(dataset, "name", "?"), permitted_uses)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    manifest, emb, fta_reason, _n_faces, model_info = acquire_embeddings(dataset, model, Path(cache_dir), progress)
    timings["acquire_embed_s"] = time.perf_counter() - t0
    attributes = reported_attributes(manifest, Protocol(attributes=protocol.attributes, intersections=protocol.intersections))
    labels = manifest.group_labels(attributes)
    full = manifest
    keep, withheld = withhold_small_groups(manifest.table["subject_id"], labels, min_group_subjects)
    if not keep.all():  # the published population: withheld subjects are neither enrolled nor searched
        manifest = dataclasses.replace(manifest, table=manifest.table[keep].reset_index(drop=True), check_files=False)
        labels = labels[keep].reset_index(drop=True)
        emb, fta_reason = emb[keep], np.asarray(fta_reason, dtype=object)[keep]
    acquired = np.array([r is None for r in fta_reason], dtype=bool)
    subject_ids = manifest.table["subject_id"].astype(str).to_numpy()
    base = [a for a in attributes if "&" not in a]
    split = split_gallery(subject_ids, acquired, labels[base], fraction=protocol.enrolled_fraction, seed=protocol.seed,
                          gallery_image=protocol.gallery_image, gallery_subjects=protocol.gallery_subjects)
    if split.template_rows.size == 0:
        raise DataError(f"dataset {manifest.name!r}: no gallery image acquired; no search is possible")
    metric = model_info["metric"]

    t1 = time.perf_counter()
    cand, sc, kind, rank, ms = _outcomes(emb, split, metric, protocol)
    timings["search_s"] = time.perf_counter() - t1
    nm = (kind == -1) & split.probe_acquired
    if not nm.any():
        raise DataError(f"dataset {manifest.name!r}: no completed non-mated search (every non-enrolled probe failed to acquire)")
    t2 = time.perf_counter()
    probe_labels = {a: labels[a].astype(str).to_numpy()[split.probe_rows] for a in attributes}
    gallery_labels = {a: labels[a].astype(str).to_numpy()[split.template_rows] for a in attributes}
    thresholds, per_group_df, by_g_df, cells_df = metrics_from_lists(
        cand, sc, kind, split.probe_acquired, probe_labels, subject_ids[split.probe_rows], gallery_labels, model_info, protocol)
    usable = {t["name"]: float(t["threshold"]) for t in thresholds if t.get("status") == "ok"}
    if protocol.gallery_redraws:
        red = _redraw_intervals(emb, acquired, subject_ids, labels, attributes, metric, protocol, usable)
        per_group_df = per_group_df.merge(red, on=["attribute", "group", "threshold_name", "metric"], how="left")
    timings["metrics_s"] = time.perf_counter() - t2

    result = IdentificationResult(
        manifest=manifest, attributes=attributes, split=split, split_counts=split.counts(subject_ids, labels),
        thresholds=thresholds, per_group=per_group_df, false_by_gallery=by_g_df,
        false_cells=cells_df, gallery_size=pd.DataFrame(), search_table=pd.DataFrame(),
        model_info=model_info, dataset_info={}, protocol=protocol, timings=timings,
    )
    primary = result.primary_threshold
    if protocol.gallery_size_threshold is not None:
        named_t = {t["name"]: t for t in thresholds if t.get("status") == "ok" and t["kind"] != "investigation"}
        if protocol.gallery_size_threshold not in named_t:
            raise ConfigError(f"protocol.gallery_size_threshold {protocol.gallery_size_threshold!r} is not a usable threshold of this run; "
                              f"usable: {sorted(named_t)}")
        primary = named_t[protocol.gallery_size_threshold]
    if primary is not None and protocol.gallery_sizes:
        t3 = time.perf_counter()
        fmr_cells = _cross_fmr(emb, split, labels, attributes, metric, protocol, float(primary["threshold"]))
        result.gallery_size = _gallery_size_sweep(split, labels, attributes, cand, sc, kind, primary, fmr_cells, protocol)
        result.cross_fmr = pd.concat(fmr_cells.values(), ignore_index=True)
        if protocol.gallery_shares:
            result.gallery_composition = _composition_sweep(split, labels, [a for a in attributes if "&" not in a], cand, sc, kind,
                                                            primary, fmr_cells, protocol)
        timings["gallery_size_s"] = time.perf_counter() - t3
    result.search_table, result.gallery_table = _search_table(manifest, split, labels, attributes, kind, rank, ms, cand, sc)
    result.dataset_info = {
        **full.summary(),
        "manifest_sha256": full.content_hash(),
        "subjects_published": int(manifest.table["subject_id"].nunique()),
        "images_published": int(len(manifest.table)),
        "withheld": withheld,
        "images_acquired": int(acquired.sum()),
        "enrolled_subjects": int(split.enrolled.size),
        "gallery_templates": int(split.template_rows.size),
        "mated_searches": int((kind != -1).sum()),
        "nonmated_searches": int((kind == -1).sum()),
        "comparisons": int(split.probe_acquired.sum()) * int(split.template_rows.size),
    }
    return result


def _search_table(manifest, split: GallerySplit, labels, attributes, kind, rank, ms, cand, sc) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per search: who searched, its mate's template and its candidate list; per template: subject and groups (for fvbench-verify)."""
    t = manifest.table
    tmpl_subject = t["subject_id"].astype(str).to_numpy()[split.template_rows]
    df = pd.DataFrame({
        "probe_image": t["image_id"].astype(str).to_numpy()[split.probe_rows],
        "probe_subject": t["subject_id"].astype(str).to_numpy()[split.probe_rows],
        "kind": np.where(kind == -1, "nonmated", np.where(kind == -2, "mated_mate_not_enrolled", "mated")),
        "acquired": split.probe_acquired,
        "mate_template": kind,
        "mate_rank": rank,
        "mate_score": ms,
    })
    for a in attributes:
        df[f"probe_{a}"] = labels[a].astype(str).to_numpy()[split.probe_rows]
    L = cand.shape[1]
    lists = {}
    for j in range(L):
        lists[f"cand_{j + 1}"] = cand[:, j]
        lists[f"score_{j + 1}"] = sc[:, j]
    df = pd.concat([df, pd.DataFrame(lists)], axis=1)
    gal = pd.DataFrame({"template": np.arange(split.template_rows.size), "subject": tmpl_subject,
                        "image": t["image_id"].astype(str).to_numpy()[split.template_rows]})
    for a in attributes:
        gal[f"gallery_{a}"] = labels[a].astype(str).to_numpy()[split.template_rows]
    return df, gal
