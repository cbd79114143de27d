"""``fvbench-verify`` on folders made by an attacker (issue #9, "Verifying untrusted folders").

Each test copies the published ``results/frl_london_dlib`` folder (no ``scores.parquet``:
verified from its counts) and turns one scenario of the issue into a hostile folder:
code execution through the recorded config, a ``payload.py`` beside the folder,
``${oc.env:...}`` interpolation, forged published content with ``files.sha256``
rewritten (a careful forger's move), and malformed files. Verify must never run or
import anything, never write anything, fail naming the forged file, and refuse a
malformed folder with one line and exit status 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report.folder import write_file_manifest
from bench.verify import verify_main, verify_run

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "results" / "frl_london_dlib"


@pytest.fixture(scope="session")
def published_is_current() -> bool:
    """Whether results/frl_london_dlib verifies untouched with this code (else it must be regenerated:
    ``make london``; ``test_published_folders_verify`` then fails and says where)."""
    return (PUBLISHED / "metrics.json").is_file() and verify_run(PUBLISHED, check_dataset=False, check_figures=False, check_weights=False).ok


@pytest.fixture
def folder(tmp_path, published_is_current) -> Path:
    if not (PUBLISHED / "metrics.json").is_file():
        pytest.skip("results/frl_london_dlib is not in this checkout")
    if not published_is_current:
        pytest.skip("results/frl_london_dlib does not verify with this code (written by older code: regenerate it with `make london`)")
    dst = tmp_path / "frl_london_dlib"
    shutil.copytree(PUBLISHED, dst)
    return dst


def _edit(folder: Path, edit) -> None:
    m = json.loads((folder / "metrics.json").read_text())
    edit(m)
    (folder / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
    write_file_manifest(folder)  # the forger rewrites files.sha256


def _verify(folder: Path, **kw):
    kw.setdefault("check_dataset", False)
    kw.setdefault("check_figures", False)  # re-rendering takes seconds; tested where a figure is forged
    return verify_run(folder, **kw)


def _tree(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}


# ----------------------------------------------------------------------------- nothing is run, imported, resolved or written
def test_write_atomic_gadget_writes_nothing_anywhere(folder, tmp_path):
    """The recorded config names bench.models.weights._write_atomic (and cache_root for the path):
    before, verify instantiated it and wrote any file (e.g. a .pth into site-packages)."""
    target = tmp_path / "site-packages" / "evil.pth"
    target.parent.mkdir()

    def edit(m):
        m["config"]["dataset"]["loader"] = {"_target_": "bench.models.weights._write_atomic", "path": str(target), "text": "import os; os.system('x')"}
        m["config"]["model"]["embedder"] = {"_target_": "bench.models.weights._write_atomic", "path": str(target), "text": "import os"}
        m["config"]["paths"]["cache_dir"] = {"_target_": "bench.models.weights.cache_root", "cache_dir": str(tmp_path / "cache")}

    _edit(folder, edit)
    before = _tree(tmp_path)
    report = _verify(folder, check_dataset=True)  # dataset and weights checks on
    assert not target.exists() and not (tmp_path / "cache").exists()
    assert _tree(tmp_path) == before  # nothing written, in the folder or beside it
    assert report.status("dataset") == "skipped" and "is not one this package can rebuild" in report.detail("dataset")
    assert report.status("weights") == "ok"  # compared with the shipped registry, by model name


def test_weights_check_imports_nothing_named_by_the_folder(folder, tmp_path, monkeypatch):
    """Before, _check_weights imported any model._target_ (get_object) before checking it."""
    mod = "fvbench_hostile_payload_mod"
    (tmp_path / f"{mod}.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').write('x')\nclass Evil:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _edit(folder, lambda m: m["config"]["model"].update(embedder={"_target_": f"{mod}.Evil"}))
    sys.modules.pop(mod, None)
    report = _verify(folder, check_dataset=True)
    assert mod not in sys.modules and not (tmp_path / "imported").exists()
    assert report.status("weights") == "ok"
    # a dataset loader named by the folder is not imported either
    _edit(folder, lambda m: m["config"]["dataset"].update(loader={"_target_": f"{mod}.Evil", "root": "."}))
    _verify(folder, check_dataset=True)
    assert mod not in sys.modules and not (tmp_path / "imported").exists()


def test_payload_beside_the_folder_is_not_importable_under_python_m(folder, tmp_path):
    """``python -m bench.verify .`` run inside a hostile folder: its payload.py and a pandas.py
    that shadows the real one are never imported (the current directory leaves sys.path first)."""
    marker = tmp_path / "payload_ran"
    _edit(folder, lambda m: m["config"]["model"].update(embedder={"_target_": "payload.run"}))
    for name in ("payload.py", "pandas.py", "numpy.py"):
        (folder / name).write_text(f"open({str(marker)!r}, 'a').write({name!r})\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "bench.verify", ".", "--skip-dataset", "--skip-figures"], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert not marker.exists(), marker.read_text()
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    # the folder's own extra files are reported as not written by the run
    assert done.returncode == 1 and "payload.py: not written by this run" in done.stdout


def test_oc_env_interpolation_is_plain_text(folder, capsys):
    """``${oc.env:...}`` in a folder is never resolved: not in the loader, not in what is printed."""
    secret = os.environ.get("HOME", "/root")

    def edit(m):
        m["run_name"] = "${oc.env:HOME}"
        m["config"]["dataset"]["loader"]["root"] = "${oc.env:HOME}/datasets"

    _edit(folder, edit)
    assert verify_main([str(folder), "--skip-weights", "--skip-figures"]) == 1
    out = capsys.readouterr().out
    assert "${oc.env:HOME}" in out and secret not in out.replace(str(folder), "")
    report = _verify(folder, check_dataset=True)
    assert report.status("dataset") == "mismatch" and "unresolved ${...}" in report.detail("dataset")
    assert report.status("report.md") == "mismatch"  # the report is rendered with the literal run name


# ----------------------------------------------------------------------------- forged content, files.sha256 rewritten
def test_forged_number_in_report_md(folder):
    text = (folder / "report.md").read_text()
    assert "0.0545 (17/312)" in text
    (folder / "report.md").write_text(text.replace("0.0545 (17/312)", "0.0145 (17/312)", 1))
    write_file_manifest(folder)
    report = _verify(folder)
    assert [c.name for c in report.mismatches] == ["report.md"]
    assert "0.0145 (17/312)" in report.detail("report.md") and "0.0545 (17/312)" in report.detail("report.md")


def test_swapped_figure(folder):
    a, b = folder / "error_rates_face_eth.png", folder / "error_rates_face_gender.png"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    write_file_manifest(folder)
    report = _verify(folder, check_figures=True)
    assert {c.name for c in report.mismatches} == {"figures", "report.html"}  # the page embeds the figures (issue 15)
    assert "error_rates_face_eth.png: differs" in report.detail("figures") and "error_rates_face_gender.png: differs" in report.detail("figures")


def test_edited_threshold_column_of_cross_group_table(folder):
    """The cross-group CSV and metrics.json both claim another threshold than the primary one."""
    csv = folder / "cross_group_fmr_face_eth.csv"
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("threshold_name,threshold,")
    csv.write_text("\n".join([lines[0]] + [ln.replace("-0.4991588081", "-0.45", 1) for ln in lines[1:]]) + "\n")
    _edit(folder, lambda m: [r.update(threshold=-0.45) for r in m["cross_group_fmr"]["face_eth"]])
    report = _verify(folder)
    bad = {c.name for c in report.mismatches}
    assert {"cross_group_fmr[face_eth]", "cross_group_fmr_face_eth.csv"} <= bad
    assert "threshold: stored '-0.45'" in report.detail("cross_group_fmr[face_eth]")


def test_edited_dataset_counts(folder):
    _edit(folder, lambda m: m["dataset"].update(nonmated_comparisons=186240))
    report = _verify(folder)
    assert report.status("dataset counts") == "mismatch"
    assert "186240" in report.detail("dataset counts") and "18624" in report.detail("dataset counts")
    assert report.status("report.md") == "mismatch"  # the report printed the true counts


@pytest.mark.parametrize("field, value, expected", [
    ("licence", "MIT (free for any use)", "model.licence is 'MIT (free for any use)', but the weights registry says"),
    ("nominal_threshold_source", "NIST FRTE 2024", "but the shipped configs/model/dlib_resnet.yaml says"),
    ("name", "arcface_buffalo_l", "the recorded config model.name is 'dlib_resnet'"),
])
def test_forged_model_facts(folder, field, value, expected):
    _edit(folder, lambda m: m["model"].update({field: value}))
    report = _verify(folder)
    assert report.status("model") == "mismatch" and expected in report.detail("model")


def test_forged_weights_verified_flag(folder):
    """A run with unregistered weights that claims they were verified against the registry."""
    def edit(m):
        m["model"]["weights_sha256"]["dlib_face_recognition_resnet_model_v1.dat"] = "a" * 64
        m["model"].update(weights_verified=True, unverified_weights=[])

    _edit(folder, edit)
    report = _verify(folder)
    assert report.status("weights") == "mismatch"
    assert "'weights_verified': False, 'unverified_weights': ['dlib_face_recognition_resnet_model_v1.dat']" in report.detail("weights")


def test_forged_privacy_flag(folder):
    """A folder that exported embeddings but claims it did not (or the reverse) is caught."""
    _edit(folder, lambda m: m["config"]["report"].update(export_embeddings=True))
    report = _verify(folder)
    assert report.status("privacy") == "mismatch" and "report.export_embeddings is True" in report.detail("privacy")
    _edit(folder, lambda m: m["privacy"].update(embeddings_exported=True))
    report = _verify(folder)
    assert report.status("privacy") == "mismatch" and "export warning is absent" in report.detail("privacy")


def test_forged_rate_with_matching_csv_is_recomputed_from_counts(folder):
    """Edit a rate consistently in metrics.json and per_group.csv: the counts give it away."""
    pg = folder / "per_group.csv"
    text = pg.read_text()
    assert ",17,312,13,,0.05448717949," in text
    pg.write_text(text.replace(",17,312,13,,0.05448717949,", ",17,312,13,,0.01448717949,", 1))

    def edit(m):
        r = next(r for r in m["per_group"] if r["errors"] == 17 and r["comparisons"] == 312 and r["metric"] == "FMR")
        r["rate"] = 0.01448717949

    _edit(folder, edit)
    report = _verify(folder)
    assert {"per_group", "per_group.csv"} <= {c.name for c in report.mismatches}
    assert "rate: stored '0.01448717949', recomputed '0.05448717948717949'" in report.detail("per_group")


# ----------------------------------------------------------------------------- malformed folders: one line, exit 2
def _damage(folder: Path, how: str, tmp_path: Path) -> str:
    mj = folder / "metrics.json"
    if how == "missing":
        mj.unlink()
        return "metrics.json' not found"
    if how == "garbled":
        mj.write_text(mj.read_text()[:500])
        return "is not valid JSON (line"
    if how == "not_utf8":
        mj.write_bytes(b'{"schema_version": 1, "run_name": "\xff\xfe"}')
        return "is not UTF-8 text (invalid byte at offset"
    if how == "wrong_type":
        _edit(folder, lambda m: m.update(per_group="all fine"))
        return "per_group is 'all fine' (str); expected a list"
    if how == "wrong_row_type":
        _edit(folder, lambda m: m["per_group"][3].update(comparisons="26"))
        return "per_group.3.comparisons is '26'; expected an integer"
    if how == "nan":
        mj.write_text(mj.read_text().replace('"nonmated_comparisons": 18624', '"nonmated_comparisons": NaN', 1))
        return "the constant NaN (fvbench writes non-finite numbers as null)"
    if how == "huge_float":
        mj.write_text(mj.read_text().replace('"nonmated_comparisons": 18624', '"nonmated_comparisons": 1e999', 1))
        return "overflows to infinity"
    if how == "huge_int":
        mj.write_text(mj.read_text().replace('"nonmated_comparisons": 18624', '"nonmated_comparisons": ' + "9" * 5000, 1))
        return "has more than 16 digits"
    if how == "missing_column":
        pg = folder / "per_group.csv"
        lines = pg.read_text().splitlines()
        i = lines[0].split(",").index("rate")
        pg.write_text("\n".join(",".join(x.split(",")[:i] + x.split(",")[i + 1:]) for x in lines) + "\n")
        return "per_group.csv' lacks column(s)"
    if how == "csv_not_utf8":
        (folder / "eer.csv").write_bytes(b"attribute,group\n\xff\n")
        return "eer.csv' is not UTF-8 text"
    if how == "symlink_outside":
        outside = tmp_path / "elsewhere.json"
        shutil.copy(mj, outside)
        mj.unlink()
        mj.symlink_to(outside)
        return "is a symbolic link to"
    if how == "missing_csv":
        (folder / "differentials.csv").unlink()
        return "differentials.csv' not found"
    if how == "manifest_escape":
        n = len((folder / "files.sha256").read_text().splitlines())
        with open(folder / "files.sha256", "a") as f:
            f.write("0" * 64 + "  ../../../etc/passwd\n")
        return f"files.sha256' line {n + 1} is"
    if how == "figure_symlink_outside":
        outside = tmp_path / "outside.png"
        shutil.copy(folder / "error_rates_face_eth.png", outside)
        (folder / "error_rates_face_eth.png").unlink()
        (folder / "error_rates_face_eth.png").symlink_to(outside)
        return "error_rates_face_eth.png' is a symbolic link to"
    if how == "empty_attributes":
        _edit(folder, lambda m: m["protocol"].update(attributes=[]))
        return "protocol.attributes is []; expected a non-empty list"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["missing", "garbled", "not_utf8", "wrong_type", "wrong_row_type", "nan", "huge_float", "huge_int",
                                 "missing_column", "csv_not_utf8", "symlink_outside", "missing_csv", "empty_attributes",
                                 "manifest_escape", "figure_symlink_outside"])
def test_malformed_folder_is_one_line_and_exit_2(folder, tmp_path, capsys, how):
    expected = _damage(folder, how, tmp_path)
    assert verify_main([str(folder)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"fvbench-verify: cannot verify {folder}: ") and captured.err.count("\n") == 1, captured.err
    assert expected in captured.err, captured.err


def test_malformed_folder_prints_no_traceback_from_the_console_script(folder, tmp_path):
    _damage(folder, "wrong_row_type", tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "bench.verify", str(folder)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


# ----------------------------------------------------------------------------- the published folders verify
@pytest.mark.parametrize("name", ["frl_london_dlib", "frl_london_dlib_sweep", "calibration_frl_london_dlib"])
def test_published_folders_verify(name, capsys):
    path = REPO / "results" / name
    if not path.is_dir():
        pytest.skip(f"results/{name} is not in this checkout")
    assert verify_main([str(path)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "needs scores.parquet" in out  # it says which checks the score table would add


# ----------------------------------------------------------------------------- the design: nothing that can run a name is used
def test_verify_loads_no_hydra_or_omegaconf_and_names_no_importer():
    """Verify never needs Hydra/OmegaConf (instantiate, get_object, interpolation), nor any importer."""
    code = ("import sys; from bench.verify import verify_run; "
            f"verify_run({str(PUBLISHED)!r}, check_figures=False, check_dataset=False); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'hydra', 'omegaconf'}))")
    if not (PUBLISHED / "metrics.json").is_file():
        pytest.skip("results/frl_london_dlib is not in this checkout")
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]
    for name in ("verify.py", "verify_core.py", "verify_other.py"):
        src = (REPO / "bench" / name).read_text()
        for word in ("instantiate(", "get_object(", "OmegaConf.", "import importlib", "__import__(", "eval(", "exec(", "import pickle", "import hydra"):
            assert word not in src, f"bench/{name} uses {word}"


# ----------------------------------------------------------------------------- sweep, calibration and power folders
@pytest.fixture
def sweep(tmp_path) -> Path:
    src = REPO / "results" / "frl_london_dlib_sweep"
    if not (src / "sweep.json").is_file():
        pytest.skip("results/frl_london_dlib_sweep is not in this checkout")
    dst = tmp_path / "sweep"
    shutil.copytree(src, dst)
    return dst


def test_sweep_forged_rate_threshold_and_report(sweep):
    assert verify_run(sweep).ok
    csv = sweep / "sweep.csv"
    text = csv.read_text()
    row = "exposure,3,face_eth,white,FMR=1e-03"
    line = next(ln for ln in text.splitlines() if ln.startswith(row) and ",FNMR," in ln)
    assert ",33,67,67,0.4925373134," in line
    csv.write_text(text.replace(line, line.replace(",33,67,67,0.4925373134,", ",3,67,67,0.4925373134,")))
    report = verify_run(sweep)
    assert report.status("sweep.csv") == "mismatch" and "white/FMR=1e-03/FNMR rate: stored '0.4925373134'" in report.detail("sweep.csv")
    assert report.status("report.md") == "mismatch"  # the report shows 3/67 in the re-rendering, 33/67 as published
    doc = json.loads((sweep / "sweep.json").read_text())
    doc["model"]["licence"] = "public domain"
    doc["thresholds"][1]["k"] = 100
    (sweep / "sweep.json").write_text(json.dumps(doc))
    report = verify_run(sweep)
    assert report.status("model") == "mismatch" and report.status("thresholds") == "mismatch"
    assert "stored N=10100, k=100; the counts give N=10100, k=10" in report.detail("thresholds")


def test_sweep_swapped_figure(sweep):
    a, b = sweep / "sweep_exposure_face_eth.png", sweep / "sweep_resolution_face_eth.png"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    report = verify_run(sweep)
    assert {c.name for c in report.mismatches} == {"figures", "report.html"}  # the page embeds the figures (issue 15)
    assert "sweep_exposure_face_eth.png: differs" in report.detail("figures")


def test_calibration_forged_counts_and_map(tmp_path):
    src = REPO / "results" / "calibration_frl_london_dlib"
    run = REPO / "results" / "frl_london_dlib"
    if not (src / "calibration.json").is_file() or not (run / "metrics.json").is_file():
        pytest.skip("published calibration / run folders are not in this checkout")
    shutil.copytree(src, tmp_path / "calibration")
    shutil.copytree(run, tmp_path / "frl_london_dlib")
    folder = tmp_path / "calibration"
    assert verify_run(folder).status("source run") == "ok"
    doc = json.loads((folder / "calibration.json").read_text())
    doc["groups"]["black"]["n_nonmated"] = 3120
    doc["thresholds"][0]["generator_threshold"] = 0.9
    doc["source"]["run_name"] = "../../etc"
    (folder / "calibration.json").write_text(json.dumps(doc))
    report = verify_run(folder)
    assert report.status("calibration") == "mismatch" and "the score map gives 0.5364" in report.detail("calibration")
    assert report.status("source run") == "mismatch" and "not a plain folder name" in report.detail("source run")
    doc["source"]["run_name"] = "frl_london_dlib"
    (folder / "calibration.json").write_text(json.dumps(doc))
    assert "group black n_nonmated is 3120, the source run's FMR rows give [312]" in verify_run(folder).detail("source run")


def test_power_folder_required_subjects_recomputed(tmp_path):
    """A power folder: the required-subjects table must follow from power.csv (bench.synthetic.power.required_subjects)."""
    import pandas as pd

    from bench.synthetic.power import required_subjects

    folder = tmp_path / "power"
    folder.mkdir()
    curve = pd.DataFrame({"subjects": [10, 20, 40, 10, 20, 40], "images_per_subject": [2, 2, 2, 4, 4, 4],
                          "power_FMR": [0.2, 0.5, 0.9, 0.3, 0.85, 0.99], "power_FNMR": [0.1, 0.2, 0.4, 0.1, 0.3, 0.6]})
    curve.to_csv(folder / "power.csv", index=False)
    need = required_subjects(curve, 0.8)
    doc = {"target_power": 0.8, "required": json.loads(need.to_json(orient="records"))}
    (folder / "power.json").write_text(json.dumps(doc))
    report = verify_run(folder)
    assert report.kind == "power" and report.status("power") == "ok", report.to_text()
    doc["required"][0]["subjects_needed"] = 10  # FMR at 2 images/subject: first power >= 0.8 is at 40
    (folder / "power.json").write_text(json.dumps(doc))
    report = verify_run(folder)
    assert report.status("power") == "mismatch" and "subjects_needed: stored '10.0', recomputed '40.0'" in report.detail("power")
