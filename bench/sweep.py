"""Acquisition-condition sweeps: per-group FTA, FNMR and FMR as the probe images degrade (issue #5).

Protocol
--------
References are the unperturbed images of one view, probes the images of another view
(FRL London: reference ``neutral_front``, probe ``smiling_front``). Every probe is
compared with every acquired reference: mated = same subject (102 on London),
non-mated = probe of one subject vs reference of another (102 x 101 = 10,302 ordered
pairs). Transforms (:mod:`bench.acquisition.transforms`) apply to the **probe side
only**; references never change.

The **unperturbed run** (every probe as it is) fixes the thresholds: the model's
nominal threshold and, per target FMR, the global threshold calibrated on all of its
non-mated comparisons (order-statistic rule of docs/protocol.md §0.3). Every transform
and strength is then measured at those same thresholds, so a change in FNMR or FMR is
the effect of the degradation at a fixed operating point. Per strength and group:

- ``FTA``: probes that yield no template / probes attempted (ISO/IEC 19795-1);
- ``FNMR`` and ``FMR`` over the comparisons of acquired probes (per-group FMR: probe
  and reference subjects both in the group, NISTIR 8280 "demographically matched");
- ``FNMR_incl_FTA``: FNMR with failed probes counted as false non-matches (the NIST
  FRVT convention that a failed template gets the lowest score; docs/protocol.md §1.2);

each with counts, 95% Wilson intervals (comparison-level: a floor on the uncertainty,
§5.1) and the one-sided 95% upper bound for zero-error cells (§5.5).
FNMR and FMR cells also get 95% subject-bootstrap intervals (``boot_low``/``boot_high``,
``n_replicates``; subjects resampled within groups at the fixed thresholds, same seed at
every strength: :mod:`bench.metrics.bootstrap_fixed`, docs/protocol.md §5.2-5.3;
``sweep.bootstrap_replicates``, null for Wilson only).

Embeddings of perturbed probes are cached privately (:class:`EmbeddingCache` under
``<cache_dir>/sweeps``), keyed by the model cache key, the transform settings, the
strength, the seed, the geometry locator settings and the image's content SHA-256;
nothing per image reaches ``results/``.

Layout: the protocol, grids and result types are in :mod:`bench.protocol.sweep_spec`; the
folder is written by :mod:`bench.report.sweep` (:func:`~bench.report.sweep.write_sweep`);
this module is the driver that computes a :class:`~bench.protocol.sweep_spec.SweepResult`.
"""

from __future__ import annotations

import dataclasses

import hashlib
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from bench.acquisition.base import Acquisition
from bench.acquisition.images import image_sha256, load_rgb
from bench.acquisition.transforms import TRANSFORMS_VERSION, FaceGeometry, FaceGeometryLocator
from bench.data.manifest import INTERSECTION_SEPARATOR, Manifest
from bench.errors import ConfigError, DataError, ImageLoadError, InsufficientDataError
from bench.metrics.bootstrap_fixed import BOOT_COLUMNS, with_fixed_threshold_bootstrap
from bench.metrics.fta import fta_by_group
from bench.metrics.groups import ALL_GROUP, per_group_rates, withhold_small_groups
from bench.metrics.intervals import wilson_interval, zero_error_upper_bound
from bench.metrics.rates import RULE_OF_30, score_sanity_check, threshold_at_fmr
from bench.models.cache import CachedResult, EmbeddingCache, model_cache_key, clean_stale_temp, write_atomic
from bench.models.extraction import extract_embeddings
from bench.models.weights import weights_verification
from bench.protocol.pairs import capture_ids_of, comparison_table
from bench.protocol.scoring import pair_scores
from bench.protocol.sweep_spec import SWEEP_COLUMNS, UNPERTURBED, SweepProtocol, SweepResult, TransformSweep

__all__ = ["run_sweep", "sweep_cache_key"]

log = logging.getLogger(__name__)

