"""Ground truth of a synthetic population: the true FMR and FNMR per group at any threshold.

The generator of :mod:`bench.synthetic.generator` draws, per group ``g`` in dimension ``d``::

    m_i  = normalize(c_g + s_g z_i),          s_g = identity_spread_g / sqrt(d)
    x_ij = normalize(m_i + a_i e_ij),         a_i = image_noise_g * exp(image_noise_sd_g * eta_i) / sqrt(d)

with ``z, e ~ N(0, I_d)`` and ``eta ~ N(0, 1)`` independent. The *true* rate of a
group is the probability, over this generative model, that one comparison errs:
``FMR_g(t) = P(cos(x_a, x_b) >= t)`` for two images of two different subjects of ``g``
and ``FNMR_g(t) = P(cos(x_a, x_b) < t)`` for two images of one subject of ``g``. It is
the expectation of the empirical rate of any population drawn from the generator, and
does not depend on the (random) group centre ``c_g`` -- the model is rotation
invariant. Failures to acquire are drawn independently of the embeddings, so they do
not change FMR or FNMR; the true FTA is ``fta_rate``.

Exact reduction (why no d-dimensional simulation is needed)
-----------------------------------------------------------
Lemma. Let ``u = normalize(p + alpha e)`` and ``v = normalize(q + beta f)`` with unit
``p, q``, ``p.q = gamma`` and ``e, f ~ N(0, I_d)`` independent. Write ``e`` and ``f``
in an orthonormal basis whose first two vectors span ``{p, q}``: the two in-plane
coordinates of each are independent ``N(0, 1)``; the out-of-plane parts have lengths
``R_e, R_f ~ chi_{d-2}`` and independent uniform directions on the sphere of the
``(d-2)``-dimensional complement, whose cosine ``Phi`` has
``(1 + Phi)/2 ~ Beta((d-3)/2, (d-3)/2)`` (the cosine of a uniform direction with a fixed
one in ``R^n`` is ``Beta((n-1)/2, (n-1)/2)`` on ``[-1, 1]``; here ``n = d - 2``). Then,
exactly,

    cos(u, v) = A + B * Phi,
    A = P_u . P_v / (|u'| |v'|),   B = alpha beta R_e R_f / (|u'| |v'|) >= 0,

with ``P_u = (1 + alpha e_1, alpha e_2)``, ``P_v = (gamma + beta f_1,
sqrt(1 - gamma^2) + beta f_2)``, ``|u'|^2 = |P_u|^2 + alpha^2 R_e^2`` (and likewise for
``v'``), and ``Phi`` independent of ``(A, B)``.

Applied twice -- first to two identities of a group (``p = q = c_g``, giving the
identity cosine ``rho = A_1 + B_1 Phi_1``), then to two images of them (``p.q = rho``) --
a comparison score is ``A + B Phi`` where ``(A, B)`` is a function of 15 scalar random
variables (7 for a mated comparison; the per-subject noise factors ``eta`` included)
whatever ``d`` is, and

    P(score >= t) = E[ P(Phi >= (t - A)/B | A, B) ] = E[ I_{(1 - (t - A)/B)/2}((d-3)/2, (d-3)/2) ],

the inner probability being the regularised incomplete beta function (closed form).
The outer expectation has no closed form; it is a Monte Carlo average over ``n_samples``
independent draws of the low-dimensional variables (default 10^6, seeded), a
Rao-Blackwellised estimator: smooth and monotone in ``t``, exact in expectation, with
its standard error reported. Low FMRs come from pairs of unusually similar
identities (``Phi_1`` near 1), so ``Phi_1`` is drawn by importance sampling from a
defensive mixture -- half uniform in its quantile ``u``, half with ``1 - u``
log-uniform on ``[1e-12, 1]`` -- and every draw carries its likelihood ratio. With
``n_samples = 10^6`` the relative Monte Carlo error of ``FMR(t)`` is about 1% at
FMR 1e-2, 4% at 1e-4 and 8% at 1e-6 (measured for the calibrated dlib x London
"white" group; plain sampling has 3x that error at 1e-4 and fails below 1e-6). Every
rate comes with its standard error (:meth:`ScoreLaw.sf_with_se`,
:meth:`PopulationTruth.table`). This is the "very large independent simulation" of
the issue, made cheap by the reduction (each draw costs O(1), not O(d)). The reduction is
checked against brute-force d-dimensional draws in ``tests/test_synthetic_truth.py``.

All scores are cosine similarities in ``[-1, 1]`` (metrics-reference §0: similarity,
match iff ``score >= t``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import special

from bench.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from bench.synthetic.generator import GroupSpec, SyntheticPopulation

__all__ = [
    "ReducedDraws",
    "ScoreLaw",
    "GroupTruth",
    "PopulationTruth",
    "mated_law",
    "nonmated_law",
    "group_truth",
    "population_truth",
    "DEFAULT_TRUTH_SAMPLES",
]

#: Default number of Monte Carlo draws of the low-dimensional variables per score law.
DEFAULT_TRUTH_SAMPLES = 1_000_000

# draws per vectorised batch (memory ~ a few x 8 bytes x this x n_thresholds)
_BATCH = 250_000
# importance sampling of Phi_1: mixture weight of the tail component, and its decades
_IS_MIX = 0.5
_IS_DECADES = 12.0


def _check_dim(dim: int) -> int:
    if int(dim) != dim or dim < 4:
        raise ConfigError(f"synthetic truth: dim must be an integer >= 4 (the reduction needs d - 2 >= 2), got {dim!r}")
    return int(dim)


# ----------------------------------------------------------------------------- draws
@dataclass(frozen=True)
class ReducedDraws:
    """Standardised random variables of the exact reduction for ``n`` comparisons.

    Attributes
    ----------
    normals : ndarray, shape (n, 10)
        Independent ``N(0, 1)``: in-plane noise of the identity layer (columns 0-3),
        of the image layer (4-7) and the two subjects' log-noise factors ``eta`` (8-9).
    chi_sq : ndarray, shape (n, 4)
        ``chi^2_{d-2}`` variables: squared out-of-plane lengths (identity layer 0-1,
        image layer 2-3).
    phi1 : ndarray, shape (n,)
        Cosine of the identity layer's out-of-plane directions, in ``[-1, 1]``.
    dim : int
        Embedding dimension ``d`` the chi-square and ``phi1`` laws belong to.
    weights : ndarray, shape (n,), or None
        Likelihood ratios of ``phi1`` when it was importance-sampled (mean 1 in
        expectation); None for plain draws.
    """

    normals: NDArray[np.float64]
    chi_sq: NDArray[np.float64]
    phi1: NDArray[np.float64]
    dim: int
    weights: NDArray[np.float64] | None = None

    @property
    def n(self) -> int:
        """Number of draws."""
        return int(self.normals.shape[0])

    @classmethod
    def random(cls, rng: np.random.Generator, n: int, dim: int, *, tail_weighting: bool = True) -> "ReducedDraws":
        """Independent draws from ``rng`` (ground truth).

        With ``tail_weighting`` (default), ``phi1`` comes from the defensive mixture of
        the module docstring and ``weights`` holds the likelihood ratios.
        """
        d = _check_dim(dim)
        a = (d - 3) / 2.0
        normals = rng.standard_normal((n, 10))
        chi_sq = rng.chisquare(d - 2, size=(n, 4))
        if not tail_weighting:
            return cls(normals=normals, chi_sq=chi_sq, phi1=2.0 * rng.beta(a, a, size=n) - 1.0, dim=d)
        tail = rng.random(n) < _IS_MIX
        w = np.where(tail, 10.0 ** (-_IS_DECADES * rng.random(n)), 1.0 - rng.random(n))  # w = 1 - u
        w = np.maximum(w, np.finfo(np.float64).tiny)
        # Phi = 2 F^{-1}(1 - w) - 1 = 1 - 2 F^{-1}(w) (Beta(a, a) is symmetric): exact near u = 1
        phi1 = 1.0 - 2.0 * special.betaincinv(a, a, w)
        density = (1.0 - _IS_MIX) + np.where(w >= 10.0**-_IS_DECADES, _IS_MIX / (w * math.log(10.0) * _IS_DECADES), 0.0)
        return cls(normals=normals, chi_sq=chi_sq, phi1=phi1, dim=d, weights=1.0 / density)

    @classmethod
    def from_uniforms(cls, normals: NDArray[np.float64], uniforms: NDArray[np.float64], dim: int) -> "ReducedDraws":
        """Draws by inverse CDF from fixed standard normals ``(n, 10)`` and uniforms ``(n, 5)``.

        Used for common random numbers: the same ``normals``/``uniforms`` give draws
        that vary smoothly with ``dim`` (calibration fits ``dim``).
        """
        d = float(dim)
        if d < 4:
            raise ConfigError(f"synthetic truth: dim must be >= 4, got {dim!r}")
        a = (d - 3) / 2.0
        chi_sq = 2.0 * special.gammaincinv((d - 2) / 2.0, uniforms[:, :4])
        phi1 = 2.0 * special.betaincinv(a, a, uniforms[:, 4]) - 1.0
        return cls(normals=normals, chi_sq=chi_sq, phi1=phi1, dim=dim)  # type: ignore[arg-type]

    def take(self, sl: slice) -> "ReducedDraws":
        """A batch of the draws."""
        w = None if self.weights is None else self.weights[sl]
        return ReducedDraws(self.normals[sl], self.chi_sq[sl], self.phi1[sl], self.dim, w)


def _pair_terms(
    gamma: NDArray[np.float64] | float,
    alpha: NDArray[np.float64] | float,
    beta: NDArray[np.float64] | float,
    e1: NDArray[np.float64],
    e2: NDArray[np.float64],
    f1: NDArray[np.float64],
    f2: NDArray[np.float64],
    re_sq: NDArray[np.float64],
    rf_sq: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(A, B)`` of the lemma (module docstring): ``cos(u, v) = A + B Phi``."""
    gamma = np.clip(gamma, -1.0, 1.0)
    s = np.sqrt(np.maximum(0.0, 1.0 - gamma * gamma))
    pu1, pu2 = 1.0 + alpha * e1, alpha * e2
    pv1, pv2 = gamma + beta * f1, s + beta * f2
    nu = np.sqrt(pu1 * pu1 + pu2 * pu2 + alpha * alpha * re_sq)
    nv = np.sqrt(pv1 * pv1 + pv2 * pv2 + beta * beta * rf_sq)
    den = nu * nv
    a = (pu1 * pv1 + pu2 * pv2) / den
    b = alpha * beta * np.sqrt(re_sq * rf_sq) / den
    return a, b


