"""Published files hold no absolute path of the user's machine and no environment value
(issue #9, "Privacy of published tables"; brief: provenance without absolute paths or
environment values).

Scenario: the three path variables and an extra ``${oc.env:...}`` override carry marker
strings inside a temporary folder; after a run, no published file contains a marker or
the temporary folder's absolute path, and the recorded config names the roots as
``<data_dir>``, ``<results_dir>``, ``<cache_dir>`` and the variable as ``<env:NAME>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.report.provenance import recorded_config, scrub_paths

REPO = Path(__file__).resolve().parents[1]


def test_published_files_hold_no_marker_env_value_or_absolute_path(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "FVBENCH_DATA_DIR": str(tmp_path / "MARKERdata"),
        "FVBENCH_RESULTS_DIR": str(tmp_path / "MARKERresults"),
        "FVBENCH_CACHE": str(tmp_path / "MARKERcache"),
        "FVBENCH_NOTE": "MARKERnote",
    }
    (tmp_path / "MARKERdata").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "debug=smoke", "report.figures=true", "++protocol.bootstrap_replicates=20",
         "run_name=envcheck", "++dataset.description=${oc.env:FVBENCH_NOTE}", f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "MARKERresults" / "envcheck"
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"metrics.json", "report.md", "per_group.csv", "files.sha256"}
    assert any(p.suffix == ".png" for p in files)
    for p in files:
        data = p.read_bytes()
        assert b"MARKER" not in data, p.name
        assert str(tmp_path).encode() not in data, p.name
        assert str(REPO).encode() not in data, p.name
        assert os.path.expanduser("~").encode() + b"/" not in data, p.name
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["paths"] == {"data_dir": "<data_dir>"}  # results_dir and cache_dir are run-time keys (bench.config_schema)
    assert config["dataset"]["description"] == "<env:FVBENCH_NOTE>"


def test_recorded_config_replaces_roots_env_values_and_hydra_runtime():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({
        "paths": {"data_dir": "${oc.env:FVBENCH_DATA_DIR,../shared/datasets}", "results_dir": "/abs/results", "cache_dir": "~/.cache/x"},
        "dataset": {"loader": {"root": "${paths.data_dir}/frl_london"}},
        "model": {"embedder": {"cache_dir": "${paths.cache_dir}"}},
        "note": "user ${oc.env:USER} at ${oc.env:HOME,/h}",
        "cwd": "${hydra:runtime.cwd}",
        "seed": 3,
        "run_name": "${seed}_x",
    })
    rec = recorded_config(cfg)
    assert rec["dataset"]["loader"]["root"] == "<data_dir>/frl_london"
    assert rec["model"]["embedder"]["cache_dir"] == "<cache_dir>"
    assert rec["note"] == "user <env:USER> at <env:HOME>"
    assert rec["cwd"] == "<machine-specific value>"
    assert rec["run_name"] == "3_x"


def test_scrub_paths_relative_to_roots_else_hashed():
    roots = {"data_dir": "/srv/alice/data", "cache_dir": "/home/alice/.cache/fvbench"}
    got = scrub_paths({
        "root": "/srv/alice/data/frl_london",
        "similar": "/srv/alice/database",  # a prefix of the text, not of the path
        "msg": "cannot read '/etc/secret/x.jpg' (corrupt)",
        "labels": ["east_asian/white", "1 - delta / scale", "FTA/FMR", "https://doi.org/10.6084/x", '=HYPERLINK("http://x")'],
        "n": 5,
    }, roots)
    assert got["root"] == "<data_dir>/frl_london"
    assert got["similar"].startswith("<path sha256:") and "alice" not in got["similar"]
    assert got["msg"].startswith("cannot read '<path sha256:") and "etc" not in got["msg"]
    assert got["labels"] == ["east_asian/white", "1 - delta / scale", "FTA/FMR", "https://doi.org/10.6084/x", '=HYPERLINK("http://x")']
    assert got["n"] == 5
    # the same path always gives the same token
    assert scrub_paths("/x/y") == scrub_paths("/x/y") != scrub_paths("/x/z")
