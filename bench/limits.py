"""Refuse absurd requests before anything is allocated or computed.

A count from a config or a command line (``protocol.bootstrap_replicates=1e9``,
``seed=-1``, ``fvbench-power --images-per-subject 0``) is checked here with one line
that names the key, the value and the accepted range, instead of failing minutes later
with a NumPy traceback or an out-of-memory kill. Ranges are generous: they only exclude
values that cannot mean anything (negative seeds, zero images) or that no machine this
harness targets can hold (:func:`check_memory`).
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real

from bench.errors import ConfigError

__all__ = ["check_int", "check_seed", "check_memory", "memory_budget_bytes", "MAX_SEED", "MAX_BOOTSTRAP_REPLICATES"]

#: Largest seed accepted (numpy's SeedSequence takes any non-negative integer; 2**63 - 1
#: keeps seeds representable in every integer column we write).
MAX_SEED = 2**63 - 1

#: Largest bootstrap replicate count: percentile intervals are stable to about 1e-3 by
#: B = 10,000 (Efron & Tibshirani 1993, ch. 19); 100,000 leaves a margin.
MAX_BOOTSTRAP_REPLICATES = 100_000


def check_int(name: str, value: object, lo: int, hi: int | None = None, why: str = "") -> int:
    """Return ``value`` as an int if it is an integer in ``[lo, hi]``; refuse it otherwise.

    Integer-valued floats (``1e3`` from a YAML or command line) are accepted; booleans,
    fractions, NaN and strings are refused.

    Raises
    ------
    ConfigError
        ``<name> must be an integer in [lo, hi] (why), got <value>``.
    """
    rng = f"[{lo:,}, {hi:,}]" if hi is not None else f">= {lo:,}"
    msg = f"{name} must be an integer {rng}" + (f" ({why})" if why else "") + f", got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (Integral, Real)):
        raise ConfigError(msg)
    if isinstance(value, Real) and not isinstance(value, Integral):
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise ConfigError(msg)
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        raise ConfigError(msg)
    return v


def check_seed(name: str, value: object) -> int:
    """A seed: an integer in ``[0, 2**63 - 1]`` (NumPy refuses negative seeds).

    Raises
    ------
    ConfigError
    """
    return check_int(name, value, 0, MAX_SEED, "a non-negative integer seeds numpy.random")


def memory_budget_bytes() -> int:
    """Half the machine's physical memory (bytes); 8 GiB where it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def check_memory(what: str, n_bytes: float, hint: str = "") -> None:
    """Refuse a request whose main allocation would exceed :func:`memory_budget_bytes`.

    Parameters
    ----------
    what : str
        The request, e.g. ``"protocol.bootstrap_replicates=1000000 over 1,020 subjects"``.
    n_bytes : float
        Estimated size of its largest allocation.
    hint : str
        What to change.

    Raises
    ------
    ConfigError
    """
    budget = memory_budget_bytes()
    if n_bytes > budget:
        raise ConfigError(
            f"{what} needs about {n_bytes / 2**30:,.1f} GiB, more than half of this machine's memory "
            f"({budget / 2**30:,.1f} GiB)" + (f"; {hint}" if hint else "")
        )