def _noise_scale(image_noise: float, image_noise_sd: float, eta: NDArray[np.float64], dim: int) -> NDArray[np.float64]:
    return image_noise * np.exp(image_noise_sd * eta) / math.sqrt(dim)


# ----------------------------------------------------------------------------- score law
@dataclass(frozen=True)
class ScoreLaw:
    """Distribution of one class of comparison scores, ``score = A + B Phi``.

    ``Phi`` is independent of ``(A, B)`` with ``(1 + Phi)/2 ~ Beta(k, k)``,
    ``k = (dim - 3)/2``; ``(A, B)`` are represented by ``n`` Monte Carlo draws, with
    importance weights when the draws were tail-weighted.

    Attributes
    ----------
    a, b : ndarray, shape (n,)
        Draws of ``A`` (in [-1, 1]) and ``B`` (>= 0).
    dim : int or float
        Embedding dimension ``d``.
    w : ndarray, shape (n,), or None
        Importance weights (likelihood ratios, mean 1 in expectation); None = equal.
    """

    a: NDArray[np.float64]
    b: NDArray[np.float64]
    dim: float
    w: NDArray[np.float64] | None = None

    def _weights(self, sl: slice) -> NDArray[np.float64] | float:
        return 1.0 if self.w is None else self.w[sl]

    @property
    def n_samples(self) -> int:
        """Number of Monte Carlo draws behind the law."""
        return int(self.a.size)

    @property
    def _k(self) -> float:
        return (float(self.dim) - 3.0) / 2.0

    def _cond_sf(self, t: float, sl: slice) -> NDArray[np.float64]:
        a, b = self.a[sl], self.b[sl]
        pos = b > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.where(pos, (t - a) / np.where(pos, b, 1.0), 0.0)
        x = np.clip((1.0 - phi) / 2.0, 0.0, 1.0)
        return np.where(pos, special.betainc(self._k, self._k, x), (a >= t).astype(np.float64))

    def sf_with_se(self, thresholds: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``P(score >= t)`` and its Monte Carlo standard error, per threshold.

        Parameters
        ----------
        thresholds : array-like of float, shape (m,)

        Returns
        -------
        sf, se : ndarray, shape (m,)
        """
        ts = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
        s1 = np.zeros(ts.size)
        s2 = np.zeros(ts.size)
        for lo in range(0, self.n_samples, _BATCH):
            sl = slice(lo, lo + _BATCH)
            w = self._weights(sl)
            for i, t in enumerate(ts):
                p = self._cond_sf(float(t), sl) * w
                s1[i] += p.sum()
                s2[i] += (p * p).sum()
        n = self.n_samples
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
        return mean, np.sqrt(var / max(n - 1, 1))

    def sf(self, thresholds: ArrayLike) -> NDArray[np.float64]:
        """``P(score >= t)`` (share of comparisons declared a match), per threshold."""
        return self.sf_with_se(thresholds)[0]

    def cdf(self, thresholds: ArrayLike) -> NDArray[np.float64]:
        """``P(score < t)``, per threshold (``1 - sf``: scores are continuous)."""
        return 1.0 - self.sf(thresholds)

    def pdf(self, t: float) -> float:
        """Density of the score at ``t`` (exact conditional density, averaged)."""
        k = self._k
        out = 0.0
        log_norm = special.betaln(k, k)
        for lo in range(0, self.n_samples, _BATCH):
            sl = slice(lo, lo + _BATCH)
            a, b = self.a[sl], self.b[sl]
            w = np.broadcast_to(self._weights(sl), a.shape)
            pos = b > 0
            phi = (t - a[pos]) / b[pos]
            inside = np.abs(phi) < 1.0
            x = (1.0 + phi[inside]) / 2.0
            dens = np.exp((k - 1.0) * (np.log(x) + np.log1p(-x)) - log_norm) / (2.0 * b[pos][inside])
            out += float((dens * w[pos][inside]).sum())
        return out / self.n_samples

    def mean(self) -> float:
        """``E[score]`` (= ``E[A]``, since ``E[Phi] = 0``)."""
        w = np.ones_like(self.a) if self.w is None else self.w
        return float(np.sum(w * self.a) / np.sum(w))

    def var(self) -> float:
        """``Var[score] = Var[A] + E[B^2] / (d - 2)`` (``E[Phi^2] = 1/(d - 2)``)."""
        w = np.ones_like(self.a) if self.w is None else self.w
        m = np.sum(w * self.a) / np.sum(w)
        return float((np.sum(w * (self.a - m) ** 2) + np.sum(w * self.b * self.b) / (float(self.dim) - 2.0)) / np.sum(w))

    def sample(self, rng: np.random.Generator) -> NDArray[np.float64]:
        """Explicit scores (``A + B Phi`` with a fresh ``Phi``), shape (n,).

        Weighted draws are first resampled in proportion to their weights, so the
        result is an (approximately) unweighted sample of the law.
        """
        k = self._k
        a, b = self.a, self.b
        if self.w is not None:
            idx = rng.choice(self.n_samples, size=self.n_samples, p=self.w / self.w.sum())
            a, b = a[idx], b[idx]
        return a + b * (2.0 * rng.beta(k, k, size=self.n_samples) - 1.0)

    def threshold_at_sf(self, target: float, *, tol: float = 1e-10) -> float:
        """The threshold ``t`` with ``P(score >= t) = target`` (Newton on the smooth estimate).

        Parameters
        ----------
        target : float in (0, 1)

        Raises
        ------
        ConfigError
            If ``target`` is not in (0, 1).
        """
        if not 0.0 < target < 1.0:
            raise ConfigError(f"target: expected a value in (0, 1), got {target!r}")
        # bracket from an explicit sample's quantiles, then safeguarded Newton
        rng = np.random.default_rng(12345)
        sub = ScoreLaw(self.a[:200_000], self.b[:200_000], self.dim, None if self.w is None else self.w[:200_000]).sample(rng)
        lo, hi = -1.0, 1.0
        t = float(np.quantile(sub, 1.0 - target))
        for _ in range(60):
            f = float(self.sf([t])[0]) - target
            if abs(f) <= tol * max(target, 1e-300) or hi - lo < 1e-13:
                return t
            if f > 0:
                lo = max(lo, t)
            else:
                hi = min(hi, t)
            d = self.pdf(t)
            step = t + f / d if d > 0 else math.nan
            t = step if lo < step < hi else 0.5 * (lo + hi)
        return t


def mated_law(spec: "GroupSpec", dim: int, draws: ReducedDraws) -> ScoreLaw:
    """Score law of mated comparisons (two images of one subject) of a group.

    Parameters
    ----------
    spec : GroupSpec
        Group parameters (``image_noise``, ``image_noise_sd``).
    dim : int
        Embedding dimension ``d >= 4``.
    draws : ReducedDraws
        Random variables (columns 4-8 of ``normals``, 2-3 of ``chi_sq`` are used).

    Returns
    -------
    ScoreLaw
    """
    n = draws.normals
    alpha = _noise_scale(spec.image_noise, spec.image_noise_sd, n[:, 8], dim)
    # both images around the same identity: p = q = m_i (gamma = 1), same noise scale
    a, b = _pair_terms(1.0, alpha, alpha, n[:, 4], n[:, 5], n[:, 6], n[:, 7], draws.chi_sq[:, 2], draws.chi_sq[:, 3])
    return ScoreLaw(a, b, dim)


def nonmated_law(spec_a: "GroupSpec", spec_b: "GroupSpec", dim: int, draws: ReducedDraws, *, centre_cosine: float = 1.0) -> ScoreLaw:
    """Score law of non-mated comparisons between a subject of group a and one of group b.

    Parameters
    ----------
    spec_a, spec_b : GroupSpec
        The two subjects' groups (the same spec for a group's own FMR).
    dim : int
        Embedding dimension ``d >= 4``.
    draws : ReducedDraws
    centre_cosine : float in [-1, 1], default 1.0
        Cosine between the two group centres: 1 for two subjects of the same group,
        ``c_g . c_h`` for a cross-group cell.

    Returns
    -------
    ScoreLaw
    """
    n = draws.normals
    s_a = spec_a.identity_spread / math.sqrt(dim)
    s_b = spec_b.identity_spread / math.sqrt(dim)
    a1, b1 = _pair_terms(centre_cosine, s_a, s_b, n[:, 0], n[:, 1], n[:, 2], n[:, 3], draws.chi_sq[:, 0], draws.chi_sq[:, 1])
    rho = np.clip(a1 + b1 * draws.phi1, -1.0, 1.0)
    alpha = _noise_scale(spec_a.image_noise, spec_a.image_noise_sd, n[:, 8], dim)
    beta = _noise_scale(spec_b.image_noise, spec_b.image_noise_sd, n[:, 9], dim)
    a, b = _pair_terms(rho, alpha, beta, n[:, 4], n[:, 5], n[:, 6], n[:, 7], draws.chi_sq[:, 2], draws.chi_sq[:, 3])
    return ScoreLaw(a, b, dim, draws.weights)


# ----------------------------------------------------------------------------- per group
@dataclass(frozen=True)
class GroupTruth:
    """True error rates of one synthetic group.

    Attributes
    ----------
    mated, nonmated : ScoreLaw
        Laws of the group's mated scores and of its same-group non-mated scores.
    fta : float
        True failure-to-acquire rate (the spec's ``fta_rate``).
    """

    mated: ScoreLaw
    nonmated: ScoreLaw
    fta: float

    def fmr(self, thresholds: ArrayLike) -> NDArray[np.float64]:
        """True ``FMR(t) = P(non-mated score >= t)``, shape (m,)."""
        return self.nonmated.sf(thresholds)

    def fnmr(self, thresholds: ArrayLike) -> NDArray[np.float64]:
        """True ``FNMR(t) = P(mated score < t)``, shape (m,)."""
        return self.mated.cdf(thresholds)

    def threshold_at_fmr(self, target: float) -> float:
        """Threshold at which the group's true FMR equals ``target``."""
        return self.nonmated.threshold_at_sf(target)

    def threshold_at_fnmr(self, target: float) -> float:
        """Threshold at which the group's true FNMR equals ``target``."""
        return self.mated.threshold_at_sf(1.0 - target)


def group_truth(spec: "GroupSpec", dim: int, *, n_samples: int = DEFAULT_TRUTH_SAMPLES, seed: int = 0) -> GroupTruth:
    """Ground truth of one group (see the module docstring for the method).

    Parameters
    ----------
    spec : GroupSpec
    dim : int
        Embedding dimension ``d >= 4``.
    n_samples : int, default 10^6
        Monte Carlo draws of the reduced variables per law.
    seed : int, default 0
        Seed of those draws (independent of the population's seed).

    Returns
    -------
    GroupTruth

    Raises
    ------
    ConfigError
        If ``dim < 4`` or ``n_samples < 1``.
    """
    d = _check_dim(dim)
    if n_samples < 1:
        raise ConfigError(f"n_samples must be >= 1, got {n_samples!r}")
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(7,)))
    draws_m = ReducedDraws.random(rng, int(n_samples), d)
    draws_n = ReducedDraws.random(rng, int(n_samples), d)
    return GroupTruth(mated=mated_law(spec, d, draws_m), nonmated=nonmated_law(spec, spec, d, draws_n), fta=float(spec.fta_rate))


