"""No command loses data (issue #9, "No data loss"): result names are confined, an existing
result is replaced only by the same experiment, a replaced folder survives a kill at every
point of the swap, leftovers of killed runs are recovered or cleaned, and a full or
read-only disk is one line naming the path with the previous results intact.

Kills are simulated two ways: an exception raised from a patched ``os.replace`` at each
step of the swap (in process), and a real ``SIGKILL`` of a child process between the two
renames and in the middle of writing.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import bench.report.folder as folder
from bench.cli import run_from_config, sweep_from_config
from bench.errors import ConfigError, StorageError
from bench.files import storage_error
from bench.report.folder import (
    RUN_NAME_MAX_CHARS,
    check_output_path,
    check_replace,
    check_run_name,
    recover_folder,
    result_folder,
    staged_folder,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def _compose(overrides: list[str], name: str = "fvbench"):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def _smoke(tmp: Path, *extra: str):
    return _compose(["debug=smoke", "progress=false", f"paths.results_dir={tmp / 'results'}", f"paths.cache_dir={tmp / 'cache'}", *extra])


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- names
BAD_NAMES = {
    "empty": "",
    "blank": "   ",
    "dot": ".",
    "dotdot": "..",
    "absolute": "/tmp/fvbench-escape",
    "home": "~/x",
    "climbs_out": "../../X",
    "climbs_out_inside": "a/../../b",
    "double_separator": "a//b",
    "trailing_separator": "a/",
    "hidden": ".hidden",
    "backslash": "a\\..\\b",
    "space": "my run",
    "nul": "a\x00b",
    "over_long": "x" * (RUN_NAME_MAX_CHARS + 1),
    "unresolved": "${oc.env:HOME}",
}


@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
def test_shared_validator_refuses_names_that_leave_or_replace_the_results_folder(name):
    with pytest.raises(ConfigError, match="run_name"):
        check_run_name(name)


@pytest.mark.parametrize("name", ["frl_london_dlib", "_scratch/mytry", "a.b-c+d=e,f@g", "x" * RUN_NAME_MAX_CHARS])
def test_ordinary_names_pass(name):
    assert check_run_name(name) == name


@pytest.mark.parametrize(
    "override",
    ["run_name=", "run_name=.", "run_name=..", "run_name=/tmp/fvbench-abs", "run_name=../../X", "run_name=a/../../b",
     "run_name=" + "y" * 151, "run_name=${oc.env:HOME}", "run_name=${oc.env:PATH}"],
)
def test_fvbench_refuses_bad_run_name_before_anything_is_written(tmp_path, override):
    results = tmp_path / "results"
    results.mkdir()
    (results / "keep").mkdir()
    (results / "keep" / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"run_name"):
        run_from_config(_smoke(tmp_path, override))
    assert _snapshot(results) == {"keep/metrics.json": b"{}"}
    assert not (tmp_path / "cache").exists()  # no computing started


def test_environment_value_through_a_referenced_node_is_refused(tmp_path):
    """``run_name=${dataset.name}`` is allowed, but not when dataset.name calls a resolver."""
    cfg = _smoke(tmp_path, "run_name=${dataset.name}", "dataset.name=${oc.env:HOME}")
    with pytest.raises(ConfigError, match="oc.env"):
        run_from_config(cfg)


def test_symlinked_component_leaving_the_results_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "link").symlink_to(outside)
    with pytest.raises(ConfigError, match="outside the results folder"):
        result_folder(tmp_path / "results", "link/x")
    with pytest.raises(ConfigError, match="outside the results folder"):
        run_from_config(_smoke(tmp_path, "run_name=link/x"))
    assert list(outside.iterdir()) == []


def test_cli_bad_name_is_one_line_and_hydra_creates_nothing_outside_outputs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "bench", "debug=smoke", "progress=false", "run_name=../../escape",
           f"paths.results_dir={work / 'results'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert lines == [lines[-1]] and lines[0].startswith("fvbench: error: run_name='../../escape' has the path component '..'")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
    assert [p.name for p in (work / "outputs").iterdir()] == ["_invalid_run_name"]  # Hydra's log folder, not ../../escape


def test_sweep_refuses_bad_run_name_before_loading_anything(tmp_path):
    cfg = _compose(["run_name=..", f"paths.results_dir={tmp_path / 'results'}", f"paths.cache_dir={tmp_path / 'c'}",
                    f"paths.data_dir={tmp_path / 'no-data'}"], name="sweep")
    with pytest.raises(ConfigError, match=r"run_name='\.\.'"):
        sweep_from_config(cfg)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("out", ["", ".", "..", "/", "../x", "a/./b", "${x}"])
def test_explicit_output_paths_must_name_a_folder_of_their_own(out):
    with pytest.raises(ConfigError, match="--out"):
        check_output_path(out, key="--out")


def test_power_refuses_bad_out_before_computing(tmp_path, capsys):
    from bench.synthetic.power import power_main

    for bad in (".", "..", ""):
        assert power_main(["--target-fmr", "0.01", "--fmr-ratio", "2", "--out", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fvbench-power: --out")
    # an existing folder that is not a power analysis (e.g. the home folder, results/) is never replaced
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    assert power_main(["--target-fmr", "0.01", "--fmr-ratio", "2", "--out", str(other)]) == 2
    assert "is not an fvbench result folder (holds e.g. thesis.tex)" in capsys.readouterr().err
    assert (other / "thesis.tex").read_text() == "keep me"


def _fake_calibration_run(folder_: Path, run_name: str) -> None:
    import pandas as pd

    folder_.mkdir()
    pd.DataFrame({"mated": [True], "score": [0.1], "subject_a": ["a"], "subject_b": ["a"]}).to_parquet(folder_ / "scores.parquet")
    (folder_ / "metrics.json").write_text(json.dumps({"run_name": run_name}))


@pytest.mark.parametrize("args,expected", [
    (["--name", "../evil"], "--name"),
    (["--name", "x" * 200], "--name"),
    (["--name", "has-dash"], "letters, digits and underscores"),
    (["--figure-dir", ".."], "--figure-dir"),
])
def test_calibrate_refuses_bad_names_before_fitting(tmp_path, capsys, args, expected):
    from bench.synthetic.calibrate_cli import calibrate_main

    _fake_calibration_run(tmp_path / "run", "ok_run")
    assert calibrate_main([str(tmp_path / "run"), "--output", str(tmp_path / "o.yaml"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert not (tmp_path / "o.yaml").exists()


def test_calibrate_refuses_a_hostile_run_name_recorded_in_metrics_json(tmp_path, capsys, monkeypatch):
    """The default figure folder is results/calibration_<run_name>, and run_name comes from a file."""
    from bench.synthetic.calibrate_cli import calibrate_main

    monkeypatch.chdir(tmp_path)
    _fake_calibration_run(tmp_path / "run", "../../../victim")
    assert calibrate_main([str(tmp_path / "run"), "--output", str(tmp_path / "o.yaml")]) == 2
    assert "run_name recorded in metrics.json" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------- replacing a result
@pytest.fixture()
def first_run(tmp_path):
    out = run_from_config(_smoke(tmp_path, "run_name=r"))
    return tmp_path, out, _snapshot(out)


def test_same_experiment_replaces_and_runtime_flags_do_not_count(first_run):
    tmp, out, before = first_run
    again = run_from_config(_smoke(tmp, "run_name=r", "progress=true", f"paths.cache_dir={tmp / 'other-cache'}"))
    after = _snapshot(out)
    # same config and seed: the same numbers (metrics.json and its hash list also record the run-time flags)
    assert again == out and {k: v for k, v in after.items() if k not in ("metrics.json", "files.sha256")} == {
        k: v for k, v in before.items() if k not in ("metrics.json", "files.sha256")}
    assert json.loads(after["metrics.json"])["config"].get("progress") in (True, None)
    assert _hidden(out.parent) == []


def test_same_experiment_with_another_data_location_replaces(tmp_path):
    """A value derived from paths (like dataset.loader.root) does not make a rerun elsewhere a new experiment."""
    # a free-form node (dataset.calibration is not checked against a schema; unknown keys elsewhere are refused)
    extra = "+dataset.calibration.root_like=${paths.data_dir}/some_set"
    out = run_from_config(_smoke(tmp_path, "run_name=r", extra, f"paths.data_dir={tmp_path / 'data_a'}"))
    run_from_config(_smoke(tmp_path, "run_name=r", extra, f"paths.data_dir={tmp_path / 'elsewhere' / 'data_b'}"))
    assert json.loads((out / "metrics.json").read_text())["config"]["dataset"]["calibration"]["root_like"].endswith("some_set")
    with pytest.raises(ConfigError, match=r"config differs in: dataset\.calibration\.root_like"):
        run_from_config(_smoke(tmp_path, "run_name=r", "+dataset.calibration.root_like=${paths.data_dir}/other_set"))


def test_os_error_reaching_the_command_is_one_line(capsys):
    from bench.cli import _os_failure

    with pytest.raises(SystemExit) as stop:
        _os_failure("fvbench", OSError(errno.ENOSPC, "No space left on device", "/r/x.csv"))
    assert stop.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["fvbench: error: cannot write a file: '/r/x.csv': No space left on device (free some space, or point the "
                   "path elsewhere); results already in place are unchanged"]


def test_different_experiment_is_refused_and_overwrite_true_replaces_it(first_run):
    tmp, out, before = first_run
    with pytest.raises(ConfigError, match=r"holds a different experiment \(config differs in: .*seed.*overwrite=true"):
        run_from_config(_smoke(tmp, "run_name=r", "seed=5"))
    assert _snapshot(out) == before
    run_from_config(_smoke(tmp, "run_name=r", "seed=5", "overwrite=true"))
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 5


def test_folder_that_is_not_a_result_is_never_replaced(tmp_path):
    notes = tmp_path / "results" / "r"
    notes.mkdir(parents=True)
    (notes / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not an fvbench result folder") as refusal:
        run_from_config(_smoke(tmp_path, "run_name=r"))
    assert "overwrite=true" not in str(refusal.value)  # never suggest deleting someone's own folder
    assert (notes / "notes.txt").read_text() == "mine"
    (tmp_path / "results" / "f").write_text("a file")
    with pytest.raises(ConfigError, match="not a folder"):
        run_from_config(_smoke(tmp_path, "run_name=f", "overwrite=true"))  # not even on purpose
    assert (tmp_path / "results" / "f").read_text() == "a file"


def test_overwrite_true_never_deletes_a_folder_fvbench_did_not_write(tmp_path):
    """Attack: results/proj holds the user's thesis; the refusal must not invite overwrite=true, and
    overwrite=true must not delete it (the CLI command the review ran, through run_from_config)."""
    proj = tmp_path / "results" / "proj"
    proj.mkdir(parents=True)
    (proj / "thesis.tex").write_text("keep")
    for extra in ((), ("overwrite=true",)):
        with pytest.raises(ConfigError) as refusal:
            run_from_config(_smoke(tmp_path, "run_name=proj", *extra))
        assert str(refusal.value) == (f"{str(proj)!r} is not an fvbench result folder (holds e.g. thesis.tex); "
                                      "choose another run_name or move it away")
    assert _snapshot(proj) == {"thesis.tex": b"keep"}
    # a metrics.json alone (no files.sha256) does not make it a result folder either
    (proj / "metrics.json").write_text(json.dumps({"config": {"seed": 0}}))
    with pytest.raises(ConfigError, match="is not an fvbench result folder"):
        run_from_config(_smoke(tmp_path, "run_name=proj", "overwrite=true"))
    assert (proj / "thesis.tex").read_text() == "keep"


def test_cli_overwrite_of_a_users_folder_is_one_line_and_keeps_it(tmp_path):
    proj = tmp_path / "V" / "proj"
    proj.mkdir(parents=True)
    (proj / "thesis.tex").write_text("keep")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "bench", "debug=smoke", "progress=false", f"paths.results_dir={tmp_path / 'V'}",
                           f"paths.cache_dir={tmp_path / 'cache'}", "run_name=proj", "overwrite=true"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"fvbench: error: {str(proj)!r} is not an fvbench result folder (holds e.g. thesis.tex); choose another run_name or move it away"]
    assert (proj / "thesis.tex").read_text() == "keep"


def test_unlisted_files_in_a_result_folder_are_never_deleted(first_run):
    """The user's notes inside a finished result folder: refused, with or without overwrite, naming them."""
    tmp, out, before = first_run
    (out / "my_notes.txt").write_text("mine")
    (out / "drafts").mkdir()
    (out / "drafts" / "fig.svg").write_text("<svg/>")
    for extra in ((), ("overwrite=true",), ("seed=5", "overwrite=true")):
        with pytest.raises(ConfigError) as refusal:
            run_from_config(_smoke(tmp, "run_name=r", *extra))
        assert str(refusal.value) == (f"{str(out)!r} (run_name) holds files fvbench did not write (drafts/, my_notes.txt); "
                                      "refusing to replace it: move them away or choose another run_name")
    assert (out / "my_notes.txt").read_text() == "mine" and (out / "drafts" / "fig.svg").exists()
    (out / "my_notes.txt").unlink()
    (out / "drafts" / "fig.svg").unlink()
    (out / "drafts").rmdir()
    run_from_config(_smoke(tmp, "run_name=r", "seed=5", "overwrite=true"))  # only fvbench's own files: replaced on purpose
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 5


