"""No one's result can be derived from a published folder by subtraction (issue #9).

Scenario (the published dlib x FRL London run): subject 036 is the only ``east_asian/white``
participant (a group of 1, below ``report.min_group_subjects`` = 5). Before the fix the
group's cells were blanked but ``(all)`` was not, so their failure to acquire was
``(all)`` FTA minus the visible groups (1 - 0), and their false non-match likewise. Now the
run is repeated with that person failing -- (a) one image a failure to acquire, (b) their
mated comparison a false non-match -- and every file of the result folder (tables,
metrics.json, report.md, figures, files.sha256, even the unpublished scores.parquet) is
byte-identical to the run where they succeed: nothing published depends on their outcome,
so nothing can be derived about it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

import bench.run as run_module
from bench.cli import run_from_config
from bench.data.frl_london import load_frl_london
from bench.models.dlib_resnet import DlibResNet
from bench.run import Protocol, evaluate

REPO = Path(__file__).resolve().parents[1]
PERSON = "036"  # london_info.csv: the one east_asian/white participant


def _config(london: Path, tmp: Path, name: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="fvbench", overrides=[
            "experiment=frl_london_dlib", f"run_name={name}", "progress=false", "protocol.bootstrap_replicates=50",
            f"paths.data_dir={london.parent}", f"paths.results_dir={tmp / 'results'}", f"paths.cache_dir={tmp.parent / 'cache'}",
        ])


def _fail(mode: str):
    """Wrap extract_embeddings so that PERSON fails in ``mode``; everyone else is unchanged."""
    real = run_module.extract_embeddings

    def wrapped(dataset, model, cache, **kw):
        ext = real(dataset, model, cache, **kw)
        rows = np.flatnonzero(dataset.table["subject_id"].astype(str).to_numpy() == PERSON)
        assert len(rows) == 2
        emb, reasons = ext.embeddings.copy(), ext.fta_reason.copy()
        if mode == "fta":
            emb[rows[1]] = np.nan
            reasons[rows[1]] = "no_face"
        else:  # a false non-match: the second image's template far from the first
            emb[rows[1]] = -emb[rows[0]]
        return type(ext)(embeddings=emb, fta_reason=reasons, n_faces=ext.n_faces, cache_hits=ext.cache_hits)

    return wrapped


@pytest.fixture(scope="module")
def cache(london, tmp_path_factory):
    """An embedding cache holding the London set (so every run reports the same cache hits)."""
    tmp = tmp_path_factory.mktemp("subtraction")
    evaluate(load_frl_london(london), DlibResNet(), Protocol(bootstrap_replicates=None), cache_dir=tmp / "cache", progress=False)
    return tmp / "cache"


@pytest.fixture(scope="module")
def runs(london, cache):
    tmp = cache.parent
    out = {}
    mp = pytest.MonkeyPatch()
    try:
        for mode in ("ok", "fta", "fnm"):
            mp.undo()
            if mode != "ok":
                mp.setattr(run_module, "extract_embeddings", _fail(mode))
            out[mode] = run_from_config(_config(london, tmp / mode, "london"))
    finally:
        mp.undo()
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_failure_would_be_derivable_without_withholding(london, cache):
    """The attack the design closes: with everyone in the numbers, (all) - visible groups = the person."""
    mp = pytest.MonkeyPatch()
    mp.setattr(run_module, "extract_embeddings", _fail("fta"))
    try:
        res = evaluate(load_frl_london(london), DlibResNet(), Protocol(bootstrap_replicates=None), cache_dir=cache, progress=False)
    finally:
        mp.undo()
    fta = res.per_group[(res.per_group["metric"] == "FTA") & (res.per_group["attribute"] == "face_eth")]
    visible = fta[~fta["group"].isin(["(all)", "east_asian/white"])]
    assert int(fta.loc[fta["group"] == "(all)", "errors"].iloc[0]) - int(visible["errors"].sum()) == 1


@pytest.mark.parametrize("mode", ["fta", "fnm"])
def test_result_folder_is_identical_whatever_the_withheld_person_outcome(runs, mode, london):
    ok, failed = _files(runs["ok"]), _files(runs[mode])
    assert set(ok) == set(failed)
    assert {"metrics.json", "per_group.csv", "report.md", "files.sha256", "cross_group_fmr_face_eth.csv",
            "differentials.csv", "generalized_rates.csv", "eer.csv", "error_rates_face_eth.png", "scores_face_eth.png"} <= set(ok)
    differ = sorted(name for name in ok if ok[name] != failed[name])
    assert differ == [], f"files that depend on subject {PERSON}'s outcome: {differ}"
    # and no path of this machine (dataset root, results, cache, repository) in any of them
    for name, data in ok.items():
        for path in (runs["ok"].parent.parent.parent, REPO, london.parent, london.resolve().parent):
            assert str(path).encode() not in data, name


def test_published_totals_leave_nothing_to_subtract(runs):
    """(all) equals the sum of the published groups for FTA and FNMR in every attribute."""
    pg = pd.read_csv(runs["fta"] / "per_group.csv", keep_default_na=False, na_values=[""])
    assert "east_asian/white" not in set(pg["group"]) and "east_asian&female" not in set(pg["group"])
    for (attr, thr, metric), rows in pg[pg["metric"].isin(["FTA", "FNMR"])].groupby(["attribute", "threshold_name", "metric"]):
        total, groups = rows[rows["group"] == "(all)"], rows[rows["group"] != "(all)"]
        for col in ("errors", "comparisons", "subjects"):
            assert int(total[col].iloc[0]) == int(groups[col].sum()), (attr, thr, metric, col)
    report = (runs["fta"] / "report.md").read_text()
    assert "face_eth: east_asian/white (1)" in report and "face_eth&face_gender: east_asian&female (4)" in report
