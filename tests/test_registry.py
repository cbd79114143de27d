"""Configs build objects only from the factory registry (issue #9, "Verifying untrusted folders").

Scenarios: any ``_target_`` outside :data:`bench.registry.FACTORIES` is refused before it
is imported -- gadgets inside ``bench`` (``_write_atomic``, ``bench.__main__``), module
attributes reached through ``bench`` (``bench.data.manifest.pd.read_pickle``), plain
outside callables -- from a config file or a command-line override; the refusal lists the
valid names and a "did you mean"; interpolations are resolved once and the object is built
from that resolved data (``oc.env`` cannot change between check and use); every
``_target_`` in ``configs/`` and in config-writing code is registered.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from bench.cli import instantiate_bench
from bench.errors import ConfigError
from bench.registry import FACTORIES, check_target, resolve_factory

REPO = Path(__file__).resolve().parents[1]


def _all_config_targets() -> set[str]:
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "hydra":  # Hydra's own callbacks (bench.multirun.JobSummary): built by Hydra, see SECURITY.md
                    continue
                if k == "_target_":
                    found.add(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for f in (REPO / "configs").rglob("*.yaml"):
        walk(yaml.safe_load(f.read_text()))
        # targets suggested in comments for overrides (e.g. the oracle aligner)
        found |= set(re.findall(r"_target_=(bench\.[\w.]+)", f.read_text()))
    for f in (REPO / "bench").rglob("*.py"):  # code that writes configs (bench/synthetic/calibrate.py)
        found |= set(re.findall(r'"_target_": "(bench\.[\w.]+)"', f.read_text()))
    return found


def test_every_target_in_configs_and_config_writing_code_is_registered_and_loads():
    targets = _all_config_targets()
    assert "bench.synthetic.generator.SyntheticPopulation" in targets  # bench/synthetic/calibrate.py writes it
    assert "bench.acquisition.oracle_landmarks.OracleEyesAligner" in targets  # override in a comment
    missing = sorted(targets - set(FACTORIES))
    assert not missing, f"configs name unregistered factories: {missing}"
    for t in sorted(FACTORIES):
        if t.startswith(("bench.models.facenet", "bench.acquisition.mtcnn_align")):
            pytest.importorskip("facenet_pytorch")
        if t.startswith("bench.models.onnx_arcface"):
            pytest.importorskip("onnxruntime")
        assert callable(resolve_factory(t))


GADGETS = [
    # writes any file: cache_root names the folder (issue #9's example)
    {"_target_": "bench.models.weights._write_atomic", "path": "PLACEHOLDER", "data": "x"},
    {"_target_": "bench.__main__.main"},  # importing it runs the CLI
    {"_target_": "bench.data.manifest.pd.read_pickle", "filepath_or_buffer": "x.pkl"},
    {"_target_": "bench.report.provenance.subprocess.getoutput", "cmd": "touch PLACEHOLDER"},
    {"_target_": "os.system", "command": "touch PLACEHOLDER"},
    {"_target_": "builtins.eval", "_args_": ["1+1"]},
    {"_target_": "benchmark.evil.Thing"},
    {"_target_": "bench.data.frl_london.load_frl_london ", "root": "x"},  # not the exact name
    {"_target_": ["bench.data.frl_london.load_frl_london"]},  # not a string
]


@pytest.mark.parametrize("node", GADGETS, ids=lambda n: str(n["_target_"]))
def test_unregistered_targets_are_refused_without_import_or_effect(tmp_path, node):
    marker = tmp_path / "ran"
    node = {k: (str(marker) if v == "PLACEHOLDER" else v.replace("PLACEHOLDER", str(marker)) if isinstance(v, str) else v) for k, v in node.items()}
    before = set(sys.modules)
    with pytest.raises(ConfigError, match=r"is not a factory a config may name.*valid _target_ values \(bench/registry.py\): \[") as err:
        instantiate_bench(OmegaConf.create(node), "model.embedder")
    assert str(err.value).startswith("model.embedder._target_ ")
    assert "bench.models.dlib_resnet.DlibResNet" in str(err.value)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    assert "bench.__main__" not in set(sys.modules) - before


def test_nested_gadget_is_refused_before_the_outer_factory_runs():
    node = OmegaConf.create({
        "_target_": "bench.synthetic.generator.SyntheticPopulation",
        "groups": {"A": {"_target_": "subprocess.run", "args": ["true"]}},
    })
    with pytest.raises(ConfigError, match=r"^dataset.loader.groups.A._target_ 'subprocess.run' is not a factory"):
        instantiate_bench(node, "dataset.loader")
    with pytest.raises(ConfigError, match=r"^outer\[0\].inner._target_ 'pickle.loads'"):
        instantiate_bench(OmegaConf.create({"outer": [{"inner": {"_target_": "pickle.loads", "data": "x"}}]}))


def test_did_you_mean_for_a_typo():
    with pytest.raises(ConfigError, match=r"did you mean 'bench.models.dlib_resnet.DlibResNet'\?"):
        check_target("bench.models.dlib_resnet.DlibResnet", "model.embedder")


def test_hydra_special_keys_are_refused():
    with pytest.raises(ConfigError, match=r"model.embedder: key\(s\) \['_partial_'\] are not supported"):
        instantiate_bench(OmegaConf.create({"_target_": "bench.models.dlib_resnet.DlibResNet", "_partial_": True}), "model.embedder")


def test_interpolated_target_is_checked_after_resolution():
    node = OmegaConf.create({"name": "os.system", "model": {"_target_": "${name}", "command": "true"}})
    with pytest.raises(ConfigError, match=r"^model._target_ 'os.system' is not a factory"):
        instantiate_bench(node)


def test_env_interpolation_is_resolved_once(monkeypatch):
    """The object is built from the data that was checked: an env value read once, and a
    resolved string that itself looks like an interpolation stays a literal string."""
    calls = []

    def fake_env(key, default=None):
        calls.append(key)
        return "${oc.env:SECOND}" if len(calls) == 1 else "bench.models.weights._write_atomic"

    OmegaConf.register_new_resolver("test_env_once", fake_env, replace=True)
    try:
        node = OmegaConf.create({
            "_target_": "bench.synthetic.generator.SyntheticPopulation",
            "name": "${test_env_once:FIRST}",
            "groups": {"A": {"subjects": 2, "images_per_subject": 2, "identity_spread": 1.0, "image_noise": 0.5}},
        })
        pop = instantiate_bench(node, "dataset.loader")
    finally:
        OmegaConf.clear_resolver("test_env_once")
    assert calls == ["FIRST"]
    assert pop.name == "${oc.env:SECOND}"  # built from the resolved value, not resolved again


def test_unknown_argument_lists_the_factory_keys():
    node = OmegaConf.create({"_target_": "bench.data.frl_london.load_frl_london", "root": "x", "rot": "x"})
    with pytest.raises(ConfigError, match=r"^dataset.loader: .*'rot'.* for _target_ 'bench.data.frl_london.load_frl_london'; valid keys: \['root', 'views'\]"):
        instantiate_bench(node, "dataset.loader")


def test_registered_target_is_instantiated():
    obj = instantiate_bench(OmegaConf.create({"_target_": "bench.synthetic.generator.SyntheticPopulation", "groups": {"A": {"subjects": 2, "images_per_subject": 2, "identity_spread": 1.0, "image_noise": 0.5}}}))
    from bench.synthetic.generator import SyntheticPopulation

    assert isinstance(obj, SyntheticPopulation) and obj.specs["A"].subjects == 2
    assert instantiate_bench(None) is None


def test_gadget_from_a_command_line_override_is_refused_before_anything_is_written(tmp_path):
    marker = tmp_path / "evil.pth"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "debug=smoke", f"paths.results_dir={tmp_path / 'r'}", f"paths.cache_dir={tmp_path / 'c'}",
         "++dataset.loader._target_=bench.models.weights._write_atomic", f"+dataset.loader.path={marker}", "+dataset.loader.data=x"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "fvbench: error: dataset.loader._target_ 'bench.models.weights._write_atomic' is not a factory a config may name" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "r").exists()


def test_config_key_check_imports_no_unregistered_target():
    """bench.config_schema inspects a target's parameters (unknown-key errors) only for
    registered factories: importing bench.__main__ would run the CLI."""
    from bench.config_schema import _target_params

    before = set(sys.modules)
    assert _target_params("bench.__main__.main") is None
    assert _target_params("bench.models.weights._write_atomic") is None
    assert "bench.__main__" not in set(sys.modules) - before
    names, _, _ = _target_params("bench.data.frl_london.load_frl_london")
    assert names == {"root", "views"}
