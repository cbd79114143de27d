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

from bench import __version__
from bench.config_schema import check_override_keys, recorded_config, validate_config
from bench.errors import BenchError, ConfigError
from bench.report.folder import check_writable, staged_folder
from bench.run import Protocol, evaluate

__all__ = ["main", "instantiate_bench", "apply_model_config", "help_text", "run_from_config", "sweep_main", "sweep_from_config"]

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


def run_from_config(cfg: DictConfig) -> Path:
    """Run the benchmark described by a composed config; return the result folder.

    The config is first checked against the known keys (:func:`bench.config_schema.validate_config`);
    ``metrics.json`` records it without the run-time keys (``progress``, ``paths``).
    """
    t0 = time.perf_counter()
    validate_config(cfg, "fvbench")
    paths = {k: Path(to_absolute_path(str(Path(v).expanduser()))) for k, v in cfg.paths.items()}
    dataset = instantiate_bench(cfg.dataset.loader)
    model = instantiate_bench(cfg.model.embedder)
    apply_model_config(model, cfg.model)
    pcfg = OmegaConf.to_container(cfg.protocol, resolve=True)
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
    out_dir = paths["results_dir"] / str(cfg.run_name)
    check_writable(paths["results_dir"])  # fail before the compute, not after
    result = evaluate(dataset, model, protocol, cache_dir=paths["cache_dir"], progress=bool(cfg.progress))
    from bench.report.export import export_embeddings
    from bench.report.writer import write_results  # matplotlib only when writing

    config = recorded_config(cfg)
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
            progress=bool(cfg.progress),
        )
        if cfg.report.get("export_embeddings", False):  # opt-in: biometric data into results/ (PRIVACY.md)
            export_embeddings(dataset, result, stage, cache_dir=paths["cache_dir"], published_dir=out_dir)
    total = time.perf_counter() - t0
    log.info("wrote %s in %.1f s (stages: %s)", out_dir, total, {k: round(v, 2) for k, v in result.timings.items()})
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


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="fvbench")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        out = run_from_config(cfg)
    except BenchError as err:
        _fail("fvbench", err)
    except KeyboardInterrupt:
        _interrupted("fvbench")
    print(report_line("fvbench", out))


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
        groups = ["dataset", "model", "transforms", "experiment_sweep", "report", "paths"]
    else:
        head = [
            f"{prog} {__version__}: per-group FMR, FNMR and FTA of a face-verification model, with differentials and intervals",
            "",
            f"Usage: {prog} [group=option ...] [key=value ...]",
            f"  {prog}                                   the calibrated synthetic population (no data, no weights)",
            f"  {prog} experiment=frl_london_dlib        dlib ResNet on the FRL London front views",
            f"  {prog} dataset=csv dataset.manifest=my.csv model=dlib_resnet   your own images (README)",
            "",
            "Protocol options (protocol.<key>=value), from configs/protocol/verification.yaml:",
            body(CONFIG_DIR / "protocol" / "verification.yaml"),
        ]
        groups = ["experiment", "dataset", "model", "protocol", "report", "paths", "debug"]
    lines = [
        *head,
        "",
        "Report options (report.<key>=value), from configs/report/default.yaml:",
        body(CONFIG_DIR / "report" / "default.yaml"),
        "",
        "Run-time options (not recorded in metrics.json; results do not depend on them):",
        "    progress=true|false       progress bars",
        "    paths.data_dir=DIR        where datasets live (default ../shared/datasets; env FVBENCH_DATA_DIR)",
        "    paths.results_dir=DIR     where results/<run_name>/ is written (env FVBENCH_RESULTS_DIR)",
        "    paths.cache_dir=DIR       private embedding cache (env FVBENCH_CACHE)",
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


def sweep_from_config(cfg: DictConfig) -> Path:
    """Run the acquisition-condition sweep of a composed ``sweep`` config (issue #5); return the result folder."""
    from bench.sweep import SweepProtocol, make_sweeps, run_sweep, write_sweep

    validate_config(cfg, "sweep")
    paths = {k: Path(to_absolute_path(str(Path(v).expanduser()))) for k, v in cfg.paths.items()}
    dataset = instantiate_bench(cfg.dataset.loader)
    model = instantiate_bench(cfg.model.embedder)
    apply_model_config(model, cfg.model)
    sweeps = make_sweeps(instantiate_bench(cfg.get("transforms")) or {})
    try:
        protocol = SweepProtocol(**OmegaConf.to_container(cfg.sweep, resolve=True))
    except TypeError as err:
        raise ConfigError(f"sweep config: {err}; valid keys: {sorted(SweepProtocol.__dataclass_fields__)}") from err
    result = run_sweep(dataset, model, sweeps, protocol, cache_dir=paths["cache_dir"], progress=bool(cfg.progress))
    out_dir = paths["results_dir"] / str(cfg.run_name)
    write_sweep(result, out_dir, run_name=str(cfg.run_name), config=recorded_config(cfg),
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
    print(report_line("fvbench-sweep", out))


def sweep_main() -> None:
    """Console-script entry point (``fvbench-sweep``): acquisition-condition sweeps."""
    if _pre_hydra("fvbench-sweep", "sweep"):
        return
    _hydra_sweep_main()
