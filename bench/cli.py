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
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench import __version__
from bench.config_schema import CONFIG_DIR as _SHIPPED_CONFIGS
from bench.config_schema import check_hydra_targets, check_override_keys, validate_config
from bench.errors import BenchError, ConfigError
from bench.registry import check_target, resolve_factory
from bench.files import storage_error
from bench.report.folder import staged_folder
from bench.cli_output import check_config_name, check_multirun_names, prepare_output, published_config
from bench.run import Protocol, evaluate

__all__ = ["main", "instantiate_bench", "apply_model_config", "help_text", "run_from_config", "sweep_main", "sweep_from_config"]

log = logging.getLogger(__name__)

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def _hydra_dir_name(key: str, *, _root_: DictConfig) -> str:
    """Resolver ``${fvbench_dir_name:run_name}``: the run name inside Hydra's own output paths.

    Hydra creates ``hydra.run.dir`` (``outputs/<run_name>/...``) before the command
    starts; a bad name (``../../X``, an absolute path, ``${oc.env:...}``) would create
    folders outside ``outputs/``. A name that :func:`check_config_name` refuses is
    replaced by ``_invalid_run_name`` there; the command then refuses it with one line.
    """
    try:
        return check_config_name(_root_, key)
    except Exception:  # noqa: BLE001 - any refusal or resolution failure: the command reports it
        return "_invalid_run_name"


if not OmegaConf.has_resolver("fvbench_dir_name"):
    OmegaConf.register_new_resolver("fvbench_dir_name", _hydra_dir_name)


def _resolved_node(node: Any, where: str) -> Any:
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
    plain = _resolved_node(node, where)
    _check_targets(plain, where)
    return _build(plain, where)


def apply_model_config(model: Any, model_cfg: DictConfig) -> None:
    """Make the model object agree with the declarative keys of ``model`` in the config.

    ``model.nominal_threshold`` is honoured: a number that differs from the model's
    published one replaces it, and ``nominal_threshold_source`` records the override and
    the published value (metrics.json and report.md then show the value used); null
    keeps the model's own (``protocol.use_nominal_threshold=false`` reports none).
    ``model.metric`` and ``model.embedding_dim`` describe the network and cannot be
    changed by a config: a mismatch is refused.

    Raises
    ------
    ConfigError
        A nominal threshold for the generator (no image model), a non-numeric one, or a
        ``metric`` / ``embedding_dim`` that contradicts the model.
    """
    wanted = model_cfg.get("nominal_threshold", None)
    if model is None:
        if wanted is not None:
            raise ConfigError(
                f"model.nominal_threshold={wanted!r}: model {model_cfg.get('name')!r} generates embeddings and has no "
                "nominal threshold; use protocol.external_thresholds={name: value} for a fixed threshold"
            )
        return
    for key in ("metric", "embedding_dim"):
        declared = model_cfg.get(key, None)
        actual = getattr(model, key, None)
        if declared is not None and actual is not None and declared != actual:
            raise ConfigError(f"model.{key}={declared!r} contradicts the model {model_cfg.get('name')!r}, which has {key} {actual!r}")
    if wanted is not None:
        try:
            wanted = float(wanted)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.nominal_threshold: expected a number (similarity units) or null, got {wanted!r}") from err
        if wanted != wanted:
            raise ConfigError("model.nominal_threshold: got NaN; expected a number (similarity units) or null")
    published = getattr(model, "nominal_threshold", None)
    if wanted is None or (published is not None and float(published) == wanted):
        return  # null: the model's own (published) threshold; protocol.use_nominal_threshold=false drops it
    published_source = getattr(model, "nominal_threshold_source", None)
    model.nominal_threshold = wanted
    model.nominal_threshold_overridden = True  # recorded in metrics.json (model, thresholds) and report.md
    model.nominal_threshold_source = (
        f"overridden in the config: model.nominal_threshold={wanted!r} "
        f"(published: {published!r}{', ' + published_source if published_source and published is not None else ''})"
    )
    log.warning("model.nominal_threshold overridden: %r (published: %r)", wanted, published)


