"""Provenance recorded in every result: code version, package versions, the config.

Kept free of timestamps and host names so that a rerun of the same config on the
same code and data gives a byte-identical ``metrics.json``; and free of the user's
machine: no absolute path and no environment value is published
(:func:`recorded_config`, :func:`scrub_paths`). Paths are recorded relative to their
configured root (``<data_dir>/frl_london``, ``<cache_dir>``, ``<results_dir>/run``);
an absolute path under no root is replaced by its hash (``<path sha256:...>``), an
``${oc.env:NAME}`` value by ``<env:NAME>``.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import bench

__all__ = ["package_versions", "code_version", "recorded_config", "scrub_paths", "PATH_ROOTS"]

#: Config keys under ``paths`` that are machine-specific roots, recorded as ``<name>``.
PATH_ROOTS = ("data_dir", "results_dir", "cache_dir")

_PACKAGES = (
    "numpy", "scipy", "pandas", "pyarrow", "scikit-learn", "matplotlib", "hydra-core", "omegaconf",
    "torch", "torchvision", "dlib-bin", "face_recognition_models", "facenet-pytorch", "onnxruntime",
    "opencv-python-headless", "Pillow", "pooch",
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that can change a number (None if absent)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def code_version() -> dict[str, str | bool | None]:
    """fvbench version and, when run from a git checkout, the commit and whether it was dirty."""
    info: dict[str, str | bool | None] = {"fvbench": bench.__version__, "git_commit": None, "git_dirty": None}
    root = Path(bench.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            status = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "bench", "configs"],
                capture_output=True, text=True, timeout=10,
            )
            info["git_dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# ----------------------------------------------------------------------------- no paths, no environment
_ENV = re.compile(r"\$\{\s*oc\.env\s*:\s*([A-Za-z_][A-Za-z0-9_]*)[^${}]*\}")
_OTHER_MACHINE = re.compile(r"\$\{\s*(oc\.env|hydra)\s*:")  # what _ENV did not catch (nested, hydra:runtime.cwd)
#: An absolute POSIX path token: a "/" at the start or after a space, quote, bracket, "=" or ",".
_ABS_PATH = re.compile(r"(?:(?<=^)|(?<=[\s'\"(\[=,]))/(?!/)[^\s'\",)\]]+")  # not "//" (URLs)


def _redact_interpolations(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _redact_interpolations(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact_interpolations(v) for v in node]
    if isinstance(node, str) and "${" in node:
        node = _ENV.sub(lambda m: f"<env:{m.group(1)}>", node)
        if _OTHER_MACHINE.search(node):
            return "<machine-specific value>"
    return node


def recorded_config(cfg: Any) -> dict:
    """The config as published: resolved, with machine-specific values replaced.

    ``paths.data_dir``, ``paths.results_dir`` and ``paths.cache_dir`` become
    ``<data_dir>``, ``<results_dir>``, ``<cache_dir>`` before resolution, so that
    every value built from them reads e.g. ``<data_dir>/frl_london``; each
    ``${oc.env:NAME,...}`` becomes ``<env:NAME>`` and a ``${hydra:...}`` value
    ``<machine-specific value>``. Other interpolations resolve as in the run.

    Parameters
    ----------
    cfg : DictConfig or dict
        The composed config (unresolved).

    Returns
    -------
    dict
        Plain data, safe to publish; pass it through :func:`scrub_paths` as well
        to catch absolute paths given literally.

    Raises
    ------
    omegaconf.errors.OmegaConfBaseException
        If an interpolation does not resolve (the run itself would have failed).
    """
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=False) if not isinstance(cfg, dict) else dict(cfg)
    plain = _redact_interpolations(plain)
    if isinstance(plain.get("paths"), dict):
        plain["paths"] = {k: (f"<{k}>" if k in PATH_ROOTS else v) for k, v in plain["paths"].items()}
    return OmegaConf.to_container(OmegaConf.create(plain), resolve=True)


def _path_forms(p: str | Path) -> list[str]:
    forms = {str(p), os.path.abspath(os.path.expanduser(str(p)))}
    try:
        forms.add(str(Path(p).expanduser().resolve()))
    except (OSError, RuntimeError):
        pass
    return [f.rstrip("/") for f in forms if f.startswith(("/", "~")) and len(f.rstrip("/")) > 1]


def _hash_path(m: re.Match) -> str:
    return f"<path sha256:{hashlib.sha256(m.group(0).encode()).hexdigest()[:12]}>"


def scrub_paths(obj: Any, roots: Mapping[str, str | Path] | None = None) -> Any:
    """Replace machine-specific paths in every string of ``obj`` (dicts, lists, strings).

    In order: each configured root (every spelling: as given, absolute, resolved) by
    ``<name>``; the working directory by ``.``; the home directory by ``~``; any
    remaining absolute path token by ``<path sha256:12 hex>`` (the same path always
    gives the same token, so two results can still be compared).

    Parameters
    ----------
    obj : any
        JSON-like data; non-string leaves are returned unchanged.
    roots : mapping of str to path, optional
        e.g. ``{"data_dir": ..., "results_dir": ..., "cache_dir": ...}``.

    Returns
    -------
    Same structure with scrubbed strings.
    """
    subs: list[tuple[str, str]] = []
    for name, p in (roots or {}).items():
        if p is not None:
            subs += [(f, f"<{name}>") for f in _path_forms(p)]
    subs += [(f, ".") for f in _path_forms(os.getcwd())]
    subs += [(f, "~") for f in _path_forms(os.path.expanduser("~"))]
    subs.sort(key=lambda kv: -len(kv[0]))

    def one(s: str) -> str:
        for old, new in subs:
            if old in s:
                s = re.sub(re.escape(old) + r"(?=/|$|[\s'\",)\]])", new.replace("\\", "\\\\"), s)
        return _ABS_PATH.sub(_hash_path, s)

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        if isinstance(x, str):
            return one(x)
        return x

    return walk(obj)
