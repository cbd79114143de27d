"""Synthetic populations: generated embeddings whose per-group error rates are known.

``generator`` draws the embeddings (:class:`~bench.synthetic.generator.SyntheticPopulation`,
a dataset like any other); ``truth`` computes their true per-group FMR/FNMR;
``calibrate`` fits the generator to a published run (``fvbench-calibrate``); ``power``
simulates how many subjects a study needs to detect a differential (``fvbench-power``).
"""
