"""Allowed keys of every config group, and the checks that refuse unknown ones.

Hydra lets ``+key=value`` add any key, and a key nobody reads is silently ignored:
``+run_nmae=x`` or ``+report.min_group_subject=3`` used to exit 0 with the default
in force. :func:`validate_config` therefore checks the *composed* config against a
schema of known keys, derived from the sources of truth rather than written twice:

- top level: the keys of the primary config file (``configs/fvbench.yaml`` or
  ``configs/sweep.yaml``) plus the config groups it composes;
- ``protocol`` / ``sweep``: the fields of :class:`bench.run.Protocol` (and of
  :class:`bench.identification_run.IdentificationProtocol`, ``protocol.type:
  identification``) / :class:`bench.protocol.sweep_spec.SweepProtocol`;
- ``report``, ``paths``, and the top level of ``model`` and ``dataset``: the union of the
  keys of the files of that group in ``configs/``;
- every node with a ``_target_`` (``model.embedder``, ``dataset.loader``, aligners,
  transforms): the keyword parameters of the target's signature (targets outside
  ``bench.*`` are not looked at here; :func:`bench.cli.instantiate_bench` refuses them);
- ``dataset.loader.groups.<group>`` of the synthetic population: the fields of
  :class:`bench.synthetic.generator.GroupSpec`.

Free-form nodes (``dataset.calibration``, ``protocol.reference_groups`` ...) are not
checked. Every refusal is a :class:`~bench.errors.ConfigError` whose one-line message
names the key and, where one is close (:func:`difflib.get_close_matches`), the key the
user probably meant.
"""

from __future__ import annotations

import inspect
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError
from bench.files import paths_as_references
from bench.suggest import did_you_mean

__all__ = [
    "CONFIG_DIR",
    "check_group_option",
    "group_options",
    "RUNTIME_KEYS",
    "RUNTIME_PATHS",
    "did_you_mean",
    "unknown_key",
    "validate_config",
    "check_override_keys",
    "recorded_config",
]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

#: Top-level keys that say how a run is executed on this machine, not what is measured:
#: kept out of the config recorded in ``metrics.json`` (so reruns are byte-identical).
RUNTIME_KEYS = ("progress", "overwrite", "hydra", "shard", "allow_dirty_tree")
#: ``paths`` entries that say where a run writes (results) and caches (embeddings): left out of
#: the recorded config, and strings under them written as ``${paths.<key>}/...``.
#: ``paths.data_dir`` stays recorded (where the data came from; fvbench-verify rebuilds the manifest).
RUNTIME_PATHS = ("results_dir", "cache_dir")

#: Keys Hydra's ``instantiate`` reads itself.
_HYDRA_SPECIAL = {"_target_", "_args_", "_recursive_", "_convert_", "_partial_"}

#: Config groups whose selected file lands under its own key (``dataset: frl_london`` -> ``dataset.*``).
_PACKAGED_GROUPS = {
    "fvbench": ("dataset", "model", "detector", "protocol", "report", "paths", "scenario"),
    "sweep": ("dataset", "model", "detector", "transforms", "report", "paths"),
}
#: Groups of ``@package _global_`` files: selected by name, they add no key of their own.
_GLOBAL_GROUPS = {"fvbench": ("experiment", "debug", "local"), "sweep": ("experiment_sweep", "local")}


def unknown_key(path: str, key: str, valid: Iterable[str], where: str = "") -> ConfigError:
    """The one-line refusal of an unknown config key ``path`` (last component ``key``)."""
    valid = sorted(map(str, valid))
    hint = did_you_mean(key, valid)
    place = f" ({where})" if where else ""
    tail = f" Valid keys there: {valid}" if hint else f"; valid keys there: {valid}"
    return ConfigError(f"unknown config key {path!r}{place}{hint}{tail}")


def _file_keys(group: str) -> set[str]:
    keys: set[str] = set()
    for f in sorted((CONFIG_DIR / group).glob("*.yaml")):
        node = OmegaConf.load(f)
        if isinstance(node, DictConfig):
            keys |= {str(k) for k in node.keys() if k != "defaults"}
    return keys


def _primary_keys(app: str) -> set[str]:
    node = OmegaConf.load(CONFIG_DIR / f"{'fvbench' if app == 'fvbench' else 'sweep'}.yaml")
    return {str(k) for k in node.keys() if k != "defaults"} | set(_PACKAGED_GROUPS[app])


