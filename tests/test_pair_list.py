"""Pair-list protocol (issue #14): parsing hostile lists, matching them to a dataset, the pair list
every table run writes, and a rerun from it that reproduces the run's tables byte for byte."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.data.manifest import Manifest
from bench.synthetic.generator import SyntheticPopulation
from bench.errors import ConfigError, DataError
from bench.protocol import pair_list as pl_mod
from bench.protocol.pair_list import PAIR_LIST_FILE, read_pair_list, read_pair_lists, resolve_pairs, write_pair_list
from bench.report.writer import write_results
from bench.run import Protocol, evaluate

TABLES = ["per_group.csv", "eer.csv", "generalized_rates.csv", "differentials.csv"]


def _write(p: Path, text: str) -> Path:
    p.write_text(text, encoding="utf-8")
    return p


def _manifest(tmp_path: Path) -> Manifest:
    root = tmp_path / "imgs"
    rows = []
    for s in ("s1", "s2", "s3"):
        for k in (0, 1):
            (root / s).mkdir(parents=True, exist_ok=True)
            (root / s / f"{k}.jpg").write_bytes(f"{s}{k}".encode())
            rows.append({"image_id": f"{s}/{k}", "path": f"{s}/{k}.jpg", "subject_id": s, "label_source": "self-reported", "g": "a"})
    return Manifest(table=pd.DataFrame(rows).astype("string"), root=root, attributes=("g",), name="tiny")


def _resolve(pl, m: Manifest):
    return resolve_pairs(pl, m.table["path"].astype(str), m.table["subject_id"].astype(str), dataset=m.name)


# ---------------------------------------------------------------- formats
def test_three_formats_are_detected_and_give_the_same_keys(tmp_path):
    ours = _write(tmp_path / "p.csv", "# provenance line\nimage_a,image_b,mated\nAfrican/m.1/m.1_0001.jpg,African/m.1/m.1_0002.jpg,1\n"
                  "African/m.1/m.1_0001.jpg,African/m.2/m.2_0001.jpg,0\n")
    rfw = _write(tmp_path / "African_pairs.txt", "m.1\t1\t2\nm.1\t1\tm.2\t1\n")
    bfw = _write(tmp_path / "bfw-v0.1.5-datatable.csv", "fold,p1,p2,label,id1,id2\n1,African/m.1/m.1_0001.jpg,African/m.1/m.1_0002.jpg,1,0,0\n"
                 "1,African/m.1/m.1_0001.jpg,African/m.2/m.2_0001.jpg,0,0,1\n")
    got = {f: read_pair_list(p) for f, p in (("fvbench", ours), ("rfw", rfw), ("bfw", bfw))}
    for fmt, pl in got.items():
        assert pl.formats == (fmt,)
        assert pl.key_a.tolist() == ["African/m.1/m.1_0001.jpg"] * 2
        assert pl.key_b.tolist() == ["African/m.1/m.1_0002.jpg", "African/m.2/m.2_0001.jpg"]
        assert pl.mated.tolist() == [True, False]
    assert got["fvbench"].comments == ("# provenance line",)
    assert got["fvbench"].line.tolist() == [3, 4]


def test_written_list_is_gzip_deterministic_and_reads_back(tmp_path):
    a, b = tmp_path / "a.csv.gz", tmp_path / "b.csv.gz"
    sha1 = write_pair_list(a, ["x/1.jpg", "x/1.jpg"], ["x/2.jpg", "y/1.jpg"], np.array([True, False]), comments=["c"])
    sha2 = write_pair_list(b, ["x/1.jpg", "x/1.jpg"], ["x/2.jpg", "y/1.jpg"], np.array([True, False]), comments=["c"])
    assert a.read_bytes() == b.read_bytes() and sha1 == sha2
    assert gzip.decompress(a.read_bytes()).decode() == "# c\nimage_a,image_b,mated\nx/1.jpg,x/2.jpg,1\nx/1.jpg,y/1.jpg,0\n"
    pl = read_pair_list(a)
    assert pl.mated.tolist() == [True, False] and pl.sha256 == (sha1,)


# ---------------------------------------------------------------- hostile input
HEAD = "image_a,image_b,mated\n"


@pytest.mark.parametrize("name, text, match", [
    ("p.csv", "image_a,image_b\n", r"p\.csv:1: unrecognised pair list"),
    ("p.csv", "# c\nimage_a;image_b;mated\n", r"p\.csv:2: expected the header"),
    ("p.csv", HEAD + "a.jpg,b.jpg\n", r"p\.csv:2: a field is empty or missing; expected 3 comma-separated fields"),
    ("p.csv", HEAD + "a.jpg,b.jpg,1\na.jpg,c.jpg,yes\n", r"p\.csv:3: mated must be 1 or 0, got 'yes'"),
    ("p.csv", HEAD + "/etc/passwd,b.jpg,0\n", r"p\.csv:2: image key '/etc/passwd' is absolute"),
    ("p.csv", HEAD + "../x.jpg,b.jpg,0\n", r"p\.csv:2: image key '\.\./x\.jpg' leaves the dataset root"),
    ("p.csv", HEAD + "a.jpg,b.jpg,1\nc.jpg,c.jpg,1\n", r"p\.csv:3: pair of image 'c\.jpg' with itself"),
    ("p.csv", HEAD + "a.jpg,b.jpg,1\nc.jpg,d.jpg,0\nb.jpg,a.jpg,1\n", r"p\.csv:4: pair \('b\.jpg', 'a\.jpg'\) repeats .*p\.csv:2"),
    ("p.csv", HEAD + "a.jpg," + "b" * 5000 + ",1\n", r"p\.csv:2: line longer than 4096 characters; expected one pair per line"),
    ("African_pairs.txt", "m.1\t1\t2\n" + "x" * 5000 + "\n", r"African_pairs\.txt:2: line longer than 4096 characters"),
    ("p.csv", "", r"p\.csv: empty pair list"),
    ("p.csv", "# only a comment\n" + HEAD, r"p\.csv: no pairs"),
    ("African_pairs.txt", "m.1\t1\t2\nm.1\tone\tm.2\t1\n", r"African_pairs\.txt:2: image numbers must be non-negative integers"),
    ("African_pairs.txt", "m.1\t1\t2\t3\t4\n", r"African_pairs\.txt:1: expected 3 tab-separated fields .* got 5"),
    ("pairs.txt", "m.1\t1\t2\n", r"pairs\.txt: an RFW pair list must be named '<Race>_pairs\.txt'"),
    ("p.csv", HEAD + "a.jpg,b.jpg,1\na.jpg,c.jpg,0,9\n", r"p\.csv:3: expected 3 comma-separated fields .* got 4"),
    ("bfw.csv", "p1,p2,label\na.jpg,b.jpg,2\n", r"bfw\.csv:2: label must be 1 \(mated\) or 0"),
    ("bfw.csv", "p1,p2,label\na.jpg,b.jpg\n", r"bfw\.csv:2: a field is empty or missing; expected 3 comma-separated fields"),
])
def test_malformed_lists_are_refused_with_file_and_line(tmp_path, name, text, match):
    p = _write(tmp_path / name, text)
    with pytest.raises(DataError, match=match):
        read_pair_list(p)


def test_binary_truncated_and_missing_files_are_one_line_errors(tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match=r"bin\.csv:1: not UTF-8 text"):
        read_pair_list(tmp_path / "bin.csv")
    whole = gzip.compress((HEAD + "a.jpg,b.jpg,1\n" * 1).encode() * 1)
    (tmp_path / "cut.csv.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cut\.csv\.gz: unreadable or truncated"):
        read_pair_list(tmp_path / "cut.csv.gz")
    with pytest.raises(ConfigError, match=r"protocol\.pair_list: file not found: .*nope\.csv"):
        read_pair_list(tmp_path / "nope.csv")


def test_more_pairs_than_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pl_mod, "MAX_PAIRS", 3)
    p = _write(tmp_path / "p.csv", HEAD + "".join(f"a{i}.jpg,b{i}.jpg,0\n" for i in range(4)))
    with pytest.raises(DataError, match=r"p\.csv:5: more than 3 pairs"):
        read_pair_list(p)


def test_gzip_bomb_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(pl_mod, "MAX_TEXT_BYTES", 1000)
    (tmp_path / "bomb.csv.gz").write_bytes(gzip.compress((HEAD + "a.jpg,b.jpg,0\n" + "\n" * 10_000).encode()))
    with pytest.raises(DataError, match=r"bomb\.csv\.gz: more than 1,000 bytes of text"):
        read_pair_list(tmp_path / "bomb.csv.gz")


@pytest.mark.parametrize("second", ["0" * (50 << 20), "a.jpg,b.jpg,1\n" + "0" * (50 << 20)])
def test_gzip_of_one_huge_line_is_refused_while_reading(tmp_path, second):
    """A short gzip whose one line decompresses to 50 MB: refused within about one read buffer (1 MiB),
    before the CSV parser buffers the line (the 4 GiB text cap alone let a 6 GB line reach 5 GB RSS)."""
    import tracemalloc

    (tmp_path / "long.csv.gz").write_bytes(gzip.compress((HEAD + second).encode(), compresslevel=1))
    line = 2 if second.startswith("0") else 3
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=rf"long\.csv\.gz:{line}: line longer than 4096 characters; expected one pair per line"):
            read_pair_list(tmp_path / "long.csv.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"peak {peak / 2**20:.1f} MiB while refusing a 50 MB line"


def test_lines_split_across_read_buffers_are_counted_whole(tmp_path):
    """Lines of 4,000 bytes that straddle the 1 MiB read buffers pass; line numbers stay exact."""
    rows = [f"{'d' * 1990}/{i}.jpg,{'e' * 1990}/{i}.jpg,0" for i in range(600)]  # ~2.4 MB, every line < 4096
    ok = _write(tmp_path / "ok.csv", HEAD + "\n".join(rows) + "\n")
    assert len(read_pair_list(ok)) == 600
    rows[400] = rows[400] + "x" * 200  # line 402 (header is line 1) > 4096 bytes, in the second buffer
    bad = _write(tmp_path / "bad.csv", HEAD + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"bad\.csv:402: line longer than 4096 characters"):
        read_pair_list(bad)


def test_duplicates_across_files_are_refused(tmp_path):
    a = _write(tmp_path / "a.csv", HEAD + "x.jpg,y.jpg,0\n")
    b = _write(tmp_path / "b.csv", HEAD + "y.jpg,x.jpg,0\n")
    with pytest.raises(DataError, match=r"b\.csv:2: pair .* repeats .*a\.csv:2"):
        read_pair_lists([a, b])


def test_unknown_image_and_contradicting_mated_flags_are_refused(tmp_path):
    m = _manifest(tmp_path)
    with pytest.raises(DataError, match=r"p\.csv:3: image 's9/0\.jpg' is not in dataset 'tiny' \(6 images; 1 listed pair"):
        _resolve(read_pair_list(_write(tmp_path / "p.csv", HEAD + "s1/0.jpg,s1/1.jpg,1\ns1/0.jpg,s9/0.jpg,0\n")), m)
    with pytest.raises(DataError, match=r"p\.csv:2: pair .* is marked mated but the dataset labels its images as subjects 's1' and 's2'"):
        _resolve(read_pair_list(_write(tmp_path / "p.csv", HEAD + "s1/0.jpg,s2/1.jpg,1\n")), m)
    with pytest.raises(DataError, match=r"p\.csv:2: pair .* is marked non-mated but both images belong to subject 's3'"):
        _resolve(read_pair_list(_write(tmp_path / "p.csv", HEAD + "s3/0.jpg,s3/1.jpg,0\n")), m)


def test_protocol_refuses_pair_list_with_sampling_or_streaming():
    with pytest.raises(ConfigError, match=r"protocol\.pair_list and protocol\.max_nonmated=10"):
        Protocol(pair_list="p.csv", max_nonmated=10)
    with pytest.raises(ConfigError, match=r"protocol\.pair_list needs the table engine"):
        Protocol(pair_list="p.csv", engine="stream")
    with pytest.raises(ConfigError, match=r"protocol\.pair_list must be a file name"):
        Protocol(pair_list=3)


def test_a_bad_list_fails_before_any_image_is_embedded(tmp_path):
    m = _manifest(tmp_path)
    p = _write(tmp_path / "p.csv", HEAD + "s1/0.jpg,nope.jpg,0\n")

    class Exploding:
        def __getattr__(self, name):
            raise AssertionError("the model was touched before the pair list was checked")

    with pytest.raises(DataError, match=r"p\.csv:2: image 'nope\.jpg' is not in dataset"):
        evaluate(m, Exploding(), Protocol(pair_list=str(p), bootstrap_replicates=None), cache_dir=tmp_path / "c", progress=False)


# ---------------------------------------------------------------- runs
def _pop(fta: float = 0.0, small: bool = False) -> SyntheticPopulation:
    spec = {"identity_spread": 1.0, "image_noise": 0.8, "images_per_subject": 3, "subjects": 12, "fta_rate": fta}
    groups = {"a": {**spec, "labels": {"g": "a"}}, "b": {**spec, "subjects": 10, "labels": {"g": "b"}}}
    if small:
        groups["c"] = {**spec, "subjects": 2, "labels": {"g": "c"}}
    return SyntheticPopulation(groups, seed=3, dim=16)


def _run(tmp_path: Path, name: str, protocol: Protocol, pop: SyntheticPopulation, min_group_subjects: int = 1) -> Path:
    res = evaluate(pop, None, protocol, cache_dir=tmp_path / "cache", progress=False, min_group_subjects=min_group_subjects)
    return write_results(res, tmp_path / name, run_name=name, config={}, min_group_subjects=min_group_subjects, figures=False)


@pytest.mark.parametrize("fta, max_nonmated", [(0.15, None), (0.0, 300)])
def test_rerun_from_the_written_pair_list_reproduces_every_table(tmp_path, fta, max_nonmated):
    pop = _pop(fta)
    first = _run(tmp_path, "first", Protocol(target_fmrs=[0.01], bootstrap_replicates=40, max_nonmated=max_nonmated), pop)
    again = _run(tmp_path, "again", Protocol(target_fmrs=[0.01], bootstrap_replicates=40, pair_list=str(first / PAIR_LIST_FILE)), pop)
    for name in TABLES + ["cross_group_fmr_g.csv"]:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    a, b = pd.read_parquet(first / "scores.parquet"), pd.read_parquet(again / "scores.parquet")
    pd.testing.assert_frame_equal(a, b)
    listed = read_pair_list(first / PAIR_LIST_FILE)
    mx = json.loads((again / "metrics.json").read_text())
    assert mx["dataset"]["pair_list"]["pairs_listed"] == len(listed)
    if max_nonmated:
        assert int((~listed.mated).sum()) == max_nonmated
    if fta:  # the list keeps the pairs of failed images: the rerun counts them, as the all-pairs run does
        lost = mx["dataset"]["pair_list"]["lost_to_fta"]
        gen = pd.read_csv(again / "generalized_rates.csv")
        row = gen[(gen["group"] == "(all)")].iloc[0]
        assert lost == {"mated": int(row["lost_mated"]), "nonmated": int(row["lost_nonmated"])}
        assert lost["mated"] > 0 and lost["nonmated"] > 0
        assert len(listed) == len(a) + lost["mated"] + lost["nonmated"]


def test_fta_pairs_are_counted_per_group_not_dropped(tmp_path):
    pop = _pop(0.2)
    manifest, _, acquired = pop.generate()
    keys = manifest.table["path"].astype(str).to_numpy()
    subj = manifest.table["subject_id"].astype(str).to_numpy()
    failed = np.flatnonzero(~acquired)
    good = np.flatnonzero(acquired)
    # one mated pair of a failed image (its subject's other image), and two non-mated pairs of it
    f = failed[0]
    mate = [i for i in np.flatnonzero(subj == subj[f]) if i != f][0]
    others = [i for i in good if subj[i] != subj[f]][:2]
    lines = [(keys[f], keys[mate], 1), (keys[f], keys[others[0]], 0), (keys[f], keys[others[1]], 0)]
    ok_m = [(keys[i], keys[j], 1) for i in good for j in good if i < j and subj[i] == subj[j]][:20]
    ok_n = [(keys[i], keys[j], 0) for i in good for j in good if i < j and subj[i] != subj[j]][:200]
    p = tmp_path / "mine.csv"
    p.write_text(HEAD + "".join(f"{a},{b},{m}\n" for a, b, m in lines + ok_m + ok_n))
    out = _run(tmp_path, "fta", Protocol(target_fmrs=[0.05], bootstrap_replicates=None, pair_list=str(p)), pop)
    mx = json.loads((out / "metrics.json").read_text())
    assert mx["dataset"]["pair_list"]["lost_to_fta"] == {"mated": 1, "nonmated": 2}
    assert mx["dataset"]["mated_comparisons"] == len(ok_m) and mx["dataset"]["nonmated_comparisons"] == len(ok_n)
    gen = pd.read_csv(out / "generalized_rates.csv")
    allrow = gen[gen["group"] == "(all)"].iloc[0]
    assert (allrow["lost_mated"], allrow["lost_nonmated"]) == (1, 2)
    # NIST convention (docs/protocol.md §1.2): a lost mated pair is a false non-match
    pg = pd.read_csv(out / "per_group.csv")
    fnmr = pg[(pg["group"] == "(all)") & (pg["metric"] == "FNMR")].iloc[0]
    assert allrow["fnmr_nist"] == pytest.approx((fnmr["errors"] + 1) / (fnmr["comparisons"] + 1))
    assert "counted in the generalized rates" in (out / "report.md").read_text()


def test_a_list_touching_some_acquired_images_verifies(tmp_path):
    """RFW/BFW/user lists leave acquired images out of every pair: fvbench-verify must not call that a mismatch."""
    from bench.verify import verify_run

    pop = _pop(0.0)
    manifest, _, acquired = pop.generate()
    keys = manifest.table["path"].astype(str).to_numpy()
    subj = manifest.table["subject_id"].astype(str).to_numpy()
    use = np.flatnonzero(acquired)[::2]  # half of the images are in no listed pair
    ok_m = [(keys[i], keys[j], 1) for i in use for j in use if i < j and subj[i] == subj[j]]
    ok_n = [(keys[i], keys[j], 0) for i in use for j in use if i < j and subj[i] != subj[j]][:150]
    p = tmp_path / "mine.csv"
    p.write_text(HEAD + "".join(f"{a},{b},{m}\n" for a, b, m in ok_m + ok_n))
    out = _run(tmp_path, "subset", Protocol(target_fmrs=[0.05], bootstrap_replicates=None, pair_list=str(p)), pop)
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores.filter(like="image").stack().nunique() < int(acquired.sum())  # some acquired images are in no pair
    rep = verify_run(out, check_dataset=False, check_weights=False, check_figures=False)
    assert not rep.mismatches, [(c.name, c.detail) for c in rep.mismatches]
    check = [c for c in rep.checks if c.name == "scores"][0]
    assert check.status == "ok" and "a pair list scores only the images its pairs name" in check.detail


def test_withheld_subjects_never_appear_in_the_written_list(tmp_path):
    pop = _pop(small=True)
    out = _run(tmp_path, "w", Protocol(target_fmrs=[0.05], bootstrap_replicates=None), pop, min_group_subjects=3)
    listed = read_pair_list(out / PAIR_LIST_FILE)
    keys = set(listed.key_a) | set(listed.key_b)
    assert keys and not any(k.startswith("c/") for k in keys)  # group c (2 subjects) is withheld
    mx = json.loads((out / "metrics.json").read_text())
    assert mx["suppression"]["subjects_withheld"] == 2
    # a list naming withheld images (from someone else): those pairs are left out and counted only
    full = tmp_path / "full.csv"
    manifest, _, _ = pop.generate()
    t = manifest.table
    c = t[t["path"].str.startswith("c/")]["path"].tolist()
    a = t[t["path"].str.startswith("a/")]["path"].tolist()
    full.write_text(HEAD + f"{c[0]},{c[1]},1\n{c[0]},{a[0]},0\n" + "".join(f"{x},{y},{m}\n" for x, y, m in zip(listed.key_a, listed.key_b, listed.mated.astype(int))))
    again = _run(tmp_path, "w2", Protocol(target_fmrs=[0.05], bootstrap_replicates=None, pair_list=str(full)), pop, min_group_subjects=3)
    assert json.loads((again / "metrics.json").read_text())["dataset"]["pair_list"]["pairs_withheld"] == 2
    for name in TABLES:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    assert not any(k.startswith("c/") for k in set(read_pair_list(again / PAIR_LIST_FILE).key_a))


def test_report_pair_list_false_writes_no_list_and_removes_a_stale_one(tmp_path):
    pop = _pop()
    res = evaluate(pop, None, Protocol(target_fmrs=[0.05], bootstrap_replicates=None), cache_dir=tmp_path / "c", progress=False)
    out = write_results(res, tmp_path / "o", run_name="o", config={}, min_group_subjects=1, figures=False)
    assert (out / PAIR_LIST_FILE).is_file()
    write_results(res, out, run_name="o", config={"report": {"pair_list": False}}, min_group_subjects=1, figures=False)
    assert not (out / PAIR_LIST_FILE).exists()
    assert "pair_list" not in json.loads((out / "metrics.json").read_text())["protocol"]
