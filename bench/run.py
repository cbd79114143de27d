"""The pipeline: manifest -> acquisition/embeddings -> comparisons -> metrics -> report.

:func:`evaluate` takes plain objects (built from the Hydra config by
:mod:`bench.cli`) and writes ``results/<run_name>/``. Everything it computes is a
pure function of the config, the seed, the dataset files and the model weights,
so the same inputs give byte-identical ``metrics.json`` and tables.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.data.manifest import INTERSECTION_SEPARATOR, Manifest
from bench.data.synthetic import SyntheticPopulation
from bench.errors import ConfigError, DataError, InsufficientDataError
from bench.metrics.fta import fta_by_group
from bench.metrics.groups import cross_group_fmr, per_group_rates
from bench.metrics.rates import det_curve, equal_error_rate, score_sanity_check, threshold_at_fmr
from bench.models.cache import EmbeddingCache, model_cache_key
from bench.models.extraction import extract_embeddings
from bench.protocol.pairs import all_pairs, comparison_table
from bench.protocol.scoring import pair_scores, similarity_matrix

__all__ = ["Protocol", "RunResult", "evaluate", "fmr_threshold_name", "primary_threshold"]

log = logging.getLogger(__name__)


def fmr_threshold_name(target: float) -> str:
    """Name of the global threshold calibrated at ``target`` FMR, e.g. ``"FMR=1e-03"``."""
    return f"FMR={target:.0e}"


@dataclass(frozen=True)
class Protocol:
    """How comparisons are formed and thresholds chosen (the meaning of every number).

    Attributes
    ----------
    attributes : list of str or None
        Demographic attributes to disaggregate by; default: all of the dataset's.
    intersections : list of list of str
        Attribute combinations reported as their own attribute (``"a&b"``).
    target_fmrs : list of float
        Targets in (0, 1) for global thresholds calibrated on all non-mated
        comparisons (metrics-reference §0, §2.3).
    use_nominal_threshold : bool
        Also report at the model's published threshold, where it has one.
    max_nonmated : int or None
        Seeded sample of non-mated comparisons when there are more (None = all).
    nonmated_policy : str
        ``"same_group"``: per-group FMR over non-mated pairs with both subjects in
        the group (NIST's demographically matched impostors); all other pairs go to
        the cross-group matrix. Printed in every report.
    confidence : float
        Level of every interval.
    seed : int
        Seed for sampling.
    """

    attributes: list[str] | None = None
    intersections: list[list[str]] = field(default_factory=list)
    target_fmrs: list[float] = field(default_factory=lambda: [1e-3])
    use_nominal_threshold: bool = True
    max_nonmated: int | None = None
    nonmated_policy: str = "same_group"
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.target_fmrs and not self.use_nominal_threshold:
            raise ConfigError("protocol: give at least one target_fmrs value or use_nominal_threshold: true")
        for f in self.target_fmrs:
            if not 0 < float(f) < 1:
                raise ConfigError(f"protocol.target_fmrs: {f!r} is outside (0, 1)")
        if self.nonmated_policy != "same_group":
            raise ConfigError(f"protocol.nonmated_policy {self.nonmated_policy!r} is not supported; valid: ['same_group']")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"protocol.confidence must be in (0, 1), got {self.confidence}")


@dataclass
class RunResult:
    """Everything :func:`evaluate` computed, before it is written out.

    Attributes
    ----------
    manifest : Manifest
    attributes : list of str
        Reported attributes, intersections included.
    labels : pandas.DataFrame
        Shape (n_images, n_attributes), group per image.
    fta_reason : numpy.ndarray
        Shape (n_images,), None or reason code.
    n_faces : numpy.ndarray or None
        Shape (n_images,), faces found (None for synthetic data).
    comparisons : pandas.DataFrame
        The comparison-score table (see :mod:`bench.protocol.pairs`).
    thresholds : list of dict
        Each: name, kind (``nominal`` / ``target_fmr``), threshold, and for
        calibrated ones target_fmr, achieved_fmr, k, n_nonmated, support; or
        ``status: refused`` with the reason.
    per_group : pandas.DataFrame
        Tidy per-group FMR/FNMR/FTA rows.
    eer : pandas.DataFrame
        Per (attribute, group): EER, its threshold, bracket, counts.
    det : dict
        (attribute, group) -> DetCurve.
    cross : dict
        attribute -> long-form cross-group FMR at the primary threshold.
    model_info, dataset_info : dict
        Provenance of the model (settings, weights hashes, nominal threshold) and
        the data (manifest hash, counts).
    timings : dict
        Seconds per stage (kept out of metrics.json for byte-identical reruns).
    """

    manifest: Manifest
    attributes: list[str]
    labels: pd.DataFrame
    fta_reason: np.ndarray
    n_faces: np.ndarray | None
    comparisons: pd.DataFrame
    thresholds: list[dict]
    per_group: pd.DataFrame
    eer: pd.DataFrame
    det: dict
    cross: dict
    model_info: dict
    dataset_info: dict
    protocol: Protocol
    timings: dict = field(default_factory=dict)

    @property
    def primary_threshold(self) -> dict:
        """See :func:`primary_threshold`."""
        return primary_threshold(self.thresholds)

    @property
    def usable_thresholds(self) -> dict[str, float]:
        """Name -> value of every threshold that could be set."""
        return {t["name"]: t["threshold"] for t in self.thresholds if t.get("status", "ok") == "ok"}


def primary_threshold(thresholds: list[dict]) -> dict:
    """The threshold headline figures use: the first calibrated target FMR that could be
    set, else the model's nominal threshold."""
    usable = [t for t in thresholds if t.get("status") == "ok"]
    calibrated = [t for t in usable if t["kind"] == "target_fmr"]
    return (calibrated or usable)[0]


def _reported_attributes(manifest: Manifest, protocol: Protocol) -> list[str]:
    base = list(protocol.attributes or manifest.attributes)
    unknown = [a for a in base if a not in manifest.attributes]
    if unknown:
        raise ConfigError(f"protocol.attributes {unknown} not in dataset {manifest.name!r}; available: {list(manifest.attributes)}")
    out = list(base)
    for combo in protocol.intersections:
        combo = list(combo)
        bad = [a for a in combo if a not in manifest.attributes]
        if len(combo) < 2 or bad:
            raise ConfigError(
                f"protocol.intersections entry {combo} must name >= 2 attributes of the dataset; available: {list(manifest.attributes)}"
            )
        out.append(INTERSECTION_SEPARATOR.join(combo))
    return out


def _acquire(dataset: Any, model: Any, cache_dir: Path, progress: bool) -> tuple[Manifest, np.ndarray, np.ndarray, np.ndarray | None, dict]:
    """Embeddings for every manifest row: generated (synthetic) or extracted by a model."""
    if isinstance(dataset, SyntheticPopulation):
        if model is not None:
            raise ConfigError("the synthetic dataset generates its own embeddings: use model=generator (no image model)")
        manifest, emb, acquired = dataset.generate()
        reasons = np.where(acquired, None, "simulated").astype(object)
        info = {
            "name": "generator",
            "metric": "cosine",
            "nominal_threshold": None,
            "weights_sha256": None,
            "settings": dataset.settings(),
            "licence": "n/a (no model; embeddings generated by bench.data.synthetic)",
        }
        return manifest, emb, reasons, None, info
    if not isinstance(dataset, Manifest):
        raise ConfigError(f"dataset config must build a Manifest or a SyntheticPopulation, got {type(dataset).__name__}")
    if model is None:
        raise ConfigError(f"dataset {dataset.name!r} has images: choose an image model (e.g. model=dlib_resnet)")
    key = model_cache_key(model.settings(), model.weights_sha256)
    cache = EmbeddingCache(cache_dir, key)
    ext = extract_embeddings(dataset, model, cache, progress=progress)
    info = {
        "name": model.name,
        "metric": model.metric,
        "nominal_threshold": model.nominal_threshold,
        "nominal_threshold_source": getattr(model, "nominal_threshold_source", None),
        "weights_sha256": model.weights_sha256,
        "settings": model.settings(),
        "licence": getattr(model, "licence", None),
        "cache_key": key,
        "cache_hits": ext.cache_hits,
    }
    return dataset, ext.embeddings, ext.fta_reason, ext.n_faces, info


def _thresholds(model_info: dict, nonmated: np.ndarray, protocol: Protocol) -> list[dict]:
    out: list[dict] = []
    if protocol.use_nominal_threshold and model_info.get("nominal_threshold") is not None:
        out.append(
            {
                "name": "nominal",
                "kind": "nominal",
                "threshold": float(model_info["nominal_threshold"]),
                "source": model_info.get("nominal_threshold_source"),
                "status": "ok",
            }
        )
    for f in protocol.target_fmrs:
        name = fmr_threshold_name(float(f))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t = threshold_at_fmr(nonmated, float(f))
            entry = {
                "name": name,
                "kind": "target_fmr",
                "calibration": "all non-mated comparisons",
                "status": "ok",
                "threshold": t.threshold,
                "target_fmr": t.target_fmr,
                "achieved_fmr": t.achieved_fmr,
                "k": t.k,
                "n_nonmated": t.n_nonmated,
                "support": t.support,
            }
            if caught:
                entry["warnings"] = sorted({str(w.message) for w in caught})
            out.append(entry)
        except InsufficientDataError as err:
            log.warning("target FMR %g refused: %s", f, err)
            out.append({"name": name, "kind": "target_fmr", "status": "refused", "target_fmr": float(f), "reason": str(err)})
    if not any(t["status"] == "ok" for t in out):
        raise DataError("no threshold could be set: every target FMR was refused and the model has no nominal threshold")
    return out


def _eer_table(comp: pd.DataFrame, attributes: list[str]) -> tuple[pd.DataFrame, dict]:
    rows, dets = [], {}
    mated = comp["mated"].to_numpy()
    score = comp["score"].to_numpy()
    for attr in attributes:
        la = comp[f"{attr}_a"].astype(str).to_numpy()
        lb = comp[f"{attr}_b"].astype(str).to_numpy()
        for g in ["(all)", *sorted(set(la.tolist()) | set(lb.tolist()))]:
            sel = np.ones(len(comp), bool) if g == "(all)" else (la == g) & (lb == g)
            m, nm = score[sel & mated], score[sel & ~mated]
            row = {"attribute": attr, "group": g, "n_mated": int(m.size), "n_nonmated": int(nm.size)}
            if m.size and nm.size:
                e = equal_error_rate(m, nm)
                row.update(eer=e.eer, threshold=e.threshold, eer_low=e.low, eer_high=e.high)
                dets[(attr, g)] = det_curve(m, nm)
            else:
                row.update(eer=np.nan, threshold=np.nan, eer_low=np.nan, eer_high=np.nan)
            rows.append(row)
    return pd.DataFrame(rows), dets


def evaluate(dataset: Any, model: Any, protocol: Protocol, *, cache_dir: str | Path, progress: bool = True) -> RunResult:
    """Run one benchmark and return all its numbers (nothing is written).

    Parameters
    ----------
    dataset : Manifest or SyntheticPopulation
        Images with subjects and demographic labels, or a generated population.
    model : object or None
        Image model with ``aligner``, ``embed``, ``settings``, ``weights_sha256``,
        ``metric`` and ``nominal_threshold`` (e.g. :class:`bench.models.dlib_resnet.DlibResNet`);
        None for synthetic data.
    protocol : Protocol
    cache_dir : path
        Private embedding cache.
    progress : bool
        Show progress bars.

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError, DataError
        On an inconsistent config or data that supports no threshold at all.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    manifest, emb, fta_reason, n_faces, model_info = _acquire(dataset, model, Path(cache_dir), progress)
    timings["acquire_embed_s"] = time.perf_counter() - t0

    attributes = _reported_attributes(manifest, protocol)
    labels = manifest.group_labels(attributes)
    ok = np.array([r is None for r in fta_reason], dtype=bool)
    if ok.sum() < 2:
        raise DataError(f"dataset {manifest.name!r}: only {int(ok.sum())} image(s) acquired; no comparison is possible")

    t1 = time.perf_counter()
    table = manifest.table[ok].reset_index(drop=True)
    lab_ok = labels[ok].reset_index(drop=True)
    idx_a, idx_b, mated = all_pairs(table["subject_id"].astype(str).to_numpy(), max_nonmated=protocol.max_nonmated, seed=protocol.seed)
    if ok.sum() <= 20_000:  # the full matrix fits comfortably (<= 3.2 GB float64)
        scores = similarity_matrix(emb[ok], model_info["metric"])[idx_a, idx_b]
    else:
        scores = pair_scores(emb[ok], idx_a, idx_b, model_info["metric"])
    comp = comparison_table(table, lab_ok, idx_a, idx_b, mated, scores)
    timings["score_s"] = time.perf_counter() - t1
    if not (~mated).any():
        raise DataError(f"dataset {manifest.name!r}: no non-mated comparisons (only one subject acquired)")
    if mated.any():
        score_sanity_check(scores[mated], scores[~mated])

    t2 = time.perf_counter()
    thresholds = _thresholds(model_info, scores[~mated], protocol)
    usable = {t["name"]: t["threshold"] for t in thresholds if t["status"] == "ok"}
    parts = []
    for attr in attributes:
        parts.append(fta_by_group(labels[attr], manifest.table["subject_id"], fta_reason, attribute=attr, confidence=protocol.confidence))
        parts.append(per_group_rates(comp, attribute=attr, thresholds=usable, confidence=protocol.confidence))
    per_group = pd.concat(parts, ignore_index=True)
    per_group["reasons"] = per_group["reasons"].fillna("")
    eer, dets = _eer_table(comp, attributes)
    primary = primary_threshold(thresholds)
    cross = {a: cross_group_fmr(comp, attribute=a, threshold=primary["threshold"]) for a in attributes}
    timings["metrics_s"] = time.perf_counter() - t2

    dataset_info = {
        **manifest.summary(),
        "manifest_sha256": manifest.content_hash(),
        "images_acquired": int(ok.sum()),
        "mated_comparisons": int(mated.sum()),
        "nonmated_comparisons": int((~mated).sum()),
        "root": None if manifest.root is None else str(manifest.root),
    }
    if n_faces is not None:
        dataset_info["images_with_several_faces"] = int((n_faces > 1).sum())
    return RunResult(
        manifest=manifest,
        attributes=attributes,
        labels=labels,
        fta_reason=fta_reason,
        n_faces=n_faces,
        comparisons=comp,
        thresholds=thresholds,
        per_group=per_group,
        eer=eer,
        det=dets,
        cross=cross,
        model_info=model_info,
        dataset_info=dataset_info,
        protocol=protocol,
        timings=timings,
    )
