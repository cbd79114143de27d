"""Reference x probe comparisons: the pairing of a deployment scenario (issue #14).

Under a scenario (:mod:`bench.protocol.scenario`) every image is either an
enrolment (reference) image or a probe image, and a comparison is always one
reference against one probe, as a deployed system compares a stored reference with a
new capture:

- **mated**: the reference and the probe of the same subject (FRL London: one per
  subject, the neutral reference against the smiling probe);
- **non-mated**: the reference of one subject against the probe of another subject:
  every such *ordered* pair (reference of A x probe of B and reference of B x probe
  of A are different comparisons of different images), or a seeded uniform sample.

This differs from the all-pairs protocol of :mod:`bench.protocol.pairs`, whose
non-mated set is every *unordered* pair of images of different subjects, including
reference x reference and probe x probe pairs: with 2 images of each of N subjects that
is 2N(N-1) pairs, here N(N-1). Side ``a`` of the comparison table is always the
reference, side ``b`` the probe. Failures to acquire are removed before pairing (they
are counted per group as FTA). Definitions: ``docs/scenarios.md``.
"""

from __future__ import annotations

import numpy as np

from bench.errors import ConfigError, DataError

__all__ = ["reference_probe_pairs", "count_reference_probe_pairs", "scenario_engine", "scenario_pairs"]


def reference_probe_pairs(roles: np.ndarray, subject_ids: np.ndarray, *, max_nonmated: int | None = None,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (reference, probe) of all comparisons among ``n`` acquired images.

    Parameters
    ----------
    roles : numpy.ndarray
        Shape (n,), ``"enrolment"`` or ``"probe"`` per image.
    subject_ids : numpy.ndarray
        Shape (n,), subject id per image.
    max_nonmated : int or None
        If set and there are more non-mated pairs, keep a seeded uniform sample of this
        many (all mated pairs are kept).
    seed : int
        Seed of that sample.

    Returns
    -------
    idx_a, idx_b : numpy.ndarray
        Shape (n_pairs,), int64: reference index, probe index; mated pairs first, each
        part in (reference, probe) row-major order.
    mated : numpy.ndarray
        Shape (n_pairs,), bool.

    Raises
    ------
    ConfigError
        A role other than enrolment/probe; ``max_nonmated < 1``.
    DataError
        No acquired reference or no acquired probe.
    """
    roles = np.asarray(roles).astype(str)
    subject_ids = np.asarray(subject_ids).astype(str)
    bad = sorted(set(roles.tolist()) - {"enrolment", "probe"})
    if bad:
        raise ConfigError(f"reference x probe pairing: roles must be 'enrolment' or 'probe', got {bad}")
    refs, probes = np.flatnonzero(roles == "enrolment"), np.flatnonzero(roles == "probe")
    if not len(refs) or not len(probes):
        raise DataError(f"reference x probe pairing: {len(refs)} acquired reference(s) and {len(probes)} acquired probe(s); both are needed")
    ia, ib = np.meshgrid(refs, probes, indexing="ij")
    ia, ib = ia.ravel(), ib.ravel()
    same = subject_ids[ia] == subject_ids[ib]
    na, nb = ia[~same], ib[~same]
    if max_nonmated is not None:
        if max_nonmated < 1:
            raise ConfigError(f"protocol.max_nonmated must be >= 1 or null, got {max_nonmated}")
        if len(na) > max_nonmated:
            keep = np.sort(np.random.default_rng(seed).choice(len(na), size=max_nonmated, replace=False))
            na, nb = na[keep], nb[keep]
    idx_a = np.concatenate([ia[same], na]).astype(np.int64)
    idx_b = np.concatenate([ib[same], nb]).astype(np.int64)
    mated = np.concatenate([np.ones(int(same.sum()), bool), np.zeros(len(na), bool)])
    return idx_a, idx_b, mated


def count_reference_probe_pairs(roles: np.ndarray, subject_ids: np.ndarray) -> tuple[int, int]:
    """(mated, non-mated) counts of :func:`reference_probe_pairs` without forming the pairs.

    Parameters
    ----------
    roles, subject_ids : numpy.ndarray
        Shape (n,) each.
    """
    roles = np.asarray(roles).astype(str)
    subject_ids = np.asarray(subject_ids).astype(str)
    ref_s, ref_n = np.unique(subject_ids[roles == "enrolment"], return_counts=True)
    pro = dict(zip(*np.unique(subject_ids[roles == "probe"], return_counts=True)))
    mated = int(sum(int(c) * int(pro.get(s, 0)) for s, c in zip(ref_s, ref_n)))
    total = int((roles == "enrolment").sum()) * int((roles == "probe").sum())
    return mated, total - mated


def scenario_engine(roles: np.ndarray, subject_ids: np.ndarray, protocol: object) -> dict:
    """The engine record of a scenario run: always the table engine (``metrics.json`` ``engine``).

    Reference x probe pairing is implemented for the comparison table only.

    Parameters
    ----------
    roles, subject_ids : numpy.ndarray
        Shape (n_acquired,) each.
    protocol : bench.run.Protocol
        Reads ``engine``, ``max_nonmated`` and ``table_max_comparisons``.

    Raises
    ------
    ConfigError
        ``protocol.engine: stream``, or more comparisons than ``table_max_comparisons``
        (with ``engine: auto``).
    """
    n_mated, n_nonmated = count_reference_probe_pairs(roles, subject_ids)
    if getattr(protocol, "max_nonmated", None) is not None:
        n_nonmated = min(n_nonmated, int(protocol.max_nonmated))
    total = n_mated + n_nonmated
    limit = int(getattr(protocol, "table_max_comparisons"))
    if getattr(protocol, "engine") == "stream":
        raise ConfigError("protocol.engine=stream: a scenario's reference x probe comparisons use the table engine; set engine: table or auto")
    if getattr(protocol, "engine") == "auto" and total > limit:
        raise ConfigError(f"scenario: {total:,} reference x probe comparisons exceed protocol.table_max_comparisons={limit:,} "
                          "(the streaming engine does not pair by role); set protocol.max_nonmated or raise the limit")
    return {"engine": "table", "selected_by": "scenario" if getattr(protocol, "engine") == "auto" else "protocol.engine",
            "comparisons": total, "table_max_comparisons": limit}


def scenario_pairs(roles: np.ndarray, subject_ids: np.ndarray, protocol: object):
    """The reference x probe comparisons of a scenario run over all published manifest rows.

    Images that fail to acquire are dropped by the table store (counted as FTA); the
    engine rules of :func:`scenario_engine` are checked first.

    Parameters
    ----------
    roles, subject_ids : numpy.ndarray
        Shape (n_images,) each, the published manifest's rows.
    protocol : bench.run.Protocol

    Returns
    -------
    bench.protocol.pair_list.ResolvedPairs
    """
    from bench.protocol.pair_list import ResolvedPairs

    scenario_engine(roles, subject_ids, protocol)
    a, b, mated = reference_probe_pairs(roles, subject_ids, max_nonmated=getattr(protocol, "max_nonmated", None),
                                        seed=int(getattr(protocol, "seed", 0)))
    cap = getattr(protocol, "max_nonmated", None)
    words = ("reference x probe: every enrolment image against every probe image; mated = same subject, "
             "non-mated = " + ("every pair of different subjects" if cap is None else
                               f"a seeded sample of {int(cap):,} pairs of different subjects (seed {int(getattr(protocol, 'seed', 0))})")
             + "; pairs with an image that failed to acquire are listed but not scored")
    return ResolvedPairs(idx_a=a, idx_b=b, mated=mated, design=words)
