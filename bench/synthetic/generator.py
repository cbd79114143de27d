"""Synthetic populations: identity embeddings with known demographic structure.

No face images and no model are involved: the generator emits unit-norm
embeddings directly, so it runs anywhere in seconds and its ground truth is known
by construction (:mod:`bench.synthetic.truth`). The default (``make demo``)
experiment is such a population, calibrated to dlib x FRL London
(:mod:`bench.synthetic.calibrate`).

Generative model (per group ``g``, dimension ``d``)::

    c_g    group centre: a random unit vector (seeded)
    m_i    = normalize(c_g + identity_spread_g * z_i / sqrt(d)),          z_i ~ N(0, I_d)
    tau_i  = image_noise_g * exp(image_noise_sd_g * eta_i),                eta_i ~ N(0, 1)
    x_ij   = normalize(m_i + tau_i * e_ij / sqrt(d)),                      e_ij ~ N(0, I_d)

A small ``identity_spread_g`` packs a group's identities close together (strangers
look alike: higher FMR); a large ``image_noise_g`` scatters a person's images
(higher FNMR); ``image_noise_sd_g > 0`` makes some people much less stable than
others (per-subject heterogeneity, Doddington's "goats"). Comparisons are scored by
cosine similarity. A per-group ``fta_rate`` marks images as failures to acquire
(Bernoulli, seeded, independent of the embeddings), so the FTA path is exercised
too. Labels are generator conditioning attributes, recorded as
``label_source = "generator"`` (metrics-reference §6.4): they never stand for real
people.

Streaming. Random numbers are drawn per block of :data:`BLOCK_SUBJECTS` subjects
from a seed sequence keyed by (group, block), so any block can be produced on its
own: :meth:`SyntheticPopulation.iter_chunks` yields the population in chunks of any
size with values identical to :meth:`SyntheticPopulation.generate`, and memory stays
bounded by one chunk (10^6 subjects need no more than a chunk's embeddings; no
comparison is ever formed here). A population's subjects are also the first
subjects of any larger population with the same seed and groups, so growing
``subjects`` (or ``subjects_scale``) only appends people.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from bench.data.manifest import Manifest
from bench.errors import ConfigError

__all__ = ["GroupSpec", "SyntheticChunk", "SyntheticPopulation", "BLOCK_SUBJECTS"]

#: Subjects per random-number block (the unit of seeding; does not affect the model).
BLOCK_SUBJECTS = 256


@dataclass(frozen=True)
class GroupSpec:
    """Parameters of one synthetic demographic group.

    Attributes
    ----------
    subjects : int
        Number of identities (>= 1).
    images_per_subject : int
        Images per identity (>= 1; 1 gives no mated comparisons for the group).
    identity_spread : float
        Spread of identity centres around the group centre (> 0, unitless). Two
        identities of the group have cosine about ``1 / (1 + identity_spread^2)``:
        smaller means more alike strangers and a higher FMR.
    image_noise : float
        Median spread of a person's images around their identity (>= 0). Two images
        of one person have cosine about ``1 / (1 + image_noise^2)``: larger means a
        higher FNMR.
    fta_rate : float
        Probability in [0, 1) that an image fails to acquire.
    image_noise_sd : float
        Standard deviation (>= 0) of the per-subject log image noise: subject ``i``
        has noise ``image_noise * exp(image_noise_sd * eta_i)``, ``eta_i ~ N(0, 1)``.
        0 (default) makes every subject equally stable.
    labels : mapping of str to str
        Attribute values of the group, e.g. ``{"group": "A"}``.
    """

    subjects: int
    images_per_subject: int
    identity_spread: float
    image_noise: float
    fta_rate: float = 0.0
    image_noise_sd: float = 0.0
    labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class SyntheticChunk:
    """Consecutive subjects of one group, as produced by :meth:`SyntheticPopulation.iter_chunks`.

    Attributes
    ----------
    group : str
        Group name.
    first_subject : int
        Index (within the group) of the chunk's first subject.
    embeddings : numpy.ndarray
        Shape (n_subjects, images_per_subject, dim), float32, unit L2 norm.
    acquired : numpy.ndarray
        Shape (n_subjects, images_per_subject), bool; False = simulated FTA.
    """

    group: str
    first_subject: int
    embeddings: np.ndarray
    acquired: np.ndarray

    @property
    def n_subjects(self) -> int:
        """Subjects in the chunk."""
        return int(self.embeddings.shape[0])


class SyntheticPopulation:
    """Seeded synthetic population: a manifest plus its embeddings.

    Parameters
    ----------
    groups : mapping of str to mapping
        Group name -> keyword arguments of :class:`GroupSpec`. The group name is
        the value of the attribute ``group`` unless ``labels`` says otherwise.
    dim : int
        Embedding dimension (>= 4).
    seed : int
        Seed of every random draw; the same seed gives identical arrays.
    name : str
        Dataset name used in reports.
    subjects_scale : float
        Multiplies every group's ``subjects`` (rounded, at least 1): e.g. 1000 to
        simulate the same model on a population 1000 times larger.

    Raises
    ------
    ConfigError
        If a parameter is out of range (named with its group).
    """

    def __init__(
        self,
        groups: Mapping[str, Mapping],
        dim: int = 128,
        seed: int = 0,
        name: str = "synthetic",
        subjects_scale: float = 1.0,
    ) -> None:
        if int(dim) != dim or dim < 4:
            raise ConfigError(f"synthetic dataset: dim must be an integer >= 4, got {dim!r}")
        if not groups:
            raise ConfigError("synthetic dataset: at least one group is required")
        if not subjects_scale > 0:
            raise ConfigError(f"synthetic dataset: subjects_scale must be > 0, got {subjects_scale!r}")
        self.specs: dict[str, GroupSpec] = {}
        for gname, params in groups.items():
            try:
                spec = GroupSpec(**dict(params))
            except TypeError as err:
                raise ConfigError(f"synthetic group {gname!r}: {err}; valid keys: {sorted(GroupSpec.__dataclass_fields__)}") from err
            if spec.subjects < 1 or spec.images_per_subject < 1:
                raise ConfigError(f"synthetic group {gname!r}: subjects and images_per_subject must be >= 1")
            if spec.identity_spread <= 0 or spec.image_noise < 0 or spec.image_noise_sd < 0:
                raise ConfigError(
                    f"synthetic group {gname!r}: identity_spread must be > 0, image_noise and image_noise_sd >= 0 "
                    f"(got {spec.identity_spread}, {spec.image_noise}, {spec.image_noise_sd})"
                )
            if not 0 <= spec.fta_rate < 1:
                raise ConfigError(f"synthetic group {gname!r}: fta_rate must be in [0, 1), got {spec.fta_rate}")
            self.specs[str(gname)] = spec
        self.dim = int(dim)
        self.seed = int(seed)
        self.name = name
        self.subjects_scale = float(subjects_scale)
        self._cache: tuple[Manifest, np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ description
    @property
    def attributes(self) -> tuple[str, ...]:
        """Attribute names carried by the groups (``("group",)`` by default)."""
        names: list[str] = []
        for spec in self.specs.values():
            for k in (spec.labels or {"group": ""}):
                if k not in names:
                    names.append(k)
        return tuple(names)

    @property
    def subjects(self) -> dict[str, int]:
        """Group name -> number of subjects after ``subjects_scale``."""
        return {g: max(1, int(round(s.subjects * self.subjects_scale))) for g, s in self.specs.items()}

    def group_labels(self, group: str) -> dict[str, str]:
        """Attribute values of ``group`` (``{"group": group}`` when no labels are given)."""
        spec = self.specs[group]
        return {k: str(v) for k, v in dict(spec.labels or {"group": group}).items()}

    def centres(self) -> dict[str, np.ndarray]:
        """Group name -> group centre ``c_g``, shape (dim,), unit norm (seeded)."""
        out = {}
        for gi, g in enumerate(self.specs):
            rng = np.random.default_rng(np.random.SeedSequence(entropy=self.seed, spawn_key=(0, gi)))
            out[g] = _unit(rng.standard_normal(self.dim))
        return out

    def settings(self) -> dict:
        """Generator parameters for provenance (JSON-serialisable)."""
        return {
            "dim": self.dim,
            "seed": self.seed,
            "subjects_scale": self.subjects_scale,
            "block_subjects": BLOCK_SUBJECTS,
            "groups": {g: {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in vars(s).items()} for g, s in self.specs.items()},
        }

    # ------------------------------------------------------------------ drawing
    def _block(self, gi: int, group: str, centre: np.ndarray, block: int, n_total: int) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (n, k, d) float32 and acquired (n, k) of one seeded block."""
        spec = self.specs[group]
        lo = block * BLOCK_SUBJECTS
        n = min(BLOCK_SUBJECTS, n_total - lo)
        k, d = spec.images_per_subject, self.dim
        rng = np.random.default_rng(np.random.SeedSequence(entropy=self.seed, spawn_key=(1, gi, block)))
        # a whole block is always drawn, so a population's subjects are the first ones
        # of any larger population with the same seed and group order
        b = BLOCK_SUBJECTS
        z = rng.standard_normal((b, d))[:n]
        eta = rng.standard_normal(b)[:n]
        e = rng.standard_normal((b, k, d))[:n]
        fail = rng.random((b, k))[:n] < spec.fta_rate
        ids = _unit(centre[None, :] + (spec.identity_spread / math.sqrt(d)) * z)
        tau = spec.image_noise * np.exp(spec.image_noise_sd * eta) / math.sqrt(d)
        x = _unit(ids[:, None, :] + tau[:, None, None] * e)
        return x.astype(np.float32), ~fail

    def iter_chunks(self, chunk_subjects: int = 4096) -> Iterator[SyntheticChunk]:
        """Yield the population group by group, ``chunk_subjects`` subjects at a time.

        Values are identical to :meth:`generate` whatever the chunk size; only one
        chunk (plus one block) is held in memory.

        Parameters
        ----------
        chunk_subjects : int, default 4096
            Subjects per chunk (>= 1); the last chunk of a group may be smaller.

        Yields
        ------
        SyntheticChunk

        Raises
        ------
        ConfigError
            If ``chunk_subjects < 1``.
        """
        if int(chunk_subjects) != chunk_subjects or chunk_subjects < 1:
            raise ConfigError(f"chunk_subjects must be a positive integer, got {chunk_subjects!r}")
        centres = self.centres()
        n_subjects = self.subjects
        for gi, g in enumerate(self.specs):
            n_total = n_subjects[g]
            buf_x: list[np.ndarray] = []
            buf_a: list[np.ndarray] = []
            held = 0
            first = 0
            for block in range((n_total + BLOCK_SUBJECTS - 1) // BLOCK_SUBJECTS):
                x, a = self._block(gi, g, centres[g], block, n_total)
                buf_x.append(x)
                buf_a.append(a)
                held += x.shape[0]
                while held >= chunk_subjects:
                    xs, acq = np.concatenate(buf_x), np.concatenate(buf_a)
                    yield SyntheticChunk(g, first, xs[:chunk_subjects], acq[:chunk_subjects])
                    first += chunk_subjects
                    buf_x, buf_a = [xs[chunk_subjects:]], [acq[chunk_subjects:]]
                    held -= chunk_subjects
            if held:
                yield SyntheticChunk(g, first, np.concatenate(buf_x), np.concatenate(buf_a))

    def generate(self) -> tuple[Manifest, np.ndarray, np.ndarray]:
        """Draw the whole population in memory.

        Returns
        -------
        manifest : Manifest
            One row per image (``root`` is None: there are no files); image ids are
            ``<group>_<subject>_<image>``, subjects ``<group>_<subject>``.
        embeddings : numpy.ndarray
            Shape (n_images, dim), float32, unit L2 norm; group by group, subject by
            subject, image by image.
        acquired : numpy.ndarray
            Shape (n_images,), bool; False marks a simulated failure to acquire.
        """
        if self._cache is not None:
            return self._cache
        n_subjects = self.subjects
        tables, embs, acq = [], [], []
        for chunk in self.iter_chunks(chunk_subjects=max(n_subjects.values())):
            g = chunk.group
            n, k = chunk.acquired.shape
            width = max(6, len(str(n_subjects[g] - 1)))
            subj = np.char.zfill(np.arange(n).astype(str), width)
            img = np.char.zfill(np.arange(k).astype(str), 2)
            subject_id = np.char.add(f"{g}_", subj)
            stem = np.char.add(np.repeat(subj, k), np.char.add("_", np.tile(img, n)))
            table = pd.DataFrame(
                {
                    "image_id": np.char.add(f"{g}_", stem),
                    "path": np.char.add(f"{g}/", stem),
                    "subject_id": np.repeat(subject_id, k),
                    "label_source": "generator",
                    **{attr: value for attr, value in self.group_labels(g).items()},
                }
            )
            tables.append(table)
            embs.append(chunk.embeddings.reshape(n * k, self.dim))
            acq.append(chunk.acquired.reshape(-1))
        table = pd.concat(tables, ignore_index=True)
        for attr in self.attributes:  # a group without this attribute gets NA (missing)
            if attr not in table.columns:
                table[attr] = pd.NA
        table = table[["image_id", "path", "subject_id", "label_source", *self.attributes]].astype("string")
        manifest = Manifest(table=table, root=None, attributes=self.attributes, name=self.name)
        self._cache = (manifest, np.concatenate(embs), np.concatenate(acq))
        return self._cache


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
