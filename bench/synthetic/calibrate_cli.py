"""Console script ``fvbench-calibrate``: fit the synthetic generator to a run, write its config and figure.

The method is described in :mod:`bench.synthetic.calibrate`; the figure is drawn by
:mod:`bench.synthetic.calibration_figure`.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Sequence

from bench.errors import BenchError, ConfigError, DataError
from bench.report.provenance import scrub_paths
from bench.synthetic.calibrate import __doc__ as calibrate_doc
from bench.synthetic.calibrate import calibrate, read_run, write_dataset_config
from bench.synthetic.calibration_figure import plot_calibration

__all__ = ["calibrate_main"]

log = logging.getLogger(__name__)


def _check_config_name(name: str) -> str:
    """``--name``: a result name (:func:`bench.report.folder.check_run_name`) that is also a config file name."""
    from bench.report.folder import check_run_name

    check_run_name(name, key="--name")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ConfigError(f"--name {name!r} must be letters, digits and underscores (it names a config file)")
    return name


def calibrate_main(argv: Sequence[str] | None = None) -> int:
    """Console script ``fvbench-calibrate``: fit, write the dataset config and the figure.

    Example::

        fvbench-calibrate results/frl_london_dlib --attribute face_eth \\
            --name synthetic_london_dlib --figure-dir results/calibration_frl_london_dlib
    """
    p = argparse.ArgumentParser(prog="fvbench-calibrate", description=calibrate_doc.split("\n\n")[0])
    p.add_argument("results_dir", help="results folder of a real run (needs scores.parquet and metrics.json)")
    p.add_argument("--attribute", default=None, help="attribute whose groups are fitted (default: the run's first)")
    p.add_argument("--name", default=None, help="dataset name (default: synthetic_<run_name>)")
    p.add_argument("--output", default=None, help="config path (default: configs/dataset/<name>.yaml)")
    p.add_argument("--force", action="store_true", help="replace an existing config file")
    p.add_argument("--figure-dir", default=None, help="folder for calibration.png and calibration.json (default: results/calibration_<run_name>)")
    p.add_argument("--min-subjects", type=int, default=5, help="smallest group fitted (default 5)")
    p.add_argument("--subjects-scale", type=float, default=1.0, help="subjects_scale written into the config (default 1)")
    p.add_argument("--draws", type=int, default=20_000, help="model draws per fit evaluation (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator draws (default 0)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar (default on; --no-progress)")
    p.add_argument("--dim", type=int, default=None, help="fix the effective dimension instead of fitting it")
    p.add_argument("--image-noise-sd", type=float, default=None, help="fix image_noise_sd instead of fitting it")
    p.add_argument("--no-figure", action="store_true", help="skip the figure (calibration.json is still written)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from bench.report.folder import check_output_path, check_replace, check_run_name, result_folder, staged_folder

    arguments = {k: v for k, v in vars(args).items() if k not in ("output", "force", "figure_dir", "no_figure")}
    try:
        # names and folders first, before reading or fitting anything
        if args.name is not None:
            _check_config_name(args.name)
        if args.figure_dir:
            check_output_path(args.figure_dir, key="--figure-dir")
        scores, metrics = read_run(args.results_dir)
        # the default names derive from the run name in metrics.json, which someone else may have written
        run = check_run_name(metrics.get("run_name") or Path(args.results_dir).name, key="run_name recorded in metrics.json")
        name = _check_config_name(args.name or f"synthetic_{run.replace('/', '_')}")
        out = Path(args.output) if args.output else Path("configs") / "dataset" / f"{name}.yaml"
        if out.exists() and not args.force:
            raise ConfigError(f"{out} exists; pass --force to replace it (the default demo is configs/dataset/synthetic.yaml)")
        if args.figure_dir:
            fig_dir = check_output_path(args.figure_dir, key="--figure-dir")
        else:
            fig_dir = result_folder(Path("results"), f"calibration_{run.replace('/', '_')}", key="--figure-dir")
        check_replace(fig_dir, config=arguments, overwrite=args.force, record="calibration.json", how="--force", key="--figure-dir")
        result = calibrate(
            scores, metrics, attribute=args.attribute, min_subjects=args.min_subjects, n_draws=args.draws, seed=args.seed,
            dim=args.dim, image_noise_sd=args.image_noise_sd, progress=args.progress,
        )
    except (DataError, ConfigError) as err:
        print(f"fvbench-calibrate: {err}", file=sys.stderr)
        return 2
    result.source["results_dir"] = scrub_paths(str(args.results_dir))
    write_dataset_config(result, out, name=name, subjects_scale=args.subjects_scale)
    try:
        with staged_folder(fig_dir) as stage:  # whole or not at all
            summary = {**result.summary(), "config": arguments}
            (stage / "calibration.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
            if not args.no_figure:
                plot_calibration(result, scores, stage / "calibration.png")
    except BenchError as err:
        print(f"fvbench-calibrate: {err}", file=sys.stderr)
        return 2
    print(f"fvbench-calibrate: wrote {out} and {fig_dir}")
    for label, f in result.groups.items():
        print(f"  {label}: identity_spread={f.identity_spread:.3f} image_noise={f.image_noise:.3f} "
              f"(W2 mated {f.w2_mated:.4f}, non-mated {f.w2_nonmated:.4f}; {f.subjects} subjects)")
    print(f"  dim={result.dim} image_noise_sd={result.image_noise_sd:.3f} score map delta_bar={result.score_map.dissimilarity_scale:.5f}")
    for label, why in result.excluded.items():
        print(f"  not fitted: {label} ({why})")
    return 0


if __name__ == "__main__":  # python -m bench.synthetic.calibrate_cli ...
    sys.exit(calibrate_main())
