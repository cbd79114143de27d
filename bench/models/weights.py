"""Registry of model weight files, their private cache, and the download command.

Every weight file an fvbench model loads is listed in :data:`WEIGHTS_REGISTRY` with
its origin (download URL, member of a downloaded archive, or file shipped in a pip
package), its expected SHA-256 and size where one is known, and the licence of the
weights. Sources of every value: ``shared/docs/sources.md`` (§1 facenet-pytorch,
§2 InsightFace packs, §3 dlib via ``face_recognition_models``).

Cache layout
------------
Weights live in ``<cache>/weights/`` where ``<cache>`` is the ``cache_dir`` argument,
else the environment variable ``FVBENCH_CACHE``, else ``~/.cache/fvbench`` (the same
root as the embedding cache, :mod:`bench.models.cache`). Archives (InsightFace model
packs) are downloaded to ``<cache>/weights/archives/``, the one member a model needs
is extracted next to the other weights, and the archive is deleted.

Integrity rules
---------------
* Loading never downloads. A missing file raises :class:`~bench.errors.WeightsError`
  naming the expected path and the exact command that fetches it
  (:func:`fetch_command`).
* A file whose size or SHA-256 differs from the registry is refused (``WeightsError``).
* Where the publisher gives no checksum (``sha256=None``), the SHA-256 of the first
  download is recorded beside the file (``<file>.sha256``, ``sha256sum`` format) with an
  :class:`~bench.errors.UnverifiedWeightsWarning`; later loads must match that record.
* Downloads use :func:`pooch.retrieve`: the bytes go to a temporary file in the cache
  folder and are moved to their final name only after the checksum matched, so an
  interrupted or corrupted download never leaves a cache entry.

The registry itself (:data:`WEIGHTS_REGISTRY`, its dataclasses and the derived files) lives
in :mod:`bench.models.weights_registry` and is re-exported here.

Command line: ``python -m bench.models.weights <model> ...`` (the function
:func:`download_main`, also ``scripts/download_weights.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shlex
import shutil
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

from bench.errors import UnverifiedWeightsWarning, WeightsError
from bench.models.weights_registry import (  # noqa: F401  (re-exported: the registry's public names)
    DERIVED_WEIGHTS,
    WEIGHTS_REGISTRY,
    Archive,
    LocalWeights,
    ModelWeights,
    WeightsFile,
)

__all__ = [
    "CACHE_ENV",
    "DEFAULT_CACHE_DIR",
    "Archive",
    "LocalWeights",
    "ModelWeights",
    "WeightsFile",
    "WEIGHTS_REGISTRY",
    "cache_root",
    "download_main",
    "download_weights",
    "fetch_command",
    "locate_weights",
    "onnx_external_files",
    "onnx_weights_sha256",
    "sha256_file",
    "weights_verification",
    "verify_weights_file",
    "weights_dir",
]

log = logging.getLogger(__name__)

#: Environment variable naming the private cache root (weights and embeddings).
CACHE_ENV = "FVBENCH_CACHE"
#: Cache root used when neither ``cache_dir`` nor ``FVBENCH_CACHE`` is given.
DEFAULT_CACHE_DIR = "~/.cache/fvbench"

_CHUNK = 1 << 20


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The private cache root: ``cache_dir``, else ``$FVBENCH_CACHE``, else ``~/.cache/fvbench``.

    Returns
    -------
    pathlib.Path
        Absolute, user-expanded path (not created).
    """
    raw = os.fspath(cache_dir) if cache_dir else os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(raw).expanduser().resolve()


