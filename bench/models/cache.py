"""On-disk cache of per-image acquisition outcomes and embeddings.

Key: the model's cache key (model name + weights SHA-256 + preprocessing
settings, hashed) and the image's content SHA-256. Changing any of these
recomputes; renaming or moving an image does not. Entries are written atomically
(temporary file + ``os.replace``), so an interrupted run keeps every finished
image and never leaves a half-written entry.

Embeddings are biometric data: the cache lives outside the repository and
``results/`` (default ``~/.cache/fvbench``, env ``FVBENCH_CACHE``). Delete the
folder to erase them.
"""

from __future__ import annotations

import hashlib
import logging
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["EmbeddingCache", "CachedResult", "model_cache_key"]


def model_cache_key(settings: dict, weights_sha256: dict) -> str:
    """SHA-256 (hex) of the canonical JSON of a model's settings and weight hashes."""
    blob = json.dumps({"settings": settings, "weights": weights_sha256}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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
    """

    def __init__(self, root: str | Path, model_key: str) -> None:
        self.root = Path(root).expanduser()
        self.model_key = model_key
        self.folder = self.root / "embeddings" / model_key[:16]

    def _path(self, image_sha256: str) -> Path:
        return self.folder / image_sha256[:2] / f"{image_sha256}.npz"

    def get(self, image_sha256: str) -> CachedResult | None:
        """The cached outcome, or None when absent or unreadable (then recomputed)."""
        p = self._path(image_sha256)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                emb = z["embedding"]
                reason = str(z["fta_reason"])
                return CachedResult(
                    embedding=emb.astype(np.float32) if emb.size else None,
                    fta_reason=reason or None,
                    n_faces=int(z["n_faces"]),
                    detail=str(z["detail"]),
                )
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            log.warning("unreadable cache entry %s: recomputing it", p)
            return None

    def put(self, image_sha256: str, result: CachedResult) -> None:
        """Store an outcome atomically."""
        p = self._path(image_sha256)
        p.parent.mkdir(parents=True, exist_ok=True)
        emb = result.embedding if result.embedding is not None else np.empty(0, np.float32)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    embedding=np.asarray(emb, np.float32),
                    fta_reason=np.array(result.fta_reason or ""),
                    n_faces=np.array(result.n_faces),
                    detail=np.array(result.detail),
                )
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
