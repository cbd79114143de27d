"""Command-line entry point ``fvbench`` (also ``python -m bench``): the only Hydra importer.

Composes ``configs/fvbench.yaml``, builds the dataset and model through
:func:`instantiate_bench` (which only accepts ``bench.*`` targets), calls the
plain function :func:`bench.run.evaluate` and writes ``results/<run_name>/``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf

from bench.errors import BenchError, ConfigError
from bench.report.folder import check_writable, staged_folder
from bench.run import Protocol, evaluate

__all__ = ["main", "instantiate_bench", "run_from_config", "sweep_main", "sweep_from_config"]

log = logging.getLogger(__name__)

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def _targets(node: Any, where: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "_target_":
                found.append((where or "<root>", str(v)))
            else:
                found += _targets(v, f"{where}.{k}" if where else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _targets(v, f"{where}[{i}]")
    return found


def instantiate_bench(node: DictConfig | None) -> Any:
    """``hydra.utils.instantiate`` restricted to ``bench.*`` targets.

    Raises
    ------
    ConfigError
        If any ``_target_`` in ``node`` lies outside the ``bench`` package (config
        files must not be able to run arbitrary code).
    """
    if node is None:
        return None
    plain = OmegaConf.to_container(node, resolve=True)
    bad = [(w, t) for w, t in _targets(plain) if not t.startswith("bench.")]
    if bad:
        raise ConfigError(f"only bench.* targets may be instantiated from configs; refused: {bad}")
    # A bench.* path can still reach outside code through a module attribute
    # (e.g. bench.data.manifest.pd.read_pickle): the object itself must be defined in bench.
    for where, t in _targets(plain):
        try:
            module = getattr(get_object(t), "__module__", None) or ""
        except (ImportError, ValueError, AttributeError) as err:
            raise ConfigError(f"{where}: cannot resolve _target_ {t!r}: {err}") from err
        if module != "bench" and not module.startswith("bench."):
            raise ConfigError(
                f"{where}: _target_ {t!r} resolves to an object of module {module!r}; "
                "only objects defined in bench.* may be instantiated"
            )
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:  # show our own message (e.g. the weights fetch command), not Hydra's wrapper
        cause = err.__cause__
        if isinstance(cause, BenchError):
            raise cause from None
        raise


def run_from_config(cfg: DictConfig) -> Path | str:
    """Run the benchmark described by a composed config; return the result folder.

    With ``shard=i/n`` only slice ``i`` of the manifest is embedded into the cache
    (:mod:`bench.shard`); nothing is written to ``results/`` and the shard's progress
    line is returned instead.
    """
    t0 = time.perf_counter()
    paths = {k: Path(to_absolute_path(str(Path(v).expanduser()))) for k, v in cfg.paths.items()}
    if cfg.get("shard") is not None:
        from bench.shard import extract_shard, parse_shard

        parse_shard(cfg.shard)  # a typo fails before the model loads
        rep = extract_shard(instantiate_bench(cfg.dataset.loader), instantiate_bench(cfg.model.embedder), paths["cache_dir"],
                            cfg.shard, progress=bool(cfg.progress))
        return rep.line()
    dataset = instantiate_bench(cfg.dataset.loader)
    model = instantiate_bench(cfg.model.embedder)
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
    result = evaluate(dataset, model, protocol, cache_dir=paths["cache_dir"], progress=bool(cfg.progress))
    from bench.report.export import export_embeddings
    from bench.report.writer import write_results  # matplotlib only when writing

    config = OmegaConf.to_container(cfg, resolve=True)
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


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    try:
        return str(HydraConfig.get().mode) == "RunMode.MULTIRUN"
    except ValueError:
        return False


def _job(prog: str, cfg: DictConfig, run: Any) -> dict | None:
    """Run one job; in a multirun a refusal is recorded (bench.multirun) and the other jobs go on."""
    if not _multirun():
        try:
            out = run(cfg)
        except BenchError as err:
            _fail(prog, err)
        except KeyboardInterrupt:
            _interrupted(prog)
        print(f"{prog}: {out}" if isinstance(out, str) else f"{prog}: results written to {out}")
        return None
    from bench.multirun import job_guard

    try:
        job_guard(cfg)
        out = run(cfg)
    except BenchError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return {"status": "failed", "error": str(err)}
    if isinstance(out, str):  # a shard: its progress line, no result folder
        print(f"{prog}: {out}")
        return {"status": "ok", "headline": out}
    print(f"{prog}: results written to {out}")
    return {"status": "ok", "out": str(out)}


def _exit_if_jobs_failed(prog: str) -> None:
    from bench.multirun import FAILED_JOBS

    if FAILED_JOBS:
        print(f"{prog}: {len(FAILED_JOBS)} job(s) failed: {', '.join(FAILED_JOBS)} (see the lines above)", file=sys.stderr)
        sys.exit(1)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="fvbench")
def _hydra_main(cfg: DictConfig) -> dict | None:
    return _job("fvbench", cfg, run_from_config)


def main() -> None:
    """Console-script entry point (``fvbench``)."""
    _hydra_main()
    _exit_if_jobs_failed("fvbench")


def sweep_from_config(cfg: DictConfig) -> Path:
    """Run the acquisition-condition sweep of a composed ``sweep`` config (issue #5); return the result folder."""
    from bench.sweep import SweepProtocol, make_sweeps, run_sweep, write_sweep

    paths = {k: Path(to_absolute_path(str(Path(v).expanduser()))) for k, v in cfg.paths.items()}
    dataset = instantiate_bench(cfg.dataset.loader)
    model = instantiate_bench(cfg.model.embedder)
    sweeps = make_sweeps(instantiate_bench(cfg.get("transforms")) or {})
    try:
        protocol = SweepProtocol(**OmegaConf.to_container(cfg.sweep, resolve=True))
    except TypeError as err:
        raise ConfigError(f"sweep config: {err}; valid keys: {sorted(SweepProtocol.__dataclass_fields__)}") from err
    result = run_sweep(dataset, model, sweeps, protocol, cache_dir=paths["cache_dir"], progress=bool(cfg.progress))
    out_dir = paths["results_dir"] / str(cfg.run_name)
    write_sweep(result, out_dir, run_name=str(cfg.run_name), config=OmegaConf.to_container(cfg, resolve=True),
                min_group_subjects=int(cfg.report.min_group_subjects), figures=bool(cfg.report.figures))
    log.info("wrote %s (stages: %s)", out_dir, {k: round(v, 2) for k, v in result.timings.items()})
    return out_dir


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sweep")
def _hydra_sweep_main(cfg: DictConfig) -> dict | None:
    return _job("fvbench-sweep", cfg, sweep_from_config)


def sweep_main() -> None:
    """Console-script entry point (``fvbench-sweep``): acquisition-condition sweeps."""
    _hydra_sweep_main()
    _exit_if_jobs_failed("fvbench-sweep")
