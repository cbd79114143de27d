"""Hostile labels and dataset warnings (issue #9, "Privacy of published tables" and
"Warnings a careful user needs").

Scenarios: labels starting with ``=``, ``+``, ``-``, ``@`` are written so a spreadsheet
does not run them (OWASP "CSV Injection": a leading apostrophe); a label equal to the
reserved ``(all)`` (a crash before), or containing the intersection separator ``&`` or the
list separator ``;``, and an attribute name with ``&``, are refused with one line; a NUL
byte (or any control character) in a manifest path is refused with one line (a raw
``ValueError: embedded null byte`` before); the same image file under two subject ids and
one subject supplying most of a group's mated comparisons are warned about.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.data.manifest import Manifest, warn_same_image_under_several_subjects
from bench.errors import DataError, DatasetWarning
from bench.report.export import spreadsheet_safe


def _manifest(labels, subjects=None, paths=None, root=None, attr="eth", check_files=False):
    n = len(labels)
    subjects = subjects or [f"s{i // 2}" for i in range(n)]
    return Manifest(
        table=pd.DataFrame({
            "image_id": [f"i{i}" for i in range(n)], "path": paths or [f"img/{i}.jpg" for i in range(n)],
            "subject_id": subjects, "label_source": "self-reported", attr: labels,
        }),
        root=root, attributes=(attr,), name="t", check_files=check_files,
    )


@pytest.mark.parametrize("label,why", [
    ("(all)", r"is reserved"),
    ("black&white", r"contains '&', which joins the labels of an intersection"),
    ("a;b", r"contains ';', which separates group names"),
    ("x\ny", r"contains a control character"),
])
def test_colliding_labels_are_refused_with_one_line(label, why):
    with pytest.raises(DataError, match=rf"manifest 't': attribute 'eth' label .* \(row 2\) {why}.*relabel it in the dataset") as err:
        _manifest(["a", "a", label, label])
    assert "\n" not in str(err.value).replace(repr(label), "")


def test_attribute_name_with_the_separator_is_refused():
    with pytest.raises(DataError, match=r"attribute name 'eth&x' contains '&'"):
        _manifest(["a", "a"], attr="eth&x")


@pytest.mark.parametrize("col", ["path", "subject_id", "image_id"])
def test_nul_byte_in_manifest_is_refused(tmp_path, col):
    m = {"path": None, "subject_id": None}
    paths = ["img/0.jpg", "img/1\x00.jpg"] if col == "path" else None
    subjects = ["s0", "s\x001"] if col == "subject_id" else None
    table_kw = dict(paths=paths, subjects=subjects, root=tmp_path)
    if col == "image_id":
        with pytest.raises(DataError, match=r"'image_id' in row 1 holds a control character"):
            Manifest(table=pd.DataFrame({"image_id": ["a", "b\x00"], "path": ["x", "y"], "subject_id": ["s", "t"], "label_source": "x"}),
                     root=tmp_path, attributes=(), name="t")
        return
    del m
    with pytest.raises(DataError, match=rf"manifest 't': '{col}' in row 1 holds a control character \(NUL, newline...\)"):
        _manifest(["a", "b"], check_files=True, **table_kw)


def test_same_image_file_under_two_subject_ids_is_warned():
    m = _manifest(["a", "a", "a", "a"], subjects=["s1", "s1", "s2", "s2"])
    shas = ["aa" * 32, "bb" * 32, "aa" * 32, "cc" * 32]
    with pytest.warns(DatasetWarning, match=r"images \['i0', 'i2'\] are the same file \(SHA-256 aaaaaaaaaaaa...\) under subject ids \['s1', 's2'\]"):
        shared = warn_same_image_under_several_subjects(m, shas)
    assert shared == [("aa" * 32, ["s1", "s2"])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_same_image_under_several_subjects(m, ["aa" * 32, "aa" * 32, "bb" * 32, None]) == []  # same subject: fine


def test_same_file_under_two_subjects_is_warned_during_extraction(tmp_path):
    """End to end through extract_embeddings: a copied file under another subject id."""
    from PIL import Image

    from bench.models.cache import EmbeddingCache
    from bench.models.extraction import extract_embeddings

    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.png")
    (tmp_path / "img" / "3.png").write_bytes((tmp_path / "img" / "0.png").read_bytes())
    m = _manifest(["a"] * 4, subjects=["s1", "s1", "s2", "s2"], paths=[f"img/{i}.png" for i in range(4)], root=tmp_path, check_files=True)

    class Fake:
        name, embedding_dim = "fake", 2

        class aligner:  # noqa: N801
            @staticmethod
            def acquire_file(path):
                from bench.acquisition.base import Acquisition

                return Acquisition(chip=np.zeros((2, 2, 3), np.uint8), fta_reason=None, n_faces=1)

        def settings(self):
            return {}

        def embed(self, chips):
            return np.ones((len(chips), 2), np.float32)

    with pytest.warns(DatasetWarning, match=r"images \['i0', 'i3'\] are the same file"):
        extract_embeddings(m, Fake(), EmbeddingCache(tmp_path / "cache", "k"), progress=False)


def test_one_subject_supplying_most_mated_comparisons_is_warned(tmp_path):
    # group a: s1 has 5 images (10 mated pairs), s2 and s3 two each (1 pair each): s1 supplies 10/12
    subjects = ["s1"] * 5 + ["s2"] * 2 + ["s3"] * 2 + ["s4", "s4", "s5", "s5"]
    labels = ["a"] * 9 + ["b"] * 4
    m = _manifest(labels, subjects=subjects)
    assert m.mated_dominance() == [{"attribute": "eth", "group": "a", "subject_id": "s1", "share": 10 / 12, "mated": 12}]
    with pytest.warns(DatasetWarning, match=r"subject 's1' supplies 83% of the 12 mated comparisons of group eth='a'"):
        m.warn_data_quality()


def test_spreadsheet_safe_prefixes_formula_cells_only():
    df = pd.DataFrame({"group": ["=1+1", "+x", "-y", "@z", "ok", "\tt"], "threshold": [-0.6, 1.0, -2.0, 0.0, 1.0, 2.0]})
    got = spreadsheet_safe(df)
    assert got["group"].tolist() == ["'=1+1", "'+x", "'-y", "'@z", "ok", "'\tt"]
    assert got["threshold"].tolist() == df["threshold"].tolist()


def test_formula_labels_are_not_formulas_in_published_csv(tmp_path):
    from bench.synthetic.generator import SyntheticPopulation
    from bench.report.writer import write_results
    from bench.run import Protocol, evaluate

    spec = {"identity_spread": 1.2, "image_noise": 0.9, "images_per_subject": 2, "subjects": 8}
    names = ["=HYPERLINK(\"http://x\")", "+cmd", "-cmd", "@SUM(A1)"]
    pop = SyntheticPopulation({n: spec for n in names}, seed=1)
    res = evaluate(pop, None, Protocol(target_fmrs=[0.05], bootstrap_replicates=None), cache_dir=tmp_path / "c", progress=False)
    out = write_results(res, tmp_path / "out", run_name="t", config={}, min_group_subjects=1, figures=False)
    for f in sorted(out.glob("*.csv")):
        with f.open(newline="") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    assert not (cell[:1] in ("=", "+", "@") or (cell.startswith("-") and not _is_number(cell))), (f.name, cell)
    groups = set(pd.read_csv(out / "per_group.csv")["group"])
    assert {"'" + n for n in names} <= groups
    assert set(names) <= {r["group"] for r in json.loads((out / "metrics.json").read_text())["per_group"]}  # JSON keeps the labels


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
