"""Issue #14 end to end: a FHIBE-layout fixture through ``fvbench`` and ``fvbench-verify``.

Drawn faces are not found by a face detector, so acquisition uses the oracle aligner
(pupils from a ``.tem`` template written beside each image, as FRL London ships them) and
the real SFace model (offline weights) embeds the chips. The run records the release
version; verify rebuilds the manifest, and flags the result once pointed at a newer
release's metadata that no longer holds one person (count named, the person not).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from bench.data.fhibe import METADATA
from bench.verify import verify_main

REPO = Path(__file__).resolve().parents[1]
VERSION = "fhibe.20250708.m.k_2vTAkV"
pytest.importorskip("onnxruntime")


def _subject_image(path: Path, subject: int, shot: int, size: int = 128) -> None:
    """A face-like picture: per-subject texture and colours, per-shot small noise; pupils at fixed points (+ a .tem)."""
    rs = np.random.default_rng(1000 + subject)
    base = cv2.resize(rs.integers(0, 255, (8, 8, 3)).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    img = base.copy()
    cv2.ellipse(img, (64, 70), (40, 52), 0, 0, 360, tuple(int(x) for x in rs.integers(60, 250, 3)), -1)
    eyes = [(46, 58), (82, 58)]
    for x, y in eyes:
        cv2.circle(img, (x, y), 6, (255, 255, 255), -1)
        cv2.circle(img, (x, y), 3, (0, 0, 0), -1)
    cv2.ellipse(img, (64, 96), (int(rs.integers(8, 20)), 5), 0, 0, 180, (40, 20, 120), -1)
    noise = np.random.default_rng(shot + 10 * subject).normal(0, 6, img.shape)
    img = np.clip(img.astype(float) + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    path.with_suffix(".tem").write_text("2\n" + "\n".join(f"{x}\t{y}" for x, y in eyes) + "\n")


def _release(base: Path, version: str, subjects: range) -> Path:
    root = base / f"{version}_downsampled_public"
    rows = []
    for s in subjects:
        pronoun = "['0. She/her/hers']" if s % 2 else "['1. He/him/his']"
        for shot in range(2):
            fp = f"faces/p{s}/img{shot}.png"
            rows.append({"subject_id": f"p{s}", "image_id": f"p{s}_{shot}", "filepath": fp, "pronoun": pronoun,
                         "age": str(25 + 3 * s), "ancestry": "['1. Northern Africa']", "natural_skin_color": f"['{1 + s % 3}. Type {s % 3 + 1}']",
                         "multiple_subjects": "False"})
            _subject_image(root / "data/raw/fhibe_downsampled" / fp, s, shot)
    (root / METADATA).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / METADATA, index=False)
    return root


def test_fhibe_fixture_runs_records_version_and_verify_flags_a_revised_release(tmp_path, capsys):
    root = _release(tmp_path / "old", VERSION, range(8))
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "bench", "dataset=fhibe", f"dataset.root={root}", "model=sface", "model.embedder.device=cpu",
           "~model.embedder.aligner", "+model.embedder.aligner._target_=bench.acquisition.oracle_landmarks.OracleEyesAligner",
           "report.min_group_subjects=1", "protocol.bootstrap_replicates=null", "run_name=fhibe_fixture",
           f"hydra.run.dir={tmp_path / 'h'}", f"paths.results_dir={out}", f"paths.cache_dir={tmp_path / 'c'}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    run = out / "fhibe_fixture"
    m = json.loads((run / "metrics.json").read_text())
    ds = m["dataset"]
    assert ds["subjects"] == 8 and ds["images"] == 16 and ds["mated_comparisons"] == 8
    assert ds["provenance"]["version"] == VERSION and ds["provenance"]["phenotype_attributes"] == ["natural_skin_color"]
    assert ds["label_source"] == ["self-reported"]
    assert m["config"]["dataset"]["permitted_uses"]["uses"] == ["verification_research"]
    # the phenotype attribute gets the same per-group analysis as any label
    groups = {(r["attribute"], r["group"]) for r in m["per_group"] if r["metric"] == "FNMR"}
    assert {("natural_skin_color", "Type 1"), ("natural_skin_color", "Type 2"), ("natural_skin_color", "Type 3")} <= groups
    assert ("pronoun", "She/her/hers") in groups
    report = (run / "report.md").read_text()
    assert f"- **Release**: version {VERSION}; licence: FHIBE terms of use" in report
    assert "phenotype attributes: natural_skin_color" in report and "**Labels**: self-reported" in report

    assert verify_main([str(run), "--dataset-root", str(root), "--skip-figures"]) == 0
    text = capsys.readouterr().out
    assert "manifest SHA-256" in text

    # the same release given as "newer": current
    assert verify_main([str(run), "--dataset-root", str(root), "--skip-figures", "--dataset-metadata", str(root / METADATA)]) == 0
    # a re-release without person p3 (withdrew consent): flagged, the count named, not the person
    newer = _release(tmp_path / "new", "fhibe.20250808.m.zz", [s for s in range(8) if s != 3])
    assert verify_main([str(run), "--dataset-root", str(root), "--skip-figures", "--dataset-metadata", str(newer / METADATA)]) == 1
    text = capsys.readouterr().out
    assert "since revised (given: fhibe.20250808.m.zz" in text and "1 of the run's 8 subjects are no longer in it (exact" in text
    assert "p3" not in text.split("dataset release")[-1]
    # without the old release at hand: the count from the subject counts
    assert verify_main([str(run), "--dataset-root", str(tmp_path / "gone"), "--skip-figures", "--skip-dataset",
                        "--dataset-metadata", str(newer / METADATA)]) == 1
    assert "1 of the run's 8 subjects are no longer in it (subject counts 8 -> 7" in capsys.readouterr().out


def test_fhibe_config_refused_by_identification(tmp_path):
    """FHIBE's terms bar surveillance: the 1:N protocol refuses the set before touching any folder."""
    done = subprocess.run([sys.executable, "-m", "bench", "dataset=fhibe", f"dataset.root={tmp_path / 'none'}", "model=sface",
                           "protocol=identification", f"hydra.run.dir={tmp_path / 'h'}", f"paths.results_dir={tmp_path / 'r'}",
                           f"paths.cache_dir={tmp_path / 'c'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    text = done.stdout + done.stderr
    assert done.returncode != 0 and "does not permit identification research" in text and "surveillance" in text
    assert "Traceback" not in text


def test_missing_root_from_the_command_line_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "dataset=cfd", f"dataset.root={tmp_path / 'nope'}", "model=sface",
                           f"hydra.run.dir={tmp_path / 'h'}", f"paths.results_dir={tmp_path / 'r'}", f"paths.cache_dir={tmp_path / 'c'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    err = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line]
    assert done.returncode != 0 and len(err) == 1, done.stderr[-2000:]
    assert "CFD Version 3.0" in err[0] and "chicagofaces.org" in err[0] and "Traceback" not in done.stderr
