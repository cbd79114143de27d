"""Provenance recorded in every result: code version, package versions, environment.

Kept free of timestamps and host names so that a rerun of the same config on the
same code and data gives a byte-identical ``metrics.json``.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import bench

__all__ = ["package_versions", "code_version"]

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