def _dataclass_keys(cls: Any) -> set[str]:
    return {f.name for f in fields(cls)}


def _section_keys(app: str, section: str) -> set[str] | None:
    """Known keys directly under a top-level ``section`` (None: not checked statically)."""
    if section == "protocol":  # verification or identification (protocol.type); the dataclass refuses the other's keys
        from bench.protocol.identification import IdentificationProtocol
        from bench.protocol.verification import Protocol

        return _dataclass_keys(Protocol) | _dataclass_keys(IdentificationProtocol)
    if section == "sweep":
        from bench.protocol.sweep_spec import SweepProtocol

        return _dataclass_keys(SweepProtocol)
    if section in ("report", "paths", "model", "dataset", "detector"):
        return _file_keys(section)
    if section == "scenario":  # issue #14: the parameters of a Scenario node (configs/scenario/)
        from bench.protocol.scenario import Scenario

        return set(inspect.signature(Scenario).parameters) | {"_target_"}
    return None


def _target_params(target: str) -> tuple[set[str], bool, Any] | None:
    """Keyword parameters of a registered factory (bench/registry.py); None for any other name.

    Nothing outside the registry is imported here: an unregistered ``_target_`` is refused,
    with the valid names, by :func:`bench.cli.instantiate_bench` before anything is built.
    """
    from bench.registry import FACTORIES, resolve_factory

    if not isinstance(target, str) or target not in FACTORIES:
        return None
    try:
        obj = resolve_factory(target)
    except ConfigError:  # instantiate_bench reports it with its reason
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    open_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    names = {n for n, p in sig.parameters.items() if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
    return names, open_kw, obj


def _check_target_node(node: Any, path: str) -> None:
    """Check a node (and everything below it) whose keys are a target's keyword arguments."""
    if isinstance(node, list):
        for i, v in enumerate(node):
            _check_target_node(v, f"{path}[{i}]")
        return
    if not isinstance(node, dict):
        return
    if "_target_" not in node:
        for k, v in node.items():
            _check_target_node(v, f"{path}.{k}")
        return
    found = _target_params(node["_target_"])
    if found is None:
        return
    names, open_kw, obj = found
    if not open_kw:
        valid = names | _HYDRA_SPECIAL
        for k in node:
            if k not in valid:
                raise unknown_key(f"{path}.{k}", k, sorted(names), where=f"a parameter of {node['_target_']}")
    from bench.synthetic.generator import GroupSpec, SyntheticPopulation

    for k, v in node.items():
        if k == "_target_":
            continue
        if obj is SyntheticPopulation and k == "groups" and isinstance(v, dict):
            spec = _dataclass_keys(GroupSpec)
            for g, params in v.items():
                if isinstance(params, dict):
                    for pk in params:
                        if pk not in spec:
                            raise unknown_key(f"{path}.groups.{g}.{pk}", pk, spec, where="a synthetic group parameter")
            continue
        _check_target_node(v, f"{path}.{k}")


def _missing_keys(node: Any, prefix: str) -> list[str]:
    """Keys whose value is ``???``, found without resolving interpolations (an
    interpolation to a missing value is not reported again)."""
    from omegaconf import ListConfig

    out: list[str] = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            path = f"{prefix}.{k}" if prefix else str(k)
            if OmegaConf.is_missing(node, k):
                out.append(path)
            elif not OmegaConf.is_interpolation(node, k):
                out += _missing_keys(node._get_node(k), path)
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            if OmegaConf.is_missing(node, i):
                out.append(f"{prefix}[{i}]")
            elif not OmegaConf.is_interpolation(node, i):
                out += _missing_keys(node._get_node(i), f"{prefix}[{i}]")
    return out


def _missing(cfg: DictConfig) -> None:
    """Refuse ``???`` (mandatory) values with one line that says what to add."""
    missing = [m for m in _missing_keys(cfg, "") if not m.startswith("hydra.")]
    if not missing:
        return
    hints = {
        "model.embedder.weights_path": "the .onnx file of your model, e.g. model.embedder.weights_path=/path/to/model.onnx",
        "dataset.manifest": "your CSV or Parquet table, one row per image, e.g. dataset.manifest=my_set/manifest.csv (README: Bring your own data)",
        "dataset.root": "the folder of subject folders, e.g. dataset.root=my_set/images (README: Bring your own data)",
        "dataset.subjects": "the per-subject attribute table, e.g. dataset.subjects=my_set/subjects.csv",
    }
    key = missing[0]
    hint = hints.get(key, f"add {key}=<value> to the command line or the config")
    more = f" (also missing: {missing[1:]})" if len(missing) > 1 else ""
    raise ConfigError(f"{key} is required and not set: {hint}{more}")


def validate_config(cfg: DictConfig, app: str = "fvbench") -> None:
    """Refuse a composed config with a missing required value or an unknown key anywhere.

    Parameters
    ----------
    cfg : DictConfig
        The composed config (``hydra`` node ignored).
    app : {"fvbench", "sweep"}
        Which primary config it was composed from.

    Raises
    ------
    ConfigError
        ``"unknown config key 'report.min_group_subject'; did you mean
        'min_group_subjects'? ..."``, or ``"model.embedder.weights_path is required ..."``.
    """
    _missing(cfg)
    plain = _resolve(cfg)
    top = _primary_keys(app)
    for key, value in plain.items():
        if key == "hydra":
            continue
        if key not in top:
            raise unknown_key(str(key), str(key), top - {"hydra"}, where="top level")
        known = _section_keys(app, key)
        if known is None or not isinstance(value, dict):
            continue
        for k in value:
            if k not in known:
                raise unknown_key(f"{key}.{k}", str(k), known)
        if key == "model":
            _check_target_node(value.get("embedder"), "model.embedder")
        elif key == "dataset":
            _check_target_node(value.get("loader"), "dataset.loader")
        elif key == "scenario":  # issue #14: configs/scenario/ (a Scenario node)
            _check_target_node(value, "scenario")
        elif key == "detector":  # the detector= group (configs/detector/), also reached through model.embedder.aligner
            _check_target_node(value.get("detector"), "detector.detector")
        elif key == "sweep" and isinstance(value.get("geometry"), dict):
            from bench.acquisition.transforms import FaceGeometryLocator

            _check_target_node({"_target_": f"{FaceGeometryLocator.__module__}.{FaceGeometryLocator.__qualname__}", **value["geometry"]}, "sweep.geometry")
    if app == "sweep" and isinstance(plain.get("transforms"), dict):
        for name, spec in plain["transforms"].items():
            if isinstance(spec, dict):
                for k in spec:
                    if k not in ("transform", "strengths"):
                        raise unknown_key(f"transforms.{name}.{k}", str(k), ["strengths", "transform"])
                _check_target_node(spec.get("transform"), f"transforms.{name}.transform")


_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                "--config-dir", "-cd", "--info", "-i", "--experimental-rerun", "--shell-completion", "-sc"}


