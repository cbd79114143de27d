"""The embedding cache trusts no entry it did not verify (issue #9, "The cache").

Each entry is bound to its image (content SHA-256) and model key and validated on read;
a swapped or symlinked entry, a 1-element vector (which numpy would broadcast to the model
dimension), NaN, a planted or malformed FTA entry, a ``.npy`` file, a wrong dimension or a
folder in place of an entry is recomputed with a CacheEntryWarning and never changes a
result. Temporary files of killed runs are cleaned; a cache that cannot be written is one
line naming the path before the first image. ONNX external-data files are part of the
weights hashes and cache key; unverified weights are recorded in metrics.json and the report.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench.models.cache as cache_mod
from bench.data.manifest import Manifest
from bench.errors import CacheEntryWarning, StorageError
from bench.models.cache import ENTRY_FORMAT, CachedResult, EmbeddingCache
from bench.models.extraction import extract_embeddings

DIM = 8
KEY = "k" * 64
SHA_A = "a" * 64
SHA_B = "b" * 64


def _vec(seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _entry(path: Path, **fields) -> None:
    """Write an .npz entry with the given fields (defaults: a valid embedding entry of SHA_A)."""
    base = dict(format=np.array(ENTRY_FORMAT), image_sha256=np.array(SHA_A), model_key=np.array(KEY), embedding=_vec(),
                fta_reason=np.array(""), n_faces=np.array(1), detail=np.array(""))
    base.update(fields)
    base = {k: v for k, v in base.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **base)
    path.write_bytes(buf.getvalue())


@pytest.fixture()
def cache(tmp_path):
    return EmbeddingCache(tmp_path / "c", KEY, DIM)


def _refused(cache: EmbeddingCache, sha: str, match: str) -> None:
    with pytest.warns(CacheEntryWarning, match=match):
        assert cache.get(sha) is None


def test_valid_entries_round_trip(cache):
    cache.put(SHA_A, CachedResult(_vec(), None, 1))
    got = cache.get(SHA_A)
    np.testing.assert_array_equal(got.embedding, _vec())
    assert got.fta_reason is None and got.n_faces == 1
    cache.put(SHA_B, CachedResult(None, "no_face_detected", 0, "no face"))
    assert cache.get(SHA_B) == CachedResult(None, "no_face_detected", 0, "no face")
    _entry(cache._path(SHA_A), embedding=_vec().astype(np.float64))  # float64 is accepted, returned as float32
    assert cache.get(SHA_A).embedding.dtype == np.float32


def test_swapped_entry_is_refused(cache):
    cache.put(SHA_A, CachedResult(_vec(), None, 1))
    b = cache._path(SHA_B)
    b.parent.mkdir(parents=True)
    b.write_bytes(cache._path(SHA_A).read_bytes())  # A's embedding copied to B's place
    _refused(cache, SHA_B, f"belongs to image '{SHA_A}', not {SHA_B}")


def test_symlinked_entry_is_refused(cache):
    cache.put(SHA_A, CachedResult(_vec(), None, 1))
    b = cache._path(SHA_B)
    b.parent.mkdir(parents=True)
    b.symlink_to(cache._path(SHA_A))
    _refused(cache, SHA_B, "is a symbolic link")


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"embedding": np.array([1.0], np.float32)}, r"shape \(1,\), expected \(8,\)"),  # would broadcast to (8,)
        ({"embedding": _vec()[:4]}, r"shape \(4,\), expected \(8,\)"),
        ({"embedding": np.full(DIM, np.nan, np.float32)}, "non-finite or zero"),
        ({"embedding": np.zeros(DIM, np.float32)}, "non-finite or zero"),
        ({"embedding": np.ones((2, 4), np.float32)}, "expected 1-d float32/float64"),
        ({"embedding": np.ones(DIM, np.int64)}, "expected 1-d float32/float64"),
        ({"fta_reason": np.array("=HYPERLINK(\"http://x\")"), "embedding": np.empty(0, np.float32)}, "FTA reason"),
        ({"fta_reason": np.array("no_face_detected")}, "also an embedding"),
        ({"n_faces": np.array(-3)}, "n_faces"),
        ({"n_faces": np.array(1.5)}, "n_faces"),
        ({"model_key": np.array("z" * 64)}, "another model"),
        ({"format": np.array(1)}, "entry format"),
        ({"image_sha256": None}, "lacks the fields"),  # an entry of the previous layout: no image binding
    ],
    ids=["one_element", "wrong_dim", "nan", "zero", "2d", "int", "planted_reason", "fta_with_embedding", "negative_faces",
         "float_faces", "other_model", "old_format", "unbound"],
)
def test_malformed_entries_are_recomputed_with_a_warning(cache, fields, match):
    _entry(cache._path(SHA_A), **fields)
    _refused(cache, SHA_A, match)


def test_npy_instead_of_npz_is_refused(cache):
    p = cache._path(SHA_A)
    p.parent.mkdir(parents=True)
    with open(p, "wb") as f:
        np.save(f, _vec())
    _refused(cache, SHA_A, r"is not an \.npz archive")


def test_folder_in_place_of_an_entry_is_refused_then_replaced(cache):
    p = cache._path(SHA_A)
    (p / "inner").mkdir(parents=True)
    _refused(cache, SHA_A, "is a folder")
    cache.put(SHA_A, CachedResult(_vec(), None, 1))
    assert p.is_file() and cache.get(SHA_A) is not None


def test_oversized_entry_is_refused(cache):
    p = cache._path(SHA_A)
    p.parent.mkdir(parents=True)
    p.write_bytes(b"\0" * (cache_mod.MAX_ENTRY_BYTES + 1))
    _refused(cache, SHA_A, "is larger than")


# ----------------------------------------------------------------------------- through the extraction
class _Aligner:
    def acquire_file(self, path):
        from bench.acquisition.base import Acquisition

        self.calls += 1
        return Acquisition(chip=np.frombuffer(Path(path).read_bytes(), dtype=np.uint8).copy(), fta_reason=None, n_faces=1)

    calls = 0


class _Model:
    name, metric, embedding_dim, nominal_threshold = "fake", "cosine", DIM, None
    weights_sha256: dict = {}

    def __init__(self):
        self.aligner = _Aligner()

    def settings(self):
        return {"fake": 1}

    def embed(self, chips):
        out = np.zeros((len(chips), DIM), np.float32)
        for i, c in enumerate(chips):  # "subject s image k": unit axis s plus a little image noise
            s = int(bytes(c).split()[1])
            out[i, s] = 1.0
            out[i] += 0.05 * _vec(int(hashlib.sha256(bytes(c)).hexdigest()[:6], 16))
        return out


def _manifest(root: Path) -> Manifest:
    rows = []
    for s in range(3):
        for k in range(2):
            p = root / f"s{s}_{k}.bin"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(f"subject {s} image {k}".encode())
            rows.append({"image_id": f"s{s}_{k}", "path": p.name, "subject_id": f"s{s}", "label_source": "annotated", "grp": "a"})
    return Manifest(pd.DataFrame(rows), root, ("grp",), "fake")


def test_tampered_cache_never_changes_a_result(tmp_path):
    manifest = _manifest(tmp_path / "img")
    cache = EmbeddingCache(tmp_path / "c", KEY, DIM)
    clean = extract_embeddings(manifest, _Model(), cache, progress=False)
    shas = [hashlib.sha256(manifest.image_path(i).read_bytes()).hexdigest() for i in range(6)]
    paths = [cache._path(s) for s in shas]
    # swap two entries, plant an FTA, a 1-element vector, NaN; replace one by a folder and one by a symlink
    a, b = paths[0].read_bytes(), paths[1].read_bytes()
    paths[0].write_bytes(b)
    paths[1].write_bytes(a)
    _entry(paths[2], image_sha256=np.array(shas[2]), embedding=np.empty(0, np.float32), fta_reason=np.array("no_face_detected"))
    _entry(paths[3], image_sha256=np.array(shas[3]), embedding=np.array([0.5], np.float32))
    paths[4].unlink()
    paths[4].mkdir()
    paths[5].unlink()
    paths[5].symlink_to(paths[2])
    model = _Model()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        again = extract_embeddings(manifest, model, cache, progress=False)
    cache_warnings = [w for w in seen if issubclass(w.category, CacheEntryWarning)]
    # the planted FTA entry is well-formed and bound to its image: indistinguishable without a secret (documented limit)
    assert len(cache_warnings) == 5
    assert model.aligner.calls == 5
    planted = 2
    keep = [i for i in range(6) if i != planted]
    np.testing.assert_array_equal(again.embeddings[keep], clean.embeddings[keep])
    third = extract_embeddings(manifest, _Model(), cache, progress=False)  # repaired entries are used again
    assert third.cache_hits == 6


# ----------------------------------------------------------------------------- temporary files, unwritable caches
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temporary_files_of_killed_runs_are_removed_by_the_next_run(tmp_path):
    folder = tmp_path / "c" / "embeddings" / KEY[:16] / "aa"
    folder.mkdir(parents=True)
    dead = folder / f".{_dead_pid()}-x1.tmp"
    legacy = folder / "tmpabc123.tmp"  # older versions: no process id, removed when old
    live = folder / f".{os.getppid()}-x2.tmp"
    for f in (dead, legacy, live):
        f.write_bytes(b"half an embedding")
    old = time.time() - 2 * cache_mod.LEGACY_TEMP_AGE_S
    os.utime(legacy, (old, old))
    EmbeddingCache(tmp_path / "c", KEY, DIM)
    assert not dead.exists() and not legacy.exists() and live.exists()


def test_a_killed_put_leaves_a_temp_file_that_the_next_run_removes(tmp_path):
    code = (
        "import os, signal, numpy as np\n"
        "import bench.models.cache as c\n"
        "def die(a, b): os.kill(os.getpid(), signal.SIGKILL)\n"
        "c.os.replace = die\n"
        f"cache = c.EmbeddingCache({str(tmp_path / 'c')!r}, {KEY!r}, {DIM})\n"
        f"cache.put({SHA_A!r}, c.CachedResult(np.ones({DIM}, np.float32), None, 1))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}, timeout=60)
    assert done.returncode == -9
    folder = tmp_path / "c" / "embeddings" / KEY[:16]
    assert len(list(folder.rglob("*.tmp"))) == 1
    EmbeddingCache(tmp_path / "c", KEY, DIM)
    assert list(folder.rglob("*.tmp")) == [] and list(folder.rglob("*.npz")) == []


def test_cache_path_that_is_a_file_fails_before_the_first_image(tmp_path):
    (tmp_path / "c").write_text("not a folder")
    model = _Model()
    with pytest.raises(StorageError, match=r"cannot write the embedding cache \(paths.cache_dir, env FVBENCH_CACHE\): '.*/c': a file stands where"):
        extract_embeddings(_manifest(tmp_path / "img"), model, EmbeddingCache(tmp_path / "c", KEY, DIM), progress=False)
    assert model.aligner.calls == 0


def test_read_only_cache_fails_before_the_first_image(tmp_path, monkeypatch):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "c" / "embeddings" / KEY[:16]))

    monkeypatch.setattr(cache_mod.tempfile, "mkstemp", read_only)
    model = _Model()
    with pytest.raises(StorageError, match="Read-only file system"):
        extract_embeddings(_manifest(tmp_path / "img"), model, EmbeddingCache(tmp_path / "c", KEY, DIM), progress=False)
    assert model.aligner.calls == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_cache_folder_for_real(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c").chmod(0o500)
    try:
        with pytest.raises(StorageError, match="Permission denied"):
            EmbeddingCache(tmp_path / "c", KEY, DIM).check_writable()
    finally:
        (tmp_path / "c").chmod(0o700)


def test_disk_full_while_writing_an_entry_keeps_earlier_entries(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "c", KEY, DIM)
    cache.put(SHA_A, CachedResult(_vec(), None, 1))
    real = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device", None)

    monkeypatch.setattr(cache_mod.os, "fdopen", lambda fd, mode: Full(real(fd, mode)))
    with pytest.raises(StorageError, match=r"No space left on device \(free some space.*entries already written are kept"):
        cache.put(SHA_B, CachedResult(_vec(1), None, 1))
    monkeypatch.setattr(cache_mod.os, "fdopen", real)
    assert cache.get(SHA_A) is not None and cache.get(SHA_B) is None
    assert list(cache.folder.rglob("*.tmp")) == []


def test_malformed_geometry_entry_is_recomputed(tmp_path):
    from bench.sweep import _read_geometry

    p = tmp_path / "g.json"
    for text in ("{not json", '{"box": [1, 2], "eyes": [[0, 0], [1, 1]]}', '{"box": [1, 2, 3, NaN], "eyes": [[0, 0], [1, 1]]}', "[]"):
        p.write_text(text)
        assert _read_geometry(p) is False
    p.write_text('{"box": [1, 2, 3, 4], "eyes": [[0, 0], [1, 1]]}')
    assert _read_geometry(p).box == (1.0, 2.0, 3.0, 4.0)
    p.write_text("null")
    assert _read_geometry(p) is None


# ----------------------------------------------------------------------------- weights
def test_onnx_external_data_is_hashed_and_changes_the_cache_key(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from bench.models.cache import model_cache_key
    from bench.models.weights import onnx_external_files, onnx_weights_sha256

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    model = helper.make_model(graph)
    onnx.save_model(model, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.bin", size_threshold=0)
    assert [p.name for p in onnx_external_files(tmp_path / "m.onnx")] == ["m.bin"]
    before = onnx_weights_sha256(tmp_path / "m.onnx")
    assert set(before) == {"m.onnx", "m.onnx:m.bin"}
    data = bytearray((tmp_path / "m.bin").read_bytes())
    data[0] ^= 1  # same graph file, other weights
    (tmp_path / "m.bin").write_bytes(bytes(data))
    after = onnx_weights_sha256(tmp_path / "m.onnx")
    assert after["m.onnx"] == before["m.onnx"] and after["m.onnx:m.bin"] != before["m.onnx:m.bin"]
    assert model_cache_key({"s": 1}, before) != model_cache_key({"s": 1}, after)


def test_onnx_external_data_outside_the_model_folder_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from bench.errors import WeightsError
    from bench.models.weights import onnx_external_files

    t = helper.make_tensor("W", TensorProto.FLOAT, [1], [0.0])
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"),):
        e = t.external_data.add()
        e.key, e.value = k, v
    graph = helper.make_graph([helper.make_node("Identity", ["W"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [t])
    (tmp_path / "sub").mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0\0\0\0")
    (tmp_path / "sub" / "m.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(WeightsError, match="outside the model's folder"):
        onnx_external_files(tmp_path / "sub" / "m.onnx")


def test_onnx_arcface_records_external_data_hashes(tmp_path):
    """The embedder's weights_sha256 (its cache key input) covers the .bin beside the graph."""
    onnx = pytest.importorskip("onnx")
    import torch

    from bench.models.onnx_arcface import OnnxArcFace

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 112 * 112, 8)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 112, 112),), str(tmp_path / "t.onnx"), dynamo=False, input_names=["x"],
                          output_names=["e"], dynamic_axes={"x": {0: "n"}, "e": {0: "n"}}, opset_version=17)
    m = onnx.load(str(tmp_path / "t.onnx"))
    onnx.save_model(m, str(tmp_path / "t.onnx"), save_as_external_data=True, location="t.bin", size_threshold=0)

    class _NoAligner:
        weights_sha256: dict = {}

    emb = OnnxArcFace(weights_path=str(tmp_path / "t.onnx"), embedding_dim=8, aligner=_NoAligner(), device="cpu")
    assert set(emb.weights_sha256) == {"t.onnx", "t.onnx:t.bin"}
    assert emb.weights_sha256["t.onnx:t.bin"] == hashlib.sha256((tmp_path / "t.bin").read_bytes()).hexdigest()


