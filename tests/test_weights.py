"""Weights registry, cache and download path, against an HTTP server started on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.errors import UnverifiedWeightsWarning, WeightsError
from bench.models import weights as W
from bench.models.dlib_resnet import DLIB_WEIGHTS_SHA256

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB of known bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
MEMBER = b"tiny onnx stand-in" * 1000
MEMBER_SHA = hashlib.sha256(MEMBER).hexdigest()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pack/readme.txt", b"not this one")
        z.writestr("pack/model.onnx", MEMBER)  # nested, as some InsightFace packs are
    return buf.getvalue()


ZIP = _zip_bytes()


class _Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if self.path in ("/good.bin", "/unknown.bin"):
            body = PAYLOAD
        elif self.path == "/pack.zip":
            body = ZIP
        elif self.path == "/truncated.bin":
            # announce the full length, send half, hang up: an interrupted download
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
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


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FVBENCH_CACHE", str(tmp_path / "cache"))
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return tmp_path / "cache"


def _register(monkeypatch, name: str, f: W.WeightsFile) -> None:
    monkeypatch.setitem(W.WEIGHTS_REGISTRY, name, W.ModelWeights(name, (f,), "test licence", "test weights"))


def _leftovers(folder):
    """Every file under ``folder`` (temporary files included)."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_good_file_downloads_verifies_and_is_not_fetched_twice(server, cache, monkeypatch):
    f = W.WeightsFile("good.bin", PAYLOAD_SHA, len(PAYLOAD), "test", url=f"{server}/good.bin")
    _register(monkeypatch, "t_good", f)
    before = _Handler.hits.get("/good.bin", 0)
    got = W.download_weights("t_good", progress=False)
    assert got["good.bin"].path == cache.resolve() / "weights" / "good.bin"
    assert got["good.bin"].path.read_bytes() == PAYLOAD
    assert got["good.bin"].sha256 == PAYLOAD_SHA
    again = W.download_weights("t_good", progress=False)  # present and valid: no request
    assert again["good.bin"].sha256 == PAYLOAD_SHA
    assert _Handler.hits["/good.bin"] == before + 1
    assert W.locate_weights("t_good")["good.bin"].sha256 == PAYLOAD_SHA
    assert _leftovers(cache / "weights") == ["good.bin"]


def test_wrong_checksum_is_refused_and_leaves_nothing(server, cache, monkeypatch):
    wrong = "0" * 64
    _register(monkeypatch, "t_wrong", W.WeightsFile("good.bin", wrong, None, "test", url=f"{server}/good.bin"))
    with pytest.raises(WeightsError, match=wrong):
        W.download_weights("t_wrong", progress=False)
    assert _leftovers(cache / "weights") == []


def test_404_names_the_url_and_writes_nothing(server, cache, monkeypatch):
    _register(monkeypatch, "t_404", W.WeightsFile("gone.bin", PAYLOAD_SHA, None, "test", url=f"{server}/gone.bin"))
    with pytest.raises(WeightsError, match=r"gone\.bin.*404|404.*gone\.bin"):
        W.download_weights("t_404", progress=False)
    assert _leftovers(cache / "weights") == []


@pytest.mark.parametrize("sha", [PAYLOAD_SHA, None], ids=["known_hash", "unknown_hash"])
def test_interrupted_download_leaves_no_cache_entry(server, cache, monkeypatch, sha):
    _register(monkeypatch, "t_cut", W.WeightsFile("cut.bin", sha, None, "test", url=f"{server}/truncated.bin"))
    with pytest.raises(WeightsError, match="truncated.bin"):
        W.download_weights("t_cut", progress=False)
    assert _leftovers(cache / "weights") == []
    with pytest.raises(WeightsError, match="not found"):
        W.locate_weights("t_cut")


def test_unknown_hash_is_recorded_with_a_warning_and_enforced(server, cache, monkeypatch):
    _register(monkeypatch, "t_unknown", W.WeightsFile("unknown.bin", None, None, "UNKNOWN", url=f"{server}/unknown.bin"))
    with pytest.warns(UnverifiedWeightsWarning, match=PAYLOAD_SHA):
        got = W.download_weights("t_unknown", progress=False)
    path = got["unknown.bin"].path
    record = path.with_name("unknown.bin.sha256")
    assert record.read_text() == f"{PAYLOAD_SHA}  unknown.bin\n"  # sha256sum format
    assert W.locate_weights("t_unknown")["unknown.bin"].sha256 == PAYLOAD_SHA  # no second warning needed
    path.write_bytes(PAYLOAD[:-1] + b"\x00")  # the file changes after the first download
    with pytest.raises(WeightsError, match="recorded"):
        W.locate_weights("t_unknown")


def test_archive_member_is_extracted_verified_and_archive_removed(server, cache, monkeypatch):
    arch = W.Archive(f"{server}/pack.zip", "pack.zip", hashlib.sha256(ZIP).hexdigest(), len(ZIP))
    _register(monkeypatch, "t_zip", W.WeightsFile("model.onnx", MEMBER_SHA, len(MEMBER), "test", archive=arch))
    got = W.download_weights("t_zip", progress=False)
    assert got["model.onnx"].path.read_bytes() == MEMBER
    assert _leftovers(cache / "weights") == ["model.onnx"]


