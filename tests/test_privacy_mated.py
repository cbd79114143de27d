"""Privacy: a group's FNMR must not come from fewer than ``report.min_group_subjects`` people.

The small-group rule (tests/test_privacy.py) counts a group's members; a group of 13
subjects of whom one has a scored mated comparison would still publish that person's
result. The subjects behind the scored mated comparisons are counted per group, under
the run's actual design (all pairs with acquisition and capture rules, a pair list, a
scenario's reference x probe pairs), and withheld when 1 to min-1 (docs/protocol.md §6.2).
"""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.metrics.groups import withhold_small_groups
from bench.protocol.mated_contributors import mated_contributors

REPO = Path(__file__).resolve().parents[1]


def _table(spec):
    """spec: list of (subject, group, n_images[, capture ids])."""
    rows = []
    for s, g, n, *caps in spec:
        for k in range(n):
            cap = caps[0][k] if caps else f"{s}_{k}"
            rows.append({"path": f"{s}_{k}.jpg", "subject_id": s, "eth": g, "capture_id": cap})
    return pd.DataFrame(rows)


def _spec_one_mated():
    # group a: 6 subjects with 2 images each; group b: 6 subjects, only b0 has 2 images
    return [(f"a{i}", "a", 2) for i in range(6)] + [("b0", "b", 2)] + [(f"b{i}", "b", 1) for i in range(1, 6)]


def test_all_pairs_one_mated_subject_is_withheld():
    t = _table(_spec_one_mated())
    fn = mated_contributors(t, [None] * len(t))
    keep, rec = withhold_small_groups(t["subject_id"], t[["eth"]], 5, fn)
    assert set(t["subject_id"][~keep]) == {"b0"}
    assert rec["subjects"] == 1 and rec["images"] == 2
    assert rec["groups"] == {} and rec["groups_mated"] == {"eth": {"b": 1}}
    # min_group_subjects = 1 changes nothing
    keep1, rec1 = withhold_small_groups(t["subject_id"], t[["eth"]], 1, fn)
    assert keep1.all() and rec1["subjects"] == 0 and rec1["groups_mated"] == {}


def test_failure_to_acquire_and_same_capture_remove_contributors():
    # b0..b4 have two images each, but b1's second image failed to acquire and b2's two
    # images are frames of one capture: 3 contributors in b (< 5) are withheld.
    spec = [(f"a{i}", "a", 2) for i in range(6)] + [("b0", "b", 2), ("b1", "b", 2), ("b2", "b", 2, ["v", "v"]),
                                                     ("b3", "b", 2)] + [(f"b{i}", "b", 1) for i in range(4, 9)]
    t = _table(spec)
    fta = [None] * len(t)
    fta[int(np.flatnonzero(t["path"] == "b1_1.jpg")[0])] = "no_face"
    keep, rec = withhold_small_groups(t["subject_id"], t[["eth"]], 5, mated_contributors(t, fta))
    assert set(t["subject_id"][~keep]) == {"b0", "b3"}
    assert rec["groups_mated"] == {"eth": {"b": 2}} and rec["groups"] == {}
    # all acquired, distinct captures: 4 contributors in b, still < 5
    t2 = _table([(f"a{i}", "a", 2) for i in range(6)] + [(f"b{i}", "b", 2) for i in range(4)] + [(f"b{i}", "b", 1) for i in range(4, 9)])
    _, rec2 = withhold_small_groups(t2["subject_id"], t2[["eth"]], 5, mated_contributors(t2, [None] * len(t2)))
    assert rec2["groups_mated"] == {"eth": {"b": 4}} and rec2["subjects"] == 4


def test_scenario_roles_count_reference_and_probe():
    t = _table([(f"a{i}", "a", 2) for i in range(6)] + [(f"b{i}", "b", 2) for i in range(6)])
    roles = np.array(["enrolment", "probe"] * 12, dtype=object)
    roles[t["subject_id"].str.startswith("b").to_numpy() & (roles == "probe")] = "enrolment"  # b: no probes ...
    roles[int(np.flatnonzero(t["path"] == "b0_1.jpg")[0])] = "probe"  # ... except b0's
    keep, rec = withhold_small_groups(t["subject_id"], t[["eth"]], 5, mated_contributors(t, [None] * len(t), roles=roles))
    assert set(t["subject_id"][~keep]) == {"b0"} and rec["groups_mated"] == {"eth": {"b": 1}}


