"""The result folder of a command-line run, checked before any computing.

Shared by the entry points (:mod:`bench.cli`, :mod:`bench.identification_cli`): the run
name (no resolver, no path outside ``paths.results_dir``), Hydra multirun jobs that would
share a folder, the config as it is published (machine-free), and the folder's
replacement and recovery rules (:mod:`bench.report.folder`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.config_schema import recorded_config
from bench.errors import ConfigError
from bench.files import storage_error
from bench.report.folder import (
    check_raw_name,
    check_replace,
    check_run_name,
    check_writable,
    recover_folder,
    result_folder,
)
from bench.report.provenance import recorded_config as machine_free_config
from bench.report.provenance import scrub_paths

__all__ = ["check_config_name", "check_multirun_names", "prepare_output", "published_config"]

log = logging.getLogger(__name__)


def _raw_name_sources(container: dict, raw: Any, depth: int = 0) -> list[str]:
    """The raw (unresolved) strings a name is built from, following ``${a.b}`` references."""
    out = [raw] if isinstance(raw, str) else []
    if not isinstance(raw, str) or depth > 8:
        return out
    for ref in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}", raw):
        node: Any = container
        for part in ref.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out += _raw_name_sources(container, node, depth + 1)
    return out


def check_config_name(cfg: DictConfig, key: str = "run_name") -> str:
    """Validate ``cfg[key]`` before any computing; return the resolved name.

    The unresolved value and every config value it refers to may not call resolvers
    (``${oc.env:HOME}``) -- see :func:`bench.report.folder.check_raw_name`; the resolved
    value must pass :func:`bench.report.folder.check_run_name`.

    Raises
    ------
    ConfigError
        One line naming ``key``, the value and the rule.
    """
    raw = OmegaConf.to_container(cfg, resolve=False)
    for src in _raw_name_sources(raw, raw.get(key)):
        check_raw_name(src, key=key)
    try:
        value = cfg[key]
    except Exception as err:  # noqa: BLE001 - omegaconf's resolution errors have no common public base
        raise ConfigError(f"{key}: cannot resolve {raw.get(key)!r}: {err}") from None
    return check_run_name(value, key=key)


def _multirun_names(cfg: DictConfig) -> list[str] | None:
    """Resolved ``run_name`` of every job of the current Hydra multirun (None when not a multirun).

    Recomposes each job's config from the sweep's ``multirun.yaml`` (written by Hydra's
    basic sweeper before the first job starts) and its sweep overrides.
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    master_path = Path(str(hc.sweep.dir)) / "multirun.yaml"
    if "BasicSweeper" not in str(hc.sweeper.get("_target_", "")) or not master_path.is_file():
        log.warning("cannot list the jobs of this multirun (sweeper %s): jobs sharing a run_name are not detected",
                    hc.sweeper.get("_target_"))
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    cache_key = str(master_path.resolve())
    if cache_key in _MULTIRUN_NAMES:  # jobs of one sweep in one process: list them once
        return _MULTIRUN_NAMES[cache_key]
    master = OmegaConf.load(master_path)
    # unresolved: an override such as run_name=grid_${seed} must reach each job as written, not resolved in the master config
    params = OmegaConf.to_container(master.hydra.sweeper, resolve=False).get("params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(OmegaConf.to_container(master.hydra.overrides.task, resolve=False))
    loader = GlobalHydra.instance().config_loader()
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(args)
    names = []
    for batch in BasicSweeper.split_arguments(parsed, None):
        for job in batch:
            try:
                names.append(str(loader.load_sweep_config(master, list(job)).run_name))
            except Exception as err:  # noqa: BLE001 - that job refuses its own name when it runs
                log.debug("multirun job %s: run_name not resolvable here (%s)", job, err)
    _MULTIRUN_NAMES[cache_key] = names
    return names


_MULTIRUN_NAMES: dict[str, list[str]] = {}


def check_multirun_names(cfg: DictConfig) -> None:
    """Refuse a Hydra multirun in which two jobs would write the same result folder.

    Raises
    ------
    ConfigError
        Naming the shared run_name and how many jobs share it.
    """
    names = _multirun_names(cfg)
    if not names:
        return
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    shared = {n: c for n, c in seen.items() if c > 1}
    if shared:
        n, c = next(iter(shared.items()))
        raise ConfigError(
            f"this multirun has {len(names)} jobs but {c} of them share run_name={n!r}"
            + (f" (and {len(shared) - 1} more shared names)" if len(shared) > 1 else "")
            + "; each job must write its own folder: put the swept values in run_name "
            "(e.g. run_name='${dataset.name}__${model.name}') or sweep run_name too"
        )


def published_config(cfg: DictConfig, paths: dict[str, Path]) -> dict:
    """The config as recorded in a result: :func:`bench.config_schema.recorded_config` (run-time
    keys left out) of the machine-free config (:func:`bench.report.provenance.recorded_config`:
    ``paths`` as ``<data_dir>``..., ``${oc.env:NAME}`` as ``<env:NAME>``), any remaining absolute
    path relative to ``paths`` or hashed (:func:`~bench.report.provenance.scrub_paths`)."""
    recorded_config(cfg)  # an interpolation that does not resolve: one ConfigError line
    try:
        plain = machine_free_config(cfg)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"config key {key}: {str(err).splitlines()[0]}") from None
    return scrub_paths(recorded_config(plain), paths)


def prepare_output(cfg: DictConfig, paths: dict[str, Path], *, config: dict, record: str) -> Path:
    """Everything about the result folder that can fail, checked before any computing.

    Validates ``run_name`` (:func:`check_config_name`), refuses a multirun whose jobs
    share one name, confines the folder to ``paths.results_dir``, checks that folder is
    writable, repairs leftovers of interrupted runs of the same name
    (:func:`bench.report.folder.recover_folder`), and refuses to replace a folder that
    holds a different experiment unless ``overwrite=true``
    (:func:`bench.report.folder.check_replace`).

    Returns
    -------
    pathlib.Path
        ``results_dir / run_name``.
    """
    name = check_config_name(cfg)
    check_multirun_names(cfg)
    out_dir = result_folder(paths["results_dir"], name)
    check_writable(paths["results_dir"])
    try:
        recover_folder(out_dir)
    except OSError as err:
        raise storage_error(err, "the results folder") from err
    check_replace(out_dir, config=config, overwrite=bool(cfg.get("overwrite", False)), record=record)
    return out_dir
