"""Every checked-in config composes; the CLI runs on the smoke config (style.md §4.7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
GROUPS = ["dataset", "model", "protocol", "report", "paths"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="fvbench", overrides=overrides, return_hydra_config=False)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes(group, option):
    # user-data configs have required (???) keys: filled here as a user would
    required = {"csv": ["dataset.manifest=m.csv"], "folder": ["dataset.root=imgs", "dataset.subjects=s.csv"]}
    cfg = _compose([f"{group}={option}", *required.get(option, [])])
    OmegaConf.to_container(cfg[group], resolve=True)


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes(experiment):
    cfg = _compose([f"experiment={experiment}"])
    assert cfg.run_name
    OmegaConf.to_container(cfg.dataset, resolve=True)
    OmegaConf.to_container(cfg.model, resolve=True)


def test_command_line_overrides_win_over_experiment():
    cfg = _compose(["experiment=frl_london_dlib", "dataset=synthetic"])
    assert cfg.dataset.name == "synthetic"


def test_cli_smoke_run(tmp_path):
    env = {**os.environ, "FVBENCH_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "bench", "debug=smoke", f"paths.results_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'h'}"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "synthetic__generator"
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"]["images"] == 4 * 40 * 2
    assert m["dataset"]["label_source"] == ["generator"]
    assert {"per_group.csv", "eer.csv", "report.md", "metrics.json"} <= {p.name for p in out.iterdir()}
