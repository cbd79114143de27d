"""Sharded extraction: ``shard=i/n`` embeds one deterministic slice of a manifest into the cache.

A large dataset is embedded by ``n`` independent jobs, one per slice, e.g. a Hydra
multirun on any launcher (README "Grids and launchers")::

    fvbench -m hydra/launcher=parallel experiment=frl_london_dlib shard=0/4,1/4,2/4,3/4
    fvbench experiment=frl_london_dlib          # the scoring run: every embedding from the cache

Slice ``i`` of ``n`` (0-based) is the contiguous block of manifest rows
``[floor(i*N/n), floor((i+1)*N/n))`` in the manifest's own (deterministic) row order,
so the ``n`` slices partition the manifest exactly and any shard can be rerun alone. A
shard job writes nothing but cache entries (the shared content-addressed
:class:`~bench.models.cache.EmbeddingCache`, keyed by the model's cache key and each
image's SHA-256; atomic writes, so concurrent shards never clash) and prints one line
of progress. The scoring run (no ``shard``) then reads every embedding from the cache
and computes exactly what an unsharded run computes: the result folder is
byte-identical (tests/test_shard.py).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data.manifest import Manifest
from bench.errors import ConfigError

__all__ = ["parse_shard", "shard_rows", "shard_manifest", "extract_shard", "ShardReport"]

log = logging.getLogger(__name__)

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(spec: Any) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``.

    Raises
    ------
    ConfigError
        Naming the value and the expected form.
    """
    m = _SPEC.match(str(spec))
    if not m:
        raise ConfigError(f"shard={spec!r}: expected i/n with 0 <= i < n (0-based), e.g. shard=0/4")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"shard={spec!r}: expected 0 <= i < n (0-based: shards 0/{max(n, 1)} to {max(n, 1) - 1}/{max(n, 1)})")
    return i, n


def shard_rows(n_rows: int, i: int, n: int) -> range:
    """Manifest rows of slice ``i`` of ``n``: ``range(floor(i*N/n), floor((i+1)*N/n))``."""
    return range(i * n_rows // n, (i + 1) * n_rows // n)


def shard_manifest(manifest: Manifest, i: int, n: int) -> Manifest:
    """The manifest restricted to slice ``i`` of ``n`` (same root, attributes and name)."""
    rows = shard_rows(len(manifest.table), i, n)
    table = manifest.table.iloc[rows.start:rows.stop].reset_index(drop=True)
    return Manifest(table=table, root=manifest.root, attributes=manifest.attributes, name=manifest.name)


@dataclass(frozen=True)
class ShardReport:
    """What one shard job did.

    Attributes
    ----------
    shard : str
        ``"i/n"``.
    rows : tuple of int
        First and one-past-last manifest row.
    images, from_cache, computed, fta : int
        Images in the slice; served by the cache; acquired and embedded now; failures to acquire.
    seconds : float
    """

    shard: str
    rows: tuple[int, int]
    images: int
    from_cache: int
    computed: int
    fta: int
    seconds: float

    def line(self) -> str:
        """One line of progress for the job summary."""
        return (f"shard {self.shard}: rows {self.rows[0]}-{self.rows[1] - 1}, {self.images} images "
                f"({self.from_cache} from cache, {self.computed} computed, {self.fta} FTA) in {self.seconds:.1f} s")


def extract_shard(dataset: Any, model: Any, cache_dir: str | Path, spec: Any, *, progress: bool = True) -> ShardReport:
    """Embed slice ``spec`` (``"i/n"``) of ``dataset`` with ``model`` into the cache under ``cache_dir``.

    Raises
    ------
    ConfigError
        On a bad ``spec``, a synthetic dataset (it has no images to extract) or a missing model.
    """
    from bench.models.cache import EmbeddingCache, model_cache_key
    from bench.models.extraction import extract_embeddings

    i, n = parse_shard(spec)
    if not isinstance(dataset, Manifest):
        raise ConfigError(f"shard={spec}: sharding splits the extraction of an image dataset; "
                          f"dataset {type(dataset).__name__} has no images (use a dataset with images, e.g. experiment=frl_london_dlib)")
    if model is None:
        raise ConfigError(f"shard={spec}: choose an image model (e.g. model=dlib_resnet)")
    t0 = time.perf_counter()
    part = shard_manifest(dataset, i, n)
    rows = shard_rows(len(dataset.table), i, n)
    cache = EmbeddingCache(Path(cache_dir), model_cache_key(model.settings(), model.weights_sha256))
    ext = extract_embeddings(part, model, cache, progress=progress, desc=f"shard {i}/{n} {model.name}")
    fta = int(sum(r is not None for r in ext.fta_reason))
    rep = ShardReport(shard=f"{i}/{n}", rows=(rows.start, rows.stop), images=len(part.table), from_cache=ext.cache_hits,
                      computed=len(part.table) - ext.cache_hits, fta=fta, seconds=time.perf_counter() - t0)
    log.info(rep.line())
    return rep
