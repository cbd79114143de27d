"""Calibrate the synthetic generator to a real run's per-group score distributions.

``fvbench-calibrate results/<run>`` (:mod:`bench.synthetic.calibrate_cli`) reads the run's comparison scores
(``scores.parquet``) and ``metrics.json``, fits the parameters of
:class:`bench.synthetic.generator.SyntheticPopulation` per demographic group, and writes a
dataset config (``configs/dataset/<name>.yaml``) plus a figure of fitted vs real
score distributions (:mod:`bench.synthetic.calibration_figure`). The synthetic population then stands in for "this model on
this kind of population", at any size, with known ground truth.

Method
------
1. **Score map.** The generator scores by cosine similarity; a model may not. Real
   scores are mapped to the generator's scale through a *dissimilarity*
   ``delta`` -- ``1 - score`` for cosine models, ``score^2`` (squared Euclidean
   distance) for Euclidean models, whose scores are negated distances -- by

       generator cosine = 1 - delta / delta_bar,

   with ``delta_bar`` the mean dissimilarity of the run's cross-group non-mated
   comparisons (pairs whose subjects lie in different groups of the calibrated
   attribute). The map is strictly decreasing in ``delta``, hence strictly
   increasing in the score, so error rates at corresponding thresholds are
   unchanged. It is exact for a Euclidean model whose embeddings have a common norm
   (``delta = 2 r^2 (1 - cos)``), up to an affine change that removes the component
   all embeddings share; the anchor ``delta_bar`` puts cross-group pairs at mean
   cosine 0, which is what independent random group centres give in the generator.
   Thresholds translate both ways with :meth:`ScoreMap.to_generator` and
   :meth:`ScoreMap.from_generator`.
2. **Fit.** Minimum-Wasserstein-distance estimation: for each group ``g``, the squared
   2-Wasserstein distance between the empirical distribution and the model's
   (estimated with common random numbers from the exact reduction of
   :mod:`bench.synthetic.truth`, ``n_draws`` draws) is minimised --
   ``image_noise_g`` from the group's mated scores, then ``identity_spread_g`` from
   its same-group non-mated scores given ``image_noise_g``. The shared effective
   dimension ``dim`` and per-subject noise heterogeneity ``image_noise_sd`` minimise
   the sum over groups of ``subjects_g * (W2^2_mated / V_m + W2^2_nonmated / V_n)``
   (``V`` = mean within-group variances, making the two classes comparable), by
   Nelder-Mead; ``dim`` is then rounded to an integer and the groups refitted.
   ``images_per_subject`` and ``fta_rate`` are copied from the run (FTA rows of
   ``metrics.json``).
3. Groups with fewer than ``min_subjects`` subjects, or without mated or same-group
   non-mated comparisons, are not fitted; they are listed in the config.

Limits (also written into the config): the generator has independent group centres,
so cross-group similarity is modelled only on average; per-group parameters fitted
on a few subjects are uncertain (the config records the counts behind each fit);
real scores may have heavier tails than the model, so rates far below what the
source run resolves (FMR < 1/n_nonmated) are extrapolations.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

from bench.data.manifest import INTERSECTION_SEPARATOR
from bench.synthetic.generator import GroupSpec
from bench.errors import ConfigError, DataError
from bench.report.provenance import scrub_paths
from bench.synthetic.truth import ReducedDraws, mated_law, nonmated_law

__all__ = [
    "ScoreMap",
    "GroupFit",
    "CalibrationResult",
    "read_run",
    "calibrate",
    "calibrate_run",
    "dataset_config",
    "write_dataset_config",
]

log = logging.getLogger(__name__)

SUPPORTED_METRICS = ("cosine", "euclidean")


# ----------------------------------------------------------------------------- score map
@dataclass(frozen=True)
class ScoreMap:
    """Strictly increasing map between a model's scores and the generator's cosine.

    Attributes
    ----------
    metric : {"cosine", "euclidean"}
        The source model's metric; Euclidean scores are negated distances (<= 0).
    dissimilarity_scale : float
        ``delta_bar`` (> 0): mean dissimilarity of the cross-group non-mated pairs.
    """

    metric: str
    dissimilarity_scale: float

    def __post_init__(self) -> None:
        if self.metric not in SUPPORTED_METRICS:
            raise ConfigError(f"score map: metric {self.metric!r} is not supported; valid: {list(SUPPORTED_METRICS)}")
        if not self.dissimilarity_scale > 0:
            raise ConfigError(f"score map: dissimilarity_scale must be > 0, got {self.dissimilarity_scale!r}")

    def dissimilarity(self, scores: np.ndarray) -> np.ndarray:
        """``delta``: ``1 - s`` (cosine) or ``s^2`` (Euclidean, ``s = -distance``)."""
        s = np.asarray(scores, dtype=np.float64)
        if self.metric == "cosine":
            return 1.0 - s
        if np.any(s > 0):
            raise DataError(f"Euclidean scores must be negated distances (<= 0); got a maximum of {float(s.max())!r}")
        return s * s

    def to_generator(self, scores: np.ndarray | float) -> np.ndarray:
        """Real score(s) -> generator cosine ``1 - delta / delta_bar`` (may be < -1 far out)."""
        return 1.0 - self.dissimilarity(np.asarray(scores)) / self.dissimilarity_scale

    def from_generator(self, cosines: np.ndarray | float) -> np.ndarray:
        """Generator cosine(s) -> real score(s); inverse of :meth:`to_generator` where defined."""
        delta = (1.0 - np.asarray(cosines, dtype=np.float64)) * self.dissimilarity_scale
        if self.metric == "cosine":
            return 1.0 - delta
        return -np.sqrt(np.maximum(delta, 0.0))

    def score_label(self, model: str = "") -> str:
        """Axis label of the real score, with its unit."""
        who = f" ({model})" if model else ""
        return f"score{who}: -Euclidean distance" if self.metric == "euclidean" else f"score{who}: cosine similarity"


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class GroupFit:
    """Fitted generator parameters of one group, with the data behind them.

    Attributes
    ----------
    key : str
        Group name in the generated config (the label made file-name safe).
    labels : dict of str to str
        Attribute values (an intersection label is split into its attributes).
    subjects, images_per_subject : int
        Subjects of the group in the source run and images per subject.
    fta_rate : float
        FTA rate of the group in the source run.
    identity_spread, image_noise : float
        Fitted parameters (see :class:`bench.synthetic.generator.GroupSpec`).
    n_mated, n_nonmated : int
        Comparisons the fit used.
    w2_mated, w2_nonmated : float
        2-Wasserstein distance (generator cosine units) between the fitted and the
        real distribution.
    ks_mated, ks_nonmated : float
        Kolmogorov-Smirnov distance between them (share of comparisons).
    """

    key: str
    labels: dict[str, str]
    subjects: int
    images_per_subject: int
    fta_rate: float
    identity_spread: float
    image_noise: float
    n_mated: int
    n_nonmated: int
    w2_mated: float
    w2_nonmated: float
    ks_mated: float
    ks_nonmated: float

    def spec(self, image_noise_sd: float, subjects: int | None = None) -> GroupSpec:
        """The :class:`GroupSpec` of the fit."""
        return GroupSpec(
            subjects=self.subjects if subjects is None else subjects,
            images_per_subject=self.images_per_subject,
            identity_spread=self.identity_spread,
            image_noise=self.image_noise,
            fta_rate=self.fta_rate,
            image_noise_sd=image_noise_sd,
            labels=self.labels,
        )


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of :func:`calibrate`.

    Attributes
    ----------
    attribute : str
        Attribute whose groups were fitted.
    score_map : ScoreMap
    dim : int
        Fitted effective dimension.
    image_noise_sd : float
        Fitted per-subject log-noise standard deviation (shared by all groups).
    groups : dict of str to GroupFit
        Label -> fit, in label order.
    excluded : dict of str to str
        Label -> why the group was not fitted.
    objective : float
        Final value of the weighted W2 objective.
    source : dict
        Provenance of the source run (run name, model, weights, manifest hash, commit).
    thresholds : list of dict
        The source run's thresholds, each with its generator-scale value.
    """

    attribute: str
    score_map: ScoreMap
    dim: int
    image_noise_sd: float
    groups: dict[str, GroupFit]
    excluded: dict[str, str]
    objective: float
    source: dict[str, Any] = field(default_factory=dict)
    thresholds: list[dict[str, Any]] = field(default_factory=list)

    def population_groups(self, subjects_scale: float = 1.0) -> dict[str, dict[str, Any]]:
        """Group name -> keyword arguments of :class:`GroupSpec` (subjects scaled)."""
        out = {}
        for fit in self.groups.values():
            out[fit.key] = {
                "subjects": max(1, int(round(fit.subjects * subjects_scale))),
                "images_per_subject": fit.images_per_subject,
                "identity_spread": round(fit.identity_spread, 4),
                "image_noise": round(fit.image_noise, 4),
                "image_noise_sd": round(self.image_noise_sd, 4),
                "fta_rate": round(fit.fta_rate, 6),
                "labels": dict(fit.labels),
            }
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable summary (parameters, fit quality, map, provenance)."""
        return {
            "attribute": self.attribute,
            "score_map": asdict(self.score_map),
            "dim": self.dim,
            "image_noise_sd": self.image_noise_sd,
            "objective": self.objective,
            "groups": {label: asdict(fit) for label, fit in self.groups.items()},
            "excluded": dict(self.excluded),
            "source": self.source,
            "thresholds": self.thresholds,
        }


# ----------------------------------------------------------------------------- reading
def read_run(results_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read ``scores.parquet`` and ``metrics.json`` of a results folder.

    Returns
    -------
    scores : pandas.DataFrame
        The comparison table (``mated``, ``score``, ``subject_a/b``, ``<attr>_a/b``).
    metrics : dict
        The parsed ``metrics.json``.

    Raises
    ------
    DataError
        If either file is missing or unreadable (the message says how to produce it).
    """
    folder = Path(results_dir)
    mpath, spath = folder / "metrics.json", folder / "scores.parquet"
    if not mpath.is_file():
        raise DataError(f"{mpath}: not found; point fvbench-calibrate at a results folder written by fvbench")
    if not spath.is_file():
        raise DataError(
            f"{spath}: not found; the score table is not published -- rerun the experiment "
            f"(e.g. `fvbench experiment=<name> report.save_scores=true`) to recreate it"
        )
    try:
        metrics = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{mpath}: cannot read JSON ({err})") from err
    try:
        scores = pd.read_parquet(spath)
    except (OSError, ValueError) as err:
        raise DataError(f"{spath}: cannot read the score table ({err})") from err
    for col in ("mated", "score", "subject_a", "subject_b"):
        if col not in scores.columns:
            raise DataError(f"{spath}: missing column {col!r}")
    return scores, metrics


