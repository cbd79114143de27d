"""``fvbench-aggregate``: leaderboard from result folders; comparability; refusals; --verify.

Two small synthetic runs of the same protocol and one with other target FMRs
are made with the real CLI into tmp_path; the leaderboard must carry each run's own numbers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.aggregate import aggregate, aggregate_main, load_run, verify_leaderboard
from bench.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def _run(tmp: Path, name: str, *extra: str) -> Path:
    cmd = [
        sys.executable, "-m", "bench", "debug=smoke", "++protocol.bootstrap_replicates=20", f"run_name={name}",
        f"hydra.run.dir={tmp / 'hydra' / name}", f"paths.results_dir={tmp / 'results'}", f"paths.cache_dir={tmp / 'cache'}",
        *extra,
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return tmp / "results" / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("aggregate")
    return {
        "a": _run(tmp, "syn_a"),
        "b": _run(tmp, "syn_b"),
        "c": _run(tmp, "syn_c", "protocol.target_fmrs=[1.0e-1]"),
    }


@pytest.fixture
def board(runs, tmp_path) -> Path:
    results = tmp_path / "results"
    for p in runs.values():
        shutil.copytree(p, results / p.name)
    out = aggregate([results / "syn_a", results / "syn_b", results / "syn_c"], results / "leaderboard")
    return out


def test_leaderboard_carries_each_runs_own_numbers(board, runs):
    tidy = pd.read_csv(board / "leaderboard.csv")
    for key in ("a", "b"):
        m = json.loads((runs[key] / "metrics.json").read_text())
        pg = pd.DataFrame(m["per_group"])
        attr = m["protocol"]["attributes"][0]
        primary = m["protocol"]["primary_threshold"]
        want = pg[(pg.attribute == attr) & (pg.threshold_name == primary) & (pg.metric == "FMR") & (pg.group == "(all)")]
        got = tidy[(tidy.run == runs[key].name) & (tidy.attribute == attr) & (tidy.threshold_name == primary) & (tidy.quantity == "FMR")]
        assert len(got) == 1 and got.value.iloc[0] == pytest.approx(float(want.rate.iloc[0]), rel=1e-9)
        # worst group = the published group with the highest FMR
        groups = pg[(pg.attribute == attr) & (pg.threshold_name == primary) & (pg.metric == "FMR") & (pg.group != "(all)") & pg.rate.notna()]
        worst = tidy[(tidy.run == runs[key].name) & (tidy.attribute == attr) & (tidy.threshold_name == primary) & (tidy.quantity == "worst_FMR")]
        assert worst.value.iloc[0] == pytest.approx(groups.rate.astype(float).max())
        assert worst.group.iloc[0] in set(groups.group) | {"tie"}
        subjects = tidy[(tidy.run == runs[key].name) & (tidy.quantity == "subjects")].value.iloc[0]
        assert subjects == m["dataset"]["subjects"]


def test_other_targets_go_to_a_separate_table_with_the_reason(board):
    src = json.loads((board / "sources.json").read_text())
    (tables,) = src["tables"].values()
    assert tables["T1"]["runs"] == ["syn_a", "syn_b"]
    assert tables["T2"]["runs"] == ["syn_c"] and "target_fmrs" in tables["T2"]["reason"]
    md = next(board.glob("leaderboard_*.md")).read_text()
    assert "## Table T2 (not comparable with T1: protocol differs in" in md


def test_figures_are_drawn(board):
    assert list(board.glob("fmr_by_group_*.png")) and list(board.glob("fnmr_by_group_*.png"))
    assert list(board.glob("score_shift_*.png"))


def test_verify_passes_then_catches_a_changed_source_and_an_edited_table(board):
    assert verify_leaderboard(board) == []
    csv = board / "leaderboard.csv"
    csv.write_text(csv.read_text().replace("syn_b", "syn_B", 1))
    problems = verify_leaderboard(board)
    assert any("leaderboard.csv" in p for p in problems)
    m = board.parent / "syn_a" / "metrics.json"
    m.write_text(m.read_text() + " ")
    assert any("syn_a: metrics.json changed" in p for p in verify_leaderboard(board))


def test_hostile_source_names_are_refused(board):
    src = board / "sources.json"
    rec = json.loads(src.read_text())
    rec["sources"].append({"folder": "../../etc", "metrics_sha256": "x"})
    src.write_text(json.dumps(rec))
    assert any("not a plain folder name" in p for p in verify_leaderboard(board))


@pytest.mark.parametrize("text,needle", [
    ("[" * 100_000 + "]" * 100_000, "JSON nested deeper than the parser's recursion limit"),
    ('{"sources": [{"folder": ' + "9" * 5000 + "}]}", "Exceeds the limit (4300 digits)"),
    ('{"sources": 7}', "expected a JSON object with a 'sources' list"),
])
def test_hostile_sources_json_is_a_one_line_refusal(board, capsys, text, needle):
    (board / "sources.json").write_text(text)
    assert aggregate_main(["--verify", str(board)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fvbench-aggregate: ") and "sources.json" in err[0] and needle in err[0], err


def test_non_result_folders_are_refused_with_the_reason(runs, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{not json")
    out = aggregate([runs["a"], junk, tmp_path / "bad"], tmp_path / "lb")
    refused = {r["folder"]: r["reason"] for r in json.loads((out / "sources.json").read_text())["refused"]}
    assert "no metrics.json" in refused["junk"] and "not valid JSON" in refused["bad"]
    with pytest.raises(DataError, match="no metrics.json"):
        load_run(junk)


def test_output_over_a_result_folder_is_refused(runs, tmp_path):
    target = tmp_path / "syn_copy"
    shutil.copytree(runs["a"], target)
    with pytest.raises(ConfigError, match="not a leaderboard folder"):
        aggregate([runs["b"]], target)
    assert (target / "metrics.json").is_file()
    with pytest.raises(ConfigError, match="also a source"):
        aggregate([runs["b"], target], target)


def test_out_over_a_users_folder_with_a_sources_json_is_refused_and_kept(runs, tmp_path, capsys):
    """Attack: a project folder that happens to hold a sources.json must not be replaced by --out."""
    proj = tmp_path / "my_project"
    (proj / "src").mkdir(parents=True)
    (proj / "sources.json").write_text("{}\n")
    (proj / "src" / "main.py").write_text("x\n")
    assert aggregate_main([str(runs["a"]), "--out", str(proj), "--no-figures"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"fvbench-aggregate: {str(proj)!r} (--out) is not a leaderboard folder fvbench wrote (holds e.g. sources.json, src/); "
        "choose another --out or move it away"]
    assert (proj / "src" / "main.py").read_text() == "x\n" and (proj / "sources.json").read_text() == "{}\n"
    # a real leaderboard's sources.json and files.sha256 copied in do not make it one either (the unlisted src/ stays)
    board = aggregate([runs["a"]], tmp_path / "lb", figures=False)
    shutil.copy(board / "sources.json", proj / "sources.json")
    shutil.copy(board / "files.sha256", proj / "files.sha256")
    with pytest.raises(ConfigError, match=r"holds files fvbench did not write \(src/\)"):
        aggregate([runs["a"]], proj, figures=False)
    assert (proj / "src" / "main.py").read_text() == "x\n"


def test_leaderboard_holding_a_users_file_is_not_replaced(runs, tmp_path):
    board = aggregate([runs["a"]], tmp_path / "lb", figures=False)
    aggregate([runs["a"], runs["b"]], board, figures=False)  # a leaderboard fvbench wrote: replaced
    assert len(json.loads((board / "sources.json").read_text())["sources"]) == 2
    (board / "notes.md").write_text("mine")
    (board / "extra").mkdir()
    with pytest.raises(ConfigError) as refusal:
        aggregate([runs["a"]], board, figures=False)
    assert str(refusal.value) == (f"{str(board)!r} (--out) holds files fvbench did not write (extra/, notes.md); "
                                  "refusing to replace it: move them away or choose another --out")
    assert (board / "notes.md").read_text() == "mine" and (board / "extra").is_dir()


def test_cli_exit_codes(runs, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(runs["a"], results / "syn_a")
    assert aggregate_main([str(results / "syn_*"), "--out", str(results / "lb"), "--no-figures"]) == 0
    assert aggregate_main(["--verify", str(results / "lb")]) == 0  # sources are the leaderboard's siblings
    assert aggregate_main([str(tmp_path / "nothing-*"), "--out", str(tmp_path / "lb2")]) == 2
    assert "matches no folder" in capsys.readouterr().err


def test_markdown_has_a_run_column_and_zero_cells_as_the_run_report(board):
    """Two runs of one model/detector are told apart by their folder name; a zero-error cell
    is written as the 1:1 run report writes it: ``0/n (≤ u)``, u the exact one-sided 95% bound
    1 - 0.05^(1/n) (Clopper-Pearson at x = 0; docs/protocol.md §5.5), never ``0 [0, 0]``."""
    from bench.aggregate import _fmt_rate
    from bench.report.markdown import rate_cell

    md = "\n".join(p.read_text() for p in sorted(board.glob("leaderboard_*.md")))
    assert md
    table = [ln for ln in md.splitlines() if ln.startswith("| run | recogniser | detector |")]
    assert table, "the per-threshold tables start with a run column"
    assert any(ln.startswith("| syn_a |") for ln in md.splitlines()) and any(ln.startswith("| syn_b |") for ln in md.splitlines())
    # 0 of 180: 1 - 0.05^(1/180) = 0.01651 -> "0/180 (≤ 0.017)", identical to the run report's cell
    assert _fmt_rate(0.0, 0.0, 0.0, 0, 180) == "0/180 (≤ 0.017)"
    assert _fmt_rate(0.0, 0.0, 0.0, 0, 180) == rate_cell(pd.Series({"comparisons": 180, "errors": 0, "upper_bound_95": 1 - 0.05 ** (1 / 180)}))
    assert _fmt_rate(0.5, 0.25, 0.75, 3, 6) == "0.5 [0.25, 0.75]"
    assert "[0, 0]" not in md


def test_leaderboard_html_zero_cell_uses_the_exact_bound():
    from bench.report.leaderboard_html import _cell

    lines = _cell({"value": 0.0, "errors": 0, "comparisons": 180, "low": 0.0, "high": 0.011, "group": "west_asian"}, True)
    assert lines == ["west_asian", "0/180", "≤ 0.017 (one-sided exact 95% upper bound)"]


def test_an_identification_folder_is_refused_with_the_reason(tmp_path):
    ident = tmp_path / "some_identification"
    ident.mkdir()
    (ident / "metrics.json").write_text(json.dumps({"schema_version": 1, "model": {}, "dataset": {}, "identification": {}}))
    msg = f"{str(ident)!r}: an identification run (1:N) is not a leaderboard source; leaderboards compare 1:1 runs"
    with pytest.raises(DataError) as err:
        load_run(ident)
    assert str(err.value) == msg
