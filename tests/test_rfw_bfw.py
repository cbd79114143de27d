"""RFW and BFW on tiny fake datasets the tests build (issue #14): loaders, their pair lists, a full
run with a stand-in model (failures to acquire included), and the consent notice in every report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.acquisition.base import Acquisition
from bench.data.bfw import load_bfw
from bench.data.rfw import load_rfw, rfw_pair_files
from bench.errors import DataError
from bench.protocol.pair_list import PAIR_LIST_FILE, read_pair_list, read_pair_lists
from bench.report.writer import write_results
from bench.run import Protocol, evaluate

REPO = Path(__file__).resolve().parents[1]
CONSENT = {"dataset": {"consent": "web_collected_without_consent"}}


class StandIn:
    """A model that reads ``subject|key`` from each fake image: one direction per subject plus
    a small per-image offset; a file containing NOFACE fails to acquire."""

    name, embedding_dim, metric, nominal_threshold, weights_sha256 = "stand_in", 48, "cosine", None, None

    class aligner:  # noqa: N801
        @staticmethod
        def acquire_file(path):
            text = Path(path).read_text()
            if "NOFACE" in text:
                return Acquisition(chip=None, fta_reason="no_face_detected", n_faces=0)
            subject, key = text.split("|")
            base = np.random.default_rng(zlib.crc32(subject.encode())).integers(0, 256, 48)
            jitter = np.random.default_rng(zlib.crc32(key.encode())).integers(-40, 41, 48)
            return Acquisition(chip=np.clip(base + jitter, 0, 255).astype(np.uint8).reshape(4, 4, 3), fta_reason=None, n_faces=1)

    def settings(self):
        return {"stand_in": 1}

    def embed(self, chips):
        return np.stack([c.reshape(-1).astype(np.float32) - 127.5 for c in chips])


def _img(p: Path, subject: str, noface: bool = False) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(("NOFACE" if noface else subject) + "|" + p.as_posix())


def make_rfw(tmp: Path, races=("African", "Asian"), noface: str | None = None) -> Path:
    """test/data/<Race>/<id>/<id>_000n.jpg (4 subjects x 3 images per race) and txts/<Race>/<Race>_pairs.txt."""
    root = tmp / "rfw" / "test"
    for r in races:
        ids = [f"m.{r[:2].lower()}{k}" for k in range(4)]
        for s in ids:
            for n in (1, 2, 3):
                f = root / "data" / r / s / f"{s}_{n:04d}.jpg"
                _img(f, s, noface=(noface == f"{r}/{s}/{f.name}"))
        lines = [f"{s}\t1\t2" for s in ids] + [f"{s}\t2\t3" for s in ids]
        lines += [f"{a}\t1\t{b}\t{n}" for i, a in enumerate(ids) for b in ids[i + 1:] for n in (1, 3)]
        (root / "txts" / r).mkdir(parents=True, exist_ok=True)
        (root / "txts" / r / f"{r}_pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def make_bfw(tmp: Path) -> tuple[Path, Path]:
    """face-samples/<subgroup>/<id>/<nnnn_nn>.jpg (2 subjects x 2 images per subgroup) and a datatable."""
    root = tmp / "bfw" / "face-samples"
    subgroups = {"asian_females": ("A", "F"), "black_males": ("B", "M"), "white_females": ("W", "F"), "indian_males": ("I", "M")}
    imgs = []
    sid = 0
    for folder, (e, g) in subgroups.items():
        for k in range(3):
            for n in range(2):
                rel = f"{folder}/n{sid:06d}/{n:04d}_01.jpg"
                _img(root / rel, f"id{sid}")
                imgs.append((rel, sid, e, g))
            sid += 1
    rows = []
    for i, a in enumerate(imgs):
        for b in imgs[i + 1:]:
            if a[1] == b[1] or (a[2], a[3]) == (b[2], b[3]):  # mated, and non-mated within the subgroup (as BFW pairs)
                rows.append({"fold": 1, "p1": a[0], "p2": b[0], "label": int(a[1] == b[1]), "id1": a[1], "id2": b[1],
                             "att1": a[0].split("/")[0], "att2": b[0].split("/")[0], "vgg16": 0.5, "resnet50": 0.5, "senet50": 0.5,
                             "a1": a[2] + a[3], "a2": b[2] + b[3], "g1": a[3], "g2": b[3], "e1": a[2], "e2": b[2]})
    table = tmp / "bfw" / "bfw-v0.1.5-datatable.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table, root


# ---------------------------------------------------------------- RFW
def test_rfw_loader_reads_the_race_subsets(tmp_path):
    root = make_rfw(tmp_path)
    m = load_rfw(root, races=["African", "Asian"])
    assert len(m.table) == 2 * 4 * 3 and m.attributes == ("race",)
    row = m.table.iloc[0]
    assert (row["path"], row["subject_id"], row["race"], row["label_source"]) == (
        "African/m.af0/m.af0_0001.jpg", "African/m.af0", "African", "annotated")
    pl = read_pair_lists(rfw_pair_files(root, ["African", "Asian"]))
    assert len(pl) == 2 * (8 + 12) and int(pl.mated.sum()) == 16
    assert pl.key_b[0] == "African/m.af0/m.af0_0002.jpg"


def test_rfw_missing_root_or_race_names_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"RFW: .*data' not found; expected the unpacked test set .*whdeng\.cn/RFW/testing\.html"):
        load_rfw(tmp_path / "nothing")
    root = make_rfw(tmp_path, races=("African",))
    with pytest.raises(DataError, match=r"RFW: race folder .*Asian' not found"):
        load_rfw(root, races=["African", "Asian"])
    with pytest.raises(DataError, match=r"dataset\.races: \['Martian'\]"):
        load_rfw(root, races=["Martian"])


def test_rfw_run_with_official_pairs_counts_fta_pairs_and_prints_the_consent_notice(tmp_path):
    root = make_rfw(tmp_path, noface="Asian/m.as1/m.as1_0002.jpg")
    two = ["African", "Asian"]
    res = evaluate(load_rfw(root, two), StandIn(), Protocol(target_fmrs=[0.05], bootstrap_replicates=30, pair_list=rfw_pair_files(root, two)),
                   cache_dir=tmp_path / "cache", progress=False)
    out = write_results(res, tmp_path / "out", run_name="rfw_fixture", config=CONSENT, min_group_subjects=1, figures=True)
    mx = json.loads((out / "metrics.json").read_text())
    # image m.as1_0002 is in mated lines (1,2) and (2,3): 2 lost mated pairs; it is in no non-mated line (those use 1 and 3)
    assert mx["dataset"]["pair_list"]["lost_to_fta"] == {"mated": 2, "nonmated": 0}
    assert mx["dataset"]["mated_comparisons"] == 14 and mx["dataset"]["nonmated_comparisons"] == 24
    pg = pd.read_csv(out / "per_group.csv")
    fnmr = pg[(pg["metric"] == "FNMR")].drop_duplicates("group").set_index("group")["comparisons"].to_dict()
    assert fnmr == {"(all)": 14, "African": 8, "Asian": 6}
    gen = pd.read_csv(out / "generalized_rates.csv").drop_duplicates("group").set_index("group")
    assert gen.loc["Asian", "lost_mated"] == 2 and gen.loc["African", "lost_mated"] == 0
    # every subject's two mated pairs are far closer than any non-mated pair: no errors at a 5% FMR target
    assert (pg[pg["metric"] == "FNMR"]["errors"] == 0).all()
    assert mx["dataset"]["consent"]["status"] == "web_collected_without_consent"
    report = (out / "report.md").read_text()
    assert "collected from the web without the consent" in report.split("## ")[0]  # above the first section
    assert "collected from the web without the consent" in (out / "report.html").read_text()
    written = read_pair_list(out / PAIR_LIST_FILE)
    assert len(written) == 40 and not any(k.startswith("/") for k in written.key_a)


def test_rfw_config_composes_with_its_pair_lists_and_notice(tmp_path):
    make_rfw(tmp_path, races=("African", "Asian", "Caucasian", "Indian"))
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="fvbench", overrides=["dataset=rfw", f"paths.data_dir={tmp_path}"])
    d = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert d["consent"] == "web_collected_without_consent"
    assert [Path(p).name for p in d["pair_list"]] == [f"{r}_pairs.txt" for r in ("African", "Asian", "Caucasian", "Indian")]
    assert len(read_pair_lists(d["pair_list"])) == 4 * 20


def test_cli_uses_the_dataset_pair_list_before_any_embedding(tmp_path):
    root = make_rfw(tmp_path, races=("African", "Asian", "Caucasian", "Indian"))
    with (root / "txts" / "Indian" / "Indian_pairs.txt").open("a") as f:
        f.write("m.in0\t1\tm.zz\t1\n")
    env = {**os.environ, "FVBENCH_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "bench", "dataset=rfw", "model=generator", f"paths.data_dir={tmp_path}",
           f"paths.results_dir={tmp_path / 'res'}", f"hydra.run.dir={tmp_path / 'h'}", "progress=false"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "Indian_pairs.txt:21: image 'Indian/m.zz/m.zz_0001.jpg' is not in dataset 'rfw'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- BFW
def test_bfw_loader_takes_labels_from_the_datatable(tmp_path):
    table, root = make_bfw(tmp_path)
    m = load_bfw(table, root)
    assert len(m.table) == 4 * 3 * 2 and m.attributes == ("ethnicity", "gender")
    got = m.table.drop_duplicates("subject_id").set_index("subject_id")[["ethnicity", "gender"]]
    assert got.loc["0"].tolist() == ["asian", "female"] and got.loc["3"].tolist() == ["black", "male"]
    pl = read_pair_list(table)
    assert pl.formats == ("bfw",) and int(pl.mated.sum()) == 12  # one mated pair per subject


def test_bfw_run_and_hostile_datatables(tmp_path):
    table, root = make_bfw(tmp_path)
    res = evaluate(load_bfw(table, root), StandIn(), Protocol(target_fmrs=[0.1], bootstrap_replicates=None, pair_list=str(table)),
                   cache_dir=tmp_path / "cache", progress=False)
    assert res.dataset_info["mated_comparisons"] == 12 and res.dataset_info["nonmated_comparisons"] == 4 * 12
    assert set(res.per_group["attribute"]) == {"ethnicity", "gender"}
    t = pd.read_csv(table)
    bad = t.copy()
    bad.loc[3, "e1"] = "X"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad\.csv:5: e1/e2 \(ethnicity\) code 'X'"):
        load_bfw(tmp_path / "bad.csv", root)
    bad = t.copy()
    bad.loc[2, "id2"] = 99
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad\.csv:4: image .* has subject/labels \(99,"):
        load_bfw(tmp_path / "bad.csv", root)
    t.drop(columns=["g2"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad\.csv: missing column\(s\) \['g2'\]"):
        load_bfw(tmp_path / "bad.csv", root)
    with pytest.raises(DataError, match=r"BFW data table .* not found; .*facerec-bias-bfw"):
        load_bfw(tmp_path / "none.csv", root)


def test_bfw_missing_files_name_layout_and_terms(tmp_path):
    from bench.data.bfw import LAYOUT, TERMS

    for table, root in ((tmp_path / "none.csv", tmp_path), (None, tmp_path / "no-samples")):
        if table is None:
            table = tmp_path / "t.csv"
            table.write_text("p1,p2,label,id1,id2,g1,g2,e1,e2\n")
        with pytest.raises(DataError) as e:
            load_bfw(table, root)
        msg = str(e.value)
        assert "\n" not in msg and LAYOUT in msg and TERMS in msg
        assert "bfw-v0.1.5-datatable.csv" in msg and "ieee-dataport.org/documents/balanced-faces-wild" in msg
        assert "without consent" in msg


def test_docs_and_readme_flag_rfw_bfw_as_collected_without_consent():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    readme = " ".join((repo / "README.md").read_text().split())
    assert "reads consented face sets only" not in readme
    assert "plus the RFW and BFW pair-list protocols, whose web images were collected without consent" in readme
    doc = (repo / "docs" / "datasets.md").read_text()
    section = doc.split("## RFW and BFW", 1)[1].split("\n## ", 1)[0]
    for needle in ("http://whdeng.cn/RFW/testing.html", "github.com/visionjo/facerec-bias-bfw", "web_collected_without_consent",
                   "rfw/test/data/<Race>", "bfw/face-samples/", "fvbench dataset=rfw", "fvbench dataset=bfw"):
        assert needle in section, needle

