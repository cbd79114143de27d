"""Bring your own data without editing the package (issue #10): ``dataset=csv`` and
``dataset=folder`` build a manifest from a user's table or folders, with column mapping,
numeric binning (age bands), category renaming/collapsing and a missing-label policy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from bench.cli import instantiate_bench
from bench.config_schema import validate_config
from bench.data.manifest import MISSING_LABEL
from bench.data.user_dataset import bin_labels, load_csv_manifest, load_folder_dataset
from bench.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)


@pytest.fixture()
def csv_set(tmp_path):
    """6 subjects x 2 images; a user's own column names; one subject without labels."""
    rows = []
    ages = {"p1": "17", "p2": "18", "p3": "29", "p4": "30", "p5": "61", "p6": ""}
    sexes = {"p1": "F", "p2": "female", "p3": "M", "p4": "m", "p5": "Male", "p6": ""}
    for i, s in enumerate(ages):
        for k in range(2):
            _png(tmp_path / "imgs" / f"{s}_{k}.png", 10 * i + k)
            rows.append({"file": f"imgs/{s}_{k}.png", "person": s, "sex": sexes[s], "age_years": ages[s]})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path


MAPPING = dict(columns={"path": "file", "subject_id": "person"}, attributes={"gender": "sex", "age": "age_years"})


def test_csv_column_mapping_binning_renaming(csv_set):
    m = load_csv_manifest(
        csv_set / "manifest.csv", name="mine", **MAPPING, bins={"age": [18, 30, 45, 60]},
        rename={"gender": {"F": "female", "M": "male", "m": "male", "Male": "male"}}, label_source="annotated",
    )
    assert m.name == "mine" and m.attributes == ("gender", "age") and len(m.table) == 12
    by_subject = m.table.drop_duplicates("subject_id").set_index("subject_id")
    # half-open bands a <= x < b: 17 -> <18, 18 -> 18-29, 29 -> 18-29, 30 -> 30-44, 61 -> 60+
    assert by_subject["age"].fillna("NA").to_dict() == {"p1": "<18", "p2": "18-29", "p3": "18-29", "p4": "30-44", "p5": "60+", "p6": "NA"}
    # four spellings collapsed onto two categories
    assert by_subject["gender"].fillna("NA").to_dict() == {"p1": "female", "p2": "female", "p3": "male", "p4": "male", "p5": "male", "p6": "NA"}
    assert set(m.table["label_source"]) == {"annotated"}
    assert m.table["image_id"].iloc[0] == "imgs/p1_0.png"  # default image id: the path
    assert m.group_labels(["age"])["age"].value_counts()[MISSING_LABEL] == 2  # keep: own group


def test_parquet_manifest_equals_csv(csv_set):
    pd.read_csv(csv_set / "manifest.csv", dtype=str).to_parquet(csv_set / "manifest.parquet")
    a = load_csv_manifest(csv_set / "manifest.csv", **MAPPING)
    b = load_csv_manifest(csv_set / "manifest.parquet", **MAPPING)
    assert a.content_hash() == b.content_hash()


def test_parquet_with_numeric_columns(csv_set):
    df = pd.read_csv(csv_set / "manifest.csv", dtype=str)
    df["age_years"] = pd.to_numeric(df["age_years"])  # float with NaN, as a real Parquet file would hold
    df.to_parquet(csv_set / "num.parquet")
    m = load_csv_manifest(csv_set / "num.parquet", **MAPPING, bins={"age": [18, 30, 45, 60]})
    assert m.table.drop_duplicates("subject_id")["age"].fillna("NA").tolist() == ["<18", "18-29", "18-29", "30-44", "60+", "NA"]


@pytest.mark.parametrize("policy,images", [("keep", 12), ("drop", 10)])
def test_missing_label_policy(csv_set, policy, images):
    m = load_csv_manifest(csv_set / "manifest.csv", **MAPPING, missing=policy)
    assert len(m.table) == images