def _safe_key(label: str) -> str:
    key = re.sub(r"[^0-9A-Za-z_]+", "_", label).strip("_")
    return key or "group"


def _split_labels(attribute: str, label: str) -> dict[str, str]:
    names = attribute.split(INTERSECTION_SEPARATOR)
    values = label.split(INTERSECTION_SEPARATOR)
    if len(names) == len(values):
        return dict(zip(names, values))
    return {attribute: label}


def _fta_by_group(metrics: dict[str, Any], attribute: str) -> dict[str, tuple[int, int, int]]:
    """label -> (FTA errors, images, subjects) from metrics.json per_group rows."""
    out = {}
    for row in metrics.get("per_group", []):
        if row.get("attribute") == attribute and row.get("metric") == "FTA" and row.get("group") != "(all)":
            out[str(row["group"])] = (int(row.get("errors") or 0), int(row.get("comparisons") or 0), int(row.get("subjects") or 0))
    return out


# ----------------------------------------------------------------------------- fitting
class _Model:
    """Common-random-number sampler of the generator's score laws (fixed draws)."""

    def __init__(self, n_draws: int, seed: int) -> None:
        rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(11,)))
        self.normals = rng.standard_normal((n_draws, 10))
        self.uniforms = rng.random((n_draws, 5))
        self.u_phi = rng.random(n_draws)
        self._dim: float | None = None

    def set_dim(self, dim: float) -> None:
        if self._dim == dim:
            return
        self.draws = ReducedDraws.from_uniforms(self.normals, self.uniforms, dim)  # type: ignore[arg-type]
        k = (dim - 3.0) / 2.0
        self.phi2 = 2.0 * special.betaincinv(k, k, self.u_phi) - 1.0
        self._dim = dim

    def mated(self, noise: float, noise_sd: float) -> np.ndarray:
        law = mated_law(GroupSpec(1, 2, 1.0, noise, image_noise_sd=noise_sd), self._dim, self.draws)  # type: ignore[arg-type]
        return np.sort(law.a + law.b * self.phi2)

    def nonmated(self, spread: float, noise: float, noise_sd: float) -> np.ndarray:
        spec = GroupSpec(1, 2, spread, noise, image_noise_sd=noise_sd)
        law = nonmated_law(spec, spec, self._dim, self.draws)  # type: ignore[arg-type]
        return np.sort(law.a + law.b * self.phi2)


