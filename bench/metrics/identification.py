"""1:N identification error rates per demographic group: FPIR, FNIR, selectivity, false candidates.

Definitions (NIST FRVT/FRTE 1:N, NISTIR 8271 and NISTIR 8280; ISO/IEC 19795-1 §3; the
project's text: ``docs/identification.md``). Scores are similarities; a candidate is
returned iff its score ``>= T`` (the tie rule of the 1:1 rates, metrics-reference §0).

* **FPIR(N, T)**: share of completed non-mated searches whose top score is ``>= T``.
* **FNIR(N, R, T)**: share of completed mated searches whose mate is not among the top
  ``R`` candidates or scores ``< T``. Investigation mode: ``T = -inf``.
* **Selectivity SEL(N, T)**: false candidates (list entries scoring ``>= T``) per
  completed non-mated search.
* **False candidates per gallery group**: how often enrolled people of group ``h`` are
  returned by non-mated searches; per enrolled person and per probe-group x gallery-group
  cell. Only non-mated searches count (a mated search's wrong candidates are a rank
  question, reported through FNIR), as in the public vector of the reference.
* **Threshold at a target FPIR**: :func:`bench.metrics.rates.threshold_at_fmr` applied to
  the top scores of the non-mated searches (achieved FPIR never above the target; ties
  handled; refused below ``1/target`` searches, flagged below ``30/target``).

Rank of the mate: ``1 + #{other list entries scoring >= the mate's score}`` (ties count
against the mate, so the rank does not depend on the gallery order); 0 when the mate is
not in the candidate list.

Failures: a probe that failed to acquire is a search not completed (``*_fta``); a mated
search whose subject has no template (its gallery image failed to acquire) is a failure
to enrol (``mated_fte``). Both are counted per group and folded into the generalized
rates ``FPIR_gen = FP / (completed + FTA)`` (a failed probe raises no alarm) and
``FNIR_gen = (misses + FTA + FTE) / (completed + FTA + FTE)``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from bench.errors import ConfigError, DataError, InsufficientDataError, InsufficientDataWarning
from bench.metrics.intervals import wilson_interval
from bench.metrics.rates import RULE_OF_30, threshold_at_fmr

__all__ = [
    "INVESTIGATION",
    "ProbeOutcomes",
    "fpir_threshold_name",
    "mate_ranks",
    "threshold_at_fpir",
    "probe_statistics",
    "identification_rates",
    "false_candidates",
    "predicted_fpir",
]

#: Name of the threshold-free investigation mode (``T = -inf``).
INVESTIGATION = "investigation"


def fpir_threshold_name(target: float) -> str:
    """Name of the threshold calibrated at ``target`` FPIR, e.g. ``"FPIR=1e-02"``."""
    return f"FPIR={target:.0e}"


def mate_ranks(candidates: ArrayLike, scores: ArrayLike, mate: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Rank and score of each probe's mate within its candidate list.

    Parameters
    ----------
    candidates : array-like of int, shape (P, L)
        Gallery indices of each list, best first.
    scores : array-like of float, shape (P, L)
        Their scores.
    mate : array-like of int, shape (P,)
        Gallery index of the probe's mate; negative for a probe without one.

    Returns
    -------
    rank : ndarray of int64, shape (P,)
        ``1 + #{other entries of the list scoring >= the mate's score}``; 0 when the
        mate is absent from the list (or the probe has no mate).
    mate_score : ndarray of float64, shape (P,)
        The mate's score in the list; NaN when absent.

    Raises
    ------
    DataError
        Shapes that do not match.
    """
    cand = np.asarray(candidates)
    sc = np.asarray(scores, dtype=np.float64)
    m = np.asarray(mate).astype(np.int64)
    if cand.shape != sc.shape or cand.ndim != 2 or m.shape != (cand.shape[0],):
        raise DataError(f"mate_ranks: candidates {cand.shape}, scores {sc.shape} and mate {m.shape} do not match")
    hit = (cand == m[:, None]) & (m[:, None] >= 0)
    found = hit.any(axis=1)
    col = hit.argmax(axis=1)
    ms = np.where(found, sc[np.arange(sc.shape[0]), col], np.nan)
    ahead = ((sc >= ms[:, None]) & ~hit).sum(axis=1)
    rank = np.where(found, 1 + ahead, 0).astype(np.int64)
    return rank, ms