def _read_geometry(path: Path) -> FaceGeometry | None | bool:
    """A cached face geometry: a FaceGeometry, None (no face located), or False when the entry is malformed.

    A malformed entry (not JSON, wrong fields, non-finite numbers) is recomputed with a warning.
    """
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d is None:
            return None
        box = tuple(float(v) for v in d["box"])
        eyes = tuple(tuple(float(v) for v in e) for e in d["eyes"])
        if len(box) != 4 or len(eyes) != 2 or any(len(e) != 2 for e in eyes) or not np.all(np.isfinite([*box, *eyes[0], *eyes[1]])):
            raise ValueError("box must be 4 numbers and eyes 2 points")
        return FaceGeometry(box=box, eyes=eyes)
    except (OSError, ValueError, TypeError, KeyError) as err:
        log.warning("malformed face-geometry cache entry %s (%s): recomputing it", path, err)
        return False


def sweep_cache_key(model_key: str, sweep: TransformSweep, strength: float, seed: int, locator_settings: dict | None) -> str:
    """SHA-256 (hex) naming the cache folder of one (model, transform, strength, seed)."""
    blob = json.dumps(
        {"model": model_key, "transform": sweep.transform.settings(), "strength": repr(float(strength)), "seed": int(seed),
         "geometry": locator_settings if sweep.transform.needs_geometry else None, "version": TRANSFORMS_VERSION},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- helpers
def _attributes(manifest: Manifest, protocol: SweepProtocol) -> list[str]:
    base = list(protocol.attributes or manifest.attributes)
    unknown = [a for a in base if a not in manifest.attributes]
    if unknown:
        raise ConfigError(f"sweep.attributes {unknown} not in dataset {manifest.name!r}; available: {list(manifest.attributes)}")
    out = list(base)
    for combo in protocol.intersections:
        combo = [str(c) for c in combo]
        if len(combo) < 2 or any(c not in manifest.attributes for c in combo):
            raise ConfigError(f"sweep.intersections entry {combo} must name >= 2 attributes of the dataset; available: {list(manifest.attributes)}")
        out.append(INTERSECTION_SEPARATOR.join(combo))
    return out


def _split(dataset: Manifest, protocol: SweepProtocol) -> Manifest:
    """The probe rows then the reference rows, as one manifest (``role`` column added)."""
    t = dataset.table
    col = protocol.view_column
    if col not in t.columns:
        raise ConfigError(f"sweep.view_column {col!r} is not a column of dataset {dataset.name!r}; columns: {list(t.columns)}")
    views = sorted(t[col].astype(str).unique().tolist())
    parts = []
    for role, view in (("probe", protocol.probe_view), ("reference", protocol.reference_view)):
        sel = t[t[col].astype(str) == view]
        if sel.empty:
            raise ConfigError(f"sweep.{role}_view {view!r} has no images in dataset {dataset.name!r}; views: {views}")
        parts.append(sel.assign(role=role))
    table = pd.concat(parts, ignore_index=True)
    return Manifest(table=table, root=dataset.root, attributes=dataset.attributes, name=dataset.name, check_files=False,
                    provenance=dataset.provenance)  # issue #14: release facts travel with the sweep


def _valid(vec: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(vec)) and np.linalg.norm(vec) > 1e-12)


def _thresholds(model: Any, scores: np.ndarray, mated: np.ndarray, protocol: SweepProtocol) -> list[dict]:
    """Nominal and target-FMR thresholds of the unperturbed run (same rule as :mod:`bench.run`)."""
    from bench.run import fmr_threshold_name

    out: list[dict] = []
    nominal = getattr(model, "nominal_threshold", None)
    if protocol.use_nominal_threshold and nominal is not None:
        out.append({"name": "nominal", "kind": "nominal", "threshold": float(nominal),
                    "source": getattr(model, "nominal_threshold_source", None), "status": "ok"})
    nonmated = scores[~mated]
    for f in protocol.target_fmrs:
        name = fmr_threshold_name(float(f))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t = threshold_at_fmr(nonmated, float(f))
        except InsufficientDataError as err:
            log.warning("target FMR %g refused: %s", f, err)
            out.append({"name": name, "kind": "target_fmr", "status": "refused", "target_fmr": float(f), "reason": str(err)})
            continue
        entry = {"name": name, "kind": "target_fmr", "status": "ok", "threshold": t.threshold, "target_fmr": t.target_fmr,
                 "achieved_fmr": t.achieved_fmr, "k": t.k, "n_nonmated": t.n_nonmated, "support": t.support,
                 "calibration": "all non-mated probe-reference comparisons of the unperturbed probes"}
        if caught:
            entry["warnings"] = sorted({str(w.message) for w in caught})
        out.append(entry)
    if not any(t["status"] == "ok" for t in out):
        raise DataError("sweep: no threshold could be set on the unperturbed run: every target FMR was refused and the model has no nominal threshold")
    return out


