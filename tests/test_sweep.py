"""Acquisition-condition sweep (issue #5) on 5 real London subjects with the real dlib model.

The London set is read in place (never copied); the test skips when it is absent.
The unperturbed protocol is recomputed here by hand from the embeddings (probe x
reference score matrix, order-statistic threshold, counts) and compared with the
sweep's thresholds and its unperturbed and strength-0 rows.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.acquisition.transforms import Exposure, Resolution
from bench.errors import ConfigError
from bench.protocol.sweep_spec import SWEEP_COLUMNS, UNPERTURBED, SweepProtocol, make_sweeps
from bench.report.sweep import write_sweep
from bench.sweep import run_sweep

DATA = Path(__file__).resolve().parents[2] / "shared/datasets/frl_london"
SUBJECTS = ["001", "002", "003", "004", "005"]
PROTOCOL = SweepProtocol(attributes=["face_gender"], target_fmrs=[0.05], seed=0)  # 20 non-mated: 1e-3 would be refused


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not (DATA / "london_info.csv").is_file():
        pytest.skip(f"FRL London set not found at {DATA}; it is read in place, never copied")
    from bench.data.frl_london import load_frl_london
    from bench.data.manifest import Manifest
    from bench.models.dlib_resnet import DlibResNet

    full = load_frl_london(DATA)
    table = full.table[full.table["subject_id"].isin(SUBJECTS)].reset_index(drop=True)
    dataset = Manifest(table=table, root=full.root, attributes=full.attributes, name=full.name)
    model = DlibResNet()
    sweeps = make_sweeps({
        "exposure": {"transform": Exposure(), "strengths": [0, -3]},
        "resolution": {"transform": Resolution(), "strengths": [12]},
    })
    cache = tmp_path_factory.mktemp("cache")
    first = run_sweep(dataset, model, sweeps, PROTOCOL, cache_dir=cache, progress=False)
    second = run_sweep(dataset, model, sweeps, PROTOCOL, cache_dir=cache, progress=False)
    return dataset, model, cache, first, second


def _by_hand(setup):
    """Unperturbed probe x reference protocol computed directly from the cached embeddings."""
    from bench.metrics.rates import threshold_at_fmr
    from bench.models.cache import EmbeddingCache, model_cache_key
    from bench.models.extraction import extract_embeddings

    dataset, model, cache, *_ = setup
    ext = extract_embeddings(dataset, model, EmbeddingCache(cache, model_cache_key(model.settings(), model.weights_sha256)), progress=False)
    t = dataset.table
    probe = {s: ext.embeddings[i] for i, s in enumerate(t["subject_id"]) if t["view"].iloc[i] == "smiling_front"}
    ref = {s: ext.embeddings[i] for i, s in enumerate(t["subject_id"]) if t["view"].iloc[i] == "neutral_front"}
    score = np.array([[-np.linalg.norm(probe[a].astype(np.float64) - ref[b]) for b in SUBJECTS] for a in SUBJECTS])
    mated = np.eye(len(SUBJECTS), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        thr = threshold_at_fmr(score[~mated], 0.05)
    gender = t.drop_duplicates("subject_id").set_index("subject_id").loc[SUBJECTS, "face_gender"].astype(str).to_numpy()
    return score, mated, thr, gender


def test_counts(setup):
    *_, first, _ = setup
    c = first.counts
    assert c["probe_images"] == 5 and c["reference_images"] == 5 and c["probes_in_population"] == 5
    assert c["mated_comparisons_unperturbed"] == 5  # one per subject
    assert c["nonmated_comparisons_unperturbed"] == 5 * 4  # n (n - 1) ordered probe/reference pairs
    rows = first.rows
    allg = rows[(rows["group"] == "(all)") & (rows["attribute"] == "face_gender")]
    for (tr, s), sel in allg.groupby(["transform", "strength"], dropna=False):
        fta = sel[sel["metric"] == "FTA"].iloc[0]
        assert fta["comparisons"] == 5
        acquired = 5 - int(fta["errors"])
        fnmr = sel[sel["metric"] == "FNMR"]
        fmr = sel[sel["metric"] == "FMR"]
        assert (fnmr["comparisons"] == acquired).all(), (tr, s)
        assert (fmr["comparisons"] == acquired * 4).all(), (tr, s)
        incl = sel[sel["metric"] == "FNMR_incl_FTA"]
        assert (incl["comparisons"] == 5).all() and (incl["errors"].to_numpy() == fnmr["errors"].to_numpy() + int(fta["errors"])).all()
    assert list(rows.columns) == SWEEP_COLUMNS
    assert c["perturbed_probes_computed"] == 10  # exposure -3 and resolution 12; exposure 0 is the identity
    assert c["perturbed_probes_unchanged"] == 5


def test_thresholds_are_the_unperturbed_runs(setup):
    *_, first, _ = setup
    score, mated, thr, _ = _by_hand(setup)
    th = {t["name"]: t for t in first.thresholds}
    assert th["nominal"]["threshold"] == -0.6
    cal = th["FMR=5e-02"]
    assert cal["k"] == 1 and cal["n_nonmated"] == 20  # floor(0.05 * 20)
    assert cal["threshold"] == thr.threshold and cal["achieved_fmr"] == thr.achieved_fmr <= 0.05
    # every transform and strength is measured at these same values
    r = first.rows[first.rows["metric"].isin(["FMR", "FNMR", "FNMR_incl_FTA"])]
    for name, value in (("nominal", -0.6), ("FMR=5e-02", thr.threshold)):
        assert (r[r["threshold_name"] == name]["threshold"] == value).all()


def test_unperturbed_and_strength_zero_rows_equal_the_protocol_by_hand(setup):
    *_, first, _ = setup
    score, mated, thr, gender = _by_hand(setup)
    rows = first.rows
    none = rows[rows["transform"] == UNPERTURBED].drop(columns=["transform", "strength"]).reset_index(drop=True)
    zero = rows[(rows["transform"] == "exposure") & (rows["strength"] == 0)].drop(columns=["transform", "strength"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(none, zero)
    for name, t in (("nominal", -0.6), ("FMR=5e-02", thr.threshold)):
        sel = none[(none["attribute"] == "face_gender") & (none["threshold_name"] == name)].set_index(["group", "metric"])
        assert sel.loc[("(all)", "FNMR"), "errors"] == int((score[mated] < t).sum())
        assert sel.loc[("(all)", "FMR"), "errors"] == int((score[~mated] >= t).sum())
        for g in sorted(set(gender)):
            ing = gender == g
            both = np.outer(ing, ing)
            n_nm = int((both & ~mated).sum())
            assert sel.loc[(g, "FNMR"), "comparisons"] == int(ing.sum())
            assert sel.loc[(g, "FNMR"), "errors"] == int((score[mated & both] < t).sum())
            assert sel.loc[(g, "FMR"), "comparisons"] == n_nm
            assert sel.loc[(g, "FMR"), "errors"] == int((score[~mated & both] >= t).sum())
            if n_nm:
                assert sel.loc[(g, "FMR"), "rate"] == pytest.approx((score[~mated & both] >= t).sum() / n_nm)


def test_perturbed_rows_are_cached_and_reproducible(setup):
    *_, first, second = setup
    assert second.counts["perturbed_probes_computed"] == 0
    assert second.counts["perturbed_probes_from_cache"] == 10
    pd.testing.assert_frame_equal(first.rows, second.rows)
    assert second.thresholds == first.thresholds
    # the perturbed probes really were different images: some score moved
    r = first.rows[(first.rows["metric"] == "FTA") & (first.rows["group"] == "(all)")]
    assert set(r["transform"]) == {UNPERTURBED, "exposure", "resolution"}
    assert first.geometry_info["probes_located"] == 5 and 150 < first.geometry_info["ied_px"]["median"] < 260


def test_write_sweep(setup, tmp_path):
    *_, first, _ = setup
    out = write_sweep(first, tmp_path / "run", run_name="tiny", config={"note": "test"}, min_group_subjects=3, figures=True)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["sweep.csv", "sweep.json", "report.md", "report.html", "sweep_exposure_face_gender.png",
                            "sweep_resolution_face_gender.png"])
    csv = pd.read_csv(out / "sweep.csv", keep_default_na=False, na_values=[""])
    assert list(csv.columns) == SWEEP_COLUMNS and len(csv) == len(first.rows)
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["dataset"]["manifest_sha256"] and len(doc["model"]["weights_sha256"]) == 2
    assert doc["provenance"]["packages"]["dlib-bin"]
    assert [t["name"] for t in doc["transforms"]] == ["exposure", "resolution"]
    small = doc["suppression"]["groups_shown_as_counts_only"]
    assert small == {"face_gender": ["male"]}  # 2 of the 5 subjects
    for attr, groups in small.items():  # fewer than 3 subjects: counts only
        sel = csv[(csv["attribute"] == attr) & csv["group"].isin(groups)]
        assert len(sel) and sel["rate"].isna().all() and sel["errors"].isna().all()
        assert (sel["flag"] == "suppressed_small_group").all()
        assert sel["comparisons"].notna().all()
    assert "FMR=5e-02" in (out / "report.md").read_text()
    # nothing per image is published
    assert not {"image_a", "image_b", "score", "embedding"} & set(csv.columns)
    assert "001_08" not in (out / "sweep.csv").read_text()


def test_config_composes_and_every_transform_instantiates():
    from hydra import compose, initialize_config_dir

    from bench.cli import CONFIG_DIR, instantiate_bench

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("sweep", overrides=["experiment_sweep=frl_london_dlib_sweep"])
        assert cfg.run_name == "frl_london_dlib_sweep" and cfg.model.name == "dlib_resnet"
        assert [s.name for s in make_sweeps(instantiate_bench(cfg.transforms))] == ["exposure", "resolution"]
        SweepProtocol(**{k: v for k, v in dict(cfg.sweep).items()})
        names = sorted(p.stem for p in (Path(CONFIG_DIR) / "transforms").glob("*.yaml"))
        cfg = compose("sweep", overrides=[f"transforms=[{','.join(names)}]"])
        sweeps = make_sweeps(instantiate_bench(cfg.transforms))
        assert sorted(s.name for s in sweeps) == names
        for s in sweeps:
            assert s.transform.name == s.name


def test_bad_sweep_configs_are_refused():
    with pytest.raises(ConfigError, match="non-empty"):
        make_sweeps({})
    with pytest.raises(ConfigError, match="repeated"):
        make_sweeps({"exposure": {"transform": Exposure(), "strengths": [1, 1.0]}})
    with pytest.raises(ConfigError, match="expected keys"):
        make_sweeps({"exposure": {"transform": Exposure()}})
    with pytest.raises(ConfigError, match="Transform"):
        make_sweeps({"exposure": {"transform": "Exposure", "strengths": [1]}})
    with pytest.raises(ConfigError, match="outside"):
        make_sweeps({"exposure": {"transform": Exposure(), "strengths": [40]}})
    with pytest.raises(ConfigError, match="must differ"):
        SweepProtocol(reference_view="a", probe_view="a")
    with pytest.raises(ConfigError, match="outside"):
        SweepProtocol(target_fmrs=[2.0])


def test_small_group_subjects_are_withheld_from_the_sweep(setup):
    """Issue #9: with min_group_subjects=3 the 2 men enter no number of the sweep, so the
    (all) rows equal the female rows and nothing is left to subtract."""
    dataset, model, cache, *_ = setup
    sweeps = make_sweeps({"exposure": {"transform": Exposure(), "strengths": [0, -3]}})
    res = run_sweep(dataset, model, sweeps, PROTOCOL, cache_dir=cache, progress=False, min_group_subjects=3)
    assert res.dataset_info["withheld"]["subjects"] == 2 and res.dataset_info["withheld"]["groups"] == {"face_gender": {"male": 2}}
    rows = res.rows
    assert "male" not in set(rows["group"])
    key = ["transform", "strength", "threshold_name", "metric"]
    both = rows[rows["group"] == "(all)"].merge(rows[rows["group"] == "female"], on=key, suffixes=("_all", "_f"))
    assert len(both) and (both["comparisons_all"] >= both["comparisons_f"]).all()
    fnmr = both[both["metric"] != "FMR"]  # FMR (all) also counts cross-group pairs; FTA/FNMR are per subject
    assert (fnmr["comparisons_all"] == fnmr["comparisons_f"]).all() and (fnmr["errors_all"].fillna(-1) == fnmr["errors_f"].fillna(-1)).all()


# ----------------------------------------------------------------------------- subject bootstrap (issue #14)
def _comparisons_by_hand(setup):
    """The unperturbed probe x reference comparison table, built from the hand-computed score matrix."""
    from bench.protocol.pairs import comparison_table

    score, mated, thr, gender = _by_hand(setup)
    k = len(SUBJECTS)
    table = pd.DataFrame({"subject_id": SUBJECTS * 2, "image_id": [f"p{s}" for s in SUBJECTS] + [f"r{s}" for s in SUBJECTS]})  # probes, then references
    labels = pd.DataFrame({"face_gender": list(gender) * 2})
    ia, ib = np.meshgrid(np.arange(k), np.arange(k, 2 * k), indexing="ij")
    return comparison_table(table, labels, ia.ravel(), ib.ravel(), mated.ravel(), score.ravel()), thr


def test_bootstrap_columns_equal_a_direct_recomputation(setup):
    """boot_low/boot_high/n_replicates of the unperturbed run equal the fixed-threshold subject bootstrap
    (docs/protocol.md §5.2-5.3) of the comparisons computed by hand, at the same seed and replicates."""
    from bench.metrics.bootstrap import bootstrap_group_rates, bootstrap_overall_rates

    *_, first, _ = setup
    comp, thr = _comparisons_by_hand(setup)
    thresholds = {"nominal": -0.6, "FMR=5e-02": thr.threshold}
    B = PROTOCOL.bootstrap_replicates
    assert B == 1000  # the default: a 1:1 run's
    direct = bootstrap_group_rates(comp, attribute="face_gender", thresholds=thresholds, n_replicates=B, seed=PROTOCOL.seed)
    direct = direct.set_index(["group", "threshold_name", "metric"])
    overall = bootstrap_overall_rates(comp, thresholds=thresholds, n_replicates=B, seed=PROTOCOL.seed).set_index(["threshold_name", "metric"])
    rows = first.rows[first.rows["transform"] == UNPERTURBED]
    cells = rows[rows["metric"].isin(["FNMR", "FMR"])]
    assert len(cells) == 3 * 2 * 2  # (all), female, male x 2 thresholds x FNMR/FMR
    for _, r in cells.iterrows():
        want = overall.loc[(r["threshold_name"], r["metric"])] if r["group"] == "(all)" else direct.loc[(r["group"], r["threshold_name"], r["metric"])]
        assert (r["boot_low"], r["boot_high"], r["n_replicates"]) == (want["boot_low"], want["boot_high"], want["n_replicates"]), r.to_dict()
    # real values: one false match in 20 (all) non-mated pairs at FMR=5e-02 resamples to an interval from 0 up;
    # zero-error cells resample to [0, 0]; FTA and FNMR_incl_FTA get no bootstrap
    fm = cells[(cells["group"] == "(all)") & (cells["metric"] == "FMR") & (cells["threshold_name"] == "FMR=5e-02")].iloc[0]
    assert fm["errors"] == 1 and fm["boot_low"] == 0 and 0.05 < fm["boot_high"] <= 0.5
    zero = cells[cells["errors"] == 0]
    assert len(zero) and (zero["boot_low"] == 0).all() and (zero["boot_high"] == 0).all()
    assert first.rows.loc[first.rows["metric"].isin(["FTA", "FNMR_incl_FTA"]), ["boot_low", "boot_high", "n_replicates"]].isna().all().all()
    # thresholds are fixed: every strength is bootstrapped at the same thresholds and seed, so the identity strength equals the unperturbed run
    zero_exposure = first.rows[(first.rows["transform"] == "exposure") & (first.rows["strength"] == 0)]
    assert zero_exposure["boot_high"].reset_index(drop=True).equals(rows["boot_high"].reset_index(drop=True))


def test_bootstrap_is_seeded_and_can_be_skipped(setup):
    import dataclasses

    dataset, model, cache, first, second = setup
    pd.testing.assert_frame_equal(first.rows, second.rows)  # same seed: same intervals
    sweeps = make_sweeps({"exposure": {"transform": Exposure(), "strengths": [0]}})
    off = run_sweep(dataset, model, sweeps, dataclasses.replace(PROTOCOL, bootstrap_replicates=None), cache_dir=cache, progress=False)
    assert list(off.rows.columns) == SWEEP_COLUMNS and off.rows[["boot_low", "boot_high", "n_replicates"]].isna().all().all()
    base = first.rows[first.rows["transform"].isin([UNPERTURBED])].drop(columns=["boot_low", "boot_high", "n_replicates"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(off.rows[off.rows["transform"] == UNPERTURBED].drop(columns=["boot_low", "boot_high", "n_replicates"]).reset_index(drop=True), base)
    other = run_sweep(dataset, model, sweeps, dataclasses.replace(PROTOCOL, seed=7, bootstrap_replicates=200), cache_dir=cache, progress=False)
    comp, thr = _comparisons_by_hand(setup)
    from bench.metrics.bootstrap import bootstrap_overall_rates

    want = bootstrap_overall_rates(comp, thresholds={"nominal": -0.6, "FMR=5e-02": thr.threshold}, n_replicates=200, seed=7)
    want = want.set_index(["threshold_name", "metric"]).loc[("FMR=5e-02", "FMR")]
    got = other.rows[(other.rows["transform"] == UNPERTURBED) & (other.rows["group"] == "(all)") & (other.rows["attribute"] == "face_gender")
                     & (other.rows["metric"] == "FMR") & (other.rows["threshold_name"] == "FMR=5e-02")].iloc[0]
    assert (got["boot_low"], got["boot_high"], got["n_replicates"]) == (want["boot_low"], want["boot_high"], want["n_replicates"])
    assert got["n_replicates"] <= 200


@pytest.mark.parametrize("bad", [0, -1, 1.5, "many", True, 10**9])
def test_bad_bootstrap_replicates_are_refused(bad):
    with pytest.raises(ConfigError, match="sweep.bootstrap_replicates"):
        SweepProtocol(bootstrap_replicates=bad)


def test_verify_checks_the_bootstrap_columns_and_rerenders_report_and_figures(setup, tmp_path):
    from bench.verify_other import verify_other

    *_, first, _ = setup
    config = {"sweep": {"reference_view": PROTOCOL.reference_view, "probe_view": PROTOCOL.probe_view, "confidence": 0.95,
                        "bootstrap_replicates": PROTOCOL.bootstrap_replicates}}
    out = write_sweep(first, tmp_path / "run", run_name="tiny", config=config, min_group_subjects=3, figures=True)
    csv = pd.read_csv(out / "sweep.csv", keep_default_na=False, na_values=[""])
    assert list(csv.columns) == SWEEP_COLUMNS
    male = csv[csv["group"] == "male"]  # counts only: no interval of any kind
    assert len(male) and male[["boot_low", "boot_high", "n_replicates", "wilson_low"]].isna().all().all()
    text = (out / "report.md").read_text()
    assert "subject-bootstrap intervals (1,000 replicates" in text and "docs/protocol.md §5.2-5.3" in text and "Wilson for FTA" in text
    assert "[0, 0.25]" in text  # the (all) FMR=5e-02 FMR cell shows its bootstrap interval, not Wilson
    doc = json.loads((out / "sweep.json").read_text())
    assert "subject-bootstrap" in doc["protocol"]["intervals"] and doc["protocol"]["bootstrap_replicates"] == 1000
    report = verify_other(out, "sweep", check_weights=False)
    for name in ("sweep.csv", "bootstrap", "report.md", "figures"):
        assert report.status(name) == "ok", (name, report.detail(name))
    # forged intervals are named
    forged = csv.copy()
    i = forged.index[(forged["group"] == "(all)") & (forged["metric"] == "FMR") & (forged["errors"] == 1)][0]
    forged.loc[i, ["boot_low", "boot_high"]] = [0.3, 0.2]
    j = forged.index[(forged["metric"] == "FNMR") & (forged["errors"] == 0) & forged["boot_high"].notna()][0]
    forged.loc[j, "boot_high"] = 0.1
    k = forged.index[forged["metric"] == "FTA"][0]
    forged.loc[k, ["boot_low", "boot_high", "n_replicates"]] = [0.0, 0.1, 1000]
    forged.to_csv(out / "sweep.csv", index=False)
    detail = verify_other(out, "sweep", check_weights=False).detail("bootstrap")
    assert "break 0 <= boot_low <= boot_high <= 1" in detail and "other than [0, 0]" in detail and "where none applies" in detail
    # columns dropped while the config says the bootstrap ran
    csv.drop(columns=["boot_low", "boot_high", "n_replicates"]).to_csv(out / "sweep.csv", index=False)
    report = verify_other(out, "sweep", check_weights=False)
    assert report.status("bootstrap") == "mismatch" and "lacks column(s)" in report.detail("bootstrap")
