"""Power analysis: how many subjects (and images per subject) detect a differential?

``fvbench-power`` answers the planner's question of design.md: "How many consented
subjects per group must we collect to detect a 2x FMR differential at FMR = 1e-4?"
It simulates the study many times from the synthetic generator
(:mod:`bench.synthetic.generator`) and counts how often the harness's own analysis -- the
subject-level bootstrap (metrics-reference §5.2-5.3) -- detects the differential.

Scenario
--------
A *reference* group (by default the largest group of the dlib x FRL London
calibration) and a *comparison* group. The decision threshold ``t`` is set where the
reference group's true FMR equals ``target_fmr``; the comparison group's parameters
are solved on the ground truth (:mod:`bench.synthetic.truth`) so that at ``t``

    FMR_cmp  = fmr_ratio * target_fmr,      FNMR_cmp = FNMR_ref + fnmr_difference

(``image_noise`` sets FNMR, then ``identity_spread`` sets FMR). The threshold is held
fixed in every simulated study (an operating point given in advance, §5.4 "external
threshold").

Test
----
Per simulated study, both groups are drawn (``n`` subjects each, ``m`` images per
subject), every within-group comparison is scored, and ``B`` stratified subject-level
bootstrap replicates give the percentile interval (level ``1 - alpha``, the
harness's conservative order-statistic convention) of ``rate_cmp - rate_ref``, per
metric. The study *detects* the differential iff that interval excludes 0 -- a
two-sided test of equal rates at level ``alpha``. Power = share of studies that
detect it (with its binomial Monte Carlo standard error).

Design-effect assumption
------------------------
Comparisons sharing a subject are correlated, so ``N`` comparisons carry less
information than ``N`` independent trials: ``Var(rate) ~= p(1 - p)/N * DEFF``
(Kish, metrics-reference §5.1). The simulation *assumes the generator's dependence
structure*: per-subject identity position (some people resemble many others) and
per-subject image noise (``image_noise_sd``; some people are unstable) as calibrated.
The empirical ``DEFF`` of every design is reported. If the real system has stronger
subject effects (Doddington's zoo) than the generator, the subjects needed grow
roughly in proportion to the ratio of design effects. Failures to acquire are not
simulated (FTA rate 0): with an FTA rate ``f`` a group keeps about ``(1-f)^2`` of its
comparisons, so plan about ``1/(1-f)`` more subjects for FMR (``n^2`` comparisons) and
``1/(1-f)^2`` more for FNMR.

Known answer
------------
With two images per subject, each subject contributes exactly one mated comparison,
so FNMR counts are Binomial(n, FNMR) and the bootstrap of a subject is the
bootstrap of one Bernoulli trial. :func:`binomial_power` computes the power of the
same percentile-bootstrap test exactly (``B -> infinity``) by enumerating the two
binomial counts; ``tests/test_power.py`` checks the simulation against it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from bench.synthetic.generator import GroupSpec, SyntheticPopulation
from bench.errors import BenchError, ConfigError
from bench.synthetic.truth import ReducedDraws, mated_law, nonmated_law

__all__ = [
    "PowerScenario",
    "StudyOutcome",
    "make_scenario",
    "simulate_study",
    "simulate_power",
    "power_curve",
    "required_subjects",
    "binomial_power",
    "normal_subjects",
    "plot_power",
    "power_answer",
    "power_main",
]

log = logging.getLogger(__name__)

METRICS = ("FMR", "FNMR")


# ----------------------------------------------------------------------------- scenario
@dataclass(frozen=True)
class PowerScenario:
    """Two groups with known true rates at a fixed threshold.

    Attributes
    ----------
    dim : int
        Embedding dimension of the generator.
    reference, comparison : GroupSpec
        Generator parameters of the two groups (``subjects`` and
        ``images_per_subject`` are placeholders; studies set them).
    threshold : float
        Decision threshold (generator cosine); match iff ``score >= threshold``.
    true_rates : dict
        ``{"FMR": (ref, cmp), "FNMR": (ref, cmp)}`` true rates at ``threshold``.
    target_fmr, fmr_ratio, fnmr_difference : float
        The hypotheses the scenario was built for.
    """

    dim: int
    reference: GroupSpec
    comparison: GroupSpec
    threshold: float
    true_rates: dict[str, tuple[float, float]]
    target_fmr: float
    fmr_ratio: float
    fnmr_difference: float

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable description."""
        out = asdict(self)
        out["true_rates"] = {k: list(v) for k, v in self.true_rates.items()}
        return out


def _solve_log(f, lo: float, hi: float, what: str) -> float:
    """Root of an increasing/decreasing ``f`` in ``log`` space on ``[lo, hi]``."""
    a, b = f(math.log(lo)), f(math.log(hi))
    if a * b > 0:
        raise ConfigError(f"power scenario: no {what} in [{lo:g}, {hi:g}] reaches the requested rate (ends give {a:+.3g}, {b:+.3g})")
    return math.exp(optimize.brentq(f, math.log(lo), math.log(hi), xtol=1e-10, rtol=1e-10))