def test_missing_label_policy_error_names_rows(csv_set):
    with pytest.raises(DataError, match=r"2 image\(s\) lack a label \(dataset.missing: error\); first rows \[10, 11\]"):
        load_csv_manifest(csv_set / "manifest.csv", **MAPPING, missing="error")


def test_bins_non_integer_edges_use_interval_labels():
    out = bin_labels(pd.Series(["0.5", "1.5", "2.5", ""]), [1.0, 2.0], attribute="x")
    assert out.fillna("NA").tolist() == ["<1", "1-1", "2+", "NA"] or out.fillna("NA").tolist() == ["<1", "[1, 2)", "2+", "NA"]
    out = bin_labels(pd.Series(["0.25", "1.5"]), [0.5, 1.75], attribute="x")
    assert out.tolist() == ["<0.5", "[0.5, 1.75)"]


@pytest.mark.parametrize(
    "kwargs,err,msg",
    [
        (dict(columns={"path": "fille", "subject_id": "person"}, attributes={"g": "sex"}), ConfigError, r"column 'fille' not in manifest .*; did you mean 'file'\?"),
        (dict(columns={"path": "file", "subject_id": "person"}, attributes={"g": "sexx"}), ConfigError, r"dataset.attributes.g: column 'sexx' .*did you mean 'sex'\?"),
        (dict(columns={"paht": "file"}, attributes={"g": "sex"}), ConfigError, r"dataset.columns: unknown key 'paht'; did you mean 'path'\?"),
        (dict(**MAPPING, bins={"agee": [1, 2]}), ConfigError, r"dataset.bins.agee: 'agee' is not a configured attribute; did you mean 'age'\?"),
        (dict(**MAPPING, bins={"age": [30, 18]}), ConfigError, r"edges must be finite and strictly increasing"),
        (dict(**MAPPING, bins={"gender": [1, 2]}), DataError, r"attribute 'gender': value 'F' in row 0 is not a number"),
        (dict(**MAPPING, label_source="predicted"), ConfigError, r"'predicted' is not a recorded way of obtaining labels.*never uses predicted"),
        (dict(**MAPPING, missing="ignore"), ConfigError, r"dataset.missing must be one of \['keep', 'drop', 'error'\]"),
        (dict(columns=MAPPING["columns"], attributes={}), ConfigError, r"dataset.attributes: map at least one attribute"),
    ],
)
def test_csv_mistakes_are_named(csv_set, kwargs, err, msg):
    with pytest.raises(err, match=msg):
        load_csv_manifest(csv_set / "manifest.csv", **kwargs)


def test_csv_paths_stay_inside_the_root(csv_set):
    df = pd.read_csv(csv_set / "manifest.csv", dtype=str)
    df.loc[0, "file"] = "../outside.png"
    df.to_csv(csv_set / "evil.csv", index=False)
    with pytest.raises(DataError, match=r"path '../outside.png' escapes the dataset root"):
        load_csv_manifest(csv_set / "evil.csv", **MAPPING)


def test_unreadable_or_unknown_table(tmp_path):
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"expected a .csv, .tsv, .parquet or .pq file, got '.xlsx'"):
        load_csv_manifest(tmp_path / "m.xlsx", attributes={"g": "g"})
    with pytest.raises(DataError, match=r"dataset.manifest file not found"):
        load_csv_manifest(tmp_path / "none.csv", attributes={"g": "g"})


# ----------------------------------------------------------------------------- folder
@pytest.fixture()
def folder_set(tmp_path):
    for i, s in enumerate(["s1", "s2", "s3"]):
        for k in range(2):
            _png(tmp_path / "images" / s / f"{k}.png", 10 * i + k)
    (tmp_path / "images" / "s1" / "notes.txt").write_text("not an image")
    (tmp_path / "images" / ".hidden").mkdir()
    pd.DataFrame({"id": ["s1", "s2", "s4"], "eth": ["a", "b", "c"]}).to_csv(tmp_path / "subjects.csv", index=False)
    return tmp_path