# ----------------------------------------------------------------------------- population
@dataclass(frozen=True)
class PopulationTruth:
    """True rates of every group of a population, and of the pooled population.

    Attributes
    ----------
    groups : dict of str to GroupTruth
        Per group (keys: group names of the population).
    labels : dict of str to dict
        Group name -> attribute values (e.g. ``{"face_eth": "white"}``).
    cross : dict
        ``(g, h) -> ScoreLaw`` of cross-group non-mated scores (``g < h`` by group
        order), for the realised group centres of the population's seed.
    weights : dict
        ``(g, h) -> expected number of non-mated comparisons`` (after FTA), with
        ``(g, g)`` for within-group; used for the pooled (all) FMR.
    mated_weights : dict
        ``g -> expected number of mated comparisons``.
    """

    groups: dict[str, GroupTruth]
    labels: dict[str, dict[str, str]]
    cross: dict[tuple[str, str], ScoreLaw]
    weights: dict[tuple[str, str], float]
    mated_weights: dict[str, float]

    def pooled_fmr(self, thresholds: ArrayLike) -> NDArray[np.float64]:
        """Expected FMR over all non-mated comparisons of the population (all groups)."""
        ts = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
        num = np.zeros(ts.size)
        den = 0.0
        for (g, h), w in self.weights.items():
            law = self.groups[g].nonmated if g == h else self.cross[(g, h)]
            num += w * law.sf(ts)
            den += w
        return num / den

    def pooled_fnmr(self, thresholds: ArrayLike) -> NDArray[np.float64]:
        """Expected FNMR over all mated comparisons of the population."""
        ts = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
        num = np.zeros(ts.size)
        den = 0.0
        for g, w in self.mated_weights.items():
            num += w * self.groups[g].fnmr(ts)
            den += w
        return num / den if den > 0 else np.full(ts.size, np.nan)

    def threshold_at_pooled_fmr(self, target: float) -> float:
        """Threshold at which the pooled true FMR equals ``target`` (bisection)."""
        if not 0.0 < target < 1.0:
            raise ConfigError(f"target: expected a value in (0, 1), got {target!r}")
        lo = min(g.threshold_at_fmr(min(0.999, target)) for g in self.groups.values()) - 0.05
        hi = 1.0
        lo = max(lo, -1.0)
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if self.pooled_fmr([mid])[0] > target:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-9:
                break
        return 0.5 * (lo + hi)

    def table(self, thresholds: Mapping[str, float] | ArrayLike, *, attribute: str | None = None) -> pd.DataFrame:
        """Tidy table of true rates with Monte Carlo standard errors.

        Parameters
        ----------
        thresholds : mapping name -> value, or array of values
            Thresholds (named ``"t=<value>"`` when given as an array).
        attribute : str, optional
            Attribute for the ``group`` column (default: the group names themselves,
            attribute ``"group"``). Groups sharing a label of ``attribute`` are pooled
            with their expected comparison counts as weights.

        Returns
        -------
        pandas.DataFrame
            Columns ``attribute, group, threshold_name, threshold, metric, true_rate,
            mc_se`` (metric ``FMR`` or ``FNMR``); one row per group, threshold, metric.
        """
        if isinstance(thresholds, Mapping):
            named = {str(k): float(v) for k, v in thresholds.items()}
        else:
            named = {f"t={float(v):.6g}": float(v) for v in np.atleast_1d(np.asarray(thresholds, dtype=np.float64))}
        ts = np.array(list(named.values()))
        if attribute is None:
            members = {g: [g] for g in self.groups}
            attr_name = "group"
        else:
            members = {}
            for g, lab in self.labels.items():
                if attribute not in lab:
                    raise ConfigError(f"attribute {attribute!r} not among the generator labels {sorted(lab)} of group {g!r}")
                members.setdefault(lab[attribute], []).append(g)
            attr_name = attribute
        rows = []
        for label in sorted(members):
            gs = members[label]
            fm_num = np.zeros(ts.size)
            fm_var = np.zeros(ts.size)
            fm_den = 0.0
            for i, g in enumerate(gs):
                for h in gs[i:]:
                    key = (g, h) if (g, h) in self.weights else (h, g)
                    w = self.weights.get(key, 0.0)
                    law = self.groups[g].nonmated if g == h else self.cross[key]
                    p, se = law.sf_with_se(ts)
                    fm_num += w * p
                    fm_var += (w * se) ** 2
                    fm_den += w
            fn_num = np.zeros(ts.size)
            fn_var = np.zeros(ts.size)
            fn_den = 0.0
            for g in gs:
                w = self.mated_weights[g]
                p, se = self.groups[g].mated.sf_with_se(ts)
                fn_num += w * (1.0 - p)
                fn_var += (w * se) ** 2
                fn_den += w
            for j, (name, t) in enumerate(named.items()):
                for metric, num, var, den in (("FMR", fm_num, fm_var, fm_den), ("FNMR", fn_num, fn_var, fn_den)):
                    rows.append(
                        {
                            "attribute": attr_name,
                            "group": label,
                            "threshold_name": name,
                            "threshold": t,
                            "metric": metric,
                            "true_rate": num[j] / den if den > 0 else math.nan,
                            "mc_se": math.sqrt(var[j]) / den if den > 0 else math.nan,
                        }
                    )
        return pd.DataFrame.from_records(rows)


