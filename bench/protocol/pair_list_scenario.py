"""The deployment scenario a pair list records, and the refusal to rerun it under another.

A scenario run (``scenario=<name>``, :mod:`bench.protocol.scenario`) degrades enrolment and
probe images before comparing them; the ``pairs.csv.gz`` it writes
(:func:`bench.protocol.pair_list.write_run_pair_list`) records ``# scenario=<name>`` (runs
without a scenario: ``# scenario=none``), and :func:`bench.protocol.pair_list.load_for_dataset`
refuses a rerun whose scenario differs, before any embedding.
"""

from __future__ import annotations

from typing import Any, Sequence

from bench.errors import ConfigError

__all__ = ["SCENARIO_UNNAMED", "recorded_scenario", "check_pair_list_scenario"]

#: :attr:`PairList.scenarios` of a list written by a scenario run before the name was recorded
#: (its ``# design=reference x probe ...`` line says a scenario formed the pairs, not which).
SCENARIO_UNNAMED = "<scenario, name not recorded>"
_REFERENCE_X_PROBE = "design=reference x probe"


def recorded_scenario(comments: Sequence[str]) -> str | None:
    """The scenario a pair list's ``#`` lines record: the value of a ``# scenario=<name>``
    line (``none``: written without a scenario), else :data:`SCENARIO_UNNAMED` for a
    reference x probe design line, else None (not recorded, e.g. a third-party list)."""
    for c in comments:
        body = c.lstrip("#").strip()
        if body.startswith("scenario="):
            return body.split("=", 1)[1].strip()[:100]
    if any(c.lstrip("#").strip().startswith(_REFERENCE_X_PROBE) for c in comments):
        return SCENARIO_UNNAMED
    return None


def check_pair_list_scenario(pl: Any, scenario: str | None) -> None:
    """Refuse rerunning a pair list under another deployment scenario than the run that wrote it.

    A scenario run degrades enrolment and probe images (bench/protocol/scenario.py); its
    ``pairs.csv.gz`` rerun without the scenario would compare undegraded images and report
    other error rates under the same pairs (e.g. FNMR 0/97 instead of 27/93 for
    ``id_document`` with dlib on FRL London). Lists that record no scenario are accepted.

    Parameters
    ----------
    pl : bench.protocol.pair_list.PairList
        Its ``files`` and ``scenarios`` are read.
    scenario : str or None
        The name of this run's scenario (``scenario=<name>``), None without one.

    Raises
    ------
    ConfigError
        One line naming the file, the scenario it records and the fix.
    """
    for name, rec in zip(pl.files, pl.scenarios or (None,) * len(pl.files)):
        if rec is None or rec == scenario:
            continue
        if rec == "none":
            if scenario is None:
                continue
            raise ConfigError(f"protocol.pair_list {name!r} was written by a run without a scenario; this run has "
                              f"scenario={scenario}: drop scenario=, or use the pairs.csv.gz of a scenario={scenario} run")
        if rec == SCENARIO_UNNAMED:
            if scenario is not None:
                continue
            raise ConfigError(f"protocol.pair_list {name!r} was written by a scenario run (reference x probe design); without "
                              "the scenario the images are not degraded and the rates differ: add scenario=<name> (its report names it)")
        now = f"scenario={scenario}" if scenario is not None else "no scenario"
        raise ConfigError(f"protocol.pair_list {name!r} was written by a scenario={rec!s} run; this run has {now}: "
                          f"add scenario={rec!s} to rerun those comparisons under the same conditions")