def test_sweep_calibration_power_folders_without_a_manifest_are_recognised(tmp_path):
    """Those commands write no files.sha256: their folder is theirs only if it holds just their files."""
    d = tmp_path / "p"
    d.mkdir()
    (d / "power.json").write_text(json.dumps({"config": {"seed": 0}}))
    (d / "power.csv").write_text("x\n")
    check_replace(d, config={"seed": 1}, overwrite=True, record="power.json", how="--force", key="--out")
    (d / "analysis.R").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds files fvbench did not write \(analysis\.R\)"):
        check_replace(d, config={"seed": 1}, overwrite=True, record="power.json", how="--force", key="--out")
    s = tmp_path / "s"
    s.mkdir()
    (s / "sweep.json").write_text(json.dumps({"config": {}, "files": {"figures": ["sweep_blur_g.png"]}}))
    for f in ("sweep.csv", "report.md", "sweep_blur_g.png"):
        (s / f).write_text("x")
    check_replace(s, config={"seed": 1}, overwrite=True, record="sweep.json")
    (s / "sweep_mine.png").write_text("x")
    with pytest.raises(ConfigError, match=r"\(sweep_mine\.png\)"):
        check_replace(s, config={"seed": 1}, overwrite=True, record="sweep.json")


def test_check_replace_names_the_differing_keys(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({"config": {"seed": 1, "progress": True, "paths": {"a": 1}, "model": {"name": "m"}}}))
    folder.write_file_manifest(d)
    check_replace(d, config={"seed": 1, "progress": False, "paths": {"a": 2}, "model": {"name": "m"}}, overwrite=False)
    with pytest.raises(ConfigError, match=r"config differs in: model\.name"):
        check_replace(d, config={"seed": 1, "model": {"name": "n"}}, overwrite=False)


