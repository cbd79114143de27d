"""1:N identification metrics (issue 13): hand-computable vectors, ties, empty groups, FTA.

Vectors: the public vector of the identification reference (NIST FRVT/FRTE 1:N
definitions; ISO/IEC 19795-1 FNIR(N, R, T)), restated in docs/identification.md, and a
3-person gallery computed by hand below.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.errors import ConfigError, DataError
from bench.metrics.identification import (
    INVESTIGATION,
    false_candidates,
    identification_rates,
    mate_ranks,
    predicted_fpir,
    probe_statistics,
    threshold_at_fpir,
)
from bench.protocol.identification import split_gallery
from bench.protocol.search import search, search_scores


def _evaluate(scores, kind, groups, gallery_groups, thresholds, *, ranks=(1, 2), acquired=None, top_l=50, subjects=None):
    res = search_scores(np.asarray(scores, dtype=float), top_l=top_l)
    kind = np.asarray(kind)
    acq = np.ones(kind.size, bool) if acquired is None else np.asarray(acquired)
    rank, ms = mate_ranks(res.candidates, res.scores, np.where(kind >= 0, kind, -1))
    out = probe_statistics(res.scores[:, 0], rank, ms, kind, acq, thresholds, ranks=list(ranks), list_scores=res.scores)
    subjects = np.arange(kind.size).astype(str) if subjects is None else subjects
    rates = identification_rates(out, groups, subjects, attribute="g", bootstrap_replicates=None)
    nm = (kind == -1) & acq
    by_g, cells = false_candidates(res.candidates, res.scores, nm, groups, gallery_groups, thresholds, attribute="g")
    return res, rates, by_g, cells


def _rate(rates, group, name, metric):
    row = rates[(rates["group"] == group) & (rates["threshold_name"] == name) & (rates["metric"] == metric)]
    assert len(row) == 1, (group, name, metric)
    return row.iloc[0]


# Public vector: gallery a1 (X), b1 (Y); q1..q3 non-mated, r1 (mate a1), r2 (mate b1).
PUBLIC_SCORES = [[0.50, 0.10], [0.20, 0.90], [0.30, 0.40], [0.80, 0.85], [0.05, 0.60]]
PUBLIC_KIND = [-1, -1, -1, 0, 1]
PUBLIC_GROUPS = ["X", "Y", "Y", "X", "Y"]
PUBLIC_GALLERY = ["X", "Y"]


def test_public_vector_at_045():
    _, rates, by_g, _ = _evaluate(PUBLIC_SCORES, PUBLIC_KIND, PUBLIC_GROUPS, PUBLIC_GALLERY, {"T": 0.45})
    assert _rate(rates, "(all)", "T", "FPIR")[["errors", "n"]].tolist() == [2, 3]
    assert _rate(rates, "X", "T", "FPIR")["rate"] == 1.0
    assert _rate(rates, "Y", "T", "FPIR")["rate"] == 0.5
    assert _rate(rates, "(all)", "T", "FNIR_rank1")["rate"] == 0.5  # r1's mate is 2nd
    assert _rate(rates, "(all)", "T", "FNIR_rank2")["rate"] == 0.0
    assert _rate(rates, "(all)", "T", "SEL")["rate"] == pytest.approx(2 / 3)
    assert by_g.set_index("gallery_group")["false_candidates"].to_dict() == {"X": 1, "Y": 1}


def test_public_vector_threshold_at_target():
    t = threshold_at_fpir([0.50, 0.90, 0.40], 1 / 3)
    assert (t["status"], t["threshold"], t["k"], t["achieved_fpir"], t["support"]) == ("ok", 0.90, 1, 1 / 3, "low")
    _, rates, _, _ = _evaluate(PUBLIC_SCORES, PUBLIC_KIND, PUBLIC_GROUPS, PUBLIC_GALLERY, {"T": t["threshold"]})
    assert _rate(rates, "X", "T", "FPIR")["rate"] == 0.0
    assert _rate(rates, "Y", "T", "FPIR")["rate"] == 0.5
    assert _rate(rates, "(all)", "T", "FNIR_rank1")["rate"] == 1.0
    # investigation mode (no threshold): rank 1 misses r1 only
    assert _rate(rates, "(all)", INVESTIGATION, "FNIR_rank1")["rate"] == 0.5


# Own 3-person vector. Gallery: a (group X), b (Y), c (Y).
#        a     b     c
# n1 X  0.70  0.20  0.65   non-mated
# n2 Y  0.10  0.55  0.60   non-mated
# n3 Y  0.30  0.35  0.40   non-mated
# n4 X  0.62  0.10  0.05   non-mated
# m1 X  0.90  0.50  0.95   mate a  -> c outranks a: rank 2
# m2 Y  0.20  0.58  0.30   mate b  -> rank 1, score 0.58
# m3 Y  0.66  0.64  0.61   mate c  -> rank 3
# At T = 0.6: non-mated top scores 0.70, 0.60, 0.40, 0.62 -> FPIR 3/4 (X 2/2, Y 1/2).
#   False candidates (>= 0.6): n1 -> a, c; n2 -> c; n4 -> a: a 2, c 2 -> X 2 per 1 person,
#   Y 2 over 2 persons (1 each); SEL = 4/4 = 1. Cells: X->X 2, X->Y 1, Y->Y 1, Y->X 0.
#   FNIR rank 1: m1 miss (rank 2), m2 miss (0.58 < 0.6), m3 miss (rank 3) -> 3/3;
#   FNIR rank 2: m1 found (0.90), m2 miss, m3 miss -> 2/3.
# Investigation (T = -inf): FNIR rank 1 = 2/3 (m1, m3), rank 2 = 1/3 (m3).
# Target FPIR 0.25 (4 searches, k = 1): sorted tops 0.70, 0.62, 0.60, 0.40 -> T = 0.70,
#   achieved 1/4 (X 1/2, Y 0/2).
OWN_SCORES = [[0.70, 0.20, 0.65], [0.10, 0.55, 0.60], [0.30, 0.35, 0.40], [0.62, 0.10, 0.05],
              [0.90, 0.50, 0.95], [0.20, 0.58, 0.30], [0.66, 0.64, 0.61]]
OWN_KIND = [-1, -1, -1, -1, 0, 1, 2]
OWN_GROUPS = ["X", "Y", "Y", "X", "X", "Y", "Y"]
OWN_GALLERY = ["X", "Y", "Y"]


def test_three_person_gallery():
    _, rates, by_g, cells = _evaluate(OWN_SCORES, OWN_KIND, OWN_GROUPS, OWN_GALLERY, {"T": 0.6})
    assert _rate(rates, "(all)", "T", "FPIR")["rate"] == 0.75
    assert _rate(rates, "X", "T", "FPIR")["rate"] == 1.0
    assert _rate(rates, "Y", "T", "FPIR")["rate"] == 0.5
    assert _rate(rates, "(all)", "T", "FNIR_rank1")[["errors", "n"]].tolist() == [3, 3]
    assert _rate(rates, "(all)", "T", "FNIR_rank2")[["errors", "n"]].tolist() == [2, 3]
    assert _rate(rates, "(all)", INVESTIGATION, "FNIR_rank1")["errors"] == 2
    assert _rate(rates, "(all)", INVESTIGATION, "FNIR_rank2")["errors"] == 1
    assert _rate(rates, "(all)", "T", "SEL")["rate"] == 1.0
    g = by_g.set_index("gallery_group")
    assert g.loc["X", "false_candidates"] == 2 and g.loc["X", "per_enrolled_person"] == 2.0
    assert g.loc["Y", "false_candidates"] == 2 and g.loc["Y", "per_enrolled_person"] == 1.0
    assert g.loc["Y", "rate"] == pytest.approx(2 / (2 * 4))
    c = cells.set_index(["probe_group", "gallery_group"])["false_candidates"].to_dict()
    assert c == {("X", "X"): 2, ("X", "Y"): 1, ("Y", "X"): 0, ("Y", "Y"): 1}
    t = threshold_at_fpir([0.70, 0.60, 0.40, 0.62], 0.25)
    assert (t["threshold"], t["achieved_fpir"], t["k"]) == (0.70, 0.25, 1)
    _, rates, _, _ = _evaluate(OWN_SCORES, OWN_KIND, OWN_GROUPS, OWN_GALLERY, {"T": t["threshold"]})
    assert _rate(rates, "X", "T", "FPIR")["rate"] == 0.5 and _rate(rates, "Y", "T", "FPIR")["rate"] == 0.0


def test_probe_order_invariance():
    perm = np.random.default_rng(1).permutation(len(OWN_KIND))
    a = _evaluate(OWN_SCORES, OWN_KIND, OWN_GROUPS, OWN_GALLERY, {"T": 0.6})[1]
    b = _evaluate(np.asarray(OWN_SCORES)[perm], np.asarray(OWN_KIND)[perm], np.asarray(OWN_GROUPS)[perm],
                  OWN_GALLERY, {"T": 0.6}, subjects=np.arange(len(OWN_KIND)).astype(str)[perm])[1]
    pd.testing.assert_frame_equal(a, b)


def test_ties_at_threshold():
    # tops 0.5, 0.5, 0.5, 0.2 with target 0.5 (k = 2): the tie block straddles the cut,
    # so the threshold moves above it and no search alarms (achieved 0 <= 0.5).
    t = threshold_at_fpir([0.5, 0.5, 0.5, 0.2], 0.5)
    assert t["threshold"] > 0.5 and t["achieved_fpir"] == 0.0
    # a score equal to T is a returned candidate (>=)
    _, rates, by_g, _ = _evaluate([[0.5, 0.5]], [-1], ["X"], ["X", "Y"], {"T": 0.5})
    assert _rate(rates, "X", "T", "FPIR")["rate"] == 1.0
    assert by_g["false_candidates"].sum() == 2
    # a non-mate tied with the mate ranks ahead of it (rank 2), whatever the gallery order
    res = search_scores(np.array([[0.7, 0.7], [0.7, 0.7]]))
    rank, ms = mate_ranks(res.candidates, res.scores, [0, 1])
    assert rank.tolist() == [2, 2] and ms.tolist() == [0.7, 0.7]


def test_refused_and_low_support():
    t = threshold_at_fpir([0.1] * 50, 1e-3)
    assert t["status"] == "refused" and "1000" in t["reason"]
    t = threshold_at_fpir(np.linspace(0, 1, 1000), 1e-2)
    assert t["status"] == "ok" and t["support"] == "low"  # 1000 < 30/0.01
    assert threshold_at_fpir(np.linspace(0, 1, 3000), 1e-2)["support"] == "ok"


def test_empty_groups_and_one_person_gallery():
    # a group with only non-mated searches: its FNIR is undefined (NaN, n = 0), not dropped
    _, rates, by_g, _ = _evaluate([[0.3], [0.8], [0.9]], [-1, -1, 0], ["X", "Z", "X"], ["X"], {"T": 0.5}, ranks=(1,))
    z = _rate(rates, "Z", "T", "FNIR_rank1")
    assert z["n"] == 0 and math.isnan(z["rate"]) and z["flag"] == "no_searches"
    assert _rate(rates, "Z", "T", "FPIR")["rate"] == 1.0
    assert _rate(rates, "X", "T", "FNIR_rank1")["rate"] == 0.0  # one-person gallery: rank 1 always
    assert by_g.set_index("gallery_group").loc["X", "false_candidates"] == 1


def test_fta_in_gallery_and_probes():
    # probe 1 failed to acquire (non-mated), probe 3 failed to acquire (mated),
    # probe 4 is mated but its mate failed to enrol (kind -2)
    scores = [[0.9], [0.95], [0.2], [0.99], [0.1]]
    kind = [-1, -1, 0, 0, -2]
    acquired = [True, False, True, False, True]
    _, rates, _, _ = _evaluate(scores, kind, ["X"] * 5, ["X"], {"T": 0.5}, acquired=acquired, ranks=(1,))
    fp = _rate(rates, "X", "T", "FPIR")
    assert (fp["errors"], fp["n"], fp["fta"]) == (1, 1, 1) and fp["generalized_rate"] == 0.5
    fn = _rate(rates, "X", "T", "FNIR_rank1")
    assert (fn["errors"], fn["n"], fn["fta"], fn["fte"]) == (1, 1, 1, 1) and fn["generalized_rate"] == 1.0
    fta = _rate(rates, "X", "", "FTA_probe")
    assert (fta["errors"], fta["n"]) == (2, 5)


def test_split_counts_fte_and_explicit_list():
    sid = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    lab = pd.DataFrame({"g": ["X", "X", "X", "X", "Y", "Y", "Y", "Y"]})
    acq = np.array([False, True, True, True, True, True, True, True])
    sp = split_gallery(sid, acq, lab, fraction=0.5, seed=3)
    c = sp.counts(sid, lab).set_index("group")
    assert c.loc["X", "enrolled_subjects"] == 1 and c.loc["X", "not_enrolled_subjects"] == 1
    assert c.loc["Y", "enrolled_subjects"] == 1 and c.loc["Y", "not_enrolled_subjects"] == 1
    sp = split_gallery(sid, acq, lab, gallery_subjects=["a", "c"])
    assert sp.enrolled.tolist() == ["a", "c"] and sp.gallery_rows.tolist() == [0, 4]
    assert sp.gallery_acquired.tolist() == [False, True]
    assert sp.probe_template.tolist() == [-2, -1, -1, 0, -1, -1]  # rows 1,2,3,5,6,7
    c = sp.counts(sid, lab).set_index("group")
    assert c.loc["X", "gallery_fte"] == 1 and c.loc["X", "mated_searches"] == 1
    with pytest.raises(ConfigError, match="not in the dataset"):
        split_gallery(sid, acq, lab, gallery_subjects=["zz"])
    with pytest.raises(ConfigError, match="enrolled_fraction"):
        split_gallery(sid, acq, lab, fraction=1.0)


def test_split_is_stratified_and_seeded():
    rng = np.random.default_rng(0)
    sid = np.repeat([f"s{i:03d}" for i in range(200)], 2)
    lab = pd.DataFrame({"g": np.repeat(rng.choice(["A", "B", "C"], 200, p=[0.7, 0.25, 0.05]), 2)})
    a = split_gallery(sid, np.ones(400, bool), lab, fraction=0.3, seed=5)
    b = split_gallery(sid, np.ones(400, bool), lab, fraction=0.3, seed=5)
    assert a.enrolled.tolist() == b.enrolled.tolist()
    c = a.counts(sid, lab).set_index("group")
    assert (c["enrolled_subjects"] > 0).all() and (c["not_enrolled_subjects"] > 0).all()
    share = c["enrolled_subjects"] / (c["enrolled_subjects"] + c["not_enrolled_subjects"])
    assert share.loc["A"] == pytest.approx(0.3, abs=0.01)


def test_streamed_search_equals_dense():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((130, 8))
    g = rng.standard_normal((400, 8))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    g[10] = g[3]  # exact tie in every row
    codes = rng.integers(0, 3, 400)
    got = search(q, g, top_l=7, thresholds=[0.3, 0.6], gallery_groups=codes, probe_block=32, gallery_block=50, dtype="float64")
    ref = search_scores(q @ g.T, top_l=7, thresholds=[0.3, 0.6], gallery_groups=codes)
    assert (got.candidates == ref.candidates).all()
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-12)
    assert (got.counts == ref.counts).all()
    with pytest.raises(DataError, match="empty"):
        search(q, g[:0])


def test_predicted_fpir_against_simulation():
    # independent comparisons with FMR_{g,h} drawn as Bernoulli: the formula is exact in
    # expectation; a 200k-search simulation must agree within 4 binomial standard errors
    fmr = np.array([[1e-3, 2e-4], [5e-4, 3e-3]])
    n = np.array([300, 150])
    pred = predicted_fpir(fmr, n)
    rng = np.random.default_rng(7)
    searches = 200_000
    for g in range(2):
        hits = rng.binomial(n[0], fmr[g, 0], searches) + rng.binomial(n[1], fmr[g, 1], searches)
        measured = (hits > 0).mean()
        se = math.sqrt(pred[g] * (1 - pred[g]) / searches)
        assert abs(measured - pred[g]) < 4 * se
    assert predicted_fpir(fmr, np.array([[0, 0], [300, 150]])).shape == (2, 2)


def test_prediction_against_generator_simulation():
    """FPIR_g(T) ~ 1 - prod_h (1 - FMR_gh)^n_h on the synthetic generator (docs/identification.md).

    FMR_gh is measured 1:1 on subjects disjoint from the probes and the gallery. The
    expected number of false candidates per search, sum_h n_h FMR_gh, holds whatever the
    dependence (linearity of expectation); FPIR agrees with the independence prediction
    while the expected hits per search are small and falls below it as they grow, because
    a probe's comparisons are positively dependent (probes near their group centre collect
    several hits).
    """
    from bench.synthetic.generator import SyntheticPopulation

    groups = {"A": {"subjects": 6000, "images_per_subject": 1, "identity_spread": 1.14, "image_noise": 0.21},
              "B": {"subjects": 6000, "images_per_subject": 1, "identity_spread": 2.43, "image_noise": 0.28}}
    man, emb, _ = SyntheticPopulation(groups, dim=30, seed=1).generate()
    g = man.table["group"].to_numpy()
    rng = np.random.default_rng(0)
    idx = {k: rng.permutation(np.flatnonzero(g == k)) for k in "AB"}
    calib = {k: idx[k][:2000] for k in "AB"}
    probes = {k: idx[k][2000:4000] for k in "AB"}
    gallery = np.concatenate([idx["A"][4000:5500], idx["B"][4000:4500]])
    gcode = (g[gallery] == "B").astype(int)
    t = float(np.quantile(emb[calib["A"][:1000]] @ emb[calib["A"][1000:]].T, 1 - 2e-4))
    fmr = np.array([[(emb[calib[a][:1000]] @ emb[calib[b][1000:]].T >= t).mean() for b in "AB"] for a in "AB"])
    results = {}
    for n in (200, 2000):
        sub = np.sort(rng.choice(gallery.size, n, replace=False))
        n_h = np.bincount(gcode[sub], minlength=2)
        pred = predicted_fpir(fmr, n_h)
        res = search(emb[probes["A"]], emb[gallery[sub]], top_l=1, thresholds=[t], gallery_groups=gcode[sub], dtype="float64")
        hits = res.counts[:, 0, :].sum(axis=1)
        fpir, sel = (hits > 0).mean(), hits.mean()
        se = math.sqrt(pred[0] * (1 - pred[0]) / hits.size)
        assert abs(sel - fmr[0] @ n_h) < 4 * hits.std() / math.sqrt(hits.size) + 0.15 * fmr[0] @ n_h  # FMR itself is estimated
        results[n] = (fpir, pred[0], se)
    fpir, pred, se = results[200]  # expected hits ~0.03: independence holds
    assert abs(fpir - pred) < 4 * se
    fpir, pred, se = results[2000]  # expected hits ~0.3: the prediction overestimates
    assert fpir < pred - 4 * se


def test_search_ties_straddling_the_list_end():
    # ten identical templates (indices 4..13) tie for first place; a list of 3 keeps the
    # three smallest indices whatever the block sizes
    rng = np.random.default_rng(3)
    g = rng.standard_normal((40, 6))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    g[4:14] = g[4]
    for block in (5, 20, 40):
        r = search(g[4:5], g, top_l=3, gallery_block=block, dtype="float64")
        assert r.candidates.tolist() == [[4, 5, 6]], block


def test_zero_error_cells_use_the_1to1_notation_and_exact_bound():
    """``0/n (≤ u)`` with u = 1 - 0.05^(1/n), the one-sided exact 95% bound of the 1:1 report
    (docs/protocol.md §5.5): 0 of 6 searches -> 1 - 0.05^(1/6) = 0.393; never ``[0, 0]``."""
    from bench.report.identification import _cell as md_cell
    from bench.report.identification_html import _cell as html_cell

    row = {"metric": "FNIR_rank1", "n": 6, "errors": 0, "rate": 0.0, "boot_low": 0.0, "boot_high": 0.0,
           "ci_low": 0.0, "ci_high": 0.39, "redraw_low": float("nan"), "redraw_high": float("nan"), "flag": None}
    assert md_cell(pd.Series(row)) == "0/6 (≤ 0.39)"
    assert html_cell(row) == ["0/6", "≤ 0.39 (one-sided exact 95% upper bound)"]
    big = {**row, "n": 180, "ci_high": 0.0209}  # Wilson's 0.0209 is not the exact 0.0165
    assert md_cell(pd.Series(big)) == "0/180 (≤ 0.017)"
    assert html_cell(big)[1] == "≤ 0.017 (one-sided exact 95% upper bound)"
    # a cell with errors keeps rate (errors/n) [bootstrap interval]
    assert md_cell(pd.Series({**row, "errors": 3, "rate": 0.5, "boot_low": 0.1, "boot_high": 0.9, "flag": "low_precision"})) == "0.5† (3/6) [0.1, 0.9]"


def test_stored_searches_are_not_listed_so_a_clean_clone_verifies(tmp_path):
    """identification_search/gallery.parquet are git-ignored (scores of people): files.sha256
    must not list them, or every published folder fails its file check on a fresh clone."""
    from bench.report.folder import read_file_manifest, write_file_manifest

    (tmp_path / "metrics.json").write_text("{}")
    for name in ("identification_search.parquet", "identification_gallery.parquet"):
        (tmp_path / name).write_bytes(b"x")
    write_file_manifest(tmp_path)
    assert [ln.split("  ")[1] for ln in (tmp_path / "files.sha256").read_text().splitlines()] == ["metrics.json"]
    for name in ("identification_search.parquet", "identification_gallery.parquet"):
        (tmp_path / name).unlink()
    assert read_file_manifest(tmp_path) == ([], ["metrics.json"])
