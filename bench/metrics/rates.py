"""Exact decision error rates of a 1:1 verification system.

Conventions (docs/protocol.md §0, non-negotiable across fvbench):

* a score is a **similarity**: higher means more alike;
* a comparison is declared a match iff ``score >= threshold`` (ties are matches);
* ``FMR(t) = #{non-mated s >= t} / #{non-mated}`` and
  ``FNMR(t) = #{mated s < t} / #{mated}`` (ISO/IEC 19795-1 / ISO/IEC 2382-37,
  NIST ``make.DET``, bob.measure ``farfrr``);
* every rate is returned together with its counts.

Score arrays are 1-D float arrays; NaN and infinite scores are rejected with a
:class:`~bench.errors.DataError` naming the argument. Nothing is clipped or rescaled.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bench.errors import (
    ConfigError,
    DataError,
    InsufficientDataError,
    InsufficientDataWarning,
    ScoreSanityWarning,
)

__all__ = [
    "ErrorRates",
    "ThresholdAtFMR",
    "EqualErrorRate",
    "DetCurve",
    "error_rates",
    "threshold_at_fmr",
    "equal_error_rate",
    "eer_from_counts",
    "det_curve",
    "score_sanity_check",
    "transaction_rates",
    "RULE_OF_30",
]

logger = logging.getLogger(__name__)

#: Minimum number of errors for a rate to count as precise (Doddington's rule of 30,
#: docs/protocol.md §5.5): a target FMR ``f`` is "supported" by ``N >= 30/f`` scores.
RULE_OF_30 = 30

# Relative slack used when comparing N*f with an integer count, so that e.g.
# N = 300_000 and f = 1e-4 (30/f = 299999.99999999994 in floating point) count as equal.
_REL_SLACK = 1e-12


# ----------------------------------------------------------------------------- validation
def _as_scores(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """Return ``values`` as a 1-D float64 array; reject NaN/inf and other shapes.

    Raises
    ------
    DataError
        If ``values`` is not 1-D, not numeric, or holds NaN or infinite entries; the
        message names ``name`` and the first bad position.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: expected a 1-D array of float scores ({err})") from err
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array of scores, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{name}: {int(bad.sum())} non-finite score(s) (first at index {idx}: "
            f"{float(arr[idx])!r}); scores must be finite similarities"
        )
    return arr


def _check_threshold(threshold: float, name: str = "threshold") -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name}: expected a number, got {threshold!r}") from err
    if math.isnan(t):
        raise ConfigError(f"{name}: got NaN; expected a number (+/-inf allowed)")
    return t


def _check_target(target_fmr: float, name: str = "target_fmr") -> float:
    try:
        f = float(target_fmr)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name}: expected a number in (0, 1), got {target_fmr!r}") from err
    if not (0.0 < f < 1.0):
        raise ConfigError(f"{name}: expected a value in the open interval (0, 1), got {f!r}")
    return f


def _rate(errors: int, n: int) -> float:
    return errors / n if n > 0 else math.nan


def _supports(n: int, target: float, count: float) -> bool:
    """True iff ``n * target >= count`` up to floating-point slack (n >= count/target)."""
    return n * target >= count * (1.0 - _REL_SLACK)


# ----------------------------------------------------------------------------- error rates
@dataclass(frozen=True)
class ErrorRates:
    """Counts and rates at one decision threshold (docs/protocol.md §0).

    Attributes
    ----------
    threshold : float
        Decision threshold; a comparison matches iff ``score >= threshold``.
    false_matches : int
        Non-mated comparisons with ``score >= threshold``.
    n_nonmated : int
        Number of non-mated comparisons.
    fmr : float
        ``false_matches / n_nonmated`` in [0, 1]; NaN when ``n_nonmated == 0``.
    false_non_matches : int
        Mated comparisons with ``score < threshold``.
    n_mated : int
        Number of mated comparisons.
    fnmr : float
        ``false_non_matches / n_mated`` in [0, 1]; NaN when ``n_mated == 0``.
    """

    threshold: float
    false_matches: int
    n_nonmated: int
    fmr: float
    false_non_matches: int
    n_mated: int
    fnmr: float


