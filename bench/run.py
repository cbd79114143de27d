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
from bench.metrics.bootstrap import bootstrap_group_rates, with_overall_rows
from bench.metrics.differentials_table import differentials_table
from bench.metrics.fta import fta_by_group, generalized_rates
from bench.metrics.groups import withhold_small_groups
from bench.metrics.rates import ThresholdAtFMR
from bench.models.cache import EmbeddingCache, model_cache_key
from bench.models.extraction import extract_embeddings
from bench.models.weights import weights_verification
from bench.scores.store import ScoreStore
from bench.scores.table import TableStore, per_group_threshold_analysis

__all__ = [
    "ENGINES", "Protocol", "RunResult", "evaluate", "fmr_threshold_name", "per_group_threshold_analysis",
    "primary_threshold", "threshold_entries", "acquire_embeddings", "reported_attributes", "evaluate_acquired",
    "differentials_table",
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
        (:class:`bench.scores.stream.HistogramStore`; memory independent of the number of
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
    stream : bench.scores.stream.StreamedScores or None
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
    result = evaluate_acquired(manifest, emb, fta_reason, n_faces, model_info, attributes, labels, protocol, timings=timings,
                               progress=progress)
    result.withheld = withheld
    # the dataset as given (inputs, not results): counts and hash of the whole manifest
    result.dataset_info.update({**full.summary(), "manifest_sha256": full.content_hash(),
                                "subjects_published": int(manifest.table["subject_id"].nunique()),
                                "images_published": int(len(manifest.table)), "withheld": withheld})
    return result


def _choose_store(manifest: Manifest, emb: np.ndarray, ok: np.ndarray, labels: pd.DataFrame, attributes: list[str],
                  model_info: dict, protocol: Protocol, engine: str, stream_options: dict) -> ScoreStore:
    """Score the acquired images into the store ``engine`` names (the only engine-dependent step)."""
    if engine == "stream":
        from bench.scores.stream import HistogramStore  # torch only when streaming

        return HistogramStore.from_embeddings(manifest, emb, ok, labels, attributes, model_info, protocol, **stream_options)
    return TableStore.from_embeddings(manifest, emb, ok, labels, attributes, model_info["metric"],
                                      max_nonmated=protocol.max_nonmated, seed=protocol.seed)


def evaluate_acquired(manifest: Manifest, emb: np.ndarray, fta_reason: np.ndarray, n_faces: np.ndarray | None, model_info: dict,
                      attributes: list[str], labels: pd.DataFrame, protocol: Protocol, *, timings: dict | None = None,
                      progress: bool = False, engine: str | None = None, stream_options: dict | None = None) -> RunResult:
    """:func:`evaluate` after acquisition: score into a store, then read every number from it.

    Parameters
    ----------
    manifest : Manifest
        The published population's images (failures to acquire included).
    emb : numpy.ndarray
        Shape (n_images, d); rows of failed images are ignored.
    fta_reason : numpy.ndarray
        Shape (n_images,): None where acquired, else the reason code.
    n_faces : numpy.ndarray or None
        Shape (n_images,), faces found (None for synthetic data).
    model_info : dict
        Model provenance (``metric``, ``nominal_threshold``, ...).
    attributes : list of str
        Reported attributes (intersections included).
    labels : pandas.DataFrame
        Shape (n_images, n_attributes).
    protocol : Protocol
    timings : dict, optional
        Stage timings so far; completed here.
    progress : bool
        Show a progress bar over attributes.
    engine : {"table", "stream"}, optional
        Force a store (default: ``protocol.engine`` resolved by :func:`_choose_engine`).
    stream_options : dict, optional
        ``n_bins`` / ``block_size`` of :meth:`bench.scores.stream.HistogramStore.from_embeddings`.

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError, DataError
        As :func:`evaluate`.
    """
    timings = {} if timings is None else timings
    ok = np.array([r is None for r in fta_reason], dtype=bool)
    if protocol.bootstrap_replicates:  # replicate counts per subject and attribute cells (bench.metrics.bootstrap)
        n_subj = int(manifest.table["subject_id"].nunique())
        check_memory(f"protocol.bootstrap_replicates={protocol.bootstrap_replicates:,} over {n_subj:,} subjects",
                     24.0 * protocol.bootstrap_replicates * n_subj, "lower protocol.bootstrap_replicates (1000 is usual)")
    if ok.sum() < 2:
        raise DataError(f"dataset {manifest.name!r}: only {int(ok.sum())} image(s) acquired; no comparison is possible")

    engine_info = ({"engine": engine, "selected_by": "caller"} if engine is not None
                   else _choose_engine(manifest.table["subject_id"][ok].astype(str).to_numpy(), protocol))
    t1 = time.perf_counter()
    store = _choose_store(manifest, emb, ok, labels, attributes, model_info, protocol, engine_info["engine"], stream_options or {})
    timings["score_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    thresholds = threshold_entries(model_info, protocol, lambda: store.calibration(protocol.calibration_group))
    store.settle_thresholds(thresholds, bool(protocol.bootstrap_replicates))
    usable = {t["name"]: t["threshold"] for t in thresholds if t["status"] == "ok"}
    recalibrate = {t["name"]: t["target_fmr"] for t in thresholds if t["status"] == "ok" and t.get("bootstrap") == "recalibrated"}
    n_reps = int(protocol.bootstrap_replicates) if protocol.bootstrap_replicates else 0
    parts, gen_parts, diff_parts = [], [], []
    boot_s = 0.0
    overall = None  # the (all) interval: one bootstrap per run, not one per attribute
    if n_reps:
        tb = time.perf_counter()
        overall = store.bootstrap_overall(usable, recalibrate, n_reps, protocol.seed, protocol.confidence)
        boot_s += time.perf_counter() - tb
    from tqdm.auto import tqdm

    what = f"rates + bootstrap ({n_reps} replicates) per attribute" if n_reps else "rates per attribute"
    for attr in tqdm(attributes, desc=what, unit="attr", disable=not progress):
        fta = fta_by_group(labels[attr], manifest.table["subject_id"], fta_reason, attribute=attr, confidence=protocol.confidence)
        rates = store.group_rates(attr, usable, protocol.confidence)
        reps = None
        if n_reps:
            tb = time.perf_counter()
            reps = store.bootstrap(attr, usable, recalibrate, n_reps, protocol.seed)
            if reps is not None:
                boot = bootstrap_group_rates(None, attribute=attr, thresholds=usable, confidence=protocol.confidence, replicates=reps)
                boot = with_overall_rows(boot, overall)
                rates = rates.merge(boot, on=["attribute", "group", "threshold_name", "metric"], how="left")
            boot_s += time.perf_counter() - tb
        pg_attr = pd.concat([fta, rates], ignore_index=True)
        parts.append(pg_attr)
        gen_parts.append(generalized_rates(pg_attr, labels[attr], manifest.table["subject_id"], ok, attribute=attr))
        diff_parts.append(differentials_table(rates, attr, usable, protocol, reps))
    per_group = pd.concat(parts, ignore_index=True)
    per_group["reasons"] = per_group["reasons"].fillna("")
    generalized = pd.concat(gen_parts, ignore_index=True)
    differentials = pd.concat(diff_parts, ignore_index=True)
    eer, dets = store.eer_det()
    primary = primary_threshold(thresholds)
    cross = {a: store.cross_group(a, primary["name"], primary["threshold"]) for a in attributes}
    if store.engine == "stream":
        timings["bootstrap_s"] = boot_s
    timings["metrics_s"] = time.perf_counter() - t2

    dataset_info = {
        **manifest.summary(),
        "manifest_sha256": manifest.content_hash(),
        "images_acquired": int(ok.sum()),
        "mated_comparisons": store.n_mated,
        "nonmated_comparisons": store.n_nonmated,
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
        engine_info=store.engine_info(engine_info),
        mitigation=store.mitigation(protocol.target_fmrs) if protocol.per_group_thresholds else None,
        **store.result_fields,
    )


#: Shared by the protocols (verification here, identification in :mod:`bench.identification_run`):
#: manifest -> acquisition -> embeddings, and the reported attributes.
acquire_embeddings = _acquire
reported_attributes = _reported_attributes
