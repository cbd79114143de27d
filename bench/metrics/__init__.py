"""Exact error rates, thresholds, intervals, group disaggregation and differentials.

Public API (metrics-reference §0–§5); every rate carries its counts.
"""

from bench.metrics.bootstrap import (
    BootstrapReplicates,
    bootstrap_group_rates,
    bootstrap_replicates,
)
from bench.metrics.bootstrap_differentials import bootstrap_differentials
from bench.metrics.differentials import (
    differential_summary,
    fdr,
    garbe,
    gini,
    inequity_rate,
    max_geomean_ratio,
    max_min_difference,
    max_min_ratio,
    ratio_to_reference,
    rfw_std,
    ser,
)
from bench.metrics.groups import (
    ALL_GROUP,
    cross_group_fmr,
    per_group_rates,
    validate_comparisons,
)
from bench.metrics.intervals import (
    clopper_pearson_interval,
    wilson_interval,
    zero_error_upper_bound,
)
from bench.metrics.rates import (
    DetCurve,
    EqualErrorRate,
    ErrorRates,
    ThresholdAtFMR,
    det_curve,
    equal_error_rate,
    error_rates,
    score_sanity_check,
    threshold_at_fmr,
    transaction_rates,
)

__all__ = [
    "ErrorRates",
    "ThresholdAtFMR",
    "EqualErrorRate",
    "DetCurve",
    "error_rates",
    "threshold_at_fmr",
    "equal_error_rate",
    "det_curve",
    "score_sanity_check",
    "transaction_rates",
    "wilson_interval",
    "clopper_pearson_interval",
    "zero_error_upper_bound",
    "ALL_GROUP",
    "per_group_rates",
    "cross_group_fmr",
    "validate_comparisons",
    "max_min_difference",
    "max_min_ratio",
    "max_geomean_ratio",
    "ratio_to_reference",
    "fdr",
    "inequity_rate",
    "gini",
    "garbe",
    "rfw_std",
    "ser",
    "differential_summary",
    "BootstrapReplicates",
    "bootstrap_replicates",
    "bootstrap_group_rates",
    "bootstrap_differentials",
]
