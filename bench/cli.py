"""Command-line entry point ``fvbench`` (also ``python -m bench``): the only Hydra importer.

Composes ``configs/fvbench.yaml``, builds the dataset and model through
:func:`instantiate_bench` (which only builds the factories registered in
:mod:`bench.registry`), calls the
plain function :func:`bench.run.evaluate` and writes ``results/<run_name>/``.
"""

from __future__ import annotations

import copy
import inspect
import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.errors import BenchError, ConfigError
from bench.registry import check_target, resolve_factory
from bench.report.folder import check_writable, staged_folder
from bench.report.provenance import recorded_config, scrub_paths
from bench.run import Protocol, evaluate

__all__ = ["main", "instantiate_bench", "run_from_config", "sweep_main", "sweep_from_config"]

log = logging.getLogger(__name__)

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def _resolved(node: Any, where: str) -> Any:
    """Resolve every interpolation of ``node`` exactly once into plain Python data."""
    if isinstance(node, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{where}: cannot resolve the config: {err}".replace("\n", " ")) from err
    return copy.deepcopy(node)


def _join(where: str, key: Any) -> str:
    return str(key) if where == "<root>" else f"{where}.{key}"


def _check_targets(node: Any, where: str) -> None:
    """Refuse any unregistered ``_target_`` anywhere in the plain tree, before building anything."""
    if isinstance(node, dict):
        if "_target_" in node:
            check_target(node["_target_"], where)
            special = sorted(k for k in node if isinstance(k, str) and k.startswith("_") and k.endswith("_") and k != "_target_")
            if special:
                raise ConfigError(f"{where}: key(s) {special} are not supported; a config node names a factory with _target_ and its arguments")
        for k, v in node.items():
            if k != "_target_":
                _check_targets(v, _join(where, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_targets(v, f"{where}[{i}]")


def _build(node: Any, where: str) -> Any:
    """Build a checked plain tree bottom-up: a dict with ``_target_`` becomes ``factory(**children)``."""
    if isinstance(node, list):
        return [_build(v, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    kwargs = {k: _build(v, _join(where, k)) for k, v in node.items() if k != "_target_"}
    if "_target_" not in node:
        return kwargs
    target = node["_target_"]
    factory = resolve_factory(target, where)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as err:
        params = [p for p in inspect.signature(factory).parameters if p not in ("self", "args", "kwargs")]
        raise ConfigError(f"{where}: {err} for _target_ {target!r}; valid keys: {params}") from err
    except ValueError:  # no signature available: let the call decide
        pass
    return factory(**kwargs)


def instantiate_bench(node: DictConfig | dict | None, where: str = "<root>") -> Any:
    """Build the objects a config node describes, from registered factories only.

    The node is resolved **once** into plain data; every ``_target_`` in that data is
    checked against :data:`bench.registry.FACTORIES` (exact names, nothing imported
    before the check), and the objects are built from that same plain data, so no
    interpolation (``${oc.env:...}``, ``${...}``) is evaluated again between the check
    and the use. Nested ``_target_`` nodes are built first and passed as arguments;
    other mappings and lists are passed as plain ``dict``/``list``.

    Parameters
    ----------
    node : DictConfig, dict or None
        A config node; None gives None.
    where : str
        Config path of ``node`` (e.g. ``"model.embedder"``), used in error messages.

    Raises
    ------
    ConfigError
        An unregistered ``_target_`` (with the valid names and a "did you mean"), a
        Hydra special key such as ``_args_`` or ``_partial_``, an interpolation that
        does not resolve, or an argument the factory does not take (with its keys).
    BenchError
        Whatever the factory itself refuses (e.g. missing weights), unchanged.
    """
    if node is None:
        return None
    plain = _resolved(node, where)
    _check_targets(plain, where)
    return _build(plain, where)


def run_from_config(cfg: DictConfig) -> Path:
    """Run the benchmark described by a composed config; return the result folder."""
    t0 = time.perf_counter()
    paths = {k: Path(to_absolute_path(str(Path(v).expanduser()))) for k, v in cfg.paths.items()}
    dataset = instantiate_bench(cfg.dataset.loader, "dataset.loader")
    model = instantiate_bench(cfg.model.embedder, "model.embedder")
    pcfg = OmegaConf.to_container(cfg.protocol, resolve=True)
    if isinstance(pcfg.get("target_fmrs"), (int, float)):  # protocol.target_fmrs=1e-3 means [1e-3]
        pcfg["target_fmrs"] = [pcfg["target_fmrs"]]
    try:
        protocol = Protocol(**pcfg)
    except TypeError as err:
        raise ConfigError(f"protocol config: {err}; valid keys: {sorted(Protocol.__dataclass_fields__)}") from err
    except ValueError as err:  # e.g. target_fmrs=[abc]
        raise ConfigError(f"protocol config: {err}") from err
    out_dir = paths["results_dir"] / str(cfg.run_name)
    check_writable(paths["results_dir"])  # fail before the compute, not after
    result = evaluate(dataset, model, protocol, cache_dir=paths["cache_dir"], progress=bool(cfg.progress),
                      min_group_subjects=int(cfg.report.min_group_subjects))  # small groups' subjects enter no published number
    from bench.report.export import export_embeddings
    from bench.report.writer import write_results  # matplotlib only when writing

    config = recorded_config(cfg)  # paths as <data_dir>..., no environment value
    with staged_folder(out_dir) as stage:  # the folder appears whole, or not at all
        write_results(
            result,
            stage,
            run_name=str(cfg.run_name),
            config=config,
            min_group_subjects=int(cfg.report.min_group_subjects),
            figures=bool(cfg.report.figures),
            save_scores=bool(cfg.report.save_scores),
            embeddings_exported=bool(cfg.report.get("export_embeddings", False)),
            published_dir=out_dir,
            path_roots=paths,
        )
        if cfg.report.get("export_embeddings", False):  # opt-in: biometric data into results/ (PRIVACY.md)
            export_embeddings(dataset, result, stage, cache_dir=paths["cache_dir"], published_dir=out_dir)
    total = time.perf_counter() - t0
    log.info("wrote %s in %.1f s (stages: %s)", out_dir, total, {k: round(v, 2) for k, v in result.timings.items()})
    return out_dir


def _fail(prog: str, err: BenchError) -> None:
    """A refusal we raised on purpose: its message says what and why; no traceback."""
    print(f"{prog}: error: {err}", file=sys.stderr)
    sys.exit(2)


def _interrupted(prog: str) -> None:
    print(f"{prog}: interrupted; finished embeddings stay in the cache and the result folder is unchanged", file=sys.stderr)
    sys.exit(130)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="fvbench")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        out = run_from_config(cfg)
    except BenchError as err:
        _fail("fvbench", err)
    except KeyboardInterrupt:
        _interrupted("fvbench")
    print(f"fvbench: results written to {out}")


def main() -> None:
    """Console-script entry point (``fvbench``)."""
    _hydra_main()


def sweep_from_config(cfg: DictConfig) -> Path:
    """Run the acquisition-condition sweep of a composed ``sweep`` config (issue #5); return the result folder."""
    from bench.sweep import SweepProtocol, make_sweeps, run_sweep, write_sweep

    paths = {k: Path(to_absolute_path(str(Path(v).expanduser()))) for k, v in cfg.paths.items()}
    dataset = instantiate_bench(cfg.dataset.loader, "dataset.loader")
    model = instantiate_bench(cfg.model.embedder, "model.embedder")
    sweeps = make_sweeps(instantiate_bench(cfg.get("transforms"), "transforms") or {})
    try:
        protocol = SweepProtocol(**OmegaConf.to_container(cfg.sweep, resolve=True))
    except TypeError as err:
        raise ConfigError(f"sweep config: {err}; valid keys: {sorted(SweepProtocol.__dataclass_fields__)}") from err
    result = run_sweep(dataset, model, sweeps, protocol, cache_dir=paths["cache_dir"], progress=bool(cfg.progress),
                       min_group_subjects=int(cfg.report.min_group_subjects))  # small groups' subjects enter no published number
    out_dir = paths["results_dir"] / str(cfg.run_name)
    write_sweep(result, out_dir, run_name=str(cfg.run_name), config=scrub_paths(recorded_config(cfg), paths),
                min_group_subjects=int(cfg.report.min_group_subjects), figures=bool(cfg.report.figures))
    log.info("wrote %s (stages: %s)", out_dir, {k: round(v, 2) for k, v in result.timings.items()})
    return out_dir


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sweep")
def _hydra_sweep_main(cfg: DictConfig) -> None:
    try:
        out = sweep_from_config(cfg)
    except BenchError as err:
        _fail("fvbench-sweep", err)
    except KeyboardInterrupt:
        _interrupted("fvbench-sweep")
    print(f"fvbench-sweep: results written to {out}")


def sweep_main() -> None:
    """Console-script entry point (``fvbench-sweep``): acquisition-condition sweeps."""
    _hydra_sweep_main()