def test_weights_verification_is_generic_over_models():
    from bench.models.weights import WEIGHTS_REGISTRY, weights_verification

    dlib = {f.filename: f.sha256 for f in WEIGHTS_REGISTRY["dlib_resnet"].files}
    assert weights_verification(dlib) == {"weights_verified": True, "unverified_weights": []}
    assert weights_verification({**dlib, "custom.onnx": "0" * 64}) == {"weights_verified": False, "unverified_weights": ["custom.onnx"]}
    assert weights_verification(None) == {"weights_verified": None, "unverified_weights": []}


def test_verify_weights_false_is_recorded_and_reported(tmp_path):
    """dlib with verify_weights=false and a modified weights file: metrics.json and report.md say so."""
    import shutil

    from bench.models.dlib_resnet import DlibResNet, face_recognition_models_dir

    src = face_recognition_models_dir()
    models = tmp_path / "models"
    models.mkdir()
    for f in ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat"):
        shutil.copy(src / f, models / f)
    with open(models / "dlib_face_recognition_resnet_model_v1.dat", "ab") as f:
        f.write(b"\0")  # a different file: dlib ignores trailing bytes
    model = DlibResNet(models_dir=str(models), verify_weights=False)
    # images dlib finds no face in: every image is an FTA, so evaluate refuses -- check the recorded model info instead
    from bench.run import _acquire

    _, _, _, _, info = _acquire(_manifest(tmp_path / "img"), model, tmp_path / "c", False)
    assert info["weights_verified"] is False and info["unverified_weights"] == ["dlib_face_recognition_resnet_model_v1.dat"]


def test_unverified_weights_are_in_metrics_json_and_the_report(tmp_path):
    from bench.report.writer import write_results
    from bench.run import Protocol, evaluate

    model = _Model()
    model.weights_sha256 = {"custom.onnx": "0" * 64}
    res = evaluate(_manifest(tmp_path / "img"), model, Protocol(target_fmrs=[0.1], use_nominal_threshold=False),
                   cache_dir=tmp_path / "c", progress=False)
    out = write_results(res, tmp_path / "out", run_name="t", config={}, min_group_subjects=1, figures=False)
    m = json.loads((out / "metrics.json").read_text())["model"]
    assert m["weights_verified"] is False and m["unverified_weights"] == ["custom.onnx"]
    assert "**Unverified weights:** `custom.onnx`" in (out / "report.md").read_text()
