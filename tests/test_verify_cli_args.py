"""``fvbench-verify`` refuses options it cannot honour instead of passing silently
(fresh-user review): ``--dataset-metadata`` names a missing file or is given for a folder
that records no FHIBE release -> exit 2, one line; ``--help`` lists every folder kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.verify import verify_main

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"


def _published(name: str) -> Path:
    path = RESULTS / name
    if not (path / "metrics.json").is_file() and not any(path.glob("*.json")):
        pytest.skip(f"published folder results/{name} absent")
    return path


def test_missing_metadata_file_is_exit_2_in_one_line(tmp_path, capsys):
    run = _published("frl_london_dlib")
    assert verify_main([str(run), "--skip-figures", "--skip-dataset", "--dataset-metadata", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nope.csv" in err and "no such file" in err


@pytest.mark.parametrize("name", ["frl_london_dlib", "leaderboard_frl_london", "frl_london_dlib_sweep"])
def test_metadata_on_a_folder_without_a_fhibe_release_is_exit_2(name, tmp_path, capsys):
    run = _published(name)
    meta = tmp_path / "fhibe_face_crop_align.csv"
    meta.write_text("subject_id\np1\n")
    assert verify_main([str(run), "--skip-figures", "--skip-dataset", "--dataset-metadata", str(meta)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--dataset-metadata applies to" in err and "FHIBE" in err


def test_help_lists_leaderboard_and_identification_and_the_dataset_root(capsys):
    with pytest.raises(SystemExit):
        verify_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "1:N identification run" in out and "leaderboard" in out
    assert "--dataset-root ../shared/datasets/frl_london" in out
