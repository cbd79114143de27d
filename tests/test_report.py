"""report.md and the figures explain themselves (issue 10; docs/protocol.md §0.3, §1.4, §4, §5, §9).

A small seeded synthetic run (two attributes and their intersection, failures to acquire,
a three-subject group, the mitigation analysis) is written once; the tests read its
published folder as a user would.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import bench.report.plots as plots
from bench.synthetic.generator import SyntheticPopulation
from bench.report.markdown import (
    figure_plan,
    format_threshold,
    load_published_tables,
    render_report,
    render_report_from_folder,
)
from bench.report.writer import stage_timings, write_results
from bench.run import Protocol, evaluate

REPO = Path(__file__).resolve().parents[1]

GROUPS = {  # eth x sex; group c/f has three subjects; failures to acquire in a/*
    f"{e}_{s}": {"subjects": n, "images_per_subject": 2, "identity_spread": sp, "image_noise": 0.5, "image_noise_sd": 0.2,
                 "fta_rate": 0.15 if e == "a" else 0.0, "labels": {"eth": e, "sex": s}}
    for (e, sp) in (("a", 1.1), ("b", 1.6), ("c", 2.4))
    for s, n in (("f", 3 if e == "c" else 20), ("m", 18))
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, object]:
    pop = SyntheticPopulation(GROUPS, dim=24, seed=11, name="report_test")
    protocol = Protocol(target_fmrs=[1e-2, 1e-3], bootstrap_replicates=200, seed=5, per_group_thresholds=True,
                        intersections=[["eth", "sex"]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(pop, None, protocol, cache_dir="unused", progress=False)
    out = tmp_path_factory.mktemp("res") / "report_test"
    config = {"dataset": {"name": "report_test", "description": "Seeded synthetic test population."},
              "protocol": {"bootstrap_replicates": 200}, "report": {"figures": True, "min_group_subjects": 1}}
    write_results(result, out, run_name="report_test", config=config, min_group_subjects=1)
    return out, result


def test_report_is_a_pure_function_of_the_published_files(run):
    out, _ = run
    text = (out / "report.md").read_text()
    assert render_report_from_folder(out) == text
    # same from metrics.json alone (tables fall back to the rows stored there)
    metrics = json.loads((out / "metrics.json").read_text())
    assert render_report(metrics, {}) .startswith("# fvbench result: report_test")
    assert render_report(metrics, load_published_tables(out)) == text


def test_report_cites_the_projects_own_protocol(run):
    out, _ = run
    text = (out / "report.md").read_text()
    assert "docs/protocol.md" in text and "](../../docs/protocol.md)" in text
    assert "metrics-reference" not in text and "shared/" not in text
    for section in set(re.findall(r"§(\d+(?:\.\d+)?)", text)):  # every cited section exists in docs/protocol.md
        assert re.search(rf"^#+ {re.escape(section)}[ .]", (REPO / "docs" / "protocol.md").read_text(), re.M), section


def test_limitations_section_is_generated_from_the_run(run):
    out, _ = run
    text = (out / "report.md").read_text()
    lim = text.split("## Limitations", 1)[1].split("\n## ", 1)[0]
    assert "Seeded synthetic test population." in lim or "synthetic population" in lim
    assert "Images per subject" in lim and "per subject on average" in lim
    assert "Labels**: generator" in lim
    assert "Rule of 30" in lim and "fewer than 30 errors" in lim
    assert "Small groups" in lim
    assert "What the intervals cover" in lim and "What they do not cover" in lim


def test_differentials_table_explains_columns_reasons_and_bias_once(run):
    out, _ = run
    text = (out / "report.md").read_text()
    assert text.count("biased upward") == 1  # the warning, once, in words
    assert "**parity value**" in text and "**interval includes parity**" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "(`" in ln and "§" in ln]
    assert rows
    for ln in rows:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if cells[1] == "not estimable":
            assert cells[-1], ln  # a reason, always
    diff = pd.read_csv(out / "differentials.csv")
    nan = diff[diff["value"].isna() & ~diff["measure"].str.endswith("max_vs_min_group_difference")]
    assert len(nan) and nan["reason"].fillna("").str.contains("not estimable").all()


def test_overall_row_has_one_interval_across_attributes(run):
    out, _ = run
    pg = pd.read_csv(out / "per_group.csv")
    rows = pg[(pg["group"] == "(all)") & pg["metric"].isin(["FMR", "FNMR"])]
    assert set(rows["attribute"]) == {"eth", "sex", "eth&sex"}
    per_key = rows.groupby(["threshold_name", "metric"])[["boot_low", "boot_high"]].nunique()
    assert (per_key == 1).all().all()


def test_fnmr_has_no_undefined_replicates_and_fmr_ones_are_reported(run):
    out, _ = run
    pg = pd.read_csv(out / "per_group.csv")
    fnmr = pg[(pg["metric"] == "FNMR") & (pg["comparisons"] > 0)]
    assert (fnmr["n_undefined"] == 0).all()  # one-image subjects (failed image) are resampled apart
    und = pg[(pg["metric"] == "FMR") & (pg["n_undefined"] > 0)]
    assert set(und["group"]) <= {"c", "c&f"} and len(und)  # the three-subject group
    text = (out / "report.md").read_text()
    for _, r in und.iterrows():
        assert f"{r['attribute']}/{r['group']} FMR @ {r['threshold_name']}: {int(r['n_undefined'])} of 200" in text


def test_mitigation_refusals_have_their_own_column(run):
    out, _ = run
    text = (out / "report.md").read_text()
    sec = text.split("## Mitigation analysis", 1)[1].split("\n## ", 1)[0]
    head = [ln for ln in sec.splitlines() if ln.startswith("| attribute")][0]
    assert head.rstrip(" |").endswith("refused because")
    refused = [ln for ln in sec.splitlines() if "| refused |" in ln]
    assert refused
    for ln in refused:
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        assert cells[3] == "refused" and cells[4] == cells[5] == "" and "cannot resolve target FMR" in cells[6]


def test_thresholds_read_true_as_printed():
    assert format_threshold(-0.6) == "-0.6"
    assert format_threshold(float(np.nextafter(0.9, 1))) == "just above 0.9"
    rng = np.random.default_rng(0)
    for t in rng.normal(0, 1, 200):
        s = format_threshold(float(t))
        if s.startswith("just above "):
            x = float(s.removeprefix("just above "))
            assert float(np.nextafter(x, np.inf)) == t
        else:
            assert float(s) == t  # exactly the threshold: "score >= t" reads true for every score


def test_report_prints_the_eer_crossing_where_a_tie_leaves_a_gap(run):
    out, _ = run
    eer = pd.read_csv(out / "eer.csv")
    assert "eer_crossing" in eer.columns
    gap = eer[eer["eer_low"] < eer["eer_high"]]
    text = (out / "report.md").read_text()
    assert len(gap) and "the curves cross at" in text
    ok = eer.dropna(subset=["eer"])
    assert ((ok["eer_crossing"] >= 0) & (ok["eer_crossing"] <= 1)).all()


def test_det_is_replaced_when_every_eer_is_zero(run):
    out, _ = run
    metrics = json.loads((out / "metrics.json").read_text())
    tables = load_published_tables(out)
    eer = tables["eer"].copy()
    assert figure_plan(metrics, tables)["eth"]["det"] == "det_eth.png" and (out / "det_eth.png").is_file()
    eer.loc[eer["attribute"] == "eth", ["eer", "eer_low", "eer_high", "eer_crossing"]] = 0.0
    tables["eer"] = eer
    assert figure_plan(metrics, tables)["eth"]["det"] is None
    text = render_report(metrics, tables)
    block = text.split("### eth\n", 1)[1].split("\n### ", 1)[0]
    assert "det_eth.png" not in block and "No DET figure for eth" in block and "(FMR, FNMR) @ FMR=1e-02" in block


def _captured_figure(monkeypatch, draw):
    figs = []
    monkeypatch.setattr(plots.plt, "close", lambda fig=None: figs.append(fig))
    draw()
    assert figs
    fig = figs[-1]
    plt.close(fig)
    return fig


def test_error_rate_figure_has_no_slot_for_a_counts_only_group_and_marks_zero_lower_ends(run, monkeypatch, tmp_path):
    out, _ = run
    pg = pd.read_csv(out / "per_group.csv")
    pg.loc[(pg["attribute"] == "eth") & (pg["group"] == "c"), "flag"] = "suppressed_small_group"
    fig = _captured_figure(monkeypatch, lambda: plots.plot_error_rates(pg, "eth", tmp_path / "e.png", title="t", interval="boot"))
    ax = fig.axes[0]
    labels = [t.get_text().split("\n")[0] for t in ax.get_xticklabels()]
    assert labels == ["(all)", "a", "b"]  # no empty slot for c
    lo, _ = ax.get_ylim()
    for line in ax.get_lines():  # nothing runs off the axis: every drawn point lies inside the limits
        y = np.asarray(line.get_ydata(), dtype=float)
        assert y.size == 0 or y.min() >= lo
    caps = [ln for ln in ax.get_lines() if ln.get_marker() == "_" and len(ln.get_xdata())]  # legend handles are empty
    boot_zero = pg[(pg["attribute"] == "eth") & (pg["metric"] == "FMR") & (pg["group"].isin(["a", "b"]))
                   & (pg["errors"] > 0) & (pg["boot_low"] == 0)]
    assert len(caps) == len(boot_zero)  # every interval with lower end 0 gets its cap


def test_matrix_colour_bar_spans_the_data(run, monkeypatch, tmp_path):
    out, result = run
    cross = pd.read_csv(out / "cross_group_fmr_eth.csv")
    fig = _captured_figure(monkeypatch, lambda: plots.plot_fmr_matrix(cross, "eth", result.primary_threshold, tmp_path / "m.png", title="t"))
    norm = fig.axes[0].images[0].norm
    pos = cross.loc[cross["fmr"] > 0, "fmr"]
    assert norm.vmin <= pos.min() and norm.vmax >= pos.max()
    assert norm.vmax / norm.vmin <= max(3.0, pos.max() / pos.min()) * (1 + 1e-9)  # no decade of empty bar


def test_stage_timings_add_up_to_the_wall_time(run):
    _, result = run
    timings = {**result.timings, "setup_s": 0.25}
    assert {"tables_s", "figures_s", "report_s"} <= set(timings)
    total = sum(v for k, v in timings.items() if k != "bootstrap_s") + 0.5
    line = stage_timings(timings, total)
    head, terms = line.split(" s = ")
    parts = [float(p.split(" ")[-1]) for p in re.sub(r" \([^)]*\)", "", terms).split(" + ")]
    assert float(head) == pytest.approx(total, abs=0.005)
    assert sum(parts) == pytest.approx(total, abs=0.005 * len(parts))
    assert "figures" in terms and "report" in terms and "publish" in terms
