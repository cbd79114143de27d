"""The package's layout rules (docs/architecture.md), read from the source with ``ast``.

1. No import cycle between modules of ``bench`` (a module importing its own package's
   ``__init__`` does not count).
2. The layer rule: data flows up through the layers below, and a module imports only
   from its own layer or lower ones. Lazy imports (inside functions) and imports under
   ``TYPE_CHECKING`` count like any other.
3. No module over :data:`MAX_LINES` lines unless its docstring's opening lines state why
   (a line starting ``Length:``).

Issue #11 ("One pipeline, two score stores"); the rule is the one documented in
docs/architecture.md, and this file is the single place that defines the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "bench"
MAX_LINES = 800

#: Layers from the bottom up; a module belongs to the layer of its longest matching prefix.
#: A module may import modules of its own layer and of the layers listed before it. The
#: order is that of the imports, not of the data flow: metrics are definitions the protocol
#: calls (and never the other way round), so ``metrics`` sits below ``protocol`` although
#: comparisons are formed before they are counted; model weights are verified files that
#: detectors (acquisition) and embedders (models) both load.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("bench", "bench.errors", "bench.limits", "bench.files", "bench.suggest", "bench.registry", "bench.job_threads")),
    ("data", ("bench.data", "bench.synthetic.generator")),
    ("weights", ("bench.models.weights", "bench.models.weights_registry")),
    ("acquisition", ("bench.acquisition",)),
    ("models", ("bench.models",)),
    ("metrics", ("bench.metrics", "bench.synthetic.truth")),
    ("scores", ("bench.scores",)),
    ("protocol", ("bench.protocol",)),
    ("report", ("bench.report",)),
    ("drivers", ("bench.run", "bench.identification_run", "bench.sweep", "bench.aggregate",
                 "bench.shard", "bench.multirun", "bench.verify", "bench.verify_core", "bench.verify_other",
                 "bench.verify_identification", "bench.verify_folder", "bench.verify_recompute",
                 "bench.verify_histograms", "bench.verify_html", "bench.verify_identification_counts",
                 "bench.verify_dataset_revision", "bench.synthetic")),
    ("cli", ("bench.cli", "bench.cli_output", "bench.identification_cli", "bench.config_schema", "bench.__main__", "bench.download",
             "bench.synthetic.calibrate_cli")),
]

#: No exceptions: every module is under the line limit (or states why), no cycle, no
#: upward import. Kept as named empty sets so a future exception is visible in review.
KNOWN_LONG: set[str] = set()
KNOWN_CYCLES: set[frozenset[str]] = set()
KNOWN_LAYER_BREAKS: set[tuple[str, str]] = set()


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for p in sorted(root.rglob("*.py")):
        name = ".".join(p.relative_to(root.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _targets(mods: dict[str, Path], current: str, node: ast.AST) -> list[str]:
    """Modules of the package that one import statement names (``from a import b`` may name module ``a.b``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.module == "__future__":
            return []
        base = node.module or ""
        if node.level:
            parts = current.split(".")
            keep = len(parts) - node.level + (1 if mods[current].name == "__init__.py" else 0)
            base = ".".join(parts[:keep] + ([base] if base else []))
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    else:
        return []
    return [n for n in names if n in mods]


def import_graph(root: Path = PACKAGE) -> tuple[dict[str, Path], dict[str, set[str]]]:
    """Modules (name -> file) and edges (name -> names it imports), every import statement counted."""
    mods = _modules(root)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"), filename=str(p))):
            for t in _targets(mods, m, node):
                # a module and its own package __init__ (either way) are one unit, not a cycle
                if t != m and not m.startswith(t + ".") and not t.startswith(m + "."):
                    edges[m].add(t)
    return mods, edges


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))
    return out


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of the longest prefix matching ``module``; KeyError when none does."""
    best, where = "", None
    for i, (_name, prefixes) in enumerate(LAYERS):
        for pre in prefixes:
            if (module == pre or module.startswith(pre + ".")) and len(pre) > len(best):
                best, where = pre, i
    if where is None:
        raise KeyError(module)
    return where


def _stated_length_reason(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return any(line.strip().startswith("Length:") for line in doc.splitlines()[:12])


# ----------------------------------------------------------------------------- the checker checks itself
def test_cycle_finder_finds_a_planted_cycle_and_ignores_package_init(tmp_path):
    pkg = tmp_path / "bench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from bench.b import g\n")  # lazy: counts
    (pkg / "b.py").write_text("from . import a\n")
    (pkg / "sub" / "__init__.py").write_text("from bench.sub.c import x\n")
    (pkg / "sub" / "c.py").write_text("import bench.sub\nx = 1\n")
    mods, edges = import_graph(pkg)
    assert edges["bench.a"] == {"bench.b"} and edges["bench.b"] == {"bench.a"}
    assert edges["bench.sub.c"] == set()  # its own package: not an edge
    assert cycles(edges) == [frozenset({"bench.a", "bench.b"})]


def test_layer_of_uses_the_longest_prefix():
    assert LAYERS[layer_of("bench.synthetic.generator")][0] == "data"
    assert LAYERS[layer_of("bench.synthetic.truth")][0] == "metrics"
    assert LAYERS[layer_of("bench.synthetic.calibrate_cli")][0] == "cli"
    assert LAYERS[layer_of("bench.synthetic.power")][0] == "drivers"
    assert LAYERS[layer_of("bench.models.weights")][0] == "weights"
    assert LAYERS[layer_of("bench.models.cache")][0] == "models"
    assert LAYERS[layer_of("bench.report.sweep")][0] == "report"
    assert LAYERS[layer_of("bench.errors")][0] == "base"


# ----------------------------------------------------------------------------- the package
def test_every_module_has_a_layer():
    mods, _ = import_graph()
    missing = []
    for m in mods:
        try:
            layer_of(m)
        except KeyError:
            missing.append(m)
    assert not missing, f"modules without a layer (add them to LAYERS and docs/architecture.md): {missing}"


def test_no_import_cycles():
    _, edges = import_graph()
    found = [c for c in cycles(edges) if c not in KNOWN_CYCLES]
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


@pytest.mark.parametrize("low, high", [
    ("metrics", "protocol"), ("metrics", "report"), ("metrics", "drivers"), ("metrics", "cli"),
    ("protocol", "report"), ("protocol", "cli"), ("report", "drivers"), ("report", "cli"),
    ("data", "acquisition"), ("acquisition", "models"), ("models", "protocol"), ("metrics", "scores"), ("scores", "protocol"), ("drivers", "cli"),
])
def test_rule_examples_hold(low, high):
    """The rule as the issue states it: each named layer sits below the other."""
    names = [n for n, _ in LAYERS]
    assert names.index(low) < names.index(high)


def layer_breaks(edges: dict[str, set[str]]) -> list[str]:
    """Every import from a module to one in a higher layer, as ``"a (layer) imports b (layer)"``."""
    bad = []
    for m, targets in sorted(edges.items()):
        for t in sorted(targets):
            if layer_of(t) > layer_of(m) and (m, t) not in KNOWN_LAYER_BREAKS:
                bad.append(f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})")
    return bad


def test_layer_check_finds_planted_breaks(tmp_path):
    """A lazy import of the report from metrics, and of a driver from the report, are both caught."""
    pkg = tmp_path / "bench"
    for d in ("metrics", "report"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "sweep.py").write_text("from bench.metrics import rates\n")
    (pkg / "metrics" / "rates.py").write_text("def f():\n    from bench.report.plots import g\n")
    (pkg / "report" / "plots.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bench.sweep import X\n")
    _, edges = import_graph(pkg)
    assert layer_breaks(edges) == ["bench.metrics.rates (metrics) imports bench.report.plots (report)",
                                   "bench.report.plots (report) imports bench.sweep (drivers)"]


def test_no_import_from_a_lower_layer_to_a_higher_one():
    _, edges = import_graph()
    bad = layer_breaks(edges)
    assert not bad, "imports against the layer rule (docs/architecture.md):\n" + "\n".join(bad)


def test_no_module_over_the_line_limit_without_a_stated_reason():
    mods, _ = import_graph()
    long = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in mods.items()}
    bad = sorted(f"{m} ({n} lines)" for m, n in long.items()
                 if n > MAX_LINES and m not in KNOWN_LONG and not _stated_length_reason(mods[m]))
    assert not bad, f"modules over {MAX_LINES} lines without a 'Length:' reason in their docstring: {bad}"


def test_known_exceptions_are_still_needed():
    """An exception that no longer applies is removed, so the list only shrinks."""
    mods, edges = import_graph()
    found = set(cycles(edges))
    stale = [" <-> ".join(sorted(c)) for c in KNOWN_CYCLES if c not in found]
    stale += [f"{m} -> {t}" for m, t in KNOWN_LAYER_BREAKS if t not in edges.get(m, set()) or layer_of(t) <= layer_of(m)]
    stale += [m for m in KNOWN_LONG if m not in mods or len(mods[m].read_text(encoding="utf-8").splitlines()) <= MAX_LINES]
    assert not stale, f"remove these exceptions from tests/test_architecture.py: {stale}"
