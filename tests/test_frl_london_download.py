"""FRL London downloader against a fake figshare API served on 127.0.0.1.

The fake serves ``/v2/articles/5047666/versions/5`` (the listing the real API gives:
``files[].name, size, computed_md5, supplied_md5, download_url``; pooch 1.9.0
``FigshareRepository``, ``shared/docs/sources.md`` §4) and the file bytes. Cases: a good
download, a bad checksum, an interrupted body, hostile archives and API answers, and a
destination that already holds data.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import threading
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from bench.data import frl_london_download as D
from bench.data.frl_london import load_frl_london
from bench.download import main

API_PATH = f"/v2/articles/{D.ARTICLE_ID}/versions/{D.VERSION}"
CSV = b"face_id,face_age,face_gender,face_eth\n001,24,female,white\n002,NA,male,black\n"


def _jpeg(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, shade, shade)).save(buf, format="JPEG")
    return buf.getvalue()


def _zip(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2017, 6, 1, 0, 0, 0)), data)  # same bytes every call
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name, date_time=(2017, 6, 1, 0, 0, 0))
            info.create_system = 3  # unix: external_attr carries the file type
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return buf.getvalue()


def good_files() -> dict[str, bytes]:
    """The three files of the article as the real zips are laid out (top folder + __MACOSX)."""
    return {
        "neutral_front.zip": _zip({
            "neutral_front/001_03.jpg": _jpeg(10),
            "neutral_front/001_03.tem": b"189\n1\t2\n",
            "neutral_front/002_03.jpg": _jpeg(20),
            "__MACOSX/neutral_front/._001_03.jpg": b"mac metadata",
            "neutral_front/001_08.jpg": _jpeg(50),  # another view's code: skipped, counted
        }),
        "smiling_front.zip": _zip({"smiling_front/001_08.jpg": _jpeg(30), "smiling_front/002_08.jpg": _jpeg(40)}),
        "london_faces_info.csv": CSV,
    }


class Fake:
    """State of the fake figshare: files, per-file overrides of the listing, faults."""

    def __init__(self) -> None:
        self.base = ""
        self.files: dict[str, bytes] = good_files()
        self.overrides: dict[str, dict] = {}
        self.article_overrides: dict = {}
        self.truncate: Counter = Counter()  # name -> how many more responses to cut short
        self.hits: Counter = Counter()
        self.raw_api: bytes | None = None  # a hostile API answer sent as is

    def listing(self) -> dict:
        files = []
        for i, (name, data) in enumerate(sorted(self.files.items()) + [("london_faces_ratings.csv", b"x")]):
            entry = {
                "id": 8541961 + i, "name": name, "size": len(data),
                "computed_md5": hashlib.md5(data).hexdigest(), "supplied_md5": "",
                "download_url": f"{self.base}/files/{name}", "is_link_only": False,
            }
            entry.update(self.overrides.get(name, {}))
            files.append(entry)
        art = {"id": D.ARTICLE_ID, "version": D.VERSION, "doi": D.DOI, "title": "Face Research Lab London Set",
               "license": {"name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}, "files": files}
        art.update(self.article_overrides)
        return art


class _Handler(BaseHTTPRequestHandler):
    fake: Fake

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        fake = self.server.fake  # type: ignore[attr-defined]
        if self.path == API_PATH:
            body = fake.raw_api if fake.raw_api is not None else json.dumps(fake.listing()).encode()
        elif self.path.startswith("/files/") and self.path[7:] in fake.files:
            name = self.path[7:]
            fake.hits[name] += 1
            body = fake.files[name]
            if fake.truncate[name] > 0:  # announce the full length, send half, hang up
                fake.truncate[name] -= 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
        else:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def fake(monkeypatch):
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.fake = Fake()  # type: ignore[attr-defined]
    httpd.fake.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield httpd.fake
    httpd.shutdown()
    httpd.server_close()


def run(fake: Fake, dest, *extra: str) -> int:
    return main(["frl_london", "--dest", str(dest), "--api-base", f"{fake.base}/v2", *extra])


def _no_dataset(dest) -> None:
    """Nothing of the dataset was installed (a work folder with verified archives may stay)."""
    present = sorted(p.name for p in dest.iterdir()) if dest.exists() else []
    assert set(present) <= {D.WORK_DIR_NAME}, present
    work = dest / D.WORK_DIR_NAME
    if work.exists():  # only whole, verified downloads: no temporary file, no unpack folder
        assert {p.name for p in work.iterdir()} <= set(D.FILES), sorted(p.name for p in work.iterdir())


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    line = [e for e in err if e.startswith("fvbench-download: frl_london: ")]
    assert len(line) == 1, err
    for n in needles:
        assert n in line[0], line[0]
    return line[0]


# ------------------------------------------------------------------------- good path
def test_good_download_unpacks_the_loader_layout_and_records_hashes(fake, tmp_path, capsys):
    dest = tmp_path / "data" / "frl_london"
    assert run(fake, dest, "--retries", "0") == 0
    assert sorted(p.name for p in dest.iterdir()) == ["fvbench_download.json", "london_info.csv", "neutral_front", "smiling_front"]
    assert sorted(p.name for p in (dest / "neutral_front").iterdir()) == ["001_03.jpg", "001_03.tem", "002_03.jpg"]
    assert (dest / "london_info.csv").read_bytes() == CSV
    m = load_frl_london(dest)
    assert len(m.table) == 4 and m.table["subject_id"].nunique() == 2
    assert m.table.set_index("image_id").loc["002_08", "face_eth"] == "black"

    rec = json.loads((dest / "fvbench_download.json").read_text())
    assert (rec["article_id"], rec["version"], rec["doi"], rec["licence"]) == (5047666, 5, D.DOI, "CC BY 4.0")
    assert rec["licence_listed_by_api"] == "CC BY 4.0"
    by_name = {f["name"]: f for f in rec["files"]}
    assert sorted(by_name) == sorted(D.FILES)
    for name, data in good_files().items():
        assert by_name[name]["md5"] == hashlib.md5(data).hexdigest()
        assert by_name[name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert by_name[name]["size"] == len(data)
    assert rec["unpacked"]["neutral_front"] == {"files": 3, "skipped_members": 1,  # __MACOSX dropped silently
                                                "names": ["001_03.jpg", "001_03.tem", "002_03.jpg"]}
    assert rec["unpacked"]["london_info.csv"] == {"rows": 2}
    assert str(tmp_path) not in json.dumps(rec)  # no machine path in the record
    assert D.read_download_record(dest) == rec
    assert D.release_of(dest) == {  # what a run cites
        "source": "figshare", "doi": D.DOI, "article_id": 5047666, "version": 5, "licence": "CC BY 4.0",
        "files_sha256": {name: hashlib.sha256(data).hexdigest() for name, data in good_files().items()},
    }

    # a rerun on the complete copy downloads nothing
    hits = dict(fake.hits)
    assert run(fake, dest) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert dict(fake.hits) == hits == {name: 1 for name in D.FILES}


def test_layout_matches_the_reference_copy(fake, tmp_path, london):
    dest = tmp_path / "frl_london"
    assert run(fake, dest) == 0
    ours = {p.name for p in dest.iterdir()} - {D.RECORD_NAME}
    assert ours <= {p.name for p in london.iterdir()}
    for view, code in (("neutral_front", "03"), ("smiling_front", "08")):
        assert {p.suffix for p in (dest / view).iterdir()} <= {p.suffix for p in (london / view).iterdir()}
        assert all(p.stem.endswith(f"_{code}") for p in (london / view).glob("*.jpg"))


# ------------------------------------------------------------------- integrity
def test_bad_checksum_is_refused_in_one_line_and_nothing_is_unpacked(fake, tmp_path, capsys):
    wrong = hashlib.md5(b"other bytes").hexdigest()
    fake.overrides["smiling_front.zip"] = {"computed_md5": wrong}
    dest = tmp_path / "frl_london"
    assert run(fake, dest, "--retries", "0") == 1
    _one_line_error(capsys, "smiling_front.zip", wrong, hashlib.md5(good_files()["smiling_front.zip"]).hexdigest())
    _no_dataset(dest)
    assert sorted(p.name for p in (dest / D.WORK_DIR_NAME).iterdir()) == ["neutral_front.zip"]  # verified, kept to resume


def test_interrupted_download_is_refused_and_a_rerun_resumes(fake, tmp_path, capsys):
    fake.truncate["smiling_front.zip"] = 1
    dest = tmp_path / "frl_london"
    assert run(fake, dest, "--retries", "0") == 1
    _one_line_error(capsys, "smiling_front.zip", "1 attempt")
    _no_dataset(dest)
    assert run(fake, dest, "--retries", "0") == 0
    assert fake.hits == Counter({"neutral_front.zip": 1, "smiling_front.zip": 2, "london_faces_info.csv": 1})
    assert len(load_frl_london(dest).table) == 4
    assert not (dest / D.WORK_DIR_NAME).exists()


def test_interrupted_download_is_retried(fake, tmp_path):
    fake.truncate["neutral_front.zip"] = 1
    dest = tmp_path / "frl_london"
    assert run(fake, dest, "--retries", "1") == 0
    assert fake.hits["neutral_front.zip"] == 2
    assert len(load_frl_london(dest).table) == 4


def test_more_bytes_than_declared_are_refused(fake, tmp_path, capsys):
    data = good_files()["london_faces_info.csv"]
    fake.overrides["london_faces_info.csv"] = {"size": len(data) - 5}
    dest = tmp_path / "frl_london"
    assert run(fake, dest, "--retries", "2") == 1
    _one_line_error(capsys, "Content-Length", str(len(data) - 5))
    assert fake.hits["london_faces_info.csv"] == 1  # a refusal is not retried
    _no_dataset(dest)


def test_missing_file_is_refused_without_retry(fake, tmp_path, capsys):
    fake.overrides["smiling_front.zip"] = {"download_url": f"{fake.base}/files/gone.zip"}
    dest = tmp_path / "frl_london"
    assert run(fake, dest, "--retries", "3") == 1
    _one_line_error(capsys, "gone.zip", "HTTP 404")
    _no_dataset(dest)


def test_malformed_info_csv_is_refused_before_install(fake, tmp_path, capsys):
    fake.files["london_faces_info.csv"] = b"face_id,face_age,face_gender,face_eth\nabc,20,male,white\n"
    dest = tmp_path / "frl_london"
    assert run(fake, dest) == 1
    _one_line_error(capsys, "face_id 'abc'")
    _no_dataset(dest)


# -------------------------------------------------------------- hostile archives
@pytest.mark.parametrize(
    "member,why",
    [
        ("/tmp/evil.jpg", "absolute"),
        ("../evil.jpg", "'..'"),
        ("neutral_front/../../evil.jpg", "'..'"),
        ("C:/evil.jpg", "absolute"),
        ("neutral_front\\..\\..\\evil.jpg", "absolute"),
    ],
)
def test_archive_member_escaping_the_folder_is_refused(fake, tmp_path, capsys, member, why):
    fake.files["neutral_front.zip"] = _zip({"neutral_front/001_03.jpg": _jpeg(1), member: _jpeg(2)})
    dest = tmp_path / "frl_london"
    assert run(fake, dest) == 1
    _one_line_error(capsys, "neutral_front.zip", repr(member), why, "refused")
    _no_dataset(dest)
    assert not list(tmp_path.rglob("evil.jpg"))


def test_symlink_member_is_refused(fake, tmp_path, capsys):
    fake.files["smiling_front.zip"] = _zip({"smiling_front/001_08.jpg": _jpeg(1)}, links={"smiling_front/002_08.jpg": "/etc/passwd"})
    dest = tmp_path / "frl_london"
    assert run(fake, dest) == 1
    _one_line_error(capsys, "'smiling_front/002_08.jpg'", "symbolic link")
    _no_dataset(dest)


def test_oversized_member_and_duplicate_targets_are_refused(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(D, "MAX_MEMBER_BYTES", 1000)
    fake.files["neutral_front.zip"] = _zip({"neutral_front/001_03.jpg": b"\0" * 1001})
    assert run(fake, tmp_path / "a") == 1
    _one_line_error(capsys, "declares 1001 bytes", "limit 1000")
    _no_dataset(tmp_path / "a")
    fake.files["neutral_front.zip"] = _zip({"neutral_front/001_03.jpg": _jpeg(1), "001_03.JPG": _jpeg(2)})
    assert run(fake, tmp_path / "b") == 1
    _one_line_error(capsys, "same file")
    _no_dataset(tmp_path / "b")


@pytest.mark.parametrize("name,size,limit", [("neutral_front.zip", 10**13, D.MAX_FILE_BYTES),
                                             ("london_faces_info.csv", D.MAX_CSV_BYTES + 1, D.MAX_CSV_BYTES)])
def test_huge_declared_size_is_refused_before_any_download(fake, tmp_path, capsys, name, size, limit):
    fake.overrides[name] = {"size": size}
    dest = tmp_path / "frl_london"
    assert run(fake, dest) == 1
    _one_line_error(capsys, name, f"declared size {size} bytes exceeds the limit of {limit} bytes")
    assert sum(fake.hits.values()) == 0
    assert not dest.exists()


# ------------------------------------------------------------- hostile API answers
@pytest.mark.parametrize("url", ["http://evil.example.invalid/files/neutral_front.zip", "file:///etc/passwd",
                                 "http://localhost:1/files/neutral_front.zip"])
def test_download_url_on_another_host_is_refused(fake, tmp_path, capsys, url):
    fake.overrides["neutral_front.zip"] = {"download_url": url}
    dest = tmp_path / "frl_london"
    assert run(fake, dest) == 1
    _one_line_error(capsys, repr(url), "refused")
    assert sum(fake.hits.values()) == 0 and not dest.exists()


def test_host_policy_for_the_real_api():
    api = "https://api.figshare.com/v2"
    from bench.data.figshare import check_download_url
    from bench.errors import DownloadError

    for ok in ("https://ndownloader.figshare.com/files/8541961", "https://figshare.com/ndownloader/files/8541961"):
        assert check_download_url(ok, api, "f") == ok
    for bad in ("https://figshare.com.evil.example/files/1", "http://ndownloader.figshare.com/files/1",
                "https://user:pw@ndownloader.figshare.com/files/1", "https://evilfigshare.com/files/1",
                "https://ndownloader.figshare.com@evil.example/files/1",
                "https://evil.example\\@ndownloader.figshare.com/files/1", "https://ndownloader.figshare.com\n.evil/1"):
        with pytest.raises(DownloadError, match="refused|credentials"):
            check_download_url(bad, api, "f")


@pytest.mark.parametrize(
    "field,value,needle",
    [("computed_md5", "not-a-hash", "32 hex"), ("supplied_md5", "0" * 32, "differs from computed_md5"),
     ("is_link_only", True, "link"), ("size", -1, "positive")],
)
def test_malformed_file_entries_are_refused(fake, tmp_path, capsys, field, value, needle):
    fake.overrides["smiling_front.zip"] = {field: value}
    assert run(fake, tmp_path / "d") == 1
    _one_line_error(capsys, "smiling_front.zip", needle)
    assert sum(fake.hits.values()) == 0


def test_another_licence_listed_by_the_api_is_recorded_and_warned(fake, tmp_path, caplog):
    fake.article_overrides["license"] = {"name": "CC BY-NC 4.0"}
    assert run(fake, tmp_path / "d") == 0
    rec = D.read_download_record(tmp_path / "d")
    assert (rec["licence"], rec["licence_listed_by_api"]) == ("CC BY 4.0", "CC BY-NC 4.0")
    assert any("'CC BY-NC 4.0'" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_api_describing_another_version_is_refused(fake, tmp_path, capsys):
    fake.article_overrides["version"] = 4
    assert run(fake, tmp_path / "d") == 1
    _one_line_error(capsys, "version 4", "expected 5047666 version 5")


@pytest.mark.parametrize("body,needle", [
    (b"[" * 100_000 + b"]" * 100_000, "JSON nested deeper than the parser's recursion limit"),
    (b'{"files": [{"size": ' + b"9" * 5000 + b"}]}", "Exceeds the limit (4300 digits)"),
    (b'{"x": "\xff"}', "not UTF-8"),
])
def test_hostile_api_json_is_refused_in_one_line(fake, tmp_path, capsys, body, needle):
    fake.raw_api = body
    assert run(fake, tmp_path / "d") == 1
    _one_line_error(capsys, "response is not acceptable JSON", needle)
    _no_dataset(tmp_path / "d")


@pytest.mark.parametrize(
    "base,needle",
    [("ftp://127.0.0.1/v2", "https://"), ("file:///etc", "https://"), ("http://example.com/v2", "loopback"),
     ("https://u:p@api.figshare.com/v2", "credentials"), ("https://", "no host")],
)
def test_api_base_must_be_https_or_loopback_http(tmp_path, capsys, base, needle):
    assert main(["frl_london", "--dest", str(tmp_path / "d"), "--api-base", base]) == 1
    _one_line_error(capsys, repr(base), needle)
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------ existing data
def test_existing_data_is_never_overwritten_without_force(fake, tmp_path, capsys):
    dest = tmp_path / "frl_london"
    (dest / "neutral_front").mkdir(parents=True)
    (dest / "neutral_front" / "mine.jpg").write_bytes(b"user's own file")
    (dest / "notes.txt").write_text("keep me")
    assert run(fake, dest) == 1
    _one_line_error(capsys, "already holds ['neutral_front', 'notes.txt']", "--force")
    assert (dest / "neutral_front" / "mine.jpg").read_bytes() == b"user's own file"
    assert sum(fake.hits.values()) == 0

    assert run(fake, dest, "--force") == 1  # --force never deletes a file the user put in a view folder
    _one_line_error(capsys, "--force would delete files the previous download did not install (neutral_front/mine.jpg)")
    assert (dest / "neutral_front" / "mine.jpg").read_bytes() == b"user's own file"
    (dest / "neutral_front" / "mine.jpg").unlink()
    assert run(fake, dest, "--force") == 0  # replaces only the dataset's own entries
    assert (dest / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in (dest / "neutral_front").iterdir()) == ["001_03.jpg", "001_03.tem", "002_03.jpg"]


def test_force_replaces_exactly_what_the_record_lists_and_keeps_a_users_photo(fake, tmp_path, capsys):
    dest = tmp_path / "frl_london"
    assert run(fake, dest) == 0
    rec = json.loads((dest / "fvbench_download.json").read_text())
    assert rec["unpacked"]["neutral_front"]["names"] == ["001_03.jpg", "001_03.tem", "002_03.jpg"]
    assert run(fake, dest, "--force") == 0  # only recorded files present: replaced
    (dest / "smiling_front" / "my_own_photo.jpg").write_bytes(b"mine")
    (dest / "neutral_front" / "album").mkdir()
    assert run(fake, dest, "--force") == 1
    line = _one_line_error(capsys)
    assert line == (f"fvbench-download: frl_london: --dest {str(dest)!r}: --force would delete files the previous download did "
                    "not install (neutral_front/album/, smiling_front/my_own_photo.jpg); refusing: move them away first")
    assert (dest / "smiling_front" / "my_own_photo.jpg").read_bytes() == b"mine" and (dest / "neutral_front" / "album").is_dir()


def test_user_files_in_the_work_folder_are_never_deleted(fake, tmp_path, capsys):
    """Attack: DEST/.fvbench-download/ is ignored by the emptiness check and deleted at the end."""
    dest = tmp_path / "D"
    (dest / D.WORK_DIR_NAME / "mystuff").mkdir(parents=True)
    (dest / D.WORK_DIR_NAME / "mystuff" / "thesis.txt").write_text("x")
    for extra in ((), ("--force",)):
        assert run(fake, dest, *extra) == 1
        line = _one_line_error(capsys)
        assert line == (f"fvbench-download: frl_london: {str(dest / D.WORK_DIR_NAME)!r} holds files this tool did not put there "
                        "(mystuff); refusing to download: move them away first")
    assert (dest / D.WORK_DIR_NAME / "mystuff" / "thesis.txt").read_text() == "x"
    assert sum(fake.hits.values()) == 0
    (dest / D.WORK_DIR_NAME / "mystuff" / "thesis.txt").unlink()
    (dest / D.WORK_DIR_NAME / "mystuff").rmdir()
    (dest / D.WORK_DIR_NAME / "unpack" / "neutral_front").mkdir(parents=True)
    (dest / D.WORK_DIR_NAME / "unpack" / "neutral_front" / "notes.txt").write_text("x")
    assert run(fake, dest) == 1
    _one_line_error(capsys, "(unpack/neutral_front/notes.txt)")
    (dest / D.WORK_DIR_NAME / "unpack" / "neutral_front" / "notes.txt").unlink()
    (dest / D.WORK_DIR_NAME / "unpack" / "neutral_front" / "001_03.jpg").write_bytes(b"our own leftover")
    assert run(fake, dest) == 0  # the tool's own leftovers only: the download proceeds and cleans them
    assert not (dest / D.WORK_DIR_NAME).exists()


def test_dest_that_is_a_file_is_refused(fake, tmp_path, capsys):
    dest = tmp_path / "frl_london"
    dest.write_text("a file")
    assert run(fake, dest) == 1
    _one_line_error(capsys, "not a folder")
    assert dest.read_text() == "a file"


# ------------------------------------------------------------- messages and CLI
def test_missing_root_names_layout_licence_and_command(tmp_path):
    from bench.errors import DataError

    root = tmp_path / "absent" / "frl_london"
    with pytest.raises(DataError) as err:
        load_frl_london(root)
    msg = str(err.value)
    assert "\n" not in msg
    for needle in (f"fvbench-download frl_london --dest {root}", "creativecommons.org/licenses/by/4.0",
                   "neutral_front/NNN_03.jpg", "smiling_front/NNN_08.jpg", "london_info.csv", "FVBENCH_DATA_DIR",
                   "10.6084/m9.figshare.5047666.v5"):
        assert needle in msg, needle
    root.mkdir(parents=True)
    with pytest.raises(DataError, match="london_info.csv' not found; get it with: fvbench-download frl_london"):
        load_frl_london(root)


def test_list_names_the_dataset_and_weights_still_dispatch(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "dataset frl_london:" in out and "fvbench-download frl_london --dest DIR" in out
    assert "facenet_vggface2" in out  # the weights registry, from bench.models.weights


@pytest.mark.parametrize("argv", [["frl_londn", "--dest", "X"], ["--dest=X", "frl_londn"]])
def test_misspelt_dataset_with_dest_names_the_dataset(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fvbench-download: unknown dataset 'frl_londn'; did you mean 'frl_london'? datasets: frl_london")
    assert "\n" not in err and "unrecognized arguments" not in err
    assert not (tmp_path / "X").exists()


def test_help_shows_the_dataset_form_first(capsys):
    with pytest.raises(SystemExit) as done:  # the weights part is argparse's help, which exits 0
        main(["--help"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("usage: fvbench-download DATASET --dest DIR")
    assert "fvbench-download frl_london --dest DIR" in lines[1]
    assert any("MODEL" in line for line in lines[2:])


def test_readme_download_command_does_not_become_root_when_the_variable_is_unset():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(l for l in readme.splitlines() if l.startswith("fvbench-download frl_london --dest"))
    assert '"$FVBENCH_DATA_DIR/' not in line
    assert '"${FVBENCH_DATA_DIR:-../shared/datasets}/frl_london"' in line  # configs/paths/default.yaml's default


def test_command_line_refusal_is_one_line_without_traceback(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "bench.download", "frl_london", "--dest", str(tmp_path / "d"), "--api-base", "ftp://127.0.0.1/v2"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "fvbench-download: frl_london: --api-base 'ftp://127.0.0.1/v2': expected an https:// URL (got scheme 'ftp')"
    ]
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("content,needle", [("[1]", "not a JSON object"), ("{", "not JSON"),
                                            ('{"doi": "x", "article_id": "5047666"}', "'article_id'")])
def test_malformed_download_record_is_a_clear_error(tmp_path, content, needle):
    from bench.errors import DataError

    (tmp_path / D.RECORD_NAME).write_text(content)
    with pytest.raises(DataError, match=needle):
        D.release_of(tmp_path)
    assert D.release_of(tmp_path / "elsewhere") is None