def run_from_config(cfg: DictConfig) -> Path | str:
    """Run the benchmark described by a composed config; return the result folder.

    The config is first checked against the known keys (:func:`bench.config_schema.validate_config`);
    ``metrics.json`` records it without the run-time keys (:func:`bench.config_schema.recorded_config`).
    With ``shard=i/n`` only slice ``i`` of the manifest is embedded into the cache
    (:mod:`bench.shard`); nothing is written to ``results/`` and the shard's progress
    line is returned instead.
    """
    t0 = time.perf_counter()
    check_config_name(cfg)  # first: resolving a bad name must not fail later with a traceback
    validate_config(cfg, "fvbench")  # missing required values, unknown keys (also +key=...), before any work
    if cfg.get("shard") is not None:  # publishes nothing: no result-folder checks (shard jobs share a run_name)
        from bench.shard import extract_shard, parse_shard

        parse_shard(cfg.shard)  # a typo fails before the model loads
        paths = {k: Path(to_absolute_path(str(Path(v).expanduser()))) for k, v in cfg.paths.items()}
        rep = extract_shard(instantiate_bench(cfg.dataset.loader, "dataset.loader"), instantiate_bench(cfg.model.embedder, "model.embedder"), paths["cache_dir"],
                            cfg.shard, progress=bool(cfg.progress))
        return rep.line()
    paths = {k: Path(to_absolute_path(str(Path(v).expanduser()))) for k, v in cfg.paths.items()}
    if cfg.protocol.get("type") == "identification" and cfg.get("scenario") is not None:  # issue #14: not wired into 1:N yet
        raise ConfigError("scenario=... is not supported with protocol=identification yet (the 1:1 protocol applies it: "
                          "reference x probe comparisons); drop scenario or use protocol=verification")
    config = published_config(cfg, paths)  # paths as <data_dir>..., no environment value
    if cfg.protocol.get("type") == "identification":  # issue #14: a dataset whose terms refuse 1:N is refused before it is read
        from bench.protocol.identification import check_permitted_uses

        check_permitted_uses(str(cfg.dataset.get("name")), (config.get("dataset") or {}).get("permitted_uses"))
    dataset = instantiate_bench(cfg.dataset.loader, "dataset.loader")
    model = instantiate_bench(cfg.model.embedder, "model.embedder")
    apply_model_config(model, cfg.model)
    pcfg = OmegaConf.to_container(cfg.protocol, resolve=True)
    if pcfg.get("type") == "identification":  # 1:N protocol (issue 13)
        from bench.identification_cli import run_identification

        return run_identification(cfg, dataset, model, pcfg, paths, t0, config=config)
    if pcfg.get("pair_list") is None and cfg.dataset.get("pair_list") is not None:  # the dataset's standard pair list (issue #14)
        pcfg["pair_list"] = OmegaConf.to_container(cfg.dataset, resolve=True)["pair_list"]
    if isinstance(pcfg.get("target_fmrs"), (int, float)):  # protocol.target_fmrs=1e-3 means [1e-3]
        pcfg["target_fmrs"] = [pcfg["target_fmrs"]]
    try:
        protocol = Protocol(**pcfg)
    except ConfigError:
        raise
    except TypeError as err:
        raise ConfigError(f"protocol config: {err}; valid keys: {sorted(Protocol.__dataclass_fields__)}") from err
    except ValueError as err:  # e.g. target_fmrs=[abc]
        raise ConfigError(f"protocol config: {err}") from err
    scenario = instantiate_bench(cfg.get("scenario"), "scenario")  # issue #14: deployment scenario (configs/scenario/)
    if scenario is not None:  # views and model checked before any image is read
        from bench.protocol.scenario import check_scenario_inputs

        check_scenario_inputs(scenario, dataset, model)
    out_dir = prepare_output(cfg, paths, config=config, record="metrics.json")  # fail before the compute, not after
    t_eval = time.perf_counter()
    result = evaluate(dataset, model, protocol, cache_dir=paths["cache_dir"], progress=bool(cfg.progress),
                      min_group_subjects=int(cfg.report.min_group_subjects), scenario=scenario)  # small groups' subjects enter no published number
    result.timings["setup_s"] = t_eval - t0
    from bench.report.export import export_embeddings
    from bench.report.writer import stage_timings, write_results  # matplotlib only when writing

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
            progress=bool(cfg.progress),
        )
        if cfg.report.get("export_embeddings", False):  # opt-in: biometric data into results/ (PRIVACY.md)
            export_embeddings(dataset, result, stage, cache_dir=paths["cache_dir"], published_dir=out_dir)
    total = time.perf_counter() - t0
    log.info("wrote %s in %s", out_dir, stage_timings(result.timings, total))
    return out_dir


def report_line(prog: str, out: Path) -> str:
    """The one line printed after a run: where its report is (and the folder of all its files)."""
    report = out / "report.md"
    if report.is_file():
        return f"{prog}: report: {report} (all result files in {out}/)"
    return f"{prog}: results written to {out}/"