def error_rates(mated_scores: ArrayLike, nonmated_scores: ArrayLike, threshold: float) -> ErrorRates:
    """FMR and FNMR, with counts, at one threshold.

    Parameters
    ----------
    mated_scores : array-like of float, shape (n_mated,)
        Similarity scores of mated (same-subject) comparisons. May be empty.
    nonmated_scores : array-like of float, shape (n_nonmated,)
        Similarity scores of non-mated comparisons. May be empty.
    threshold : float
        Decision threshold; match iff ``score >= threshold``. May be +/-inf, not NaN.

    Returns
    -------
    ErrorRates
        Rates are NaN for an empty array (the rate is undefined, not zero).

    Raises
    ------
    DataError
        If a score array is not 1-D or holds NaN/inf.
    ConfigError
        If ``threshold`` is NaN or not a number.

    Notes
    -----
    ISO/IEC 19795-1 FMR/FNMR over completed comparisons; tie rule of NIST ``make.DET``
    and bob.measure ``farfrr`` (docs/protocol.md §0, §1.1).

    Examples
    --------
    TV1 of docs/protocol.md (ties at the threshold count as matches):

    >>> r = error_rates([0.72, 0.58, 0.44, 0.81, 0.66, 0.39],
    ...                 [0.12, 0.35, 0.41, 0.08, 0.55, 0.29, 0.61, 0.19, 0.47, 0.33], 0.55)
    >>> (r.false_matches, r.n_nonmated, r.fmr, r.false_non_matches, r.n_mated)
    (2, 10, 0.2, 2, 6)
    """
    mated = _as_scores(mated_scores, "mated_scores")
    nonmated = _as_scores(nonmated_scores, "nonmated_scores")
    t = _check_threshold(threshold)
    fm = int(np.count_nonzero(nonmated >= t))
    fnm = int(np.count_nonzero(mated < t))
    return ErrorRates(
        threshold=t,
        false_matches=fm,
        n_nonmated=int(nonmated.size),
        fmr=_rate(fm, int(nonmated.size)),
        false_non_matches=fnm,
        n_mated=int(mated.size),
        fnmr=_rate(fnm, int(mated.size)),
    )


# ----------------------------------------------------------------------------- threshold at FMR
@dataclass(frozen=True)
class ThresholdAtFMR:
    """Threshold calibrated for a target FMR by the order-statistic rule (§0).

    Attributes
    ----------
    target_fmr : float
        Requested FMR, in (0, 1).
    threshold : float
        Smallest threshold whose achieved FMR does not exceed the target.
    achieved_fmr : float
        ``#{non-mated >= threshold} / n_nonmated``; always ``<= target_fmr``.
    k : int
        ``floor(target_fmr * n_nonmated)``: the number of false matches allowed.
    n_nonmated : int
        Number of non-mated scores the threshold was calibrated on.
    support : str
        ``"ok"`` if ``n_nonmated >= 30/target_fmr`` (rule of 30, §5.5), else ``"low"``.
    """

    target_fmr: float
    threshold: float
    achieved_fmr: float
    k: int
    n_nonmated: int
    support: str


def _allowed_false_matches(target: float, n: int) -> int:
    """Largest integer ``k`` with ``k / n <= target`` (evaluated in floating point).

    Equal to ``floor(target * n)`` except where the product rounds below an integer
    (e.g. ``0.29 * 100 = 28.999999999999996`` gives 29 here, since ``29/100 == 0.29``).
    """
    k = int(math.floor(target * n))
    while k + 1 <= n and (k + 1) / n <= target:
        k += 1
    while k > 0 and k / n > target:
        k -= 1
    return k


