"""``fvbench-verify`` checks ``report.html`` (issue #15): a forged page fails, naming report.html.

The forger is assumed to be careful: after editing ``report.html`` they rewrite
``files.sha256`` too, so only the re-rendering can catch the edit. Folders: copies of the
published London run, sweep and leaderboard (the sources copied beside it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.report.folder import write_file_manifest
from bench.report.html import check_html_report, write_html_report
from bench.verify import verify_main, verify_run

REPO = Path(__file__).resolve().parents[1]
RUNS = ("frl_london_dlib", "frl_london_sface", "frl_london_facenet_casia")


def _copy(name: str, dest: Path) -> Path:
    src = REPO / "results" / name
    if not src.is_dir():
        pytest.skip(f"published folder {name} not present")
    out = dest / name
    shutil.copytree(src, out)
    write_html_report(out)  # the page this checkout renders (published pages are refreshed when the lead republishes)
    write_file_manifest(out)
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    from bench.aggregate import aggregate

    root = tmp_path_factory.mktemp("verify_html")
    out = {"run": _copy("frl_london_dlib", root), "sweep": _copy("frl_london_dlib_sweep", root)}
    for r in RUNS[1:]:
        _copy(r, root)
    out["leaderboard"] = aggregate([root / r for r in RUNS], root / "leaderboard_frl_london", figures=False)
    return out


def _verify(folder: Path):
    return verify_run(folder, check_dataset=False, check_weights=False, check_bootstrap=False, check_figures=False)


def _forge(folder: Path, edit) -> None:
    page = folder / "report.html"
    text = page.read_text(encoding="utf-8")
    forged = edit(text)
    assert forged != text
    page.write_text(forged, encoding="utf-8")
    write_file_manifest(folder)  # a careful forger updates the hashes too


FORGERIES = {
    "number": lambda t: t.replace(" / ", " / 1", 1),  # one count in a cell: (e / n) -> (e / 1n)
    "script": lambda t: t.replace("</footer>", "<script>fetch('x')</script></footer>", 1),
    "external url": lambda t: t.replace("</footer>", '<img src="https://example.org/pixel.png" alt=""></footer>', 1),
    "csp removed": lambda t: t.replace("default-src 'none'", "default-src *", 1),
}


@pytest.mark.parametrize("kind", ["run", "sweep", "leaderboard"])
def test_untouched_folder_verifies(folders, kind):
    rep = _verify(folders[kind])
    html = [c for c in rep.checks if c.name == "report.html"] if kind != "leaderboard" else rep.checks
    assert rep.ok, rep.to_text()
    assert html and all(c.status == "ok" for c in html)


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
@pytest.mark.parametrize("kind", ["run", "sweep", "leaderboard"])
def test_every_forgery_is_caught_by_the_html_check(folders, tmp_path, kind, forgery):
    from bench.verify_html import html_check

    folder = tmp_path / folders[kind].name
    shutil.copytree(folders[kind], folder)
    _forge(folder, FORGERIES[forgery])
    c = html_check(folder)
    assert (c.name, c.status) == ("report.html", "mismatch") and "differs" in c.detail


@pytest.mark.parametrize(("kind", "forgery"), [("run", "number"), ("sweep", "script"), ("leaderboard", "external url")])
def test_forged_report_html_fails_verify_naming_it(folders, tmp_path, kind, forgery, capsys):
    folder = tmp_path / folders[kind].name
    if kind == "leaderboard":  # its sources must sit beside it
        for p in folders[kind].parent.iterdir():
            shutil.copytree(p, tmp_path / p.name)
    else:
        shutil.copytree(folders[kind], folder)
    _forge(folder, FORGERIES[forgery])
    rep = _verify(folder)
    bad = [c for c in rep.checks if c.status == "mismatch"]
    assert [c.name for c in bad] == ["report.html"], rep.to_text()
    assert "differs" in bad[0].detail
    assert verify_main([str(folder), "--skip-dataset", "--skip-weights", "--skip-bootstrap", "--skip-figures"]) == 1
    assert "[mismatch] report.html" in capsys.readouterr().out


def test_missing_report_html_is_a_mismatch(folders, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(folders["run"], folder)
    (folder / "report.html").unlink()
    write_file_manifest(folder)
    rep = _verify(folder)
    assert [c.name for c in rep.checks if c.status == "mismatch"] == ["report.html"]
    assert "missing" in check_html_report(folder)[0]


def test_aggregate_verify_names_report_html(folders, tmp_path, capsys):
    from bench.aggregate import aggregate_main

    for p in folders["leaderboard"].parent.iterdir():
        shutil.copytree(p, tmp_path / p.name)
    lb = tmp_path / "leaderboard_frl_london"
    assert aggregate_main(["--verify", str(lb)]) == 0
    _forge(lb, FORGERIES["script"])
    assert aggregate_main(["--verify", str(lb)]) == 1
    assert "report.html: differs" in capsys.readouterr().err