def weights_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache root>/weights`` (see :func:`cache_root`)."""
    return cache_root(cache_dir) / "weights"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex, FIPS 180-4) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def onnx_external_files(path: str | os.PathLike[str]) -> list[Path]:
    """The external-data files an ONNX model loads besides itself (ONNX external data format).

    Reads the graph without its tensors (``onnx.load(..., load_external_data=False)``)
    and collects the ``location`` of every tensor stored outside the file: initializers,
    sparse initializers, tensor attributes and subgraphs.

    Returns
    -------
    list of pathlib.Path
        Sorted, de-duplicated absolute paths (each inside the model's folder).

    Raises
    ------
    WeightsError
        The file is not an ONNX model, or a location is absolute, leaves the model's
        folder (``..``, a symbolic link) or names a missing file.
    """
    import onnx  # lazy: only ONNX models need it

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf raises its own untyped DecodeError
        raise WeightsError(f"{str(path)!r} is not a readable ONNX model: {err}") from err

    def tensors(graph):  # noqa: ANN001, ANN202 - onnx protobuf types
        yield from graph.initializer
        for sp in graph.sparse_initializer:
            yield sp.values
            yield sp.indices
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    yield from tensors(attr.g)
                for g in attr.graphs:
                    yield from tensors(g)

    folder = path.resolve().parent
    found: set[Path] = set()
    for t in tensors(model.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        target = (folder / loc).resolve()
        if not loc or Path(loc).is_absolute() or folder not in target.parents:
            raise WeightsError(f"ONNX model {str(path)!r}: tensor {t.name!r} has external data at {loc!r}, outside the model's folder; refusing it")
        if not target.is_file():
            raise WeightsError(f"ONNX model {str(path)!r}: external data file {str(target)!r} (tensor {t.name!r}) is missing")
        found.add(target)
    return sorted(found)


def onnx_weights_sha256(path: str | os.PathLike[str], digest: str | None = None) -> dict[str, str]:
    """SHA-256 of an ONNX model file and of every external-data file it loads.

    Keys: the model's file name, and ``<model file name>:<external file name relative to
    its folder>`` for each external file, so replacing a ``.bin`` changes the weights
    hashes and therefore the embedding cache key (:func:`bench.models.cache.model_cache_key`).

    Parameters
    ----------
    path : path
        The ``.onnx`` file.
    digest : str or None
        Its SHA-256 when already computed (e.g. verified against the registry).
    """
    path = Path(path)
    out = {path.name: digest or sha256_file(path)}
    folder = path.resolve().parent
    for ext in onnx_external_files(path):
        out[f"{path.name}:{ext.relative_to(folder).as_posix()}"] = sha256_file(ext)
    return out


def derived_weights() -> dict[str, str]:
    """Weight files this package derives deterministically from a registry file: file name -> SHA-256.

    A copy of :data:`bench.models.weights_registry.DERIVED_WEIGHTS` (today one: FaceNet
    CASIA-WebFace converted from the ``facenet_casia_graph`` frozen graph by
    :mod:`bench.models.facenet_graph`; the conversion is pinned by its output hash). Such a
    file counts as verified: its source is checked against the registry before converting.
    """
    return dict(DERIVED_WEIGHTS)


def weights_verification(weights_sha256: dict[str, str] | None) -> dict:
    """Whether every weight file a model loaded has a SHA-256 published in :data:`WEIGHTS_REGISTRY`.

    Generic over models: a file counts as verified when its hash equals a registry hash
    with a published source (``sha256`` not None). Files pinned on first download
    (no published checksum), custom files (``weights_path``), files loaded with
    ``verify_weights=false`` that differ from the registry, and ONNX external-data files
    not in the registry are unverified.

    Returns
    -------
    dict
        ``{"weights_verified": bool or None, "unverified_weights": sorted list of names}``;
        None (and an empty list) when the model loads no weights (synthetic data).
    """
    if not weights_sha256:
        return {"weights_verified": None, "unverified_weights": []}
    known = {f.sha256 for m in WEIGHTS_REGISTRY.values() for f in m.files if f.sha256} | set(derived_weights().values())
    bad = sorted(name for name, digest in weights_sha256.items() if digest not in known)
    return {"weights_verified": not bad, "unverified_weights": bad}


def _model(model: str) -> ModelWeights:
    try:
        return WEIGHTS_REGISTRY[model]
    except KeyError:
        raise WeightsError(f"no weights registered for model {model!r}; known: {sorted(WEIGHTS_REGISTRY)}") from None


def fetch_command(model: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The exact shell command that puts ``model``'s weights where :func:`locate_weights` looks.

    Uses the ``fvbench-download`` console script when it is installed, else
    ``<this interpreter> -m bench.models.weights``. ``--cache-dir`` is added when ``cache_dir``
    differs from what the command would resolve by itself (``$FVBENCH_CACHE`` or the
    default). Package-supplied files return the package's install command.
    """
    entry = _model(model)
    packaged = [f.install for f in entry.files if f.package]
    if packaged and len(packaged) == len(entry.files):
        return packaged[0]
    has_script = bool(importlib.metadata.entry_points(group="console_scripts", name="fvbench-download"))
    cmd = "fvbench-download" if has_script else f"{shlex.quote(sys.executable)} -m bench.models.weights"
    cmd = f"{cmd} {model}"
    if cache_dir is not None and cache_root(cache_dir) != cache_root(None):
        cmd += f" --cache-dir {shlex.quote(str(cache_root(cache_dir)))}"
    return cmd


def _package_dir(package: tuple[str, str], install: str) -> Path:
    spec = importlib.util.find_spec(package[0])
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"package {package[0]!r}, which ships these weights, is not installed; run: {install}")
    return Path(list(spec.submodule_search_locations)[0]) / package[1]


