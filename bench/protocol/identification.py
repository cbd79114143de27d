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

:class:`IdentificationProtocol` (the ``protocol`` config of an identification run),
:class:`IdentificationResult` (what a run computed, read by the report) and
:func:`check_permitted_uses` (the licence gate) sit here beside the verification
protocol's :mod:`bench.protocol.verification`; the driver is :mod:`bench.identification_run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from bench.errors import ConfigError, DataError

__all__ = [
    "GALLERY_IMAGE_RULES", "GallerySplit", "split_gallery", "IdentificationProtocol", "IdentificationResult", "check_permitted_uses",
    "IDENTIFICATION_USE",
]

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


# ----------------------------------------------------------------------------- the protocol config and its result
#: The value of a dataset's ``permitted_uses`` that allows this protocol.
IDENTIFICATION_USE = "identification_research"


def check_permitted_uses(dataset_name: str, permitted_uses: Any) -> None:
    """Refuse a dataset whose licence rules out identification research.

    Parameters
    ----------
    dataset_name : str
    permitted_uses : None or dict
        From the dataset config: ``{"uses": [...], "source": "..."}`` or a plain list.
        None (not stated) is refused as well: identification needs an explicit yes.

    Raises
    ------
    ConfigError
        Naming the dataset, what it permits and why.
    """
    if permitted_uses is None:
        raise ConfigError(
            f"dataset {dataset_name!r} does not state permitted_uses; protocol=identification needs "
            f"'{IDENTIFICATION_USE}' in its dataset config (dataset.permitted_uses.uses) and the licence source"
        )
    uses = permitted_uses.get("uses", []) if isinstance(permitted_uses, dict) else list(permitted_uses)
    if IDENTIFICATION_USE not in uses:
        why = permitted_uses.get("reason", "") if isinstance(permitted_uses, dict) else ""
        raise ConfigError(
            f"dataset {dataset_name!r} does not permit identification research (permitted_uses: {uses})"
            + (f": {why}" if why else "") + "; protocol=identification refuses it"
        )


@dataclass(frozen=True)
class IdentificationProtocol:
    """How the gallery is formed, searches run and thresholds set (``configs/protocol/identification.yaml``).

    Attributes
    ----------
    type : str
        Always ``"identification"`` (selects this protocol).
    attributes, intersections : as in :class:`bench.run.Protocol`
    enrolled_fraction : float
        Share of each stratum's subjects enrolled, in (0, 1).
    gallery_image : {"first", "random"}
        Which image of an enrolled subject is its template.
    gallery_subjects : list of str or None
        Explicit enrolled subjects (overrides the draw).
    target_fpirs : list of float
        Targets in (0, 1) of the thresholds set on the non-mated searches' top scores.
    use_nominal_threshold : bool
        Also report at the model's published 1:1 threshold.
    candidate_list_length : int
        ``L``: candidates kept per search (NIST: 50).
    ranks : list of int
        Ranks ``R`` of FNIR (each ``<= L``); 1 is always reported.
    confidence : float
    seed : int
    bootstrap_replicates : int or None
        Probe-subject bootstrap replicates (None skips).
    gallery_redraws : int or None
        Re-draws of the gallery split (seeds ``seed+1 ..``) for the split-variation interval.
    gallery_sizes : list of float
        Gallery-size sweep: fractions of the enrolled subjects in (0, 1].
    gallery_size_draws : int
        Seeded subsets per size (stratified, the composition kept).
    gallery_size_threshold : str or None
        Name of the threshold the gallery-size sweep holds fixed (e.g. ``nominal``);
        None: the primary one (first target FPIR that could be set).
    gallery_shares : list of float
        Composition sweep: for each group h of each base attribute, galleries of
        ``min(n_h, N - n_h)`` templates in which h has each of these shares (in [0, 1]);
        empty skips it.
    device : str or None
        Torch device of the search (None: CUDA when present).
    search_dtype : {"float32", "float64"}
    """

    type: str = "identification"
    attributes: list[str] | None = None
    intersections: list[list[str]] = field(default_factory=list)
    enrolled_fraction: float = 0.5
    gallery_image: str = "first"
    gallery_subjects: list[str] | None = None
    target_fpirs: list[float] = field(default_factory=lambda: [1e-2])
    use_nominal_threshold: bool = True
    candidate_list_length: int = 50
    ranks: list[int] = field(default_factory=lambda: [1, 5])
    confidence: float = 0.95
    seed: int = 0
    bootstrap_replicates: int | None = 1000
    gallery_redraws: int | None = 20
    gallery_sizes: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    gallery_size_draws: int = 20
    gallery_size_threshold: str | None = None
    gallery_shares: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    device: str | None = None
    search_dtype: str = "float64"

    def __post_init__(self) -> None:
        if self.type != "identification":
            raise ConfigError(f"protocol.type must be 'identification' here, got {self.type!r}")
        if not 0 < float(self.enrolled_fraction) < 1:
            raise ConfigError(f"protocol.enrolled_fraction must be in (0, 1), got {self.enrolled_fraction!r}")
        if self.gallery_image not in GALLERY_IMAGE_RULES:
            raise ConfigError(f"protocol.gallery_image must be one of {list(GALLERY_IMAGE_RULES)}, got {self.gallery_image!r}")
        for f in self.target_fpirs:
            if not 0 < float(f) < 1:
                raise ConfigError(f"protocol.target_fpirs: {f!r} is outside (0, 1)")
        if not self.target_fpirs and not self.use_nominal_threshold:
            raise ConfigError("protocol: give at least one target_fpirs value or use_nominal_threshold: true")
        L = self.candidate_list_length
        if isinstance(L, bool) or int(L) != L or L < 1:
            raise ConfigError(f"protocol.candidate_list_length must be an integer >= 1, got {L!r}")
        bad = [r for r in self.ranks if int(r) != r or not 1 <= int(r) <= int(L)]
        if bad:
            raise ConfigError(f"protocol.ranks must be integers in [1, candidate_list_length={L}], got {bad}")
        object.__setattr__(self, "ranks", sorted({1, *[int(r) for r in self.ranks]}))
        if not 0 < self.confidence < 1:
            raise ConfigError(f"protocol.confidence must be in (0, 1), got {self.confidence}")
        for key in ("bootstrap_replicates", "gallery_redraws"):
            v = getattr(self, key)
            if v is not None and (int(v) != v or v < 1):
                raise ConfigError(f"protocol.{key} must be an integer >= 1 or null, got {v!r}")
        for s in self.gallery_sizes:
            if not 0 < float(s) <= 1:
                raise ConfigError(f"protocol.gallery_sizes: {s!r} is not a fraction in (0, 1]")
        for s in self.gallery_shares:
            if not 0 <= float(s) <= 1:
                raise ConfigError(f"protocol.gallery_shares: {s!r} is not a share in [0, 1]")
        if int(self.gallery_size_draws) < 1:
            raise ConfigError(f"protocol.gallery_size_draws must be >= 1, got {self.gallery_size_draws}")
        if self.search_dtype not in ("float32", "float64"):
            raise ConfigError(f"protocol.search_dtype must be float32 or float64, got {self.search_dtype!r}")


