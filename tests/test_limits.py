"""Absurd requests are refused with one line before anything is allocated (issue #9,
"Bounded memory"): ``protocol.bootstrap_replicates=1e9`` (today: a 400 GiB allocation),
``seed=-1`` (a NumPy traceback), ``fvbench-power --images-per-subject 0`` (an
OverflowError), ``--truth-draws 1e10`` (745 GiB), ``--subjects 1e6`` (2e12 comparisons).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.limits import check_int, check_memory, check_seed, memory_budget_bytes
from bench.synthetic.power import power_main
from bench.run import Protocol

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kw,msg", [
    ({"bootstrap_replicates": 1e9}, r"protocol.bootstrap_replicates must be an integer \[1, 100,000\] \(or null to skip the bootstrap\), got 1000000000.0"),
    ({"bootstrap_replicates": 2.5}, r"protocol.bootstrap_replicates must be an integer"),
    ({"seed": -1}, r"protocol.seed must be an integer \[0, .*\(a non-negative integer seeds numpy.random\), got -1"),
    ({"seed": 1.5}, r"protocol.seed must be an integer"),
    ({"seed": True}, r"protocol.seed must be an integer"),
    ({"max_nonmated": 0}, r"protocol.max_nonmated must be an integer >= 1 \(or null for all\), got 0"),
    # 1e400 on the command line is float('inf'): refused in one line, never int(inf) -> OverflowError
    ({"table_max_comparisons": float("inf")}, r"protocol.table_max_comparisons must be an integer >= 0 \(a non-negative count of comparisons\), got inf"),
    ({"table_max_comparisons": float("nan")}, r"protocol.table_max_comparisons must be an integer >= 0"),
    ({"table_max_comparisons": 2.5}, r"protocol.table_max_comparisons must be an integer >= 0"),
    ({"bootstrap_replicates": float("inf")}, r"protocol.bootstrap_replicates must be an integer \[1, 100,000\] \(or null to skip the bootstrap\), got inf"),
])
def test_absurd_protocol_values_are_refused(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        Protocol(**kw)


def test_integer_valued_floats_are_accepted():
    p = Protocol(bootstrap_replicates=1e3, seed=7.0)
    assert p.bootstrap_replicates == 1000 and isinstance(p.bootstrap_replicates, int) and p.seed == 7


def test_check_helpers():
    assert check_int("x", 5, 1, 10) == 5
    for bad in (0, 11, float("nan"), "5", None):
        with pytest.raises(ConfigError, match=r"^x must be an integer \[1, 10\], got "):
            check_int("x", bad, 1, 10)
    assert check_seed("s", 0) == 0
    check_memory("small", 1024)
    with pytest.raises(ConfigError, match=r"^big needs about .* GiB, more than half of this machine's memory .*; lower it$"):
        check_memory("big", memory_budget_bytes() + 1, "lower it")


def test_bootstrap_too_large_for_memory_is_refused_before_scoring(monkeypatch):
    from bench.synthetic.generator import SyntheticPopulation
    from bench.run import evaluate

    monkeypatch.setattr("bench.limits.memory_budget_bytes", lambda: 10_000)
    pop = SyntheticPopulation({"A": {"subjects": 20, "images_per_subject": 2, "identity_spread": 1.0, "image_noise": 0.5}}, seed=0)
    with pytest.raises(ConfigError, match=r"protocol.bootstrap_replicates=1,000 over 20 subjects needs about .*lower protocol.bootstrap_replicates"):
        evaluate(pop, None, Protocol(target_fmrs=[0.1]), cache_dir="unused", progress=False)


def test_cli_refuses_with_one_line_and_writes_nothing(tmp_path):
    for override, key in (("protocol.bootstrap_replicates=1e9", "protocol.bootstrap_replicates"), ("seed=-1", "protocol.seed")):
        proc = subprocess.run([sys.executable, "-m", "bench", "debug=smoke", override, f"paths.results_dir={tmp_path / 'r'}",
                               f"paths.cache_dir={tmp_path / 'c'}", f"hydra.run.dir={tmp_path / 'h'}"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.startswith(f"fvbench: error: protocol config: {key} must be an integer") or f"fvbench: error: {key} must be an integer" in proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,msg", [
    (["--images-per-subject", "0"], "--images-per-subject must be an integer [2, 1,000] (FNMR needs mated pairs), got 0"),
    (["--seed", "-1"], "--seed must be an integer [0, "),
    (["--replicates", "0"], "--replicates must be an integer [1, 100,000], got 0"),
    (["--bootstrap", "1000000000"], "--bootstrap must be an integer [1, 100,000], got 1000000000"),
    (["--truth-draws", "10000000000"], "--truth-draws 10,000,000,000 needs about"),
    (["--subjects", "1000000"], "gives 2,000,000,000,000 comparisons per simulated study"),
])
def test_power_refuses_absurd_designs_before_simulating(args, msg, capsys, tmp_path):
    assert power_main(["--target-fmr", "1e-3", "--fmr-ratio", "2", "--out", str(tmp_path / "p"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fvbench-power: ") and msg in err and err.count("\n") == 1
    assert not (tmp_path / "p").exists()