def test_folder_dataset(folder_set):
    m = load_folder_dataset(folder_set / "images", folder_set / "subjects.csv", columns={"subject_id": "id"}, attributes={"ethnicity": "eth"})
    assert list(m.table["image_id"]) == ["s1/0", "s1/1", "s2/0", "s2/1", "s3/0", "s3/1"]
    assert m.table["ethnicity"].fillna("NA").tolist() == ["a", "a", "b", "b", "NA", "NA"]  # s3 has no table row
    assert m.name == "folder"
    dropped = load_folder_dataset(folder_set / "images", folder_set / "subjects.csv", columns={"subject_id": "id"},
                                  attributes={"ethnicity": "eth"}, missing="drop")
    assert len(dropped.table) == 4


def test_folder_duplicate_subject_rows_refused(folder_set):
    pd.DataFrame({"id": ["s1", "s1"], "eth": ["a", "b"]}).to_csv(folder_set / "dup.csv", index=False)
    with pytest.raises(DataError, match=r"subject\(s\) \['s1'\] listed more than once"):
        load_folder_dataset(folder_set / "images", folder_set / "dup.csv", columns={"subject_id": "id"}, attributes={"e": "eth"})


# ----------------------------------------------------------------------------- through the configs
def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="fvbench", overrides=overrides)


def test_csv_config_builds_the_manifest(csv_set):
    cfg = _compose(["dataset=csv", "model=dlib_resnet", f"dataset.manifest={csv_set / 'manifest.csv'}", "dataset.name=mine",
                    "dataset.columns.path=file", "dataset.columns.subject_id=person", "dataset.attributes={gender: sex, age: age_years}",
                    "dataset.bins={age: [18, 30, 45, 60]}"])
    validate_config(cfg)
    m = instantiate_bench(cfg.dataset.loader)
    assert m.name == "mine" and set(m.table["age"].dropna()) == {"<18", "18-29", "30-44", "60+"}
    assert cfg.run_name == "mine__dlib_resnet"


def test_folder_config_builds_the_manifest(folder_set):
    cfg = _compose(["dataset=folder", "model=dlib_resnet", f"dataset.root={folder_set / 'images'}", f"dataset.subjects={folder_set / 'subjects.csv'}",
                    "dataset.columns.subject_id=id", "dataset.attributes={ethnicity: eth}"])
    validate_config(cfg)
    assert len(instantiate_bench(cfg.dataset.loader).table) == 6


def test_csv_config_without_manifest_is_one_line():
    cfg = _compose(["dataset=csv", "model=dlib_resnet"])
    with pytest.raises(ConfigError, match=r"^dataset.manifest is required and not set: your CSV or Parquet table"):
        validate_config(cfg)


def test_csv_config_typo_in_a_mapping_key():
    cfg = _compose(["dataset=csv", "model=dlib_resnet", "dataset.manifest=x.csv", "+dataset.bin={age: [1]}"])
    with pytest.raises(ConfigError, match=r"unknown config key 'dataset.bin'; did you mean 'bins'\?"):
        validate_config(cfg)


# ----------------------------------------------------------------------------- the London images in place
def _london_csv(london: Path, out: Path, subjects: int | None = None) -> Path:
    info = pd.read_csv(london / "london_info.csv", dtype=str)
    rows = []
    for view, code in (("neutral_front", "03"), ("smiling_front", "08")):
        for f in sorted((london / view).glob("*.jpg")):
            rows.append({"image": f"{view}/{f.name}", "person": f.stem.split("_")[0]})
    df = pd.DataFrame(rows).merge(info.rename(columns={"face_id": "person"}), on="person", how="left")
    if subjects:
        keep = sorted(df["person"].unique())[:subjects]
        df = df[df["person"].isin(keep)]
    path = out / "london_manifest.csv"
    df.to_csv(path, index=False)
    return path


