"""Bounded memory with scores tied at the edge of the exact tail (issue #9, "Bounded memory").

Scenario: manifest rows over only 4 distinct image files (many subject ids), so every
comparison takes one of a few values and a quarter of the non-mated comparisons tie at the
largest possible score (identical images). Before: the run failed with "rebuild the
histogram with a larger hi" (the tie sat on the histogram's upper edge), and the exact tail
kept every score tied with its smallest kept one (50,000 rows grew to 24 GB). Now the tail
moves its cutoff above a tie it cannot keep (at most ``2 * tail_size`` scores) and the
threshold at a target FMR is read above the tie (achieved FMR 0, metrics-reference §0).
Measured at 5e4 rows (1.25e9 comparisons) by ``scripts/bench_metrics.py --ties 5e4``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bench.run as rs
from bench.data.manifest import Manifest
from bench.scores.subjects import SubjectAggregates
from bench.run import Protocol


def test_tail_with_a_huge_tie_stays_bounded():
    S = 200
    agg = SubjectAggregates(np.zeros(S, dtype=int), np.full(S, 2), tail_size=50)
    rng = np.random.default_rng(0)
    for _ in range(40):  # 40 blocks of 1,000 comparisons, all tied at 0.5, plus a few above
        a = rng.integers(0, S, 1000)
        b = (a + 1 + rng.integers(0, S - 1, 1000)) % S
        x = np.full(1000, 0.5)
        x[:5] = 0.9 + 0.01 * rng.random(5)  # distinct scores above the tie
        agg.add_nonmated(x, a, b)
        assert agg.n_tail <= 2 * agg.tail_size + 1000  # never more than one block above the bound
    assert 50 <= agg.n_tail <= 100 and agg.cutoff > 0.9  # the largest distinct scores stay, the tie went
    s, a, b = agg._tail_arrays()
    assert (s >= agg.cutoff).all() and s.size == agg.n_tail


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_rows_over_four_image_files_give_a_threshold_not_an_error(metric):
    n = 400
    subjects = np.repeat([f"s{i}" for i in range(n // 2)], 2)
    table = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "path": [f"p{i}" for i in range(n)], "subject_id": subjects,
                          "label_source": "test", "g": np.where(np.arange(n) % 4 < 2, "x", "y")}).astype("string")
    manifest = Manifest(table=table, root=None, attributes=("g",), name="ties")
    four = np.random.default_rng(0).standard_normal((4, 16))
    emb = (four / np.linalg.norm(four, axis=1, keepdims=True))[np.arange(n) % 4].astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rs.evaluate_acquired(manifest, emb, np.full(n, None, dtype=object), None, {"name": "t", "metric": metric, "nominal_threshold": None},
                                   ["g"], manifest.group_labels(["g"]), Protocol(target_fmrs=[1e-2], bootstrap_replicates=20),
                                   engine="stream")
    t = res.thresholds[0]
    # a quarter of the 79,600 non-mated comparisons are identical images (the maximum score): any
    # threshold at FMR 1e-2 lies above them, so nothing is a false match
    assert t["status"] == "ok" and t["achieved_fmr"] == 0.0
    top = 0.0 if metric == "euclidean" else 1.0
    assert top < t["threshold"] <= top + 1e-3
