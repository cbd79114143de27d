"""Synthetic populations: identity embeddings with known demographic structure.

No face images and no model are involved: the generator emits unit-norm
embeddings directly, so it runs anywhere in seconds and its ground truth is known
by construction. It is the default (``make demo``) experiment.

Generative model (per group ``g``, dimension ``d``)::

    c_g            group centre: a random unit vector (seeded)
    mu_i           = normalize(c_g + identity_spread_g * z_i / sqrt(d)),   z_i ~ N(0, I_d)
    x_ij           = normalize(mu_i + image_noise_g * e_ij / sqrt(d)),     e_ij ~ N(0, I_d)

A small ``identity_spread_g`` packs a group's identities close together (strangers
look alike: higher FMR); a large ``image_noise_g`` scatters a person's images
(higher FNMR). Comparisons are scored by cosine similarity. A per-group
``fta_rate`` marks images as failures to acquire (Bernoulli, seeded), so the FTA
path is exercised too. Labels are generator conditioning attributes, recorded as
``label_source = "generator"`` (metrics-reference §6.4): they never stand for
real people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from bench.data.manifest import Manifest
from bench.errors import ConfigError

__all__ = ["GroupSpec", "SyntheticPopulation"]


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
        Spread of identity centres around the group centre (> 0, unitless; about
        1-3 is realistic). Smaller means more alike strangers and a higher FMR.
    image_noise : float
        Spread of a person's images around their identity (>= 0). Larger means a
        higher FNMR.
    fta_rate : float
        Probability in [0, 1) that an image fails to acquire.
    labels : mapping of str to str
        Attribute values of the group, e.g. ``{"group": "A"}``.
    """

    subjects: int
    images_per_subject: int
    identity_spread: float
    image_noise: float
    fta_rate: float = 0.0
    labels: Mapping[str, str] | None = None


class SyntheticPopulation:
    """Seeded synthetic population: a manifest plus its embeddings.

    Parameters
    ----------
    groups : mapping of str to mapping
        Group name -> keyword arguments of :class:`GroupSpec`. The group name is
        the value of the attribute ``group`` unless ``labels`` says otherwise.
    dim : int
        Embedding dimension (>= 2).
    seed : int
        Seed of every random draw; the same seed gives identical arrays.
    name : str
        Dataset name used in reports.

    Raises
    ------
    ConfigError
        If a parameter is out of range (named with its group).
    """

    def __init__(self, groups: Mapping[str, Mapping], dim: int = 128, seed: int = 0, name: str = "synthetic") -> None:
        if dim < 2:
            raise ConfigError(f"synthetic dataset: dim must be >= 2, got {dim}")
        if not groups:
            raise ConfigError("synthetic dataset: at least one group is required")
        self.specs: dict[str, GroupSpec] = {}
        for gname, params in groups.items():
            try:
                spec = GroupSpec(**dict(params))
            except TypeError as err:
                raise ConfigError(f"synthetic group {gname!r}: {err}") from err
            if spec.subjects < 1 or spec.images_per_subject < 1:
                raise ConfigError(f"synthetic group {gname!r}: subjects and images_per_subject must be >= 1")
            if spec.identity_spread <= 0 or spec.image_noise < 0:
                raise ConfigError(f"synthetic group {gname!r}: identity_spread must be > 0 and image_noise >= 0")
            if not 0 <= spec.fta_rate < 1:
                raise ConfigError(f"synthetic group {gname!r}: fta_rate must be in [0, 1), got {spec.fta_rate}")
            self.specs[str(gname)] = spec
        self.dim = int(dim)
        self.seed = int(seed)
        self.name = name
        self._cache: tuple[Manifest, np.ndarray, np.ndarray] | None = None

    @property
    def attributes(self) -> tuple[str, ...]:
        """Attribute names carried by the groups (``("group",)`` by default)."""
        names: list[str] = []
        for spec in self.specs.values():
            for k in (spec.labels or {"group": ""}):
                if k not in names:
                    names.append(k)
        return tuple(names)

    def generate(self) -> tuple[Manifest, np.ndarray, np.ndarray]:
        """Draw the population.

        Returns
        -------
        manifest : Manifest
            One row per image (``root`` is None: there are no files).
        embeddings : numpy.ndarray
            Shape (n_images, dim), float32, unit L2 norm.
        acquired : numpy.ndarray
            Shape (n_images,), bool; False marks a simulated failure to acquire.
        """
        if self._cache is not None:
            return self._cache
        rng = np.random.default_rng(self.seed)
        rows, embs, acq = [], [], []
        for gname, spec in self.specs.items():
            centre = _unit(rng.standard_normal(self.dim))
            z = rng.standard_normal((spec.subjects, self.dim)) / np.sqrt(self.dim)
            ids = _unit(centre[None, :] + spec.identity_spread * z)
            e = rng.standard_normal((spec.subjects, spec.images_per_subject, self.dim)) / np.sqrt(self.dim)
            x = _unit(ids[:, None, :] + spec.image_noise * e).reshape(-1, self.dim)
            fail = rng.random(x.shape[0]) < spec.fta_rate
            labels = dict(spec.labels or {"group": gname})
            for s in range(spec.subjects):
                for k in range(spec.images_per_subject):
                    rows.append(
                        {
                            "image_id": f"{gname}_{s:06d}_{k:02d}",
                            "path": f"{gname}/{s:06d}_{k:02d}",
                            "subject_id": f"{gname}_{s:06d}",
                            "label_source": "generator",
                            **labels,
                        }
                    )
            embs.append(x.astype(np.float32))
            acq.append(~fail)
        table = pd.DataFrame(rows).astype("string")
        manifest = Manifest(table=table, root=None, attributes=self.attributes, name=self.name)
        self._cache = (manifest, np.concatenate(embs), np.concatenate(acq))
        return self._cache

    def settings(self) -> dict:
        """Generator parameters for provenance (JSON-serialisable)."""
        return {
            "dim": self.dim,
            "seed": self.seed,
            "groups": {g: {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in vars(s).items()} for g, s in self.specs.items()},
        }


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
