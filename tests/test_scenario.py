"""Deployment scenarios (issue #14): asymmetric conditions, reference x probe pairing, cache keys, reports.

A fixture dataset of small PNG images is built here (two views per subject) and a fake
image model embeds a thumbnail of each image, so degradations change embeddings
measurably without any weights. The real London x dlib run is the published folder
``results/frl_london_dlib_id_document`` (checked by ``fvbench-verify``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.acquisition.base import Acquisition
from bench.protocol.scenario import Scenario, ScenarioSide, apply_scenario, scale_geometry, side_cache_key
from bench.acquisition.transforms import Contrast, Exposure, FaceGeometry, GaussianBlur, JpegQuality, Resolution
from bench.data.manifest import Manifest
from bench.errors import ConfigError, DataError
from bench.protocol.enrolment_probe import count_reference_probe_pairs, reference_probe_pairs, scenario_engine
from bench.protocol.pairs import all_pairs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
N_SUBJECTS = 6
DIM = 48


# ----------------------------------------------------------------------------- fixtures
class _Aligner:
    def __init__(self):
        self.calls = 0

    def acquire(self, image):
        self.calls += 1
        return Acquisition(chip=np.asarray(image), fta_reason=None, n_faces=1)

    def acquire_file(self, path):
        return self.acquire(np.asarray(Image.open(path).convert("RGB")))


class _Model:
    """Embeds a 4x4 RGB thumbnail (48 values, mean removed): degradations move it."""

    name, metric, embedding_dim, nominal_threshold = "thumb", "cosine", DIM, None
    weights_sha256: dict = {}

    def __init__(self):
        self.aligner = _Aligner()

    def settings(self):
        return {"thumb": 1}

    def embed(self, chips):
        out = []
        for c in chips:
            v = cv2.resize(np.asarray(c, np.float32), (4, 4), interpolation=cv2.INTER_AREA).ravel()
            out.append(v - v.mean())
        return np.array(out, np.float32)


def _dataset(root: Path) -> Manifest:
    rng = np.random.default_rng(7)
    rows = []
    root.mkdir(parents=True, exist_ok=True)
    for s in range(N_SUBJECTS):
        base = rng.integers(30, 225, size=(4, 4, 3)).astype(np.float32)
        for view in ("neutral_front", "smiling_front"):
            img = cv2.resize(base + rng.normal(0, 6, base.shape), (64, 64), interpolation=cv2.INTER_CUBIC)
            p = root / f"s{s}_{view}.png"
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
            rows.append({"image_id": f"s{s}_{view}", "path": p.name, "subject_id": f"s{s}", "label_source": "annotated",
                         "grp": "a" if s < 3 else "b", "view": view})
    return Manifest(pd.DataFrame(rows), root, ("grp",), "fixture")


def _step(t, s, why="reason"):
    return {"transform": t, "strength": s, "why": why}


def _scenario(enrolment=None, probe=None, **kw) -> Scenario:
    args = dict(name="doc", title="t", purpose="p", view_column="view", enrolment_view="neutral_front", probe_view="smiling_front",
                enrolment=enrolment if enrolment is not None else [_step(Contrast(), 0.6), _step(JpegQuality(), 20)],
                probe=probe if probe is not None else [], sources=["ISO/IEC 19794-5"])
    args.update(kw)
    return Scenario(**args)


# ----------------------------------------------------------------------------- transforms and chains
def test_contrast_keeps_the_stated_fraction_of_the_range():
    img = np.array([[[0, 127, 255]]], np.uint8)
    out = Contrast().apply(img, 0.6)
    # 127.5 + 0.6 (v - 127.5): 0 -> 51, 255 -> 204 (a 153-level range = 60% of 255)
    assert out.tolist() == [[[51, 127, 204]]]
    assert Contrast().apply(img, 1.0) is img
    with pytest.raises(ConfigError, match="outside"):
        Contrast().apply(img, 1.5)


def test_steps_after_a_resolution_step_act_at_the_low_resolution():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(120, 120, 3)).astype(np.uint8)
    geo = FaceGeometry(box=(20, 20, 100, 100), eyes=((40.0, 50.0), (80.0, 50.0)))  # IED 40 px
    side = ScenarioSide("enrolment", [_step(Resolution(), 10), _step(JpegQuality(), 20)], "s")
    out = side.apply(img, geometry=geo)
    small = cv2.resize(img, (30, 30), interpolation=cv2.INTER_AREA)  # 10 / 40 of 120 px
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="JPEG", quality=20)
    expect = cv2.resize(np.asarray(Image.open(buf).convert("RGB")), (120, 120), interpolation=cv2.INTER_CUBIC)
    assert out.shape == img.shape and np.array_equal(out, expect)
    # JPEG after re-sampling differs from JPEG at full size then re-sampling
    other = ScenarioSide("enrolment", [_step(JpegQuality(), 20), _step(Resolution(), 10)], "s").apply(img, geometry=geo)
    assert not np.array_equal(out, other)


def test_face_relative_blur_after_resampling_uses_the_scaled_geometry():
    geo = FaceGeometry(box=(0, 0, 100, 100), eyes=((20.0, 30.0), (60.0, 30.0)))
    assert scale_geometry(geo, 0.25).ied == pytest.approx(10.0)
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, 50:] = 255
    blur = GaussianBlur(reference_ied_px=10)
    out = ScenarioSide("probe", [_step(Resolution(), 10), _step(blur, 1.0)], "s").apply(img, geometry=geo)
    small = cv2.resize(img, (25, 25), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=1.0, sigmaY=1.0, borderType=cv2.BORDER_REFLECT_101)  # IED 10 -> sigma 1
    assert np.array_equal(out, cv2.resize(small, (100, 100), interpolation=cv2.INTER_CUBIC))


@pytest.mark.parametrize("kwargs, match", [
    ({"enrolment_view": "smiling_front"}, "must differ"),
    ({"enrolment": [], "probe": []}, "neither side has a step"),
    ({"enrolment": [{"transform": Contrast(), "strength": 0.5}]}, "expected keys"),
    ({"enrolment": [_step(Contrast(), 0.5, why="  ")]}, "state the source or reasoning"),
    ({"enrolment": [_step(Contrast(), 2.0)]}, "outside"),
    ({"enrolment": [_step(Resolution(), 20), _step(Resolution(), 10)]}, "at most one resolution"),
    ({"enrolment": [_step("jpeg", 20)]}, "expected a bench.acquisition.transforms transform"),
    ({"sources": "ISO"}, "scenario.sources"),
])
def test_bad_scenarios_are_refused_in_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        _scenario(**kwargs)
    assert "\n" not in str(err.value)


def test_roles_come_from_the_view_column_and_other_views_are_refused(tmp_path):
    ds = _dataset(tmp_path / "img")
    roles = _scenario().roles(ds.table)
    assert roles.tolist().count("enrolment") == N_SUBJECTS == roles.tolist().count("probe")
    assert all(r == ("enrolment" if v == "neutral_front" else "probe") for r, v in zip(roles, ds.table["view"]))
    t = ds.table.copy()
    t.loc[0, "view"] = "profile"
    with pytest.raises(ConfigError, match=r"view\(s\) \['profile'\].*load only those two views"):
        _scenario().roles(t)
    with pytest.raises(ConfigError, match="view_column 'pose'"):
        _scenario(view_column="pose").roles(ds.table)


# ----------------------------------------------------------------------------- pairing
def test_reference_x_probe_pairs_differ_from_all_pairs():
    n = 5
    subjects = np.repeat([f"s{i}" for i in range(n)], 2)
    roles = np.tile(["enrolment", "probe"], n)
    a, b, mated = reference_probe_pairs(roles, subjects)
    assert mated.sum() == n and (~mated).sum() == n * (n - 1)  # N mated, N(N-1) ordered non-mated
    assert (roles[a] == "enrolment").all() and (roles[b] == "probe").all()
    assert (subjects[a][mated] == subjects[b][mated]).all() and (subjects[a][~mated] != subjects[b][~mated]).all()
    assert len(set(zip(a.tolist(), b.tolist()))) == len(a)
    _, _, m_all = all_pairs(subjects)
    assert (~m_all).sum() == 2 * n * (n - 1)  # all-pairs: every unordered pair of images of different subjects
    assert count_reference_probe_pairs(roles, subjects) == (n, n * (n - 1))
    a2, b2, m2 = reference_probe_pairs(roles, subjects, max_nonmated=7, seed=3)
    assert m2.sum() == n and (~m2).sum() == 7
    assert np.array_equal(a2, reference_probe_pairs(roles, subjects, max_nonmated=7, seed=3)[0])
    with pytest.raises(DataError, match="0 acquired probe"):
        reference_probe_pairs(np.array(["enrolment"] * 3), subjects[:3])


def test_scenario_runs_use_the_table_engine():
    class P:
        engine, max_nonmated, table_max_comparisons = "auto", None, 100

    roles = np.tile(["enrolment", "probe"], 5)
    subjects = np.repeat([f"s{i}" for i in range(5)], 2)
    assert scenario_engine(roles, subjects, P())["comparisons"] == 25
    P.table_max_comparisons = 10
    with pytest.raises(ConfigError, match="25 reference x probe comparisons exceed"):
        scenario_engine(roles, subjects, P())
    P.engine = "stream"
    with pytest.raises(ConfigError, match="table engine"):
        scenario_engine(roles, subjects, P())


# ----------------------------------------------------------------------------- cache and acquisition
def test_cache_key_names_the_chain_and_never_the_clean_model_key():
    s1 = _scenario().enrolment
    s2 = _scenario(enrolment=[_step(Contrast(), 0.6), _step(JpegQuality(), 30)]).enrolment
    s3 = _scenario(enrolment=[_step(JpegQuality(), 20), _step(Contrast(), 0.6)]).enrolment  # order matters
    s4 = _scenario(enrolment=[_step(Contrast(), 0.6, why="other words"), _step(JpegQuality(), 20)]).enrolment
    keys = {side_cache_key("m" * 64, s, 0, None) for s in (s1, s2, s3)}
    assert len(keys) == 3 and "m" * 64 not in keys
    assert side_cache_key("m" * 64, s1, 0, None) == side_cache_key("m" * 64, s4, 0, None)  # the reason is not the image
    assert side_cache_key("m" * 64, s1, 0, None) != side_cache_key("n" * 64, s1, 0, None)


def test_apply_scenario_degrades_only_the_enrolment_side_and_caches_apart(tmp_path):
    from bench.models.cache import EmbeddingCache, model_cache_key
    from bench.models.extraction import extract_embeddings

    ds, model = _dataset(tmp_path / "img"), _Model()
    cache_dir = tmp_path / "cache"
    clean = extract_embeddings(ds, model, EmbeddingCache(cache_dir, model_cache_key(model.settings(), {})), progress=False)
    sc = _scenario()
    out = apply_scenario(sc, ds, model, clean.embeddings, clean.fta_reason, clean.n_faces, cache_dir=cache_dir, progress=False)
    enrol = out.roles == "enrolment"
    assert np.array_equal(out.embeddings[~enrol], clean.embeddings[~enrol])  # probe side: as captured
    moved = np.linalg.norm(out.embeddings[enrol] - clean.embeddings[enrol], axis=1)
    assert (moved > 1.0).all()  # contrast 0.6 shrinks every thumbnail deviation by 40%
    # the degraded embedding is that of the degraded image
    img = np.asarray(Image.open(ds.image_path(0)).convert("RGB"))
    expect = model.embed([JpegQuality().apply(Contrast().apply(img, 0.6), 20)])[0]
    assert np.allclose(out.embeddings[0], expect)
    assert out.info["counts"]["enrolment"] == {"images": N_SUBJECTS, "acquired_unperturbed": N_SUBJECTS, "not_located": 0,
                                               "computed": N_SUBJECTS, "from_cache": 0, "acquired": N_SUBJECTS,
                                               "fta_caused_by_conditions": 0}
    assert [s["transform"] for s in out.info["enrolment"]] == ["contrast", "jpeg"] and out.info["probe"] == []
    assert (cache_dir / "scenarios").is_dir()
    again = apply_scenario(sc, ds, model, clean.embeddings, clean.fta_reason, clean.n_faces, cache_dir=cache_dir, progress=False)
    assert again.info["counts"]["enrolment"]["from_cache"] == N_SUBJECTS and np.array_equal(again.embeddings, out.embeddings)
    # the clean cache still serves clean embeddings: degraded and clean never mix
    clean2 = extract_embeddings(ds, model, EmbeddingCache(cache_dir, model_cache_key(model.settings(), {})), progress=False)
    assert np.array_equal(clean2.embeddings, clean.embeddings) and clean2.cache_hits == 2 * N_SUBJECTS


def test_a_model_without_acquire_is_refused(tmp_path):
    class NoAcquire:
        name = "x"
        aligner = None

    with pytest.raises(ConfigError, match="aligner.acquire"):
        apply_scenario(_scenario(), _dataset(tmp_path / "i"), NoAcquire(), np.zeros((12, 2)), np.full(12, None), None,
                       cache_dir=tmp_path / "c", progress=False)


# ----------------------------------------------------------------------------- end to end
def test_evaluate_under_a_scenario_pairs_reference_x_probe_with_subject_bootstrap(tmp_path):
    from bench.report.markdown import render_report_from_folder
    from bench.report.writer import write_results
    from bench.run import Protocol, evaluate

    ds, model = _dataset(tmp_path / "img"), _Model()
    protocol = Protocol(target_fmrs=[0.1], use_nominal_threshold=False, bootstrap_replicates=200)
    res = evaluate(ds, model, protocol, cache_dir=tmp_path / "cache", progress=False, scenario=_scenario())
    comp = res.comparisons
    assert int(comp["mated"].sum()) == N_SUBJECTS and int((~comp["mated"]).sum()) == N_SUBJECTS * (N_SUBJECTS - 1)
    assert comp["image_a"].astype(str).str.endswith("neutral_front").all()
    assert comp["image_b"].astype(str).str.endswith("smiling_front").all()
    pg = res.per_group
    rates = pg[pg["metric"].isin(["FMR", "FNMR"])]
    assert rates["boot_low"].notna().all() and rates["boot_high"].notna().all()  # subject bootstrap on every rate
    assert res.engine_info["engine"] == "table" and res.engine_info["selected_by"] == "scenario"
    plain = evaluate(ds, model, protocol, cache_dir=tmp_path / "cache", progress=False)
    assert int((~plain.comparisons["mated"]).sum()) == 2 * N_SUBJECTS * (N_SUBJECTS - 1)
    out = write_results(res, tmp_path / "out", run_name="scn", config={"scenario": {"name": "doc"}}, figures=False,
                        min_group_subjects=1)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scenario"]["name"] == "doc" and metrics["protocol"]["scenario"] == "doc"
    assert metrics["protocol"]["nonmated"].startswith("reference of one subject x probe of another")
    report = (out / "report.md").read_text()
    assert "## Scenario: doc" in report and "| enrolment (reference) | 2 | jpeg | 20 (JPEG quality" in report
    # the pair-list sentence names the scenario's design (it printed "(n: pair list )" before)
    n_pairs = N_SUBJECTS * N_SUBJECTS
    assert (f"This run's comparisons ({n_pairs:,}: scenario doc, reference x probe: every enrolment image against every "
            "probe image; mated = same subject, non-mated = every pair of different subjects; pairs with an image that failed to "
            "acquire are listed but not scored) are listed in `pairs.csv.gz`") in report
    assert metrics["protocol"]["pair_list"]["design"].startswith("reference x probe: every enrolment image")
    assert render_report_from_folder(out) == report
    html = (out / "report.html").read_text()
    assert "Scenario: doc" in html and "Acquisition conditions per side" in html


# ----------------------------------------------------------------------------- configs
def _compose(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(config_name="fvbench", overrides=overrides)


def test_id_document_config_states_its_values_and_sources():
    from bench.cli import instantiate_bench
    from bench.config_schema import validate_config

    cfg = _compose(["experiment=frl_london_dlib_id_document"])
    validate_config(cfg, "fvbench")
    sc = instantiate_bench(cfg.scenario, "scenario")
    # 24 px: a 102 x 126 px chip portrait in ISO/IEC 19794-5 token geometry (eyes width/4 = 25.5 px apart)
    assert [(s.transform.name, s.strength) for s in sc.enrolment.steps] == [("resolution", 24.0), ("contrast", 0.6), ("jpeg", 20.0)]
    assert [(s.transform.name, s.strength) for s in sc.probe.steps] == [("exposure", -1.0)]
    assert all(len(s.why) > 40 for s in (*sc.enrolment.steps, *sc.probe.steps))
    assert any("19794-5" in s for s in sc.sources) and any("9303" in s for s in sc.sources)
    assert cfg.run_name == "frl_london_dlib_id_document"


def test_cctv_watchlist_config_probe_is_blurred_then_sampled_at_iec_62676_identify_density():
    from bench.cli import instantiate_bench

    sc = instantiate_bench(_compose(["experiment=frl_london_dlib", "scenario=cctv_watchlist"]).scenario, "scenario")
    assert sc.enrolment.is_identity
    # IEC 62676-4 "identify": 250 px/m x 63 mm adult eye distance = 15.75 px
    assert [(s.transform.name, s.strength) for s in sc.probe.steps] == [("blur", 1.5), ("resolution", 16.0), ("jpeg", 40.0)]
    assert any("62676-4" in s for s in sc.sources)


def test_unknown_scenario_keys_are_refused_before_any_work():
    from bench.config_schema import validate_config

    cfg = _compose(["experiment=frl_london_dlib", "scenario=id_document", "+scenario.enrolment_veiw=x"])
    with pytest.raises(ConfigError, match="enrolment_veiw"):
        validate_config(cfg, "fvbench")


def test_identification_with_a_scenario_is_refused_not_ignored():
    from bench.cli import run_from_config

    cfg = _compose(["experiment=frl_london_dlib_identification", "scenario=cctv_watchlist", "run_name=_scratch/never"])
    with pytest.raises(ConfigError, match="not supported with protocol=identification"):
        run_from_config(cfg)


# ----------------------------------------------------------------------------- the published result
PUBLISHED = Path(__file__).resolve().parents[1] / "results" / "frl_london_dlib_id_document"
LONDON = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "frl_london"


def test_published_id_document_folder_verifies_and_fnmr_is_no_longer_zero():
    from bench.verify import verify_run

    if not (PUBLISHED / "metrics.json").is_file():
        pytest.skip(f"{PUBLISHED} is not published in this checkout")
    report = verify_run(PUBLISHED, dataset_root=LONDON if LONDON.is_dir() else None, check_figures=False)
    bad = [c for c in report.checks if c.status == "mismatch"]
    assert not bad, report.to_text()
    metrics = json.loads((PUBLISHED / "metrics.json").read_text())
    assert metrics["scenario"]["name"] == "id_document"
    assert metrics["dataset"]["nonmated_comparisons"] < 2 * metrics["dataset"]["mated_comparisons"] ** 2  # reference x probe
    pg = pd.read_csv(PUBLISHED / "per_group.csv")
    fnmr = pg[(pg["attribute"] == "face_gender") & (pg["metric"] == "FNMR") & (pg["threshold_name"] == "FMR=1e-03")]
    assert len(fnmr) == 3 and (fnmr["errors"] > 0).all()  # (all), female, male: the studio set's zero FNMR is gone
    assert fnmr["boot_low"].notna().all() and fnmr["boot_high"].notna().all()  # subject-bootstrap intervals
    report_md = (PUBLISHED / "report.md").read_text()
    assert "## Scenario: id_document" in report_md and "19794-5" in report_md


def test_a_malformed_scenario_record_still_renders_without_a_traceback():
    from bench.report.scenario import scenario_html_section, scenario_section

    for bad in ({"name": "x", "enrolment": "abc", "probe": [1, {"transform": "jpeg", "strength": "lots"}], "counts": [], "sources": "s"},
                {"name": "x", "counts": {"probe": 3}}):
        text = scenario_section({"run_name": "r", "scenario": bad})[2]
        assert "| probe | 1 | jpeg | lots (None) |" in text or "as captured" in text
        from bench.report import html

        blocks = dict(bullets=html.bullets, paragraph=html.paragraph, section=html.section, table=html.table)
        assert scenario_html_section({"scenario": bad}, **blocks)["title"] == "Scenario: x"


def test_inputs_a_scenario_cannot_run_on_are_refused_before_any_image_is_read(tmp_path):
    from bench.protocol.scenario import check_scenario_inputs
    ds = _dataset(tmp_path / "img")
    check_scenario_inputs(_scenario(), ds, _Model())
    with pytest.raises(ConfigError, match="degrades images"):
        check_scenario_inputs(_scenario(), object(), None)  # a generated population: no table of image files
    with pytest.raises(ConfigError, match="probe_view 'frontal'"):
        check_scenario_inputs(_scenario(probe_view="frontal"), ds, _Model())
    with pytest.raises(ConfigError, match="aligner.acquire"):
        check_scenario_inputs(_scenario(), ds, None)
