"""The score-store interface: what the one orchestration (:mod:`bench.run`) and the
metrics read from a run's scores, whichever store kept them.

Implemented by :class:`bench.scores.table.TableStore` (every score kept) and
:class:`bench.scores.stream.HistogramStore` (streamed histograms, exact tail, subject
aggregates). ``protocol.engine`` only chooses the store.

What is written once, against this interface (in :mod:`bench.run`): the threshold
entries (nominal, external, target FMR with their §0 support and refusals), the
per-attribute loop (FTA, rates, bootstrap intervals merged with the run's ``(all)``
interval, generalized rates), differentials and their bootstrap intervals
(:mod:`bench.metrics.differentials`, :func:`bench.metrics.bootstrap_differentials.bootstrap_differentials`,
both reading :class:`~bench.metrics.bootstrap.BootstrapReplicates` whichever store drew
them), the extreme-group tests, and the result's assembly.

What each store still computes its own way behind the interface (the read-outs differ
by nature: a row scan of the table versus pooled cell counts of the histograms): the
calibration order statistic, counts at a threshold per group, the cross-group matrix,
EER/DET and the subject-bootstrap draws (the stream store reproduces the table store's
draws exactly; tests/test_run_streaming.py checks it).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import pandas as pd

from bench.metrics.bootstrap import BootstrapReplicates
from bench.metrics.rates import ThresholdAtFMR

__all__ = ["ScoreStore"]


@runtime_checkable
class ScoreStore(Protocol):
    """A run's comparison scores, read the same way whichever engine kept them.

    Attributes
    ----------
    engine : str
        ``"table"`` or ``"stream"`` (``metrics.json`` ``engine.engine``).
    n_mated, n_nonmated : int
        Comparisons kept (non-mated: after any ``max_nonmated`` sample).
    """

    engine: str
    n_mated: int
    n_nonmated: int

    def calibration(self, calibration_group: dict | None) -> tuple[Callable[[float], ThresholdAtFMR], str]:
        """``(calibrate, population)``: ``calibrate(target_fmr)`` applies the §0 order-statistic rule
        (docs/protocol.md §0) to the non-mated comparisons of the calibration population (all, or
        both subjects in ``{attribute, group}``), raising
        :class:`~bench.errors.InsufficientDataError` when the population cannot support the target;
        ``population`` describes it in words. :class:`~bench.errors.ConfigError` for an unknown group."""
        ...

    def settle_thresholds(self, thresholds: list[dict], bootstrap: bool) -> None:
        """Fix the run's threshold entries (the list of :func:`bench.run.threshold_entries`) before any
        rate is read; a store may annotate them in place (how each was calibrated, whether the
        bootstrap can re-calibrate it). ``bootstrap``: a subject bootstrap was requested."""
        ...

    def group_rates(self, attribute: str, thresholds: dict[str, float], confidence: float) -> pd.DataFrame:
        """Per-group FMR/FNMR at every named threshold: counts, rates, Wilson and Clopper-Pearson
        intervals at ``confidence``, flags (:data:`bench.metrics.groups.PER_GROUP_COLUMNS`), the
        ``(all)`` group first. Per-group FMR counts the demographically matched non-mated pairs."""
        ...

    def cross_group(self, attribute: str, name: str, threshold: float) -> pd.DataFrame:
        """Cross-group FMR at the settled threshold ``name`` (value ``threshold``), long form
        (:data:`bench.metrics.groups.CROSS_GROUP_COLUMNS`)."""
        ...

    def eer_det(self) -> tuple[pd.DataFrame, dict]:
        """EER per (attribute, group) (``(all)`` first) and the DET curves, keyed (attribute, group)."""
        ...

    def bootstrap_overall(self, thresholds: dict[str, float], recalibrate: dict[str, float], n_replicates: int, seed: int,
                          confidence: float) -> pd.DataFrame | None:
        """The run's ``(all)`` subject-bootstrap interval rows (one per threshold and metric; no
        demographic strata), or None when the store cannot draw subjects."""
        ...

    def bootstrap(self, attribute: str, thresholds: dict[str, float], recalibrate: dict[str, float], n_replicates: int,
                  seed: int) -> BootstrapReplicates | None:
        """Subject-bootstrap replicates of one attribute (docs/protocol.md §5.2-5.4), thresholds in
        ``recalibrate`` re-calibrated per replicate; None when the store cannot draw subjects."""
        ...

    def mitigation(self, target_fmrs: list[float]) -> pd.DataFrame:
        """Per-group-threshold mitigation analysis (table store only; others raise ConfigError)."""
        ...

    def engine_info(self, choice: dict) -> dict:
        """``metrics.json`` ``engine``: the engine ``choice`` completed with what the store states
        about its precision (bin width, tail, tolerances)."""
        ...

    @property
    def result_fields(self) -> dict[str, Any]:
        """The :class:`bench.run.RunResult` fields only this store fills (``comparisons``, ``stream``)."""
        ...