def group_options(group: str) -> list[str]:
    """The options of config group ``group``: the yaml files of ``configs/<group>/``
    (sub-folders as ``sub/name``), sorted."""
    root = CONFIG_DIR / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def check_group_option(group: str, override: Any) -> None:
    """Refuse ``group=option`` when ``option`` is not a file of ``configs/<group>/``.

    Hydra's own answer is a multi-line error listing its search path (absolute paths of
    the user's machine); this is the one-line answer with the nearest option. ``null``
    (which Hydra cannot take from the command line) is refused with the ``~group`` form;
    choice sweeps (``model=a,b``) have each option checked; other sweep forms (ranges,
    globs) are left to Hydra.

    Raises
    ------
    ConfigError
        ``"unknown scenario 'id_documnt'; did you mean 'id_document'? valid: [...]"``.
    """
    valid = group_options(group)
    if override.is_sweep_override():
        if not override.is_choice_sweep():
            return
        values = list(override.sweep_string_iterator())
    else:
        value = override.value()
        if value is None:  # Hydra would answer with a traceback
            raise ConfigError(f"{group}=null: Hydra cannot select no option on the command line; "
                              f"leave {group}= out or write ~{group} to drop it")
        values = [value]
    for v in values:
        if not isinstance(v, str):
            raise ConfigError(f"{group}={v!r}: expected the name of a file of configs/{group}/; valid: {valid}")
        if v not in valid:
            hint = did_you_mean(v, valid)
            raise ConfigError(f"unknown {group} {v!r}{hint}{' valid' if hint else '; valid'}: {valid}")