def test_archive_with_bad_member_keeps_no_entry(server, cache, monkeypatch):
    arch = W.Archive(f"{server}/pack.zip", "pack.zip", hashlib.sha256(ZIP).hexdigest(), len(ZIP))
    _register(monkeypatch, "t_zipbad", W.WeightsFile("model.onnx", "f" * 64, None, "test", archive=arch))
    with pytest.raises(WeightsError, match="refusing"):
        W.download_weights("t_zipbad", progress=False)
    assert "model.onnx" not in _leftovers(cache / "weights")


def test_missing_weights_error_names_file_and_exact_command(cache, monkeypatch, tmp_path):
    _register(monkeypatch, "t_missing", W.WeightsFile("absent.bin", PAYLOAD_SHA, None, "test", url="http://127.0.0.1:9/x"))
    with pytest.raises(WeightsError) as err:
        W.locate_weights("t_missing")
    msg = str(err.value)
    assert str(cache.resolve() / "weights" / "absent.bin") in msg
    assert re.search(r"fetch it with: (fvbench-download|\S*python\S* -m bench\.models\.weights) t_missing$", msg)
    other = tmp_path / "elsewhere"
    with pytest.raises(WeightsError, match=f"t_missing --cache-dir {re.escape(str(other.resolve()))}$"):
        W.locate_weights("t_missing", cache_dir=other)


def test_corrupted_file_in_cache_is_refused_and_not_overwritten(server, cache, monkeypatch):
    _register(monkeypatch, "t_corrupt", W.WeightsFile("good.bin", PAYLOAD_SHA, len(PAYLOAD), "test", url=f"{server}/good.bin"))
    target = cache / "weights" / "good.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x" * len(PAYLOAD))
    with pytest.raises(WeightsError, match="refusing to load"):
        W.locate_weights("t_corrupt")
    with pytest.raises(WeightsError, match="Delete it"):
        W.download_weights("t_corrupt", progress=False)
    assert target.read_bytes() == b"x" * len(PAYLOAD)
    target.write_bytes(b"short")
    with pytest.raises(WeightsError, match="5 bytes, expected 1048576"):
        W.locate_weights("t_corrupt")


def test_download_main_exit_status(server, cache, monkeypatch, capsys):
    _register(monkeypatch, "t_good", W.WeightsFile("good.bin", PAYLOAD_SHA, len(PAYLOAD), "test", url=f"{server}/good.bin"))
    _register(monkeypatch, "t_404", W.WeightsFile("gone.bin", PAYLOAD_SHA, None, "test", url=f"{server}/gone.bin"))
    assert W.download_main(["t_good", "--no-progress"]) == 0
    assert f"sha256={PAYLOAD_SHA}" in capsys.readouterr().out
    assert W.download_main(["t_404", "--no-progress"]) == 1
    assert "404" in capsys.readouterr().err
    assert W.download_main(["--list"]) == 0
    assert "non-commercial research purposes only" in capsys.readouterr().out


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(WeightsError, match="facenet_vggface2"):
        W.locate_weights("no_such_model")


def test_registry_entries_are_well_formed():
    hexre = re.compile(r"^[0-9a-f]{64}$")
    for key, m in W.WEIGHTS_REGISTRY.items():
        assert m.model == key and m.licence and m.files
        for f in m.files:
            assert sum(x is not None for x in (f.url, f.archive, f.package)) == 1, f
            assert f.sha256 is None or hexre.match(f.sha256), f
            assert f.archive is None or f.archive.sha256 is None or hexre.match(f.archive.sha256)
    # InsightFace weights carry their non-commercial licence (sources.md §2a)
    for key in ("arcface_buffalo_l", "arcface_buffalo_s"):
        assert "non-commercial research purposes only" in W.WEIGHTS_REGISTRY[key].licence
    # sources.md §1/§2b values
    assert W.WEIGHTS_REGISTRY["facenet_vggface2"].files[0].size == 111_898_327
    assert W.WEIGHTS_REGISTRY["facenet_casia"].files[0].sha256 is None
    assert W.WEIGHTS_REGISTRY["arcface_buffalo_l"].files[0].archive.size == 288_621_354


def test_dlib_and_mtcnn_package_weights_verify_against_the_registry():
    dlib_files = W.locate_weights("dlib_resnet")
    assert {n: lw.sha256 for n, lw in dlib_files.items()} == DLIB_WEIGHTS_SHA256
    assert DLIB_WEIGHTS_SHA256["dlib_face_recognition_resnet_model_v1.dat"].startswith("55533b28")  # sources.md §3
    assert set(W.locate_weights("mtcnn")) == {"pnet.pt", "rnet.pt", "onet.pt"}


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("FVBENCH_CACHE", str(tmp_path / "env"))
    assert W.cache_root() == (tmp_path / "env").resolve()
    assert W.cache_root(tmp_path / "arg") == (tmp_path / "arg").resolve()
    monkeypatch.delenv("FVBENCH_CACHE")
    assert str(W.cache_root()).endswith(".cache/fvbench")
