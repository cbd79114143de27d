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
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import DataError, DatasetWarning

__all__ = [
    "Manifest", "REQUIRED_COLUMNS", "MISSING_LABEL", "INTERSECTION_SEPARATOR", "RESERVED_LABELS", "LIST_SEPARATOR",
    "DOMINANT_SUBJECT_SHARE", "warn_same_image_under_several_subjects",
]

REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "path", "subject_id", "label_source")

#: Group name given to a missing (NA/empty) demographic label. Such images stay in
#: every count and form their own group, reported like any other.
MISSING_LABEL = "missing"

#: Joins attribute names and values of an intersection, e.g. ``face_eth&face_gender``
#: and ``black&female``.
INTERSECTION_SEPARATOR = "&"

#: Joins group names in one cell of the published tables (``differentials.csv`` ``groups``).
LIST_SEPARATOR = ";"

#: Group names the harness uses itself; a label equal to one is refused.
RESERVED_LABELS = ("(all)",)

#: A subject supplying more than this share of a group's mated comparisons is warned about.
DOMINANT_SUBJECT_SHARE = 0.5

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
    provenance : dict or None
        Facts about the dataset release a result depends on, recorded in the run's
        ``metrics.json`` (``dataset.provenance``): licence, consent, which attribute is
        self-reported or annotated, the release version and metadata hash (issue #14,
        :mod:`bench.data.consented`). Plain JSON values; not part of :meth:`content_hash`.

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
    provenance: dict | None = field(default=None, compare=False)  # issue #14: release facts (bench.data.consented)

    def __post_init__(self) -> None:
        self.validate()
        if self.check_files and self.root is not None:  # a dataset as loaded (not a derived subset)
            self.warn_data_quality()

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
        for col in ("image_id", "subject_id", "path"):
            ctrl = t[col].astype(str).map(lambda v: bool(_CONTROL.search(v)))
            if ctrl.any():
                row = ctrl.to_numpy().nonzero()[0][0]
                raise DataError(
                    f"manifest {self.name!r}: {col!r} in row {t.index[row]} holds a control character (NUL, newline...): "
                    f"{str(t[col].iloc[row])!r}; file names and ids must be printable text"
                )
        self._validate_labels()
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

    def _validate_labels(self) -> None:
        """Attribute names and labels must not collide with the names the harness builds."""
        for a in self.attributes:
            if INTERSECTION_SEPARATOR in a or _CONTROL.search(a):
                raise DataError(
                    f"manifest {self.name!r}: attribute name {a!r} contains {INTERSECTION_SEPARATOR!r} or a control character; "
                    f"{INTERSECTION_SEPARATOR!r} joins the attributes of an intersection (e.g. 'face_eth&face_gender'): rename the column"
                )
            values = self._clean(self.table[a])
            for v in sorted(set(values)):
                problem = None
                if v in RESERVED_LABELS:
                    problem = f"is reserved (the harness's name for all comparisons together: {list(RESERVED_LABELS)})"
                elif INTERSECTION_SEPARATOR in v:
                    problem = f"contains {INTERSECTION_SEPARATOR!r}, which joins the labels of an intersection group (e.g. 'black&female')"
                elif LIST_SEPARATOR in v:
                    problem = f"contains {LIST_SEPARATOR!r}, which separates group names in the published tables"
                elif _CONTROL.search(v):
                    problem = "contains a control character (NUL, tab, newline...)"
                if problem:
                    row = self.table.index[(values == v).to_numpy()][0]
                    raise DataError(f"manifest {self.name!r}: attribute {a!r} label {v!r} (row {row}) {problem}; relabel it in the dataset")

    def mated_dominance(self, attributes: Sequence[str] | None = None, share: float = DOMINANT_SUBJECT_SHARE) -> list[dict]:
        """Groups where one subject supplies more than ``share`` of the mated comparisons.

        Mated comparisons of a subject with ``n`` images: ``n (n - 1) / 2``. A group
        whose FNMR is mostly one person's is a fact about that person, and its
        interval understates the uncertainty; :meth:`warn_data_quality` warns.

        Returns
        -------
        list of dict
            ``attribute, group, subject_id, share, mated`` per dominated group with at
            least two subjects (a one-subject group is covered by the small-group rule).
        """
        t = self.table
        labels = self.group_labels(attributes)
        out = []
        for a in labels.columns:
            per = pd.DataFrame({"s": t["subject_id"].astype(str).to_numpy(), "g": labels[a].to_numpy()}).groupby(["g", "s"]).size()
            pairs = per * (per - 1) // 2
            for g, sub in pairs.groupby(level=0):
                total = int(sub.sum())
                if len(sub) < 2 or total == 0:
                    continue
                top = sub.idxmax()[1]
                frac = float(sub.max()) / total
                if frac > share:
                    out.append({"attribute": a, "group": str(g), "subject_id": str(top), "share": frac, "mated": total})
        return out

    def warn_data_quality(self) -> None:
        """Warn (:class:`bench.errors.DatasetWarning`) about groups one subject dominates."""
        for d in self.mated_dominance():
            warnings.warn(
                f"manifest {self.name!r}: subject {d['subject_id']!r} supplies {d['share']:.0%} of the {d['mated']} mated "
                f"comparisons of group {d['attribute']}={d['group']!r}; that group's FNMR is mostly one person's "
                "(consider capping images per subject)",
                DatasetWarning, stacklevel=3,
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
            **({"provenance": dict(self.provenance)} if self.provenance else {}),  # issue #14
        }


def warn_same_image_under_several_subjects(manifest: Manifest, sha256s: Sequence[str | None]) -> list[tuple[str, list[str]]]:
    """Warn when one image file (by content hash) appears under two or more subject ids.

    Such a pair is scored as a *non-mated* comparison of identical images (a certain
    false match) although it is one person, or the labels are wrong.

    Parameters
    ----------
    manifest : Manifest
    sha256s : sequence of str or None
        Shape (n_images,): SHA-256 of each image's bytes (None where unreadable), as
        computed for the embedding cache (:func:`bench.acquisition.images.image_sha256`).

    Returns
    -------
    list of (sha256, subject ids)
        Every shared content hash with the subjects it appears under; each is warned
        as a :class:`bench.errors.DatasetWarning` (the first five named).
    """
    t = pd.DataFrame({"sha": list(sha256s), "s": manifest.table["subject_id"].astype(str).to_numpy(),
                      "img": manifest.table["image_id"].astype(str).to_numpy()}).dropna(subset=["sha"])
    subjects = t.groupby("sha")["s"].agg(lambda x: sorted(set(x)))
    shared = [(sha, subs) for sha, subs in subjects.items() if len(subs) > 1]
    for sha, subs in shared[:5]:
        imgs = sorted(t.loc[t["sha"] == sha, "img"])
        warnings.warn(
            f"manifest {manifest.name!r}: images {imgs} are the same file (SHA-256 {sha[:12]}...) under subject ids {subs}; "
            "their comparisons count as non-mated (a certain false match): fix the subject ids or remove the copies",
            DatasetWarning, stacklevel=2,
        )
    if len(shared) > 5:
        warnings.warn(f"manifest {manifest.name!r}: {len(shared) - 5} more image file(s) appear under several subject ids", DatasetWarning, stacklevel=2)
    return shared
