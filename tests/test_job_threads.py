"""Threads per parallel job: onnxruntime sessions follow OMP_NUM_THREADS that joblib sets in its workers (issue #15)."""

from __future__ import annotations

import pytest

from bench.job_threads import onnx_threads


@pytest.mark.parametrize(("configured", "env", "expected"), [
    (3, "1", 3),        # an explicit model setting wins
    (0, "1", 1),        # joblib's loky worker with n_jobs = cpu_count: one thread
    (0, "4", 4),
    (0, None, 0),       # nothing set: onnxruntime's default (one per physical core)
    (0, "0", 0), (0, "two", 0), (0, "-2", 0), (0, " 2 ", 2),
])
def test_onnx_threads(monkeypatch, configured, env, expected):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert onnx_threads(configured) == expected


def test_joblib_workers_get_one_thread_each_on_this_machine(monkeypatch):
    """The variable the ONNX models read is the one joblib's loky backend sets to cpu_count // n_jobs."""
    import os

    from joblib import Parallel, delayed

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    n = max(2, os.cpu_count() or 2)
    got = Parallel(n_jobs=n, backend="loky")(delayed(onnx_threads)(0) for _ in range(2))
    assert got == [max(1, (os.cpu_count() or 1) // n)] * 2