def _threshold_support(n: int, f: float) -> str:
    """Refuse (fewer than 1/f non-mated scores) or flag (fewer than 30/f, rule of 30) a target FMR.

    Returns ``"ok"`` or ``"low"`` (with an :class:`InsufficientDataWarning` naming the
    caller's frame); raises :class:`InsufficientDataError` when ``n < 1/f``
    (docs/protocol.md §5.5). Shared by the exact and the histogram read-outs.
    """
    if not _supports(n, f, 1.0) or _allowed_false_matches(f, n) == 0:  # k = 0: nothing to calibrate on
        raise InsufficientDataError(
            f"N={n} non-mated comparisons cannot resolve target FMR {f:g}; "
            f"at least 1/target = {1.0 / f:.6g} non-mated scores are needed "
            f"({RULE_OF_30}/target = {RULE_OF_30 / f:.6g} for a precise estimate, rule of 30)"
        )
    if _supports(n, f, RULE_OF_30):
        return "ok"
    warnings.warn(
        f"only N={n} non-mated comparisons for target FMR {f:g}; the rule "
        f"of 30 asks for {RULE_OF_30}/target = {RULE_OF_30 / f:.6g} (support='low')",
        InsufficientDataWarning,
        stacklevel=3,
    )
    return "low"


def threshold_at_fmr(nonmated_scores: ArrayLike, target_fmr: float) -> ThresholdAtFMR:
    """Threshold for a target FMR, never exceeding the target (docs/protocol.md §0).

    Sort the ``N`` non-mated scores descending, ``s(1) >= s(2) >= ...``, and let
    ``k = floor(f * N)``; ``k >= 1`` always, because a target with ``N < 1/f`` (``k = 0``)
    is refused. The threshold is ``s(k)`` when ``s(k) > s(k+1)``; when a tie block
    straddles the cut (``s(k) == s(k+1)``) the threshold moves up to the smallest
    distinct score above the tie block, or to ``nextafter(s(1), +inf)`` ("just above"
    the top score) if the block is at the top. Equivalently: the smallest threshold
    with at most ``k`` non-mated scores ``>= threshold`` -- bob.measure
    ``far_threshold`` semantics. No interpolation (docs/protocol.md §0.3). The
    ``k = 0`` rule (just above the top score, achieved FMR 0) applies only inside
    bootstrap replicates, whose weighted non-mated count can fall below ``1/f``
    (:mod:`bench.metrics.bootstrap`, docs/protocol.md §5.4).

    Parameters
    ----------
    nonmated_scores : array-like of float, shape (N,)
        Non-mated similarity scores of the calibration (reference) population.
    target_fmr : float
        Target FMR ``f`` in the open interval (0, 1).

    Returns
    -------
    ThresholdAtFMR
        ``achieved_fmr <= target_fmr`` always; it is lower when scores tie at the cut.
        ``k`` is computed as the largest integer with ``k/N <= f`` in floating point,
        which equals ``floor(f*N)`` up to rounding of the product.

    Raises
    ------
    ConfigError
        If ``target_fmr`` is not in (0, 1).
    DataError
        If the scores are not 1-D or hold NaN/inf.
    InsufficientDataError
        If ``N < 1/f`` (including ``N = 0``), i.e. ``k = 0``: the target cannot be resolved.

    Warns
    -----
    InsufficientDataWarning
        If ``1/f <= N < 30/f``: the result has ``support="low"`` (rule of 30, §5.5).

    Examples
    --------
    TV2 of docs/protocol.md (N = 20, f = 0.10):

    >>> s = [0.05, 0.11, 0.14, 0.18, 0.21, 0.22, 0.25, 0.27, 0.30, 0.31,
    ...      0.33, 0.36, 0.38, 0.40, 0.42, 0.44, 0.47, 0.52, 0.58, 0.63]
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     r = threshold_at_fmr(s, 0.10)
    >>> (r.threshold, r.achieved_fmr, r.k, r.support)
    (0.58, 0.1, 2, 'low')
    """
    f = _check_target(target_fmr)
    scores = _as_scores(nonmated_scores, "nonmated_scores")
    n = int(scores.size)
    support = _threshold_support(n, f)
    asc = np.sort(scores)
    k = _allowed_false_matches(f, n)  # 1 <= k < n: k = 0 was refused above, f < 1
    top = float(asc[-1])
    v = asc[n - k]  # k-th largest score, s(k)
    below = asc[n - k - 1]  # s(k+1); exists since k < n
    if v > below:
        threshold = float(v)
    else:
        # tie straddles the cut: smallest distinct score above the tie block
        j = int(np.searchsorted(asc, v, side="right"))
        threshold = float(asc[j]) if j < n else float(np.nextafter(top, np.inf))
    count = n - int(np.searchsorted(asc, threshold, side="left"))
    return ThresholdAtFMR(
        target_fmr=f,
        threshold=threshold,
        achieved_fmr=count / n,
        k=k,
        n_nonmated=n,
        support=support,
    )