def _flag(errors: int, n: int) -> str:
    if n == 0:
        return "no_comparisons"
    if errors == 0:
        return "zero_errors"
    return "low_precision" if errors < RULE_OF_30 else ""


class _Population:
    """Index sets and labels shared by every strength of a sweep."""

    def __init__(self, manifest: Manifest, attributes: list[str], probe_ok_pop: np.ndarray, ref_ok: np.ndarray) -> None:
        t = manifest.table
        role = t["role"].to_numpy()
        self.table = t
        self.labels = manifest.group_labels(attributes)
        self.attributes = attributes
        self.probes = np.flatnonzero((role == "probe") & probe_ok_pop)  # probes in the population
        self.refs = np.flatnonzero((role == "reference") & ref_ok)  # acquired references
        subj = t["subject_id"].astype(str).to_numpy()
        self.subjects = subj
        ia, ib = np.meshgrid(self.probes, self.refs, indexing="ij")
        self.idx_a, self.idx_b = ia.ravel(), ib.ravel()
        self.mated = subj[self.idx_a] == subj[self.idx_b]
        cap = capture_ids_of(t)  # issue #14: a probe and a reference from one capture (video) are no comparison
        if cap is not None:
            keep = ~(self.mated & (cap[self.idx_a] == cap[self.idx_b]))
            self.idx_a, self.idx_b, self.mated = self.idx_a[keep], self.idx_b[keep], self.mated[keep]


def _comparisons(pop: _Population, emb: np.ndarray, reasons: np.ndarray, metric: str) -> pd.DataFrame:
    """Comparison table (probe = side a, reference = side b) of the acquired probes."""
    probe_ok = np.array([r is None for r in reasons], dtype=bool)
    keep = probe_ok[pop.idx_a]
    ia, ib, mated = pop.idx_a[keep], pop.idx_b[keep], pop.mated[keep]
    scores = pair_scores(emb, ia, ib, metric) if len(ia) else np.empty(0)
    return comparison_table(pop.table, pop.labels, ia, ib, mated, scores)


