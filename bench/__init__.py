"""fvbench: demographic differentials of face verification (FMR, FNMR, FTA per group).

The package is organised by stage of the data flow (docs/architecture.md, with the
layer rule tests/test_architecture.py enforces): ``bench.data`` (manifests),
``bench.acquisition`` (detection, alignment, FTA), ``bench.models`` (embedders, weights
and the embedding cache), ``bench.protocol`` (mated / non-mated comparisons, 1:1 and
1:N), ``bench.metrics`` (error rates, thresholds, intervals, differentials),
``bench.report`` (tables, figures, provenance), ``bench.synthetic`` (generated
populations with known truth), and on top the drivers (``bench.run``, ``bench.sweep``)
and entry points (``bench.cli``). Only the entry points import Hydra.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
