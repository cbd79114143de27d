"""Docs that tell a user how to address things on the command line say what the code does
(fresh-user review): scenario step numbering (report from 1, overrides from 0) and where a
scenario's code and config live (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from bench.report.scenario import _step_rows

REPO = Path(__file__).resolve().parents[1]


def test_report_step_1_is_override_index_0():
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="fvbench", overrides=["scenario=id_document", "scenario.enrolment.0.strength=32"])
    first = cfg.scenario.enrolment[0]
    assert first.transform._target_.endswith(".Resolution") and first.strength == 32
    info = {"enrolment": [{"transform": "resolution", "strength": 32, "unit": "IED px", "why": "w"}], "probe": []}
    assert _step_rows(info)[0][1:4] == ["1", "resolution", "32 (IED px)"]  # the report's "step 1"
    doc = (REPO / "docs" / "scenarios.md").read_text()
    assert "enrolment **step 1** (resolution, IED 24 px, in `id_document`) is\n`scenario.enrolment.0`" in doc


def test_architecture_doc_places_scenarios():
    doc = (REPO / "docs" / "architecture.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| scenario"))
    for where in ("configs/scenario/", "bench/protocol/scenario.py", "bench/protocol/enrolment_probe.py"):
        assert where in row and (REPO / where).exists()
    bullet = doc.split("- **protocol**", 1)[1].split("\n- **", 1)[0]
    assert "`scenario.py`" in bullet and "`enrolment_probe.py`" in bullet