def test_same_experiment_from_another_data_location_compares_equal():
    from bench.report.folder import experiment_config

    a = {"paths": {"data_dir": "../shared/datasets"}, "dataset": {"loader": {"root": "../shared/datasets/frl_london"}}, "seed": 0}
    b = {"paths": {"data_dir": "/data/sets/"}, "dataset": {"loader": {"root": "/data/sets/frl_london"}}, "seed": 0}
    assert experiment_config(a) == experiment_config(b) == {"dataset": {"loader": {"root": "${paths.data_dir}/frl_london"}}, "seed": 0}
    c = {**b, "dataset": {"loader": {"root": "/data/sets/other_set"}}}
    assert experiment_config(a) != experiment_config(c)


def test_multirun_whose_jobs_share_a_run_name_is_refused_before_any_job_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "bench", "-m", "debug=smoke", "progress=false", "run_name=shared", "seed=1,2",
           f"paths.results_dir={tmp_path / 'results'}", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "this multirun has 2 jobs but 2 of them share run_name='shared'" in done.stderr
    assert not (tmp_path / "results" / "shared").exists()


# ----------------------------------------------------------------------------- kills during a swap
def _old_result(parent: Path) -> Path:
    out = parent / "r"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text('{"config": {"seed": 0}}')
    (out / "report.md").write_text("old result")
    return out


