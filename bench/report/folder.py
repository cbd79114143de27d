"""Result folders: confined names, written whole or not at all, never lost.

Names
    Every command that writes a result folder (``fvbench``, ``fvbench-sweep``,
    ``fvbench-calibrate``, ``fvbench-power``) passes the user's name through
    :func:`check_run_name` / :func:`result_folder` before any computing: one or more
    ``/``-separated components of ``[A-Za-z0-9_][A-Za-z0-9_.+=,@-]*`` (no ``.``/``..``,
    no hidden names, no absolute paths, no ``${...}``), at most
    :data:`RUN_NAME_MAX_CHARS` characters, and the folder must resolve (symlinks
    included) inside the results folder.

Replacing
    An existing folder is replaced only when it records the same experiment
    (:func:`check_replace`: the recorded config equals the new one apart from the
    run-time keys :data:`RUNTIME_KEYS`), or when the user asks for it on purpose
    (``overwrite=true``, ``--force``).

Writing
    A run writes into a hidden staging folder ``.<name>.partial-<pid>-<tag>`` beside
    ``results/<name>/`` and swaps it in only when every file is written
    (:func:`staged_folder`): the old folder is first renamed to
    ``.<name>.old-<pid>-<tag>``, the staging folder renamed into place, then the old
    one deleted. A crash, a Ctrl-C or two concurrent runs of the same name never leave a
    folder that mixes files of different runs, and files of an earlier run (e.g.
    figures of an attribute no longer reported) never survive. A process killed between
    the two renames leaves the old result only under its hidden name: the next command
    that touches the name restores it (:func:`recover_folder`), and removes staging
    folders of dead processes (which may hold ``scores.parquet``).

The last file written is ``files.sha256``: the SHA-256 of every published file, which
``fvbench-verify`` checks (an edited ``report.md`` or a figure from another run is a
mismatch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from bench.errors import ConfigError
from bench.files import paths_as_references, process_running, storage_error

__all__ = [
    "check_writable",
    "check_run_name",
    "check_raw_name",
    "result_folder",
    "check_output_path",
    "check_replace",
    "experiment_config",
    "recover_folder",
    "staged_folder",
    "write_file_manifest",
    "read_file_manifest",
    "MANIFEST_FILE",
    "UNPUBLISHED",
    "RUNTIME_KEYS",
    "RUN_NAME_MAX_CHARS",
]

log = logging.getLogger(__name__)

MANIFEST_FILE = "files.sha256"

#: Files a run may write that are never published (git-ignored) and so not listed.
UNPUBLISHED = ("scores.parquet", "histograms.npz", "embeddings.npz", "embeddings_WARNING.txt",
               "identification_search.parquet", "identification_gallery.parquet")  # as .gitignore: a clean clone lacks them

#: Longest accepted result name (characters, all components); file systems allow 255 bytes per
#: component, and the staging name adds about 30.
RUN_NAME_MAX_CHARS = 150

#: Top-level config keys that say *how* a run is executed, not *what* it measures: they are
#: ignored when deciding whether an existing folder holds the same experiment.
RUNTIME_KEYS = ("progress", "overwrite", "paths", "hydra", "run_name", "shard", "allow_dirty_tree")

_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,@-]*")
_HIDDEN = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)-(?P<tag>[0-9a-f]{8})$")


def check_writable(results_dir: Path, *, key: str = "paths.results_dir") -> None:
    """Fail before any computing if ``results_dir`` cannot hold a result folder.

    Raises
    ------
    ConfigError
        Naming the folder, when it cannot be created or written (a file in its place,
        read-only, no space for a folder entry).
    """
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        probe = results_dir / f".fvbench-write-test-{uuid.uuid4().hex}"
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        raise ConfigError(
            f"folder {str(results_dir)!r} ({key}) is not writable ({err.strerror or err}); "
            f"set {key} to a writable folder"
        ) from err


def check_raw_name(raw: Any, *, key: str = "run_name") -> None:
    """Refuse resolver calls in the *unresolved* value of a name (``${oc.env:HOME}``).

    Hydra resolves interpolations before a command sees the value, so a name like
    ``${oc.env:HOME}`` would arrive as ``/home/me`` (refused anyway) or ``${oc.env:USER}``
    as ``alice`` (an environment value that would be published). Plain references to
    other config nodes (``${dataset.name}__${model.name}``, the default) are allowed; the
    resolved value is checked by :func:`check_run_name`.

    Raises
    ------
    ConfigError
        If ``raw`` contains ``${`` with a resolver (``:``) or nested interpolation.
    """
    if not isinstance(raw, str) or "${" not in raw:
        return
    for ref in re.findall(r"\$\{([^}]*)\}", raw) or [raw]:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", ref):
            raise ConfigError(
                f"{key}={raw!r}: a name may refer to other config values (e.g. ${{dataset.name}}) "
                "but not call resolvers such as oc.env; write the name out"
            )


def check_run_name(name: Any, *, key: str = "run_name") -> str:
    """Validate a result name; return it unchanged.

    A name is one or more ``/``-separated components, each matching
    ``[A-Za-z0-9_][A-Za-z0-9_.+=,@-]*`` (so no ``.``, ``..``, hidden names, spaces,
    backslashes or control characters), at most :data:`RUN_NAME_MAX_CHARS` characters.

    Raises
    ------
    ConfigError
        Naming ``key``, the value and the rule it breaks.
    """
    text = "" if name is None else str(name)
    rule = (
        "a name inside the results folder: letters, digits and _ . + = , @ - in components separated by /, "
        "each starting with a letter, digit or _"
    )
    if not text.strip():
        raise ConfigError(f"{key} is empty; expected {rule}")
    if "${" in text:
        raise ConfigError(f"{key}={text!r} contains an unresolved interpolation; expected {rule}")
    if len(text) > RUN_NAME_MAX_CHARS:
        raise ConfigError(f"{key} is {len(text)} characters long; at most {RUN_NAME_MAX_CHARS} allowed")
    if text.startswith("/") or text.startswith("~") or re.match(r"^[A-Za-z]:", text):
        raise ConfigError(f"{key}={text!r} is an absolute path; expected {rule}")
    for part in text.split("/"):
        if part in ("", ".", ".."):
            raise ConfigError(f"{key}={text!r} has the path component {part!r}; expected {rule}")
        if not _COMPONENT.fullmatch(part):
            raise ConfigError(f"{key}={text!r}: component {part!r} is not allowed; expected {rule}")
    return text


def result_folder(results_dir: str | os.PathLike[str], name: Any, *, key: str = "run_name") -> Path:
    """``results_dir / name`` after :func:`check_run_name`, confined to ``results_dir``.

    Raises
    ------
    ConfigError
        A bad name, or a folder that resolves outside ``results_dir`` (a symlinked
        component), or a name equal to the results folder itself.
    """
    text = check_run_name(name, key=key)
    root = Path(results_dir)
    out = root / text
    real_root = root.resolve()
    real_parent = out.parent.resolve()
    if real_parent != real_root and real_root not in real_parent.parents:
        raise ConfigError(
            f"{key}={text!r}: {str(out.parent)!r} resolves to {str(real_parent)!r}, outside the results folder "
            f"{str(real_root)!r} (a symbolic link?); choose another name"
        )
    return out


def check_output_path(path: Any, *, key: str) -> Path:
    """Validate an output folder given as a path on the command line (``--out``, ``--figure-dir``).

    Unlike a result *name*, an explicit path may be absolute (the user chose the
    location, as with ``paths.results_dir``), but it must name a folder of its own: no
    empty value, no ``.``/``..`` component (``--out .`` would write into the current
    folder, ``..`` climbs out of it), no ``${``, no NUL, at most 4096 characters, and its
    last component must pass :func:`check_run_name`'s component rule.

    Raises
    ------
    ConfigError
        Naming ``key``, the value and the rule.
    """
    text = "" if path is None else str(path)
    if not text.strip():
        raise ConfigError(f"{key} is empty; expected a folder path")
    if "${" in text or "\x00" in text or len(text) > 4096:
        raise ConfigError(f"{key}={text[:100]!r}: expected a plain folder path")
    parts = text.replace("\\", "/").split("/")
    if any(part in (".", "..") for part in parts) or parts[-1] == "" and len(parts) > 1 and not any(parts[:-1]):
        raise ConfigError(f"{key}={text!r}: a '.' or '..' component, or the root folder, is not allowed; name a folder of its own")
    last = [p for p in parts if p][-1] if any(parts) else ""
    check_run_name(last, key=f"{key} (last component)")
    return Path(text).expanduser()


def _pid_alive(pid: int) -> bool:
    """Whether the writer of a hidden folder still runs; our own leftovers (an earlier job in this process) are finished."""
    return pid != os.getpid() and process_running(pid)


def recover_folder(out_dir: str | os.PathLike[str]) -> list[str]:
    """Repair what an interrupted write of ``out_dir`` left behind; return what was done.

    - ``out_dir`` missing and a ``.<name>.old-*`` of a dead process present: the old
      result was renamed away and the new one never moved in; the newest such folder
      is renamed back to ``out_dir``.
    - Other ``.<name>.old-*`` and ``.<name>.partial-*`` folders of dead processes are
      deleted (a partial folder may hold ``scores.parquet``). Folders of processes
      still running (another run of the same name) are left alone.

    Nothing outside ``out_dir.parent`` is touched, and only names of the two patterns.
    """
    out_dir = Path(out_dir)
    parent = out_dir.parent
    done: list[str] = []
    if not parent.is_dir():
        return done
    mine: dict[str, list[Path]] = {"old": [], "partial": []}
    for p in parent.iterdir():
        m = _HIDDEN.match(p.name)
        if m and m["name"] == out_dir.name and not p.is_symlink() and p.is_dir() and not _pid_alive(int(m["pid"])):
            mine[m["kind"]].append(p)
    olds = sorted(mine["old"], key=lambda p: p.stat().st_mtime, reverse=True)
    if olds and not out_dir.exists() and not out_dir.is_symlink():
        os.replace(olds[0], out_dir)
        log.warning("restored %s from %s (an earlier run was interrupted while replacing it)", out_dir, olds[0].name)
        done.append(f"restored {out_dir.name} from {olds[0].name}")
        olds = olds[1:]
    for p in [*olds, *mine["partial"]]:
        shutil.rmtree(p, ignore_errors=True)
        done.append(f"removed {p.name}")
    if len(done) > (1 if done and done[0].startswith("restored") else 0):
        log.info("cleaned leftovers of interrupted runs beside %s: %s", out_dir, done)
    return done


def experiment_config(config: Mapping[str, Any], runtime_keys: tuple[str, ...] = RUNTIME_KEYS) -> dict:
    """The part of a recorded config that defines the experiment.

    ``config`` minus ``runtime_keys``, with every string that starts with one of the
    config's own ``paths`` values (e.g. ``dataset.loader.root`` =
    ``<paths.data_dir>/frl_london``) written relative to it (``${paths.data_dir}/frl_london``),
    so the same experiment run from another checkout or data location compares equal.
    """
    roots = dict(config.get("paths") or {})
    return {k: paths_as_references(v, roots) for k, v in dict(config).items() if k not in runtime_keys}


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            sub = f"{where}.{k}" if where else str(k)
            if k not in a or k not in b:
                out.append(sub)
            else:
                out += _differences(a[k], b[k], sub)
        return out
    return [] if a == b else [where or "<root>"]


def check_replace(
    out_dir: str | os.PathLike[str],
    *,
    config: Mapping[str, Any],
    overwrite: bool,
    record: str = "metrics.json",
    how: str = "overwrite=true",
    key: str = "run_name",
    runtime_keys: tuple[str, ...] = RUNTIME_KEYS,
) -> None:
    """Refuse to replace ``out_dir`` unless it holds the same experiment (or ``overwrite``).

    Same experiment: ``out_dir/record`` is a JSON object whose ``"config"`` equals
    ``config`` once :data:`RUNTIME_KEYS` (progress, overwrite, paths, hydra, run_name)
    are removed from both. A missing or empty folder is always writable.

    Parameters
    ----------
    out_dir : path
        The folder about to be replaced.
    config : mapping
        The new run's recorded config (resolved, plain data).
    overwrite : bool
        The user asked to replace whatever is there (never a file or a symlink).
    record : str
        File holding the recorded config (``metrics.json``, ``sweep.json``, ...).
    how : str
        How the user overwrites on purpose, quoted in the message.
    key : str
        The option naming the folder, quoted in the message.

    Raises
    ------
    ConfigError
        ``out_dir`` is a file or a symbolic link; or it is not a result folder of this
        kind, or records a different experiment, and ``overwrite`` is false. The message
        names the folder, up to five differing keys and ``how``.
    """
    out = Path(out_dir)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ConfigError(f"{str(out)!r} ({key}) exists and is not a folder; remove it or choose another name")
    if not out.exists() or not any(out.iterdir()):
        return
    if overwrite:
        log.warning("replacing %s (%s)", out, how)
        return
    try:
        recorded = json.loads((out / record).read_text(encoding="utf-8"))
        old = recorded["config"]
        if not isinstance(old, dict):
            raise TypeError("config is not an object")
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"{str(out)!r} ({key}) exists and is not a result folder of this command (no readable {record}); "
            f"refusing to replace it. Choose another name, or pass {how} to replace it on purpose"
        ) from None
    diff = _differences(experiment_config(old, runtime_keys), experiment_config(dict(config), runtime_keys))
    if diff:
        shown = ", ".join(diff[:5]) + (f" and {len(diff) - 5} more" if len(diff) > 5 else "")
        raise ConfigError(
            f"{str(out)!r} ({key}) holds a different experiment (config differs in: {shown}); refusing to replace it. "
            f"Choose another name, or pass {how} to replace it on purpose"
        )


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``out_dir``.

    Leftovers of interrupted writes of the same name are repaired first
    (:func:`recover_folder`). On an exception (including KeyboardInterrupt) the staging
    folder is removed and ``out_dir`` is left as it was; an ``OSError`` (disk full,
    read-only) becomes a one-line :class:`~bench.errors.StorageError` naming the file.

    Raises
    ------
    StorageError
        Writing or swapping failed; ``out_dir`` holds the previous result.
    """
    out_dir = Path(out_dir)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage = out_dir.with_name(f".{out_dir.name}.partial-{tag}")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        recover_folder(out_dir)
        stage.mkdir()
    except OSError as err:
        raise storage_error(err, "the result folder") from err
    try:
        yield stage
    except OSError as err:
        shutil.rmtree(stage, ignore_errors=True)
        raise storage_error(err, "the result folder", f"{str(out_dir)!r} is unchanged") from err
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _swap(stage, out_dir, out_dir.with_name(f".{out_dir.name}.old-{tag}"))


def _swap(stage: Path, out_dir: Path, old: Path) -> None:
    """Move ``stage`` to ``out_dir`` through ``old``; on failure put ``old`` back."""
    last: OSError | None = None
    for _ in range(50):  # another run may be swapping the same name right now
        try:
            if out_dir.exists() or out_dir.is_symlink():
                os.replace(out_dir, old)
            os.replace(stage, out_dir)
            break
        except OSError as err:
            last = err
            time.sleep(0.1)
    else:
        shutil.rmtree(stage, ignore_errors=True)
        if old.exists() and not out_dir.exists():
            os.replace(old, out_dir)
        assert last is not None
        raise storage_error(last, f"the finished results into {str(out_dir)!r}", "the previous result is unchanged")
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
