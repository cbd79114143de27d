""""Did you mean" suggestions for misspelt names (config keys, columns, attributes)."""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = ["did_you_mean"]


def did_you_mean(key: str, valid: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest valid name, else ``""``.

    Closeness is :func:`difflib.get_close_matches` with its ratio cutoff 0.6 (e.g.
    ``run_nmae`` -> ``run_name``, ``gender`` -> ``face_gender``).
    """
    close = difflib.get_close_matches(str(key), sorted(map(str, valid)), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