def check_override_keys(argv: list[str], app: str = "fvbench") -> None:
    """Check command-line overrides of existing keys (``key=value``) before Hydra does.

    Hydra answers an unknown ``key=value`` with "Key 'key' is not in struct ... use
    +key=value"; this check names the key the user probably meant instead. Only the
    levels known without composing are checked here (top level; the keys directly under
    ``protocol``/``sweep``/``report``/``paths``/``model``/``dataset``); deeper keys and
    every ``+key`` are checked by :func:`validate_config` after composition.

    Raises
    ------
    ConfigError
        For the first unknown key.
    """
    args: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in _VALUE_FLAGS:
            skip = True
            continue
        if a.startswith("-"):
            continue
        args.append(a)
    if not args:
        return
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        overrides = OverridesParser.create().parse_overrides(args)
    except Exception:  # noqa: BLE001 - a syntax error is Hydra's to report
        return
    groups = set(_PACKAGED_GROUPS[app]) | set(_GLOBAL_GROUPS[app])
    top = _primary_keys(app)
    extra_dirs = any(a in ("--config-dir", "-cd") or a.startswith(("--config-dir=", "hydra.searchpath", "+hydra.searchpath", "++hydra.searchpath"))
                     for a in argv)  # options may come from another config folder: Hydra checks them
    deep = []
    for o in overrides:
        if o.is_delete() or o.package is not None:
            continue
        if not extra_dirs and o.key_or_group in groups and o.key_or_group != "local":
            check_group_option(o.key_or_group, o)
        if o.is_add() or o.is_force_add():
            continue
        parts = o.key_or_group.split(".")
        if parts[0] == "hydra" or "/" in o.key_or_group or (len(parts) == 1 and parts[0] in groups):
            continue  # Hydra's own settings and nested group selections (hydra/launcher=joblib)
        if parts[0] not in top:
            raise unknown_key(o.key_or_group, parts[0], (top | groups) - {"hydra"}, where=f"in override {o.input_line!r}")
        if len(parts) >= 2:
            known = _section_keys(app, parts[0])
            if known is not None and parts[1] not in known:
                raise unknown_key(".".join(parts[:2]), parts[1], known, where=f"in override {o.input_line!r}")
        if len(parts) >= 3:
            deep.append(o)
    if deep:
        _check_deep_overrides(args, deep, app)


def _check_deep_overrides(args: list[str], deep: list[Any], app: str) -> None:
    """Keys three or more levels down (``model.embedder.batch_size``) depend on the chosen
    config files: compose without them, then look each one up in the composed config."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    lines = {o.input_line for o in deep}
    if GlobalHydra.instance().is_initialized():
        return  # inside a running Hydra app (tests): validate_config checks after composition
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="fvbench" if app == "fvbench" else "sweep", overrides=[a for a in args if a not in lines])
    except Exception:  # noqa: BLE001 - any other problem is Hydra's to report, in its own words
        return
    for o in deep:
        parts = o.key_or_group.split(".")
        node: Any = cfg
        for depth, key in enumerate(parts):
            if not isinstance(node, DictConfig):
                break
            if key not in node:
                here = ".".join(parts[:depth])
                valid = {str(k) for k in node.keys()}
                target = node.get("_target_") if "_target_" in node else None
                found = _target_params(str(target)) if target else None
                if found is not None:
                    names, open_kw, _ = found
                    if open_kw:
                        break
                    valid |= names
                if key in valid:
                    break  # a real parameter the file leaves at its default: Hydra's "use +" advice is right
                raise unknown_key(f"{here}.{key}", key, sorted(valid - {"_target_"}), where=f"in override {o.input_line!r}")
            node = node._get_node(key) if not OmegaConf.is_interpolation(node, key) else None


def _resolve(cfg: DictConfig) -> dict:
    """The resolved config as plain data; an interpolation that fails is one ConfigError line."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"config key {key}: {str(err).splitlines()[0]}") from None


