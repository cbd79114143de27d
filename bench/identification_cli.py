"""Glue of ``protocol=identification`` between the Hydra config and the pure pipeline (issue 13)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bench.cli_output import prepare_output
from bench.errors import ConfigError
from bench.identification_run import IdentificationProtocol, check_permitted_uses, evaluate_identification
from bench.report.folder import staged_folder

__all__ = ["run_identification"]

log = logging.getLogger(__name__)


def run_identification(cfg: DictConfig, dataset: Any, model: Any, pcfg: dict, paths: dict[str, Path], t0: float, *, config: dict) -> Path:
    """Run the identification protocol of a composed config; return the result folder.

    Raises
    ------
    ConfigError
        Unknown protocol keys (named, with the valid ones), a bad run name or result
        folder (:func:`bench.cli_output.prepare_output`), or a dataset whose
        ``permitted_uses`` rules identification out.
    """
    if isinstance(pcfg.get("target_fpirs"), (int, float)):
        pcfg["target_fpirs"] = [pcfg["target_fpirs"]]
    try:
        protocol = IdentificationProtocol(**pcfg)
    except TypeError as err:
        raise ConfigError(f"protocol config: {err}; valid keys: {sorted(IdentificationProtocol.__dataclass_fields__)}") from err
    except ValueError as err:
        raise ConfigError(f"protocol config: {err}") from err
    uses = (config.get("dataset") or {}).get("permitted_uses")
    check_permitted_uses(str(cfg.dataset.get("name")), uses)  # a refused dataset touches no folder
    out_dir = prepare_output(cfg, paths, config=config, record="metrics.json")  # name, folder and replacement rules first
    result = evaluate_identification(dataset, model, protocol, cache_dir=paths["cache_dir"], progress=bool(cfg.progress),
                                     permitted_uses=uses, dataset_name=str(cfg.dataset.get("name")),
                                     min_group_subjects=int(cfg.report.min_group_subjects))
    from bench.report.identification import write_identification

    with staged_folder(out_dir) as stage:
        write_identification(result, stage, run_name=str(cfg.run_name), config=config,
                             min_group_subjects=int(cfg.report.min_group_subjects), figures=bool(cfg.report.figures),
                             save_search=bool(cfg.report.save_scores))
    log.info("wrote %s in %.1f s (stages: %s)", out_dir, time.perf_counter() - t0, {k: round(v, 2) for k, v in result.timings.items()})
    return out_dir
