"""The verification (1:1) protocol: what every number of a run means, and how comparisons
are formed from embeddings and labels into a score store.

* :class:`Protocol` -- the ``protocol`` config (targets, policies, engine, bootstrap).
* :func:`reported_attributes` -- attributes and intersections reported.
* :func:`choose_engine` / :func:`score_into_store` -- ``protocol.engine`` resolved, and the
  comparisons scored into :class:`bench.scores.table.TableStore` (every mated pair and the
  (sampled) non-mated pairs, :mod:`bench.protocol.pairs`) or
  :class:`bench.scores.stream.HistogramStore` (all pairs, blocked,
  :mod:`bench.protocol.streaming`). ``protocol.engine`` only chooses the store.
* :func:`threshold_entries` -- the run's thresholds (nominal, external, target FMR by the
  §0 rule on the store's calibration population).
* :class:`RunResult` -- everything a run computed (read by the report and the verifier).

The identification (1:N) protocol sits beside it in :mod:`bench.protocol.identification`.
The orchestration that reads the store is :func:`bench.run.evaluate`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from numbers import Real
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from bench.data.manifest import INTERSECTION_SEPARATOR, Manifest
from bench.errors import ConfigError, DataError, InsufficientDataError, ScoreSanityWarning
from bench.limits import MAX_BOOTSTRAP_REPLICATES, check_int, check_seed
from bench.metrics.rates import ThresholdAtFMR, score_sanity_check
from bench.protocol.pairs import all_pairs, capture_ids_of, comparison_table
from bench.protocol.scoring import pair_scores, similarity_matrix
from bench.scores import stream
from bench.scores.store import ScoreStore
from bench.scores.stream import (
    STREAM_BINS, STREAM_BLOCK, HistogramStore, ScoreHistogram, StreamedScores, SubjectAggregates, hist_mean, joint_groups,
    score_range, triu_cells,
)
from bench.scores.table import TableStore

__all__ = [
    "ENGINES", "Protocol", "RunResult", "fmr_threshold_name", "primary_threshold", "reported_attributes", "threshold_entries",
    "choose_engine", "score_into_store", "table_store", "histogram_store",
]

log = logging.getLogger(__name__)

#: Largest number of acquired images whose full similarity matrix is formed (<= 3.2 GB float64).
_FULL_MATRIX_MAX = 20_000

#: Values of ``protocol.engine``.
ENGINES = ("auto", "table", "stream")

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
    pair_list : str or list of str or None
        Pair-list protocol (docs/protocol.md §10): compare exactly the pairs listed in
        this file (or files): fvbench ``pairs.csv.gz``, RFW ``<Race>_pairs.txt`` or a BFW
        datatable (:mod:`bench.protocol.pair_list`). None: all pairs.
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
    pair_list: str | list[str] | None = None  # pair-list protocol (bench/protocol/pair_list.py): the comparisons of FILE(s)

    def __post_init__(self) -> None:
        if self.pair_list is not None:  # pair-list protocol: bench/protocol/pair_list.py
            from bench.protocol.pair_list import check_protocol_pair_list

            object.__setattr__(self, "pair_list", check_protocol_pair_list(self.pair_list, self.engine, self.max_nonmated))
        if self.engine not in ENGINES:
            raise ConfigError(f"protocol.engine must be one of {list(ENGINES)}, got {self.engine!r}")
        object.__setattr__(self, "table_max_comparisons", check_int(  # 1e400 (inf) or NaN refused, not int(inf)
            "protocol.table_max_comparisons", self.table_max_comparisons, 0, None, "a non-negative count of comparisons"))
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
        b = self.bootstrap_replicates  # compared as given: int(1e400) would raise OverflowError
        if isinstance(b, Real) and not isinstance(b, bool) and b < 1:
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
    pairs: Any = None  # the run's pair design over manifest rows (bench.protocol.pair_list.PairDesign); table runs
    scenario: dict | None = None  # issue #14: metrics.json "scenario" (bench.protocol.scenario.ScenarioOutcome.info)

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


def reported_attributes(manifest: Manifest, protocol: Protocol) -> list[str]:
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


def choose_engine(subject_ids: np.ndarray, protocol: Protocol) -> dict:
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



# ----------------------------------------------------------------------------- filling a store
def table_store(manifest: Manifest, emb: np.ndarray, acquired: np.ndarray, labels: pd.DataFrame,
                attributes: list[str], metric: str, *, max_nonmated: int | None, seed: int, pairs: Any = None) -> TableStore:
    """The table store: every mated pair and the (sampled) non-mated pairs of the acquired images, scored.

    Parameters
    ----------
    manifest : Manifest
        All images (failures to acquire included).
    emb : numpy.ndarray
        Shape (n_images, d).
    acquired : numpy.ndarray
        Shape (n_images,) bool: images whose embedding exists.
    labels : pandas.DataFrame
        Shape (n_images, n_attributes).
    attributes : list of str
    metric : {"cosine", "euclidean"}
    max_nonmated, seed : as ``protocol.max_nonmated`` / ``protocol.seed``.
    pairs : bench.protocol.pair_list.ResolvedPairs, optional
        Pair-list protocol: exactly these pairs (rows of ``manifest``) instead of all pairs.
        The design either way is kept on the store (``store.pairs``) and written as the
        run's pair list.

    Raises
    ------
    DataError
        When there is no non-mated comparison.
    """
    table = manifest.table[acquired].reset_index(drop=True)
    lab_ok = labels[acquired].reset_index(drop=True)
    from bench.protocol.pair_list import PairDesign  # the design written as the run's pair list (pairs.csv.gz)

    if pairs is None:  # issue #14: frames of one video are never a mated pair (capture_ids_of)
        idx_a, idx_b, mated = all_pairs(table["subject_id"].astype(str).to_numpy(), max_nonmated=max_nonmated, seed=seed,
                                        capture_ids=capture_ids_of(table))
        design = PairDesign.all_pairs(manifest.table["subject_id"].astype(str).to_numpy(), acquired, max_nonmated, seed,
                                      capture_ids=capture_ids_of(manifest.table))
    else:
        design = PairDesign.from_list(pairs)
        idx_a, idx_b, mated = design.acquired(acquired)
    if acquired.sum() <= _FULL_MATRIX_MAX:
        scores = similarity_matrix(emb[acquired], metric)[idx_a, idx_b]
    else:
        scores = pair_scores(emb[acquired], idx_a, idx_b, metric)
    comp = comparison_table(table, lab_ok, idx_a, idx_b, mated, scores)
    if not (~mated).any():
        raise DataError(f"dataset {manifest.name!r}: no non-mated comparisons (only one subject acquired)")
    if mated.any():
        score_sanity_check(scores[mated], scores[~mated])
    store = TableStore(comp, attributes)
    store.pairs = design
    return store



def histogram_store(manifest: Manifest, emb: np.ndarray, acquired: np.ndarray, labels: pd.DataFrame,
                    attributes: list[str], model_info: dict, protocol: Protocol, *, n_bins: int = STREAM_BINS,
                    block_size: int = STREAM_BLOCK) -> HistogramStore:
    """The histogram store: every unordered pair of acquired images scored once, in blocks, into it
    (:mod:`bench.scores.stream`).

    Parameters
    ----------
    manifest : Manifest
        The dataset's images (all of them, failures to acquire included).
    emb : numpy.ndarray
        Shape (n_images, d): embeddings (rows of failed images are ignored).
    acquired : numpy.ndarray
        Shape (n_images,) bool.
    labels : pandas.DataFrame
        Shape (n_images, n_attributes): group label per image.
    attributes : list of str
        Reported attributes (intersections included).
    model_info : dict
        Model provenance (``metric``, ``nominal_threshold``, ...).
    protocol : Protocol
        Read: ``target_fmrs`` (tail size), ``use_nominal_threshold`` and
        ``external_thresholds`` (extra bin edges), ``bootstrap_replicates``.
    n_bins : int, default 65536
        Requested uniform histogram bins (bin width ``2**-15`` for cosine).
    block_size : int, default 4096
        Rows/columns per scored block.

    Raises
    ------
    ConfigError
        Bootstrap requested while a subject's labels vary between images.
    DataError
        No non-mated comparison.
    """
    from bench.protocol.streaming import score_all_vs_all  # torch (only when streaming)

    ok = acquired
    subj_str = manifest.table["subject_id"][ok].astype(str).to_numpy(dtype=object)
    lab_ok = labels[ok].reset_index(drop=True)
    subject_ids, subj_code = np.unique(subj_str, return_inverse=True)
    subj_code = subj_code.reshape(-1).astype(np.int64)
    S, n = subject_ids.size, subj_code.size
    joint, img_group = joint_groups(lab_ok, attributes)
    G = len(joint)
    pairs = np.unique(subj_code * G + img_group)
    per_subject_labels = pairs.size == S
    subject_group = np.zeros(S, dtype=np.intp)
    subject_group[pairs // G] = pairs % G
    m = np.bincount(subj_code, minlength=S).astype(np.int64)
    n_mated = int((m * (m - 1) // 2).sum())
    n_nonmated = n * (n - 1) // 2 - n_mated
    if n_nonmated == 0:
        raise DataError(f"dataset {manifest.name!r}: no non-mated comparisons (only one subject acquired)")
    if protocol.bootstrap_replicates and not per_subject_labels:
        raise ConfigError(
            f"dataset {manifest.name!r}: the labels of some subjects differ between their images (attributes {attributes}); "
            "the streaming engine's subject bootstrap needs one group per subject: set protocol.bootstrap_replicates: null, "
            "or protocol.engine: table"
        )

    fixed_values = []
    if protocol.use_nominal_threshold and model_info.get("nominal_threshold") is not None:
        fixed_values.append(float(model_info["nominal_threshold"]))
    fixed_values += [float(v) for v in (protocol.external_thresholds or {}).values()]
    a_cell, b_cell, cell_index = triu_cells(G)
    lo, hi = score_range(emb[ok], model_info["metric"])
    hist = ScoreHistogram(a_cell.size, lo=lo, hi=hi, n_bins=int(n_bins), extra_edges=fixed_values,
                          cell_labels=[(joint[i], joint[j]) for i, j in zip(a_cell, b_cell)],
                          keep_scores_limit=stream.KEEP_SCORES_LIMIT, threads=max(1, min(4, os.cpu_count() or 1)))
    f_max = max((float(f) for f in protocol.target_fmrs), default=0.0)
    tail_size = int(min(stream.TAIL_MAX, stream.TAIL_MIN + math.ceil(stream.TAIL_FACTOR * f_max * n_nonmated)))
    agg = SubjectAggregates(subject_group, m, group_labels=joint, tail_size=tail_size) if per_subject_labels else None
    x = emb[ok].astype(np.float64)
    if model_info["metric"] == "cosine":  # as bench.protocol.scoring.pair_scores
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    stats = score_all_vs_all(x.astype(np.float32), subj_code, img_group, hist, metric=model_info["metric"],
                             aggregates=agg, cell_map=cell_index, block_size=int(block_size))
    if stats.n_mated != n_mated or stats.n_nonmated != n_nonmated:  # pragma: no cover - engine invariant
        raise DataError(f"streaming engine scored {stats.n_mated}/{stats.n_nonmated} comparisons, expected {n_mated}/{n_nonmated}")
    if n_mated:
        m_mean, nm_mean = hist_mean(hist, True), hist_mean(hist, False)
        if m_mean <= nm_mean:
            warnings.warn(f"mean mated score {m_mean:.6g} <= mean non-mated score {nm_mean:.6g} (from the histogram): the scores "
                          "look like distances or the mated labels are wrong; fvbench expects similarities", ScoreSanityWarning,
                          stacklevel=2)
    scoring = {"comparisons": stats.n_comparisons, "blocks": stats.n_blocks, "block_size": int(block_size), "device": stats.device}
    return HistogramStore(StreamedScores(hist, list(attributes), joint), agg, subject_ids=subject_ids, subject_group=subject_group,
               images_per_subject=m, subject_code=subj_code, image_labels=lab_ok, n_mated=n_mated, n_nonmated=n_nonmated,
               scoring=scoring)



def score_into_store(manifest: Manifest, emb: np.ndarray, ok: np.ndarray, labels: pd.DataFrame, attributes: list[str],
                  model_info: dict, protocol: Protocol, engine: str, stream_options: dict, pairs: Any = None) -> ScoreStore:
    """Score the acquired images into the store ``engine`` names (the only engine-dependent step).

    ``engine`` ``"stream"``: :func:`histogram_store` (``stream_options``: its ``n_bins``,
    ``block_size``); ``"table"``: :func:`table_store`. Errors as theirs.
    """
    if engine == "stream" and capture_ids_of(manifest.table[ok]) is not None:  # issue #14
        raise ConfigError(f"dataset {manifest.name!r} has several images per capture (capture_id: frames of one video); the streaming "
                          "engine cannot leave out their mated pairs: set protocol.engine=table or dataset.frames_per_video=1")
    if engine == "stream":
        return histogram_store(manifest, emb, ok, labels, attributes, model_info, protocol, **stream_options)
    return table_store(manifest, emb, ok, labels, attributes, model_info["metric"], max_nonmated=protocol.max_nonmated,
                       seed=protocol.seed, pairs=pairs)


