"""Ground truth of synthetic populations (bench.synthetic.truth), checked against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from bench.synthetic.generator import GroupSpec, SyntheticPopulation
from bench.errors import ConfigError
from bench.synthetic.truth import ReducedDraws, ScoreLaw, _pair_terms, group_truth, population_truth


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("gamma,alpha,beta,dim", [(0.6, 0.3, 0.5, 12), (1.0, 0.4, 0.4, 6), (-0.2, 1.5, 0.1, 40)])
def test_lemma_matches_brute_force_in_d_dimensions(gamma, alpha, beta, dim):
    """cos(normalize(p + alpha e), normalize(q + beta f)) has the law A + B Phi (module docstring)."""
    rng = np.random.default_rng(1)
    n = 40_000
    p = np.zeros(dim)
    p[0] = 1.0
    q = np.zeros(dim)
    q[0], q[1] = gamma, math.sqrt(1 - gamma**2)
    u = _unit(p + alpha * rng.standard_normal((n, dim)))
    v = _unit(q + beta * rng.standard_normal((n, dim)))
    brute = (u * v).sum(1)
    draws = ReducedDraws.random(rng, n, dim)
    nr = draws.normals
    a, b = _pair_terms(gamma, alpha, beta, nr[:, 0], nr[:, 1], nr[:, 2], nr[:, 3], draws.chi_sq[:, 0], draws.chi_sq[:, 1])
    reduced = ScoreLaw(a, b, dim).sample(rng)
    assert stats.ks_2samp(brute, reduced).pvalue > 1e-3


def test_closed_form_limit_uniform_identities():
    """Huge identity spread and no image noise: identities are uniform on the sphere, so the
    non-mated cosine has (1 + cos)/2 ~ Beta((d-1)/2, (d-1)/2) exactly; mated scores are 1."""
    d = 20
    spec = GroupSpec(subjects=10, images_per_subject=2, identity_spread=1e6, image_noise=0.0)
    truth = group_truth(spec, d, n_samples=200_000)
    t = np.array([-0.3, 0.0, 0.2, 0.45])
    exact = special.betainc((d - 1) / 2, (d - 1) / 2, (1 - t) / 2)
    np.testing.assert_allclose(truth.fmr(t), exact, rtol=0, atol=3e-3)
    np.testing.assert_array_equal(truth.fnmr([0.999, 1.0 - 1e-12]), [0.0, 0.0])
    # far tail (importance-sampled identity layer): FMR 1e-3, 1e-5, 1e-7 within 4 standard errors
    a = (d - 1) / 2
    for target in (1e-3, 1e-5, 1e-7):
        t_tail = 1 - 2 * special.betaincinv(a, a, target)
        p, se = truth.nonmated.sf_with_se([t_tail])
        assert abs(p[0] - target) < 4 * se[0] and se[0] < 0.05 * target, (target, p, se)


def _binomial_ok(k: int, n: int, p: float, z: float = 4.5) -> bool:
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


def test_truth_matches_generator_on_independent_comparisons():
    """Empirical rates of a large generated population agree with the truth.

    Mated comparisons of different subjects are independent, and non-mated comparisons
    between disjoint subject pairs are too, so counts are Binomial(n, true rate); every
    count lies within 4.5 standard deviations (all 10 checks at once: alpha < 1e-4).
    """
    d, n = 24, 40_000
    params = {"subjects": n, "images_per_subject": 2, "identity_spread": 1.3, "image_noise": 0.45, "image_noise_sd": 0.3}
    pop = SyntheticPopulation({"G": params}, dim=d, seed=11)
    _, emb, _ = pop.generate()
    x = emb.reshape(n, 2, d).astype(np.float64)
    mated = (x[:, 0] * x[:, 1]).sum(1)
    nonmated = (x[0::2, 0] * x[1::2, 1]).sum(1)
    truth = group_truth(GroupSpec(**params), d, n_samples=300_000)
    ts = np.array([0.3, 0.45, 0.6, 0.7, 0.8])
    fmr, fnmr = truth.fmr(ts), truth.fnmr(ts)
    for i, t in enumerate(ts):
        assert _binomial_ok(int((nonmated >= t).sum()), nonmated.size, fmr[i]), (t, (nonmated >= t).mean(), fmr[i])
        assert _binomial_ok(int((mated < t).sum()), mated.size, fnmr[i]), (t, (mated < t).mean(), fnmr[i])


def test_rates_are_monotone_and_inverse_thresholds_hit_targets():
    truth = group_truth(GroupSpec(10, 2, 1.1, 0.3, image_noise_sd=0.2), 30, n_samples=100_000)
    ts = np.linspace(-0.2, 1.0, 61)
    fmr, fnmr = truth.fmr(ts), truth.fnmr(ts)
    assert np.all(np.diff(fmr) <= 1e-15) and np.all(np.diff(fnmr) >= -1e-15)
    for target in (1e-2, 1e-3, 1e-4):
        t = truth.threshold_at_fmr(target)
        assert truth.fmr([t])[0] == pytest.approx(target, rel=1e-6)
    t = truth.threshold_at_fnmr(0.05)
    assert truth.fnmr([t])[0] == pytest.approx(0.05, rel=1e-6)


def test_standard_error_and_moments():
    truth = group_truth(GroupSpec(10, 2, 1.5, 0.5), 16, n_samples=50_000, seed=3)
    p, se = truth.nonmated.sf_with_se([0.5])
    assert 0 < se[0] < 0.01 * max(p[0], 1e-3) + 2e-3
    sample = truth.nonmated.sample(np.random.default_rng(0))
    assert sample.mean() == pytest.approx(truth.nonmated.mean(), abs=3e-3)
    assert sample.var() == pytest.approx(truth.nonmated.var(), rel=0.03)


def test_population_truth_pooled_and_table():
    groups = {
        "A": {"subjects": 300, "images_per_subject": 2, "identity_spread": 1.0, "image_noise": 0.4, "fta_rate": 0.1,
              "labels": {"eth": "x"}},
        "B": {"subjects": 300, "images_per_subject": 2, "identity_spread": 2.0, "image_noise": 0.4, "labels": {"eth": "x"}},
    }
    pop = SyntheticPopulation(groups, dim=20, seed=4)
    truth = population_truth(pop, n_samples=40_000)
    t = 0.4
    a = truth.groups["A"].fmr([t])[0]
    b = truth.groups["B"].fmr([t])[0]
    assert a > b  # smaller identity spread -> more alike strangers -> higher FMR
    tab = truth.table({"t": t})
    assert set(tab["group"]) == {"A", "B"} and set(tab["metric"]) == {"FMR", "FNMR"}
    fmr_a = tab.query("group == 'A' and metric == 'FMR'")["true_rate"].item()
    assert fmr_a == pytest.approx(a)
    # pooling both groups under eth = x weights by expected comparison counts (FTA included)
    pooled = truth.table({"t": t}, attribute="eth").query("metric == 'FMR'")["true_rate"].item()
    assert pooled == pytest.approx(truth.pooled_fmr([t])[0])
    w = truth.weights
    assert w[("A", "A")] == pytest.approx(300 * 299 / 2 * (2 * 0.9) ** 2)
    assert w[("A", "B")] == pytest.approx(300 * 300 * 1.8 * 2)
    tp = truth.threshold_at_pooled_fmr(1e-3)
    assert truth.pooled_fmr([tp])[0] == pytest.approx(1e-3, rel=1e-3)


def test_dim_below_four_is_refused():
    with pytest.raises(ConfigError, match="dim"):
        group_truth(GroupSpec(10, 2, 1.0, 0.5), 3)
