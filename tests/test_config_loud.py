"""Config mistakes are loud (issue #10): a misspelt key in any config group -- given as
``key=value`` or added with ``+key=value`` -- is refused with a "did you mean", never
silently ignored; declarative model keys are honoured or refused; run-time flags stay out
of the recorded experiment; ``--version`` and ``--help`` speak for fvbench.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bench import __version__
from bench.cli import apply_model_config, run_from_config
from bench.config_schema import check_override_keys, did_you_mean, validate_config
from bench.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def _compose(overrides: list[str], name: str = "fvbench"):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def _cli(tmp: Path, *args: str, module: str = "bench") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, *args]
    if not any(a.startswith("-") for a in args):
        cmd += [f"paths.results_dir={tmp / 'r'}", f"paths.cache_dir={tmp / 'c'}", f"hydra.run.dir={tmp / 'h'}"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------------------- the three cases
@pytest.mark.parametrize(
    "override,key,meant",
    [
        ("+run_nmae=x", "run_nmae", "run_name"),
        ("+report.min_group_subject=3", "report.min_group_subject", "min_group_subjects"),
        ("+model.nominal_thresh=-0.5", "model.nominal_thresh", "nominal_threshold"),
    ],
)
def test_added_typo_exits_nonzero_and_writes_nothing(tmp_path, override, key, meant):
    done = _cli(tmp_path, "debug=smoke", override)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"fvbench: error: unknown config key '{key}'")
    assert f"did you mean '{meant}'?" in line
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "override,meant",
    [("run_nmae=x", "run_name"), ("report.min_group_subject=3", "min_group_subjects"),
     ("model.nominal_thresh=-0.5", "nominal_threshold"), ("protocol.target_fmr=1e-3", "target_fmrs"),
     ("paths.cach_dir=/tmp/x", "cache_dir"), ("dataset.lodaer.root=x", "loader"), ("sed=3", "seed")],
)
def test_plain_typo_is_answered_before_hydra_with_did_you_mean(tmp_path, override, meant):
    """Hydra alone says "use +key=..." (which would add an ignored key); fvbench names the key meant."""
    done = _cli(tmp_path, override)
    assert done.returncode == 2
    assert f"did you mean '{meant}'?" in done.stderr
    assert "To append to your config use" not in done.stderr


# ----------------------------------------------------------------------------- every config group
@pytest.mark.parametrize(
    "overrides,key,meant",
    [
        (["+protocol.bootstrap_replicate=10"], "protocol.bootstrap_replicate", "bootstrap_replicates"),
        (["+paths.result_dir=x"], "paths.result_dir", "results_dir"),
        (["+report.figure=false"], "report.figure", "figures"),
        (["+dataset.loader.subject_scale=2"], "dataset.loader.subject_scale", "subjects_scale"),
        (["+dataset.loader.groups.black.image_nois=0.1"], "dataset.loader.groups.black.image_nois", "image_noise"),
        (["+dataset.nmae=x"], "dataset.nmae", "name"),
        (["experiment=frl_london_dlib", "+model.embedder.batch_sise=8"], "model.embedder.batch_sise", "batch_size"),
        (["experiment=frl_london_dlib", "+model.embedder.detect_max_sid=8"], "model.embedder.detect_max_sid", "detect_max_side"),
        (["model=facenet_vggface2", "+model.embedder.aligner.margn=3"], "model.embedder.aligner.margn", "margin"),
        (["+seeed=1"], "seeed", "seed"),
    ],
)
def test_typo_in_every_group_after_composition(overrides, key, meant):
    cfg = _compose(overrides)
    with pytest.raises(ConfigError, match=rf"unknown config key '{key}'.*did you mean '{meant}'\?"):
        validate_config(cfg)


def test_sweep_app_keys_are_checked():
    cfg = _compose(["+sweep.probe_veiw=x"], name="sweep")
    with pytest.raises(ConfigError, match=r"unknown config key 'sweep.probe_veiw'; did you mean 'probe_view'\?"):
        validate_config(cfg, "sweep")
    cfg = _compose(["+transforms.exposure.strenghts=[1]"], name="sweep")
    with pytest.raises(ConfigError, match=r"'transforms.exposure.strenghts'; did you mean 'strengths'\?"):
        validate_config(cfg, "sweep")
    with pytest.raises(ConfigError, match=r"did you mean 'reference_view'\?"):
        check_override_keys(["sweep.reference_veiw=a"], "sweep")


def test_every_shipped_config_is_valid():
    """The schema accepts every config the repository ships (no false alarms)."""
    for exp in sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml")):
        validate_config(_compose([f"experiment={exp}"]))
    for model in sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml")):
        if model != "onnx_custom":
            validate_config(_compose([f"model={model}", "dataset=frl_london"]))
    validate_config(_compose(["debug=smoke"]))
    validate_config(_compose(["experiment_sweep=frl_london_dlib_sweep", "transforms=[blur,exposure,gamma,jpeg,noise,occlusion,resolution]"], name="sweep"), "sweep")


def test_valid_override_passes_the_pre_check():
    check_override_keys(["experiment=frl_london_dlib", "protocol.target_fmrs=[1e-3]", "model=dlib_resnet", "+model.nominal_threshold=-0.5",
                         "--cfg", "job", "-m", "hydra.run.dir=x", "report.figures=false", "seed=3", "hydra/launcher=joblib",
                         "seed=0,1,2", "run_name=s${seed}"])


def test_did_you_mean_is_empty_when_nothing_is_close():
    assert did_you_mean("zzzzzz", ["seed", "run_name"]) == ""
    assert did_you_mean("run_nmae", ["seed", "run_name"]) == "; did you mean 'run_name'?"


# ----------------------------------------------------------------------------- values the issue names
def test_onnx_custom_without_weights_path_is_one_line(tmp_path):
    done = _cli(tmp_path, "experiment=frl_london_dlib", "model=onnx_custom")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "fvbench: error: model.embedder.weights_path is required and not set: the .onnx file of your model, "
        "e.g. model.embedder.weights_path=/path/to/model.onnx"
    )


def test_unknown_intersection_attribute_is_named(tmp_path):
    cfg = _compose(["debug=smoke", "protocol.intersections=[[face_eth,gender]]", f"paths.results_dir={tmp_path / 'r'}"])
    with pytest.raises(ConfigError, match=r"protocol.intersections entry \['face_eth', 'gender'\]: 'gender' is not an attribute of dataset 'synthetic'"):
        run_from_config(cfg)


def test_unknown_attribute_suggests_the_nearest(tmp_path):
    cfg = _compose(["debug=smoke", "protocol.attributes=[face_et]", f"paths.results_dir={tmp_path / 'r'}"])
    with pytest.raises(ConfigError, match=r"'face_et' is not an attribute of dataset 'synthetic'; did you mean 'face_eth'\?"):
        run_from_config(cfg)


@pytest.mark.parametrize("targets", ["[1e-3,1e-3]", "[0.001,1.0e-3,1e-2]"])
def test_duplicate_target_fmrs_are_refused(tmp_path, targets):
    cfg = _compose(["debug=smoke", f"protocol.target_fmrs={targets}", f"paths.results_dir={tmp_path / 'r'}"])
    with pytest.raises(ConfigError, match=r"^protocol.target_fmrs \[.*\] lists 1e-03 more than once"):
        run_from_config(cfg)
    assert not (tmp_path / "r").exists()


class _Model:
    name = "fake"
    metric = "euclidean"
    embedding_dim = 128
    nominal_threshold = -0.6
    nominal_threshold_source = "Euclidean distance 0.6 (published)"


def test_nominal_threshold_override_is_honoured_and_recorded():
    model = _Model()
    cfg = _compose(["experiment=frl_london_dlib", "model.nominal_threshold=-0.5"])
    apply_model_config(model, cfg.model)
    assert model.nominal_threshold == -0.5
    assert "overridden in the config: model.nominal_threshold=-0.5" in model.nominal_threshold_source
    assert "published: -0.6" in model.nominal_threshold_source
    same = _Model()
    apply_model_config(same, _compose(["experiment=frl_london_dlib"]).model)  # default: untouched
    assert same.nominal_threshold == -0.6 and same.nominal_threshold_source == "Euclidean distance 0.6 (published)"


def test_nominal_threshold_reaches_the_thresholds_table():
    """The value used by the report is the value recorded (metrics.json thresholds)."""
    from bench.run import Protocol, threshold_entries
    from bench.scores.table import TableStore
    import pandas as pd

    model = _Model()
    apply_model_config(model, _compose(["experiment=frl_london_dlib", "model.nominal_threshold=-0.5"]).model)
    info = {"nominal_threshold": model.nominal_threshold, "nominal_threshold_source": model.nominal_threshold_source,
            "nominal_threshold_overridden": model.nominal_threshold_overridden}
    comp = pd.DataFrame({"mated": [False] * 2000, "score": [-(i / 1000) for i in range(2000)]})
    protocol = Protocol(target_fmrs=[1e-2], bootstrap_replicates=None)
    th = threshold_entries(info, protocol, lambda: TableStore(comp, []).calibration(protocol.calibration_group))
    nominal = [t for t in th if t["kind"] == "nominal"][0]
    assert nominal["threshold"] == -0.5 and "overridden" in nominal["source"] and nominal["overridden"] is True


def test_nominal_threshold_for_the_generator_is_refused():
    cfg = _compose(["+model.nominal_threshold=0.5"])
    with pytest.raises(ConfigError, match=r"model.nominal_threshold=0.5: model 'generator' generates embeddings and has no nominal threshold"):
        apply_model_config(None, cfg.model)


@pytest.mark.parametrize("override,msg", [("model.metric=cosine", r"model.metric='cosine' contradicts the model 'dlib_resnet', which has metric 'euclidean'"),
                                          ("model.nominal_threshold=abc", r"model.nominal_threshold: expected a number")])
def test_contradicting_model_keys_are_refused(override, msg):
    with pytest.raises(ConfigError, match=msg):
        apply_model_config(_Model(), _compose(["experiment=frl_london_dlib", override]).model)


def test_threshold_refusal_names_no_internal_function():
    import numpy as np

    from bench.errors import InsufficientDataError
    from bench.metrics.rates import threshold_at_fmr

    with pytest.raises(InsufficientDataError) as err:
        threshold_at_fmr(np.linspace(0, 1, 206), 1e-3)
    assert str(err.value).startswith("N=206 non-mated comparisons cannot resolve target FMR 0.001;")
    assert "threshold_at_fmr" not in str(err.value)


# ----------------------------------------------------------------------------- run-time flags
def test_progress_and_cache_location_do_not_change_metrics_json(tmp_path, monkeypatch):
    """progress and paths.* say how a run executes, not what it measures: byte-identical metrics.json."""
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "no-git"))  # hold the recorded code version fixed
    common = ["debug=smoke", "++protocol.bootstrap_replicates=20", "run_name=same"]
    a = run_from_config(_compose([*common, "progress=false", f"paths.results_dir={tmp_path / 'ra'}", f"paths.cache_dir={tmp_path / 'ca'}"]))
    b = run_from_config(_compose([*common, "progress=true", f"paths.results_dir={tmp_path / 'rb'}", f"paths.cache_dir={tmp_path / 'cb'}"]))
    text = (a / "metrics.json").read_bytes()
    assert text == (b / "metrics.json").read_bytes()
    m = json.loads(text)
    assert "progress" not in m["config"] and set(m["config"]["paths"]) == {"data_dir"} and "cache_hits" not in m["model"]
    assert str(tmp_path) not in text.decode()  # neither the results nor the cache folder


# ----------------------------------------------------------------------------- --version, --help
def test_version_is_fvbench_not_hydra(tmp_path):
    done = _cli(tmp_path, "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"fvbench {__version__}"
    sweep = subprocess.run([sys.executable, "-c", "import sys; from bench.cli import sweep_main; sys.argv = ['fvbench-sweep', '--version']; sweep_main()"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert sweep.stdout.strip() == f"fvbench-sweep {__version__}"


def test_help_shows_protocol_options_before_generator_internals(tmp_path):
    done = _cli(tmp_path, "--help")
    assert done.returncode == 0
    out = done.stdout
    assert out.index("Protocol options") < out.index("Config groups")
    for key in ("target_fmrs", "intersections", "bootstrap_replicates", "min_group_subjects", "progress=true|false"):
        assert key in out, key
    assert "identity_spread" not in out  # the generator's internals are not what a newcomer needs first
    assert out.index("target_fmrs") < out.index("paths.cache_dir")


# ----------------------------------------------------------------------------- progress and the last line
@pytest.mark.parametrize("progress", [True, False])
def test_progress_bars_follow_the_flag_and_the_last_line_names_the_report(tmp_path, progress):
    done = _cli(tmp_path, "debug=smoke", "report.figures=true", "++protocol.bootstrap_replicates=20", f"progress={str(progress).lower()}")
    assert done.returncode == 0, done.stderr[-2000:]
    bars = ("rates + bootstrap (20 replicates) per attribute", "figures (per attribute)")
    for bar in bars:
        assert (bar in done.stderr) is progress, bar
    out = tmp_path / "r" / "synthetic__generator"
    assert done.stdout.strip().splitlines()[-1] == f"fvbench: report: {out / 'report.md'} (all result files in {out}/)"


@pytest.mark.parametrize(
    "overrides,meant",
    [(["experiment=frl_london_dlib", "model.embedder.batch_sise=3"], "batch_size"),
     (["model=facenet_vggface2", "model.embedder.aligner.margn=3"], "margin"),
     (["dataset.loader.groups.black.subjcts=3"], "subjects")],
)
def test_deep_plain_typo_is_answered_before_hydra(overrides, meant):
    with pytest.raises(ConfigError, match=rf"did you mean '{meant}'\?"):
        check_override_keys(overrides)


def test_real_parameter_left_at_its_default_is_not_called_a_typo():
    """models_dir is a DlibResNet parameter the config file does not list: Hydra's "+" advice is right there."""
    check_override_keys(["experiment=frl_london_dlib", "model.embedder.models_dir=x"])
    validate_config(_compose(["experiment=frl_london_dlib", "+model.embedder.models_dir=x"]))


def test_sweep_help_lists_the_sweep_options():
    from bench.cli import help_text

    text = help_text("fvbench-sweep", "sweep")
    block = text.split("Sweep options", 1)[1].split("Report options", 1)[0]
    assert "reference_view: neutral_front" in block and "run_name" not in block


def test_null_nominal_threshold_keeps_the_models_own():
    model = _Model()
    apply_model_config(model, _compose(["experiment=frl_london_dlib", "model.nominal_threshold=null"]).model)
    assert model.nominal_threshold == -0.6


def test_recorded_config_writes_cache_paths_relative_and_keeps_data_dir():
    from bench.config_schema import recorded_config

    cfg = _compose(["model=facenet_vggface2", "dataset=frl_london", "paths.cache_dir=/home/someone/.cache/fvbench",
                    "paths.results_dir=/srv/out", "paths.data_dir=../data", "progress=false"])
    rec = recorded_config(cfg)
    assert rec["model"]["embedder"]["cache_dir"] == "${paths.cache_dir}"
    assert rec["paths"] == {"data_dir": "../data"} and rec["dataset"]["loader"]["root"] == "../data/frl_london"
    assert "progress" not in rec and "/home/someone" not in str(rec) and "/srv/out" not in str(rec)