def make_scenario(
    reference: GroupSpec,
    dim: int,
    *,
    target_fmr: float,
    fmr_ratio: float = 1.0,
    fnmr_difference: float = 0.0,
    n_truth: int = 400_000,
    seed: int = 0,
) -> PowerScenario:
    """Build the two-group scenario (module docstring) on the ground truth.

    Parameters
    ----------
    reference : GroupSpec
        Reference group's generator parameters.
    dim : int
        Embedding dimension (>= 4).
    target_fmr : float in (0, 1)
        Reference group's true FMR at the threshold.
    fmr_ratio : float > 0, default 1
        ``FMR_cmp / FMR_ref`` at the threshold.
    fnmr_difference : float, default 0
        ``FNMR_cmp - FNMR_ref`` at the threshold.
    n_truth : int
        Draws of the ground-truth laws (common random numbers for the solves).
    seed : int

    Returns
    -------
    PowerScenario

    Raises
    ------
    ConfigError
        If a target is out of range or cannot be reached by the generator.
    """
    if not 0 < target_fmr < 1:
        raise ConfigError(f"target_fmr must be in (0, 1), got {target_fmr!r}")
    if not fmr_ratio > 0 or not 0 < fmr_ratio * target_fmr < 1:
        raise ConfigError(f"fmr_ratio must be > 0 with fmr_ratio * target_fmr < 1, got {fmr_ratio!r}")
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(21,)))
    draws_m = ReducedDraws.random(rng, n_truth, dim)
    draws_n = ReducedDraws.random(rng, n_truth, dim)
    ref_nm = nonmated_law(reference, reference, dim, draws_n)
    t = ref_nm.threshold_at_sf(target_fmr)
    fnmr_ref = float(mated_law(reference, dim, draws_m).cdf([t])[0])
    fnmr_cmp = fnmr_ref + fnmr_difference
    if not 0 < fnmr_cmp < 1:
        raise ConfigError(f"fnmr_difference {fnmr_difference!r}: comparison FNMR {fnmr_cmp:.4g} outside (0, 1) (reference FNMR {fnmr_ref:.4g})")
    cmp = reference
    if fnmr_difference != 0:
        noise = _solve_log(
            lambda ln: float(mated_law(replace(reference, image_noise=math.exp(ln)), dim, draws_m).cdf([t])[0]) - fnmr_cmp,
            1e-3, 20.0, "image_noise",
        )
        cmp = replace(cmp, image_noise=noise)
    fmr_cmp = fmr_ratio * target_fmr
    spread = _solve_log(
        lambda ls: float(nonmated_law(replace(cmp, identity_spread=math.exp(ls)), replace(cmp, identity_spread=math.exp(ls)), dim, draws_n).sf([t])[0]) - fmr_cmp,
        1e-2, 100.0, "identity_spread",
    )
    cmp = replace(cmp, identity_spread=spread, labels=None)
    # report the solved rates on the same draws
    fmr_c = float(nonmated_law(cmp, cmp, dim, draws_n).sf([t])[0])
    fnmr_c = float(mated_law(cmp, dim, draws_m).cdf([t])[0])
    return PowerScenario(
        dim=int(dim),
        reference=replace(reference, labels=None, fta_rate=0.0),
        comparison=replace(cmp, fta_rate=0.0),
        threshold=float(t),
        true_rates={"FMR": (float(target_fmr), fmr_c), "FNMR": (fnmr_ref, fnmr_c)},
        target_fmr=float(target_fmr),
        fmr_ratio=float(fmr_ratio),
        fnmr_difference=float(fnmr_difference),
    )


# ----------------------------------------------------------------------------- one study
@dataclass(frozen=True)
class _Counts:
    """Error counts of one simulated group, aggregated per subject / subject pair."""

    n: int
    m: int
    pair_i: np.ndarray  # subject pairs (i < j) with >= 1 false match
    pair_j: np.ndarray
    pair_fm: np.ndarray  # false matches among the m*m comparisons of the pair
    fnm: np.ndarray  # (n,) false non-matches among the C(m,2) mated comparisons


