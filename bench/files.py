"""File-system helpers shared by every layer: storage errors, live writers, paths written relative to roots.

The lowest layer of the package (it imports only :mod:`bench.errors`), so the
embedding cache (:mod:`bench.models.cache`), the result folders
(:mod:`bench.report.folder`) and the config checks (:mod:`bench.config_schema`) share
one implementation of each.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from typing import Any

from bench.errors import StorageError

__all__ = ["loads_json", "paths_as_references", "process_running", "storage_error"]


def loads_json(text: str | bytes) -> Any:
    """Parse untrusted JSON text; every failure is one :class:`ValueError` line.

    Beyond :func:`json.loads`'s own errors this turns the two that escape its
    ``JSONDecodeError`` into the same kind: nesting deeper than the interpreter's
    recursion limit (``RecursionError``) and an integer longer than Python's
    int-string conversion limit (4300 digits; ``ValueError``). Bytes are decoded as
    UTF-8 first (a decoding error is a ``ValueError`` too).

    Raises
    ------
    ValueError
        One line saying why the text is not acceptable JSON.
    """
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except RecursionError:
        raise ValueError("JSON nested deeper than the parser's recursion limit") from None
    except ValueError as err:  # e.g. an integer past the int-string conversion limit
        raise ValueError(" ".join(str(err).split("; use sys.")[0].split())[:200]) from None


def storage_error(err: OSError, what: str, keep: str = "") -> StorageError:
    """One-line :class:`~bench.errors.StorageError` for an ``OSError`` while writing.

    Parameters
    ----------
    err : OSError
        The error (its ``filename`` and ``strerror`` are named).
    what : str
        What was being written (e.g. ``"the result folder"``).
    keep : str
        What is still intact, appended as ``"; <keep>"``.
    """
    where = err.filename if err.filename is not None else "?"
    hint = ""
    if err.errno == errno.ENOSPC:
        hint = " (free some space, or point the path elsewhere)"
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = " (not writable: choose a writable location)"
    msg = f"cannot write {what}: {str(where)!r}: {err.strerror or err}{hint}"
    return StorageError(msg + (f"; {keep}" if keep else ""))


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 probe, POSIX ``kill(2)``).

    A process owned by another user counts as running (``EPERM``); any other error
    (no such process, an invalid id) as not running. Used to tell the temporary files
    and folders of a live writer (named with its process id) from those a killed run
    left behind; callers decide what their own process id means.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def paths_as_references(value: Any, paths: Mapping[str, Any]) -> Any:
    """``value`` with every string under one of ``paths`` written ``${paths.<key>}/...``.

    Parameters
    ----------
    value : Any
        A plain config (dicts, lists, scalars); walked recursively, not modified.
    paths : mapping of str to Any
        ``paths.<key>`` -> folder; non-string and empty (or ``/``) values are ignored.
        A string equal to a folder, or below it (``folder + "/..."``), is rewritten;
        the longest matching folder wins.

    Returns
    -------
    Any
        A new structure of the same shape (dicts and lists copied; other values as given).
    """
    roots = sorted(
        ((k, str(v).rstrip("/")) for k, v in paths.items() if isinstance(v, str) and v.strip("/")),
        key=lambda kv: -len(kv[1]),
    )

    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, str):
            for k, root in roots:
                if v == root or v.startswith(root + "/"):
                    return "${paths." + k + "}" + v[len(root):]
        return v

    return norm(value)