def _expected_path(entry: WeightsFile, cache_dir: str | os.PathLike[str] | None) -> Path:
    if entry.package:
        return _package_dir(entry.package, entry.install) / entry.filename
    return weights_dir(cache_dir) / entry.filename


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def verify_weights_file(path: Path, entry: WeightsFile) -> str:
    """Check a weight file against its registry entry; return its SHA-256.

    Parameters
    ----------
    path : pathlib.Path
        The file to check (must exist).
    entry : WeightsFile
        Its registry entry. When ``entry.sha256`` is None and no ``<file>.sha256``
        record exists yet, one is written, with an
        :class:`~bench.errors.UnverifiedWeightsWarning`.

    Returns
    -------
    str
        SHA-256 of the file (hex).

    Raises
    ------
    WeightsError
        Size or SHA-256 differs from the registry, or from the recorded first-download
        hash; the message names the file, both values and what to do.
    """
    if entry.size is not None and path.stat().st_size != entry.size:
        raise WeightsError(
            f"weights file {str(path)!r} has {path.stat().st_size} bytes, expected {entry.size} "
            f"({entry.hash_source}); refusing to load it. Delete it and download it again."
        )
    digest = sha256_file(path)
    if entry.sha256 is not None:
        if digest != entry.sha256:
            raise WeightsError(
                f"weights file {str(path)!r} has SHA-256 {digest}, expected {entry.sha256} "
                f"({entry.hash_source}); refusing to load it. Delete it and download it again."
            )
        return digest
    record = _sidecar(path)
    if record.is_file():
        fields = record.read_text(encoding="utf-8").split()
        recorded = fields[0] if fields else ""
        if digest != recorded:
            raise WeightsError(
                f"weights file {str(path)!r} has SHA-256 {digest}, but {str(record)!r} recorded {recorded!r} "
                "when it was first downloaded; refusing to load it. If the new file is trusted, delete both "
                "files and download again."
            )
        return digest
    msg = (
        f"no published checksum for {path.name} ({entry.hash_source}); SHA-256 of this copy is {digest}, "
        f"recorded in {str(record)!r}: later loads must match it"
    )
    _write_atomic(record, f"{digest}  {path.name}\n")
    warnings.warn(msg, UnverifiedWeightsWarning, stacklevel=2)
    log.warning("%s", msg)
    return digest


def locate_weights(model: str, *, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, LocalWeights]:
    """Find and verify every weight file of ``model``; never downloads.

    Parameters
    ----------
    model : str
        A key of :data:`WEIGHTS_REGISTRY`.
    cache_dir : path or None
        Cache root (see :func:`cache_root`).

    Returns
    -------
    dict
        File name -> :class:`LocalWeights`.

    Raises
    ------
    WeightsError
        Unknown model; a file missing (message: expected path + :func:`fetch_command`);
        a size/checksum mismatch.
    """
    entry = _model(model)
    out: dict[str, LocalWeights] = {}
    for f in entry.files:
        path = _expected_path(f, cache_dir)
        if not path.is_file():
            raise WeightsError(
                f"weights file {f.filename!r} for model {model!r} not found at {str(path)!r}; "
                f"fetch it with: {fetch_command(model, cache_dir)}"
            )
        out[f.filename] = LocalWeights(path=path, sha256=verify_weights_file(path, f))
    return out


def _retrieve(url: str, sha256: str | None, fname: str, folder: Path, progress: bool) -> Path:
    """pooch download to ``folder/fname`` (temp file + checksum + move); errors -> WeightsError."""
    import pooch  # lazy: only the download path needs it
    import requests

    try:
        got = pooch.retrieve(
            url,
            known_hash=f"sha256:{sha256}" if sha256 else None,
            fname=fname,
            path=folder,
            downloader=pooch.HTTPDownloader(progressbar=progress, timeout=60),
        )
    except requests.exceptions.RequestException as err:
        raise WeightsError(f"download of {url} failed: {err}; nothing was written to {str(folder / fname)!r}") from err
    except ValueError as err:  # pooch: hash mismatch
        raise WeightsError(
            f"download of {url} does not match the expected SHA-256 {sha256}: {err}; the file was discarded"
        ) from err
    return Path(got)


