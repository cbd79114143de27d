"""Differential (fairness) summary measures over per-group error rates (docs/protocol.md §4).

Every function takes per-group values as 1-D arrays (one entry per group, all at one
common threshold) and returns a float. Conventions:

* Rates must be finite and non-negative; groups without comparisons must be dropped
  first (:func:`differential_summary` does this and lists them).
* Fewer than two groups, or a measure that is mathematically undefined (division by a
  zero-error group, all groups error-free), gives ``NaN`` plus an
  :class:`~bench.errors.InsufficientDataWarning` saying "not estimable" -- never a
  sentinel and never a crash (docs/protocol.md §4.2, §5.5).
* **Zero rule** (docs/protocol.md §2.2 [S: S15], §5.5): ratio measures refuse to divide
  by a zero-error group unless ``zero_rule="upper_bound"`` is passed together with the
  per-group comparison counts ``comparisons``. Then each zero rate is replaced, in the
  **denominator only** (the minimum, the geometric mean, the reference), by the one-sided
  95% upper bound for zero errors ``1 - 0.05**(1/n)``. The public implementation S15
  applies the substitution inside the geometric mean only; we use it for every
  denominator and keep the raw maximum as the numerator, so a ratio can fall below 1
  when the bound exceeds the largest observed rate. This is not verified as NIST's exact
  rule [U]; always report which rule was used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from bench.errors import ConfigError, DataError, InsufficientDataWarning
from bench.metrics.groups import ALL_GROUP
from bench.metrics.intervals import zero_error_upper_bound

__all__ = [
    "ZERO_RULES",
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
]

#: Accepted values of ``zero_rule``: ``None`` (refuse: NaN + warning) or ``"upper_bound"``.
ZERO_RULES = (None, "upper_bound")


# ----------------------------------------------------------------------------- helpers
def _values(x: ArrayLike, name: str) -> NDArray[np.float64]:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: expected a 1-D array of per-group values ({err})") from err
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array (one value per group), got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{name}: non-finite value {float(arr[i])!r} at index {i}; drop groups without "
            "comparisons before summarising"
        )
    if np.any(arr < 0):
        i = int(np.flatnonzero(arr < 0)[0])
        raise DataError(f"{name}: negative value {float(arr[i])!r} at index {i}; rates are >= 0")
    return arr


def _not_estimable(measure: str, why: str) -> float:
    warnings.warn(f"{measure}: not estimable ({why})", InsufficientDataWarning, stacklevel=3)
    return math.nan


def _enough_groups(arr: NDArray[np.float64], measure: str) -> bool:
    if arr.size < 2:
        _not_estimable(measure, f"needs at least 2 groups, got {arr.size}")
        return False
    return True


def _check_alpha(alpha: float) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"alpha: expected a number in [0, 1], got {alpha!r}") from err
    if not (0.0 <= a <= 1.0):
        raise ConfigError(f"alpha: expected a value in [0, 1], got {a!r}")
    return a


def _denominator_values(
    rates: NDArray[np.float64],
    name: str,
    zero_rule: str | None,
    comparisons: ArrayLike | None,
) -> NDArray[np.float64]:
    """Rates to use in a denominator: zeros replaced by the 95% upper bound if asked."""
    if zero_rule not in ZERO_RULES:
        raise ConfigError(f"zero_rule: expected one of {ZERO_RULES}, got {zero_rule!r}")
    if zero_rule is None:
        return rates
    if comparisons is None:
        raise ConfigError(
            f"zero_rule='upper_bound' needs the per-group comparison counts for {name} "
            "(argument 'comparisons')"
        )
    n = np.asarray(comparisons)
    if n.shape != rates.shape:
        raise DataError(
            f"comparisons for {name}: expected shape {rates.shape} (one count per group), got {n.shape}"
        )
    zero = rates == 0
    if np.any(zero & ~(n > 0)):
        raise DataError(f"comparisons for {name}: a zero-rate group has no comparisons")
    if not zero.any():
        return rates
    out = rates.copy()
    out[zero] = zero_error_upper_bound(n[zero], confidence=0.95)
    return out


# ----------------------------------------------------------------------------- range family
def max_min_difference(rates: ArrayLike) -> float:
    """``max_d x_d - min_d x_d`` (docs/protocol.md §4.4; NISTIR 8429 eqs 1-2 per S15).

    Parameters
    ----------
    rates : array-like of float, shape (D,)
        Per-group rates (finite, >= 0), all at one threshold.

    Returns
    -------
    float
        In [0, max]; 0 = parity. NaN (with a warning) if ``D < 2``.

    Raises
    ------
    DataError
        If ``rates`` is not 1-D or holds NaN/inf/negative values.

    Examples
    --------
    TV5 of docs/protocol.md:

    >>> round(max_min_difference([0.001, 0.004, 0.0005]), 10)
    0.0035
    """
    x = _values(rates, "rates")
    if not _enough_groups(x, "max_min_difference"):
        return math.nan
    return float(x.max() - x.min())


def max_min_ratio(
    rates: ArrayLike, *, zero_rule: str | None = None, comparisons: ArrayLike | None = None
) -> float:
    """``max_d x_d / min_d x_d`` (docs/protocol.md §4.4; NISTIR 8429 eqs 3-5 per S15).

    Parameters
    ----------
    rates : array-like of float, shape (D,)
        Per-group rates (finite, >= 0).
    zero_rule : {None, "upper_bound"}, default None
        Handling of a zero-error minimum (module docstring).
    comparisons : array-like of int, shape (D,), optional
        Per-group comparison counts; required with ``zero_rule="upper_bound"``.

    Returns
    -------
    float
        ``>= 1`` (1 = parity) without a zero rule. NaN with an
        :class:`InsufficientDataWarning` if ``D < 2`` or the minimum is 0 and no zero
        rule is enabled.

    Raises
    ------
    DataError, ConfigError
        Bad values, bad ``zero_rule`` or missing/mismatched ``comparisons``.

    Examples
    --------
    TV5 of docs/protocol.md:

    >>> max_min_ratio([0.001, 0.004, 0.0005]), max_min_ratio([0.02, 0.05, 0.03])
    (8.0, 2.5)
    """
    x = _values(rates, "rates")
    if not _enough_groups(x, "max_min_ratio"):
        return math.nan
    den = _denominator_values(x, "rates", zero_rule, comparisons)
    if den.min() == 0:
        return _not_estimable("max_min_ratio", "a group has zero errors; enable zero_rule='upper_bound' to bound it")
    return float(x.max() / den.min())


def max_geomean_ratio(
    rates: ArrayLike, *, zero_rule: str | None = None, comparisons: ArrayLike | None = None
) -> float:
    """``max_d x_d / (prod_d x_d)^(1/D)`` -- NIST's leading candidate (§2.2, §4.4).

    Parameters
    ----------
    rates : array-like of float, shape (D,)
        Per-group rates (finite, >= 0).
    zero_rule : {None, "upper_bound"}, default None
        Handling of zero-error groups inside the geometric mean (S15 rule, module docstring).
    comparisons : array-like of int, shape (D,), optional
        Per-group comparison counts; required with ``zero_rule="upper_bound"``.

    Returns
    -------
    float
        ``>= 1`` without a zero rule (1 = parity); computed as ``exp(mean(log x))``.
        NaN with a warning if ``D < 2`` or a group is zero without a zero rule.

    Raises
    ------
    DataError, ConfigError
        As :func:`max_min_ratio`.

    Examples
    --------
    TV5 of docs/protocol.md:

    >>> round(max_geomean_ratio([0.001, 0.004, 0.0005]), 6)
    3.174802
    """
    x = _values(rates, "rates")
    if not _enough_groups(x, "max_geomean_ratio"):
        return math.nan
    den = _denominator_values(x, "rates", zero_rule, comparisons)
    if den.min() == 0:
        return _not_estimable(
            "max_geomean_ratio", "a group has zero errors; enable zero_rule='upper_bound' to bound it"
        )
    return float(x.max() / math.exp(float(np.mean(np.log(den)))))


def ratio_to_reference(
    rates: ArrayLike,
    groups: Sequence[str],
    reference: str | float,
    *,
    zero_rule: str | None = None,
    comparisons: ArrayLike | None = None,
) -> dict[str, float]:
    """Ratio of every group's rate to a reference: ``R_d = x_d / x_ref`` (§2.3 item 5, §4.4).

    Parameters
    ----------
    rates : array-like of float, shape (D,)
        Per-group rates (finite, >= 0).
    groups : sequence of str, length D
        Group names, aligned with ``rates``.
    reference : str or float
        A group name (flavour 2: threshold calibrated globally, the group is a
        comparator), or a number: the reference rate itself, e.g. the target FMR when the
        threshold was calibrated on a reference population (flavour 1: ``R_d = FMR_d / f``).
    zero_rule : {None, "upper_bound"}, default None
        If the reference group has zero errors: refuse (None) or use its 95% upper bound.
    comparisons : array-like of int, shape (D,), optional
        Per-group comparison counts; required with ``zero_rule="upper_bound"``.

    Returns
    -------
    dict of str to float
        ``{group: x_group / x_ref}`` in the order of ``groups``; every value is NaN (with a
        warning) when the reference rate is zero and no zero rule applies. The maximum of
        the values is the "max ratio to reference" of §4.4.

    Raises
    ------
    DataError
        If lengths differ, names repeat, or ``reference`` is not one of ``groups``.
    ConfigError
        If a numeric ``reference`` is not finite and positive, or ``zero_rule`` is bad.

    Examples
    --------
    TV2 of docs/protocol.md (flavour 1, threshold calibrated on the reference set at f = 0.1):

    >>> r = ratio_to_reference([0.30, 0.0], ["A", "B"], 0.10)
    >>> round(r["A"], 12), r["B"]
    (3.0, 0.0)
    """
    x = _values(rates, "rates")
    names = [str(g) for g in groups]
    if len(names) != x.size:
        raise DataError(f"groups: expected {x.size} names (one per rate), got {len(names)}")
    if len(set(names)) != len(names):
        raise DataError(f"groups: names must be unique, got {names}")
    if isinstance(reference, str):
        if reference not in names:
            raise DataError(f"reference: group {reference!r} not among {names}")
        i = names.index(reference)
        den = _denominator_values(x, "rates", zero_rule, comparisons)
        ref = float(den[i])
    else:
        try:
            ref = float(reference)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"reference: expected a group name or a positive rate, got {reference!r}") from err
        if not (math.isfinite(ref) and ref > 0):
            raise ConfigError(f"reference: a numeric reference rate must be finite and > 0, got {ref!r}")
    if ref == 0:
        _not_estimable("ratio_to_reference", f"reference group {reference!r} has zero errors")
        return {g: math.nan for g in names}
    return {g: float(v / ref) for g, v in zip(names, x)}


# ----------------------------------------------------------------------------- combined measures
def fdr(fmr: ArrayLike, fnmr: ArrayLike, alpha: float = 0.5) -> float:
    """Fairness Discrepancy Rate (de Freitas Pereira & Marcel; docs/protocol.md §4.1).

    ``A = max FMR - min FMR``, ``B = max FNMR - min FNMR``,
    ``FDR = 1 - (alpha A + (1 - alpha) B)``.

    Parameters
    ----------
    fmr, fnmr : array-like of float, shape (D,)
        Per-group FMR and FNMR at one threshold, aligned by group.
    alpha : float in [0, 1], default 0.5
        Weight of FMR (0.5 as in the paper; a re-implementation uses 0.995, §4.1).

    Returns
    -------
    float
        In [0, 1]; 1 = fair. NaN with a warning if ``D < 2``. Scale caveat: FMR
        differences are tiny next to FNMR ones, so FDR is driven by FNMR unless
        ``alpha`` is near 1.

    Raises
    ------
    DataError
        If the arrays differ in length or hold invalid values.
    ConfigError
        If ``alpha`` is outside [0, 1].

    Examples
    --------
    TV3 of docs/protocol.md:

    >>> f, n = [0.001, 0.004, 0.0005], [0.02, 0.05, 0.03]
    >>> round(fdr(f, n), 8), round(fdr(f, n, alpha=0.995), 10)
    (0.98325, 0.9963675)
    """
    a = _check_alpha(alpha)
    x, y = _pair(fmr, fnmr)
    if not _enough_groups(x, "fdr"):
        return math.nan
    return float(1.0 - (a * (x.max() - x.min()) + (1.0 - a) * (y.max() - y.min())))


def _pair(fmr: ArrayLike, fnmr: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x = _values(fmr, "fmr")
    y = _values(fnmr, "fnmr")
    if x.shape != y.shape:
        raise DataError(f"fmr and fnmr: expected one value per group each, got {x.size} and {y.size}")
    return x, y


def inequity_rate(
    fmr: ArrayLike,
    fnmr: ArrayLike,
    alpha: float = 0.5,
    *,
    use_geomean: bool = False,
    zero_rule: str | None = None,
    fmr_comparisons: ArrayLike | None = None,
    fnmr_comparisons: ArrayLike | None = None,
) -> float:
    """Inequity Rate ``IR = A^alpha * B^(1 - alpha)`` (docs/protocol.md §4.2, §2.2).

    Default (``use_geomean=False``): ``A``, ``B`` are the Max/Min ratios of FMR and FNMR
    (NIST's earlier proposal as analysed by Howard et al. 2022, arXiv 2203.05051).
    ``use_geomean=True``: the harness-rule variant of §2.2, with ``A``, ``B`` the
    Max/GeoMean ratios.

    Parameters
    ----------
    fmr, fnmr : array-like of float, shape (D,)
        Per-group FMR and FNMR at one threshold, aligned by group.
    alpha : float in [0, 1], default 0.5
        Weight of the FMR ratio.
    use_geomean : bool, default False
        Use Max/GeoMean instead of Max/Min.
    zero_rule : {None, "upper_bound"}, default None
        Zero-error handling for both ratios (module docstring).
    fmr_comparisons, fnmr_comparisons : array-like of int, shape (D,), optional
        Per-group comparison counts, required with ``zero_rule="upper_bound"``.

    Returns
    -------
    float
        ``>= 1`` (1 = parity). NaN with a warning when a ratio is not estimable.

    Raises
    ------
    DataError, ConfigError
        Invalid values, lengths, ``alpha`` or ``zero_rule``.

    Examples
    --------
    TV5 of docs/protocol.md:

    >>> round(inequity_rate([0.001, 0.004, 0.0005], [0.02, 0.05, 0.03]), 6)
    4.472136
    """
    a = _check_alpha(alpha)
    x, y = _pair(fmr, fnmr)
    ratio = max_geomean_ratio if use_geomean else max_min_ratio
    ra = ratio(x, zero_rule=zero_rule, comparisons=fmr_comparisons)
    rb = ratio(y, zero_rule=zero_rule, comparisons=fnmr_comparisons)
    if math.isnan(ra) or math.isnan(rb):
        return math.nan
    return float(ra**a * rb ** (1.0 - a))


def gini(x: ArrayLike) -> float:
    """Gini coefficient with the ``n/(n-1)`` small-sample correction (§4.3; S22).

    ``G = sum_i sum_j |x_i - x_j| / (2 n (n - 1) mean(x))`` over ordered pairs.

    Parameters
    ----------
    x : array-like of float, shape (n,)
        Non-negative per-group values.

    Returns
    -------
    float
        In [0, 1]; 0 = parity, 1 = all mass in one group. NaN with a warning if
        ``n < 2`` or ``mean(x) = 0`` (all groups error-free). Cost O(n log n).

    Raises
    ------
    DataError
        If ``x`` is not 1-D or holds NaN/inf/negative values.

    Examples
    --------
    TV4 of docs/protocol.md:

    >>> round(gini([0.001, 0.004, 0.0005]), 6), round(gini([0.02, 0.05, 0.03]), 6)
    (0.636364, 0.3)
    """
    v = _values(x, "x")
    if not _enough_groups(v, "gini"):
        return math.nan
    n = v.size
    mean = float(v.mean())
    if mean == 0:
        return _not_estimable("gini", "all values are zero (mean 0)")
    s = np.sort(v)
    i = np.arange(1, n + 1, dtype=np.float64)
    pair_sum = 2.0 * float(np.sum((2.0 * i - n - 1.0) * s))  # sum over ordered pairs
    return float(pair_sum / (2.0 * n * (n - 1) * mean))


def garbe(fmr: ArrayLike, fnmr: ArrayLike, alpha: float = 0.5) -> float:
    """GARBE = ``alpha G(FMR) + (1 - alpha) G(FNMR)`` (Howard et al. 2022; §4.3).

    Parameters
    ----------
    fmr, fnmr : array-like of float, shape (D,)
        Per-group FMR and FNMR at one threshold, aligned by group.
    alpha : float in [0, 1], default 0.5
        Weight of the FMR Gini.

    Returns
    -------
    float
        In [0, 1]; 0 = parity. NaN with a warning when a Gini is undefined.

    Raises
    ------
    DataError, ConfigError
        Invalid values, lengths or ``alpha``.

    Examples
    --------
    TV4 of docs/protocol.md:

    >>> round(garbe([0.001, 0.004, 0.0005], [0.02, 0.05, 0.03]), 6)
    0.468182
    """
    a = _check_alpha(alpha)
    x, y = _pair(fmr, fnmr)
    gx = gini(x)
    gy = gini(y)
    return float(a * gx + (1.0 - a) * gy)


# ----------------------------------------------------------------------------- RFW style
def rfw_std(accuracies: ArrayLike, ddof: int = 0) -> float:
    """RFW-style STD: standard deviation of per-group accuracies (§4.5).

    Parameters
    ----------
    accuracies : array-like of float, shape (D,)
        Per-group verification accuracies (any unit, e.g. percent).
    ddof : {0, 1}, default 0
        Delta degrees of freedom; 0 matches the public RFW script (``numpy.std``). Papers
        rarely state it: report which.

    Returns
    -------
    float
        NaN with a warning if ``D < 2``.

    Notes
    -----
    On RFW every race subset has its own accuracy-maximising threshold, so this measures
    separability gaps, not operating-point error gaps (§4.5).

    Examples
    --------
    TV7 of docs/protocol.md:

    >>> acc = [93.5, 94.5, 97.0, 95.0]
    >>> round(rfw_std(acc), 5), round(rfw_std(acc, ddof=1), 5)
    (1.27475, 1.47196)
    """
    v = _values(accuracies, "accuracies")
    if ddof not in (0, 1):
        raise ConfigError(f"ddof: expected 0 or 1, got {ddof!r}")
    if not _enough_groups(v, "rfw_std"):
        return math.nan
    return float(np.std(v, ddof=ddof))


def ser(error_rates: ArrayLike) -> float:
    """RFW-style Skewed Error Ratio ``max_g Err_g / min_g Err_g`` (Wang & Deng 2020; §4.5).

    Parameters
    ----------
    error_rates : array-like of float, shape (D,)
        Per-group error rates, e.g. ``100 - accuracy`` in percent (RFW convention).

    Returns
    -------
    float
        ``>= 1``; 1 = parity. NaN with a warning if ``D < 2`` or a group has zero error.

    Examples
    --------
    TV7 of docs/protocol.md (errors 6.5, 5.5, 3.0, 5.0):

    >>> round(ser([6.5, 5.5, 3.0, 5.0]), 4)
    2.1667
    """
    v = _values(error_rates, "error_rates")
    if not _enough_groups(v, "ser"):
        return math.nan
    if v.min() == 0:
        return _not_estimable("ser", "a group has zero error")
    return float(v.max() / v.min())


# ----------------------------------------------------------------------------- summary
def _metric_rows(df: pd.DataFrame, metric: str, threshold_name: str) -> pd.DataFrame:
    needed = {"group", "metric", "threshold_name", "threshold", "errors", "comparisons", "rate"}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise DataError(f"per_group_df: missing column(s) {missing}; expected a per_group_rates output")
    rows = df[(df["metric"] == metric) & (df["threshold_name"] == threshold_name) & (df["group"] != ALL_GROUP)]
    if rows.empty:
        raise DataError(
            f"per_group_df: no rows for metric={metric!r}, threshold_name={threshold_name!r}; "
            f"threshold names present: {sorted(df['threshold_name'].unique().tolist())}"
        )
    if rows["group"].duplicated().any():
        raise DataError(
            "per_group_df: several rows per group for one metric and threshold; pass one "
            "attribute's per_group_rates output"
        )
    return rows.sort_values("group")


def _reasoned(reasons: dict[str, str], key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; record why it was not estimable under ``reasons[key]`` and re-emit its warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn(*args, **kwargs)
    msgs = [str(w.message) for w in caught if issubclass(w.category, InsufficientDataWarning)]
    if msgs:
        reasons[key] = "; ".join(dict.fromkeys(msgs))
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=3)
    return value


def _single_summary(
    rows: pd.DataFrame, zero_rule: str | None, reference: str | float | None
) -> dict[str, Any]:
    rates = rows["rate"].to_numpy(dtype=np.float64)
    n = rows["comparisons"].to_numpy(dtype=np.int64)
    groups = rows["group"].astype(str).tolist()
    out: dict[str, Any] = {
        "groups": groups,
        "n_groups": len(groups),
        "zero_error_groups": [g for g, r in zip(groups, rates) if r == 0],
    }
    if len(groups):
        out["min_group"] = groups[int(np.argmin(rates))]
        out["max_group"] = groups[int(np.argmax(rates))]
        out["min"] = float(rates.min())
        out["max"] = float(rates.max())
    else:
        out.update(min_group=None, max_group=None, min=math.nan, max=math.nan)
    reasons: dict[str, str] = {}
    out["max_min_difference"] = _reasoned(reasons, "max_min_difference", max_min_difference, rates)
    out["max_min_ratio"] = _reasoned(reasons, "max_min_ratio", max_min_ratio, rates, zero_rule=zero_rule, comparisons=n)
    out["max_geomean_ratio"] = _reasoned(
        reasons, "max_geomean_ratio", max_geomean_ratio, rates, zero_rule=zero_rule, comparisons=n
    )
    out["gini"] = _reasoned(reasons, "gini", gini, rates)
    out["reasons"] = reasons
    if reference is not None:
        ratios = _reasoned(
            reasons, "max_ratio_to_reference", ratio_to_reference, rates, groups, reference, zero_rule=zero_rule, comparisons=n
        )
        out["reference"] = reference
        out["ratio_to_reference"] = ratios
        vals = [v for v in ratios.values() if not math.isnan(v)]
        out["max_ratio_to_reference"] = max(vals) if vals else math.nan
    return out


def differential_summary(
    per_group_df: pd.DataFrame,
    metric: str,
    threshold_name: str,
    *,
    alpha: float = 0.5,
    zero_rule: str | None = None,
    reference: str | float | None = None,
) -> dict[str, Any]:
    """All §4 summary measures from a :func:`~bench.metrics.groups.per_group_rates` table.

    The ``"(all)"`` pseudo-group is excluded; groups with no comparisons (rate NaN) are
    excluded and listed under ``"excluded_groups"``.

    Parameters
    ----------
    per_group_df : pandas.DataFrame
        Output of ``per_group_rates`` for one attribute.
    metric : {"FMR", "FNMR", "both"}
        Summarise one metric, or both together with the combined measures.
    threshold_name : str
        Which named threshold's rows to use.
    alpha : float in [0, 1], default 0.5
        FMR weight of FDR, IR and GARBE (used with ``metric="both"``).
    zero_rule : {None, "upper_bound"}, default None
        Zero-error rule for ratio measures (module docstring).
    reference : str or float, optional
        Reference group name (or reference rate) for :func:`ratio_to_reference`.

    Returns
    -------
    dict
        For ``"FMR"``/``"FNMR"``: ``metric, threshold_name, threshold, zero_rule,
        excluded_groups, groups, n_groups, zero_error_groups, min, max, min_group,
        max_group, max_min_difference, max_min_ratio, max_geomean_ratio, gini`` (and
        ``reference, ratio_to_reference, max_ratio_to_reference`` if asked). For
        ``"both"``: ``{"FMR": {...}, "FNMR": {...}}`` over the groups present in both,
        plus ``alpha, fdr, fdr_A, fdr_B, inequity_rate`` (Max/Min),
        ``inequity_rate_geomean`` (§2.2 variant) and ``garbe``. Undefined measures are
        NaN (each with an :class:`InsufficientDataWarning`), and ``reasons`` (in each
        per-metric part and, for the combined measures, at the top) maps each such
        measure to the warning text that says why it is not estimable. Values are plain Python
        types, ready for ``json.dump`` (NaN as float).

    Raises
    ------
    DataError
        If the table lacks columns or rows for ``metric``/``threshold_name``.
    ConfigError
        If ``metric``, ``alpha`` or ``zero_rule`` is invalid.
    """
    if metric not in ("FMR", "FNMR", "both"):
        raise ConfigError(f"metric: expected 'FMR', 'FNMR' or 'both', got {metric!r}")
    a = _check_alpha(alpha)
    if zero_rule not in ZERO_RULES:
        raise ConfigError(f"zero_rule: expected one of {ZERO_RULES}, got {zero_rule!r}")
    metrics = ["FMR", "FNMR"] if metric == "both" else [metric]
    rows = {m: _metric_rows(per_group_df, m, threshold_name) for m in metrics}
    usable = {m: set(r.loc[r["comparisons"] > 0, "group"].astype(str)) for m, r in rows.items()}
    keep = set.intersection(*usable.values())
    all_groups = set().union(*(set(r["group"].astype(str)) for r in rows.values()))
    excluded = sorted(all_groups - keep)
    threshold = float(next(iter(rows.values()))["threshold"].iloc[0])
    head: dict[str, Any] = {
        "threshold_name": threshold_name,
        "threshold": threshold,
        "zero_rule": zero_rule,
        "excluded_groups": excluded,
    }
    parts = {
        m: _single_summary(r[r["group"].astype(str).isin(keep)], zero_rule, reference)
        for m, r in rows.items()
    }
    if metric != "both":
        return {"metric": metric, **head, **parts[metric]}
    kept_rows = {m: r[r["group"].astype(str).isin(keep)] for m, r in rows.items()}
    f = kept_rows["FMR"]["rate"].to_numpy(dtype=np.float64)
    fn = kept_rows["FNMR"]["rate"].to_numpy(dtype=np.float64)
    nf = kept_rows["FMR"]["comparisons"].to_numpy(dtype=np.int64)
    nn = kept_rows["FNMR"]["comparisons"].to_numpy(dtype=np.int64)
    out: dict[str, Any] = {"metric": "both", **head, "alpha": a}
    out["FMR"] = {"metric": "FMR", **parts["FMR"]}
    out["FNMR"] = {"metric": "FNMR", **parts["FNMR"]}
    out["fdr_A"] = parts["FMR"]["max_min_difference"]
    out["fdr_B"] = parts["FNMR"]["max_min_difference"]
    reasons: dict[str, str] = {}
    out["fdr"] = _reasoned(reasons, "fdr", fdr, f, fn, alpha=a)
    out["inequity_rate"] = _reasoned(
        reasons, "inequity_rate", inequity_rate, f, fn, a, zero_rule=zero_rule, fmr_comparisons=nf, fnmr_comparisons=nn
    )
    out["inequity_rate_geomean"] = _reasoned(
        reasons, "inequity_rate_geomean", inequity_rate, f, fn, a, use_geomean=True, zero_rule=zero_rule,
        fmr_comparisons=nf, fnmr_comparisons=nn,
    )
    out["garbe"] = _reasoned(reasons, "garbe", garbe, f, fn, alpha=a)
    out["reasons"] = reasons
    return out
