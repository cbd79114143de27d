"""Which subjects contribute a scored mated comparison under a run's pair design.

The small-group rule (:func:`bench.metrics.groups.withhold_small_groups`) counts the
people in a group; a group's FNMR, however, describes only the people behind its
*mated* comparisons. A group of 13 subjects of whom one has a scored mated pair
publishes that one person's result. :func:`mated_contributors` gives, for a set of
published images, which images belong to a subject with at least one scored mated
comparison, following the run's actual design (docs/protocol.md §6.2):

* all pairs: a subject with at least two acquired images of distinct captures
  (frames of one video are never a mated pair, :func:`bench.protocol.pairs.capture_ids_of`);
* a pair list: the listed mated pairs among published, acquired images;
* a scenario (reference x probe): a subject with an acquired reference and an acquired probe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["mated_contributors"]


def mated_contributors(table: pd.DataFrame, fta_reason: Any, *, listed: Any = None, roles: Any = None,
                       dataset: str = "") -> Callable[[np.ndarray], np.ndarray]:
    """A function ``published -> contributes`` for the withholding rule.

    Parameters
    ----------
    table : pandas.DataFrame
        The whole manifest table (columns ``path``, ``subject_id``, optional ``capture_id``), n_images rows.
    fta_reason : sequence
        Shape (n_images,): None where the image was acquired, else the failure reason.
    listed : bench.protocol.pair_list.PairList, optional
        Pair-list protocol: the parsed list (resolved against the published rows on each call).
    roles : numpy.ndarray, optional
        Scenario runs: shape (n_images,), ``"enrolment"`` or ``"probe"`` per image.
    dataset : str
        Dataset name (messages).

    Returns
    -------
    callable
        Takes ``published`` (bool, shape (n_images,)) and returns bool, shape (n_images,):
        True for published images of a subject who has at least one scored mated
        comparison among the published, acquired images.
    """
    subj = table["subject_id"].astype(str).to_numpy()
    ok = np.array([r is None for r in fta_reason], dtype=bool)
    cap = table["capture_id"].astype(str).to_numpy() if "capture_id" in table.columns else np.arange(len(subj)).astype(str)
    paths = table["path"].astype(str) if "path" in table.columns else None

    def contributes(published: np.ndarray) -> np.ndarray:
        published = np.asarray(published, dtype=bool)
        use = published & ok
        if listed is not None:
            from bench.protocol.pair_list import resolve_pairs

            rows = np.flatnonzero(published)
            res = resolve_pairs(listed, paths, subj, dataset=dataset, published=published)
            a, b = rows[res.idx_a], rows[res.idx_b]
            scored = res.mated & ok[a] & ok[b]
            who = set(subj[a[scored]])
        elif roles is not None:
            r = np.asarray(roles).astype(str)
            who = set(subj[use & (r == "enrolment")]) & set(subj[use & (r == "probe")])
        else:
            caps = pd.DataFrame({"s": subj[use], "c": cap[use]}).drop_duplicates().groupby("s")["c"].size()
            who = set(caps[caps >= 2].index)
        return published & np.isin(subj, list(who))

    return contributes
