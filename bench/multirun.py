"""Hydra multiruns on any launcher: a record per job, a summary at the end, and the code-version guard.

A grid is one command; Hydra's launchers run its jobs (issue #15)::

    fvbench -m hydra/launcher=joblib hydra.launcher.n_jobs=2 experiment=a,b dataset=x,y
    fvbench -m hydra/launcher=submitit_local 'shard=range(0,4)' ...
    fvbench -m hydra/launcher=slurm experiment=a,b          # configs/hydra/launcher/slurm.yaml

Each job writes its own result folder (``results/<run_name>/``) and, through
:class:`JobSummary` (a Hydra callback registered in ``configs/fvbench.yaml``), a small
record ``fvbench_job.json`` into its Hydra job folder (``outputs/multirun/<time>/<n>_<run_name>/``):
status, result folder, wall time, the git commit the job ran and its headline rates.
When the multirun ends, the submitting process prints one line per job and an aggregate
line, and writes ``multirun_summary.json`` beside the job folders.

Pitfalls handled here (README "Grids and launchers"):

- A job refused with a :class:`~bench.errors.BenchError` (bad config, missing data) is
  recorded as failed and the other jobs still run; the command then exits 1.
- Queued jobs must not run code edited after submission: the submitting process records
  the git trees of ``bench/`` and ``configs/`` (and whether they had uncommitted changes)
  in the environment the launchers pass on (``FVBENCH_SUBMITTED_CODE``); a job whose
  checkout differs refuses to run. Each job's record names the commit it ran. On SLURM a
  dirty tree is refused at submission unless ``allow_dirty_tree=true``.
- ``hydra/launcher`` set inside a swept config group (``-m experiment=a,b`` where ``a``
  sets the launcher) is ignored by Hydra, which picks the launcher before the sweep; a
  job whose own config names another launcher than the one running it logs a warning.
  Set the launcher on the command line or in ``configs/local/default.yaml``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

__all__ = ["JobSummary", "job_guard", "job_record", "summary_lines", "CODE_ENV", "LAUNCHER_ENV", "MULTIRUN_ENV", "JOB_FILE",
           "SUMMARY_FILE"]

log = logging.getLogger(__name__)

CODE_ENV = "FVBENCH_SUBMITTED_CODE"
LAUNCHER_ENV = "FVBENCH_LAUNCHER"
MULTIRUN_ENV = "FVBENCH_MULTIRUN_ID"
JOB_FILE = "fvbench_job.json"
SUMMARY_FILE = "multirun_summary.json"

#: Set by :meth:`JobSummary.on_multirun_end` in the submitting process: jobs that failed.
FAILED_JOBS: list[str] = []


def _code_tag() -> str:
    from bench.report.provenance import code_version

    v = code_version()
    if not v.get("git_commit"):
        return "unknown"
    return f"{v['git_commit']}{'+dirty' if v.get('git_dirty') else ''}"


def _code_state() -> str:
    """What a job's results depend on: the git trees of ``bench/`` and ``configs/`` (+dirty), or "unknown".

    Unlike the commit, this does not change when only documentation or tests are committed.
    """
    import subprocess

    import bench
    from bench.report.provenance import code_version

    root = Path(bench.__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD:bench", "HEAD:configs"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    trees = ":".join(out.stdout.split())
    return f"{trees}{'+dirty' if code_version().get('git_dirty') else ''}"


def _launcher_target(cfg: Any) -> str:
    try:
        return str(cfg.hydra.launcher._target_)
    except Exception:  # noqa: BLE001 - no launcher node (plain run)
        return ""


def job_guard(cfg: Any) -> None:
    """Refuse to run a multirun job whose code differs from the submitted code.

    Raises
    ------
    bench.errors.ConfigError
        When the checkout's commit or dirty state is not what was recorded at submission.
    """
    from bench.errors import ConfigError

    submitted = os.environ.get(CODE_ENV)
    if submitted and submitted != "unknown":
        now = _code_state()
        if now != submitted:
            raise ConfigError(
                f"code changed since this multirun was submitted (bench/ and configs/ trees: submitted {submitted}, now {now}); "
                "resubmit, or check out the submitted commit"
            )
    running = os.environ.get(LAUNCHER_ENV)
    mine = _launcher_target(cfg)
    if running and mine and running != mine:
        log.warning("this job's config names launcher %s but the multirun runs on %s: hydra/launcher set inside a swept "
                    "config is ignored; set it on the command line or in configs/local/default.yaml", mine, running)


def _headline(out_dir: Path) -> str:
    """Overall FMR and FNMR at the primary threshold of a finished run folder, or ''."""
    try:
        m = json.loads((out_dir / "metrics.json").read_text())
        primary = m["protocol"]["primary_threshold"]
        cells = []
        for metric in ("FMR", "FNMR"):
            r = next(r for r in m["per_group"] if r["group"] == "(all)" and r["metric"] == metric and r["threshold_name"] == primary)
            cells.append(f"{metric} {r['errors']}/{r['comparisons']}")
        return f"{primary}: " + ", ".join(cells)
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return ""


def job_record(num: Any, overrides: list[str], result: Any, wall_s: float) -> dict:
    """The ``fvbench_job.json`` of one job.

    ``result``: what the task function returned (a dict with ``status`` ``ok``/``failed``,
    ``out`` and ``error``) or the exception Hydra caught.
    """
    rec: dict[str, Any] = {"job": num, "overrides": list(overrides), "wall_s": round(float(wall_s), 2), "code": _code_tag(),
                           "multirun": os.environ.get(MULTIRUN_ENV, "")}
    if isinstance(result, dict):
        rec.update(result)
    elif isinstance(result, BaseException):
        rec.update(status="failed", error=f"{type(result).__name__}: {result}")
    else:
        rec.update(status="ok" if result is None else str(result))
    if rec.get("status") == "ok" and rec.get("out") and not rec.get("headline"):
        rec["headline"] = _headline(Path(rec["out"]))
    return rec


def summary_lines(records: list[dict], wall_s: float | None = None) -> list[str]:
    """One line per job (sorted by job number) and an aggregate line."""
    lines = []
    sets = [set(r.get("overrides") or []) for r in records]
    common = set.intersection(*sets) if len(sets) > 1 else set()  # show what differs between jobs
    for r in sorted(records, key=lambda r: int(r.get("job", 0))):
        what = r.get("out") or ""
        tail = (r.get("headline") or "") if r.get("status") == "ok" else r.get("error", "")
        own = " ".join(o for o in r.get("overrides") or [] if o not in common)
        lines.append(f"job {r.get('job')} {r.get('status')} {r.get('wall_s', 0):.1f} s {own}"
                     f"{' -> ' + what if what else ''}{' | ' + tail if tail else ''}")
    ok = sum(r.get("status") == "ok" for r in records)
    busy = sum(float(r.get("wall_s") or 0) for r in records)
    agg = f"multirun: {len(records)} job(s), {ok} ok, {len(records) - ok} failed; sum of job times {busy:.1f} s"
    if wall_s is not None:
        agg += f", wall {wall_s:.1f} s"
    return [*lines, agg]


class JobSummary(Callback):
    """Hydra callback: per-job records, the end-of-multirun summary and the submission guard.

    Registered in ``configs/fvbench.yaml`` / ``configs/sweep.yaml`` under
    ``hydra.callbacks.fvbench_jobs``. Holds no state that must travel to a job (each
    process instantiates its own), so it works with every launcher.
    """

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._job_t0 = 0.0

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()
        code = _code_state()
        target = _launcher_target(config)
        if "slurm" in target.lower() and code.endswith("+dirty") and not bool(config.get("allow_dirty_tree", False)):
            print("fvbench: error: uncommitted changes in bench/ or configs/: queued SLURM jobs would run whatever the checkout "
                  "holds when they start; commit first, or pass allow_dirty_tree=true", file=sys.stderr)
            sys.exit(2)
        os.environ[CODE_ENV] = code  # inherited by joblib workers and submitit jobs
        os.environ[LAUNCHER_ENV] = target
        os.environ[MULTIRUN_ENV] = uuid.uuid4().hex  # records of earlier multiruns in the same folder are not this one's
        FAILED_JOBS.clear()

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        self._job_t0 = time.perf_counter()

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        try:
            hc = HydraConfig.get()
        except ValueError:
            return
        if str(hc.mode) != "RunMode.MULTIRUN":
            return
        result = job_return.return_value if str(job_return.status) == "JobStatus.COMPLETED" else job_return._return_value
        rec = job_record(hc.job.num, list(hc.overrides.task), result, time.perf_counter() - self._job_t0)
        out = Path(hc.runtime.output_dir) / JOB_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rec, indent=2) + "\n")

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        records, mine = [], os.environ.get(MULTIRUN_ENV, "")
        for p in sorted(sweep_dir.rglob(JOB_FILE)):
            try:
                rec = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict) and rec.get("multirun", "") == mine:
                records.append(rec)
        lines = summary_lines(records, time.perf_counter() - self._t0)
        for line in lines:
            print(line)
        (sweep_dir / SUMMARY_FILE).write_text(json.dumps({"jobs": records, "summary": lines[-1]}, indent=2) + "\n")
        FAILED_JOBS[:] = [str(r.get("job")) for r in records if r.get("status") != "ok"]
        # Aggregate across the jobs' result folders: the leaderboard (fvbench-aggregate) hooks in here once it exists,
        # e.g. write_leaderboard([Path(r["out"]) for r in records if r.get("status") == "ok"], sweep_dir).
