"""Hostile manifests (issue #6): every bad row is refused with a message naming it, and
awkward-but-valid data (one-image subjects, missing labels, groups without mated pairs,
Unicode paths) runs through the pipeline without dropping anyone from the counts.

The pipeline cases use a fake embedder (no model): each image file holds its subject's
number, and the embedding is that subject's basis vector plus a small per-image offset,
so mated scores are high and non-mated ones near 0.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.acquisition.base import Acquisition
from bench.data.manifest import MISSING_LABEL, REQUIRED_COLUMNS, Manifest
from bench.errors import DataError
from bench.run import Protocol, evaluate

DIM = 16


# ----------------------------------------------------------------------------- fake model
class _FakeAligner:
    def acquire_file(self, path: Path) -> Acquisition:
        data = Path(path).read_bytes()
        return Acquisition(chip=np.frombuffer(data, dtype=np.uint8).copy(), fta_reason=None, n_faces=1)


class FakeEmbedder:
    """Subject k -> e_(k mod DIM) + 0.05 * per-image offset (cosine scores)."""

    name = "fake"
    metric = "cosine"
    embedding_dim = DIM
    nominal_threshold = None
    weights_sha256: dict = {}

    def __init__(self) -> None:
        self.aligner = _FakeAligner()

    def settings(self) -> dict:
        return {"fake": 1}

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(chips), DIM), np.float32)
        for i, chip in enumerate(chips):
            info = json.loads(bytes(chip).decode("utf-8"))
            rng = np.random.default_rng(int(hashlib.sha256(bytes(chip)).hexdigest()[:8], 16))
            v = np.zeros(DIM)
            v[info["subject"] % DIM] = 1.0
            out[i] = v + 0.05 * rng.standard_normal(DIM)
        return out


def _write_images(root: Path, rows: list[dict]) -> None:
    for k, r in enumerate(rows):
        p = root / r["path"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"subject": r.pop("_n"), "image": k}), encoding="utf-8")


def _dataset(root: Path, spec: list[tuple[str, int, object]]) -> Manifest:
    """spec: (subject_id, n_images, label) -> files under root and a Manifest with attribute 'grp'."""
    rows = []
    for n, (subject, k_images, label) in enumerate(spec):
        for k in range(k_images):
            rows.append({"image_id": f"{subject}_{k}", "path": f"{subject}/{k}.img", "subject_id": subject, "label_source": "annotated", "grp": label, "_n": n})
    _write_images(root, rows)
    return Manifest(pd.DataFrame(rows), root, ("grp",), "hostile")


def _evaluate(manifest: Manifest, tmp_path: Path, **protocol):
    return evaluate(manifest, FakeEmbedder(), Protocol(target_fmrs=[0.1], use_nominal_threshold=False, **protocol), cache_dir=tmp_path / "cache", progress=False)


# ----------------------------------------------------------------------------- refusals
def _table(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(n)],
            "path": [f"img{k}.jpg" for k in range(n)],
            "subject_id": [f"s{k // 2}" for k in range(n)],
            "label_source": "self-reported",
            "eth": ["a"] * n,
        }
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    for k in range(3):
        (r / f"img{k}.jpg").write_bytes(b"x")
    (tmp_path / "outside.jpg").write_bytes(b"x")
    return r


@pytest.mark.parametrize("column", [*REQUIRED_COLUMNS, "eth"])
def test_missing_column_is_named_with_the_expected_columns(root, column):
    with pytest.raises(DataError, match=rf"missing column\(s\) \['{column}'\]; expected at least \['image_id', 'path', 'subject_id', 'label_source', 'eth'\]"):
        Manifest(_table().drop(columns=column), root, ("eth",), "t")


def test_duplicate_image_id_is_named(root):
    t = _table()
    t.loc[2, "image_id"] = "i1"
    with pytest.raises(DataError, match=r"duplicate image_id value\(s\) \['i1'\]; each image needs a unique id"):
        Manifest(t, root, ("eth",), "t")


@pytest.mark.parametrize("column", ["image_id", "subject_id", "path"])
@pytest.mark.parametrize("blank", [None, "", "   "])
def test_empty_ids_and_paths_name_the_row(root, column, blank):
    t = _table()
    t[column] = t[column].astype(object)
    t.loc[1, column] = blank
    with pytest.raises(DataError, match=rf"empty '{column}' in row\(s\) \[1\]"):
        Manifest(t, root, ("eth",), "t")


@pytest.mark.parametrize("bad", ["../outside.jpg", "sub/../../outside.jpg", "./../root/../outside.jpg"])
def test_path_escaping_the_root_is_refused_and_named(root, bad):
    t = _table()
    t.loc[1, "path"] = bad
    with pytest.raises(DataError, match=rf"image 'i1' path '{bad}' escapes the dataset root"):
        Manifest(t, root, ("eth",), "t")


def test_symlink_leading_outside_the_root_is_refused(root, tmp_path):
    (root / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    t = _table()
    t.loc[0, "path"] = "link.jpg"
    with pytest.raises(DataError, match=r"image 'i0' path 'link.jpg' escapes the dataset root"):
        Manifest(t, root, ("eth",), "t")


def test_absolute_path_is_refused_even_inside_the_root(root):
    t = _table()
    t.loc[2, "path"] = str(root / "img2.jpg")
    with pytest.raises(DataError, match=r"image 'i2' has absolute path .*; paths must be relative to the dataset root"):
        Manifest(t, root, ("eth",), "t")


def test_missing_file_is_named(root):
    t = _table()
    t.loc[0, "path"] = "nope/img9.jpg"
    with pytest.raises(DataError, match=r"image 'i0' file not found: '.*nope/img9.jpg'"):
        Manifest(t, root, ("eth",), "t")


def test_path_escaping_the_root_is_refused_without_file_checks(root):
    t = _table()
    t.loc[1, "path"] = "../outside.jpg"
    with pytest.raises(DataError, match="escapes the dataset root"):
        Manifest(t, root, ("eth",), "t", check_files=False)


# ----------------------------------------------------------------------------- awkward but valid data
def test_unicode_and_spaces_in_paths_are_read(tmp_path):
    root = tmp_path / "données brutes"
    spec = [("José Ñúñez", 2, "a"), ("顔 認証", 2, "a"), ("Zoë O'Brien", 2, "b"), ("x", 2, "b")]
    rows = []
    names = ["prénom nom/ph oto 1.jpg", "prénom nom/ph oto 2.jpg", "日本/顔 1.png", "日本/顔 2.png", "a b/ü.jpg", "a b/ß.jpg", "x/1 .jpg", "x/ 2.jpg"]
    for n, (subject, k_images, label) in enumerate(spec):
        for k in range(k_images):
            rows.append({"image_id": f"{subject}#{k}", "path": names[len(rows)], "subject_id": subject, "label_source": "annotated", "grp": label, "_n": n})
    _write_images(root, rows)
    m = Manifest(pd.DataFrame(rows), root, ("grp",), "unicode")
    res = _evaluate(m, tmp_path)
    assert all(r is None for r in res.fta_reason)
    assert res.dataset_info["images_acquired"] == 8
    assert int(res.comparisons["mated"].sum()) == 4
    assert set(res.comparisons["image_a"].astype(str)) | set(res.comparisons["image_b"].astype(str)) == {r["image_id"] for r in rows}


def test_subject_with_one_image_has_no_mated_pair_but_is_in_nonmated(tmp_path):
    spec = [("s0", 2, "a"), ("s1", 2, "a"), ("s2", 2, "a"), ("loner", 1, "a"), ("s4", 3, "b"), ("s5", 2, "b")]
    res = _evaluate(_dataset(tmp_path / "root", spec), tmp_path)
    comp = res.comparisons
    n = sum(k for _, k, _ in spec)
    mated_expected = sum(math.comb(k, 2) for _, k, _ in spec)
    assert int(comp["mated"].sum()) == mated_expected == 1 + 1 + 1 + 0 + 3 + 1
    assert int((~comp["mated"]).sum()) == math.comb(n, 2) - mated_expected
    lone = (comp["subject_a"].astype(str) == "loner") | (comp["subject_b"].astype(str) == "loner")
    assert int(lone.sum()) == n - 1 and not comp.loc[lone, "mated"].any()
    pg = res.per_group.set_index(["attribute", "group", "threshold_name", "metric"])
    # group a: FNMR over 3 mated pairs (loner has none) ...
    assert pg.loc[("grp", "a", "FMR=1e-01", "FNMR"), "comparisons"] == 3
    # ... FMR over all different-subject pairs inside a: C(7, 2) - 3 = 18, loner included
    assert pg.loc[("grp", "a", "FMR=1e-01", "FMR"), "comparisons"] == math.comb(7, 2) - 3
    assert pg.loc[("grp", "a", "FMR=1e-01", "FMR"), "subjects"] == 4
    assert pg.loc[("grp", "a", "", "FTA"), "subjects"] == 4


def test_missing_and_unknown_labels_form_reported_groups_and_stay_in_every_count(tmp_path):
    spec = [
        ("s0", 2, "a"), ("s1", 2, "a"),
        ("s2", 2, np.nan), ("s3", 2, None), ("s4", 2, ""), ("s5", 2, "   "),
        ("s6", 2, "unknown"), ("s7", 2, "unknown"),
    ]
    m = _dataset(tmp_path / "root", spec)
    assert m.group_labels()["grp"].tolist() == ["a"] * 4 + [MISSING_LABEL] * 8 + ["unknown"] * 4
    res = _evaluate(m, tmp_path)
    pg = res.per_group
    fta = pg[pg["metric"] == "FTA"].set_index("group")
    assert fta.loc["(all)", "comparisons"] == 16
    assert fta.drop(index="(all)")["comparisons"].sum() == 16  # nobody dropped
    assert fta.loc[MISSING_LABEL, "comparisons"] == 8 and fta.loc[MISSING_LABEL, "subjects"] == 4
    assert fta.loc["unknown", "comparisons"] == 4
    fnmr = pg[(pg["metric"] == "FNMR")].set_index("group")
    assert fnmr.loc[MISSING_LABEL, "comparisons"] == 4
    assert fnmr.drop(index="(all)")["comparisons"].sum() == fnmr.loc["(all)", "comparisons"] == 8
    assert MISSING_LABEL in set(res.eer["group"]) and "unknown" in set(res.eer["group"])
    cross = res.cross["grp"]
    upper = cross[cross["group_a"] <= cross["group_b"]]
    assert upper["comparisons"].sum() == res.dataset_info["nonmated_comparisons"] == math.comb(16, 2) - 8
    assert res.dataset_info["subjects_per_group"]["grp"] == {"a": 2, MISSING_LABEL: 4, "unknown": 2}


def test_group_with_zero_mated_pairs_is_reported_not_dropped(tmp_path):
    from bench.report.writer import write_results

    spec = [("s0", 2, "a"), ("s1", 2, "a"), ("s2", 2, "a"), ("z0", 1, "z"), ("z1", 1, "z"), ("z2", 1, "z")]
    res = _evaluate(_dataset(tmp_path / "root", spec), tmp_path)
    fnmr_z = res.per_group[(res.per_group["group"] == "z") & (res.per_group["metric"] == "FNMR")].iloc[0]
    assert fnmr_z["comparisons"] == 0 and fnmr_z["flag"] == "no_comparisons" and math.isnan(fnmr_z["rate"])
    fmr_z = res.per_group[(res.per_group["group"] == "z") & (res.per_group["metric"] == "FMR")].iloc[0]
    assert fmr_z["comparisons"] == 3  # the three single-image subjects of z against each other
    eer_z = res.eer.set_index("group").loc["z"]
    assert eer_z["n_mated"] == 0 and eer_z["n_nonmated"] == 3 and math.isnan(eer_z["eer"])
    out = write_results(res, tmp_path / "out", run_name="t", config={}, min_group_subjects=1, figures=False)
    metrics = json.loads((out / "metrics.json").read_text())  # strict JSON: NaN written as null
    row = next(r for r in metrics["per_group"] if r["group"] == "z" and r["metric"] == "FNMR")
    assert row["comparisons"] == 0 and row["rate"] is None
    csv = pd.read_csv(out / "per_group.csv", keep_default_na=False, na_values=[""])
    assert "z" in set(csv["group"])


# ----------------------------------------------------------------------------- properties (hypothesis)
# control characters, the separators '&' ';' and the reserved '(all)' are refused at load (tests/test_labels_and_warnings.py)
_label = st.one_of(st.none(), st.just(""), st.just("  "), st.just(np.nan),
                   st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="&;"), min_size=1, max_size=6)
                   .filter(lambda s: s.strip() != "(all)"))
_ident = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8).filter(lambda s: s.strip() != "")


@st.composite
def _tables(draw):
    n = draw(st.integers(1, 12))
    ids = draw(st.lists(_ident, min_size=n, max_size=n))
    subjects = draw(st.lists(st.sampled_from(["s0", "s1", "s2", "s 3", "ß4"]), min_size=n, max_size=n))
    labels = draw(st.lists(_label, min_size=n, max_size=n))
    labels2 = draw(st.lists(_label, min_size=n, max_size=n))
    return pd.DataFrame({"image_id": ids, "path": [f"p{k}" for k in range(n)], "subject_id": subjects, "label_source": "annotated", "x": labels, "y": labels2})


def _clean(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == "":
        return MISSING_LABEL
    return str(v).strip()


@settings(max_examples=150, deadline=None)
@given(_tables())
def test_property_manifest_parsing_never_drops_or_invents_rows(table):
    unique = table["image_id"].is_unique
    if not unique:
        with pytest.raises(DataError, match="duplicate image_id"):
            Manifest(table, None, ("x", "y"), "p")
        return
    m = Manifest(table, None, ("x", "y"), "p")
    labels = m.group_labels(["x", "y", "x&y"])
    assert len(labels) == len(table) and not labels.isna().any().any()
    assert labels["x"].tolist() == [_clean(v) for v in table["x"]]
    assert labels["x&y"].tolist() == [f"{_clean(a)}&{_clean(b)}" for a, b in zip(table["x"], table["y"])]
    summary = m.summary()
    assert summary["images"] == len(table) and summary["subjects"] == table["subject_id"].nunique()
    # every subject is counted in at least one group of every attribute, nobody vanishes
    for attr in ("x", "y"):
        assert sum(summary["subjects_per_group"][attr].values()) >= summary["subjects"]
    # the content hash identifies the content, not the row order
    shuffled = Manifest(table.iloc[::-1].reset_index(drop=True), None, ("x", "y"), "p")
    assert shuffled.content_hash() == m.content_hash()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["..", ".", "d", "d d", "ü", "f.jpg", "g.jpg"]), min_size=1, max_size=6))
def test_property_path_containment_matches_a_normpath_oracle(tmp_path, parts):
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True, exist_ok=True)
    (root / "d d").mkdir(exist_ok=True)
    for f in ("f.jpg", "d/f.jpg", "d d/g.jpg"):
        (root / f).write_bytes(b"x")
    (tmp_path / "g.jpg").write_bytes(b"x")
    rel = "/".join(parts)
    norm = os.path.normpath(rel)
    t = pd.DataFrame({"image_id": ["a"], "path": [rel], "subject_id": ["s"], "label_source": ["annotated"]})
    if norm == ".." or norm.startswith("../"):
        with pytest.raises(DataError, match="escapes the dataset root"):
            Manifest(t, root, (), "p")
    elif not (root / norm).is_file():
        with pytest.raises(DataError, match="file not found"):
            Manifest(t, root, (), "p")
    else:
        assert Manifest(t, root, (), "p").image_path(0).resolve() == (root / norm).resolve()


def test_nonmated_count_is_all_cross_subject_pairs(tmp_path):
    """Pairing oracle on a small manifest: every unordered cross-subject pair, once."""
    spec = [("s0", 3, "a"), ("s1", 1, "a"), ("s2", 2, "b")]
    res = _evaluate(_dataset(tmp_path / "root", spec), tmp_path)
    ids = [f"{s}_{k}" for s, n, _ in spec for k in range(n)]
    subject = {i: i.split("_")[0] for i in ids}
    expected = {frozenset(p) for p in combinations(ids, 2) if subject[p[0]] != subject[p[1]]}
    comp = res.comparisons[~res.comparisons["mated"]]
    got = {frozenset((a, b)) for a, b in zip(comp["image_a"].astype(str), comp["image_b"].astype(str))}
    assert got == expected and len(comp) == len(expected) == 6 * 5 // 2 - 4
