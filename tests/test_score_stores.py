"""The two score stores behind one interface (bench.scores.store.ScoreStore, docs/score-stores.md).

Both stores are filled from the same embeddings by the verification protocol
(bench.protocol.verification.score_into_store) and read through the same methods. At a
threshold that is an extra bin edge of the histogram (an external threshold) the
histogram store's counts are exact (ScoreHistogram notes), so every per-group count, the
cross-group matrix and the comparison totals must equal the table store's
(metrics-reference §2: per-group FMR over demographically matched non-mated pairs).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from bench.data.manifest import Manifest
from bench.errors import ConfigError
from bench.protocol.verification import Protocol, score_into_store, threshold_entries
from bench.scores.store import ScoreStore

pytest.importorskip("torch")  # the histogram store scores in blocks with torch


def _population():
    """30 subjects x 3 images in two groups, seeded unit-norm embeddings (d = 16)."""
    rng = np.random.default_rng(11)
    n_subj, per = 30, 3
    subjects = np.repeat([f"s{i:02d}" for i in range(n_subj)], per)
    group = np.where(np.repeat(np.arange(n_subj), per) < 12, "a", "b")
    table = pd.DataFrame({"image_id": [f"i{i}" for i in range(n_subj * per)], "path": [f"p{i}" for i in range(n_subj * per)],
                          "subject_id": subjects, "label_source": "test", "g": group}).astype("string")
    manifest = Manifest(table=table, root=None, attributes=("g",), name="stores")
    centres = rng.standard_normal((n_subj, 16))
    emb = centres[np.repeat(np.arange(n_subj), per)] + 0.7 * rng.standard_normal((n_subj * per, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    return manifest, emb, manifest.group_labels(["g"])


def _stores(protocol: Protocol):
    manifest, emb, labels = _population()
    ok = np.ones(len(emb), dtype=bool)
    info = {"name": "t", "metric": "cosine", "nominal_threshold": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [score_into_store(manifest, emb, ok, labels, ["g"], info, protocol, engine, {}) for engine in ("table", "stream")], info


def test_both_stores_implement_the_interface_and_agree_on_counts():
    protocol = Protocol(external_thresholds={"ext": 0.25}, bootstrap_replicates=None, use_nominal_threshold=False)
    (table, hist), info = _stores(protocol)
    assert isinstance(table, ScoreStore) and isinstance(hist, ScoreStore)
    assert (table.engine, hist.engine) == ("table", "stream")
    # 30 subjects x 3 images: 30 * 3 = 90 mated pairs; C(90, 2) - 90 = 3915 non-mated pairs
    assert (table.n_mated, table.n_nonmated) == (hist.n_mated, hist.n_nonmated) == (90, 3915)
    counts = []
    for store in (table, hist):
        thresholds = threshold_entries(info, protocol, lambda s=store: s.calibration(None))
        store.settle_thresholds(thresholds, False)
        rates = store.group_rates("g", {"ext": 0.25}, 0.95).sort_values(["group", "metric"]).reset_index(drop=True)
        cross = store.cross_group("g", "ext", 0.25).sort_values(["group_a", "group_b"]).reset_index(drop=True)
        counts.append((rates[["group", "metric", "errors", "comparisons", "subjects"]], cross[["group_a", "group_b", "false_matches", "comparisons"]]))
    pd.testing.assert_frame_equal(counts[0][0], counts[1][0], check_dtype=False)
    pd.testing.assert_frame_equal(counts[0][1], counts[1][1], check_dtype=False)
    # group a: 12 subjects -> 36 mated comparisons and C(36, 2) - 36 = 594 matched non-mated ones
    a = counts[0][0].set_index(["group", "metric"])
    assert a.loc[("a", "FNMR"), "comparisons"] == 36 and a.loc[("a", "FMR"), "comparisons"] == 594


def test_only_the_table_store_has_the_mitigation_analysis():
    protocol = Protocol(target_fmrs=[1e-2], bootstrap_replicates=None, use_nominal_threshold=False)
    (table, hist), _ = _stores(protocol)
    out = table.mitigation([1e-2])
    assert set(out["group"]) == {"a", "b"} and (out["analysis"] == "mitigation: per-group thresholds").all()
    with pytest.raises(ConfigError, match="needs the table engine"):
        hist.mitigation([1e-2])