def _rates(pop: _Population, emb: np.ndarray, reasons: np.ndarray, metric: str, thresholds: dict[str, float],
           confidence: float, bootstrap: tuple[int, int] | None = None) -> pd.DataFrame:
    """Per-group FTA, FNMR, FNMR_incl_FTA and FMR rows for one set of probe outcomes.

    ``bootstrap`` = (replicates, seed) adds the subject-bootstrap columns of FNMR and FMR
    (:func:`bench.metrics.bootstrap_fixed.with_fixed_threshold_bootstrap`); None leaves them blank.
    """
    probe_ok = np.array([r is None for r in reasons], dtype=bool)
    comp = _comparisons(pop, emb, reasons, metric)
    # mated comparisons attempted, failed probes included (NIST convention)
    ma, mb = pop.idx_a[pop.mated], pop.idx_b[pop.mated]
    m_ok = probe_ok[ma]
    m_scores = np.full(len(ma), -np.inf)
    if m_ok.any():
        m_scores[m_ok] = pair_scores(emb, ma[m_ok], mb[m_ok], metric)
    parts = []
    for attr in pop.attributes:
        lab = pop.labels[attr]
        fta = fta_by_group(lab.iloc[pop.probes].reset_index(drop=True), pop.table["subject_id"].iloc[pop.probes].reset_index(drop=True),
                           reasons[pop.probes], attribute=attr, confidence=confidence)
        parts.append(fta)
        parts.append(per_group_rates(comp, attribute=attr, thresholds=thresholds, confidence=confidence))
        la, lb = lab.to_numpy()[ma], lab.to_numpy()[mb]
        groups = [ALL_GROUP, *sorted(set(la.tolist()) | set(lb.tolist()))]
        recs = []
        for g in groups:
            sel = np.ones(len(ma), bool) if g == ALL_GROUP else (la == g) & (lb == g)
            subjects = len(set(pop.subjects[ma[sel]].tolist()))
            for name, t in thresholds.items():
                errors = int(np.count_nonzero(sel & (~m_ok | (m_scores < t))))
                recs.append({"attribute": attr, "group": g, "threshold_name": name, "threshold": float(t), "metric": "FNMR_incl_FTA",
                             "errors": errors, "comparisons": int(sel.sum()), "subjects": subjects})
        gen = pd.DataFrame(recs)
        e, n = gen["errors"].to_numpy(), gen["comparisons"].to_numpy()
        gen["rate"] = np.where(n > 0, e / np.maximum(n, 1), np.nan)
        gen["wilson_low"], gen["wilson_high"] = wilson_interval(e, n, confidence=confidence)
        gen["upper_bound_95"] = np.where((e == 0) & (n > 0), zero_error_upper_bound(np.maximum(n, 1)), np.nan)
        gen["flag"] = [_flag(int(a), int(b)) for a, b in zip(e, n)]
        parts.append(gen)
    rows = pd.concat(parts, ignore_index=True)
    rows["reasons"] = rows["reasons"].fillna("") if "reasons" in rows.columns else ""
    rows["threshold_name"] = rows["threshold_name"].fillna("")
    order = {"FTA": 0, "FNMR": 1, "FNMR_incl_FTA": 2, "FMR": 3}
    rows["_o"] = rows["metric"].map(order)
    rows["_a"] = rows["attribute"].map({a: i for i, a in enumerate(pop.attributes)})
    rows = rows.sort_values(["_a", "_o"], kind="stable").drop(columns=["_o", "_a"])
    if bootstrap is None:  # issue #14: Wilson only
        return rows.assign(**{c: np.nan for c in BOOT_COLUMNS})
    return with_fixed_threshold_bootstrap(rows, comp, pop.attributes, thresholds, n_replicates=bootstrap[0],
                                          seed=bootstrap[1], confidence=confidence)


