"""Deployment scenarios: acquisition conditions applied asymmetrically to enrolment and probe images (issue #14).

A *scenario* names a deployment (``configs/scenario/*.yaml``, selected with
``scenario=<name>``) and says how its two kinds of image are captured:

- the **enrolment** (reference) image: for ``id_document`` the portrait of an identity
  document, small, compressed and flat; for ``cctv_watchlist`` a good enrolment photo;
- the **probe** image: for ``id_document`` a live capture with an exposure error; for
  ``cctv_watchlist`` a low-resolution, blurred surveillance frame.

Which image plays which part comes from a manifest column (``view_column``; FRL London:
``view``): images with ``enrolment_view`` are references, images with ``probe_view``
are probes. Each side is an ordered list of :class:`ScenarioStep` (a transform of
:mod:`bench.acquisition.transforms` at one strength, with the reason for that value);
an empty list leaves that side's images as they are.

Resolution inside a chain
-------------------------
A :class:`~bench.acquisition.transforms.Resolution` step *re-samples* the image so
that the inter-eye distance (IED) becomes its strength in pixels (``cv2.INTER_AREA``),
and every later step of the chain acts **at that low resolution** (a JPEG of a 24-px-IED
portrait is a JPEG of a small image, as on a document chip); at the end of the chain the
image is brought back to its original size with the step's interpolation, so detectors
and aligners see the original geometry with the detail of the small image. Steps before
the Resolution step act at full resolution (optical blur happens before sampling).
Face-relative strengths (blur in pixels at a reference IED) use the geometry scaled to
the current resolution. The IED and face box come from the fixed locator of
:class:`~bench.acquisition.transforms.FaceGeometryLocator` on the unperturbed image,
independent of the model under test.

Embeddings of transformed images are cached under ``<cache_dir>/scenarios``, keyed by
:func:`side_cache_key` (the model's cache key, the chain's settings and strengths, the
seed, the locator settings and the transforms version), so degraded embeddings never
mix with clean ones or with another scenario's; a side without steps uses the model's
ordinary cache (its images are unchanged).

How comparisons are then formed (reference x probe) is
:mod:`bench.protocol.enrolment_probe`; definitions and sources: ``docs/scenarios.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from bench.acquisition.images import image_sha256, load_rgb
from bench.acquisition.transforms import TRANSFORMS_VERSION, FaceGeometry, FaceGeometryLocator, Resolution, Transform
from bench.errors import ConfigError, DataError, ImageLoadError

__all__ = ["ScenarioStep", "ScenarioSide", "Scenario", "ScenarioOutcome", "apply_scenario", "check_scenario_inputs", "side_cache_key", "scale_geometry"]

log = logging.getLogger(__name__)

#: Roles of images under a scenario.
ROLES = ("enrolment", "probe")


def scale_geometry(geometry: FaceGeometry, factor: float) -> FaceGeometry:
    """``geometry`` of an image resized by ``factor`` (box and eye centres multiplied)."""
    box = tuple(float(v) * factor for v in geometry.box)
    eyes = tuple((float(x) * factor, float(y) * factor) for x, y in geometry.eyes)
    return FaceGeometry(box=box, eyes=eyes)


@dataclass(frozen=True)
class ScenarioStep:
    """One acquisition condition of a scenario side.

    Attributes
    ----------
    transform : Transform
        From :mod:`bench.acquisition.transforms`.
    strength : float
        Validated by the transform (its units: ``transform.unit``).
    why : str
        Where the value comes from (a standard, a measurement, or the reasoning);
        printed in the report's Scenario section.
    """

    transform: Transform
    strength: float
    why: str

    def record(self) -> dict:
        """JSON-able description: transform name, settings, unit, strength, why."""
        return {"transform": self.transform.name, "strength": float(self.strength), "unit": self.transform.unit,
                "settings": self.transform.settings(), "why": self.why}


class ScenarioSide:
    """The ordered conditions applied to one side (enrolment or probe) of a scenario.

    Parameters
    ----------
    role : {"enrolment", "probe"}
    steps : list of dict
        Each ``{"transform": Transform, "strength": number, "why": str}`` (the config's
        form); at most one step may be a :class:`Resolution` (see the module docstring).
    where : str
        Config path used in error messages (``scenario.enrolment``).

    Raises
    ------
    ConfigError
        Not a list, a step with other keys, a transform that is not a
        :class:`Transform`, a strength out of its range, an empty ``why``, or two
        Resolution steps.
    """

    def __init__(self, role: str, steps: Any, where: str) -> None:
        if steps is None:
            steps = []
        if not isinstance(steps, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of steps {{transform, strength, why}}, got {type(steps).__name__}")
        out = []
        for i, st in enumerate(steps):
            w = f"{where}[{i}]"
            if not isinstance(st, dict) or set(st) != {"transform", "strength", "why"}:
                keys = sorted(st) if isinstance(st, dict) else type(st).__name__
                raise ConfigError(f"{w}: expected keys ['strength', 'transform', 'why'], got {keys}")
            t = st["transform"]
            if not isinstance(t, Transform):
                raise ConfigError(f"{w}.transform: expected a bench.acquisition.transforms transform (_target_), got {type(t).__name__}")
            why = st["why"]
            if not isinstance(why, str) or not why.strip():
                raise ConfigError(f"{w}.why: state the source or reasoning of this value (a non-empty string), got {why!r}")
            out.append(ScenarioStep(transform=t, strength=t.check_strength(st["strength"]), why=" ".join(why.split())))
        if sum(isinstance(s.transform, Resolution) for s in out) > 1:
            raise ConfigError(f"{where}: at most one resolution step per side (it re-samples the image once)")
        self.role = role
        self.steps = tuple(out)

    @property
    def needs_geometry(self) -> bool:
        """Whether a step needs the unperturbed image's face geometry."""
        return any(s.transform.needs_geometry for s in self.steps)

    @property
    def is_identity(self) -> bool:
        """True when the side has no step (its images are used as they are)."""
        return not self.steps

    def settings(self) -> list[dict]:
        """Every step's :meth:`ScenarioStep.record`, in order (part of the cache key)."""
        return [s.record() for s in self.steps]

    def apply(self, image: np.ndarray, *, geometry: FaceGeometry | None, seed: int = 0, image_key: str = "") -> np.ndarray:
        """The image as this side's acquisition would produce it.

        Parameters
        ----------
        image : numpy.ndarray
            Shape (H, W, 3), uint8, RGB, unperturbed.
        geometry : FaceGeometry or None
            Of the unperturbed image; required when :attr:`needs_geometry`.
        seed, image_key
            Passed to random transforms (noise).

        Returns
        -------
        numpy.ndarray
            Shape (H, W, 3), uint8, RGB (the input itself when no step changes it).

        Raises
        ------
        DataError
            Missing geometry when a step needs it; a bad image.
        """
        if self.needs_geometry and geometry is None:
            raise DataError(f"scenario {self.role} side needs the face geometry of the unperturbed image; none was given")
        out, geo = image, geometry
        h, w = image.shape[:2]
        upscale = None
        for st in self.steps:
            if isinstance(st.transform, Resolution):
                factor = st.strength / geo.ied
                if factor < 1.0:
                    size = (max(1, round(w * factor)), max(1, round(h * factor)))
                    out = np.ascontiguousarray(cv2.resize(out, size, interpolation=cv2.INTER_AREA))
                    geo = scale_geometry(geo, size[0] / w)
                    upscale = Resolution._INTERPOLATIONS[st.transform.interpolation]
                continue
            out = st.transform.apply(out, st.strength, geometry=geo, seed=seed, image_key=image_key)
        if upscale is not None:
            out = np.ascontiguousarray(cv2.resize(out, (w, h), interpolation=upscale))
        return out


