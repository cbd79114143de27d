"""Manifest validation: errors name the column / id / path and what was expected."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.data.manifest import MISSING_LABEL, Manifest
from bench.errors import DataError


def _table(n=3, **extra):
    t = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(n)],
            "path": [f"img{k}.jpg" for k in range(n)],
            "subject_id": ["s0", "s0", "s1"][:n],
            "label_source": "self-reported",
            "eth": ["a", None, ""][:n],
        }
    )
    for k, v in extra.items():
        t[k] = v
    return t


def _files(tmp_path, n=3):
    for k in range(n):
        (tmp_path / f"img{k}.jpg").write_bytes(b"x")


def test_valid_manifest_and_missing_labels_form_their_own_group(tmp_path):
    _files(tmp_path)
    m = Manifest(_table(), tmp_path, ("eth",), "t")
    labels = m.group_labels()
    assert labels["eth"].tolist() == ["a", MISSING_LABEL, MISSING_LABEL]
    assert m.summary()["subjects_per_group"]["eth"] == {"a": 1, MISSING_LABEL: 2}


def test_missing_column_is_named(tmp_path):
    _files(tmp_path)
    with pytest.raises(DataError, match=r"missing column\(s\) \['eth'\]"):
        Manifest(_table().drop(columns="eth"), tmp_path, ("eth",), "t")


def test_duplicate_image_id_is_named(tmp_path):
    _files(tmp_path)
    t = _table()
    t.loc[2, "image_id"] = "i0"
    with pytest.raises(DataError, match=r"duplicate image_id value\(s\) \['i0'\]"):
        Manifest(t, tmp_path, ("eth",), "t")


@pytest.mark.parametrize("bad,msg", [("../outside.jpg", "escapes the dataset root"), ("/etc/passwd", "absolute path"), ("nope.jpg", "file not found")])
def test_bad_paths_are_named(tmp_path, bad, msg):
    root = tmp_path / "root"
    root.mkdir()
    _files(root)
    (tmp_path / "outside.jpg").write_bytes(b"x")
    t = _table()
    t.loc[1, "path"] = bad
    with pytest.raises(DataError, match=msg) as err:
        Manifest(t, root, ("eth",), "t")
    assert "'i1'" in str(err.value)


def test_intersection_labels_and_unknown_attribute(tmp_path):
    _files(tmp_path)
    t = _table(gender=["f", "m", "f"])
    m = Manifest(t, tmp_path, ("eth", "gender"), "t")
    assert m.group_labels(["eth&gender"])["eth&gender"].tolist() == ["a&f", "missing&m", "missing&f"]
    with pytest.raises(DataError, match="no attribute"):
        m.group_labels(["age"])


def test_content_hash_ignores_row_order_but_not_labels(tmp_path):
    _files(tmp_path)
    t = _table()
    h = Manifest(t, tmp_path, ("eth",), "t").content_hash()
    assert Manifest(t.iloc[::-1].reset_index(drop=True), tmp_path, ("eth",), "t").content_hash() == h
    t2 = t.copy()
    t2.loc[0, "eth"] = "b"
    assert Manifest(t2, tmp_path, ("eth",), "t").content_hash() != h