def test_csv_reproduces_the_builtin_london_labels(london, tmp_path):
    """The same images and labels through dataset=csv as through the built-in loader."""
    from bench.data.frl_london import load_frl_london

    path = _london_csv(london, tmp_path)
    mine = load_csv_manifest(path, root=london, columns={"path": "image", "subject_id": "person"},
                             attributes={"face_eth": "face_eth", "face_gender": "face_gender"})
    ref = load_frl_london(london)
    a = mine.table.set_index("path")[["subject_id", "face_eth", "face_gender"]].sort_index()
    b = ref.table.set_index("path")[["subject_id", "face_eth", "face_gender"]].sort_index()
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert len(a) == 204


@pytest.mark.slow
def test_csv_end_to_end_on_london_images_with_age_bands(london, tmp_path):
    """A user's CSV pointing at images in place, age banded: a full run, per-group rates by age band."""
    path = _london_csv(london, tmp_path, subjects=30)
    cmd = [sys.executable, "-m", "bench", "dataset=csv", "model=dlib_resnet", f"dataset.manifest={path}", f"dataset.root={london}",
           "dataset.name=london_csv", "dataset.columns.path=image", "dataset.columns.subject_id=person",
           "dataset.attributes={gender: face_gender, age: face_age}", "dataset.bins={age: [18, 30, 45]}",
           "protocol.target_fmrs=[1e-2]", "++protocol.bootstrap_replicates=50", "report.figures=false", "progress=false",
           f"paths.results_dir={tmp_path / 'r'}", f"paths.cache_dir={tmp_path / 'c'}", f"hydra.run.dir={tmp_path / 'h'}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((tmp_path / "r" / "london_csv__dlib_resnet" / "metrics.json").read_text())
    assert m["dataset"]["images"] == 60 and m["dataset"]["subjects"] == 30
    groups = {r["group"] for r in m["per_group"] if r["attribute"] == "age"}
    assert {"18-29", "30-44"} <= groups
    fnmr = [r for r in m["per_group"] if r["attribute"] == "gender" and r["metric"] == "FNMR" and r["threshold_name"] == "nominal"]
    assert sum(r["comparisons"] for r in fnmr if r["group"] != "(all)") == 30  # one mated comparison per subject


def test_readme_worked_example_runs_as_written(tmp_path, monkeypatch):
    """The README's "Bring your own data" example, copied as a user would: its CSV and its
    config file, composed through a user config folder (hydra.searchpath), give the manifest."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Bring your own data", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```")
    csv_block = blocks[1].strip().splitlines()
    yaml_block = blocks[3].split("\n", 1)[1]
    header = csv_block.index(next(line for line in csv_block if line.startswith("file,")))
    rows = csv_block[header:]
    (tmp_path / "my_set").mkdir()
    (tmp_path / "my_set" / "manifest.csv").write_text("\n".join(rows) + "\n")
    for line in rows[1:]:
        _png(tmp_path / "my_set" / line.split(",")[0], len(line))
    (tmp_path / "user_configs" / "dataset").mkdir(parents=True)
    (tmp_path / "user_configs" / "dataset" / "my_set.yaml").write_text(yaml_block)
    monkeypatch.chdir(tmp_path)
    cfg = _compose(["dataset=my_set", "model=dlib_resnet", f"hydra.searchpath=[file://{tmp_path / 'user_configs'}]"])
    validate_config(cfg)
    m = instantiate_bench(cfg.dataset.loader)
    assert m.name == "my_set" and m.attributes == ("gender", "age")
    assert m.table.set_index("image_id").loc["photos/ann_1.jpg", "gender"] == "female"
    assert m.table.set_index("image_id").loc["photos/ann_1.jpg", "age"] == "18-29"
    assert m.table.set_index("image_id").loc["photos/bo_1.jpg", "age"] == "45-59"
    assert set(m.table["label_source"]) == {"self-reported"}