def _fail(prog: str, err: BenchError) -> None:
    """A refusal we raised on purpose: its message says what and why; no traceback."""
    print(f"{prog}: error: {err}", file=sys.stderr)
    sys.exit(2)


def _interrupted(prog: str) -> None:
    print(f"{prog}: interrupted; finished embeddings stay in the cache and the result folder is unchanged", file=sys.stderr)
    sys.exit(130)


def _os_failure(prog: str, err: OSError) -> None:
    """An OSError not converted where it happened (disk full, read-only): one line naming the path."""
    _fail(prog, storage_error(err, "a file", "results already in place are unchanged"))


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
        except OSError as err:
            _os_failure(prog, err)
        except KeyboardInterrupt:
            _interrupted(prog)
        print(f"{prog}: {out}" if isinstance(out, str) else report_line(prog, out))
        return None
    from bench.multirun import LAUNCHER_ENV, job_guard

    try:
        if cfg.get("shard") is None:  # shard jobs share the run_name and publish nothing
            check_multirun_names(cfg)
    except ConfigError as err:  # the whole multirun is wrong: in-process (basic launcher) stop it before any job runs
        if "BasicLauncher" in os.environ.get(LAUNCHER_ENV, "BasicLauncher"):
            _fail(prog, err)
        print(f"{prog}: error: {err}", file=sys.stderr)
        return {"status": "failed", "error": str(err)}
    try:
        job_guard(cfg)
        out = run(cfg)
    except (BenchError, OSError) as err:
        msg = str(err if isinstance(err, BenchError) else storage_error(err, "a file", "results already in place are unchanged"))
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return {"status": "failed", "error": msg}
    if isinstance(out, str):  # a shard: its progress line, no result folder
        print(f"{prog}: {out}")
        return {"status": "ok", "headline": out}
    print(report_line(prog, out))
    return {"status": "ok", "out": str(out)}


def _exit_if_jobs_failed(prog: str) -> None:
    from bench.multirun import FAILED_JOBS

    if FAILED_JOBS:
        print(f"{prog}: {len(FAILED_JOBS)} job(s) failed: {', '.join(FAILED_JOBS)} (see the lines above)", file=sys.stderr)
        sys.exit(1)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="fvbench")
def _hydra_main(cfg: DictConfig) -> dict | None:
    return _job("fvbench", cfg, run_from_config)


def _pre_hydra(prog: str, app: str) -> bool:
    """Flags answered before Hydra starts; True when the command is done.

    ``--version``/``-V`` print the fvbench version (Hydra's own ``--version`` would print
    Hydra's); ``--help``/``-h`` print :func:`help_text`; overrides of unknown keys are
    refused with a "did you mean" (:func:`bench.config_schema.check_override_keys`).
    """
    argv = sys.argv[1:]
    if "--version" in argv or "-V" in argv:
        print(f"{prog} {__version__}")
        return True
    if "--help" in argv or "-h" in argv:
        print(help_text(prog, app))
        return True
    try:
        check_hydra_targets(argv, [_SHIPPED_CONFIGS])  # Hydra builds hydra.* objects before any check of ours
        check_override_keys(argv, app)
    except ConfigError as err:
        _fail(prog, err)
    return False