class _Killed(BaseException):
    """Stands for the process dying: nothing after it runs (not caught as an Exception)."""


@pytest.mark.parametrize("kill_at", [1, 2])
def test_kill_at_each_rename_never_loses_the_old_result(tmp_path, monkeypatch, kill_at):
    out = _old_result(tmp_path)
    before = _snapshot(out)
    real = os.replace
    calls = []

    def replace(a, b):
        calls.append((a, b))
        if len(calls) == kill_at:
            raise _Killed
        return real(a, b)

    monkeypatch.setattr(folder.os, "replace", replace)
    with pytest.raises(_Killed):
        with staged_folder(out) as stage:
            (stage / "report.md").write_text("new result")
            (stage / "scores.parquet").write_bytes(b"biometric-derived")
    monkeypatch.setattr(folder.os, "replace", real)
    if kill_at == 2:  # between the renames: the old result exists only under its hidden name
        assert not out.exists() and any(".r.old-" in n for n in _hidden(tmp_path))
    # what a kill leaves is attributed to a dead process: pretend this one died
    monkeypatch.setattr(folder, "_pid_alive", lambda pid: False)
    recover_folder(out)
    assert _snapshot(out) == before
    assert _hidden(tmp_path) == []  # the partial folder with scores.parquet is gone too