# ----------------------------------------------------------------------------- DET and EER
def _require_nonempty(arr: NDArray[np.float64], name: str, what: str) -> None:
    if arr.size == 0:
        raise DataError(f"{name}: empty; {what} needs at least one score")


def _counts_at(
    mated_sorted: NDArray[np.float64],
    nonmated_sorted: NDArray[np.float64],
    thresholds: NDArray[np.float64],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(false matches, false non-matches) at each threshold; inputs sorted ascending."""
    fm = nonmated_sorted.size - np.searchsorted(nonmated_sorted, thresholds, side="left")
    fnm = np.searchsorted(mated_sorted, thresholds, side="left")
    return fm.astype(np.int64), fnm.astype(np.int64)


@dataclass(frozen=True)
class DetCurve:
    """Exact empirical DET curve at every distinct observed score (docs/protocol.md §1.3).

    Attributes
    ----------
    thresholds : ndarray of float, shape (m,)
        Strictly increasing distinct scores observed in either class.
    fmr : ndarray of float, shape (m,)
        ``FMR(thresholds[i])``; non-increasing.
    fnmr : ndarray of float, shape (m,)
        ``FNMR(thresholds[i])``; non-decreasing.
    n_mated, n_nonmated : int
        Denominators of ``fnmr`` and ``fmr``.
    """

    thresholds: NDArray[np.float64]
    fmr: NDArray[np.float64]
    fnmr: NDArray[np.float64]
    n_mated: int
    n_nonmated: int


def det_curve(mated_scores: ArrayLike, nonmated_scores: ArrayLike) -> DetCurve:
    """Exact DET curve: (FMR, FNMR) at every distinct observed score.

    Parameters
    ----------
    mated_scores : array-like of float, shape (n_mated,)
        Mated similarity scores (n_mated >= 1).
    nonmated_scores : array-like of float, shape (n_nonmated,)
        Non-mated similarity scores (n_nonmated >= 1).

    Returns
    -------
    DetCurve
        ``thresholds`` are the sorted distinct values of both arrays; match iff
        ``score >= threshold``. Same points as ``sklearn.metrics.roc_curve(...,
        drop_intermediate=False)`` without its leading ``+inf`` threshold
        (``fmr = fpr``, ``fnmr = 1 - tpr``), in ascending threshold order.
        Cost: O(n log n).

    Raises
    ------
    DataError
        If either array is empty, not 1-D, or holds NaN/inf.
    """
    mated = np.sort(_as_scores(mated_scores, "mated_scores"))
    nonmated = np.sort(_as_scores(nonmated_scores, "nonmated_scores"))
    _require_nonempty(mated, "mated_scores", "det_curve")
    _require_nonempty(nonmated, "nonmated_scores", "det_curve")
    thresholds = np.unique(np.concatenate([mated, nonmated]))
    fm, fnm = _counts_at(mated, nonmated, thresholds)
    return DetCurve(
        thresholds=thresholds,
        fmr=fm / nonmated.size,
        fnmr=fnm / mated.size,
        n_mated=int(mated.size),
        n_nonmated=int(nonmated.size),
    )


@dataclass(frozen=True)
class EqualErrorRate:
    """Equal error rate and where it was read (docs/protocol.md §1.4).

    Attributes
    ----------
    eer : float
        ``(fmr + fnmr) / 2`` at ``threshold`` (bob.measure ``eer``).
    threshold : float
        The chosen candidate threshold (an observed score; match iff ``score >= threshold``).
    fmr, fnmr : float
        Rates at ``threshold``.
    low, high : float
        ``min(fmr, fnmr)`` and ``max(fmr, fnmr)``: the EER lies between them.
    crossing : float
        Where the FMR and FNMR step curves cross: the rate at which the straight DET
        segment between the last threshold with ``FMR > FNMR`` and the first with
        ``FMR < FNMR`` meets ``FMR = FNMR`` (equal to ``eer`` when some threshold has
        ``FMR == FNMR``). Reported because with ties the minimum-gap rule can leave a
        gap (``low < high``) and, among tied gaps, pick either side of the crossing.
    """

    eer: float
    threshold: float
    fmr: float
    fnmr: float
    low: float
    high: float
    crossing: float = math.nan


def eer_from_counts(
    thresholds: NDArray[np.float64], false_matches: NDArray[np.int64], false_non_matches: NDArray[np.int64],
    n_mated: int, n_nonmated: int,
) -> EqualErrorRate:
    """The EER rule over candidate thresholds given as error counts (exact and binned read-outs).

    Parameters
    ----------
    thresholds : ndarray of float, shape (m,)
        Candidate thresholds, strictly increasing (m >= 1).
    false_matches : ndarray of int, shape (m,)
        Non-mated comparisons with ``score >= thresholds[i]`` (non-increasing).
    false_non_matches : ndarray of int, shape (m,)
        Mated comparisons with ``score < thresholds[i]`` (non-decreasing).
    n_mated, n_nonmated : int
        Denominators (both >= 1).

    Returns
    -------
    EqualErrorRate

    Notes
    -----
    bob.measure's rule (``eer_threshold``: ``_minimizing_threshold`` with the absolute
    difference), stated in counts (docs/protocol.md §1.4):

    1. the gap is ``|FMR(t) - FNMR(t)|``, compared exactly as the integer
       ``|FM * n_mated - FNM * n_nonmated|``;
    2. scanning the candidates upward while both classes still have a score at or
       above ``t``, the **last** (largest) threshold reaching the smallest gap so far
       is kept -- on tied gaps the larger threshold wins;
    3. the first candidate at which one class is exhausted (``FM = 0`` or
       ``FNM = n_mated``) replaces that choice only if its gap is strictly smaller,
       and thresholds beyond it never do.

    bob.measure reports the midpoint between two observed scores as its threshold;
    fvbench reports the observed score at the upper end of that interval, which gives
    the same decisions and rates. bob.measure accumulates the rates in floating point,
    so on a tie that its rounding splits it can differ from the exact rule here.
    """
    fm = np.asarray(false_matches, dtype=np.int64)
    fnm = np.asarray(false_non_matches, dtype=np.int64)
    if n_nonmated * n_mated < 2**62:
        gap = np.abs(fm * n_mated - fnm * n_nonmated)
        diff = fm * n_mated - fnm * n_nonmated
    else:  # int64 would overflow: Python integers (slow, huge inputs only)
        diff = fm.astype(object) * n_mated - fnm.astype(object) * n_nonmated
        gap = np.abs(diff)
    m = gap.size
    exhausted = np.flatnonzero((fm == 0) | (fnm == n_mated))
    stop = int(exhausted[0]) if exhausted.size else m
    stop = max(stop, 1)  # candidate 0 (the lowest score) always has FM = n_nonmated > 0 and FNM = 0
    head = gap[:stop]
    best = head.min()
    i = int(np.flatnonzero(head == best)[-1])  # ties: the larger threshold
    if stop < m and gap[stop] < best:
        i = stop
    fmr = int(fm[i]) / n_nonmated
    fnmr = int(fnm[i]) / n_mated
    # crossing of the two step curves along the DET polyline (end point: FMR 0, FNMR 1)
    zero = np.flatnonzero(diff == 0)
    if zero.size:
        crossing = int(fm[zero[0]]) / n_nonmated
    else:
        j = int(np.flatnonzero(diff > 0)[-1])  # diff[0] > 0: FMR(lowest) = 1 > 0 = FNMR(lowest)
        x0, y0 = int(fm[j]) / n_nonmated, int(fnm[j]) / n_mated
        x1, y1 = (int(fm[j + 1]) / n_nonmated, int(fnm[j + 1]) / n_mated) if j + 1 < m else (0.0, 1.0)
        lam = (x0 - y0) / ((x0 - y0) - (x1 - y1))
        crossing = x0 + lam * (x1 - x0)
    return EqualErrorRate(
        eer=(fmr + fnmr) / 2.0,
        threshold=float(thresholds[i]),
        fmr=float(fmr),
        fnmr=float(fnmr),
        low=float(min(fmr, fnmr)),
        high=float(max(fmr, fnmr)),
        crossing=float(crossing),
    )


def equal_error_rate(mated_scores: ArrayLike, nonmated_scores: ArrayLike) -> EqualErrorRate:
    """Equal error rate, bob.measure ``eer`` rule (docs/protocol.md §1.4).

    Candidate thresholds are all distinct observed scores (mated and non-mated). The
    chosen threshold minimises ``|FMR(t) - FNMR(t)|`` (compared exactly in integer
    counts); on tied gaps the **larger** threshold is chosen, as bob.measure does
    (details and the one exception in :func:`eer_from_counts`). The EER is
    ``(FMR + FNMR) / 2`` there, with the bracket ``[min, max]`` of the two rates and the
    ``crossing`` of the two step curves.

    Parameters
    ----------
    mated_scores : array-like of float, shape (n_mated,)
        Mated similarity scores (n_mated >= 1).
    nonmated_scores : array-like of float, shape (n_nonmated,)
        Non-mated similarity scores (n_nonmated >= 1).

    Returns
    -------
    EqualErrorRate

    Raises
    ------
    DataError
        If either array is empty, not 1-D, or holds NaN/inf.

    Notes
    -----
    O(n log n): one sort per class and a ``searchsorted`` over the candidates.
    EER is a separability descriptor, not an operating point (§1.4).

    Examples
    --------
    TV1 (docs/protocol.md, test vectors):

    >>> e = equal_error_rate([0.72, 0.58, 0.44, 0.81, 0.66, 0.39],
    ...                      [0.12, 0.35, 0.41, 0.08, 0.55, 0.29, 0.61, 0.19, 0.47, 0.33])
    >>> round(e.eer, 5), e.threshold
    (0.31667, 0.47)

    A tie of gaps on both sides of the crossing (gap 1/4 at t = 0.25: FMR 1/4, FNMR 0;
    and at t = 0.28: FMR 1/4, FNMR 1/2): the larger threshold is kept, and the step
    curves cross at 1/4:

    >>> e = equal_error_rate([0.25, 0.35], [0.1, 0.15, 0.22, 0.28])
    >>> e.threshold, e.eer, e.low, e.high, e.crossing
    (0.28, 0.375, 0.25, 0.5, 0.25)
    """
    mated = np.sort(_as_scores(mated_scores, "mated_scores"))
    nonmated = np.sort(_as_scores(nonmated_scores, "nonmated_scores"))
    _require_nonempty(mated, "mated_scores", "equal_error_rate")
    _require_nonempty(nonmated, "nonmated_scores", "equal_error_rate")
    candidates = np.unique(np.concatenate([mated, nonmated]))
    fm, fnm = _counts_at(mated, nonmated, candidates)
    return eer_from_counts(candidates, fm, fnm, int(mated.size), int(nonmated.size))


# ----------------------------------------------------------------------------- sanity
def score_sanity_check(mated_scores: ArrayLike, nonmated_scores: ArrayLike) -> None:
    """Warn if the scores look like distances rather than similarities.

    Parameters
    ----------
    mated_scores, nonmated_scores : array-like of float, 1-D
        Scores of each class. If either is empty nothing is checked.

    Raises
    ------
    DataError
        If an array is not 1-D or holds NaN/inf.

    Warns
    -----
    ScoreSanityWarning
        If ``mean(mated) <= mean(nonmated)``: fvbench expects similarities (higher =
        more alike, docs/protocol.md §0); distances must be negated in the scoring
        layer, never in the metrics.
    """
    mated = _as_scores(mated_scores, "mated_scores")
    nonmated = _as_scores(nonmated_scores, "nonmated_scores")
    if mated.size == 0 or nonmated.size == 0:
        return
    m_mean = float(mated.mean())
    n_mean = float(nonmated.mean())
    if m_mean <= n_mean:
        warnings.warn(
            f"mean mated score {m_mean:.6g} <= mean non-mated score {n_mean:.6g}: the "
            "scores look like distances (lower = more alike) or the mated labels are "
            "wrong; fvbench expects similarities (higher = more alike) -- negate "
            "distances in the scoring layer",
            ScoreSanityWarning,
            stacklevel=2,
        )


# ----------------------------------------------------------------------------- generalized rates
def _check_unit(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: expected a rate in [0, 1], got {value!r}") from err
    if not math.isnan(v) and not (0.0 <= v <= 1.0):
        raise DataError(f"{name}: expected a rate in [0, 1], got {v!r}")
    return v


def transaction_rates(fmr: float, fnmr: float, fta: float, fte: float = 0.0) -> dict[str, float]:
    """Fold failures to acquire/enrol into transaction and generalized rates (§1.2).

    ``FAR = FMR (1 - FTA)``, ``FRR = FTA + FNMR (1 - FTA)``,
    ``GFAR = FMR (1 - FTA)(1 - FTE)``, ``GFRR = 1 - (1 - FTE)(1 - FTA)(1 - FNMR)``
    (ISO/IEC 19795-1 family as in docs/protocol.md §1.2; bob.bio.base help text for
    FAR/FRR). Single attempt, single reference.

    Parameters
    ----------
    fmr, fnmr, fta : float in [0, 1]
        Rates over completed comparisons and the failure-to-acquire rate. NaN propagates.
    fte : float in [0, 1], default 0.0
        Failure-to-enrol rate.

    Returns
    -------
    dict
        Keys ``"far"``, ``"frr"``, ``"gfar"``, ``"gfrr"``.

    Raises
    ------
    DataError
        If a rate lies outside [0, 1].

    Examples
    --------
    TV8 of docs/protocol.md:

    >>> r = transaction_rates(0.001, 0.03, 0.05, fte=0.02)
    >>> {k: round(v, 6) for k, v in r.items()}
    {'far': 0.00095, 'frr': 0.0785, 'gfar': 0.000931, 'gfrr': 0.09693}
    """
    fmr = _check_unit(fmr, "fmr")
    fnmr = _check_unit(fnmr, "fnmr")
    fta = _check_unit(fta, "fta")
    fte = _check_unit(fte, "fte")
    return {
        "far": fmr * (1.0 - fta),
        "frr": fta + fnmr * (1.0 - fta),
        "gfar": fmr * (1.0 - fta) * (1.0 - fte),
        "gfrr": 1.0 - (1.0 - fte) * (1.0 - fta) * (1.0 - fnmr),
    }
