"""report.md never carries raw HTML from a group label (Markdown renderers pass raw HTML through)."""

from __future__ import annotations

from bench.report.markdown_escape import escape_raw_html
from bench.report.writer import write_results
from bench.run import Protocol, evaluate
from bench.synthetic.generator import SyntheticPopulation

EVIL = "<script>alert(1)</script>&amp;"


def test_escape_raw_html_defuses_tags_and_keeps_ordinary_text():
    assert escape_raw_html(f"| {EVIL} | 1 |") == "| &lt;script>alert(1)&lt;/script>&amp;amp; | 1 |"
    assert escape_raw_html("<!-- x --> <?php ?> <img src=x onerror=y>") == "&lt;!-- x --> &lt;?php ?> &lt;img src=x onerror=y>"
    kept = "age <30, FMR < 1e-3, R&D, > quote, `protocol.pair_list=<that file>`"
    assert escape_raw_html(kept) == kept


def test_hostile_group_label_is_escaped_in_report_md(tmp_path):
    spec = {"identity_spread": 1.0, "image_noise": 0.8, "images_per_subject": 3, "subjects": 8, "fta_rate": 0.0}
    label = "<script>alert(1)</script>"  # '&' is refused in labels (it joins intersection groups)
    pop = SyntheticPopulation({"a": {**spec, "labels": {"g": label}}, "b": {**spec, "labels": {"g": "plain"}}}, seed=3, dim=16)
    res = evaluate(pop, None, Protocol(target_fmrs=[0.05], bootstrap_replicates=None), cache_dir=tmp_path / "c", progress=False,
                   min_group_subjects=1)
    out = write_results(res, tmp_path / "o", run_name="o", config={}, min_group_subjects=1, figures=False)
    md = (out / "report.md").read_text()
    assert "<script" not in md and "</script" not in md
    assert "&lt;script>alert(1)&lt;/script>" in md  # shown to the reader as the label was written
    assert "plain" in md