@dataclass
class IdentificationResult:
    """Everything :func:`evaluate_identification` computed (written by :mod:`bench.report.identification`).

    Attributes
    ----------
    split_counts : pandas.DataFrame
        Per attribute and group: enrolled / not, templates, FTE, searches, FTA.
    thresholds : list of dict
        ``investigation`` (no threshold), nominal, and one per target FPIR (or refused).
    per_group : pandas.DataFrame
        Per probe group: FPIR, FNIR at each rank, SEL, FTA_probe with Wilson and probe-subject bootstrap intervals,
        and ``redraw_low/high`` (re-drawn gallery split).
    false_by_gallery, false_cells : pandas.DataFrame
        False candidates per gallery group and per probe-group x gallery-group cell.
    gallery_size : pandas.DataFrame
        Per attribute, size, probe group: measured FPIR (mean and range over draws) and predicted.
    gallery_composition : pandas.DataFrame
        Per attribute, varied gallery group, share, probe group: measured FPIR and predicted.
    search_table : pandas.DataFrame
        Per search: probe subject, groups, kind, acquired, mate rank/score and the candidate list (git-ignored file).
    """

    manifest: Any
    attributes: list[str]
    split: GallerySplit
    split_counts: pd.DataFrame
    thresholds: list[dict]
    per_group: pd.DataFrame
    false_by_gallery: pd.DataFrame
    false_cells: pd.DataFrame
    gallery_size: pd.DataFrame
    search_table: pd.DataFrame
    model_info: dict
    dataset_info: dict
    protocol: IdentificationProtocol
    timings: dict = field(default_factory=dict)
    gallery_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    gallery_composition: pd.DataFrame = field(default_factory=pd.DataFrame)
    cross_fmr: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def primary_threshold(self) -> dict | None:
        """First target-FPIR threshold that could be set, else the nominal one, else None."""
        ok = [t for t in self.thresholds if t.get("status") == "ok" and t["kind"] != "investigation"]
        cal = [t for t in ok if t["kind"] == "target_fpir"]
        return (cal or ok or [None])[0]