def threshold_at_fpir(nonmated_top_scores: ArrayLike, target: float) -> dict:
    """Threshold for a target FPIR on the top scores of the non-mated searches.

    The order-statistic rule of :func:`bench.metrics.rates.threshold_at_fmr`
    (metrics-reference §0) applied to one score per non-mated search, its top score:
    a search raises a false alarm at ``T`` iff its top score is ``>= T``.

    Parameters
    ----------
    nonmated_top_scores : array-like of float, shape (n,)
        Top score of every completed non-mated search.
    target : float
        Target FPIR in (0, 1).

    Returns
    -------
    dict
        ``name, kind="target_fpir", target_fpir, status`` and, when ``status == "ok"``,
        ``threshold, achieved_fpir (<= target), k, n_nonmated_searches, support``
        (``"ok"`` or ``"low"``: fewer than 30/target searches, rule of 30); when
        ``status == "refused"``, ``reason`` (fewer than 1/target searches).

    Raises
    ------
    ConfigError
        ``target`` outside (0, 1).
    DataError
        NaN/inf scores.
    """
    name = fpir_threshold_name(float(target))
    out: dict = {"name": name, "kind": "target_fpir", "target_fpir": float(target)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsufficientDataWarning)  # recorded as support="low"
            t = threshold_at_fmr(nonmated_top_scores, target)
    except InsufficientDataError as err:
        n = int(np.asarray(nonmated_top_scores).size)
        out.update(status="refused", n_nonmated_searches=n,
                   reason=f"{n} non-mated searches cannot resolve target FPIR {float(target):g}; at least "
                          f"{math.ceil(1 / float(target) - 1e-9)} are needed ({err})")
        return out
    out.update(status="ok", threshold=t.threshold, achieved_fpir=t.achieved_fmr, k=t.k,
               n_nonmated_searches=t.n_nonmated, support=t.support)
    return out


@dataclass(frozen=True)
class ProbeOutcomes:
    """Per-search counts from which every identification rate is a ratio of sums.

    Attributes
    ----------
    values : ndarray of float64, shape (P, S)
        One row per search (completed or not), one column per statistic.
    columns : list of str
        Names of the ``S`` statistics (see :func:`probe_statistics`).
    thresholds : dict of str to float
        Threshold names (``investigation`` first) and values.
    ranks : list of int
        Ranks ``R`` at which FNIR is counted.
    """

    values: NDArray[np.float64]
    columns: list[str]
    thresholds: dict[str, float]
    ranks: list[int]

    def col(self, name: str) -> int:
        """Index of statistic ``name``."""
        return self.columns.index(name)


def probe_statistics(
    top_scores: ArrayLike,
    rank: ArrayLike,
    mate_score: ArrayLike,
    kind: ArrayLike,
    acquired: ArrayLike,
    thresholds: dict[str, float],
    *,
    ranks: list[int] = (1,),  # type: ignore[assignment]
    list_scores: ArrayLike | None = None,
) -> ProbeOutcomes:
    """Per-search indicators of every rate.

    Parameters
    ----------
    top_scores : array-like of float, shape (P,)
        Top score of each search (any value for a search not completed).
    rank, mate_score : array-like, shape (P,)
        From :func:`mate_ranks`.
    kind : array-like of int, shape (P,)
        ``>= 0``: mated search whose mate has a template; ``-1``: non-mated search;
        ``-2``: mated search whose mate failed to enrol.
    acquired : array-like of bool, shape (P,)
        False for a probe that failed to acquire (search not completed).
    thresholds : dict of str to float
        Named thresholds (``-inf`` allowed); :data:`INVESTIGATION` (``-inf``) is added first.
    ranks : list of int
        Ranks ``R >= 1`` for FNIR.
    list_scores : array-like of float, shape (P, L), optional
        Candidate-list scores, for the false-candidate count and saturation per threshold.

    Returns
    -------
    ProbeOutcomes
        Columns: ``nonmated_searches, nonmated_fta, mated_searches, mated_fta, mated_fte``;
        per threshold name ``t``: ``fp@t`` (top score ``>= T``), ``miss@R@t`` per rank
        ``R``, and with ``list_scores`` ``fc@t`` (list entries ``>= T``) and
        ``saturated@t`` (the whole list ``>= T``: the count is truncated at ``L``).

    Raises
    ------
    ConfigError
        A rank below 1 or a NaN threshold.
    DataError
        Shapes that do not match.
    """
    top = np.asarray(top_scores, dtype=np.float64)
    p = top.size
    rank = np.asarray(rank).astype(np.int64)
    ms = np.asarray(mate_score, dtype=np.float64)
    kind = np.asarray(kind).astype(np.int64)
    acq = np.asarray(acquired, dtype=bool)
    for name, arr in (("rank", rank), ("mate_score", ms), ("kind", kind), ("acquired", acq)):
        if arr.shape != (p,):
            raise DataError(f"probe_statistics: {name} has shape {arr.shape}, expected ({p},)")
    rs = [int(r) for r in ranks]
    if any(r < 1 for r in rs):
        raise ConfigError(f"identification ranks must be >= 1, got {rs}")
    thr = {INVESTIGATION: -math.inf, **{k: float(v) for k, v in thresholds.items() if k != INVESTIGATION}}
    if any(math.isnan(v) for v in thr.values()):
        raise ConfigError(f"identification thresholds: NaN in {thr}")
    nm = (kind == -1) & acq
    mt = (kind >= 0) & acq
    cols: dict[str, NDArray] = {
        "nonmated_searches": nm,
        "nonmated_fta": (kind == -1) & ~acq,
        "mated_searches": mt,
        "mated_fta": (kind != -1) & ~acq,
        "mated_fte": (kind == -2) & acq,
    }
    ls = None if list_scores is None else np.asarray(list_scores, dtype=np.float64)
    if ls is not None and ls.shape[0] != p:
        raise DataError(f"probe_statistics: list_scores has {ls.shape[0]} rows, expected {p}")
    for name, t in thr.items():
        cols[f"fp@{name}"] = nm & (top >= t)
        for r in rs:
            found = (rank >= 1) & (rank <= r) & (ms >= t)
            cols[f"miss@{r}@{name}"] = mt & ~found
        if ls is not None:
            above = (ls >= t).sum(axis=1)
            cols[f"fc@{name}"] = np.where(nm, above, 0)
            cols[f"saturated@{name}"] = nm & (above == ls.shape[1])
    values = np.column_stack([np.asarray(v, dtype=np.float64) for v in cols.values()]) if p else np.zeros((0, len(cols)))
    return ProbeOutcomes(values=values, columns=list(cols), thresholds=thr, ranks=rs)


