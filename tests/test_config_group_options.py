"""A misspelt group option (``scenario=id_documnt``, ``model=sfac``) is refused before
Hydra composes, in one line naming the nearest option and the valid ones, instead of
Hydra's multi-line error with the absolute search paths of the user's machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import help_text
from bench.config_schema import check_override_keys, group_options
from bench.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("override,group,meant", [
    ("scenario=id_documnt", "scenario", "id_document"),
    ("detector=yunnet", "detector", "yunet"),
    ("experiment=frl_london_dlb", "experiment", "frl_london_dlib"),
    ("model=sfac", "model", "sface"),
])
def test_misspelt_group_option_names_the_nearest_one(override, group, meant):
    with pytest.raises(ConfigError) as err:
        check_override_keys([override])
    typo = override.split("=", 1)[1]
    valid = sorted(p.stem for p in (REPO / "configs" / group).glob("*.yaml"))
    assert str(err.value) == f"unknown {group} {typo!r}; did you mean {meant!r}? valid: {valid}"


def test_every_option_of_a_choice_sweep_is_checked():
    with pytest.raises(ConfigError, match=r"unknown model 'dlib_resnt'; did you mean 'dlib_resnet'\?"):
        check_override_keys(["--multirun", "model=sface,dlib_resnt"])


def test_valid_options_pass():
    check_override_keys(["experiment=frl_london_dlib", "scenario=id_document", "detector=yunet", "model=sface,dlib_resnet"])
    check_override_keys(["experiment_sweep=frl_london_dlib_sweep", "transforms=exposure"], app="sweep")


def test_null_selection_is_refused_with_the_tilde_form():
    with pytest.raises(ConfigError, match=r"scenario=null: .* ~scenario"):
        check_override_keys(["scenario=null"])


def test_group_options_are_the_yaml_files():
    assert "id_document" in group_options("scenario") and "yunet" in group_options("detector")


def test_cli_refuses_in_one_line_without_machine_paths(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "scenario=id_documnt", f"paths.results_dir={tmp_path}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "did you mean 'id_document'?" in lines[0]
    assert str(REPO) not in lines[0]


@pytest.mark.parametrize("app", ["fvbench", "sweep"])
def test_help_lists_the_detector_group(app):
    line = next(l for l in help_text(app=app).splitlines() if l.strip().startswith("detector:"))
    assert line.split(":", 1)[1].strip().split(", ") == group_options("detector")


def test_python_m_bench_sweep_prints_the_sweep_help():
    done = subprocess.run([sys.executable, "-m", "bench.sweep", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == help_text("fvbench-sweep", "sweep") + "\n"


def test_options_from_another_config_folder_are_left_to_hydra(tmp_path):
    check_override_keys(["--config-dir", str(tmp_path), "dataset=my_own"])
    check_override_keys([f"hydra.searchpath=[file://{tmp_path}]", "dataset=my_own"])