def _extract_member(archive_path: Path, member: str, dest: Path) -> None:
    """Extract the zip member whose base name is ``member`` to ``dest`` (atomically)."""
    try:
        with zipfile.ZipFile(archive_path) as z:
            names = [n for n in z.namelist() if Path(n).name == member and not n.startswith("__MACOSX/")]
            if len(names) != 1:
                raise WeightsError(
                    f"archive {str(archive_path)!r} has {len(names)} members named {member!r} (expected 1); "
                    f"members: {z.namelist()}"
                )
            fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out, z.open(names[0]) as src:
                    shutil.copyfileobj(src, out, _CHUNK)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except zipfile.BadZipFile as err:
        raise WeightsError(f"archive {str(archive_path)!r} is not a valid zip: {err}") from err


def download_weights(
    model: str, *, cache_dir: str | os.PathLike[str] | None = None, progress: bool = True
) -> dict[str, LocalWeights]:
    """Download (when missing) and verify every weight file of ``model``.

    Files already present are verified, not downloaded again. A present file that
    fails verification is never overwritten: the error says to delete it.

    Parameters
    ----------
    model : str
        A key of :data:`WEIGHTS_REGISTRY`.
    cache_dir : path or None
        Cache root (see :func:`cache_root`).
    progress : bool
        Show pooch's download progress bar.

    Returns
    -------
    dict
        File name -> :class:`LocalWeights`.

    Raises
    ------
    WeightsError
        Network/HTTP failure (nothing is written), checksum mismatch (download
        discarded), package-supplied file missing (message has the install command).
    """
    entry = _model(model)
    out: dict[str, LocalWeights] = {}
    for f in entry.files:
        path = _expected_path(f, cache_dir)
        if path.is_file():
            out[f.filename] = LocalWeights(path, verify_weights_file(path, f))
            continue
        if f.package:
            raise WeightsError(f"weights file {str(path)!r} is missing from package {f.package[0]!r}; run: {f.install}")
        path.parent.mkdir(parents=True, exist_ok=True)
        zpath = None
        if f.url:
            _retrieve(f.url, f.sha256, f.filename, path.parent, progress)
        elif f.archive:
            zpath = _retrieve(f.archive.url, f.archive.sha256, f.archive.filename, path.parent / "archives", progress)
            _extract_member(zpath, f.filename, path)
        else:  # pragma: no cover - registry entries always have an origin
            raise WeightsError(f"registry entry {f.filename!r} of {model!r} has no url, archive or package")
        try:
            out[f.filename] = LocalWeights(path, verify_weights_file(path, f))
        except WeightsError:
            if zpath is not None:  # a bad member of a good archive: keep no cache entry
                path.unlink(missing_ok=True)
            raise
        if zpath is not None:
            zpath.unlink()
        log.info("%s: %s ready at %s", model, f.filename, path)
    return out


def download_main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``fvbench-download`` / ``python -m bench.models.weights``.

    ``fvbench-download arcface_buffalo_l facenet_vggface2`` downloads and verifies
    those models' weights into ``<cache>/weights``; ``--list`` shows the registry;
    ``--all`` fetches everything. Exit status 0 on success, 1 on any failure.
    """
    parser = argparse.ArgumentParser(
        prog="fvbench-download", description="Download and verify fvbench model weights (pooch, SHA-256)."
    )
    parser.add_argument("models", nargs="*", metavar="MODEL", help=f"one or more of: {', '.join(WEIGHTS_REGISTRY)}")
    parser.add_argument("--all", action="store_true", help="every registered model")
    parser.add_argument("--list", action="store_true", help="list models, files, checksums and licences, then exit")
    parser.add_argument("--cache-dir", default=None, help=f"cache root (default: ${CACHE_ENV} or {DEFAULT_CACHE_DIR})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.list:
        for m in WEIGHTS_REGISTRY.values():
            print(f"{m.model}: {m.description}\n  licence: {m.licence}")
            for f in m.files:
                origin = f.url or (f.archive.url if f.archive else f"package {f.package[0] if f.package else '?'}")
                print(f"  {f.filename}  sha256={f.sha256 or 'UNKNOWN'}  size={f.size or '?'}  from {origin}")
        return 0
    models = list(WEIGHTS_REGISTRY) if args.all else args.models
    if not models:
        parser.error("name at least one model (or --all / --list)")
    status = 0
    for name in models:
        try:
            got = download_weights(name, cache_dir=args.cache_dir, progress=not args.no_progress)
        except WeightsError as err:
            print(f"fvbench-download: {name}: {err}", file=sys.stderr)
            status = 1
            continue
        licence = WEIGHTS_REGISTRY[name].licence
        for fname, lw in got.items():
            print(f"{name}: {lw.path}  sha256={lw.sha256}")
        print(f"{name}: weights licence: {licence}")
    return status


if __name__ == "__main__":
    sys.exit(download_main())
