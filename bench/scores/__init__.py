"""Score stores: where a run's comparison scores are kept and every metric reads them.

* :class:`bench.scores.table.TableStore` -- every comparison score kept (the comparison
  table, ``scores.parquet``); exact read-outs.
* :class:`bench.scores.stream.HistogramStore` -- streamed bins, an exact upper tail and
  subject aggregates (``histograms.npz``); memory independent of the number of
  comparisons.

Both implement :class:`bench.scores.store.ScoreStore`; ``protocol.engine`` only chooses
which one :func:`bench.run.evaluate` builds.
"""
