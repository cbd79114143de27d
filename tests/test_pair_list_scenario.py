"""A pair list records the deployment scenario of the run that wrote it, and a rerun under
another scenario (or none) is refused (fresh-user review): the ``id_document`` run's
``pairs.csv.gz`` rerun without ``scenario=id_document`` compared undegraded images and
reported FNMR 0/97 where the scenario run had 27/93 (dlib, FRL London)."""

from __future__ import annotations

import gzip
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bench.errors import ConfigError
from bench.protocol.pair_list import (PAIR_LIST_FILE, load_for_dataset, read_pair_list,
                                      write_pair_list, write_run_pair_list)
from bench.protocol.pair_list_scenario import SCENARIO_UNNAMED, check_pair_list_scenario

REPO = Path(__file__).resolve().parents[1]


class _Design:
    source = "pair_list"
    listed = None

    def __init__(self, words: str) -> None:
        self._resolved = SimpleNamespace(design=words)

    def arrays(self):
        return np.array([0, 0]), np.array([1, 2]), np.array([True, False])


def _result(scenario: str | None):
    table = pd.DataFrame({"path": ["a/1.jpg", "b/1.jpg", "b/2.jpg"]})
    return SimpleNamespace(pairs=_Design("reference x probe: every enrolment image against every probe image"), comparisons=object(),
                           manifest=SimpleNamespace(table=table), protocol=SimpleNamespace(max_nonmated=None, seed=0),
                           dataset_info={"name": "d", "manifest_sha256": "0" * 64},
                           scenario=None if scenario is None else {"name": scenario})


@pytest.mark.parametrize("scenario,recorded", [("id_document", "id_document"), (None, "none")])
def test_the_writer_records_the_scenario_and_the_reader_reads_it(tmp_path, scenario, recorded):
    write_run_pair_list(_result(scenario), tmp_path)
    head = gzip.decompress((tmp_path / PAIR_LIST_FILE).read_bytes()).decode().splitlines()
    assert f"# scenario={recorded}" in head
    assert read_pair_list(tmp_path / PAIR_LIST_FILE).scenarios == (recorded,)


def test_rerun_without_the_recorded_scenario_is_refused_in_one_line(tmp_path):
    write_run_pair_list(_result("id_document"), tmp_path)
    pl = read_pair_list(tmp_path / PAIR_LIST_FILE)
    with pytest.raises(ConfigError) as err:
        check_pair_list_scenario(pl, None)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / PAIR_LIST_FILE) in msg
    assert "scenario=id_document run" in msg and "add scenario=id_document" in msg
    with pytest.raises(ConfigError, match="this run has scenario=cctv_watchlist: add scenario=id_document"):
        check_pair_list_scenario(pl, "cctv_watchlist")
    check_pair_list_scenario(pl, "id_document")  # the same scenario: accepted


def test_scenario_run_given_a_list_written_without_one_is_refused(tmp_path):
    write_run_pair_list(_result(None), tmp_path)
    pl = read_pair_list(tmp_path / PAIR_LIST_FILE)
    check_pair_list_scenario(pl, None)
    with pytest.raises(ConfigError, match=r"written by a run without a scenario; this run has scenario=id_document: drop scenario="):
        check_pair_list_scenario(pl, "id_document")


def test_lists_recording_nothing_are_accepted(tmp_path):
    write_pair_list(tmp_path / "third_party.csv.gz", ["a/1.jpg"], ["b/1.jpg"], np.array([False]))
    pl = read_pair_list(tmp_path / "third_party.csv.gz")
    assert pl.scenarios == (None,)
    check_pair_list_scenario(pl, None)
    check_pair_list_scenario(pl, "id_document")


def test_load_for_dataset_checks_before_anything_else(tmp_path):
    write_run_pair_list(_result("id_document"), tmp_path)
    with pytest.raises(ConfigError, match="add scenario=id_document"):
        load_for_dataset(str(tmp_path / PAIR_LIST_FILE), object(), scenario=None)


def test_published_scenario_list_without_the_name_is_refused_without_a_scenario():
    path = REPO / "results" / "frl_london_dlib_id_document" / PAIR_LIST_FILE
    if not path.is_file():
        pytest.skip("published results/frl_london_dlib_id_document/pairs.csv.gz absent")
    pl = read_pair_list(path)
    assert pl.scenarios[0] in (SCENARIO_UNNAMED, "id_document")  # written before / after the name was recorded
    with pytest.raises(ConfigError, match=r"add scenario="):
        check_pair_list_scenario(pl, None)