def population_truth(population: "SyntheticPopulation", *, n_samples: int = DEFAULT_TRUTH_SAMPLES, seed: int = 0, cross: bool = True) -> PopulationTruth:
    """Ground truth of every group of a population (and of its cross-group cells).

    Parameters
    ----------
    population : SyntheticPopulation
    n_samples : int, default 10^6
        Monte Carlo draws per score law.
    seed : int, default 0
        Seed of the Monte Carlo draws.
    cross : bool, default True
        Also compute the cross-group laws (needed for pooled rates and for attributes
        that merge groups); they depend on the realised centres, i.e. on the
        population's seed.

    Returns
    -------
    PopulationTruth
    """
    d = _check_dim(population.dim)
    specs = population.specs
    names = list(specs)
    groups = {g: group_truth(specs[g], d, n_samples=n_samples, seed=seed + 1000 * i) for i, g in enumerate(names)}
    centres = population.centres() if cross else {}
    cross_laws: dict[tuple[str, str], ScoreLaw] = {}
    weights: dict[tuple[str, str], float] = {}
    mated_w: dict[str, float] = {}
    per_subject = {g: specs[g].images_per_subject * (1.0 - specs[g].fta_rate) for g in names}
    subjects = population.subjects
    for i, g in enumerate(names):
        n_g, k_g = subjects[g], per_subject[g]
        k_int = specs[g].images_per_subject
        q = 1.0 - specs[g].fta_rate
        # expected acquired mated pairs per subject: C(k,2) q^2
        mated_w[g] = n_g * k_int * (k_int - 1) / 2.0 * q * q
        weights[(g, g)] = n_g * (n_g - 1) / 2.0 * k_g * k_g
        if not cross:
            continue
        for j in range(i + 1, len(names)):
            h = names[j]
            weights[(g, h)] = n_g * subjects[h] * k_g * per_subject[h]
            rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(8, i, j)))
            draws = ReducedDraws.random(rng, int(n_samples), d)
            gamma = float(np.dot(centres[g], centres[h]))
            cross_laws[(g, h)] = nonmated_law(specs[g], specs[h], d, draws, centre_cosine=gamma)
    labels = {g: population.group_labels(g) for g in names}
    return PopulationTruth(groups=groups, labels=labels, cross=cross_laws, weights=weights, mated_weights=mated_w)
