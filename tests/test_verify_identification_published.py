"""``fvbench-verify`` of a PUBLISHED identification folder (no stored searches): from its counts (issues #13, #15).

The folder is a copy of the published London identification run (its ``report.html``
rendered by this checkout). Each tamper edits ``metrics.json`` consistently with the CSV
and ``files.sha256`` where a careful forger would, so only the recomputation catches it.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.report.folder import write_file_manifest
from bench.report.html import write_html_report
from bench.verify import verify_run

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "results" / "frl_london_dlib_identification"


@pytest.fixture()
def folder(tmp_path) -> Path:
    if not (SRC / "metrics.json").is_file():
        pytest.skip(f"{SRC} not present")
    out = tmp_path / SRC.name
    shutil.copytree(SRC, out)
    for f in ("identification_search.parquet", "identification_gallery.parquet"):
        (out / f).unlink(missing_ok=True)  # as published (git-ignored)
    write_html_report(out)
    write_file_manifest(out)
    return out


def _verify(folder: Path):
    return verify_run(folder, check_dataset=False, check_weights=False)


def _status(rep) -> dict[str, str]:
    return {c.name: c.status for c in rep.checks}


def test_published_folder_verifies_from_counts(folder):
    rep = _verify(folder)
    assert rep.ok, rep.to_text()
    st = _status(rep)
    for name in ("identification_per_group", "identification_counts", "identification_thresholds", "identification_false_candidates",
                 "identification_false_candidate_cells", "identification_cross_fmr", "identification_per_group.csv", "report.html"):
        assert st[name] == "ok", name
    assert st["identification_search"] == "skipped"  # threshold values and bootstrap need the searches, and say so


def _tamper(folder: Path, edit, *, csv: str | None = None, csv_edit=None) -> None:
    path = folder / "metrics.json"
    m = json.loads(path.read_text())
    edit(m["identification"])
    path.write_text(json.dumps(m, indent=2) + "\n")
    if csv:
        df = pd.read_csv(folder / csv, keep_default_na=False)
        csv_edit(df)
        df.to_csv(folder / csv, index=False, float_format="%.10g", lineterminator="\n")
    write_html_report(folder)  # the careful forger re-renders the page and the hashes
    write_file_manifest(folder)


def _row(rows, **kw):
    return next(r for r in rows if all(str(r.get(k)) == str(v) for k, v in kw.items()))


def test_an_edited_rate_is_caught(folder):
    def edit(ident):
        r = _row(ident["per_group"], attribute="face_eth", group="white", metric="FPIR", threshold_name="nominal")
        r["rate"] = r["rate"] / 2  # the count stays: the rate no longer follows from it
    _tamper(folder, edit)
    rep = _verify(folder)
    assert _status(rep)["identification_per_group"] == "mismatch"
    assert "rate" in next(c.detail for c in rep.checks if c.name == "identification_per_group")


def test_an_edited_count_breaks_the_sums(folder):
    def edit(ident):  # one group's errors, its rate and Wilson interval made consistent: only the (all) sum can tell
        from bench.metrics.intervals import wilson_interval

        r = _row(ident["per_group"], attribute="face_gender", group="female", metric="FPIR", threshold_name="nominal")
        r["errors"] -= 3
        r["rate"] = r["errors"] / r["n"]
        lo, hi = wilson_interval(r["errors"], r["n"], confidence=0.95)
        r["ci_low"], r["ci_high"] = float(lo), float(hi)
        r["flag"] = "" if r["errors"] >= 30 else "low_precision" if r["errors"] else "zero_errors"
        r["generalized_rate"] = r["errors"] / (r["n"] + r["fta"])
    _tamper(folder, edit)
    rep = _verify(folder)
    st = _status(rep)
    assert st["identification_counts"] == "mismatch" and st["identification_per_group"] == "ok"
    assert "sum over groups" in next(c.detail for c in rep.checks if c.name == "identification_counts")


def test_an_edited_false_candidate_count_is_caught(folder):
    def edit(ident):
        r = _row(ident["false_candidates_by_gallery_group"], attribute="face_eth", gallery_group="black", threshold_name="nominal")
        r["false_candidates"] += 6  # per person and rate adjusted too: only the cells' sum disagrees
        r["per_enrolled_person"] = r["false_candidates"] / r["enrolled"]
        r["rate"] = r["false_candidates"] / (r["enrolled"] * r["nonmated_searches"])

    def csv_edit(df):
        i = df.index[(df["attribute"] == "face_eth") & (df["gallery_group"] == "black") & (df["threshold_name"] == "nominal")][0]
        df.loc[i, "false_candidates"] = int(df.loc[i, "false_candidates"]) + 6
        df.loc[i, "per_enrolled_person"] = df.loc[i, "false_candidates"] / df.loc[i, "enrolled"]
        df.loc[i, "rate"] = df.loc[i, "false_candidates"] / (df.loc[i, "enrolled"] * df.loc[i, "nonmated_searches"])
    _tamper(folder, edit, csv="identification_false_candidates.csv", csv_edit=csv_edit)
    rep = _verify(folder)
    st = _status(rep)
    assert st["identification_false_candidates"] == "mismatch", rep.to_text()
    assert st["identification_false_candidates.csv"] == "ok"
    assert "sum over probe groups" in next(c.detail for c in rep.checks if c.name == "identification_false_candidates")


def test_an_achieved_fpir_that_does_not_follow_from_k_and_n(folder):
    def edit(ident):
        t = _row(ident["thresholds"], kind="target_fpir")
        t["achieved_fpir"] = t["achieved_fpir"] / 5
    _tamper(folder, edit)
    st = _status(_verify(folder))
    assert st["identification_thresholds"] == "mismatch"


def test_a_csv_that_disagrees_with_metrics_json(folder):
    df = pd.read_csv(folder / "identification_per_group.csv", keep_default_na=False)
    i = df.index[(df["group"] == "(all)") & (df["metric"] == "FPIR")][0]
    df.loc[i, "errors"] = int(df.loc[i, "errors"]) + 1
    df.to_csv(folder / "identification_per_group.csv", index=False, float_format="%.10g", lineterminator="\n")
    write_file_manifest(folder)
    st = _status(_verify(folder))
    assert st["identification_per_group.csv"] == "mismatch"


def test_false_candidate_interval_of_the_published_numbers(folder):
    """The page's false-candidate interval: Wilson (1927) over search x person pairs, from the published counts."""
    from bench.metrics.intervals import wilson_interval
    from bench.report.identification_html import false_candidate_interval

    ident = json.loads((folder / "metrics.json").read_text())["identification"]
    r = _row(ident["false_candidates_by_gallery_group"], attribute="face_eth", gallery_group="black", threshold_name=ident["primary_threshold"])
    assert r["false_candidates"] > 0
    lo, hi = false_candidate_interval(r["false_candidates"], r["nonmated_searches"], r["enrolled"])
    elo, ehi = wilson_interval(r["false_candidates"], r["nonmated_searches"] * r["enrolled"], confidence=0.95)
    assert (lo, hi) == (float(elo), float(ehi)) and lo < r["rate"] < hi and not math.isnan(lo)
    assert f"[{lo:.2g}, {hi:.2g}] Wilson (a floor)" in (folder / "report.html").read_text(encoding="utf-8")