def recorded_config(cfg: DictConfig | Mapping) -> dict:
    """The resolved config as recorded in ``metrics.json``: run-time details left out.

    ``progress``, ``overwrite`` and ``hydra`` say how a run executes, and
    ``paths.results_dir`` / ``paths.cache_dir`` where it writes and caches: none of them
    changes a number. They are dropped, and any other string under those two folders
    (e.g. ``model.embedder.cache_dir``) is written ``${paths.cache_dir}/...``, so a rerun
    on a cold or warm cache, into another results folder, with or without progress bars,
    records byte-identical JSON, free of the user's own cache and results locations.
    ``paths.data_dir`` stays (the dataset's root is recorded under ``dataset.loader``).

    Raises
    ------
    ConfigError
        An interpolation that cannot be resolved.
    """
    plain = _resolve(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    paths = dict(plain.get("paths") or {})
    roots = {k: paths[k] for k in RUNTIME_PATHS if k in paths}
    out = {k: paths_as_references(v, roots) for k, v in plain.items() if k not in RUNTIME_KEYS and k != "paths"}
    if "paths" in plain:
        out["paths"] = {k: v for k, v in paths.items() if k not in RUNTIME_PATHS}
    return out


#: The only objects Hydra itself may build for fvbench from a ``hydra.*`` node (callbacks,
#: launchers, sweepers). Hydra instantiates these before fvbench's own code runs, so the
#: factory registry (bench/registry.py) cannot guard them: :func:`check_hydra_targets` does.
HYDRA_TARGETS = frozenset({
    "bench.multirun.JobSummary",
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
})


def _hydra_node_targets(node: Any, where: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k == "_target_":
                found.append((where, str(v)))
            else:
                found += _hydra_node_targets(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _hydra_node_targets(v, f"{where}[{i}]")
    return found


def check_hydra_targets(argv: list[str], config_dirs: Iterable[Path] = ()) -> None:
    """Refuse ``hydra.*`` nodes that would make Hydra build an object fvbench did not ship.

    Hydra instantiates ``hydra.callbacks``, ``hydra.launcher`` and ``hydra.sweeper`` itself,
    before fvbench's code runs, so a ``_target_`` there (from an override such as
    ``+hydra.callbacks.x._target_=...`` or from a config file with a ``hydra:`` section)
    could run any function. Allowed: :data:`HYDRA_TARGETS` (our job-summary callback and
    the launcher/sweeper plugins fvbench documents, chosen with ``hydra/launcher=...``).

    Parameters
    ----------
    argv : list of str
        The command line (flags are skipped; ``--config-dir``/``-cd`` directories are scanned too).
    config_dirs : iterable of Path
        Config folders whose YAML files are scanned (the package's ``configs/``).

    Raises
    ------
    ConfigError
        Naming the override or file and the refused ``_target_``, with the allowed ones.
    """
    import yaml

    allowed = f"allowed: {sorted(HYDRA_TARGETS)}"
    dirs = [Path(d) for d in config_dirs]
    it = iter(argv)
    for a in it:
        if a in ("--config-dir", "-cd", "--config-path", "-cp"):
            d = next(it, None)
            if d:
                dirs.append(Path(d))
            continue
        if a.startswith(("--config-dir=", "--config-path=")):
            dirs.append(Path(a.split("=", 1)[1]))
            continue
        if a in _VALUE_FLAGS or a.startswith("-"):
            continue
        key = a.split("=", 1)[0].lstrip("+~")
        if not key.startswith("hydra"):
            continue
        if key in ("hydra", "hydra.callbacks", "hydra.launcher", "hydra.sweeper", "hydra.searchpath") or \
                key.startswith("hydra.callbacks.") or key.endswith("_target_") or "_target_" in a:
            raise ConfigError(f"override {a!r}: Hydra would build objects from it before fvbench's checks run; "
                              f"hydra callbacks, launcher/sweeper targets and search paths cannot be set on the command line "
                              f"(choose a launcher with hydra/launcher=parallel|local|slurm; {allowed})")
    for d in dirs:
        for path in sorted(Path(d).rglob("*.yaml")) if Path(d).is_dir() else []:
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue  # unreadable files are Hydra's to report
            if not isinstance(doc, Mapping) or not isinstance(doc.get("hydra"), Mapping):
                continue
            hydra_node = doc["hydra"]
            if "searchpath" in hydra_node:
                raise ConfigError(f"{path}: hydra.searchpath would load configs from elsewhere; not allowed in fvbench configs")
            for where, target in _hydra_node_targets(hydra_node, "hydra"):
                if target not in HYDRA_TARGETS:
                    raise ConfigError(f"{path}: {where}._target_ {target!r} is not an object fvbench lets Hydra build; {allowed}")