# ----------------------------------------------------------------------------- run
def run_sweep(dataset: Manifest, model: Any, sweeps: list[TransformSweep], protocol: SweepProtocol, *,
              cache_dir: str | Path, locator: FaceGeometryLocator | None = None, batch_size: int = 32,
              progress: bool = True, min_group_subjects: int = 1) -> SweepResult:
    """Measure per-group FTA, FNMR and FMR for every transform and strength (nothing is written).

    Parameters
    ----------
    dataset : Manifest
        Images with a view column (``protocol.view_column``), subjects and labels.
    model : object
        Image model as :func:`bench.run.evaluate` takes it, whose ``aligner`` also has
        ``acquire(image) -> Acquisition`` (e.g. :class:`bench.models.dlib_resnet.DlibResNet`).
    sweeps : list of TransformSweep
        From :func:`make_sweeps`.
    protocol : SweepProtocol
    cache_dir : path
        Private cache root: unperturbed embeddings are shared with ``fvbench`` runs,
        perturbed ones go under ``<cache_dir>/sweeps``, face geometry under
        ``<cache_dir>/geometry``.
    locator : FaceGeometryLocator or None
        Default: built from ``protocol.geometry`` when a transform needs geometry.
    batch_size : int
        Chips per embedding call.
    progress : bool
        Show progress bars.

    Returns
    -------
    SweepResult

    Raises
    ------
    ConfigError
        Unknown view column or views, attributes, or a model without
        ``aligner.acquire``.
    DataError
        When the unperturbed run has no mated or no non-mated comparison, or supports
        no threshold.
    """
    if not isinstance(dataset, Manifest) or dataset.root is None:
        raise ConfigError("sweep: the dataset must be a Manifest of image files (synthetic populations have no images to perturb)")
    if model is None or not callable(getattr(getattr(model, "aligner", None), "acquire", None)):
        raise ConfigError(f"sweep: model {getattr(model, 'name', model)!r} must have aligner.acquire(image) (an image model such as dlib_resnet)")
    if not sweeps:
        raise ConfigError("sweep: no transforms configured")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    cache_dir = Path(cache_dir).expanduser()
    manifest = _split(dataset, protocol)
    attributes = _attributes(manifest, protocol)
    # subjects of groups below min_group_subjects enter no number (bench.metrics.groups.withhold_small_groups)
    keep, withheld = withhold_small_groups(manifest.table["subject_id"], manifest.group_labels(attributes), min_group_subjects)
    if not keep.all():
        manifest = dataclasses.replace(manifest, table=manifest.table[keep].reset_index(drop=True), check_files=False)
    table = manifest.table
    n = len(table)
    probe_rows = np.flatnonzero(table["role"].to_numpy() == "probe")

    model_key = model_cache_key(model.settings(), model.weights_sha256)
    base = extract_embeddings(manifest, model, EmbeddingCache(cache_dir, model_key), batch_size=batch_size, progress=progress)
    timings["unperturbed_s"] = time.perf_counter() - t0

    # --- geometry of the unperturbed probes (population = probes it locates, when needed)
    t1 = time.perf_counter()
    need_geometry = any(s.transform.needs_geometry for s in sweeps)
    if need_geometry and locator is None:
        locator = FaceGeometryLocator(**protocol.geometry)
    loc_settings = locator.settings() if need_geometry else None
    geometry: dict[int, FaceGeometry | None] = {}
    shas: dict[int, str | None] = {}
    load_errors: dict[int, ImageLoadError] = {}
    images: dict[int, np.ndarray] = {}

    def image(i: int) -> np.ndarray | None:
        if i not in images and i not in load_errors:
            try:
                images[i] = load_rgb(manifest.image_path(i))
            except ImageLoadError as err:
                load_errors[i] = err
        return images.get(i)

    for i in probe_rows:
        try:
            shas[i] = image_sha256(manifest.image_path(i))
        except (OSError, DataError):
            shas[i] = None
    if need_geometry:
        gkey = hashlib.sha256(json.dumps(loc_settings, sort_keys=True).encode()).hexdigest()[:16]
        gdir = cache_dir / "geometry" / gkey
        if gdir.is_dir():
            clean_stale_temp(gdir)  # temporary files of killed sweeps
        for i in probe_rows:
            sha = shas[i]
            f = gdir / f"{sha}.json" if sha else None
            if f is not None and f.is_file() and not f.is_symlink():
                cached_geo = _read_geometry(f)
                if cached_geo is not False:
                    geometry[i] = cached_geo
                    continue
            img = image(i)
            if img is None:
                geometry[i] = None
                continue
            geometry[i] = g = locator.locate(img)
            images.pop(i, None)  # reloaded below only if a perturbation is not cached (bounds memory)
            if f is not None:
                write_atomic(f, json.dumps(None if g is None else {"box": list(g.box), "eyes": [list(e) for e in g.eyes]}).encode())
    # probes loaded fine but without a located face cannot be perturbed face-relatively: excluded everywhere
    excluded = np.zeros(n, bool)
    if need_geometry:
        for i in probe_rows:
            if geometry.get(i) is None and i not in load_errors and shas[i] is not None:
                excluded[i] = True
        if excluded.any():
            log.warning("sweep: %d probe(s) excluded: the geometry locator found no face on the unperturbed image: %s",
                        int(excluded.sum()), table["image_id"].iloc[np.flatnonzero(excluded)].tolist())
    timings["geometry_s"] = time.perf_counter() - t1

    # --- perturbed probe outcomes
    t2 = time.perf_counter()
    d = int(model.embedding_dim)
    outcomes: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    caches: dict[tuple[int, int], EmbeddingCache] = {}
    for si, sw in enumerate(sweeps):
        for ki, s in enumerate(sw.strengths):
            emb = base.embeddings.copy()
            emb[probe_rows] = np.nan  # every probe in the population is filled in below
            outcomes[(si, ki)] = (emb, np.array(base.fta_reason, dtype=object))
            caches[(si, ki)] = EmbeddingCache(cache_dir / "sweeps", sweep_cache_key(model_key, sw, s, protocol.seed, loc_settings),
                                             model.embedding_dim)
    pending: list[tuple[tuple[int, int], int, str | None, Acquisition]] = []
    hits = computed = unchanged = 0

    def flush() -> None:
        ok = [p for p in pending if p[3].ok]
        vecs = model.embed([p[3].chip for p in ok]) if ok else np.empty((0, d), np.float32)
        for (key, i, sha, a), v in zip(ok, vecs):
            emb, reasons = outcomes[key]
            if _valid(v):
                emb[i], reasons[i] = v, None
                res = CachedResult(v, None, a.n_faces)
            else:
                reasons[i] = "invalid_embedding"
                res = CachedResult(None, "invalid_embedding", a.n_faces, "NaN or zero-norm embedding")
            if sha:
                caches[key].put(sha, res)
        for key, i, sha, a in pending:
            if not a.ok:
                outcomes[key][1][i] = a.fta_reason
                if sha:
                    caches[key].put(sha, CachedResult(None, a.fta_reason, a.n_faces, a.detail))
        pending.clear()

    total = sum(len(s.strengths) for s in sweeps)
    for i in tqdm(probe_rows, desc=f"{model.name} sweep ({total} strengths)", disable=not progress, unit="probe"):
        if excluded[i]:
            continue
        sha = shas[i]
        for si, sw in enumerate(sweeps):
            for ki, s in enumerate(sw.strengths):
                key = (si, ki)
                emb, reasons = outcomes[key]
                if sw.transform.identity is not None and s == sw.transform.identity:
                    emb[i], reasons[i] = base.embeddings[i], base.fta_reason[i]  # byte-identical image
                    unchanged += 1
                    continue
                cached = caches[key].get(sha, embedding_dim=model.embedding_dim) if sha else None
                if cached is not None:
                    hits += 1
                    if cached.embedding is not None and _valid(cached.embedding):
                        emb[i], reasons[i] = cached.embedding, None
                    else:
                        reasons[i] = cached.fta_reason or "invalid_embedding"
                    continue
                img = image(i)
                if img is None:
                    reasons[i] = load_errors[i].reason  # unreadable: the same failure at every strength
                    continue
                out = sw.transform.apply(img, s, geometry=geometry.get(i), seed=protocol.seed, image_key=sha or "")
                if out is img:
                    emb[i], reasons[i] = base.embeddings[i], base.fta_reason[i]
                    unchanged += 1
                    continue
                computed += 1
                pending.append((key, i, sha, model.aligner.acquire(out)))
                if len(pending) >= batch_size:
                    flush()
        images.pop(i, None)
    flush()
    timings["perturbed_s"] = time.perf_counter() - t2

    # --- metrics
    t3 = time.perf_counter()
    ref_ok = np.array([r is None for r in base.fta_reason], dtype=bool)
    pop = _Population(manifest, attributes, ~excluded, ref_ok)
    base_reasons = np.array(base.fta_reason, dtype=object)
    base_comp = _comparisons(pop, base.embeddings, base_reasons, model.metric)
    if not base_comp["mated"].any() or base_comp["mated"].all():
        raise DataError(f"sweep on {dataset.name!r}: the unperturbed run has {int(base_comp['mated'].sum())} mated and "
                        f"{int((~base_comp['mated']).sum())} non-mated comparisons; both are needed")
    score_sanity_check(base_comp["score"].to_numpy()[base_comp["mated"].to_numpy()], base_comp["score"].to_numpy()[~base_comp["mated"].to_numpy()])
    thresholds = _thresholds(model, base_comp["score"].to_numpy(), base_comp["mated"].to_numpy(), protocol)
    usable = {t["name"]: t["threshold"] for t in thresholds if t["status"] == "ok"}
    parts = []
    boot = (protocol.bootstrap_replicates, protocol.seed) if protocol.bootstrap_replicates else None  # issue #14
    rows = _rates(pop, base.embeddings, base_reasons, model.metric, usable, protocol.confidence, boot)
    parts.append(rows.assign(transform=UNPERTURBED, strength=np.nan))
    for si, sw in enumerate(sweeps):
        for ki, s in enumerate(sw.strengths):
            emb, reasons = outcomes[(si, ki)]
            rows = _rates(pop, emb, reasons, model.metric, usable, protocol.confidence, boot)
            parts.append(rows.assign(transform=sw.name, strength=float(s)))
    all_rows = pd.concat(parts, ignore_index=True)[SWEEP_COLUMNS]
    timings["metrics_s"] = time.perf_counter() - t3

    pop_rows = np.concatenate([pop.probes, np.flatnonzero(table["role"].to_numpy() == "reference")])
    subj = table["subject_id"].astype(str).iloc[pop_rows]
    subjects_per_group = {
        a: pd.DataFrame({"s": subj.to_numpy(), "g": pop.labels[a].iloc[pop_rows].to_numpy()}).drop_duplicates().groupby("g")["s"].size().sort_index().to_dict()
        for a in attributes
    }
    ieds = np.array([geometry[i].ied for i in pop.probes if geometry.get(i) is not None]) if need_geometry else np.empty(0)
    geometry_info: dict[str, Any] = {"used": need_geometry}
    if need_geometry:
        geometry_info.update(
            locator=loc_settings,
            probes_located=int(len(ieds)),
            probes_excluded_no_face=int(excluded.sum()),
            ied_px={"median": float(np.median(ieds)), "min": float(ieds.min()), "max": float(ieds.max())} if len(ieds) else None,
            ied_px_median_per_group={
                a: {g: float(np.median([geometry[i].ied for i in pop.probes if geometry.get(i) is not None and pop.labels[a].iloc[i] == g]))
                    for g in sorted(set(pop.labels[a].iloc[pop.probes].tolist()))
                    if any(geometry.get(i) is not None and pop.labels[a].iloc[i] == g for i in pop.probes)}
                for a in attributes
            },
        )
    n_ref = int((table["role"] == "reference").sum())
    counts = {
        "probe_images": int(len(probe_rows)),
        "reference_images": n_ref,
        "references_acquired": int(len(pop.refs)),
        "reference_fta": int(n_ref - len(pop.refs)),
        "probes_in_population": int(len(pop.probes)),
        "mated_comparisons_unperturbed": int(base_comp["mated"].sum()),
        "nonmated_comparisons_unperturbed": int((~base_comp["mated"]).sum()),
        "perturbed_probes_computed": computed,
        "perturbed_probes_from_cache": hits,
        "perturbed_probes_unchanged": unchanged,
    }
    model_info = {
        "name": model.name, "metric": model.metric, "nominal_threshold": getattr(model, "nominal_threshold", None),
        "nominal_threshold_source": getattr(model, "nominal_threshold_source", None), "weights_sha256": model.weights_sha256,
        **weights_verification(model.weights_sha256),
        "settings": model.settings(), "licence": getattr(model, "licence", None), "cache_key": model_key,
    }
    dataset_info = {**dataset.summary(), "manifest_sha256": dataset.content_hash(), "sweep_manifest_sha256": manifest.content_hash(),
                    "withheld": withheld,
                    "root": str(dataset.root)}
    return SweepResult(rows=all_rows, thresholds=thresholds, sweeps=sweeps, attributes=attributes, subjects_per_group=subjects_per_group,
                       dataset_info=dataset_info, model_info=model_info, geometry_info=geometry_info, counts=counts,
                       protocol=protocol, timings=timings)


if __name__ == "__main__":
    # ``python -m bench.sweep`` runs the same entry as the ``fvbench-sweep`` console script.
    # Run as a script, this file is ``__main__``, not the library module ``bench.sweep``; the
    # CLI layer is looked up by name here so the library module keeps importing only its
    # own layer and lower ones (tests/test_architecture.py).
    import importlib

    importlib.import_module("bench.cli").sweep_main()
