"""Pairing counts and the distance -> similarity convention."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import ConfigError
from bench.protocol.pairs import all_pairs
from bench.protocol.scoring import pair_scores, similarity_matrix


def test_pair_counts():
    # 3 subjects with 2, 3, 1 images: mated C(2,2)+C(3,2) = 4; all C(6,2) = 15 -> 11 non-mated
    s = np.array(["a", "a", "b", "b", "b", "c"])
    ia, ib, mated = all_pairs(s)
    assert mated.sum() == 4 and (~mated).sum() == 11
    assert (ia < ib).all()
    assert (s[ia[mated]] == s[ib[mated]]).all() and (s[ia[~mated]] != s[ib[~mated]]).all()


def test_nonmated_sample_is_seeded_and_keeps_mated():
    s = np.repeat(np.arange(50), 2)
    a = all_pairs(s, max_nonmated=100, seed=1)
    b = all_pairs(s, max_nonmated=100, seed=1)
    assert all((x == y).all() for x, y in zip(a, b))
    assert a[2].sum() == 50 and (~a[2]).sum() == 100
    with pytest.raises(ConfigError, match="max_nonmated"):
        all_pairs(s, max_nonmated=0)


def test_euclidean_is_negated_distance_and_cosine_is_cosine():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    ia, ib = np.array([0, 1]), np.array([1, 2])
    assert pair_scores(x, ia, ib, "euclidean").tolist() == pytest.approx([-5.0, -np.sqrt(20.0)])
    y = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert pair_scores(y, np.array([0]), np.array([1]), "cosine")[0] == pytest.approx(np.sqrt(0.5))
    m = similarity_matrix(x, "euclidean")
    assert m[0, 1] == pytest.approx(-5.0) and m[1, 1] == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="valid: \\['cosine', 'euclidean'\\]"):
        pair_scores(x, ia, ib, "manhattan")