def _flag(errors: float, n: float) -> str:
    if n == 0:
        return "no_searches"
    if errors == 0:
        return "zero_errors"
    if errors < RULE_OF_30:
        return "low_precision"
    return ""


def _rate_specs(out: ProbeOutcomes) -> list[tuple[str, str, str, str]]:
    """(threshold name, metric, numerator column, denominator column) of every reported rate."""
    specs = []
    for name in out.thresholds:
        if name != INVESTIGATION:
            specs.append((name, "FPIR", f"fp@{name}", "nonmated_searches"))
        for r in out.ranks:
            specs.append((name, f"FNIR_rank{r}", f"miss@{r}@{name}", "mated_searches"))
        if f"fc@{name}" in out.columns and name != INVESTIGATION:
            specs.append((name, "SEL", f"fc@{name}", "nonmated_searches"))
    return specs


def _subject_sums(values: NDArray, subjects: NDArray) -> NDArray:
    """Row sums per subject, shape (n_subjects, S)."""
    _, inv = np.unique(subjects, return_inverse=True)
    out = np.zeros((inv.max() + 1 if inv.size else 0, values.shape[1]))
    np.add.at(out, inv, values)
    return out


def identification_rates(
    outcomes: ProbeOutcomes,
    groups: ArrayLike,
    subjects: ArrayLike,
    *,
    attribute: str,
    confidence: float = 0.95,
    bootstrap_replicates: int | None = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per probe group: FPIR, FNIR at each rank, selectivity and FTA, with counts and intervals.

    Parameters
    ----------
    outcomes : ProbeOutcomes
        From :func:`probe_statistics`.
    groups : array-like of str, shape (P,)
        Probe group of each search (label of the probe image).
    subjects : array-like of str, shape (P,)
        Probe subject of each search (the bootstrap unit).
    attribute : str
        Attribute name written in the table.
    confidence : float in (0, 1)
        Level of the Wilson intervals (FPIR, FNIR, FTA) and of the bootstrap.
    bootstrap_replicates : int or None
        Subject-level bootstrap: within each probe group its probe subjects are
        resampled with replacement (metrics-reference §5.2); thresholds are held fixed.
        None skips it.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    pandas.DataFrame
        One row per (group, threshold_name, metric); the ``(all)`` pseudo-group first.
        Columns ``attribute, group, threshold_name, threshold, metric, errors, n, rate,
        ci_low, ci_high, boot_low, boot_high, subjects, flag, fta, fte, generalized_rate``
        and ``saturated`` for SEL. ``n`` counts completed searches; ``rate`` is NaN when
        ``n == 0`` (an empty group is reported, not dropped). ``FTA_probe`` rows give the
        probes that failed to acquire among all searches of the group.
    """
    g = np.asarray(groups).astype(str)
    s = np.asarray(subjects).astype(str)
    v = outcomes.values
    if g.shape != (v.shape[0],) or s.shape != (v.shape[0],):
        raise DataError(f"identification_rates: groups {g.shape} / subjects {s.shape} do not match {v.shape[0]} searches")
    specs = _rate_specs(outcomes)
    c = outcomes.col
    rows = []
    rng = np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(13, 1)))
    for group in ["(all)", *sorted(set(g.tolist()))]:
        sel = np.ones(g.size, dtype=bool) if group == "(all)" else g == group
        tot = v[sel].sum(axis=0)
        boot = None
        if bootstrap_replicates and sel.any():
            per_subject = _subject_sums(v[sel], s[sel])
            u = per_subject.shape[0]
            w = rng.multinomial(u, np.full(u, 1.0 / u), size=int(bootstrap_replicates)).astype(np.float64)
            boot = w @ per_subject  # (B, S)
        n_subj = int(np.unique(s[sel]).size)
        for name, metric, num, den in specs:
            e, n = float(tot[c(num)]), float(tot[c(den)])
            row = {"attribute": attribute, "group": group, "threshold_name": name,
                   "threshold": outcomes.thresholds[name], "metric": metric, "errors": e, "n": int(n),
                   "rate": e / n if n else math.nan, "subjects": n_subj}
            if metric == "SEL":
                row.update(ci_low=math.nan, ci_high=math.nan, flag="no_searches" if n == 0 else "",
                           saturated=int(tot[c(f"saturated@{name}")]))
            else:
                lo, hi = wilson_interval(int(e), int(n), confidence=confidence) if n else (math.nan, math.nan)
                row.update(ci_low=lo, ci_high=hi, flag=_flag(e, n))
            if metric == "FPIR":
                fta = float(tot[c("nonmated_fta")])
                row.update(fta=int(fta), fte=0, generalized_rate=e / (n + fta) if n + fta else math.nan)
            elif metric.startswith("FNIR"):
                fta, fte = float(tot[c("mated_fta")]), float(tot[c("mated_fte")])
                row.update(fta=int(fta), fte=int(fte), generalized_rate=(e + fta + fte) / (n + fta + fte) if n + fta + fte else math.nan)
            if boot is not None:
                with np.errstate(invalid="ignore", divide="ignore"):
                    r = boot[:, c(num)] / boot[:, c(den)]
                r = r[np.isfinite(r)]
                q = np.quantile(r, [(1 - confidence) / 2, (1 + confidence) / 2]) if r.size else (math.nan, math.nan)
                row.update(boot_low=float(q[0]), boot_high=float(q[1]))
            rows.append(row)
        fta_all = float(tot[c("nonmated_fta")] + tot[c("mated_fta")])
        searches = float(tot[c("nonmated_searches")] + tot[c("mated_searches")] + tot[c("mated_fte")]) + fta_all
        lo, hi = wilson_interval(int(fta_all), int(searches), confidence=confidence) if searches else (math.nan, math.nan)
        rows.append({"attribute": attribute, "group": group, "threshold_name": "", "threshold": math.nan, "metric": "FTA_probe",
                     "errors": fta_all, "n": int(searches), "rate": fta_all / searches if searches else math.nan,
                     "ci_low": lo, "ci_high": hi, "subjects": n_subj, "flag": _flag(fta_all, searches)})
    out = pd.DataFrame(rows)
    out["errors"] = out["errors"].astype(np.int64)
    return out


def false_candidates(
    list_candidates: ArrayLike,
    list_scores: ArrayLike,
    nonmated: ArrayLike,
    probe_groups: ArrayLike,
    gallery_groups: ArrayLike,
    thresholds: dict[str, float],
    *,
    attribute: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """False candidates returned by non-mated searches, per gallery group and per cell.

    Parameters
    ----------
    list_candidates, list_scores : array-like, shape (P, L)
        Candidate lists (gallery indices, best first) and their scores.
    nonmated : array-like of bool, shape (P,)
        True for a completed non-mated search (other rows are ignored).
    probe_groups : array-like of str, shape (P,)
    gallery_groups : array-like of str, shape (G,)
        Group of every gallery template (indices of ``list_candidates``).
    thresholds : dict of str to float
        A candidate is returned iff its score ``>= T``.
    attribute : str

    Returns
    -------
    by_gallery : pandas.DataFrame
        Per (threshold_name, gallery_group): ``false_candidates``, ``enrolled``
        (templates of the group), ``per_enrolled_person = false_candidates / enrolled``,
        ``nonmated_searches`` and ``rate = false_candidates / (enrolled *
        nonmated_searches)``: the chance that one search returns a given member.
    cells : pandas.DataFrame
        Per (threshold_name, probe_group, gallery_group): ``false_candidates``,
        ``nonmated_searches`` of the probe group, ``enrolled`` of the gallery group and
        ``rate = false_candidates / (nonmated_searches * enrolled)``.
    """
    cand = np.asarray(list_candidates).astype(np.int64)
    sc = np.asarray(list_scores, dtype=np.float64)
    nm = np.asarray(nonmated, dtype=bool)
    pg = np.asarray(probe_groups).astype(str)
    gg = np.asarray(gallery_groups).astype(str)
    if cand.shape != sc.shape or nm.shape != (cand.shape[0],) or pg.shape != nm.shape:
        raise DataError(f"false_candidates: shapes {cand.shape}, {sc.shape}, {nm.shape}, {pg.shape} do not match")
    g_names = sorted(set(gg.tolist()))
    p_names = sorted(set(pg.tolist()))
    g_code = {n: i for i, n in enumerate(g_names)}
    gcodes = np.array([g_code[x] for x in gg.tolist()], dtype=np.int64)
    enrolled = np.bincount(gcodes, minlength=len(g_names))
    by_g, cells = [], []
    n_nm = int(nm.sum())
    for name, t in thresholds.items():
        hit = (sc >= t) & nm[:, None] & (cand >= 0)
        rows, cols = np.nonzero(hit)
        hcode = gcodes[cand[rows, cols]]
        per_h = np.bincount(hcode, minlength=len(g_names))
        for i, h in enumerate(g_names):
            fc = int(per_h[i])
            by_g.append({"attribute": attribute, "threshold_name": name, "threshold": float(t), "gallery_group": h,
                         "false_candidates": fc, "enrolled": int(enrolled[i]),
                         "per_enrolled_person": fc / enrolled[i] if enrolled[i] else math.nan,
                         "nonmated_searches": n_nm,
                         "rate": fc / (enrolled[i] * n_nm) if enrolled[i] and n_nm else math.nan})
        for gname in p_names:
            in_g = pg[rows] == gname
            n_g = int((nm & (pg == gname)).sum())
            per_cell = np.bincount(hcode[in_g], minlength=len(g_names))
            for i, h in enumerate(g_names):
                fc = int(per_cell[i])
                cells.append({"attribute": attribute, "threshold_name": name, "threshold": float(t), "probe_group": gname,
                              "gallery_group": h, "false_candidates": fc, "nonmated_searches": n_g,
                              "enrolled": int(enrolled[i]),
                              "rate": fc / (n_g * enrolled[i]) if n_g and enrolled[i] else math.nan})
    return pd.DataFrame(by_g), pd.DataFrame(cells)


def predicted_fpir(fmr: ArrayLike, enrolled: ArrayLike) -> NDArray[np.float64]:
    """FPIR per probe group predicted from 1:1 cross-group FMRs under independence.

    ``FPIR_g(T) = 1 - prod_h (1 - FMR_{g,h}(T)) ** n_h`` (``docs/identification.md``;
    NISTIR 8271 discusses the same binomial approximation). Comparisons sharing a probe
    are not independent, so this is an approximation to show beside measured values.

    Parameters
    ----------
    fmr : array-like of float, shape (n_probe_groups, n_gallery_groups)
        ``FMR_{g,h}`` in [0, 1] at the threshold.
    enrolled : array-like of float, shape (n_gallery_groups,) or (m, n_gallery_groups)
        Enrolled people per gallery group (one composition, or ``m`` of them).

    Returns
    -------
    ndarray of float64, shape (n_probe_groups,) or (m, n_probe_groups)

    Raises
    ------
    DataError
        Rates outside [0, 1] or shapes that do not match.

    Examples
    --------
    >>> predicted_fpir([[0.01, 0.0]], [10, 5]).round(6).tolist()
    [0.095618]
    """
    f = np.asarray(fmr, dtype=np.float64)
    n = np.asarray(enrolled, dtype=np.float64)
    if f.ndim != 2 or n.shape[-1] != f.shape[1]:
        raise DataError(f"predicted_fpir: fmr {f.shape} and enrolled {n.shape} do not match")
    if np.any((f < 0) | (f > 1)):
        raise DataError("predicted_fpir: FMR values must lie in [0, 1]")
    with np.errstate(divide="ignore"):
        log_keep = np.log1p(-f)  # (g, h); -inf where FMR = 1
    return -np.expm1(n @ log_keep.T) if n.ndim == 2 else -np.expm1(log_keep @ n)
