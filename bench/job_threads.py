"""Threads per job when jobs run in parallel on one machine (issue #15).

joblib's loky workers (``hydra/launcher=joblib``) start with ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` ... set to ``cpu_count // n_jobs`` unless the
user set them, so numpy, torch and dlib do not oversubscribe the cores. onnxruntime ignores
those variables: a session with ``intra_op_num_threads = 0`` starts one thread per
physical core in every worker, i.e. ``n_jobs`` times too many. :func:`onnx_threads` gives the
ONNX models the same limit: an explicit ``intra_op_threads`` wins; else ``OMP_NUM_THREADS``
when it is a positive integer (set by joblib, by SLURM job scripts, or by the user); else 0
(onnxruntime's own default).
"""

from __future__ import annotations

import os

__all__ = ["onnx_threads"]


def onnx_threads(configured: int) -> int:
    """Intra-op threads for an onnxruntime session: ``configured`` if > 0, else ``OMP_NUM_THREADS`` if a positive integer, else 0.

    Parameters
    ----------
    configured : int
        The model config's ``intra_op_threads`` (0: not set).

    Returns
    -------
    int
        >= 0; 0 lets onnxruntime choose (one thread per physical core).
    """
    if int(configured) > 0:
        return int(configured)
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else 0