def help_text(prog: str = "fvbench", app: str = "fvbench") -> str:
    """The ``--help`` text: usage, then the protocol options (what every number means),
    report and run-time options, then the config groups; the generator's internals last."""
    from bench.config_schema import CONFIG_DIR

    def options(group: str) -> str:
        return ", ".join(sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")))

    def body(path: Path) -> str:
        return "\n".join("    " + line if line else "" for line in path.read_text().splitlines())

    if app == "sweep":
        head = [
            f"{prog} {__version__}: acquisition-condition sweeps (probes degraded by transforms, references unperturbed)",
            "",
            f"Usage: {prog} [group=option ...] [key=value ...]",
            f"  {prog} experiment_sweep=frl_london_dlib_sweep",
            f"  {prog} transforms=[exposure,resolution,jpeg] sweep.target_fmrs=[1e-3]",
            "",
            "Sweep options (sweep.<key>=value), from configs/sweep.yaml:",
            *["    " + line for line in (CONFIG_DIR / "sweep.yaml").read_text().split("\nsweep:\n", 1)[1].split("\nhydra:", 1)[0].strip("\n").splitlines()],
        ]
        groups = ["dataset", "model", "detector", "transforms", "experiment_sweep", "report", "paths"]
    else:
        head = [
            f"{prog} {__version__}: per-group FMR, FNMR and FTA of a face-verification model, with differentials and intervals",
            "",
            f"Usage: {prog} [group=option ...] [key=value ...]",
            f"  {prog}                                   the calibrated synthetic population (no data, no weights)",
            f"  {prog} experiment=frl_london_dlib        dlib ResNet on the FRL London front views",
            f"  {prog} dataset=csv dataset.manifest=my.csv model=dlib_resnet   your own images (README)",
            f"  {prog} experiment=frl_london_dlib scenario=id_document run_name=x   a deployment scenario (docs/scenarios.md)",
            "",
            "Protocol options (protocol.<key>=value), from configs/protocol/verification.yaml:",
            body(CONFIG_DIR / "protocol" / "verification.yaml"),
        ]
        groups = ["experiment", "dataset", "model", "detector", "protocol", "scenario", "report", "paths", "debug"]  # scenario: issue #14
    lines = [
        *head,
        "",
        "Report options (report.<key>=value), from configs/report/default.yaml:",
        body(CONFIG_DIR / "report" / "default.yaml"),
        "",
        "Run-time options (results do not depend on them):",
        "    progress=true|false       progress bars (not recorded)",
        "    overwrite=true            replace a result folder that holds another experiment (not recorded)",
        "    paths.results_dir=DIR     where results/<run_name>/ is written (env FVBENCH_RESULTS_DIR; not recorded)",
        "    paths.cache_dir=DIR       private embedding cache (env FVBENCH_CACHE; not recorded)",
        "    paths.data_dir=DIR        where datasets live (default ../shared/datasets; env FVBENCH_DATA_DIR)",
        "    run_name=NAME             the result folder's name",
        "",
        "Config groups (group=option):",
        *[f"    {g}: {options(g)}" for g in groups if (CONFIG_DIR / g).is_dir()],
        "",
        "A misspelt key is refused with the nearest valid key. More: README.md, docs/;",
        f"the composed config: {prog} [overrides] --cfg job; Hydra's flags: {prog} --hydra-help",
    ]
    return "\n".join(lines)


def main() -> None:
    """Console-script entry point (``fvbench``)."""
    if _pre_hydra("fvbench", "fvbench"):
        return
    _hydra_main()
    _exit_if_jobs_failed("fvbench")


def sweep_from_config(cfg: DictConfig) -> Path:
    """Run the acquisition-condition sweep of a composed ``sweep`` config (issue #5); return the result folder."""
    from bench.protocol.sweep_spec import SweepProtocol, make_sweeps
    from bench.report.sweep import write_sweep
    from bench.sweep import run_sweep

    check_config_name(cfg)  # first: resolving a bad name must not fail later with a traceback
    validate_config(cfg, "sweep")
    paths = {k: Path(to_absolute_path(str(Path(v).expanduser()))) for k, v in cfg.paths.items()}
    config = published_config(cfg, paths)  # paths as <data_dir>..., no environment value
    dataset = instantiate_bench(cfg.dataset.loader, "dataset.loader")
    model = instantiate_bench(cfg.model.embedder, "model.embedder")
    apply_model_config(model, cfg.model)
    sweeps = make_sweeps(instantiate_bench(cfg.get("transforms"), "transforms") or {})
    try:
        protocol = SweepProtocol(**OmegaConf.to_container(cfg.sweep, resolve=True))
    except TypeError as err:
        raise ConfigError(f"sweep config: {err}; valid keys: {sorted(SweepProtocol.__dataclass_fields__)}") from err
    out_dir = prepare_output(cfg, paths, config=config, record="sweep.json")  # before the compute
    result = run_sweep(dataset, model, sweeps, protocol, cache_dir=paths["cache_dir"], progress=bool(cfg.progress),
                       min_group_subjects=int(cfg.report.min_group_subjects))  # small groups' subjects enter no published number
    write_sweep(result, out_dir, run_name=out_dir.relative_to(paths["results_dir"]).as_posix(), config=config,
                min_group_subjects=int(cfg.report.min_group_subjects), figures=bool(cfg.report.figures))
    log.info("wrote %s (stages: %s)", out_dir, {k: round(v, 2) for k, v in result.timings.items()})
    return out_dir


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sweep")
def _hydra_sweep_main(cfg: DictConfig) -> dict | None:
    return _job("fvbench-sweep", cfg, sweep_from_config)


def sweep_main() -> None:
    """Console-script entry point (``fvbench-sweep``): acquisition-condition sweeps."""
    if _pre_hydra("fvbench-sweep", "sweep"):
        return
    _hydra_sweep_main()
    _exit_if_jobs_failed("fvbench-sweep")
