"""What an acquisition-condition sweep is: its protocol, its transforms and grids, its result.

The definitions shared by the sweep driver (:mod:`bench.sweep`, which runs the pipeline
on degraded probes) and the sweep report (:mod:`bench.report.sweep`, which writes and
re-renders the folder), so that the report never imports the driver. The protocol is
described in :mod:`bench.sweep`; published columns in :data:`SWEEP_COLUMNS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.acquisition.transforms import Transform
from bench.errors import ConfigError

__all__ = ["BOOT_COLUMNS", "RATE_COLUMNS", "SWEEP_BASE_COLUMNS", "SWEEP_COLUMNS", "UNPERTURBED", "SweepProtocol", "SweepResult", "TransformSweep", "make_sweeps"]

#: ``transform`` value of the rows of the unperturbed run (strength NaN).
UNPERTURBED = "none"

#: Columns every ``sweep.csv`` has (folders written before issue #14 have only these).
SWEEP_BASE_COLUMNS = [
    "transform", "strength", "attribute", "group", "threshold_name", "threshold", "metric", "errors", "comparisons",
    "subjects", "rate", "wilson_low", "wilson_high", "upper_bound_95", "flag", "reasons",
]

#: Subject-bootstrap columns (issue #14; :mod:`bench.metrics.bootstrap_fixed`): percentile
#: interval of FNMR and FMR at the fixed thresholds and the number of replicates in which
#: the rate was defined; blank for FTA, FNMR_incl_FTA, counts-only groups, and every row
#: when ``bootstrap_replicates`` is null.
BOOT_COLUMNS = ["boot_low", "boot_high", "n_replicates"]

#: Columns of ``sweep.csv``, in order.
SWEEP_COLUMNS = [*SWEEP_BASE_COLUMNS, *BOOT_COLUMNS]

#: The columns of ``sweep.csv`` blanked for a group published as counts only.
RATE_COLUMNS = ["rate", "wilson_low", "wilson_high", "upper_bound_95", *BOOT_COLUMNS]


@dataclass(frozen=True)
class SweepProtocol:
    """Which images are references and probes, and how thresholds are set.

    Attributes
    ----------
    reference_view, probe_view : str
        Values of ``view_column`` selecting the reference and the probe images.
    view_column : str
        Manifest column holding the view (``view`` for FRL London).
    attributes : list of str or None
        Attributes to disaggregate by; default all of the dataset's.
    intersections : list of list of str
        Attribute combinations reported as their own attribute (``"a&b"``).
    target_fmrs : list of float
        Targets in (0, 1) of the global thresholds calibrated on the unperturbed
        non-mated comparisons.
    use_nominal_threshold : bool
        Also report at the model's published threshold, where it has one.
    confidence : float
        Level of the Wilson and bootstrap intervals.
    seed : int
        Seed of the random transforms (noise) and of the subject bootstrap.
    geometry : dict
        Keyword arguments of :class:`FaceGeometryLocator`.
    bootstrap_replicates : int or None
        Subject-bootstrap replicates of every FNMR/FMR cell at the fixed thresholds
        (:mod:`bench.metrics.bootstrap_fixed`; docs/protocol.md §5.2-5.3), 1 to
        :data:`bench.limits.MAX_BOOTSTRAP_REPLICATES`; None: Wilson intervals only.
    """

    reference_view: str = "neutral_front"
    probe_view: str = "smiling_front"
    view_column: str = "view"
    attributes: list[str] | None = None
    intersections: list[list[str]] = field(default_factory=list)
    target_fmrs: list[float] = field(default_factory=lambda: [1e-3])
    use_nominal_threshold: bool = True
    confidence: float = 0.95
    seed: int = 0
    geometry: dict = field(default_factory=dict)
    bootstrap_replicates: int | None = 1000  # issue #14: subject bootstrap at the fixed thresholds

    def __post_init__(self) -> None:
        if self.bootstrap_replicates is not None:  # issue #14
            from bench.limits import MAX_BOOTSTRAP_REPLICATES, check_int

            object.__setattr__(self, "bootstrap_replicates", check_int(
                "sweep.bootstrap_replicates", self.bootstrap_replicates, 1, MAX_BOOTSTRAP_REPLICATES, "or null to skip the bootstrap"))
        if self.reference_view == self.probe_view:
            raise ConfigError(f"sweep: reference_view and probe_view must differ, both are {self.reference_view!r}")
        if not self.target_fmrs and not self.use_nominal_threshold:
            raise ConfigError("sweep: give at least one target_fmrs value or use_nominal_threshold: true")
        for f in self.target_fmrs:
            if not 0 < float(f) < 1:
                raise ConfigError(f"sweep.target_fmrs: {f!r} is outside (0, 1)")
        if not 0 < float(self.confidence) < 1:
            raise ConfigError(f"sweep.confidence must be in (0, 1), got {self.confidence!r}")


@dataclass(frozen=True)
class TransformSweep:
    """One transform and its grid of strengths.

    Attributes
    ----------
    name : str
        Name in tables and file names (the config key; usually ``transform.name``).
    transform : Transform
    strengths : tuple of float
        Validated strengths, in the order given.
    """

    name: str
    transform: Transform
    strengths: tuple[float, ...]


def make_sweeps(spec: dict[str, Any]) -> list[TransformSweep]:
    """Build and validate sweeps from ``{name: {"transform": Transform, "strengths": [...]}}``.

    Raises
    ------
    ConfigError
        If the mapping is empty, an entry lacks ``transform``/``strengths``, a
        transform is not a :class:`Transform`, a grid is empty or repeats a value, or a
        strength is out of the transform's range.
    """
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"transforms: expected a non-empty mapping name -> {{transform, strengths}}, got {spec!r}")
    out = []
    for name, entry in spec.items():
        if not isinstance(entry, dict) or set(entry) != {"transform", "strengths"}:
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ConfigError(f"transforms.{name}: expected keys ['strengths', 'transform'], got {keys}")
        t = entry["transform"]
        if not isinstance(t, Transform):
            raise ConfigError(f"transforms.{name}.transform: expected a bench.acquisition.transforms.Transform, got {type(t).__name__}")
        grid = entry["strengths"]
        if not isinstance(grid, (list, tuple)) or not grid:
            raise ConfigError(f"transforms.{name}.strengths: expected a non-empty list, got {grid!r}")
        values = tuple(t.check_strength(s) for s in grid)
        if len(set(values)) != len(values):
            raise ConfigError(f"transforms.{name}.strengths: repeated values in {list(grid)}")
        out.append(TransformSweep(name=str(name), transform=t, strengths=values))
    return out



@dataclass
class SweepResult:
    """Everything :func:`run_sweep` computed, before it is written.

    Attributes
    ----------
    rows : pandas.DataFrame
        Tidy rows, columns :data:`SWEEP_COLUMNS`: the unperturbed run
        (``transform == "none"``, strength NaN) then every transform and strength.
    thresholds : list of dict
        Set on the unperturbed run: name, kind, threshold (and for calibrated ones
        target_fmr, achieved_fmr, k, n_nonmated, support), or status ``refused``.
    sweeps : list of TransformSweep
    attributes : list of str
    subjects_per_group : dict
        attribute -> group -> subjects in the sweep population (probes and references).
    dataset_info, model_info, geometry_info, counts : dict
    protocol : SweepProtocol
    timings : dict
        Seconds per stage (kept out of ``sweep.json``).
    """

    rows: pd.DataFrame
    thresholds: list[dict]
    sweeps: list[TransformSweep]
    attributes: list[str]
    subjects_per_group: dict
    dataset_info: dict
    model_info: dict
    geometry_info: dict
    counts: dict
    protocol: SweepProtocol
    timings: dict = field(default_factory=dict)

    @property
    def usable_thresholds(self) -> dict[str, float]:
        """Name -> value of every threshold that could be set."""
        return {t["name"]: t["threshold"] for t in self.thresholds if t.get("status") == "ok"}
