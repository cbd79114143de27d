"""Fuzz ``fvbench-verify`` with randomly damaged copies of a published result folder.

Each iteration copies the folder into a temporary directory, replaces one value of its
``metrics.json`` (chosen at random among all key paths) by a hostile one (wrong type,
huge number, ``${oc.env:...}``, nested object) or deletes the key, rewrites
``files.sha256`` as a careful forger would, and runs :func:`bench.verify.verify_main`.
Every outcome must be an exit status: 0 (the change is not a published number, e.g. a
free-text description), 1 (a mismatch) or 2 (one line: malformed). Counted separately:
exceptions escaping ``verify_main`` (must be 0) and malformed folders that reached the
last-resort "unexpected content" message instead of a schema error (should be 0).

Usage::

    python scripts/fuzz_verify.py [--folder results/frl_london_dlib] [--iterations 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

from bench.report.folder import write_file_manifest
from bench.verify import verify_main

HOSTILE = [None, "x", -1, 0, 10**15, 1.5, True, [], {}, ["a"], {"a": 1}, "${oc.env:HOME}", -0.0, 1e300, {"_target_": "os.system"}]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            yield from _paths(v, prefix + (i,))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default="results/frl_london_dlib")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    src = Path(args.folder)
    base = json.loads((src / "metrics.json").read_text())
    rng = random.Random(args.seed)
    paths = [q for q in _paths(base) if q and q[0] != "provenance"]
    codes: dict[str, int] = {}
    escaped, last_resort = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.iterations):
            m = json.loads(json.dumps(base))
            q = rng.choice(paths)
            node = m
            for k in q[:-1]:
                node = node[k]
            if rng.random() < 0.2 and isinstance(node, dict):
                del node[q[-1]]
                what = "<deleted>"
            else:
                what = rng.choice(HOSTILE)
                node[q[-1]] = what
            d = Path(tmp) / "f"
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(src, d)
            (d / "metrics.json").write_text(json.dumps(m))
            write_file_manifest(d)
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    rc = verify_main([str(d), "--skip-figures", "--skip-dataset"])
            except BaseException as e:  # noqa: BLE001 - counting what escapes is the point
                escaped.append((q, what, f"{type(e).__name__}: {e}"))
                continue
            codes[str(rc)] = codes.get(str(rc), 0) + 1
            if "unexpected content" in err.getvalue():
                last_resort.append((q, what, err.getvalue().strip()[:200]))
    print(f"{args.iterations} mutations of {src}/metrics.json: exit status counts {dict(sorted(codes.items()))}")
    print(f"exceptions escaping verify_main: {len(escaped)}; malformed folders caught only by the last resort: {len(last_resort)}")
    for row in escaped + last_resort:
        print("  ", row)
    return 1 if escaped else 0


if __name__ == "__main__":
    sys.exit(main())
