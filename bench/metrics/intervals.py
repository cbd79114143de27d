"""Binomial confidence intervals for error counts (metrics-reference §5.5).

These intervals treat comparisons as independent Bernoulli trials. Comparisons that
share a subject are correlated (§5.1), so on biometric data the intervals are a
**floor** on the true uncertainty; use the subject-level bootstrap
(:mod:`bench.metrics.bootstrap`) for the headline intervals and these for zero-error
cells and as a lower bound.

All functions are vectorised: ``errors`` and ``n`` broadcast against each other; scalar
inputs give Python floats, array inputs give float64 arrays. ``n == 0`` gives NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from bench.errors import ConfigError, DataError

__all__ = ["wilson_interval", "clopper_pearson_interval", "zero_error_upper_bound"]


def _check_confidence(confidence: float) -> float:
    try:
        c = float(confidence)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"confidence: expected a number in (0, 1), got {confidence!r}") from err
    if not (0.0 < c < 1.0):
        raise ConfigError(f"confidence: expected a value in the open interval (0, 1), got {c!r}")
    return c


def _as_counts(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{name}: expected integer counts, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name}: counts must be finite, got {values!r}")
    if np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise DataError(f"{name}: expected non-negative integer counts, got {values!r}")
    return arr


def _counts(errors: ArrayLike, n: ArrayLike) -> tuple[np.ndarray, np.ndarray, bool]:
    x = _as_counts(errors, "errors")
    m = _as_counts(n, "n")
    scalar = x.ndim == 0 and m.ndim == 0
    x, m = np.broadcast_arrays(x, m)
    if np.any(x > m):
        raise DataError(f"errors: must not exceed n, got errors={errors!r}, n={n!r}")
    return x, m, scalar


def _out(lo: np.ndarray, hi: np.ndarray, scalar: bool) -> tuple[Any, Any]:
    if scalar:
        return float(lo), float(hi)
    return lo, hi


def wilson_interval(errors: ArrayLike, n: ArrayLike, *, confidence: float = 0.95) -> tuple[Any, Any]:
    """Two-sided Wilson score interval for a binomial proportion.

    ``centre = (p + z^2/(2n)) / (1 + z^2/n)``,
    ``half = z sqrt(p(1-p)/n + z^2/(4n^2)) / (1 + z^2/n)`` with ``p = errors/n`` and
    ``z`` the ``1 - (1-confidence)/2`` normal quantile (metrics-reference §5.5;
    Wilson 1927).

    Parameters
    ----------
    errors : int or array-like of int
        Error counts, ``0 <= errors <= n``.
    n : int or array-like of int
        Trials (comparisons); broadcast against ``errors``.
    confidence : float in (0, 1), default 0.95
        Two-sided coverage.

    Returns
    -------
    (lo, hi) : floats or float64 arrays
        Bounds in [0, 1]; ``lo = 0`` when ``errors = 0`` and ``hi = 1`` when
        ``errors = n`` (exact, not subject to rounding); NaN where ``n = 0``.

    Raises
    ------
    DataError
        If counts are negative, non-integer, or ``errors > n``.
    ConfigError
        If ``confidence`` is not in (0, 1).

    Examples
    --------
    TV9 of metrics-reference (3 errors in 10):

    >>> lo, hi = wilson_interval(3, 10)
    >>> round(lo, 5), round(hi, 5)
    (0.10779, 0.60322)
    """
    c = _check_confidence(confidence)
    x, m, scalar = _counts(errors, n)
    z = stats.norm.ppf(1.0 - (1.0 - c) / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / m
        z2 = z * z
        denom = 1.0 + z2 / m
        centre = (p + z2 / (2.0 * m)) / denom
        half = z * np.sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m)) / denom
        lo = np.clip(centre - half, 0.0, 1.0)
        hi = np.clip(centre + half, 0.0, 1.0)
    lo = np.where(x == 0, 0.0, lo)
    hi = np.where(x == m, 1.0, hi)
    empty = m == 0
    lo = np.where(empty, np.nan, lo)
    hi = np.where(empty, np.nan, hi)
    return _out(lo, hi, scalar)


def clopper_pearson_interval(
    errors: ArrayLike, n: ArrayLike, *, confidence: float = 0.95
) -> tuple[Any, Any]:
    """Two-sided exact (Clopper–Pearson) interval for a binomial proportion.

    ``lower = BetaInv(a/2; x, n-x+1)`` (0 if ``x = 0``),
    ``upper = BetaInv(1-a/2; x+1, n-x)`` (1 if ``x = n``), ``a = 1 - confidence``
    (metrics-reference §5.5; Clopper & Pearson 1934), via ``scipy.stats.beta.ppf``.

    Parameters
    ----------
    errors : int or array-like of int
        Error counts, ``0 <= errors <= n``.
    n : int or array-like of int
        Trials; broadcast against ``errors``.
    confidence : float in (0, 1), default 0.95
        Two-sided coverage (at least this, by construction).

    Returns
    -------
    (lo, hi) : floats or float64 arrays
        Bounds in [0, 1]; NaN where ``n = 0``.

    Raises
    ------
    DataError
        If counts are negative, non-integer, or ``errors > n``.
    ConfigError
        If ``confidence`` is not in (0, 1).

    Examples
    --------
    TV9 of metrics-reference:

    >>> [round(v, 5) for v in clopper_pearson_interval(3, 10)]
    [0.06674, 0.65245]
    >>> [round(v, 7) for v in clopper_pearson_interval(0, 1000)]
    [0.0, 0.0036821]
    """
    c = _check_confidence(confidence)
    x, m, scalar = _counts(errors, n)
    a = 1.0 - c
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = stats.beta.ppf(a / 2.0, x, m - x + 1.0)
        hi = stats.beta.ppf(1.0 - a / 2.0, x + 1.0, m - x)
    lo = np.where(x == 0, 0.0, lo)
    hi = np.where(x == m, 1.0, hi)
    empty = m == 0
    lo = np.where(empty, np.nan, lo).astype(np.float64)
    hi = np.where(empty, np.nan, hi).astype(np.float64)
    return _out(lo, hi, scalar)


def zero_error_upper_bound(n: ArrayLike, *, confidence: float = 0.95) -> Any:
    """One-sided exact upper bound on a rate observed as 0 errors in ``n`` trials.

    ``1 - (1 - confidence)^(1/n)``; at 95% this is ``1 - 0.05^(1/n) ~= 3/n`` (the
    "rule of 3", metrics-reference §5.5). It is the one-sided Clopper–Pearson bound
    for ``x = 0``.

    Parameters
    ----------
    n : int or array-like of int
        Trials (comparisons), ``n >= 0``.
    confidence : float in (0, 1), default 0.95
        One-sided coverage.

    Returns
    -------
    float or float64 array
        Upper bound in (0, 1); NaN where ``n = 0``.

    Raises
    ------
    DataError
        If ``n`` is negative or not an integer.
    ConfigError
        If ``confidence`` is not in (0, 1).

    Examples
    --------
    TV2 / TV9 of metrics-reference:

    >>> round(zero_error_upper_bound(10), 4), round(zero_error_upper_bound(1000), 7)
    (0.2589, 0.0029912)
    """
    c = _check_confidence(confidence)
    m = _as_counts(n, "n")
    with np.errstate(invalid="ignore", divide="ignore"):
        ub = np.where(m > 0, 1.0 - (1.0 - c) ** (1.0 / np.where(m > 0, m, 1.0)), np.nan)
    if ub.ndim == 0:
        return float(ub)
    return ub.astype(np.float64)