def test_swap_that_keeps_failing_puts_the_old_result_back(tmp_path, monkeypatch):
    out = _old_result(tmp_path)
    before = _snapshot(out)
    real = os.replace

    def replace(a, b):
        if Path(a).name.startswith(".r.partial-"):
            raise OSError(errno.EBUSY, "Device or resource busy", str(b))
        return real(a, b)

    monkeypatch.setattr(folder.os, "replace", replace)
    monkeypatch.setattr(folder.time, "sleep", lambda s: None)
    with pytest.raises(StorageError, match="the previous result is unchanged"):
        with staged_folder(out) as stage:
            (stage / "report.md").write_text("new")
    assert _snapshot(out) == before and _hidden(tmp_path) == []


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import bench.report.folder as folder
    out = Path(sys.argv[1]); where = sys.argv[2]
    real = os.replace
    n = []
    def replace(a, b):
        n.append(1)
        if where == "between_renames" and len(n) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(a, b)
    folder.os.replace = replace
    with folder.staged_folder(out) as stage:
        (stage / "scores.parquet").write_bytes(b"scores of the new run")
        if where == "while_writing":
            os.kill(os.getpid(), signal.SIGKILL)
        (stage / "report.md").write_text("new result")
    """
)


@pytest.mark.parametrize("where", ["while_writing", "between_renames"])
def test_sigkilled_run_is_recovered_by_the_next_one(tmp_path, where):
    out = _old_result(tmp_path)
    before = _snapshot(out)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(out), where], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    left = _hidden(tmp_path)
    assert any(".r.partial-" in n for n in left)  # holds scores.parquet
    if where == "between_renames":
        assert not out.exists() and any(".r.old-" in n for n in left)
    actions = recover_folder(out)  # what the next run does first
    assert _snapshot(out) == before and _hidden(tmp_path) == []
    assert any(a.startswith("removed .r.partial-") for a in actions)


def test_leftovers_of_a_running_process_are_left_alone(tmp_path):
    out = _old_result(tmp_path)
    live = tmp_path / f".r.partial-{os.getppid()}-0123abcd"  # the parent process (pytest's launcher) is alive
    live.mkdir()
    recover_folder(out)
    assert live.is_dir()


def test_next_cli_run_restores_a_result_lost_between_renames(first_run, monkeypatch):
    tmp, out, before = first_run
    hidden = out.with_name(".r.old-999999-0123abcd")  # pid 999999: not running
    os.replace(out, hidden)
    with pytest.raises(ConfigError, match="different experiment"):  # restored first, then compared
        run_from_config(_smoke(tmp, "run_name=r", "seed=9"))
    assert _snapshot(out) == before and _hidden(out.parent) == []


# ----------------------------------------------------------------------------- disk full, read-only, files in the way
def test_disk_full_while_writing_is_one_line_and_keeps_the_previous_result(first_run, monkeypatch):
    tmp, out, before = first_run
    import bench.report.writer as writer

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "results" / ".r.partial-x" / "per_group.csv"))

    monkeypatch.setattr(writer, "write_results", full)
    with pytest.raises(StorageError, match=r"cannot write the result folder: '.*per_group\.csv': No space left on device \(free some space"):
        run_from_config(_smoke(tmp, "run_name=r"))
    assert _snapshot(out) == before and _hidden(out.parent) == []


def test_results_folder_that_is_a_file_is_refused_before_computing(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"results_dir\) is not writable"):
        run_from_config(_smoke(tmp_path, "run_name=r"))
    assert not (tmp_path / "cache").exists()


def test_storage_error_names_path_and_reason():
    err = storage_error(OSError(errno.EROFS, "Read-only file system", "/data/x"), "the cache", "kept")
    assert str(err) == "cannot write the cache: '/data/x': Read-only file system (not writable: choose a writable location); kept"


# ----------------------------------------------------------------------------- the sweep writer
def test_sweep_writer_stages_and_swaps(tmp_path, monkeypatch):
    import bench.report.sweep as sweep

    def files(names, fail=False):
        def write(result, out_dir, **kw):
            for n in names:
                (out_dir / n).write_text(n)
                if fail:
                    raise KeyboardInterrupt
        return write

    out = tmp_path / "results" / "s"
    monkeypatch.setattr(sweep, "_write_sweep_files", files(["sweep.json", "sweep_exposure_group.png"]))
    sweep.write_sweep(None, out, run_name="s", config={})
    monkeypatch.setattr(sweep, "_write_sweep_files", files(["sweep.json", "sweep_jpeg_group.png"], fail=True))
    with pytest.raises(KeyboardInterrupt):  # interrupted: the first sweep's folder is untouched, no mixed folder
        sweep.write_sweep(None, out, run_name="s", config={})
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json", "sweep_exposure_group.png"]
    monkeypatch.setattr(sweep, "_write_sweep_files", files(["sweep.json", "sweep_jpeg_group.png"]))
    sweep.write_sweep(None, out, run_name="s", config={})
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json", "sweep_jpeg_group.png"]  # nothing of the first
    assert _hidden(out.parent) == []


def test_gallery_size_script_never_replaces_a_folder_it_did_not_write(tmp_path):
    """scripts/identification_gallery_size.py --out X deleted X whole; now it refuses, before computing."""
    mine = tmp_path / "x"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "identification_gallery_size.py"), "--out", str(mine)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"identification_gallery_size: --out {str(mine)!r} holds files this script did not write (thesis.tex); "
        "refusing to replace it: choose another --out or move them away"]
    assert (mine / "thesis.tex").read_text() == "keep"
