"""Security checks of the ``bench`` package (issue #6; SECURITY.md).

A static scan of every module's syntax tree (not a text grep: ``net.eval()`` and
docstrings that *mention* ``torch.load`` must not count) refuses:

- unpickling of any kind: ``pickle.load(s)``/``Unpickler``, ``dill``, ``joblib.load``,
  ``pandas.read_pickle``, ``marshal.loads``, ``shelve.open``;
- ``torch.load`` without ``weights_only=True``; ``numpy.load`` with ``allow_pickle=True``;
- ``yaml.load``/``full_load``/``unsafe_load`` (``safe_load`` / ``SafeLoader`` only);
- ``eval``/``exec``/``compile``/``__import__`` of strings, ``os.system``/``os.popen``,
  ``subprocess`` with ``shell=True``;
- archive ``extractall`` (zip-slip), ``torch.hub`` and ``urlretrieve`` downloads, and
  ``pooch.retrieve`` without a ``known_hash`` argument;
- Hydra ``instantiate``/``call`` anywhere but :func:`bench.cli.instantiate_bench`.

Behavioural checks: tampered weight files are refused by checksum, and a pickle
planted in the embedding cache is never executed.
"""

from __future__ import annotations

import ast
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bench"

FORBIDDEN_CALLS = {
    "pickle.load": "unpickling runs code from the file",
    "pickle.loads": "unpickling runs code from the data",
    "pickle.Unpickler": "unpickling runs code from the file",
    "_pickle.load": "unpickling", "_pickle.loads": "unpickling",
    "dill.load": "unpickling", "dill.loads": "unpickling",
    "cloudpickle.load": "unpickling", "cloudpickle.loads": "unpickling",
    "joblib.load": "joblib.load unpickles",
    "pandas.read_pickle": "unpickling",
    "marshal.load": "marshal runs code objects", "marshal.loads": "marshal runs code objects",
    "shelve.open": "shelve unpickles",
    "yaml.load": "use yaml.safe_load", "yaml.full_load": "use yaml.safe_load", "yaml.unsafe_load": "use yaml.safe_load",
    "yaml.load_all": "use yaml.safe_load_all", "yaml.unsafe_load_all": "use yaml.safe_load_all",
    "eval": "no eval of strings", "exec": "no exec of strings", "compile": "no compile of strings", "__import__": "no dynamic import of strings",
    "os.system": "no shell", "os.popen": "no shell",
    "torch.hub.load": "torch.hub runs downloaded code", "torch.hub.load_state_dict_from_url": "download without the registry's checksum",
    "torch.hub.download_url_to_file": "download without the registry's checksum",
    "urllib.request.urlretrieve": "download without checksum",
}
INSTANTIATORS = {"hydra.utils.instantiate", "hydra.utils.call", "hydra._internal.instantiate._instantiate2.instantiate"}


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted origin, from the module's imports."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _dotted(func: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    head = aliases.get(func.id, func.id)
    head = {"np": "numpy", "pd": "pandas"}.get(head, head)
    return ".".join([head, *reversed(parts)])


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def scan(source: str, where: str = "<string>", *, instantiate_allowed: bool = False) -> list[str]:
    """Findings (``"file:line: call -- why"``) of one module's source."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr == "extractall":  # any receiver, e.g. tarfile.open(p)
            found.append(f"{where}:{node.lineno}: .extractall -- can write outside the target folder (zip-slip); extract named members")
            continue
        name = _dotted(node.func, aliases)
        if name is None:
            continue
        why = FORBIDDEN_CALLS.get(name)
        if name == "torch.load" and not _is_const(_kw(node, "weights_only"), True):
            why = "torch.load needs weights_only=True"
        elif name == "numpy.load" and _kw(node, "allow_pickle") is not None and not _is_const(_kw(node, "allow_pickle"), False):
            why = "numpy.load with allow_pickle"
        elif name.startswith("subprocess.") and _kw(node, "shell") is not None and not _is_const(_kw(node, "shell"), False):
            why = "subprocess with shell=True"
        elif name == "pooch.retrieve" and _kw(node, "known_hash") is None:
            why = "pooch.retrieve without known_hash"
        elif name in INSTANTIATORS and not instantiate_allowed:
            why = "Hydra instantiation outside bench.cli.instantiate_bench (bench.* whitelist)"
        if any(isinstance(k.value, ast.Constant) and k.arg == "allow_pickle" and k.value.value is True for k in node.keywords):
            why = why or "allow_pickle=True"
        if why:
            found.append(f"{where}:{node.lineno}: {name} -- {why}")
    return found


def _modules() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20, f"expected the bench package under {PACKAGE}"
    return files


def test_scanner_finds_every_forbidden_pattern():
    bad = textwrap.dedent(
        """
        import pickle, subprocess, os, yaml, torch, tarfile
        import numpy as np
        import pandas as pd
        from pickle import loads as L
        from hydra.utils import instantiate
        import pooch
        pickle.load(f); L(b); pd.read_pickle(p); np.load(p, allow_pickle=True)
        torch.load(p); torch.load(p, weights_only=False); yaml.load(s)
        eval("1"); exec("x=1"); os.system("ls"); subprocess.run("ls", shell=True)
        tarfile.open(p).extractall(d); instantiate(cfg); pooch.retrieve(url)
        """
    )
    good = textwrap.dedent(
        """
        import numpy as np, subprocess, yaml, torch, pooch
        np.load(p, allow_pickle=False); np.load(p); torch.load(p, map_location="cpu", weights_only=True)
        yaml.safe_load(s); subprocess.run(["git", "status"], capture_output=True); net.eval()
        pooch.retrieve(url, known_hash=None)  # explicit: trust-on-first-use is recorded by the caller
        "torch.load(x) in a docstring"
        """
    )
    findings = scan(bad)
    assert len(findings) == 14, findings
    assert scan(good) == []


def test_package_has_no_unsafe_deserialisation_eval_shell_or_unchecked_download():
    findings = []
    for path in _modules():
        rel = path.relative_to(PACKAGE.parent)
        findings += scan(path.read_text(encoding="utf-8"), str(rel), instantiate_allowed=rel.as_posix() == "bench/cli.py")
    assert findings == []


def test_hydra_instantiate_is_not_called_by_the_cli():
    """Objects are built from the factory registry (bench/registry.py, tests/test_registry.py),
    never by Hydra's instantiate, which would resolve interpolations a second time."""
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    aliases = _aliases(tree)
    callers = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and _dotted(node.func, aliases) in INSTANTIATORS:
                    callers.append(fn.name)
    assert callers == []


