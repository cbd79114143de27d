"""``report.html`` (issue #15): self-contained, escaped, deterministic, and checked in a real browser.

The browser part opens the page of a real run in headless Chromium (Debian's
``chromium`` + ``chromium-driver``, driven by Selenium; ``.ci/run`` installs them) and
asserts on the live DOM: every figure decoded (``naturalWidth > 0``), every table of the
page model present, no console error (a Content-Security-Policy violation, i.e. any
attempt to load something from the network, is one), and screenshots of exactly the
requested desktop (1280 px) and phone (390 px) widths, with no horizontal overflow of
the page at phone width (tables scroll inside their own box).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench.errors import DataError
from bench.report import html

REPO = Path(__file__).resolve().parents[1]
SHOTS = os.environ.get("FVBENCH_SCREENSHOTS")  # set to a folder to keep the screenshots for a person to look at


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real run of the smoke config (figures on) through the CLI, git hidden (see test_determinism)."""
    tmp = tmp_path_factory.mktemp("html")
    env = {**os.environ, "GIT_DIR": str(tmp / "no-git-here")}
    cmd = [sys.executable, "-m", "bench", "debug=smoke", "report.figures=true", "++protocol.bootstrap_replicates=20",
           "run_name=html_run", f"paths.results_dir={tmp / 'results'}", f"paths.cache_dir={tmp / 'cache'}"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "results" / "html_run"


def _tables_in(pg: dict) -> int:
    return sum(1 for s in pg["sections"] for b in [*s["blocks"], *(b for c in s["children"] for b in c["blocks"])] if b["kind"] == "table")


def _figures_in(pg: dict) -> int:
    return sum(1 for s in pg["sections"] for b in [*s["blocks"], *(b for c in s["children"] for b in c["blocks"])] if b["kind"] == "figure")


def test_run_writes_a_self_contained_report(run_dir):
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    pg = html.run_page(run_dir)
    # every figure of the folder is embedded, none is linked
    pngs = sorted(p.name for p in run_dir.glob("*.png"))
    # error rates, cross-group FMR, scores, and DET unless every EER is 0 (report.md shows operating points then)
    assert len(pngs) == _figures_in(pg) >= 3 * len(metrics["protocol"]["attributes"])
    assert text.count('src="data:image/png;base64,') == len(pngs)
    # nothing that would reach the network or run code
    for pattern in (r"https?://", r"<script", r"<link", r"@import", r"url\(", r"<iframe", r"\son[a-z]+="):
        assert not re.search(pattern, text, re.I), pattern
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    # table of contents, reading guide, limitations, provenance; the commit is recorded as in metrics.json
    for anchor in ("summary", "thresholds", "per-group", "reading-guide", "limitations", "provenance"):
        assert f'id="{anchor}"' in text and f'href="#{anchor}"' in text
    assert metrics["dataset"]["manifest_sha256"] in text
    # counts and intervals: the (all) FMR cell at the primary threshold, as published
    primary = metrics["protocol"]["primary_threshold"]
    row = next(r for r in metrics["per_group"] if r["group"] == "(all)" and r["metric"] == "FMR" and r["threshold_name"] == primary)
    assert f"({row['errors']:,} / {row['comparisons']:,})" in text
    # listed in files.sha256, so fvbench-verify sees an edit; and it re-renders identically
    assert "report.html" in (run_dir / "files.sha256").read_text()
    assert html.check_html_report(run_dir) == []


def test_render_is_deterministic_and_edits_are_detected(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert html.render_folder(copy) == (run_dir / "report.html").read_text(encoding="utf-8")
    page = copy / "report.html"
    page.write_text(page.read_text(encoding="utf-8").replace("Limitations", "Limitless", 1), encoding="utf-8")
    assert "differs" in html.check_html_report(copy)[0]
    page.unlink()
    assert "missing" in html.check_html_report(copy)[0]


def test_untrusted_labels_are_escaped(run_dir, tmp_path):
    copy = tmp_path / "evil"
    shutil.copytree(run_dir, copy)
    mpath = copy / "metrics.json"
    metrics = json.loads(mpath.read_text())
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>"'
    for r in metrics["per_group"]:
        if r["group"] != "(all)":
            r["group"] = evil
    metrics["run_name"] = evil
    metrics["config"]["seed"] = "</pre><script>alert(3)</script>"  # shown in the configuration block
    mpath.write_text(json.dumps(metrics))
    text = html.render_folder(copy)
    assert "<script" not in text and "onerror=alert" not in text.replace("onerror=alert(2)&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;/pre&gt;&lt;script&gt;alert(3)" in text


def test_figures_must_be_plain_png_files_inside_the_folder(run_dir, tmp_path):
    copy = tmp_path / "figs"
    shutil.copytree(run_dir, copy)
    name = next(p.name for p in copy.glob("error_rates_*.png"))
    (copy / name).write_bytes(b"<svg onload=alert(1)>")
    with pytest.raises(DataError, match="not a PNG"):
        html.render_folder(copy)
    (copy / name).unlink()
    (copy / name).symlink_to(run_dir / name)
    with pytest.raises(DataError, match="link"):
        html.render_folder(copy)
    with pytest.raises(DataError, match="file name"):
        html.figure(copy, "../x.png", alt="x")
    (copy / name).unlink()  # a missing figure (report.figures=false) is simply left out
    assert html.render_folder(copy).count("data:image/png") == len(list(run_dir.glob("*.png"))) - 1


def test_rate_cell_conventions():
    assert html.rate_cell({"metric": "FMR", "errors": 0, "comparisons": 100, "upper_bound_95": 1 - 0.05 ** (1 / 100), "flag": "zero_errors"}) == [
        "0/100", "≤ 0.03 (95% upper bound)"]  # 1 - 0.05^(1/100) (rule of three, ISO/IEC 19795-1)
    cell = html.rate_cell({"metric": "FMR", "errors": 98, "comparisons": 312, "rate": 98 / 312, "flag": "",
                           "boot_low": 0.11, "boot_high": 0.55, "wilson_low": 0.27, "wilson_high": 0.37})
    assert cell == ["0.314", "(98 / 312)", "[0.11, 0.55]"]  # bootstrap interval preferred when present
    cell = html.rate_cell({"metric": "FNMR", "errors": 3, "comparisons": 50, "rate": 0.06, "flag": "",
                           "boot_low": None, "boot_high": None, "wilson_low": 0.0206, "wilson_high": 0.162})
    assert cell == ["0.06 †", "(3 / 50)", "[0.021, 0.16]"]  # † fewer than 30 errors (rule of 30)
    assert html.rate_cell({"metric": "FTA", "errors": None, "comparisons": 4, "flag": "suppressed_small_group"}) == [
        "counts only", "4 images"]


# --------------------------------------------------------------------------- the browser


def _browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver; .ci/run does this)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="fvbench-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    return drv, profile


def _screenshot(drv, width: int, height: int, mobile: bool, out: Path) -> tuple[int, int, dict]:
    import base64

    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
    drv.refresh()
    drv.execute_script("return document.readyState")
    state = drv.execute_script(
        "return {overflow: document.documentElement.scrollWidth - window.innerWidth, inner: window.innerWidth,"
        " tall: document.documentElement.scrollHeight};")
    shot = drv.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    data = base64.b64decode(shot["data"])
    out.write_bytes(data)
    w, h = html._png_size(data)
    return w, h, state


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """The published London acquisition sweep (in the repository), its page rendered afresh."""
    src = REPO / "results" / "frl_london_dlib_sweep"
    if not (src / "sweep.json").is_file():
        pytest.skip(f"{src} not present")
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    shutil.copytree(src, out)
    html.write_html_report(out)
    return out


def test_sweep_page(sweep_dir):
    text = (sweep_dir / "report.html").read_text(encoding="utf-8")
    doc = json.loads((sweep_dir / "sweep.json").read_text())
    assert text.count('src="data:image/png;base64,') == len(doc["files"]["figures"]) == len(list(sweep_dir.glob("sweep_*.png")))
    # 3 tables (FTA, FNMR, FMR at the primary threshold) per transform and attribute, plus thresholds and packages
    assert _tables_in(html.sweep_page(sweep_dir)) == 3 * len(doc["transforms"]) * len(doc["protocol"]["attributes"]) + 2
    assert html.check_html_report(sweep_dir) == []


_PUBLISHED_RUNS = ("frl_london_dlib", "frl_london_sface", "frl_london_facenet_casia")


@pytest.fixture(scope="module")
def leaderboard_dir(tmp_path_factory) -> Path:
    """A leaderboard of the published London runs (copied, so the sources sit beside it), figures drawn."""
    from bench.aggregate import aggregate

    srcs = [REPO / "results" / r for r in _PUBLISHED_RUNS]
    if not all((s / "metrics.json").is_file() for s in srcs):
        pytest.skip("published London runs not present")
    root = tmp_path_factory.mktemp("lb")
    for s in srcs:  # as published (a clean clone): without the git-ignored score tables a local rerun leaves
        shutil.copytree(s, root / s.name, ignore=shutil.ignore_patterns("scores.parquet", "histograms.npz"))
    return aggregate([root / s.name for s in srcs], root / "leaderboard_frl_london")


@pytest.fixture(scope="module")
def identification_dir(tmp_path_factory) -> Path:
    """The published London identification folder (in the repository), its page rendered afresh."""
    src = REPO / "results" / "frl_london_dlib_identification"
    if not (src / "metrics.json").is_file():
        pytest.skip(f"{src} not present")
    out = tmp_path_factory.mktemp("ident") / "ident"
    shutil.copytree(src, out)
    html.write_html_report(out)
    return out


def _page_of(kind: str, folder: Path) -> dict:
    from bench.report.identification_html import identification_page
    from bench.report.leaderboard_html import leaderboard_page

    return {"run": html.run_page, "sweep": html.sweep_page, "leaderboard": leaderboard_page,
            "identification": identification_page}[kind](folder)


def test_leaderboard_page(leaderboard_dir):
    import pandas as pd

    text = (leaderboard_dir / "report.html").read_text(encoding="utf-8")
    assert "report.html" in (leaderboard_dir / "files.sha256").read_text()
    pngs = sorted(p.name for p in leaderboard_dir.glob("*.png"))
    # FMR and FNMR by group for each of the 3 attributes (face_eth, face_gender, their product); the score-shift
    # figure needs scores.parquet, which published folders do not carry
    assert len(pngs) == 6 and text.count('src="data:image/png;base64,') == 6
    for pattern in (r"https?://", r"<script", r"<link", r"url\(", r"\son[a-z]+="):
        assert not re.search(pattern, text, re.I), pattern
    pg = _page_of("leaderboard", leaderboard_dir)
    # one table per attribute x threshold (3 x (nominal where the model has one + FMR=1e-3 ...)), models, sources
    tidy = pd.read_csv(leaderboard_dir / "leaderboard.csv", keep_default_na=False)
    n_at = len(tidy[(tidy["threshold_name"] != "")][["attribute", "threshold_name"]].drop_duplicates())
    assert _tables_in(pg) == n_at + 2
    # counts and intervals as in leaderboard.csv: the dlib (all) FMR at its nominal threshold
    r = tidy[(tidy["run"] == "frl_london_dlib") & (tidy["quantity"] == "FMR") & (tidy["threshold_name"] == "nominal")].iloc[0]
    assert f"({int(r['errors']):,} / {int(r['comparisons']):,})" in text
    assert f"[{float(r['low']):.2g}, {float(r['high']):.2g}]" in text
    for anchor in ("summary", "models", "reading-guide", "limitations", "provenance"):
        assert f'id="{anchor}"' in text and f'href="#{anchor}"' in text
    src = json.loads((leaderboard_dir / "sources.json").read_text())
    from markupsafe import escape

    assert all(s["metrics_sha256"] in text and str(escape(s["licence"])) in text for s in src["sources"])


def test_identification_page(identification_dir):
    from bench.report.identification_html import false_candidate_interval

    text = (identification_dir / "report.html").read_text(encoding="utf-8")
    m = json.loads((identification_dir / "metrics.json").read_text())
    ident = m["identification"]
    pngs = sorted(p.name for p in identification_dir.glob("ident_*.png"))
    assert len(pngs) >= 2 * len(ident["protocol"]["attributes"]) and text.count('src="data:image/png;base64,') == len(pngs)
    # the (all) FPIR at the primary threshold: counts and bootstrap interval as published
    r = next(x for x in ident["per_group"] if x["group"] == "(all)" and x["metric"] == "FPIR" and x["threshold_name"] == ident["primary_threshold"])
    assert f"({r['errors']:,} / {r['n']:,})" in text and f"[{r['boot_low']:.2g}, {r['boot_high']:.2g}]" in text
    # false candidates: k / (searches x enrolled) with a Wilson interval (Wilson 1927): 30 of 100 x 6 pairs -> [0.0352, 0.0705]
    lo, hi = false_candidate_interval(30, 100, 6)
    assert (round(lo, 4), round(hi, 4)) == (0.0352, 0.0705)
    assert false_candidate_interval(None, 100, 6) is None and false_candidate_interval(0, 0, 6) is None
    for anchor in ("summary", "thresholds", "per-group", "reading-guide", "limitations", "provenance"):
        assert f'id="{anchor}"' in text and f'href="#{anchor}"' in text
    assert html.check_html_report(identification_dir) == []


@pytest.mark.parametrize("kind", ["run", "sweep", "leaderboard", "identification"])
def test_report_in_headless_chromium(request, tmp_path, kind):
    folder = request.getfixturevalue(f"{kind}_dir")
    pg = _page_of(kind, folder)
    drv, profile = _browser()
    try:
        drv.get((folder / "report.html").resolve().as_uri())
        drv.execute_script("return document.readyState")
        dom = drv.execute_script("""
            const imgs = Array.from(document.images);
            return {images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
                    tables: document.querySelectorAll('table').length,
                    toc: Array.from(document.querySelectorAll('nav.toc a')).map(a => a.getAttribute('href')),
                    ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
                    title: document.title};""")
        assert dom["images"] == _figures_in(pg) > 0
        assert dom["loaded"] == dom["images"], dom
        assert dom["tables"] == _tables_in(pg) > 0
        assert all(h[1:] in dom["ids"] for h in dom["toc"])  # every contents link has its target
        assert dom["title"] == pg["title"]
        shots = Path(SHOTS) if SHOTS else tmp_path
        shots.mkdir(parents=True, exist_ok=True)
        w, h, state = _screenshot(drv, 1280, 900, False, shots / f"{kind}_desktop.png")
        assert (w, h) == (1280, 900) and state["overflow"] <= 0
        w, h, state = _screenshot(drv, 390, 844, True, shots / f"{kind}_phone.png")
        assert (w, h) == (390, 844) and state["inner"] == 390
        assert state["overflow"] <= 0, f"page wider than a phone screen by {state['overflow']} px"
        errors = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == [], errors
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_reports_cite_docs_only_and_det_legend_is_not_a_group_name(run_dir, identification_dir, monkeypatch, tmp_path):
    """Reports cite docs/ (the section report.md cites for the same text), never the reference
    notes; the DET legend names the overall curve so it cannot be read as the group 'Black'."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from bench.metrics.rates import det_curve
    from bench.report import plots

    for folder in (run_dir, identification_dir):
        text = (folder / "report.html").read_text(encoding="utf-8")
        assert "metrics-reference" not in text and "docs/protocol.md §5" in text
    # the DET legend of a run with an (all) curve
    seen = []
    close = plt.close
    monkeypatch.setattr(plots.plt, "close", lambda fig: (seen.append([t.get_text() for t in fig.axes[0].get_legend().get_texts()]), close(fig)))
    det = det_curve([0.8, 0.9], [0.1, 0.2])
    eer = pd.DataFrame([{"attribute": "a", "group": g, "n_mated": 2, "n_nonmated": 2, "eer": 0.5} for g in ("(all)", "x")])
    plots.plot_det({("a", "(all)"): det, ("a", "x"): det}, eer, pd.DataFrame(columns=["attribute", "group", "threshold_name", "metric", "rate"]),
                   "a", [], tmp_path / "det.png", title="t")
    assert seen and any(t.endswith("(all groups; black dashed line)") for t in seen[0])
    assert not any("(all groups, black)" in t for t in seen[0])
