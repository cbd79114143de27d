"""``fvbench-download``: fetch and verify datasets and model weights.

Usage::

    fvbench-download frl_london --dest DIR [--force] [--api-base URL] [--retries N] [--keep-archives] [--no-progress]
    fvbench-download MODEL [MODEL ...]       # model weights (bench.models.weights)
    fvbench-download --list                  # models and datasets

Also ``python -m bench.download ...``. A first argument naming a dataset in
:data:`DATASETS` runs that dataset's downloader; anything else goes to the weights
downloader (:func:`bench.models.weights.download_main`). Exit status 0 on success,
1 on a refused or failed download (one line on stderr), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from bench.errors import BenchError
from bench.suggest import did_you_mean

__all__ = ["DATASETS", "main"]

#: Datasets this command downloads: name -> one-line description.
DATASETS: dict[str, str] = {
    "frl_london": "Face Research Lab London Set v5, front views (figshare 5047666 v5, CC BY 4.0)",
}


def _frl_london(argv: list[str]) -> int:
    from bench.data import frl_london_download as D
    from bench.data.figshare import FIGSHARE_API

    parser = argparse.ArgumentParser(
        prog="fvbench-download frl_london",
        description=(
            f"Download the {DATASETS['frl_london']} from the figshare API, verify each file's size and MD5, "
            "and unpack it into DEST in the layout the frl_london loader reads."
        ),
    )
    parser.add_argument("--dest", required=True, help="dataset root to create, e.g. data/frl_london (must be empty or absent)")
    parser.add_argument("--api-base", default=FIGSHARE_API, help=f"figshare API base URL (default {FIGSHARE_API}; https, or http on loopback)")
    parser.add_argument("--force", action="store_true", help="replace an existing copy's neutral_front/, smiling_front/, london_info.csv and record")
    parser.add_argument("--retries", type=int, default=2, help="further attempts per file after a connection failure (default 2)")
    parser.add_argument("--keep-archives", action="store_true", help=f"keep the verified archives in DEST/{D.WORK_DIR_NAME}/")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown when stderr is a terminal)")
    args = parser.parse_args(argv)
    try:
        record, fetched = D.download_frl_london(
            args.dest, api_base=args.api_base, force=args.force, retries=args.retries, keep_archives=args.keep_archives,
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    except BenchError as err:
        print(f"fvbench-download: frl_london: {err}".replace("\n", " "), file=sys.stderr)
        return 1
    except OSError as err:  # the destination cannot be written (permissions, disk full): no traceback
        print(f"fvbench-download: frl_london: cannot write under {args.dest!r}: {err}".replace("\n", " "), file=sys.stderr)
        return 1
    if not fetched:
        print(f"frl_london: {args.dest} already holds article {record.get('article_id')} version {record.get('version')}; nothing to do")
        return 0
    for f in record["files"]:
        print(f"frl_london: {f['name']}  {f['size']} bytes  md5={f['md5']}  sha256={f['sha256']}  -> {f['unpacked_to']}")
    print(f"frl_london: installed in {args.dest} (record: {D.RECORD_NAME}); licence {record['licence']}: {record['licence_page']}")
    print(f"frl_london: cite {record['citation']} https://doi.org/{record['doi']}")
    print(f"frl_london: run with paths.data_dir=<folder holding frl_london/> or dataset.loader.root={shlex.quote(str(args.dest))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fvbench-download`` (see the module docstring); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: fvbench-download DATASET --dest DIR [...]   datasets: " + ", ".join(DATASETS), file=sys.stderr)
        print("       fvbench-download MODEL [MODEL ...] | --all | --list   (model weights)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "frl_london":
        return _frl_london(argv[1:])
    if any(a == "--dest" or a.startswith("--dest=") for a in argv):  # the dataset form with a misspelt name
        name = next((a for a in argv if not a.startswith("-")), "")
        if name not in DATASETS:
            hint = did_you_mean(name, DATASETS) or ";"
            print(f"fvbench-download: unknown dataset {name!r}{hint} datasets: {', '.join(DATASETS)} "
                  f"(usage: fvbench-download DATASET --dest DIR)", file=sys.stderr)
            return 2
    from bench.models.weights import download_main

    if argv in (["-h"], ["--help"]):
        print("usage: fvbench-download DATASET --dest DIR [...]   datasets: " + ", ".join(DATASETS))
        print("         e.g. fvbench-download frl_london --dest DIR   (DATASET -h: its options)")
        print("       fvbench-download MODEL [MODEL ...] | --all | --list   model weights, options below:")
        print()
    status = download_main(argv)
    if argv == ["--list"]:
        for name, text in DATASETS.items():
            print(f"dataset {name}: {text}\n  fvbench-download {name} --dest DIR")
    return status


if __name__ == "__main__":
    sys.exit(main())