def test_tampered_dlib_weights_are_refused(tmp_path):
    pytest.importorskip("dlib")
    from bench.acquisition.dlib_align import face_recognition_models_dir
    from bench.errors import WeightsError
    from bench.models.dlib_resnet import DLIB_WEIGHTS_SHA256, DlibResNet

    src = face_recognition_models_dir()
    for name in DLIB_WEIGHTS_SHA256:
        data = bytearray((src / name).read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte
        (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"has SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64} .*refusing to load it"):
        DlibResNet(models_dir=str(tmp_path))


class _Boom:
    """Unpickling this object would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_planted_in_the_embedding_cache_is_never_executed(tmp_path):
    from bench.models.cache import CachedResult, EmbeddingCache

    marker = tmp_path / "executed"
    cache = EmbeddingCache(tmp_path / "cache", "k" * 64)
    sha = "ab" * 32
    cache.put(sha, CachedResult(np.ones(4, np.float32), None, 1))
    path = cache._path(sha)
    payload = np.empty(1, dtype=object)
    payload[0] = _Boom(marker)
    with open(path, "wb") as f:
        np.savez(f, embedding=payload, fta_reason=np.array(""), n_faces=np.array(1), detail=np.array(""))
    assert pickle.loads(pickle.dumps(0)) == 0  # (pickle itself works; the cache just never uses it)
    assert cache.get(sha) is None  # refused (allow_pickle=False) and recomputed by the caller
    assert not marker.exists()
