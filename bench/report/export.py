"""Opt-in export of a run's embeddings into its result folder (``report.export_embeddings``).

Face embeddings are biometric templates: they identify people. fvbench keeps them
in the private embedding cache and never writes them under ``results/`` unless the
user sets ``report.export_embeddings=true``. Then :func:`export_embeddings` writes

- ``embeddings.npz``: arrays ``image_id`` (str, shape (n,)), ``subject_id`` (str,
  shape (n,)) and ``embedding`` (float32, shape (n, d)) for the n acquired images
  (failures to acquire have no embedding), readable with
  ``numpy.load(path, allow_pickle=False)``;
- ``embeddings_WARNING.txt``: the warning below, the count and how to delete them,

and logs the same warning at WARNING level (console and the Hydra job log).
See PRIVACY.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.acquisition.images import image_sha256
from bench.synthetic.generator import SyntheticPopulation
from bench.errors import DataError, ImageLoadError
from bench.models.cache import EmbeddingCache

__all__ = ["export_embeddings", "spreadsheet_safe", "EXPORT_FILE", "WARNING_FILE", "EXPORT_WARNING", "FORMULA_PREFIXES"]

log = logging.getLogger(__name__)

#: File names written into the result folder.
EXPORT_FILE = "embeddings.npz"
WARNING_FILE = "embeddings_WARNING.txt"

#: The warning printed and recorded with every export.
EXPORT_WARNING = (
    "report.export_embeddings=true: face embeddings (biometric templates that identify people) "
    "were written to {path}. Keep this file private: do not publish, share or commit it, and "
    "delete it when you no longer need it (rm {path})."
)


#: First characters that make a spreadsheet treat a cell as a formula (OWASP "CSV Injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` whose text cells cannot run as spreadsheet formulas.

    A text cell (label, group, reason...) that starts with ``=``, ``+``, ``-``, ``@``,
    tab or carriage return gets a leading apostrophe (``'=cmd``), which spreadsheets
    show as text (OWASP, "CSV Injection"). Numbers are left alone (``-0.6`` stays a
    number). Used for every CSV a result folder publishes; ``metrics.json`` keeps the
    labels unchanged.

    Parameters
    ----------
    df : pandas.DataFrame

    Returns
    -------
    pandas.DataFrame
        Same shape; only ``str`` cells of object/string columns may change.
    """
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c]):
            out[c] = out[c].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_PREFIXES) else v)
    return out


def _embeddings(dataset: Any, result: Any, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, embeddings) of the acquired images of ``result``'s manifest."""
    acquired = np.array([r is None for r in result.fta_reason], dtype=bool)
    rows = np.flatnonzero(acquired)
    if isinstance(dataset, SyntheticPopulation):
        _, emb, _ = dataset.generate()
        return rows, np.asarray(emb[rows], dtype=np.float32)
    key = result.model_info.get("cache_key")
    if not key:
        raise DataError("cannot export embeddings: the run recorded no embedding cache key")
    cache = EmbeddingCache(cache_dir, key)
    manifest = result.manifest
    out = []
    for i in rows:
        path = manifest.image_path(int(i))
        try:
            entry = cache.get(image_sha256(path))
        except (OSError, ImageLoadError) as err:
            raise DataError(f"cannot export the embedding of {str(path)!r}: {err}") from err
        if entry is None or entry.embedding is None:
            raise DataError(
                f"cannot export the embedding of {str(path)!r}: not in the embedding cache {str(cache.folder)!r}"
            )
        out.append(entry.embedding)
    dim = out[0].shape[0] if out else 0
    return rows, np.asarray(out, dtype=np.float32).reshape(len(out), dim)


def export_embeddings(dataset: Any, result: Any, out_dir: str | Path, *, cache_dir: str | Path, published_dir: str | Path | None = None) -> Path:
    """Write the embeddings of the acquired images of a run into ``out_dir`` (opt-in).

    Parameters
    ----------
    dataset : SyntheticPopulation or Manifest
        The object the run was evaluated on (synthetic embeddings are regenerated
        from their seed; image embeddings are read from the cache the run filled).
    result : bench.run.RunResult
        The run; its ``fta_reason`` selects the acquired images.
    out_dir : path
        The run's result folder.
    cache_dir : path
        The embedding cache root the run used.
    published_dir : path, optional
        Final result folder when ``out_dir`` is a staging folder (used in the warning).

    Returns
    -------
    pathlib.Path
        Path of ``embeddings.npz``.

    Raises
    ------
    DataError
        If an acquired image's embedding cannot be found in the cache.

    Notes
    -----
    Logs :data:`EXPORT_WARNING` at WARNING level and writes it to
    ``embeddings_WARNING.txt`` beside the export.
    """
    out_dir = Path(out_dir)
    rows, emb = _embeddings(dataset, result, Path(cache_dir).expanduser())
    table = result.manifest.table
    path = out_dir / EXPORT_FILE
    np.savez(
        path,
        image_id=np.asarray(table["image_id"].astype(str).to_numpy()[rows], dtype=str),
        subject_id=np.asarray(table["subject_id"].astype(str).to_numpy()[rows], dtype=str),
        embedding=emb,
    )
    message = EXPORT_WARNING.format(path=str(Path(published_dir or out_dir) / EXPORT_FILE))
    # the file in the folder names the export relative to itself (no absolute path of this machine)
    (out_dir / WARNING_FILE).write_text(
        f"{EXPORT_WARNING.format(path=EXPORT_FILE)}\n\n{len(rows)} embeddings of dimension {emb.shape[1] if emb.ndim == 2 else 0}; "
        f"model: {result.model_info.get('name')}; dataset: {result.dataset_info.get('name')}.\n"
    )
    log.warning(message)
    return path
