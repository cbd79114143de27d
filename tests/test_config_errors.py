"""Bad configuration is refused with a message that names the key and the valid values
(issue #6): unknown model/dataset names, target FMR outside (0, 1), bootstrap replicates
< 1, unknown protocol keys, and ``_target_`` values that would reach code outside ``bench``.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException

from bench.cli import run_from_config
from bench.errors import ConfigError
from bench.run import Protocol

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="fvbench", overrides=overrides)


# ----------------------------------------------------------------------------- unknown names
@pytest.mark.parametrize("group", ["model", "dataset", "experiment", "protocol"])
def test_unknown_option_lists_the_valid_ones(group):
    with pytest.raises(MissingConfigException) as err:
        _compose([f"{group}=no_such_{group}"])
    msg = str(err.value)
    assert f"Could not find '{group}/no_such_{group}'" in msg
    assert f"Available options in '{group}':" in msg
    listed = msg.split(f"Available options in '{group}':", 1)[1].split()
    assert listed[: len(_options(group))] == _options(group)


def test_cli_unknown_model_exits_nonzero_with_the_valid_names(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench", "model=resnet_typo", f"hydra.run.dir={tmp_path / 'h'}", f"paths.results_dir={tmp_path / 'r'}", f"paths.cache_dir={tmp_path / 'c'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    text = (done.stdout + done.stderr).strip()
    # refused before Hydra composes: one line, the valid names, no search path (tests/test_config_group_options.py)
    assert text == f"fvbench: error: unknown model 'resnet_typo'; valid: {_options('model')}"
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- protocol values
@pytest.mark.parametrize("target", [0.0, 1.0, -1e-3, 1.5, math.nan, math.inf])
def test_target_fmr_outside_open_unit_interval_is_refused(target):
    with pytest.raises(ConfigError, match=r"protocol\.target_fmrs: .* is outside \(0, 1\)"):
        Protocol(target_fmrs=[1e-3, target])


@pytest.mark.parametrize("target", [0.0, 1.0, -0.5, 2.0])
def test_target_fmr_outside_unit_interval_refused_at_the_metric_entry_point(target):
    from bench.metrics.rates import threshold_at_fmr

    with pytest.raises(ConfigError, match=r"target_fmr: expected a value in the open interval \(0, 1\)"):
        threshold_at_fmr(np.linspace(0, 1, 100), target)


def test_target_fmr_from_the_command_line_is_refused_before_anything_is_written(tmp_path):
    cfg = _compose(["debug=smoke", "protocol.target_fmrs=[1.5]", f"paths.results_dir={tmp_path / 'r'}", f"paths.cache_dir={tmp_path / 'c'}"])
    with pytest.raises(ConfigError, match=r"protocol\.target_fmrs: 1\.5 is outside \(0, 1\)"):
        run_from_config(cfg)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("replicates", [0, -1, -1000])
def test_bootstrap_replicates_below_one_are_refused(replicates):
    assert "bootstrap_replicates" in Protocol.__dataclass_fields__
    with pytest.raises(ConfigError, match=rf"protocol\.bootstrap_replicates must be >= 1 \(or null to skip the bootstrap\), got {replicates}"):
        Protocol(bootstrap_replicates=replicates)
    Protocol(bootstrap_replicates=None)  # null skips the bootstrap


@pytest.mark.parametrize("replicates", [0, -3])
def test_bootstrap_replicates_below_one_refused_at_the_metric_entry_point(replicates):
    from bench.metrics.bootstrap import bootstrap_group_rates

    import pandas as pd

    comp = pd.DataFrame({"subject_a": ["a", "a"], "subject_b": ["a", "b"], "mated": [True, False], "score": [0.9, 0.1], "g_a": ["x", "x"], "g_b": ["x", "x"]})
    with pytest.raises(ConfigError, match=r"n_replicates: expected a positive integer"):
        bootstrap_group_rates(comp, attribute="g", thresholds={"t": 0.5}, n_replicates=replicates)


def test_bootstrap_replicates_from_the_command_line(tmp_path):
    cfg = _compose(["debug=smoke", "++protocol.bootstrap_replicates=0", f"paths.results_dir={tmp_path / 'r'}", f"paths.cache_dir={tmp_path / 'c'}"])
    with pytest.raises(ConfigError, match=r"protocol\.bootstrap_replicates must be >= 1"):
        run_from_config(cfg)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_confidence_outside_unit_interval_is_refused(confidence):
    with pytest.raises(ConfigError, match=r"protocol\.confidence must be in \(0, 1\)"):
        Protocol(confidence=confidence)


def test_unknown_protocol_key_lists_the_valid_keys(tmp_path):
    cfg = _compose(["debug=smoke", "++protocol.target_fmr=0.001", f"paths.results_dir={tmp_path / 'r'}", f"paths.cache_dir={tmp_path / 'c'}"])
    with pytest.raises(ConfigError, match=r"unknown config key 'protocol.target_fmr'; did you mean 'target_fmrs'\? Valid keys there: \[.*'target_fmrs'.*\]"):
        run_from_config(cfg)


# instantiation: tests/test_registry.py
