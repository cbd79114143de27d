"""On-disk cache of per-image acquisition outcomes and embeddings.

Key: the model's cache key (model name + weights SHA-256 + preprocessing
settings, hashed) and the image's content SHA-256. Changing any of these
recomputes; renaming or moving an image does not.

Every entry is bound to what it was computed from and checked on read
(:meth:`EmbeddingCache.get`): it stores the image's SHA-256 and the model key, and is
used only when both match the lookup, when it is a regular file (not a symbolic link
or a folder) holding an ``.npz`` archive of the expected fields, and when its content
is well-formed: an embedding of dtype float32/float64, shape ``(embedding_dim,)``,
finite and of non-zero norm; or a failure to acquire (FTA) with a reason from the closed set
:data:`bench.acquisition.base.FTA_REASONS`, no embedding, a face count in ``[0, 10000]``. Anything else (an
entry swapped from another image, an entry of an older format, a 1-element vector, NaN,
a ``.npy`` file, a folder in its place) is recomputed with a
:class:`~bench.errors.CacheEntryWarning` naming the file. This detects corruption,
copying and careless edits; a cache is still trusted as far as whoever can write to it
(an entry forged with the right hashes is indistinguishable from a real one): keep it
private (PRIVACY.md).

Entries are written atomically (a temporary file ``.<pid>-*.tmp`` in the entry's
folder, then ``os.replace``), so an interrupted run keeps every finished image and
never leaves a half-written entry; temporary files of processes that no longer run
are deleted by the next run (:func:`clean_stale_temp`). A cache that cannot be
written (read-only, a file in its place, disk full) is one
:class:`~bench.errors.StorageError` line naming the path, raised before the first
image where possible (:meth:`EmbeddingCache.check_writable`).

Embeddings are biometric data: the cache lives outside the repository and
``results/`` (default ``~/.cache/fvbench``, env ``FVBENCH_CACHE``). Delete the
folder to erase them.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.acquisition.base import FTA_REASONS
from bench.errors import CacheEntryWarning, StorageError
from bench.files import process_running, storage_error

log = logging.getLogger(__name__)

__all__ = ["EmbeddingCache", "CachedResult", "model_cache_key", "write_atomic", "clean_stale_temp", "ENTRY_FORMAT"]

#: Version of the entry layout; entries of another version are recomputed.
ENTRY_FORMAT = 2
#: Largest entry read (bytes); an embedding of 4096 float64 values is about 33 kB.
MAX_ENTRY_BYTES = 1 << 20
_FIELDS = ("format", "image_sha256", "model_key", "embedding", "fta_reason", "n_faces", "detail")
_TEMP = re.compile(r"^\.(?P<pid>\d+)-.*\.tmp$")
#: Temporary files without a process id (written by older versions) are deleted after this many seconds.
LEGACY_TEMP_AGE_S = 3600.0


def model_cache_key(settings: dict, weights_sha256: dict) -> str:
    """SHA-256 (hex) of the canonical JSON of a model's settings and weight hashes."""
    blob = json.dumps({"settings": settings, "weights": weights_sha256}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _storage_error(err: OSError, what: str) -> StorageError:
    return storage_error(err, what, "entries already written are kept")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file ``.<pid>-*.tmp`` in the same folder.

    A folder or symbolic link already at ``path`` is removed first (it cannot be a
    valid entry). Raises :class:`~bench.errors.StorageError` (one line naming the path)
    when the folder cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{os.getpid()}-", suffix=".tmp")
    except OSError as err:
        raise _storage_error(err, "the cache") from err
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _storage_error(err, "the cache") from err
        raise


def _pid_alive(pid: int) -> bool:
    """Whether the writer of a temporary file still runs; ours may be writing it from another thread right now."""
    return pid == os.getpid() or process_running(pid)


def clean_stale_temp(folder: str | os.PathLike[str]) -> int:
    """Delete temporary files left in ``folder`` (recursively) by killed runs; return how many.

    ``.<pid>-*.tmp`` files are deleted when process ``pid`` no longer runs; older
    ``tmp*.tmp`` files without a process id when older than :data:`LEGACY_TEMP_AGE_S`.
    Symbolic links are not followed.
    """
    folder = Path(folder)
    removed = 0
    now = time.time()
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            if not name.endswith(".tmp"):
                continue
            p = Path(dirpath) / name
            m = _TEMP.match(name)
            try:
                if m:
                    stale = not _pid_alive(int(m["pid"]))
                else:
                    stale = name.startswith("tmp") and now - p.lstat().st_mtime > LEGACY_TEMP_AGE_S
                if stale:
                    p.unlink()
                    removed += 1
            except OSError:
                continue
    if removed:
        log.info("removed %d temporary file(s) of interrupted runs under %s", removed, folder)
    return removed


@dataclass(frozen=True)
class CachedResult:
    """One cached image outcome: an embedding (float32, shape (d,)) or an FTA reason."""

    embedding: np.ndarray | None
    fta_reason: str | None
    n_faces: int
    detail: str = ""


class EmbeddingCache:
    """Folder ``<root>/embeddings/<model_key[:16]>/<sha[:2]>/<sha>.npz``.

    Parameters
    ----------
    root : str or pathlib.Path
        Cache root (created on first write).
    model_key : str
        From :func:`model_cache_key`.
    embedding_dim : int or None
        The model's embedding size; a cached embedding of another shape is recomputed.
        None: any 1-d shape of at least 2 values (callers that know the model pass it).
    subfolder : str
        Folder under ``root`` (``"embeddings"``; sweeps use their own).

    Temporary files of killed runs in the model's folder are deleted on construction.
    """

    def __init__(self, root: str | Path, model_key: str, embedding_dim: int | None = None, *, subfolder: str = "embeddings") -> None:
        self.root = Path(root).expanduser()
        self.model_key = model_key
        self.embedding_dim = embedding_dim
        self.folder = self.root / subfolder / model_key[:16]
        if self.folder.is_dir() and not self.folder.is_symlink():
            clean_stale_temp(self.folder)

    def _path(self, image_sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", image_sha256):
            raise ValueError(f"image_sha256 must be 64 lower-case hex digits, got {image_sha256!r}")
        return self.folder / image_sha256[:2] / f"{image_sha256}.npz"

    def check_writable(self) -> None:
        """Fail before any work when entries cannot be written here.

        Raises
        ------
        StorageError
            Naming the folder (read-only, a file where a folder belongs, no space).
        """
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{os.getpid()}-", suffix=".tmp")
            os.close(fd)
            os.unlink(tmp)
        except OSError as err:
            blocker = next((p for p in (self.folder, *self.folder.parents) if p.exists() and not p.is_dir()), None)
            if blocker is not None:  # name the file that stands where a folder belongs, not the folder below it
                err = OSError(errno.ENOTDIR, "a file stands where the cache folder belongs", str(blocker))
            raise _storage_error(err, "the embedding cache (paths.cache_dir, env FVBENCH_CACHE)") from err

    def _problem(self, p: Path, image_sha256: str, dim: int | None) -> tuple[str | None, CachedResult | None]:
        if p.is_symlink():
            return "is a symbolic link", None
        if p.is_dir():
            return "is a folder", None
        if not p.is_file():
            return "is not a regular file", None
        try:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as f:
                blob = f.read(MAX_ENTRY_BYTES + 1)
        except OSError as err:
            return f"cannot be read ({err.strerror or err})", None
        if len(blob) > MAX_ENTRY_BYTES:
            return f"is larger than {MAX_ENTRY_BYTES} bytes", None
        if not zipfile.is_zipfile(io.BytesIO(blob)):
            return "is not an .npz archive", None
        try:
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                unpacked = sum(i.file_size for i in zf.infolist())
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            return f"cannot be decoded ({err})", None
        if unpacked > 4 * MAX_ENTRY_BYTES:
            return f"unpacks to {unpacked} bytes (more than {4 * MAX_ENTRY_BYTES})", None
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                missing = [k for k in _FIELDS if k not in z.files]
                if missing:
                    return f"lacks the fields {missing} (written by an older fvbench, or not an entry)", None
                fields = {k: z[k] for k in _FIELDS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            return f"cannot be decoded ({err})", None
        return _validate(fields, image_sha256, self.model_key, dim)

    def get(self, image_sha256: str, *, embedding_dim: int | None = None) -> CachedResult | None:
        """The cached outcome, or None when absent or invalid (then recomputed).

        Parameters
        ----------
        image_sha256 : str
            SHA-256 (hex) of the image's bytes.
        embedding_dim : int or None
            Expected embedding size; default the cache's.

        An entry that exists but is invalid (see the module docstring) gives a
        :class:`~bench.errors.CacheEntryWarning` naming the file and what is wrong.
        """
        p = self._path(image_sha256)
        if not os.path.lexists(p):
            return None
        dim = embedding_dim if embedding_dim is not None else self.embedding_dim
        problem, result = self._problem(p, image_sha256, dim)
        if problem:
            msg = f"cache entry {str(p)!r} {problem}: recomputing it"
            warnings.warn(msg, CacheEntryWarning, stacklevel=2)
            log.warning("%s", msg)
            return None
        return result

    def put(self, image_sha256: str, result: CachedResult) -> None:
        """Store an outcome atomically, bound to ``image_sha256`` and the model key.

        Raises
        ------
        StorageError
            The entry cannot be written (disk full, read-only); earlier entries are kept.
        """
        p = self._path(image_sha256)
        emb = result.embedding if result.embedding is not None else np.empty(0, np.float32)
        buf = io.BytesIO()
        np.savez(
            buf,
            format=np.array(ENTRY_FORMAT),
            image_sha256=np.array(image_sha256),
            model_key=np.array(self.model_key),
            embedding=np.asarray(emb, np.float32),
            fta_reason=np.array(result.fta_reason or ""),
            n_faces=np.array(int(result.n_faces)),
            detail=np.array(str(result.detail)[:2000]),
        )
        write_atomic(p, buf.getvalue())


def _text(a: np.ndarray) -> str | None:
    return str(a[()]) if a.shape == () and a.dtype.kind == "U" else None


def _validate(f: dict, image_sha256: str, model_key: str, dim: int | None) -> tuple[str | None, CachedResult | None]:
    """Check an entry's fields; return (problem, None) or (None, result)."""
    if f["format"].shape != () or f["format"].dtype.kind not in "iu" or int(f["format"]) != ENTRY_FORMAT:
        return f"has entry format {f['format']!r}, expected {ENTRY_FORMAT}", None
    bound = _text(f["image_sha256"])
    if bound != image_sha256:
        return f"belongs to image {bound!r}, not {image_sha256} (swapped or copied)", None
    if _text(f["model_key"]) != model_key:
        return "was computed by another model or setting (model key differs)", None
    reason, detail = _text(f["fta_reason"]), _text(f["detail"])
    if reason is None or detail is None or len(detail) > 2000:
        return "has a malformed fta_reason or detail field", None
    n = f["n_faces"]
    if n.shape != () or n.dtype.kind not in "iu" or not 0 <= int(n) <= 10_000:
        return f"has n_faces {n!r}, expected one integer in [0, 10000]", None
    emb = f["embedding"]
    if emb.dtype not in (np.float32, np.float64) or emb.ndim != 1:
        return f"has an embedding of dtype {emb.dtype} and shape {emb.shape}, expected 1-d float32/float64", None
    if reason:
        if reason not in FTA_REASONS:
            return f"has the FTA reason {reason[:80]!r}, not one of {list(FTA_REASONS)}", None
        if emb.size:
            return "records a failure to acquire and also an embedding", None
        return None, CachedResult(None, reason, int(n), detail)
    want = f"({dim},)" if dim is not None else "at least 2 values"
    if (dim is not None and emb.shape != (dim,)) or (dim is None and emb.size < 2):
        return f"has an embedding of shape {emb.shape}, expected {want}", None
    if not np.all(np.isfinite(emb)) or not np.linalg.norm(emb) > 1e-12:
        return "has a non-finite or zero embedding", None
    return None, CachedResult(emb.astype(np.float32), None, int(n), detail)
