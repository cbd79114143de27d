"""fvbench: demographic differentials of face verification (FMR, FNMR, FTA per group).

The package is organised by stage of the data flow (see README):
``bench.data`` (manifests), ``bench.acquisition`` (detection, alignment, FTA),
``bench.models`` (embedders and the embedding cache), ``bench.protocol`` (mated /
non-mated comparisons and scoring), ``bench.metrics`` (error rates, thresholds,
intervals, differentials), ``bench.report`` (tables, figures, provenance) and
``bench.run`` (the pipeline). Only ``bench.cli`` imports Hydra.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
