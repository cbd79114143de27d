"""Result folders are written whole or not at all.

A run writes into a hidden staging folder beside ``results/<run_name>/`` and swaps it
in only when every file is written, so a crash, a Ctrl-C or two concurrent runs of
the same name never leave a folder that mixes files of different runs, and files of
an earlier run (e.g. figures of an attribute no longer reported) never survive. The
last file written is ``files.sha256``: the SHA-256 of every published file, which
``fvbench-verify`` checks (an edited ``report.md`` or a figure from another run is a
mismatch).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bench.errors import ConfigError

__all__ = ["check_writable", "staged_folder", "write_file_manifest", "read_file_manifest", "MANIFEST_FILE", "UNPUBLISHED"]

MANIFEST_FILE = "files.sha256"

#: Files a run may write that are never published (git-ignored) and so not listed.
UNPUBLISHED = ("scores.parquet", "histograms.npz", "embeddings.npz", "embeddings_WARNING.txt")


def check_writable(results_dir: Path) -> None:
    """Fail before any computing if ``results_dir`` cannot hold a result folder.

    Raises
    ------
    ConfigError
        Naming the folder, when it cannot be created or written.
    """
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        probe = results_dir / f".fvbench-write-test-{uuid.uuid4().hex}"
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        raise ConfigError(
            f"results folder {str(results_dir)!r} is not writable ({err.strerror or err}); "
            "set paths.results_dir (or FVBENCH_RESULTS_DIR) to a writable folder"
        ) from err


#: Short hash of this machine's name: stages of runs on other machines (shared results folder) are never touched.
_HOST = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_dead_stages(out_dir: Path) -> None:
    """Remove staging / old folders of ``out_dir`` left by a run of this machine that was killed (SIGKILL, power loss).

    A run killed between moving the published folder aside and moving the new one in
    leaves only ``.<name>.old-...``: it is moved back, so no published folder is lost.

    Only ``.<name>.partial-<host>-<pid>-<tag>`` and ``.<name>.old-...`` folders whose host is this
    machine and whose process no longer exists; never the published folder itself.
    """
    parent = out_dir.parent
    if not parent.is_dir():
        return
    for kind in ("partial", "old"):
        for p in parent.glob(f".{glob.escape(out_dir.name)}.{kind}-{_HOST}-*-*"):
            pid = p.name[len(f".{out_dir.name}.{kind}-{_HOST}-"):].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)) and p.is_dir() and not p.is_symlink():
                if kind == "old" and not out_dir.exists():  # killed between the two renames: put the old folder back
                    os.replace(p, out_dir)
                else:
                    shutil.rmtree(p, ignore_errors=True)


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``out_dir`` in one rename.

    On an exception (including KeyboardInterrupt) the staging folder is removed and
    ``out_dir`` is left as it was. A process killed outright (SIGKILL) cannot clean up:
    its staging folder is removed by the next run of the same name on this machine.
    """
    out_dir = Path(out_dir)
    _remove_dead_stages(out_dir)
    tag = f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage = out_dir.with_name(f".{out_dir.name}.partial-{tag}")
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = out_dir.with_name(f".{out_dir.name}.old-{tag}")
    for _ in range(50):  # another run may be swapping the same name right now
        try:
            if out_dir.exists():
                os.replace(out_dir, old)
            os.replace(stage, out_dir)
            break
        except OSError:
            time.sleep(0.1)
    else:
        shutil.rmtree(stage, ignore_errors=True)
        raise ConfigError(f"could not move the finished results into {str(out_dir)!r} (another process keeps replacing it)")
    shutil.rmtree(old, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _published(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST_FILE and p.name not in UNPUBLISHED
    )


def write_file_manifest(folder: Path) -> Path:
    """Write ``files.sha256`` (``sha256  relative/path`` lines, sorted) for a finished folder."""
    folder = Path(folder)
    lines = [f"{_sha256(p)}  {p.relative_to(folder).as_posix()}" for p in _published(folder)]
    path = folder / MANIFEST_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def read_file_manifest(folder: Path) -> tuple[list[str], list[str]]:
    """Compare a folder with its ``files.sha256``.

    Returns
    -------
    problems : list of str
        Files changed, missing, or present but not listed.
    listed : list of str
        The files the manifest lists.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return [f"{MANIFEST_FILE} is missing (folder not written by this fvbench version, or edited)"], []
    expected = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, _, name = line.partition("  ")
            expected[name] = digest
    problems = []
    for name, digest in expected.items():
        p = folder / name
        if not p.is_file():
            problems.append(f"{name}: listed but missing")
        elif _sha256(p) != digest:
            problems.append(f"{name}: changed since the run wrote it")
    for p in _published(folder):
        rel = p.relative_to(folder).as_posix()
        if rel not in expected:
            problems.append(f"{rel}: not written by this run (left over or added)")
    return problems, sorted(expected)