def _w2(data_sorted: np.ndarray, model_sorted: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between an empirical sample and a model sample."""
    n, m = data_sorted.size, model_sorted.size
    u = (np.arange(n) + 0.5) / n
    q = np.interp(u, (np.arange(m) + 0.5) / m, model_sorted)
    return float(np.mean((data_sorted - q) ** 2))


def _ks(data_sorted: np.ndarray, model_sorted: np.ndarray) -> float:
    grid = np.concatenate([data_sorted, model_sorted])
    f1 = np.searchsorted(data_sorted, grid, side="right") / data_sorted.size
    f2 = np.searchsorted(model_sorted, grid, side="right") / model_sorted.size
    return float(np.max(np.abs(f1 - f2)))


def _fit_group(model: _Model, mated: np.ndarray, nonmated: np.ndarray, noise_sd: float) -> tuple[float, float, float, float]:
    """(identity_spread, image_noise, W2^2 mated, W2^2 non-mated) for one group."""
    r1 = optimize.minimize_scalar(
        lambda ln: _w2(mated, model.mated(math.exp(ln), noise_sd)), bounds=(math.log(1e-3), math.log(10.0)), method="bounded",
        options={"xatol": 1e-5},
    )
    noise = math.exp(r1.x)
    r2 = optimize.minimize_scalar(
        lambda ls: _w2(nonmated, model.nonmated(math.exp(ls), noise, noise_sd)), bounds=(math.log(1e-2), math.log(50.0)),
        method="bounded", options={"xatol": 1e-5},
    )
    return math.exp(r2.x), noise, float(r1.fun), float(r2.fun)


def calibrate(
    scores: pd.DataFrame,
    metrics: dict[str, Any],
    *,
    attribute: str | None = None,
    min_subjects: int = 5,
    n_draws: int = 20_000,
    seed: int = 0,
    dim: int | None = None,
    image_noise_sd: float | None = None,
    dissimilarity_scale: float | None = None,
    progress: bool = False,
) -> CalibrationResult:
    """Fit the generator's per-group parameters to a run's score distributions.

    ``progress`` shows a tqdm bar of fit evaluations (its total is the coarse grid plus
    the Nelder-Mead cap, an upper bound: the bar completes when the fit converges).

    Parameters
    ----------
    scores : pandas.DataFrame
        The run's comparison table (see :func:`read_run`).
    metrics : dict
        The run's ``metrics.json`` (model metric, FTA rows, provenance).
    attribute : str, optional
        Attribute whose groups are fitted (e.g. ``"face_eth"`` or an intersection
        ``"face_eth&face_gender"``); default: the first attribute of the run.
    min_subjects : int, default 5
        Groups with fewer subjects (with a mated comparison) are not fitted.
    n_draws : int, default 20000
        Common-random-number draws of the model laws.
    seed : int, default 0
        Seed of those draws.
    dim : int, optional
        Fix the effective dimension (>= 4) instead of fitting it.
    image_noise_sd : float, optional
        Fix the per-subject log-noise standard deviation (>= 0) instead of fitting it.
        The outer fit runs only when ``dim`` or ``image_noise_sd`` is left free.
    dissimilarity_scale : float, optional
        Fix the score map's ``delta_bar`` (> 0) instead of the cross-group mean
        (e.g. 1.0 with a cosine model: generator cosine = model cosine).

    Returns
    -------
    CalibrationResult

    Raises
    ------
    DataError
        If the attribute's columns are missing, the model metric is unsupported, or
        no group (or, for the default score map, no cross-group pair) can be fitted.
    ConfigError
        If a fixed ``dim``, ``image_noise_sd`` or ``dissimilarity_scale`` is out of range.
    """
    if dim is not None and (int(dim) != dim or dim < 4):
        raise ConfigError(f"dim must be an integer >= 4, got {dim!r}")
    if image_noise_sd is not None and not image_noise_sd >= 0:
        raise ConfigError(f"image_noise_sd must be >= 0, got {image_noise_sd!r}")
    model_info = metrics.get("model", {})
    metric = model_info.get("metric")
    if metric not in SUPPORTED_METRICS:
        raise DataError(f"metrics.json model.metric = {metric!r}; fvbench-calibrate supports {list(SUPPORTED_METRICS)}")
    if attribute is None:
        per_attr = (metrics.get("dataset", {}) or {}).get("subjects_per_group", {})
        if not per_attr:
            raise DataError("metrics.json has no dataset.subjects_per_group; pass --attribute")
        attribute = next(iter(per_attr))
    cols = [f"{attribute}_a", f"{attribute}_b"]
    if any(c not in scores.columns for c in cols):
        known = sorted(c[:-2] for c in scores.columns if c.endswith("_a") and c not in ("image_a", "subject_a"))
        raise DataError(f"scores table has no columns {cols}; attributes present: {known}")
    la = scores[cols[0]].astype(str).to_numpy()
    lb = scores[cols[1]].astype(str).to_numpy()
    mated = scores["mated"].to_numpy(dtype=bool)
    raw = scores["score"].to_numpy(dtype=np.float64)
    cross = ~mated & (la != lb)
    if dissimilarity_scale is None:
        if not cross.any():
            raise DataError(f"attribute {attribute!r}: no cross-group non-mated comparisons; the score map needs some")
        dissim = raw * raw if metric == "euclidean" else 1.0 - raw
        dissimilarity_scale = float(dissim[cross].mean())
    smap = ScoreMap(metric=metric, dissimilarity_scale=float(dissimilarity_scale))
    cos = smap.to_generator(raw)

    fta = _fta_by_group(metrics, attribute)
    subj_a = scores["subject_a"].astype(str).to_numpy()
    data: dict[str, tuple[np.ndarray, np.ndarray, int, int, float]] = {}
    excluded: dict[str, str] = {}
    for label in sorted(set(la.tolist()) | set(lb.tolist())):
        in_g = (la == label) & (lb == label)
        m_sel, n_sel = in_g & mated, in_g & ~mated
        n_subj = len(set(subj_a[m_sel].tolist()))
        if n_subj < min_subjects:
            excluded[label] = f"{n_subj} subject(s) with a mated comparison < min_subjects={min_subjects}"
            continue
        if not n_sel.any():
            excluded[label] = "no same-group non-mated comparisons"
            continue
        errors, images, subjects = fta.get(label, (0, 0, 0))
        k = max(2, int(round(images / subjects))) if subjects else 2
        rate = errors / images if images else 0.0
        data[label] = (np.sort(cos[m_sel]), np.sort(cos[n_sel]), n_subj, k, rate)
    if not data:
        raise DataError(f"attribute {attribute!r}: no group has >= {min_subjects} subjects with mated and non-mated comparisons")

    v_m = float(np.mean([d[0].var() for d in data.values() if d[0].size > 1] or [1.0])) or 1.0
    v_n = float(np.mean([d[1].var() for d in data.values() if d[1].size > 1] or [1.0])) or 1.0
    model = _Model(n_draws, seed)

    fixed_dim, fixed_sd = dim, image_noise_sd

    def total(dim: float, noise_sd: float) -> tuple[float, dict[str, tuple[float, float, float, float]]]:
        model.set_dim(dim)
        fits = {label: _fit_group(model, d[0], d[1], noise_sd) for label, d in data.items()}
        obj = sum(data[label][2] * (f[2] / v_m + f[3] / v_n) for label, f in fits.items())
        return obj, fits

    def unpack(x: np.ndarray) -> tuple[float, float]:
        d = float(fixed_dim) if fixed_dim is not None else 4.0 + math.exp(float(x[0]))
        h = float(fixed_sd) if fixed_sd is not None else abs(float(x[-1]))
        return d, h

    from tqdm.auto import tqdm

    free_params = sum(f is None for f in (fixed_dim, fixed_sd))
    n_grid = (5 if fixed_dim is None else 1) * (3 if fixed_sd is None else 1)
    # Nelder-Mead with maxiter=80 evaluates at most ~ (n + 2) points per iteration; + the final evaluation
    bar = tqdm(total=(n_grid + 80 * (free_params + 2) if free_params else 0) + 1, desc="calibrate: fit evaluations (at most)",
               disable=not progress, unit="fit", smoothing=0.0)

    def outer(x: np.ndarray) -> float:
        bar.update(1)
        return total(*unpack(x))[0]

    if fixed_dim is None or fixed_sd is None:
        # coarse grid, then Nelder-Mead on the free ones of (log(dim - 4), image_noise_sd)
        dims = [math.log(d - 4.0) for d in (12.0, 24.0, 48.0, 96.0, 192.0)] if fixed_dim is None else [0.0]
        sds = [0.0, 0.25, 0.5] if fixed_sd is None else [0.0]
        free = [i for i, f in enumerate((fixed_dim, fixed_sd)) if f is None]
        grid = [np.array([(a, b)[i] for i in free]) for a in dims for b in sds]
        start = min(grid, key=outer)
        res = optimize.minimize(outer, start, method="Nelder-Mead", options={"xatol": 0.01, "fatol": 1e-3, "maxiter": 80})
        d_fit, noise_sd = unpack(res.x)
        dim = int(round(d_fit))
    else:
        dim, noise_sd = int(fixed_dim), float(fixed_sd)
    obj, fits = total(float(dim), noise_sd)
    bar.update(bar.total - bar.n)
    bar.close()

    groups: dict[str, GroupFit] = {}
    model.set_dim(float(dim))
    for label, (m, nm, n_subj, k, rate) in data.items():
        spread, noise, w2m, w2n = fits[label]
        groups[label] = GroupFit(
            key=_safe_key(label),
            labels=_split_labels(attribute, label),
            subjects=n_subj,
            images_per_subject=k,
            fta_rate=rate,
            identity_spread=spread,
            image_noise=noise,
            n_mated=int(m.size),
            n_nonmated=int(nm.size),
            w2_mated=math.sqrt(w2m),
            w2_nonmated=math.sqrt(w2n),
            ks_mated=_ks(m, model.mated(noise, noise_sd)),
            ks_nonmated=_ks(nm, model.nonmated(spread, noise, noise_sd)),
        )
    prov = metrics.get("provenance", {}) or {}
    ds = metrics.get("dataset", {}) or {}
    source = {
        "run_name": metrics.get("run_name"),
        "dataset": ds.get("name"),
        "manifest_sha256": ds.get("manifest_sha256"),
        "model": model_info.get("name"),
        "model_metric": metric,
        "weights_sha256": model_info.get("weights_sha256"),
        "git_commit": (prov.get("code") or {}).get("git_commit"),
    }
    thresholds = []
    for t in metrics.get("thresholds", []):
        if t.get("status", "ok") == "ok" and t.get("threshold") is not None:
            thresholds.append(
                {"name": t["name"], "threshold": float(t["threshold"]), "generator_threshold": float(smap.to_generator(float(t["threshold"])))}
            )
    return CalibrationResult(
        attribute=attribute,
        score_map=smap,
        dim=dim,
        image_noise_sd=noise_sd,
        groups=groups,
        excluded=excluded,
        objective=float(obj),
        source=source,
        thresholds=thresholds,
    )


def calibrate_run(results_dir: str | Path, **kwargs: Any) -> CalibrationResult:
    """:func:`read_run` then :func:`calibrate` (keyword arguments as there)."""
    scores, metrics = read_run(results_dir)
    result = calibrate(scores, metrics, **kwargs)
    result.source["results_dir"] = scrub_paths(str(results_dir))
    return result


# ----------------------------------------------------------------------------- config
def dataset_config(result: CalibrationResult, *, name: str, subjects_scale: float = 1.0) -> dict[str, Any]:
    """The dataset config (Hydra ``dataset`` group) of a calibration, as a plain dict."""
    return {
        "name": name,
        "calibration": {
            "synthetic": True,
            "note": "generated embeddings, no real person; labels are generator conditioning attributes (label_source = generator)",
            "attribute": result.attribute,
            "source": result.source,
            "score_map": {
                **asdict(result.score_map),
                "rule": "generator cosine = 1 - delta / dissimilarity_scale; delta = score^2 (euclidean, score = -distance) or 1 - score (cosine)",
            },
            "source_thresholds": result.thresholds,
            "fit": {
                label: {
                    "subjects": f.subjects,
                    "n_mated": f.n_mated,
                    "n_nonmated": f.n_nonmated,
                    "w2_mated": round(f.w2_mated, 5),
                    "w2_nonmated": round(f.w2_nonmated, 5),
                    "ks_mated": round(f.ks_mated, 4),
                    "ks_nonmated": round(f.ks_nonmated, 4),
                }
                for label, f in result.groups.items()
            },
            "not_fitted": dict(result.excluded),
        },
        "loader": {
            "_target_": "bench.synthetic.generator.SyntheticPopulation",
            "name": name,
            "dim": result.dim,
            "seed": "${seed}",
            "subjects_scale": subjects_scale,
            "groups": result.population_groups(),
        },
        # generated embeddings of no real person: no licence restriction (protocol=identification checks this)
        "permitted_uses": {"uses": ["verification_research", "identification_research"], "source": "synthetic (bench.synthetic.generator)"},
    }


def write_dataset_config(result: CalibrationResult, path: str | Path, *, name: str, subjects_scale: float = 1.0) -> Path:
    """Write :func:`dataset_config` as YAML with an explanatory header; return the path."""
    import yaml

    cfg = dataset_config(result, name=name, subjects_scale=subjects_scale)
    src = result.source
    header = (
        f"# SYNTHETIC population calibrated to {src.get('model')} x {src.get('dataset')} "
        f"(run {src.get('run_name')!r}), written by fvbench-calibrate.\n"
        "# Generated embeddings: no face image, no real person. Group labels are generator\n"
        f"# conditioning attributes fitted to the run's {result.attribute!r} groups (label_source = generator).\n"
        "# Scores are generator cosines; calibration.score_map translates the model's thresholds.\n"
        f"# Fitted: dim={result.dim} (effective), image_noise_sd={result.image_noise_sd:.3g}, per group identity_spread and\n"
        "# image_noise (minimum 2-Wasserstein fit, bench/synthetic/calibrate.py). subjects_scale multiplies every group.\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=120))
    return path