def test_intersection_and_iteration_with_group_size_rule():
    # b has 5 contributors overall, but b&f only 1 (b0): b0 is withheld; b then has 4 contributors -> all withheld
    spec = [(f"a{i}", "a", 2) for i in range(12)] + [(f"b{i}", "b", 2) for i in range(5)] + [(f"c{i}", "b", 1) for i in range(5)]
    spec += [(f"d{i}", "b", 1) for i in range(5)]  # keeps b&m at >= 5 members once b1..b4 are withheld
    t = _table(spec)
    t["sex"] = np.where(t["subject_id"] == "b0", "f", "m")
    t.loc[t["subject_id"].str.startswith("c") | t["subject_id"].isin([f"a{i}" for i in range(6)]), "sex"] = "f"
    t["eth&sex"] = t["eth"] + "&" + t["sex"]
    keep, rec = withhold_small_groups(t["subject_id"], t[["eth", "sex", "eth&sex"]], 5, mated_contributors(t, [None] * len(t)))
    assert set(t["subject_id"][~keep]) == {f"b{i}" for i in range(5)}
    assert rec["groups_mated"] == {"eth&sex": {"b&f": 1, "b&m": 4}} and rec["groups"] == {}
    # every published group then has 0 or >= 5 contributors
    contrib = mated_contributors(t, [None] * len(t))(keep)
    for col in ("eth", "sex", "eth&sex"):
        n = pd.DataFrame({"s": t["subject_id"][contrib], "g": t[col][contrib]}).drop_duplicates().groupby("g").size()
        assert ((n == 0) | (n >= 5)).all()


# ----------------------------------------------------------------------------- the attacker's repros on FRL London
def _run(tmp: Path, name: str, *extra: str) -> Path:
    cmd = [sys.executable, "-m", "bench", *extra, f"run_name={name}", "report.figures=false",
           f"hydra.run.dir={tmp / ('hydra_' + name)}", f"paths.results_dir={tmp / 'results'}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    logs = [p.read_text() for p in (tmp / ("hydra_" + name)).rglob("*.log")]
    assert "scored mated comparisons" in done.stdout + done.stderr + "".join(logs)  # the printed warning
    return tmp / "results" / name


def _assert_no_small_fnmr(out: Path, group: str):
    pg = pd.read_csv(out / "per_group.csv", keep_default_na=False)
    fnmr = pg[(pg["metric"] == "FNMR") & (pg["comparisons"].astype(int) > 0)]
    assert (fnmr["subjects"].astype(int) >= 5).all(), fnmr[["attribute", "group", "subjects"]]
    assert not len(fnmr[fnmr["group"] == group])  # black's only mated contributor was withheld: no FNMR row with data
    supp = json.loads((out / "metrics.json").read_text())["suppression"]
    assert supp["groups_withheld_mated"]["face_eth" if "face_eth" in supp["groups_withheld_mated"] else "eth"] == {group: 1}
    assert supp["subjects_withheld"] >= 1
    assert "Also withheld: the subjects with scored mated comparisons" in (out / "report.md").read_text()


def test_london_pair_list_with_one_mated_black_subject(tmp_path, london):
    pytest.importorskip("dlib")
    info = list(csv.DictReader(open(london / "london_info.csv")))
    ids = [r["face_id"] for r in info]
    black = {r["face_id"] for r in info if r["face_eth"] == "black"}
    n, s = (lambda i: f"neutral_front/{i}_03.jpg"), (lambda i: f"smiling_front/{i}_08.jpg")
    first = sorted(i for i in black if (london / n(i)).is_file() and (london / s(i)).is_file())[0]
    lines = ["image_a,image_b,mated", f"{n(first)},{s(first)},1"]
    lines += [f"{n(i)},{s(i)},1" for i in ids if i not in black and (london / n(i)).is_file() and (london / s(i)).is_file()]
    lines += [f"{n(a)},{n(b)},0" for a, b in itertools.combinations([i for i in ids if (london / n(i)).is_file()], 2)]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    out = _run(tmp_path, "one_mated", "experiment=frl_london_dlib", f"protocol.pair_list={tmp_path / 'pairs.csv'}",
               f"paths.data_dir={london.parent}", "protocol.bootstrap_replicates=null")
    _assert_no_small_fnmr(out, "black")


def test_london_all_pairs_one_black_subject_with_two_images(tmp_path, london):
    pytest.importorskip("dlib")
    info = list(csv.DictReader(open(london / "london_info.csv")))
    rows, done_black = [], False
    for r in info:
        i = r["face_id"]
        a, b = f"neutral_front/{i}_03.jpg", f"smiling_front/{i}_08.jpg"
        if not (london / a).is_file():
            continue
        rows.append((a, i, r["face_eth"]))
        if (london / b).is_file() and (r["face_eth"] != "black" or not done_black):
            rows.append((b, i, r["face_eth"]))
            done_black |= r["face_eth"] == "black"
    man = tmp_path / "manifest.csv"
    man.write_text("path,subject_id,eth\n" + "".join(f"{p},{i},{e}\n" for p, i, e in rows))
    out = _run(tmp_path, "one_mated_allpairs", "dataset=csv", f"dataset.manifest={man}", f"dataset.root={london}",
               "dataset.attributes={eth: eth}", "model=dlib_resnet", "protocol.bootstrap_replicates=null")
    _assert_no_small_fnmr(out, "black")
