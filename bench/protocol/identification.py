"""The 1:N identification protocol: who is enrolled, which images search the gallery.

Definitions (NIST FRVT/FRTE 1:N, ISO/IEC 19795-1; ``docs/identification.md``):

* the **gallery** holds one template per enrolled subject;
* a **mated search** is a probe image of an enrolled subject (every image of that
  subject other than its gallery template);
* a **non-mated search** is a probe image of a subject who is not enrolled (every image
  of such a subject).

:func:`split_gallery` draws the enrolled subjects by a seeded draw, stratified by the
joint demographic label of the subject so that every stratum with at least two subjects
has both enrolled and non-enrolled subjects; or takes an explicit list. Failures to
acquire are kept: a gallery image that failed to acquire is a failure to enrol (the
subject stays enrolled without a template, so its mated searches cannot succeed); a probe
that failed to acquire is a search that was not completed. Both are counted per group by
:mod:`bench.metrics.identification`, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from bench.errors import ConfigError, DataError

__all__ = ["GALLERY_IMAGE_RULES", "GallerySplit", "split_gallery"]

#: Which image of an enrolled subject becomes its gallery template:
#: ``first`` (the first image in manifest order, e.g. the neutral front view of FRL
#: London) or ``random`` (a seeded draw among the subject's images).
GALLERY_IMAGE_RULES = ("first", "random")


@dataclass(frozen=True)
class GallerySplit:
    """Enrolled and non-enrolled subjects, gallery templates and searches of one draw.

    Attributes
    ----------
    enrolled : ndarray of str, shape (N,)
        Enrolled subject ids, sorted.
    gallery_rows : ndarray of int64, shape (N,)
        Manifest row of each enrolled subject's gallery image (same order as ``enrolled``).
    gallery_acquired : ndarray of bool, shape (N,)
        False where the gallery image failed to acquire (failure to enrol).
    probe_rows : ndarray of int64, shape (P,)
        Manifest rows of every search (mated and non-mated), in manifest order.
    probe_mate : ndarray of int64, shape (P,)
        For a mated search the position in ``enrolled`` of its subject; -1 for a
        non-mated search.
    probe_acquired : ndarray of bool, shape (P,)
        False where the probe image failed to acquire (search not completed).
    seed : int or None
        Seed of the draw (None for an explicit gallery list).
    fraction : float or None
        Requested enrolled fraction (None for an explicit list).
    gallery_image : str
        Rule of :data:`GALLERY_IMAGE_RULES` used.
    """

    enrolled: NDArray[np.str_]
    gallery_rows: NDArray[np.int64]
    gallery_acquired: NDArray[np.bool_]
    probe_rows: NDArray[np.int64]
    probe_mate: NDArray[np.int64]
    probe_acquired: NDArray[np.bool_]
    seed: int | None
    fraction: float | None
    gallery_image: str

    @property
    def template_rows(self) -> NDArray[np.int64]:
        """Manifest rows of the gallery templates actually searched (acquired ones), shape (N_t,)."""
        return self.gallery_rows[self.gallery_acquired]

    @property
    def probe_template(self) -> NDArray[np.int64]:
        """Per search: index of the mate among :attr:`template_rows`; -1 non-mated; -2 mate failed to enrol."""
        pos = np.cumsum(self.gallery_acquired) - 1
        out = np.full(self.probe_mate.shape, -1, dtype=np.int64)
        mated = self.probe_mate >= 0
        ok = mated.copy()
        ok[mated] = self.gallery_acquired[self.probe_mate[mated]]
        out[ok] = pos[self.probe_mate[ok]]
        out[mated & ~ok] = -2
        return out

    def counts(self, subject_ids: ArrayLike, labels: pd.DataFrame) -> pd.DataFrame:
        """Per attribute and group: subjects enrolled / not, templates, failures, searches.

        Parameters
        ----------
        subject_ids : array-like of str, shape (n_images,)
        labels : pandas.DataFrame, shape (n_images, n_attributes)
            Group of every image (the same rows as the manifest).

        Returns
        -------
        pandas.DataFrame
            Columns ``attribute, group, enrolled_subjects, not_enrolled_subjects,
            gallery_templates, gallery_fte, mated_searches, mated_search_fta,
            nonmated_searches, nonmated_search_fta``. A gallery entry's group is its
            template image's label; a search's group is the probe image's label.
        """
        sid = np.asarray(subject_ids).astype(str)
        enrolled = set(self.enrolled.tolist())
        rows = []
        mated = self.probe_mate >= 0
        for attr in labels.columns:
            lab = labels[attr].astype(str).to_numpy()
            first = pd.DataFrame({"s": sid, "g": lab}).drop_duplicates("s")
            for g in sorted(set(lab.tolist())):
                subj = first["s"][first["g"] == g]
                n_enr = int(subj.isin(enrolled).sum())
                gl = lab[self.gallery_rows] == g
                pl = lab[self.probe_rows] == g
                rows.append({
                    "attribute": attr, "group": g,
                    "enrolled_subjects": n_enr, "not_enrolled_subjects": int(len(subj) - n_enr),
                    "gallery_templates": int((gl & self.gallery_acquired).sum()),
                    "gallery_fte": int((gl & ~self.gallery_acquired).sum()),
                    "mated_searches": int((pl & mated).sum()),
                    "mated_search_fta": int((pl & mated & ~self.probe_acquired).sum()),
                    "nonmated_searches": int((pl & ~mated).sum()),
                    "nonmated_search_fta": int((pl & ~mated & ~self.probe_acquired).sum()),
                })
        return pd.DataFrame(rows)


def _stratum(labels: pd.DataFrame | None, n: int) -> NDArray[np.str_]:
    if labels is None or labels.shape[1] == 0:
        return np.full(n, "", dtype=object)
    return labels.astype(str).agg("|".join, axis=1).to_numpy()


def split_gallery(
    subject_ids: ArrayLike,
    acquired: ArrayLike,
    labels: pd.DataFrame | None = None,
    *,
    fraction: float = 0.5,
    seed: int = 0,
    gallery_image: str = "first",
    gallery_subjects: list[str] | None = None,
) -> GallerySplit:
    """Draw enrolled subjects (stratified, seeded) and form the gallery and the searches.

    Parameters
    ----------
    subject_ids : array-like of str, shape (n_images,)
        Subject of every manifest row.
    acquired : array-like of bool, shape (n_images,)
        False where acquisition failed (the row is kept and counted).
    labels : pandas.DataFrame, optional
        Shape (n_images, n_attributes): the draw is stratified by the subject's joint
        label (of its first image) over these columns.
    fraction : float, default 0.5
        Share of each stratum's subjects enrolled, in (0, 1). A stratum of ``n >= 2``
        subjects enrols ``round(fraction * n)`` clipped to ``[1, n - 1]``; a stratum of
        one subject enrols it with probability ``fraction`` (it cannot have both).
    seed : int, default 0
        Seed of the draw and of the ``random`` template choice.
    gallery_image : {"first", "random"}
        Which image of an enrolled subject is its template (:data:`GALLERY_IMAGE_RULES`).
    gallery_subjects : list of str, optional
        Explicit enrolled subjects (overrides ``fraction``; ``seed`` still drives a
        ``random`` template choice).

    Returns
    -------
    GallerySplit

    Raises
    ------
    ConfigError
        ``fraction`` outside (0, 1), an unknown ``gallery_image`` rule, or explicit
        subjects that are not in the dataset (named) or that cover every subject.
    DataError
        Shapes that do not match, or fewer than two subjects.
    """
    sid = np.asarray(subject_ids).astype(str)
    acq = np.asarray(acquired, dtype=bool)
    n = sid.size
    if acq.shape != (n,):
        raise DataError(f"acquired: expected shape ({n},), got {acq.shape}")
    if labels is not None and len(labels) != n:
        raise DataError(f"labels: expected {n} rows (one per image), got {len(labels)}")
    if gallery_image not in GALLERY_IMAGE_RULES:
        raise ConfigError(f"protocol.gallery_image must be one of {list(GALLERY_IMAGE_RULES)}, got {gallery_image!r}")
    subjects, first_row = np.unique(sid, return_index=True)
    if subjects.size < 2:
        raise DataError(f"identification needs at least two subjects (one enrolled, one not); got {subjects.size}")
    rng = np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(13,)))
    if gallery_subjects is not None:
        wanted = np.asarray([str(s) for s in gallery_subjects])
        unknown = sorted(set(wanted.tolist()) - set(subjects.tolist()))
        if unknown:
            raise ConfigError(f"protocol.gallery_subjects: {len(unknown)} subject(s) not in the dataset, e.g. {unknown[:5]}")
        enrolled = np.unique(wanted)
        if enrolled.size == subjects.size:
            raise ConfigError("protocol.gallery_subjects lists every subject: no non-mated search would remain")
        if enrolled.size == 0:
            raise ConfigError("protocol.gallery_subjects is empty: the gallery needs at least one subject")
        used_seed, used_fraction = None, None
    else:
        f = float(fraction)
        if not 0.0 < f < 1.0:
            raise ConfigError(f"protocol.enrolled_fraction must be in (0, 1), got {fraction!r}")
        strata = _stratum(labels, n)[first_row]
        chosen = []
        for st in sorted(set(strata.tolist())):
            members = subjects[strata == st]
            m = members.size
            if m >= 2:
                k = min(max(int(round(f * m)), 1), m - 1)
            else:
                k = int(rng.random() < f)
            chosen.extend(rng.choice(members, size=k, replace=False).tolist())
        enrolled = np.unique(np.asarray(chosen, dtype=str))
        if enrolled.size == 0:  # every stratum had one subject and none was drawn
            enrolled = subjects[:1]
        used_seed, used_fraction = int(seed), f
    is_enrolled = np.isin(sid, enrolled)
    order = np.argsort(sid, kind="stable")  # rows of each subject, in manifest order
    start = np.searchsorted(sid[order], enrolled, side="left")
    size = np.searchsorted(sid[order], enrolled, side="right") - start
    offset = np.zeros(enrolled.size, dtype=np.int64) if gallery_image == "first" else rng.integers(0, size)
    gallery_rows = order[start + offset].astype(np.int64)
    in_gallery = np.zeros(n, dtype=bool)
    in_gallery[gallery_rows] = True
    probe_rows = np.flatnonzero(~in_gallery).astype(np.int64)
    mate_pos = np.searchsorted(enrolled, sid[probe_rows])
    probe_mate = np.where(is_enrolled[probe_rows], mate_pos, -1).astype(np.int64)
    return GallerySplit(
        enrolled=enrolled,
        gallery_rows=gallery_rows,
        gallery_acquired=acq[gallery_rows],
        probe_rows=probe_rows,
        probe_mate=probe_mate,
        probe_acquired=acq[probe_rows],
        seed=used_seed,
        fraction=used_fraction,
        gallery_image=gallery_image,
    )