def _group_counts(spec: GroupSpec, dim: int, n: int, m: int, threshold: float, seed: int, block_rows: int = 2048) -> _Counts:
    """Score every within-group comparison (blockwise) and aggregate the errors."""
    pop = SyntheticPopulation({"g": {**asdict(replace(spec, subjects=n, images_per_subject=m, fta_rate=0.0, labels=None))}}, dim=dim, seed=seed)
    x = np.concatenate([c.embeddings for c in pop.iter_chunks(chunk_subjects=max(n, 1))]).astype(np.float32)  # (n, m, d)
    flat = x.reshape(n * m, dim)
    ii, jj, vv = [], [], []
    fnm = np.zeros(n, dtype=np.int64)
    bs = max(1, block_rows // m)
    tri = np.triu(np.ones((m, m), dtype=bool), k=1)
    for lo in range(0, n, bs):
        hi = min(n, lo + bs)
        s = flat[lo * m : hi * m] @ flat.T  # (b*m, n*m)
        hits = (s >= threshold).reshape(hi - lo, m, n, m)
        counts = hits.sum(axis=(1, 3))  # (b, n)
        local = np.arange(lo, hi)
        diag = s.reshape(hi - lo, m, n, m)[np.arange(hi - lo), :, local, :]  # (b, m, m)
        fnm[lo:hi] = ((diag < threshold) & tri).sum(axis=(1, 2))
        counts[np.arange(hi - lo), local] = 0
        bi, bj = np.nonzero(counts)
        keep = local[bi] < bj  # each unordered pair once
        ii.append(local[bi][keep])
        jj.append(bj[keep])
        vv.append(counts[bi[keep], bj[keep]])
    return _Counts(n=n, m=m, pair_i=np.concatenate(ii), pair_j=np.concatenate(jj), pair_fm=np.concatenate(vv).astype(np.float64), fnm=fnm)


def _point_rates(c: _Counts) -> tuple[float, float]:
    n_nm = c.m * c.m * c.n * (c.n - 1) / 2.0
    n_m = c.n * c.m * (c.m - 1) / 2.0
    return float(c.pair_fm.sum() / n_nm), float(c.fnm.sum() / n_m) if n_m else math.nan


def _replicate_rates(c: _Counts, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FMR (two-subject) and FNMR (cluster) of bootstrap replicates with subject counts ``(B, n)``.

    Same estimators as :mod:`bench.metrics.bootstrap` (§5.2-5.3) for a group with no
    FTA: pair ``(i, j)`` weighs ``c_i c_j`` and copies of one subject never pair with
    each other; subject ``i``'s mated comparisons weigh ``c_i``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    b = counts.shape[0]
    total = counts.sum(axis=1)
    pairs_w = (total * total - (counts * counts).sum(axis=1)) / 2.0  # sum_{i<j} c_i c_j
    num = np.zeros(b)
    step = max(1, 5_000_000 // max(c.pair_i.size, 1))
    for lo in range(0, b, step):
        sl = slice(lo, lo + step)
        num[sl] = (counts[sl][:, c.pair_i] * counts[sl][:, c.pair_j]) @ c.pair_fm
    with np.errstate(invalid="ignore", divide="ignore"):
        fmr = num / (c.m * c.m * pairs_w)
        fnmr = (counts @ c.fnm.astype(np.float64)) / (total * c.m * (c.m - 1) / 2.0)
    return fmr, fnmr


def _bootstrap_rates(c: _Counts, n_bootstrap: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Subject-level bootstrap replicates (B,) of FMR and FNMR: subjects drawn with replacement."""
    idx = rng.integers(0, c.n, size=(n_bootstrap, c.n)) + (np.arange(n_bootstrap) * c.n)[:, None]
    counts = np.bincount(idx.ravel(), minlength=n_bootstrap * c.n).reshape(n_bootstrap, c.n)
    return _replicate_rates(c, counts)


def _excludes_zero(diff: np.ndarray, alpha: float) -> bool:
    """Percentile interval (order statistics: lower rounded down, upper up) excludes 0."""
    v = diff[~np.isnan(diff)]
    if v.size == 0:
        return False
    lo = float(np.quantile(v, alpha / 2.0, method="lower"))
    hi = float(np.quantile(v, 1.0 - alpha / 2.0, method="higher"))
    return lo > 0.0 or hi < 0.0


@dataclass(frozen=True)
class StudyOutcome:
    """One simulated study: point estimates and decisions per metric.

    Attributes
    ----------
    estimates : dict
        ``metric -> (reference rate, comparison rate)`` observed.
    detected : dict
        ``metric -> bool``: the bootstrap interval of the difference excludes 0.
    """

    estimates: dict[str, tuple[float, float]]
    detected: dict[str, bool]


def simulate_study(
    scenario: PowerScenario, n_subjects: int, images_per_subject: int, *, n_bootstrap: int = 500, alpha: float = 0.05, seed: int = 0
) -> StudyOutcome:
    """Draw one study (both groups), score it, bootstrap it and decide (module docstring).

    Parameters
    ----------
    scenario : PowerScenario
    n_subjects : int
        Subjects per group (>= 2).
    images_per_subject : int
        Images per subject (>= 2, so that FNMR is defined).
    n_bootstrap : int, default 500
        Bootstrap replicates ``B`` of each group.
    alpha : float, default 0.05
        Two-sided level of the test.
    seed : int
        Seed of the study (populations and bootstrap).

    Returns
    -------
    StudyOutcome
    """
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(31,))
    s_ref, s_cmp, s_boot = (int(s.generate_state(1)[0]) for s in ss.spawn(3))
    ref = _group_counts(scenario.reference, scenario.dim, n_subjects, images_per_subject, scenario.threshold, s_ref)
    cmp = _group_counts(scenario.comparison, scenario.dim, n_subjects, images_per_subject, scenario.threshold, s_cmp)
    rng = np.random.default_rng(s_boot)
    fr, nr = _bootstrap_rates(ref, n_bootstrap, rng)
    fc, nc = _bootstrap_rates(cmp, n_bootstrap, rng)
    pr, pc = _point_rates(ref), _point_rates(cmp)
    return StudyOutcome(
        estimates={"FMR": (pr[0], pc[0]), "FNMR": (pr[1], pc[1])},
        detected={"FMR": _excludes_zero(fc - fr, alpha), "FNMR": _excludes_zero(nc - nr, alpha)},
    )


def _check_design(n_subjects: int, images_per_subject: int, replicates: int, n_bootstrap: int, alpha: float) -> None:
    if n_subjects < 2:
        raise ConfigError(f"subjects per group must be >= 2, got {n_subjects!r}")
    if images_per_subject < 2:
        raise ConfigError(f"images_per_subject must be >= 2 (FNMR needs mated pairs), got {images_per_subject!r}")
    if replicates < 1 or n_bootstrap < 1:
        raise ConfigError(f"replicates and n_bootstrap must be >= 1, got {replicates!r}, {n_bootstrap!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")


def simulate_power(
    scenario: PowerScenario,
    n_subjects: int,
    images_per_subject: int = 2,
    *,
    replicates: int = 200,
    n_bootstrap: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
    on_replicate: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Power of one design, by ``replicates`` simulated studies.

    ``on_replicate`` (optional) is called after each simulated study (progress bars).

    Returns
    -------
    dict
        ``subjects, images_per_subject, replicates`` and per metric ``M`` in FMR,
        FNMR: ``power_M`` (share of studies detecting the differential),
        ``power_M_se`` (binomial Monte Carlo SE), ``comparisons_M`` (per group),
        ``deff_M`` (empirical design effect of the reference group's rate:
        variance over studies / binomial variance; NaN when the true rate is 0).
    """
    _check_design(n_subjects, images_per_subject, replicates, n_bootstrap, alpha)
    hits = {m: 0 for m in METRICS}
    est: dict[str, list[float]] = {m: [] for m in METRICS}
    for r in range(replicates):
        out = simulate_study(scenario, n_subjects, images_per_subject, n_bootstrap=n_bootstrap, alpha=alpha, seed=seed * 1_000_003 + r)
        for m in METRICS:
            hits[m] += bool(out.detected[m])
            est[m].append(out.estimates[m][0])
        if on_replicate is not None:
            on_replicate()
    n, k = n_subjects, images_per_subject
    comps = {"FMR": k * k * n * (n - 1) / 2.0, "FNMR": n * k * (k - 1) / 2.0}
    row: dict[str, Any] = {"subjects": n, "images_per_subject": k, "replicates": replicates}
    for m in METRICS:
        p = hits[m] / replicates
        row[f"power_{m}"] = p
        row[f"power_{m}_se"] = math.sqrt(max(p * (1 - p), 1.0 / replicates) / replicates)
        row[f"comparisons_{m}"] = comps[m]
        true = scenario.true_rates[m][0]
        var_binom = true * (1 - true) / comps[m]
        row[f"deff_{m}"] = float(np.var(est[m], ddof=1) / var_binom) if replicates > 1 and var_binom > 0 else math.nan
    return row


def power_curve(
    scenario: PowerScenario,
    subjects: Sequence[int],
    images_per_subject: Sequence[int] = (2,),
    *,
    replicates: int = 200,
    n_bootstrap: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """:func:`simulate_power` over a grid of designs; one row per (images, subjects).

    ``progress`` shows a tqdm bar counting simulated studies (designs x replicates),
    weighted by subjects^2 so that its ETA is steady (a study's cost grows with the
    number of non-mated comparisons).
    """
    from tqdm.auto import tqdm

    grid = sorted(set(int(s) for s in subjects))
    total = len(images_per_subject) * replicates * sum(n * n for n in grid)
    rows = []
    with tqdm(total=total, desc="power: simulated studies (weighted by subjects^2)", disable=not progress, unit="", smoothing=0.0,
              bar_format="{l_bar}{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]") as bar:
        for k in images_per_subject:
            for i, n in enumerate(grid):
                log.info("power: %d subjects x %d images per group", n, k)
                rows.append(simulate_power(scenario, n, k, replicates=replicates, n_bootstrap=n_bootstrap, alpha=alpha,
                                           seed=seed + 7919 * i + 104729 * k, on_replicate=lambda w=n * n: bar.update(w)))
    return pd.DataFrame(rows)


def required_subjects(curve: pd.DataFrame, target_power: float) -> pd.DataFrame:
    """Smallest simulated number of subjects reaching ``target_power``, per metric and images.

    Returns
    -------
    pandas.DataFrame
        Columns ``metric, images_per_subject, subjects_needed`` (smallest grid value
        whose power >= target; NaN if none), ``subjects_interpolated`` (log-linear
        interpolation of power between the bracketing grid points), ``power_at_needed``,
        and the grid point below it, ``subjects_below`` / ``power_below`` (NaN when the
        first grid point already reaches the target).
    """
    rows = []
    for m in METRICS:
        for k, part in curve.groupby("images_per_subject"):
            part = part.sort_values("subjects")
            ns = part["subjects"].to_numpy(dtype=float)
            pw = part[f"power_{m}"].to_numpy(dtype=float)
            ok = np.flatnonzero(pw >= target_power)
            need, interp, at = math.nan, math.nan, math.nan
            below, below_power = math.nan, math.nan
            if ok.size:
                j = int(ok[0])
                need, at = ns[j], pw[j]
                if j > 0 and pw[j] > pw[j - 1]:
                    w = (target_power - pw[j - 1]) / (pw[j] - pw[j - 1])
                    interp = float(np.exp(np.log(ns[j - 1]) + w * (np.log(ns[j]) - np.log(ns[j - 1]))))
                else:
                    interp = ns[j]
                if j > 0:
                    below, below_power = ns[j - 1], pw[j - 1]
            rows.append({"metric": m, "images_per_subject": int(k), "subjects_needed": need, "subjects_interpolated": interp,
                         "power_at_needed": at, "subjects_below": below, "power_below": below_power})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- known answers
def _support(n: int, p: float, tail: float = 1e-12) -> np.ndarray:
    """Counts of Binomial(n, p) outside which the probability is below ``tail``."""
    if p <= 0.0 or p >= 1.0:
        return np.array([int(round(p * n))])
    return np.arange(int(stats.binom.ppf(tail, n, p)), int(stats.binom.isf(tail, n, p)) + 1)


def binomial_power(p_ref: float, p_cmp: float, n: int, alpha: float = 0.05) -> float:
    """Exact power of the percentile-bootstrap test for independent trials.

    Each group has ``n`` independent Bernoulli trials (e.g. one mated comparison per
    subject with two images per subject). Given observed counts ``x_ref, x_cmp``, the
    bootstrap law of a group's rate is ``Binomial(n, x/n)/n``; with ``B -> infinity``
    the percentile test of :func:`simulate_study` rejects iff ``P*(D <= 0) < alpha/2``
    or ``P*(D < 0) >= 1 - alpha/2`` for the bootstrap difference
    ``D = X*_cmp/n - X*_ref/n``. The power is the ``Binomial(n, p_ref) x
    Binomial(n, p_cmp)`` probability of the rejecting counts (tails below 1e-12
    dropped).

    Parameters
    ----------
    p_ref, p_cmp : float in [0, 1]
        True rates.
    n : int
        Trials per group (>= 1).
    alpha : float in (0, 1)

    Returns
    -------
    float
        Power in [0, 1].
    """
    if n < 1 or not 0 < alpha < 1:
        raise ConfigError(f"binomial_power: need n >= 1 and alpha in (0, 1), got n={n!r}, alpha={alpha!r}")
    xr, xc = _support(n, p_ref), _support(n, p_cmp)
    # bootstrap laws: rows = observed count, columns = resampled count y of the reference
    y = np.arange(int(_support(n, xr.min() / n).min()), int(_support(n, xr.max() / n).max()) + 1)
    pmf_r = stats.binom.pmf(y[None, :], n, (xr / n)[:, None])  # (|xr|, |y|)
    cdf_c = stats.binom.cdf(y[None, :], n, (xc / n)[:, None])  # P*(X*_cmp <= y)
    cdf_c1 = stats.binom.cdf(y[None, :] - 1, n, (xc / n)[:, None])  # P*(X*_cmp < y)
    le = pmf_r @ cdf_c.T  # P*(X*_cmp <= X*_ref) = P*(D <= 0), shape (|xr|, |xc|)
    lt = pmf_r @ cdf_c1.T  # P*(D < 0)
    reject = (le < alpha / 2.0) | (lt >= 1.0 - alpha / 2.0)
    w = np.outer(stats.binom.pmf(xr, n, p_ref), stats.binom.pmf(xc, n, p_cmp))
    return float(np.sum(w * reject))


def normal_subjects(p_ref: float, p_cmp: float, comparisons_per_subject: float, *, alpha: float = 0.05, power: float = 0.8, deff: float = 1.0) -> float:
    """Normal-approximation comparisons -> subjects per group (two-sided, unpooled Wald).

    ``N = (z_{1-alpha/2} + z_power)^2 (p_r(1-p_r) + p_c(1-p_c)) / (p_c - p_r)^2 * deff``
    comparisons per group, divided by ``comparisons_per_subject``. A starting point
    for the simulation grid, not the answer.
    """
    if p_ref == p_cmp:
        return math.inf
    z = stats.norm.isf(alpha / 2.0) + stats.norm.ppf(power)
    n_comp = z * z * (p_ref * (1 - p_ref) + p_cmp * (1 - p_cmp)) / (p_cmp - p_ref) ** 2 * deff
    return n_comp / comparisons_per_subject


# ----------------------------------------------------------------------------- figure
def plot_power(curve: pd.DataFrame, scenario: PowerScenario, path: str | Path, *, target_power: float, alpha: float) -> Path:
    """Power vs subjects per group (log x), one line per metric and images per subject."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    styles = {"FMR": ("#b2182b", "o"), "FNMR": ("#1b7837", "s")}
    for m in METRICS:
        r, c = scenario.true_rates[m]
        if abs(c - r) < 1e-12:
            continue
        for j, (k, part) in enumerate(curve.groupby("images_per_subject")):
            part = part.sort_values("subjects")
            colour, _ = styles[m]
            # designs (images per subject) differ by marker shape and fill as well as line style
            marker = ["o", "^", "s", "D"][j % 4]
            ax.errorbar(part["subjects"], part[f"power_{m}"], yerr=part[f"power_{m}_se"], color=colour, marker=marker,
                        mfc=colour if j % 2 == 0 else "white", ls=["-", "--", ":", "-."][j % 4], capsize=2, ms=5,
                        label=f"{m}: {r:.2g} vs {c:.2g}, {int(k)} images/subject")
    ax.axhline(target_power, color="0.4", lw=0.8, ls=":", label=f"target power {target_power:g}")
    ax.axhline(alpha, color="0.7", lw=0.8, ls="--", label=f"alpha = {alpha:g} (power under no difference)")
    ax.set_xscale("log")
    ticks = sorted(curve["subjects"].unique().tolist())
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(int(t)) for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("subjects per group (log scale)")
    reps = int(curve["replicates"].min()) if len(curve) else 0
    ax.set_ylabel(f"power (share of {reps} simulated studies detecting it;\nbars: Monte Carlo standard error)")
    ax.set_title(
        f"Power of the subject-level bootstrap test (two-sided, alpha={alpha:g})\n"
        f"threshold at reference FMR {scenario.target_fmr:g}; synthetic generator, dim={scenario.dim}",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- CLI
def _reference_from_config(path: Path, group: str | None) -> tuple[GroupSpec, int, str]:
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the dataset config ({err})") from err
    loader = (cfg or {}).get("loader") or {}
    groups = loader.get("groups") or {}
    if not groups or "dim" not in loader:
        raise ConfigError(f"{path}: not a synthetic dataset config (needs loader.dim and loader.groups)")
    if group is None:
        group = max(groups, key=lambda g: groups[g].get("subjects", 0))
    if group not in groups:
        raise ConfigError(f"{path}: no group {group!r}; groups: {sorted(groups)}")
    spec = GroupSpec(**{k: v for k, v in groups[group].items() if k != "labels"})
    return spec, int(loader["dim"]), group


def _check_request(args: argparse.Namespace) -> None:
    """One-line refusals of absurd sizes, before any scenario is solved or array allocated."""
    from bench.limits import MAX_BOOTSTRAP_REPLICATES, check_int, check_memory, check_seed

    ks = [check_int("--images-per-subject", k, 2, 1000, "FNMR needs mated pairs") for k in args.images_per_subject]
    ns = [check_int("--subjects", n, 2, 1_000_000) for n in (args.subjects or [])]
    check_int("--replicates", args.replicates, 1, 100_000)
    check_int("--bootstrap", args.bootstrap, 1, MAX_BOOTSTRAP_REPLICATES)
    check_seed("--seed", args.seed)
    draws = check_int("--truth-draws", args.truth_draws, 1000, None)
    check_memory(f"--truth-draws {draws:,}", draws * 256.0, "lower --truth-draws")  # (draws, dim <= 16) float64, twice
    if ns:
        images = max(ns) * max(ks)
        if images**2 / 2 > 1e10:
            raise ConfigError(f"--subjects {max(ns):,} x --images-per-subject {max(ks):,} gives {images**2 / 2:,.0f} comparisons per "
                              "simulated study (limit 1e10: days per design); use a smaller grid")
        check_memory(f"--subjects {max(ns):,} x --images-per-subject {max(ks):,}", 2 * 2048 * images * 4.0 + args.bootstrap * max(ns) * 16.0,
                     "use a smaller --subjects grid or --bootstrap")


def power_answer(need: pd.DataFrame, metrics: Sequence[str], *, target_power: float, alpha: float) -> list[str]:
    """The headline: one line per images-per-subject design, the subjects per group needed
    to detect every hypothesised differential (the largest need over ``metrics``), with the
    simulated grid points that bracket it.

    Parameters
    ----------
    need : pandas.DataFrame
        :func:`required_subjects` output.
    metrics : sequence of str
        The metrics with a hypothesised differential.
    """
    lines = []
    for k, part in need[need["metric"].isin(list(metrics))].groupby("images_per_subject"):
        if part["subjects_needed"].isna().any():
            short = ", ".join(part[part["subjects_needed"].isna()]["metric"])
            lines.append(f"fvbench-power: answer: more subjects than the largest simulated grid point are needed ({short}; "
                         f"{k} images/subject, power {target_power:g}, alpha {alpha:g}); extend --subjects")
            continue
        row = part.loc[part["subjects_interpolated"].idxmax()]
        n = math.ceil(row["subjects_interpolated"])
        if math.isnan(row["subjects_below"]):
            bracket = f"the smallest simulated grid point, {int(row['subjects_needed'])} subjects, already has power {row['power_at_needed']:.2f}"
        else:
            bracket = (f"interpolated between {int(row['subjects_below'])} subjects (power {row['power_below']:.2f}) and "
                       f"{int(row['subjects_needed'])} (power {row['power_at_needed']:.2f})")
        lines.append(f"fvbench-power: answer: about {n} subjects per group ({k} images/subject) detect the {row['metric']} "
                     f"differential with power {target_power:g} at alpha {alpha:g}; {bracket}")
    return lines


def _write_power(out: Path, curve: pd.DataFrame, need: pd.DataFrame, scen: PowerScenario, group: str,
                 args: argparse.Namespace, arguments: dict) -> None:
    """power.csv, power.json (with the command's arguments under ``config``) and power.png into ``out``."""
    curve.to_csv(out / "power.csv", index=False)
    from bench.report.provenance import scrub_paths  # no absolute path of this machine is published

    (out / "power.json").write_text(json.dumps(scrub_paths({
        "config": arguments,
        "scenario": scen.summary(),
        "reference_group": group,
        "dataset_config": args.dataset_config,
        "alpha": args.alpha,
        "target_power": args.power,
        "replicates": args.replicates,
        "bootstrap": args.bootstrap,
        "seed": args.seed,
        "required": need.to_dict(orient="records"),
        "design_effect_assumption": (
            "the generator's subject effects (identity position, per-subject image noise) stand for the real ones; "
            "deff_* columns give the simulated design effect; stronger real subject effects need proportionally more subjects"
        ),
    }), indent=2, default=float) + "\n")
    plot_power(curve, scen, out / "power.png", target_power=args.power, alpha=args.alpha)


def power_main(argv: Sequence[str] | None = None) -> int:
    """Console script ``fvbench-power``.

    Example::

        fvbench-power --target-fmr 1e-3 --fmr-ratio 2 --images-per-subject 2 4
    """
    p = argparse.ArgumentParser(prog="fvbench-power", description="Subjects per group needed to detect a differential (simulation).")
    p.add_argument("--target-fmr", type=float, required=True, help="reference group's FMR at the operating threshold")
    p.add_argument("--fmr-ratio", type=float, default=1.0, help="hypothesised FMR_comparison / FMR_reference (default 1: none)")
    p.add_argument("--fnmr-difference", type=float, default=0.0, help="hypothesised FNMR_comparison - FNMR_reference (default 0)")
    p.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level (default 0.05)")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--images-per-subject", type=int, nargs="+", default=[2],
                   help="images per subject of the planned study; several values compare designs (default 2)")
    p.add_argument("--subjects", type=int, nargs="+", default=None, help="grid of subjects per group (default: around the normal approximation)")
    p.add_argument("--dataset-config", default=str(Path(__file__).resolve().parents[2] / "configs" / "dataset" / "synthetic_london_dlib.yaml"),
                   help="synthetic dataset config giving the reference group (default: the dlib x London calibration)")
    p.add_argument("--reference-group", default=None, help="group of that config (default: the largest)")
    p.add_argument("--replicates", type=int, default=200, help="simulated studies per design (default 200)")
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap replicates per group and study (default 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation (default 0); same seed, same answer")
    p.add_argument("--truth-draws", type=int, default=400_000, help="ground-truth draws for solving the scenario (default 400000)")
    p.add_argument("--out", default="results/power", help="folder for power.csv, power.json, power.png (default results/power)")
    p.add_argument("--force", action="store_true", help="replace --out even when it holds another power analysis")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar (default on; --no-progress)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from bench.report.folder import check_output_path, check_replace, staged_folder

    # the analysis' own settings (progress is a run-time flag: not part of the recorded experiment)
    arguments = {k: v for k, v in vars(args).items() if k not in ("out", "force", "progress")}
    try:
        _check_request(args)
        out = check_output_path(args.out, key="--out")  # before any computing
        check_replace(out, config=arguments, overwrite=args.force, record="power.json", how="--force", key="--out")
        if args.fmr_ratio == 1.0 and args.fnmr_difference == 0.0:
            raise ConfigError("give --fmr-ratio != 1 and/or --fnmr-difference != 0: there is no differential to detect")
        if not 0 < args.power < 1:
            raise ConfigError(f"--power must be in (0, 1), got {args.power}")
        if not 0 < args.alpha < 1:
            raise ConfigError(f"--alpha must be in (0, 1), got {args.alpha}")
        spec, dim, group = _reference_from_config(Path(args.dataset_config), args.reference_group)
        scen = make_scenario(spec, dim, target_fmr=args.target_fmr, fmr_ratio=args.fmr_ratio, fnmr_difference=args.fnmr_difference,
                             n_truth=args.truth_draws, seed=args.seed)
        grid = args.subjects
        if grid is None:
            guesses = []
            for m, per in (("FMR", None), ("FNMR", None)):
                r, c = scen.true_rates[m]
                if abs(c - r) < 1e-12:
                    continue
                k = min(args.images_per_subject)
                per = k * k if m == "FMR" else k * (k - 1) / 2.0
                n0 = normal_subjects(r, c, per, alpha=args.alpha, power=args.power)
                n0 = math.sqrt(2 * n0) if m == "FMR" else n0  # FMR: k^2 n^2/2 comparisons
                guesses.append(max(n0, 4.0))
            centre = max(guesses)
            grid = sorted({max(4, int(round(centre * f))) for f in (0.5, 0.71, 1.0, 1.41, 2.0, 2.83)})
        curve = power_curve(scen, grid, args.images_per_subject, replicates=args.replicates, n_bootstrap=args.bootstrap,
                            alpha=args.alpha, seed=args.seed, progress=args.progress)
        if args.subjects is None:  # extend the default grid (doubling, at most 3 times) until every target is reached
            wanted = [m for m in METRICS if abs(scen.true_rates[m][1] - scen.true_rates[m][0]) > 1e-12]
            for _ in range(3):
                need = required_subjects(curve, args.power)
                if not need[need["metric"].isin(wanted)]["subjects_needed"].isna().any():
                    break
                top = int(curve["subjects"].max())
                more = power_curve(scen, [2 * top], args.images_per_subject, replicates=args.replicates, n_bootstrap=args.bootstrap,
                                   alpha=args.alpha, seed=args.seed + top, progress=args.progress)
                curve = pd.concat([curve, more], ignore_index=True).sort_values(["images_per_subject", "subjects"], ignore_index=True)
    except ConfigError as err:
        print(f"fvbench-power: {err}", file=sys.stderr)
        return 2
    need = required_subjects(curve, args.power)
    try:
        with staged_folder(out) as stage:  # whole or not at all; the previous folder stays until the swap
            _write_power(stage, curve, need, scen, group, args, arguments)
    except BenchError as err:
        print(f"fvbench-power: {err}", file=sys.stderr)
        return 2
    wanted = [m for m in METRICS if abs(scen.true_rates[m][1] - scen.true_rates[m][0]) > 1e-12]
    for line in power_answer(need, wanted, target_power=args.power, alpha=args.alpha):
        print(line)
    print(f"  scenario: threshold {scen.threshold:.4f} (generator cosine) = reference FMR {scen.target_fmr:g}; "
          + "; ".join(f"true {m} reference {scen.true_rates[m][0]:.4g}, comparison {scen.true_rates[m][1]:.4g}" for m in METRICS))
    for row in need.itertuples():
        if row.metric not in wanted:
            continue
        found = "not reached on the grid" if math.isnan(row.subjects_needed) else f"{int(row.subjects_needed)} subjects per group (interpolated {math.ceil(row.subjects_interpolated)})"
        print(f"  {row.metric}, {row.images_per_subject} images/subject: power {args.power:g} needs {found}")
    print("  design effects (simulated): " + ", ".join(f"{m} {curve[f'deff_{m}'].median():.2f}" for m in METRICS))
    print(f"fvbench-power: wrote {out / 'power.csv'}, {out / 'power.json'} and {out / 'power.png'}")
    return 0


if __name__ == "__main__":  # python -m bench.synthetic.power ...
    sys.exit(power_main())