class Scenario:
    """A named deployment: which images are enrolled and probed, and the conditions of each side.

    Parameters
    ----------
    name : str
        Short name (``id_document``), as in ``configs/scenario/<name>.yaml``.
    title : str
        One line for readers (report heading).
    purpose : str
        What deployment it stands for, in a few sentences.
    view_column : str
        Manifest column naming each image's capture (FRL London: ``view``).
    enrolment_view, probe_view : str
        Values of ``view_column`` of the reference and of the probe images; every
        image of the dataset must have one of the two.
    enrolment, probe : list of dict
        Steps of each side (:class:`ScenarioSide`).
    sources : list of str
        References for the values (standards, papers), printed in the report.
    geometry : dict or None
        Keyword arguments of :class:`FaceGeometryLocator` (default ones when None).

    Raises
    ------
    ConfigError
        Empty names, equal views, bad steps (:class:`ScenarioSide`), no step at all,
        or sources not a list of strings.
    """

    def __init__(self, *, name: str, title: str, purpose: str, view_column: str, enrolment_view: str, probe_view: str,
                 enrolment: Any = None, probe: Any = None, sources: Any = None, geometry: dict | None = None) -> None:
        for key, v in (("name", name), ("title", title), ("purpose", purpose), ("view_column", view_column),
                       ("enrolment_view", enrolment_view), ("probe_view", probe_view)):
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"scenario.{key}: expected a non-empty string, got {v!r}")
        if enrolment_view == probe_view:
            raise ConfigError(f"scenario: enrolment_view and probe_view must differ, both are {enrolment_view!r}")
        if sources is None:
            sources = []
        if not isinstance(sources, (list, tuple)) or not all(isinstance(s, str) and s.strip() for s in sources):
            raise ConfigError(f"scenario.sources: expected a list of non-empty strings, got {sources!r}")
        if geometry is not None and not isinstance(geometry, dict):
            raise ConfigError(f"scenario.geometry: expected a mapping of FaceGeometryLocator arguments, got {geometry!r}")
        self.name, self.title = name.strip(), " ".join(title.split())
        self.purpose = " ".join(purpose.split())
        self.view_column, self.enrolment_view, self.probe_view = view_column, str(enrolment_view), str(probe_view)
        self.enrolment = ScenarioSide("enrolment", enrolment, "scenario.enrolment")
        self.probe = ScenarioSide("probe", probe, "scenario.probe")
        if self.enrolment.is_identity and self.probe.is_identity:
            raise ConfigError(f"scenario {name!r}: neither side has a step; a scenario without conditions is the plain protocol")
        self.sources = [" ".join(s.split()) for s in sources]
        self.geometry = dict(geometry or {})

    def side(self, role: str) -> ScenarioSide:
        """The :class:`ScenarioSide` of ``role`` ("enrolment" or "probe")."""
        return {"enrolment": self.enrolment, "probe": self.probe}[role]

    def roles(self, table: Any, dataset_name: str = "dataset") -> np.ndarray:
        """Role of every manifest row: ``"enrolment"`` or ``"probe"``.

        Parameters
        ----------
        table : pandas.DataFrame
            Manifest table with :attr:`view_column`.

        Raises
        ------
        ConfigError
            The column is absent, a view has no image, or an image has another view
            (name the loader's views, e.g. ``dataset.loader.views=[neutral_front,smiling_front]``).
        """
        if self.view_column not in table.columns:
            raise ConfigError(f"scenario {self.name!r}: view_column {self.view_column!r} is not a column of {dataset_name!r}; "
                              f"columns: {list(table.columns)}")
        views = table[self.view_column].astype(str).to_numpy()
        present = sorted(set(views.tolist()))
        for key, v in (("enrolment_view", self.enrolment_view), ("probe_view", self.probe_view)):
            if v not in present:
                raise ConfigError(f"scenario {self.name!r}: {key} {v!r} has no image in {dataset_name!r}; views: {present}")
        other = sorted(set(present) - {self.enrolment_view, self.probe_view})
        if other:
            raise ConfigError(f"scenario {self.name!r}: images of view(s) {other} in {dataset_name!r} are neither enrolment "
                              f"({self.enrolment_view!r}) nor probe ({self.probe_view!r}); load only those two views")
        return np.where(views == self.enrolment_view, "enrolment", "probe").astype(object)

    def record(self) -> dict:
        """JSON-able description of the scenario (``metrics.json`` ``scenario``)."""
        return {
            "name": self.name, "title": self.title, "purpose": self.purpose, "view_column": self.view_column,
            "enrolment_view": self.enrolment_view, "probe_view": self.probe_view,
            "enrolment": self.enrolment.settings(), "probe": self.probe.settings(), "sources": list(self.sources),
        }

    def __repr__(self) -> str:
        return f"Scenario({self.name!r})"


