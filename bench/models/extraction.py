"""Acquire and embed every image of a manifest, through the embedding cache.

Failures never stop the run: an image that cannot be loaded, has no detectable
face, or yields a NaN / zero-norm embedding is a failure to acquire (FTA) with
its reason, excluded from comparisons and counted per group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tqdm import tqdm

from bench.acquisition.base import Acquisition
from bench.acquisition.images import image_sha256
from bench.data.manifest import Manifest, warn_same_image_under_several_subjects
from bench.errors import DataError
from bench.models.cache import CachedResult, EmbeddingCache

__all__ = ["Extraction", "ImageEmbedder", "extract_embeddings"]

log = logging.getLogger(__name__)


class ImageEmbedder(Protocol):
    """What :func:`extract_embeddings` needs from a model."""

    name: str
    embedding_dim: int

    def settings(self) -> dict: ...

    def embed(self, chips: list[np.ndarray]) -> np.ndarray: ...

    @property
    def aligner(self): ...  # has acquire_file(path) -> Acquisition


@dataclass(frozen=True)
class Extraction:
    """Per-image outcome of acquisition + embedding, aligned with the manifest rows.

    Attributes
    ----------
    embeddings : numpy.ndarray
        Shape (n_images, d), float32; rows of failed images are NaN.
    fta_reason : numpy.ndarray
        Shape (n_images,), object; None where acquired, else the reason code.
    n_faces : numpy.ndarray
        Shape (n_images,), int; faces found by the detector.
    cache_hits : int
        Images served from the cache.
    """

    embeddings: np.ndarray
    fta_reason: np.ndarray
    n_faces: np.ndarray
    cache_hits: int

    @property
    def acquired(self) -> np.ndarray:
        """Shape (n_images,), bool: True where an embedding exists."""
        return np.array([r is None for r in self.fta_reason], dtype=bool)


def _valid(vec: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(vec)) and np.linalg.norm(vec) > 1e-12)


def extract_embeddings(
    manifest: Manifest, model: ImageEmbedder, cache: EmbeddingCache, *, batch_size: int = 32, progress: bool = True,
    desc: str | None = None,
) -> Extraction:
    """Acquire and embed all images of ``manifest`` with ``model``, using ``cache``.

    Images are processed in batches; each finished batch is written to the cache
    before the next starts, so an interrupted run loses at most one batch. Cache
    entries are validated on read (:meth:`EmbeddingCache.get` with the model's
    ``embedding_dim``); an invalid one is recomputed with a warning.
    ``desc`` labels the progress bar (default ``"<model> acquire+embed"``).

    Returns
    -------
    Extraction

    Raises
    ------
    StorageError
        The cache cannot be written (checked before the first image; disk full while
        writing): one line naming the path; entries already written are kept.
    """
    n = len(manifest.table)
    emb = np.full((n, model.embedding_dim), np.nan, dtype=np.float32)
    reasons = np.full(n, None, dtype=object)
    n_faces = np.zeros(n, dtype=np.int64)
    hits = 0
    todo: list[tuple[int, str | None, Acquisition]] = []
    cache.check_writable()  # a read-only cache or a file in its place: before the first image

    def flush() -> None:
        ok = [(i, sha, a) for i, sha, a in todo if a.ok]
        vecs = model.embed([a.chip for _, _, a in ok]) if ok else np.empty((0, model.embedding_dim), np.float32)
        for (i, sha, a), v in zip(ok, vecs):
            if _valid(v):
                emb[i] = v
                res = CachedResult(v, None, a.n_faces)
            else:
                reasons[i] = "invalid_embedding"
                res = CachedResult(None, "invalid_embedding", a.n_faces, "NaN or zero-norm embedding")
            n_faces[i] = a.n_faces
            if sha:
                cache.put(sha, res)
        for i, sha, a in todo:
            if not a.ok:
                reasons[i] = a.fta_reason
                if sha:  # a file we could hash: its failure is a property of its bytes
                    cache.put(sha, CachedResult(None, a.fta_reason, a.n_faces, a.detail))
                log.info("FTA %s: %s %s", manifest.table["image_id"].iloc[i], a.fta_reason, a.detail)
        todo.clear()

    shas: list[str | None] = []
    # The bar counts images finished (embedded, failed to acquire, or read from the cache);
    # smoothing=0 bases the ETA on the average rate since the start, so it stays steady
    # although fresh images are embedded in batches of ``batch_size``.
    bar = tqdm(total=n, desc=desc or f"{model.name} images embedded", disable=not progress, unit="img", smoothing=0.0)
    for i in range(n):
        path = manifest.image_path(i)
        try:
            sha = image_sha256(path)
        except (OSError, DataError):
            sha = None  # missing/unreadable: the loader reports the reason below
        shas.append(sha)
        cached = cache.get(sha, embedding_dim=model.embedding_dim) if sha else None
        if cached is not None:
            hits += 1
            n_faces[i] = cached.n_faces
            if cached.embedding is not None and _valid(cached.embedding):
                emb[i] = cached.embedding
            else:
                reasons[i] = cached.fta_reason or "invalid_embedding"
            bar.update(1)
            continue
        todo.append((i, sha, model.aligner.acquire_file(path)))
        if len(todo) >= batch_size:
            done = len(todo)
            flush()
            bar.update(done)
    done = len(todo)
    flush()
    bar.update(done)
    bar.close()
    warn_same_image_under_several_subjects(manifest, shas)
    return Extraction(embeddings=emb, fta_reason=reasons, n_faces=n_faces, cache_hits=hits)
