"""Hydra builds ``hydra.callbacks`` / launcher / sweeper objects itself, before fvbench's
factory registry can look at them: those nodes are checked before Hydra starts (issue #9,
found by an attacker review: ``+hydra.callbacks.x._target_=bench.models.weights._write_atomic``
wrote a file outside results/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.config_schema import CONFIG_DIR, HYDRA_TARGETS, check_hydra_targets
from bench.errors import ConfigError


def test_shipped_configs_name_only_allowed_hydra_targets():
    check_hydra_targets([], [CONFIG_DIR])  # raises on any other target
    assert "bench.multirun.JobSummary" in HYDRA_TARGETS


@pytest.mark.parametrize("override", [
    "+hydra.callbacks.x._target_=bench.models.weights._write_atomic",
    "hydra.callbacks={x:{_target_:builtins.print}}",
    "hydra.launcher._target_=builtins.print",
    "++hydra.sweeper._target_=os.system",
    "+hydra.searchpath=[file:///tmp]",
])
def test_hydra_object_overrides_are_refused(override):
    with pytest.raises(ConfigError, match="Hydra would build objects"):
        check_hydra_targets([override], [])


def test_harmless_hydra_overrides_pass():
    check_hydra_targets(["hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "hydra.job.chdir=false", "-m", "seed=0,1"], [])


def test_config_file_with_a_callback_is_refused(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "evil.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: bench.models.weights._write_atomic\n      path: /tmp/x\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml: hydra\.callbacks\.x\._target_ 'bench\.models\.weights\._write_atomic'"):
        check_hydra_targets(["--config-dir", str(tmp_path)], [])


def test_cli_refuses_a_callback_override_and_writes_nothing(tmp_path):
    target = tmp_path / "pwned"
    cmd = [sys.executable, "-m", "bench", "+hydra.callbacks.x._target_=bench.models.weights._write_atomic",
           "+hydra.callbacks.x.path._target_=pathlib.Path", f"+hydra.callbacks.x.path._args_=[{target}]", "+hydra.callbacks.x.text=owned"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 2, out.stderr[-500:]
    assert "Hydra would build objects" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
    assert not target.exists()
