"""Shared fixtures: where the consented London set lives (read in place, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def london_root() -> Path:
    """``$FVBENCH_DATA_DIR/frl_london`` or ``../shared/datasets/frl_london`` beside the repo."""
    base = os.environ.get("FVBENCH_DATA_DIR")
    return (Path(base) if base else REPO.parent / "shared" / "datasets") / "frl_london"


@pytest.fixture(scope="session")
def london() -> Path:
    root = london_root()
    if not (root / "london_info.csv").is_file():
        pytest.skip(f"FRL London set not found at {root} (set FVBENCH_DATA_DIR, or fetch it: "
                    f"fvbench-download frl_london --dest {root}); it is read in place, never copied")
    return root


# Hypothesis: no example database (a failing example saved in .hypothesis/ on one checkout
# must never turn a later `make test` red) and derandomized, so every run draws the same
# examples. A developer exploring locally can opt in: HYPOTHESIS_PROFILE=dev pytest ...
try:
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile("ci", database=None, derandomize=True)
    _hyp_settings.register_profile("dev", max_examples=500)
    _hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is a test extra; tests that need it import it themselves
    pass