def side_cache_key(model_key: str, side: ScenarioSide, seed: int, locator_settings: dict | None) -> str:
    """SHA-256 (hex) naming the cache folder of one (model, side chain, seed, locator).

    The chain's settings include every transform's settings (codec and library
    versions), strength and order, and :data:`TRANSFORMS_VERSION`.
    """
    blob = json.dumps({"model": model_key, "chain": [{k: v for k, v in s.items() if k != "why"} for s in side.settings()],
                       "seed": int(seed), "geometry": locator_settings if side.needs_geometry else None,
                       "version": TRANSFORMS_VERSION, "kind": "scenario-side"}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class ScenarioOutcome:
    """Embeddings of every manifest row under a scenario, and what happened.

    Attributes
    ----------
    embeddings : numpy.ndarray
        Shape (n_images, d), float32; NaN rows for failures.
    fta_reason : numpy.ndarray
        Shape (n_images,), object; None where acquired.
    n_faces : numpy.ndarray
        Shape (n_images,), int.
    roles : numpy.ndarray
        Shape (n_images,), ``"enrolment"`` / ``"probe"``.
    info : dict
        ``metrics.json`` ``scenario``: :meth:`Scenario.record` plus counts per side
        (images, acquired unperturbed, acquired under the scenario, FTA caused by the
        conditions, images the locator could not place), locator settings, pairing.
    """

    embeddings: np.ndarray
    fta_reason: np.ndarray
    n_faces: np.ndarray
    roles: np.ndarray
    info: dict


def _valid(vec: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(vec)) and np.linalg.norm(vec) > 1e-12)


