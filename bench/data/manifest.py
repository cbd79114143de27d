"""Dataset manifest: one row per image, validated on load.

A manifest is the harness's only view of a dataset. Every loader (FRL London,
synthetic, user datasets) produces one, and everything downstream reads it.

Columns
-------
``image_id`` (str, unique), ``path`` (str, relative to the dataset root, must stay
inside it and exist), ``subject_id`` (str), ``label_source`` (str: how the
demographic labels were obtained, e.g. ``"self-reported"``, ``"annotated"``,
``"generator"``), plus one string column per demographic attribute (missing values
are ``pd.NA``; they are never dropped: see :data:`MISSING_LABEL`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import DataError

__all__ = ["Manifest", "REQUIRED_COLUMNS", "MISSING_LABEL", "INTERSECTION_SEPARATOR"]

REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "path", "subject_id", "label_source")

#: Group name given to a missing (NA/empty) demographic label. Such images stay in
#: every count and form their own group, reported like any other.
MISSING_LABEL = "missing"

#: Joins attribute names and values of an intersection, e.g. ``face_eth&face_gender``
#: and ``black&female``.
INTERSECTION_SEPARATOR = "&"


@dataclass(frozen=True)
class Manifest:
    """A validated table of images with subject ids and demographic attributes.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per image with the columns in :data:`REQUIRED_COLUMNS` plus every
        name in ``attributes``. All columns are strings (``pd.NA`` for missing
        attribute values).
    root : pathlib.Path or None
        Directory the ``path`` column is relative to; ``None`` for datasets without
        image files (synthetic embeddings).
    attributes : tuple of str
        The demographic attribute columns, in reporting order.
    name : str
        Dataset name, used in reports.

    Raises
    ------
    DataError
        Via :meth:`validate`: missing columns (named), duplicate ``image_id``
        (first duplicates named), empty subject ids, paths that are absolute,
        escape ``root`` or do not exist (named).
    """

    table: pd.DataFrame
    root: Path | None
    attributes: tuple[str, ...]
    name: str
    check_files: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check columns, ids and paths; raise :class:`DataError` naming the problem."""
        t = self.table
        missing = [c for c in (*REQUIRED_COLUMNS, *self.attributes) if c not in t.columns]
        if missing:
            raise DataError(
                f"manifest {self.name!r} is missing column(s) {missing}; "
                f"expected at least {list(REQUIRED_COLUMNS) + list(self.attributes)}"
            )
        if len(t) == 0:
            raise DataError(f"manifest {self.name!r} has no rows")
        for col in ("image_id", "subject_id", "path"):
            bad = t[col].isna() | (t[col].astype("string").str.strip() == "")
            if bad.any():
                rows = list(t.index[bad][:5])
                raise DataError(f"manifest {self.name!r}: empty {col!r} in row(s) {rows}")
        dup = t["image_id"][t["image_id"].duplicated(keep=False)]
        if len(dup):
            raise DataError(
                f"manifest {self.name!r}: duplicate image_id value(s) {sorted(set(dup))[:5]}; "
                "each image needs a unique id"
            )
        if self.root is not None:
            root = self.root.resolve()
            for image_id, rel in zip(t["image_id"], t["path"]):
                p = Path(rel)
                if p.is_absolute():
                    raise DataError(
                        f"manifest {self.name!r}: image {image_id!r} has absolute path {rel!r}; "
                        f"paths must be relative to the dataset root {str(root)!r}"
                    )
                full = (root / p).resolve()
                if not full.is_relative_to(root):
                    via_link = ".." not in p.parts
                    raise DataError(
                        f"manifest {self.name!r}: image {image_id!r} path {rel!r} escapes the "
                        f"dataset root {str(root)!r}"
                        + (f" (a symbolic link resolves it to {str(full)!r}; link the whole dataset folder instead)" if via_link else "")
                    )
                if self.check_files and not full.is_file():
                    raise DataError(
                        f"manifest {self.name!r}: image {image_id!r} file not found: {str(full)!r}"
                    )

    # ------------------------------------------------------------- accessors
    def image_path(self, row: int) -> Path:
        """Absolute path of the image in row ``row`` (needs a ``root``)."""
        if self.root is None:
            raise DataError(f"manifest {self.name!r} has no image files (root is None)")
        return self.root / str(self.table["path"].iloc[row])

    def group_labels(self, attributes: list[str] | tuple[str, ...] | None = None) -> pd.DataFrame:
        """Demographic labels per image, with missing values as :data:`MISSING_LABEL`.

        Parameters
        ----------
        attributes : sequence of str, optional
            Attribute names; an intersection is written ``"a&b"`` and gets the
            values joined with ``&`` (e.g. ``"black&female"``). Defaults to
            :attr:`attributes`.

        Returns
        -------
        pandas.DataFrame
            Shape (n_images, n_attributes), string columns, same index as the table.
        """
        names = list(attributes or self.attributes)
        out = {}
        for name in names:
            parts = name.split(INTERSECTION_SEPARATOR)
            unknown = [p for p in parts if p not in self.attributes]
            if unknown:
                raise DataError(
                    f"manifest {self.name!r} has no attribute(s) {unknown}; "
                    f"available: {list(self.attributes)}"
                )
            cols = [self._clean(self.table[p]) for p in parts]
            joined = cols[0]
            for c in cols[1:]:
                joined = joined + INTERSECTION_SEPARATOR + c
            out[name] = joined
        return pd.DataFrame(out, index=self.table.index)

    @staticmethod
    def _clean(col: pd.Series) -> pd.Series:
        s = col.astype("string").str.strip()
        return s.mask(s.isna() | (s == ""), MISSING_LABEL).astype(str)

    def content_hash(self) -> str:
        """SHA-256 of the manifest's canonical CSV (sorted by image_id).

        Identifies exactly which images, subjects and labels a result was computed
        on; recorded in every result file. Image bytes are covered separately by
        the embedding cache keys.
        """
        cols = [*REQUIRED_COLUMNS, *self.attributes]
        canon = self.table[cols].sort_values("image_id").astype("string").fillna("<NA>")
        data = canon.to_csv(index=False, lineterminator="\n").encode("utf-8")
        return hashlib.sha256(data).hexdigest()

    def summary(self) -> dict:
        """Counts for reports: images, subjects, and subjects per attribute value."""
        labels = self.group_labels()
        per_attr = {}
        for a in self.attributes:
            per_attr[a] = (
                pd.DataFrame({"s": self.table["subject_id"], "g": labels[a]})
                .drop_duplicates()
                .groupby("g")["s"]
                .size()
                .sort_index()
                .to_dict()
            )
        return {
            "name": self.name,
            "images": int(len(self.table)),
            "subjects": int(self.table["subject_id"].nunique()),
            "label_source": sorted(self.table["label_source"].astype(str).unique()),
            "subjects_per_group": per_attr,
        }
