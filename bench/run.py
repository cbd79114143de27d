"""The pipeline: manifest -> acquisition/embeddings -> comparisons -> metrics -> report.

:func:`evaluate` takes plain objects (built from the Hydra config by
:mod:`bench.cli`) and writes ``results/<run_name>/``. Everything it computes is a
pure function of the config, the seed, the dataset files and the model weights,
so the same inputs give byte-identical ``metrics.json`` and tables.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from bench.data.manifest import INTERSECTION_SEPARATOR, Manifest
from bench.data.synthetic import SyntheticPopulation
from bench.errors import ConfigError, DataError, InsufficientDataError
from bench.limits import MAX_BOOTSTRAP_REPLICATES, check_int, check_memory, check_seed
from bench.metrics.bootstrap import (
    bootstrap_differentials,
    bootstrap_group_rates,
    bootstrap_overall_rates,
    bootstrap_replicates,
    with_overall_rows,
)
from bench.metrics.differentials import differential_summary
from bench.metrics.fta import fta_by_group, generalized_rates
from bench.metrics.groups import cross_group_fmr, per_group_rates, withhold_small_groups
from bench.metrics.rates import ThresholdAtFMR, det_curve, equal_error_rate, score_sanity_check, threshold_at_fmr
from bench.models.cache import EmbeddingCache, model_cache_key
from bench.models.extraction import extract_embeddings
from bench.models.weights import weights_verification
from bench.protocol.pairs import all_pairs, capture_ids_of, comparison_table
from bench.protocol.scoring import pair_scores, similarity_matrix

__all__ = [
    "ENGINES", "Protocol", "RunResult", "evaluate", "fmr_threshold_name", "per_group_threshold_analysis",
    "primary_threshold", "threshold_entries", "acquire_embeddings", "reported_attributes",
]

#: Values of ``protocol.engine``.
ENGINES = ("auto", "table", "stream")

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
        Seed for sampling and the bootstrap.
    bootstrap_replicates : int or None
        Subject-level bootstrap replicates (metrics-reference §5.2-5.4); None skips it.
    calibration_group : dict or None
        ``{attribute, group}``: calibrate the target-FMR thresholds on that group's
        non-mated comparisons (both subjects in the group) instead of all of them.
    external_thresholds : dict or None
        ``{name: threshold}`` set on an external calibration run; used as given and
        held fixed in the bootstrap (§5.4).
    differential_alpha : float
        FMR weight of FDR, IR and GARBE (metrics-reference §4).
    zero_rule : None or "upper_bound"
        How ratio measures treat zero-error groups: not estimable (None) or the
        one-sided 95% upper bound (§2.2).
    reference_groups : dict
        attribute -> reference group for ``ratio_to_reference``.
    per_group_thresholds : bool
        Add the labelled *mitigation analysis*: each group at its own threshold for
        each target FMR (never the headline numbers).
    engine : {"auto", "table", "stream"}
        ``table``: the comparison-score table (every score kept; ``scores.parquet``).
        ``stream``: blocked scoring into score histograms and subject aggregates
        (:mod:`bench.run_streaming`; memory independent of the number of
        comparisons). ``auto``: table up to ``table_max_comparisons`` comparisons,
        else stream.
    table_max_comparisons : int
        Largest run (mated + non-mated comparisons) that ``engine: auto`` keeps in a
        table (default 5e6; measured at 1.96e7 on 2 cores: table engine 146 s and
        8.9 GB peak memory, streaming engine 7.6 s and 1.0 GB).
    """

    attributes: list[str] | None = None
    intersections: list[list[str]] = field(default_factory=list)
    target_fmrs: list[float] = field(default_factory=lambda: [1e-3])
    use_nominal_threshold: bool = True
    max_nonmated: int | None = None
    nonmated_policy: str = "same_group"
    confidence: float = 0.95
    seed: int = 0
    bootstrap_replicates: int | None = 1000
    calibration_group: dict | None = None
    external_thresholds: dict | None = None
    differential_alpha: float = 0.5
    zero_rule: str | None = None
    reference_groups: dict = field(default_factory=dict)
    per_group_thresholds: bool = False
    engine: str = "auto"
    table_max_comparisons: int = 5_000_000

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"protocol.engine must be one of {list(ENGINES)}, got {self.engine!r}")
        limit = self.table_max_comparisons
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit != int(limit) or limit < 0:
            raise ConfigError(f"protocol.table_max_comparisons must be a non-negative integer, got {limit!r}")
        object.__setattr__(self, "table_max_comparisons", int(limit))
        if not self.target_fmrs and not self.use_nominal_threshold:
            raise ConfigError("protocol: give at least one target_fmrs value or use_nominal_threshold: true")
        for f in self.target_fmrs:
            if not 0 < float(f) < 1:
                raise ConfigError(f"protocol.target_fmrs: {f!r} is outside (0, 1)")
        seen = [fmr_threshold_name(float(f)) for f in self.target_fmrs]
        dup = sorted({n for n in seen if seen.count(n) > 1})
        if dup:
            raise ConfigError(
                f"protocol.target_fmrs {list(self.target_fmrs)} lists {dup[0][4:]} more than once "
                "(targets are named by 1 significant digit, e.g. FMR=1e-03); give each target once"
            )
        if self.nonmated_policy != "same_group":
            raise ConfigError(f"protocol.nonmated_policy {self.nonmated_policy!r} is not supported; valid: ['same_group']")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"protocol.confidence must be in (0, 1), got {self.confidence}")
        if self.bootstrap_replicates is not None and int(self.bootstrap_replicates) < 1:
            raise ConfigError(
                f"protocol.bootstrap_replicates must be >= 1 (or null to skip the bootstrap), got {self.bootstrap_replicates}"
            )
        if self.bootstrap_replicates is not None:  # absurd sizes refused before anything is allocated
            object.__setattr__(self, "bootstrap_replicates", check_int(
                "protocol.bootstrap_replicates", self.bootstrap_replicates, 1, MAX_BOOTSTRAP_REPLICATES, "or null to skip the bootstrap"))
        object.__setattr__(self, "seed", check_seed("protocol.seed", self.seed))
        if self.max_nonmated is not None:
            object.__setattr__(self, "max_nonmated", check_int("protocol.max_nonmated", self.max_nonmated, 1, None, "or null for all"))
        if self.calibration_group is not None and set(self.calibration_group) != {"attribute", "group"}:
            raise ConfigError(
                f"protocol.calibration_group must be null or {{attribute: ..., group: ...}}, got {self.calibration_group}"
            )
        if self.calibration_group is not None and self.external_thresholds is not None:
            raise ConfigError("protocol: set calibration_group or external_thresholds, not both")
        if self.zero_rule not in (None, "upper_bound"):
            raise ConfigError(f"protocol.zero_rule must be null or 'upper_bound', got {self.zero_rule!r}")


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
    comparisons : pandas.DataFrame or None
        The comparison-score table (see :mod:`bench.protocol.pairs`); None for a
        streamed run (``engine_info["engine"] == "stream"``).
    thresholds : list of dict
        Each: name, kind (``nominal`` / ``target_fmr``), threshold, and for
        calibrated ones target_fmr, achieved_fmr, k, n_nonmated, support; or
        ``status: refused`` with the reason.
    per_group : pandas.DataFrame
        Tidy per-group FMR/FNMR/FTA rows (with ``boot_low``/``boot_high`` when the
        subject bootstrap ran).
    generalized : pandas.DataFrame
        Per group and threshold: FTA folded into the rates (ISO FAR/FRR, NIST style).
    differentials : pandas.DataFrame
        Tidy differential measures per attribute and threshold with bootstrap intervals.
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
    engine_info : dict
        Which engine computed the numbers, why, and (stream) its bin width, tail and
        stated tolerances; written to metrics.json as ``engine``.
    mitigation : pandas.DataFrame or None
        The per-group-threshold mitigation analysis (``protocol.per_group_thresholds``),
        see :func:`per_group_threshold_analysis`; None when not requested.
    stream : bench.run_streaming.StreamedScores or None
        The histograms of a streamed run (for the writer); None for a table run.
    withheld : dict
        Subjects of small groups left out of every number above
        (:func:`bench.metrics.groups.withhold_small_groups`); ``manifest``, ``labels``,
        ``fta_reason`` and ``n_faces`` hold the published population only.
    """

    manifest: Manifest
    attributes: list[str]
    labels: pd.DataFrame
    fta_reason: np.ndarray
    n_faces: np.ndarray | None
    comparisons: pd.DataFrame | None
    thresholds: list[dict]
    per_group: pd.DataFrame
    generalized: pd.DataFrame
    differentials: pd.DataFrame
    eer: pd.DataFrame
    det: dict
    cross: dict
    model_info: dict
    dataset_info: dict
    protocol: Protocol
    timings: dict = field(default_factory=dict)
    engine_info: dict = field(default_factory=dict)
    mitigation: pd.DataFrame | None = None
    stream: Any = None
    withheld: dict = field(default_factory=lambda: {"min_group_subjects": 1, "subjects": 0, "images": 0, "groups": {}})

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
    from bench.suggest import did_you_mean

    base = list(protocol.attributes or manifest.attributes)
    unknown = [a for a in base if a not in manifest.attributes]
    if unknown:
        raise ConfigError(
            f"protocol.attributes: {unknown[0]!r} is not an attribute of dataset {manifest.name!r}"
            f"{did_you_mean(unknown[0], manifest.attributes) or ';'} available: {list(manifest.attributes)}"
        )
    out = list(base)
    for combo in protocol.intersections:
        combo = [combo] if isinstance(combo, str) else list(combo)
        bad = [a for a in combo if a not in manifest.attributes]
        if bad:
            raise ConfigError(
                f"protocol.intersections entry {combo}: {bad[0]!r} is not an attribute of dataset {manifest.name!r}"
                f"{did_you_mean(bad[0], manifest.attributes) or ';'} available: {list(manifest.attributes)}"
            )
        if len(combo) < 2 or len(set(combo)) != len(combo):
            raise ConfigError(
                f"protocol.intersections entry {combo} must name >= 2 different attributes, e.g. [[face_eth, face_gender]]"
            )
        out.append(INTERSECTION_SEPARATOR.join(combo))
    return out


def _detector_name(model: Any) -> str | None:
    """Name of the face detector feeding ``model`` (recorded apart from the recogniser)."""
    aligner = getattr(model, "aligner", None)
    name = getattr(aligner, "detector_name", None) or getattr(getattr(aligner, "detector", None), "name", None)
    if name is None and aligner is not None:  # the dlib ResNet's built-in aligner
        name = "dlib_hog" if type(aligner).__name__ == "DlibAligner" else None
    return name


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
            **weights_verification(None),
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
    log.info("%d of %d embeddings from the cache", ext.cache_hits, len(dataset.table))
    info = {
        "name": model.name,
        "metric": model.metric,
        "nominal_threshold": model.nominal_threshold,
        "nominal_threshold_source": getattr(model, "nominal_threshold_source", None),
        **({"nominal_threshold_overridden": True} if getattr(model, "nominal_threshold_overridden", False) else {}),
        "weights_sha256": model.weights_sha256,
        **weights_verification(model.weights_sha256),  # weights_verified, unverified_weights
        "settings": model.settings(),
        "licence": getattr(model, "licence", None),
        "training_data": getattr(model, "training_data", None),
        "recogniser": model.name,
        "detector": _detector_name(model),
        "cache_key": key,
        "cache_hits": ext.cache_hits,
    }
    return dataset, ext.embeddings, ext.fta_reason, ext.n_faces, info


def _calibration_scores(comp: pd.DataFrame, protocol: Protocol) -> tuple[np.ndarray, str]:
    """Non-mated scores the target-FMR thresholds are calibrated on, and their description."""
    nonmated = ~comp["mated"].to_numpy()
    if protocol.calibration_group is None:
        return comp["score"].to_numpy()[nonmated], "all non-mated comparisons"
    attr, group = protocol.calibration_group["attribute"], str(protocol.calibration_group["group"])
    if f"{attr}_a" not in comp.columns:
        raise ConfigError(f"protocol.calibration_group: attribute {attr!r} is not reported; add it to protocol.attributes")
    sel = nonmated & (comp[f"{attr}_a"].astype(str) == group).to_numpy() & (comp[f"{attr}_b"].astype(str) == group).to_numpy()
    if not sel.any():
        groups = sorted(set(comp[f"{attr}_a"].astype(str)))
        raise ConfigError(f"protocol.calibration_group: no non-mated comparisons in {attr}={group!r}; groups: {groups}")
    return comp["score"].to_numpy()[sel], f"non-mated comparisons with both subjects in {attr}={group}"


def _thresholds(model_info: dict, comp: pd.DataFrame, protocol: Protocol) -> list[dict]:
    def calibration() -> tuple[Callable[[float], ThresholdAtFMR], str]:
        scores, population = _calibration_scores(comp, protocol)
        return (lambda f: threshold_at_fmr(scores, f)), population

    return threshold_entries(model_info, protocol, calibration)


def threshold_entries(
    model_info: dict, protocol: Protocol, calibration: Callable[[], tuple[Callable[[float], ThresholdAtFMR], str]]
) -> list[dict]:
    """The run's thresholds (the ``thresholds`` list of :class:`RunResult`), whatever the engine.

    Parameters
    ----------
    model_info : dict
        Model provenance (``nominal_threshold`` and its source).
    protocol : Protocol
    calibration : callable
        Called once, only when target FMRs are calibrated on this run: returns
        ``(calibrate, population)``, where ``calibrate(target_fmr)`` applies the §0
        order-statistic rule to the calibration population (raising
        :class:`~bench.errors.InsufficientDataError` when it cannot) and
        ``population`` describes that population in words.

    Returns
    -------
    list of dict
        Nominal, external and target-FMR thresholds (refused targets with their reason).

    Raises
    ------
    DataError
        If no threshold at all could be set.
    """
    out: list[dict] = []
    if protocol.use_nominal_threshold and model_info.get("nominal_threshold") is not None:
        out.append(
            {
                "name": "nominal",
                "kind": "nominal",
                "threshold": float(model_info["nominal_threshold"]),
                "source": model_info.get("nominal_threshold_source"),
                **({"overridden": True} if model_info.get("nominal_threshold_overridden") else {}),
                "status": "ok",
                "bootstrap": "fixed",
            }
        )
    if protocol.external_thresholds:
        for name, value in protocol.external_thresholds.items():
            out.append({"name": str(name), "kind": "external", "threshold": float(value), "status": "ok", "bootstrap": "fixed",
                        "calibration": "external calibration run (given in protocol.external_thresholds)"})
        return out
    calibrate, population = calibration()
    for f in protocol.target_fmrs:
        name = fmr_threshold_name(float(f))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t = calibrate(float(f))
            entry = {
                "name": name,
                "kind": "target_fmr",
                "calibration": population,
                "status": "ok",
                "threshold": t.threshold,
                "target_fmr": t.target_fmr,
                "achieved_fmr": t.achieved_fmr,
                "k": t.k,
                "n_nonmated": t.n_nonmated,
                "support": t.support,
                # §5.4: re-calibrated inside each replicate when calibrated on the same data
                "bootstrap": "recalibrated" if protocol.calibration_group is None else "fixed",
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
                row.update(eer=e.eer, threshold=e.threshold, eer_low=e.low, eer_high=e.high, eer_crossing=e.crossing)
                dets[(attr, g)] = det_curve(m, nm)
            else:
                row.update(eer=np.nan, threshold=np.nan, eer_low=np.nan, eer_high=np.nan, eer_crossing=np.nan)
            rows.append(row)
    return pd.DataFrame(rows), dets


_PARITY = {"max_vs_min_group_difference": 0.0, "max_min_difference": 0.0, "gini": 0.0, "garbe": 0.0, "max_min_ratio": 1.0, "max_geomean_ratio": 1.0,
           "inequity_rate": 1.0, "inequity_rate_geomean": 1.0, "fdr": 1.0, "max_ratio_to_reference": 1.0}


def _differentials(rates: pd.DataFrame, attr: str, thresholds: dict[str, float], protocol: Protocol, reps: Any) -> pd.DataFrame:
    """Tidy differential measures (metrics-reference §4) with bootstrap intervals (§5.4)."""
    rows = []
    reference = protocol.reference_groups.get(attr)
    for name in thresholds:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summ = differential_summary(rates, "both", name, alpha=protocol.differential_alpha, zero_rule=protocol.zero_rule, reference=reference)
        notes = sorted({str(w.message) for w in caught})
        for metric in ("FMR", "FNMR"):
            part = summ[metric]
            for measure in ("max_min_difference", "max_min_ratio", "max_geomean_ratio", "gini", "max_ratio_to_reference"):
                if measure in part:
                    rows.append({"attribute": attr, "threshold_name": name, "measure": f"{metric}_{measure}", "value": part[measure],
                                 "groups": ";".join(part["groups"]), "max_group": part.get("max_group"), "min_group": part.get("min_group"),
                                 "reason": part.get("reasons", {}).get(measure, "")})
        for measure in ("fdr", "inequity_rate", "inequity_rate_geomean", "garbe"):
            rows.append({"attribute": attr, "threshold_name": name, "measure": measure, "value": summ[measure],
                         "groups": ";".join(summ["FMR"]["groups"]), "max_group": None, "min_group": None,
                         "reason": summ.get("reasons", {}).get(measure, "")})
        for r in rows:
            if r["threshold_name"] == name:
                r["alpha"] = summ["alpha"]
                r["zero_rule"] = protocol.zero_rule or "none"
                r["excluded_groups"] = ";".join(summ["excluded_groups"])
                r["warnings"] = " | ".join(notes)
    out = pd.DataFrame(rows)
    if reps is not None and len(out):
        boot = bootstrap_differentials(None, attribute=attr, thresholds=thresholds, confidence=protocol.confidence,
                                       alpha=protocol.differential_alpha, zero_rule=protocol.zero_rule, replicates=reps)
        out = out.merge(boot.drop(columns=["attribute"]), on=["threshold_name", "measure"], how="left")
    if len(out):
        out = pd.concat([out, _extreme_group_tests(out, attr, reps, protocol.confidence)], ignore_index=True)
    out["parity_value"] = [_PARITY.get(m.split("_", 1)[1] if m.startswith(("FMR_", "FNMR_")) else m) for m in out["measure"]]
    return out


def per_group_threshold_analysis(comp: pd.DataFrame, attributes: list[str], target_fmrs: list[float]) -> pd.DataFrame:
    """Mitigation analysis: every group at its own threshold for each target FMR.

    NOT an operating-point measurement: a system can only apply per-group thresholds
    if it knows each person's group at decision time, which may be unlawful or
    unacceptable (metrics-reference §7). It shows what equalising FMR across groups
    would cost in FNMR, beside the global threshold's numbers.

    For each attribute, group and target ``f``: the threshold set by the §0 rule on the
    group's own non-mated comparisons (both subjects in the group), its achieved FMR
    and the group's FNMR there. Targets the group's non-mated count cannot resolve are
    reported as refused.

    Parameters
    ----------
    comp : pandas.DataFrame
        Comparison table.
    attributes : list of str
    target_fmrs : list of float

    Returns
    -------
    pandas.DataFrame
        Columns ``analysis`` (always ``"mitigation: per-group thresholds"``),
        ``attribute, group, target_fmr, status, threshold, achieved_fmr, k, n_nonmated,
        support, false_non_matches, n_mated, fnmr``.
    """
    rows = []
    mated = comp["mated"].to_numpy()
    score = comp["score"].to_numpy()
    for attr in attributes:
        la = comp[f"{attr}_a"].astype(str).to_numpy()
        lb = comp[f"{attr}_b"].astype(str).to_numpy()
        for g in sorted(set(la.tolist()) | set(lb.tolist())):
            sel = (la == g) & (lb == g)
            m, nm = score[sel & mated], score[sel & ~mated]
            for f in target_fmrs:
                row = {"analysis": "mitigation: per-group thresholds", "attribute": attr, "group": g, "target_fmr": float(f),
                       "n_nonmated": int(nm.size), "n_mated": int(m.size)}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # support is recorded in the row
                        t = threshold_at_fmr(nm, float(f)) if nm.size else None
                except InsufficientDataError as err:
                    t, row["reason"] = None, str(err)
                if t is None:
                    row.update(status="refused", threshold=np.nan, achieved_fmr=np.nan, k=np.nan, support="",
                               false_non_matches=np.nan, fnmr=np.nan)
                    row.setdefault("reason", "no non-mated comparisons in the group")
                else:
                    fnm = int(np.count_nonzero(m < t.threshold))
                    row.update(status="ok", threshold=t.threshold, achieved_fmr=t.achieved_fmr, k=t.k, support=t.support,
                               false_non_matches=fnm, fnmr=fnm / m.size if m.size else np.nan, reason="")
                rows.append(row)
    return pd.DataFrame(rows)


def _extreme_group_tests(diff: pd.DataFrame, attr: str, reps: Any, confidence: float) -> pd.DataFrame:
    """Is the worst group really worse than the best? Bootstrap of their difference, groups held fixed.

    Max-type statistics (max/min, max-min, Gini) are biased upward under sampling noise
    and their percentile intervals almost never include parity, even when the groups do
    not differ (metrics-reference §5.4). Here the two groups named by the point estimate
    (``max_group``, ``min_group``) are held fixed and the subject-level bootstrap
    distribution of ``rate(max_group) - rate(min_group)`` is read off the same replicates:
    an interval that includes 0 means the data do not show that these groups differ.
    """
    rows = []
    for _, r in diff[diff["measure"].isin(["FMR_max_min_difference", "FNMR_max_min_difference"])].iterrows():
        metric = r["measure"].split("_", 1)[0]
        gmax, gmin = r.get("max_group"), r.get("min_group")
        if not isinstance(gmax, str) or not isinstance(gmin, str) or gmax == gmin:
            continue
        if reps is None:  # no bootstrap: the point value only
            d, n_all = np.empty(0), 0
        else:
            rates = reps.rates(r["threshold_name"], metric)
            d = rates[:, reps.groups.index(gmax)] - rates[:, reps.groups.index(gmin)]
            n_all = rates.shape[0]
            d = d[np.isfinite(d)]
        lo, hi = (np.quantile(d, [(1 - confidence) / 2, (1 + confidence) / 2]) if d.size else (np.nan, np.nan))
        row = {
            "attribute": attr, "threshold_name": r["threshold_name"], "measure": f"{metric}_max_vs_min_group_difference",
            "value": r["value"], "groups": f"{gmax};{gmin}", "max_group": gmax, "min_group": gmin,
            "alpha": r.get("alpha"), "zero_rule": r.get("zero_rule"), "excluded_groups": r.get("excluded_groups"),
            "warnings": "groups held fixed at the point estimate's max and min; interval including 0: no evidence they differ",
        }
        if reps is not None:
            row.update(boot_low=float(lo), boot_high=float(hi), n_replicates=int(d.size),
                       n_undefined=int(n_all - d.size), includes_parity=bool(d.size and lo <= 0 <= hi))
        rows.append(row)
    return pd.DataFrame(rows)


def _choose_engine(subject_ids: np.ndarray, protocol: Protocol) -> dict:
    """``protocol.engine`` resolved for this run: ``{engine, selected_by, comparisons, table_max_comparisons}``.

    ``subject_ids`` (n_acquired,) gives the comparison count without pairing anything:
    all ``n(n-1)/2`` pairs, or the mated ones plus the ``max_nonmated`` sample.
    """
    n = subject_ids.size
    _, per_subject = np.unique(subject_ids, return_counts=True)
    n_mated = int((per_subject * (per_subject - 1) // 2).sum())
    n_nonmated = n * (n - 1) // 2 - n_mated
    if protocol.max_nonmated is not None:
        n_nonmated = min(n_nonmated, int(protocol.max_nonmated))
    total = n_mated + n_nonmated
    if protocol.engine == "auto":
        engine, why = ("table", "auto") if total <= protocol.table_max_comparisons else ("stream", "auto")
    else:
        engine, why = protocol.engine, "protocol.engine"
    if engine == "stream" and protocol.per_group_thresholds:
        raise ConfigError(
            "protocol.per_group_thresholds (mitigation analysis) needs the table engine; set engine: table "
            f"(this run has {total:,} comparisons)"
        )
    if engine == "stream" and protocol.max_nonmated is not None:
        raise ConfigError(
            f"protocol.max_nonmated={protocol.max_nonmated}: the streaming engine scores every pair and does not sample; "
            f"set max_nonmated: null, or engine: table (this run has {total:,} comparisons; "
            f"table_max_comparisons={protocol.table_max_comparisons:,})"
        )
    return {"engine": engine, "selected_by": why, "comparisons": total, "table_max_comparisons": protocol.table_max_comparisons}


def evaluate(dataset: Any, model: Any, protocol: Protocol, *, cache_dir: str | Path, progress: bool = True,
             min_group_subjects: int = 1) -> RunResult:
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
    min_group_subjects : int
        Subjects of groups smaller than this (in any reported attribute) are left
        out of every computed number (:func:`bench.metrics.groups.withhold_small_groups`);
        the CLI passes ``report.min_group_subjects``. 1 keeps everyone.

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
    full = manifest
    keep, withheld = withhold_small_groups(manifest.table["subject_id"], labels, min_group_subjects)
    if not keep.all():  # the published population: withheld subjects enter no number below
        manifest = dataclasses.replace(manifest, table=manifest.table[keep].reset_index(drop=True), check_files=False)
        labels = labels[keep].reset_index(drop=True)
        emb, fta_reason = emb[keep], np.asarray(fta_reason, dtype=object)[keep]
        n_faces = None if n_faces is None else np.asarray(n_faces)[keep]
    result = _evaluate_population(manifest, emb, fta_reason, n_faces, model_info, attributes, labels, protocol, timings, progress)
    result.withheld = withheld
    # the dataset as given (inputs, not results): counts and hash of the whole manifest
    result.dataset_info.update({**full.summary(), "manifest_sha256": full.content_hash(),
                                "subjects_published": int(manifest.table["subject_id"].nunique()),
                                "images_published": int(len(manifest.table)), "withheld": withheld})
    return result


def _evaluate_population(manifest: Manifest, emb: np.ndarray, fta_reason: np.ndarray, n_faces: np.ndarray | None, model_info: dict,
                         attributes: list[str], labels: pd.DataFrame, protocol: Protocol, timings: dict,
                         progress: bool = False) -> RunResult:
    """:func:`evaluate` on the published population (acquisition done)."""
    ok = np.array([r is None for r in fta_reason], dtype=bool)
    if protocol.bootstrap_replicates:  # replicate counts per subject and attribute cells (bench.metrics.bootstrap)
        n_subj = int(manifest.table["subject_id"].nunique())
        check_memory(f"protocol.bootstrap_replicates={protocol.bootstrap_replicates:,} over {n_subj:,} subjects",
                     24.0 * protocol.bootstrap_replicates * n_subj, "lower protocol.bootstrap_replicates (1000 is usual)")
    if ok.sum() < 2:
        raise DataError(f"dataset {manifest.name!r}: only {int(ok.sum())} image(s) acquired; no comparison is possible")

    engine_info = _choose_engine(manifest.table["subject_id"][ok].astype(str).to_numpy(), protocol)
    captures = capture_ids_of(manifest.table[ok])  # issue #14: frames of one video are never a mated pair
    if captures is not None and engine_info["engine"] == "stream":
        raise ConfigError(f"dataset {manifest.name!r} has several images per capture (capture_id: frames of one video); the streaming "
                          "engine cannot leave out their mated pairs: set protocol.engine=table or dataset.frames_per_video=1")
    if engine_info["engine"] == "stream":
        from bench.run_streaming import evaluate_streamed  # torch only when streaming

        return evaluate_streamed(manifest, emb, fta_reason, n_faces, model_info, attributes, labels, protocol,
                                 engine_info=engine_info, timings=timings)

    t1 = time.perf_counter()
    table = manifest.table[ok].reset_index(drop=True)
    lab_ok = labels[ok].reset_index(drop=True)
    idx_a, idx_b, mated = all_pairs(table["subject_id"].astype(str).to_numpy(), max_nonmated=protocol.max_nonmated, seed=protocol.seed,
                                    capture_ids=captures)
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
    thresholds = _thresholds(model_info, comp, protocol)
    usable = {t["name"]: t["threshold"] for t in thresholds if t["status"] == "ok"}
    recalibrate = {t["name"]: t["target_fmr"] for t in thresholds if t["status"] == "ok" and t.get("bootstrap") == "recalibrated"}
    parts, gen_parts, diff_parts, boot_notes = [], [], [], []
    overall = None  # the (all) interval: one bootstrap per run, not one per attribute
    if protocol.bootstrap_replicates:
        overall = bootstrap_overall_rates(comp, thresholds=usable, n_replicates=int(protocol.bootstrap_replicates),
                                          seed=protocol.seed, confidence=protocol.confidence, recalibrate=recalibrate or None)
    from tqdm.auto import tqdm

    what = f"rates + bootstrap ({int(protocol.bootstrap_replicates)} replicates) per attribute" if protocol.bootstrap_replicates else "rates per attribute"
    for attr in tqdm(attributes, desc=what, unit="attr", disable=not progress):
        fta = fta_by_group(labels[attr], manifest.table["subject_id"], fta_reason, attribute=attr, confidence=protocol.confidence)
        rates = per_group_rates(comp, attribute=attr, thresholds=usable, confidence=protocol.confidence)
        reps = None
        if protocol.bootstrap_replicates:
            reps = bootstrap_replicates(
                comp, attribute=attr, thresholds=usable, n_replicates=int(protocol.bootstrap_replicates),
                seed=protocol.seed, recalibrate=recalibrate or None,
            )
            boot = bootstrap_group_rates(None, attribute=attr, thresholds=usable, confidence=protocol.confidence, replicates=reps)
            boot = with_overall_rows(boot, overall)
            rates = rates.merge(boot, on=["attribute", "group", "threshold_name", "metric"], how="left")
        pg_attr = pd.concat([fta, rates], ignore_index=True)
        parts.append(pg_attr)
        gen_parts.append(generalized_rates(pg_attr, labels[attr], manifest.table["subject_id"], ok, attribute=attr))
        diff_parts.append(_differentials(rates, attr, usable, protocol, reps))
    per_group = pd.concat(parts, ignore_index=True)
    per_group["reasons"] = per_group["reasons"].fillna("")
    generalized = pd.concat(gen_parts, ignore_index=True)
    differentials = pd.concat(diff_parts, ignore_index=True)
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
        generalized=generalized,
        differentials=differentials,
        eer=eer,
        det=dets,
        cross=cross,
        model_info=model_info,
        dataset_info=dataset_info,
        protocol=protocol,
        timings=timings,
        engine_info=engine_info,
        mitigation=per_group_threshold_analysis(comp, attributes, protocol.target_fmrs) if protocol.per_group_thresholds else None,
    )


#: Shared by the protocols (verification here, identification in :mod:`bench.identification_run`):
#: manifest -> acquisition -> embeddings, and the reported attributes.
acquire_embeddings = _acquire
reported_attributes = _reported_attributes