def _read_geometry(path: Path) -> FaceGeometry | None | bool:
    """Cached geometry: FaceGeometry, None (no face located) or False (malformed: recompute)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d is None:
            return None
        box = tuple(float(v) for v in d["box"])
        eyes = tuple(tuple(float(v) for v in e) for e in d["eyes"])
        if len(box) != 4 or len(eyes) != 2 or any(len(e) != 2 for e in eyes) or not np.all(np.isfinite([*box, *eyes[0], *eyes[1]])):
            raise ValueError("box must be 4 numbers and eyes 2 points")
        return FaceGeometry(box=box, eyes=eyes)
    except (OSError, ValueError, TypeError, KeyError) as err:
        log.warning("malformed face-geometry cache entry %s (%s): recomputing it", path, err)
        return False


def check_scenario_inputs(scenario: Scenario, dataset: Any, model: Any) -> None:
    """Refuse, before any image is read, a dataset or model a scenario cannot run on.

    Raises
    ------
    ConfigError
        A dataset without image files (synthetic populations), views that do not
        match (:meth:`Scenario.roles`), or a model without ``aligner.acquire``.
    """
    table = getattr(dataset, "table", None)
    if table is None or getattr(dataset, "root", None) is None:
        raise ConfigError(f"scenario {scenario.name!r} degrades images: dataset {getattr(dataset, 'name', type(dataset).__name__)!r} "
                          "has none (synthetic populations generate embeddings); use an image dataset such as dataset=frl_london")
    scenario.roles(table, getattr(dataset, "name", "dataset"))
    if model is None or not callable(getattr(getattr(model, "aligner", None), "acquire", None)):
        raise ConfigError(f"scenario {scenario.name!r}: model {getattr(model, 'name', model)!r} must have aligner.acquire(image) "
                          "(an image model such as dlib_resnet)")


def apply_scenario(scenario: Scenario, manifest: Any, model: Any, embeddings: np.ndarray, fta_reason: np.ndarray,
                   n_faces: np.ndarray | None, *, cache_dir: str | Path, seed: int = 0, progress: bool = True,
                   batch_size: int = 32, locator: FaceGeometryLocator | None = None) -> ScenarioOutcome:
    """Replace the embeddings of each side with those of its images under the scenario's conditions.

    Parameters
    ----------
    scenario : Scenario
    manifest : Manifest
        Images (every row of the enrolment or the probe view).
    model : object
        Image model whose ``aligner`` has ``acquire(image) -> Acquisition`` (as for
        sweeps); ``embed``, ``settings``, ``weights_sha256``, ``embedding_dim``, ``name``.
    embeddings, fta_reason, n_faces : numpy.ndarray
        The unperturbed outcome of every row (:func:`bench.models.extraction.extract_embeddings`),
        shapes (n, d), (n,), (n,); kept for a side without steps and for the counts.
    cache_dir : path
        Private cache root (entries under ``scenarios/`` and ``geometry/``).
    seed : int
        Seed of random transforms.
    progress : bool
    batch_size : int
    locator : FaceGeometryLocator or None
        Default: built from ``scenario.geometry`` when a side needs geometry.

    Returns
    -------
    ScenarioOutcome

    Raises
    ------
    ConfigError
        Views (see :meth:`Scenario.roles`); a model without ``aligner.acquire``.
    StorageError
        The cache cannot be written.
    """
    from bench.acquisition.base import Acquisition  # noqa: F401 (type of model.aligner.acquire)
    from bench.models.cache import CachedResult, EmbeddingCache, clean_stale_temp, model_cache_key, write_atomic

    if model is None or not callable(getattr(getattr(model, "aligner", None), "acquire", None)):
        raise ConfigError(f"scenario {scenario.name!r}: model {getattr(model, 'name', model)!r} must have aligner.acquire(image) "
                          "(an image model such as dlib_resnet); synthetic populations have no images to degrade")
    table = manifest.table
    roles = scenario.roles(table, getattr(manifest, "name", "dataset"))
    n = len(table)
    emb = np.array(embeddings, dtype=np.float32, copy=True)
    reasons = np.array(fta_reason, dtype=object, copy=True)
    faces = np.zeros(n, np.int64) if n_faces is None else np.array(n_faces, dtype=np.int64, copy=True)
    cache_dir = Path(cache_dir).expanduser()
    model_key = model_cache_key(model.settings(), model.weights_sha256)
    need_geometry = scenario.enrolment.needs_geometry or scenario.probe.needs_geometry
    if need_geometry and locator is None:
        locator = FaceGeometryLocator(**scenario.geometry)
    loc_settings = locator.settings() if need_geometry else None
    gdir = None
    if need_geometry:
        gdir = cache_dir / "geometry" / hashlib.sha256(json.dumps(loc_settings, sort_keys=True).encode()).hexdigest()[:16]
        if gdir.is_dir():
            clean_stale_temp(gdir)
    sides: dict[str, dict] = {}
    for role in ROLES:
        side = scenario.side(role)
        rows = np.flatnonzero(roles == role)
        clean_ok = int(sum(reasons[i] is None for i in rows))
        stat = {"images": int(len(rows)), "acquired_unperturbed": clean_ok, "not_located": 0, "computed": 0, "from_cache": 0}
        sides[role] = stat
        if side.is_identity:
            stat["acquired"] = clean_ok
            continue
        cache = EmbeddingCache(cache_dir / "scenarios", side_cache_key(model_key, side, seed, loc_settings), model.embedding_dim)
        cache.check_writable()
        pending: list[tuple[int, str | None, Any]] = []

        def flush() -> None:
            ok = [p for p in pending if p[2].ok]
            vecs = model.embed([p[2].chip for p in ok]) if ok else np.empty((0, model.embedding_dim), np.float32)
            for (i, sha, a), v in zip(ok, vecs):
                faces[i] = a.n_faces
                if _valid(v):
                    emb[i], reasons[i] = v, None
                    res = CachedResult(v, None, a.n_faces)
                else:
                    emb[i], reasons[i] = np.nan, "invalid_embedding"
                    res = CachedResult(None, "invalid_embedding", a.n_faces, "NaN or zero-norm embedding")
                if sha:
                    cache.put(sha, res)
            for i, sha, a in pending:
                if not a.ok:
                    emb[i], reasons[i], faces[i] = np.nan, a.fta_reason, a.n_faces
                    if sha:
                        cache.put(sha, CachedResult(None, a.fta_reason, a.n_faces, a.detail))
            pending.clear()

        for i in tqdm(rows, desc=f"{model.name} {scenario.name} {role} images", disable=not progress, unit="img"):
            path = manifest.image_path(int(i))
            try:
                sha = image_sha256(path)
            except (OSError, DataError):
                continue  # unreadable: its unperturbed FTA reason stands
            cached = cache.get(sha, embedding_dim=model.embedding_dim)
            if cached is not None:
                stat["from_cache"] += 1
                faces[i] = cached.n_faces
                if cached.embedding is not None and _valid(cached.embedding):
                    emb[i], reasons[i] = cached.embedding, None
                else:
                    emb[i], reasons[i] = np.nan, cached.fta_reason or "invalid_embedding"
                continue
            try:
                img = load_rgb(path)
            except ImageLoadError as err:
                emb[i], reasons[i] = np.nan, err.reason
                continue
            geo = None
            if side.needs_geometry:
                f = gdir / f"{sha}.json"
                got = _read_geometry(f) if f.is_file() and not f.is_symlink() else False
                if got is False:
                    got = locator.locate(img)
                    write_atomic(f, json.dumps(None if got is None else {"box": list(got.box), "eyes": [list(e) for e in got.eyes]}).encode())
                geo = got
                if geo is None:  # the condition cannot be placed on the face: no template under this scenario
                    stat["not_located"] += 1
                    emb[i], reasons[i] = np.nan, "no_face_detected"
                    continue
            stat["computed"] += 1
            pending.append((int(i), sha, model.aligner.acquire(side.apply(img, geometry=geo, seed=seed, image_key=sha))))
            if len(pending) >= batch_size:
                flush()
        flush()
        stat["acquired"] = int(sum(reasons[i] is None for i in rows))
    for role in ROLES:
        rows = np.flatnonzero(roles == role)
        sides[role]["fta_caused_by_conditions"] = int(sum(reasons[i] is not None and fta_reason[i] is None for i in rows))
    info = {**scenario.record(), "counts": sides, "seed": int(seed),
            "geometry_locator": loc_settings, "transforms_version": TRANSFORMS_VERSION}
    return ScenarioOutcome(embeddings=emb, fta_reason=reasons, n_faces=faces, roles=roles, info=info)

