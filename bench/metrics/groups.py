"""Disaggregation of FMR and FNMR over demographic groups of a comparison table.

The comparison table is a :class:`pandas.DataFrame` with one row per comparison and the
columns ``image_a, image_b, subject_a, subject_b`` (str), ``mated`` (bool), ``score``
(float64, similarity) and, for each demographic attribute ``X``, the columns ``X_a`` and
``X_b`` (str labels of the two sides; missing labels are the string ``"missing"``).
Intersectional attributes are ordinary attributes (e.g. ``face_eth&face_gender``).

Group membership (metrics-reference §0, §2.3; design notes "Decisions"):

* a comparison belongs to group ``g`` of attribute ``X`` iff ``X_a == X_b == g``.
  For a mated comparison with per-subject labels this is the subject's group. A mated
  row whose two labels differ (an image-level attribute that changed between the two
  captures) belongs to no group; it still counts in ``"(all)"`` and is logged.
* per-group FMR therefore uses the **diagonal**: non-mated comparisons whose two subjects
  are both in ``g`` ("demographically matched impostors", NISTIR 8280);
* all non-mated comparisons, diagonal or not, enter the cross-group matrix
  (:func:`cross_group_fmr`) and the ``"(all)"`` pseudo-group.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from bench.errors import ConfigError, DataError
from bench.metrics.intervals import (
    clopper_pearson_interval,
    wilson_interval,
    zero_error_upper_bound,
)
from bench.metrics.rates import RULE_OF_30

__all__ = [
    "ALL_GROUP",
    "PER_GROUP_COLUMNS",
    "CROSS_GROUP_COLUMNS",
    "per_group_rates",
    "cross_group_fmr",
    "validate_comparisons",
    "withhold_small_groups",
]

logger = logging.getLogger(__name__)

#: Label of the pseudo-group computed over all comparisons.
ALL_GROUP = "(all)"

#: Columns of :func:`per_group_rates`, in order.
PER_GROUP_COLUMNS = [
    "attribute",
    "group",
    "threshold_name",
    "threshold",
    "metric",
    "errors",
    "comparisons",
    "subjects",
    "rate",
    "wilson_low",
    "wilson_high",
    "cp_low",
    "cp_high",
    "upper_bound_95",
    "flag",
]

#: Columns of :func:`cross_group_fmr`, in order.
CROSS_GROUP_COLUMNS = ["group_a", "group_b", "false_matches", "comparisons", "fmr"]

_BASE_COLUMNS = ("subject_a", "subject_b", "mated", "score")


# ----------------------------------------------------------------------------- validation
def validate_comparisons(comparisons: pd.DataFrame, attribute: str | None = None) -> None:
    """Check the columns the metrics need; raise :class:`DataError` naming the problem.

    Parameters
    ----------
    comparisons : pandas.DataFrame
        Comparison table (module docstring).
    attribute : str, optional
        Attribute ``X`` whose columns ``X_a`` and ``X_b`` must exist and hold no NA.

    Raises
    ------
    DataError
        If a column is missing, ``mated`` is not boolean, ``score`` is not finite, or the
        attribute columns hold NA values.
    """
    if not isinstance(comparisons, pd.DataFrame):
        raise DataError(f"comparisons: expected a pandas DataFrame, got {type(comparisons).__name__}")
    missing = [c for c in _BASE_COLUMNS if c not in comparisons.columns]
    if missing:
        raise DataError(
            f"comparisons: missing column(s) {missing}; expected at least {list(_BASE_COLUMNS)}"
        )
    if not pd.api.types.is_bool_dtype(comparisons["mated"]):
        raise DataError(
            f"comparisons['mated']: expected bool dtype, got {comparisons['mated'].dtype}"
        )
    score = comparisons["score"].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(score)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = ""
        if {"image_a", "image_b"} <= set(comparisons.columns):
            where = f" ({comparisons['image_a'].iloc[i]!r} vs {comparisons['image_b'].iloc[i]!r})"
        raise DataError(
            f"comparisons['score']: {int(bad.sum())} non-finite score(s); first at row {i}"
            f"{where}: {float(score[i])!r}"
        )
    if attribute is not None:
        cols = [f"{attribute}_a", f"{attribute}_b"]
        absent = [c for c in cols if c not in comparisons.columns]
        if absent:
            known = sorted(
                c[:-2] for c in comparisons.columns if c.endswith("_a") and f"{c[:-2]}_b" in comparisons.columns
            )
            known = [k for k in known if k not in ("image", "subject")]
            raise DataError(
                f"comparisons: attribute {attribute!r} needs columns {cols}, missing {absent}; "
                f"attributes present: {known}"
            )
        for c in cols:
            n_na = int(comparisons[c].isna().sum())
            if n_na:
                raise DataError(
                    f"comparisons[{c!r}]: {n_na} NA label(s); missing labels must arrive as "
                    "the string 'missing'"
                )


def _labels(comparisons: pd.DataFrame, attribute: str) -> tuple[np.ndarray, np.ndarray]:
    a = comparisons[f"{attribute}_a"].astype(str).to_numpy()
    b = comparisons[f"{attribute}_b"].astype(str).to_numpy()
    return a, b


def _check_thresholds(thresholds: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(thresholds, Mapping) or not thresholds:
        raise ConfigError(f"thresholds: expected a non-empty mapping name -> value, got {thresholds!r}")
    out: dict[str, float] = {}
    for name, value in thresholds.items():
        try:
            t = float(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"thresholds[{name!r}]: expected a number, got {value!r}") from err
        if math.isnan(t):
            raise ConfigError(f"thresholds[{name!r}]: got NaN")
        out[str(name)] = t
    return out


def _flag(errors: int, n: int) -> str:
    if n == 0:
        return "no_comparisons"
    if errors == 0:
        return "zero_errors"
    if errors < RULE_OF_30:
        return "low_precision"
    return ""


# ----------------------------------------------------------------------------- per group
def per_group_rates(
    comparisons: pd.DataFrame,
    *,
    attribute: str,
    thresholds: Mapping[str, float],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per-group FMR and FNMR at named thresholds, with counts, intervals and flags.

    Parameters
    ----------
    comparisons : pandas.DataFrame
        Comparison table (module docstring), one row per comparison.
    attribute : str
        Demographic attribute ``X``; columns ``X_a`` and ``X_b`` must exist.
    thresholds : mapping of str to float
        Named decision thresholds (e.g. ``{"fmr=1e-3": 0.41}``), applied to every group
        (one global threshold, NIST practice, metrics-reference §2.3). Match iff
        ``score >= threshold``.
    confidence : float in (0, 1), default 0.95
        Two-sided level of the Wilson and Clopper–Pearson intervals.

    Returns
    -------
    pandas.DataFrame
        One row per (group, threshold_name, metric), columns :data:`PER_GROUP_COLUMNS`:

        - ``group``: the ``"(all)"`` pseudo-group first (all mated rows / all non-mated
          rows), then every label seen in ``X_a`` or ``X_b``, sorted by name;
        - ``threshold_name`` in the mapping's order; ``metric`` ``"FMR"`` then ``"FNMR"``;
        - ``errors`` / ``comparisons`` (int), ``rate = errors / comparisons`` (NaN if 0);
        - ``subjects``: distinct subjects involved (both sides for FMR);
        - ``wilson_*``, ``cp_*``: binomial intervals at ``confidence`` -- floors on the
          true uncertainty (§5.1); use the subject bootstrap for headline intervals;
        - ``upper_bound_95``: one-sided 95% bound ``1 - 0.05^(1/n)`` (rule of 3, §5.5)
          for zero-error rows, else NaN;
        - ``flag``: ``"no_comparisons"``, ``"zero_errors"``, ``"low_precision"`` (fewer
          than 30 errors, rule of 30, §5.5) or ``""``.

        Per group, FNMR uses mated rows with ``X_a == X_b == g``; FMR uses non-mated rows
        with both subjects in ``g`` (diagonal, §0).

    Raises
    ------
    DataError
        If the table lacks a column, has a non-bool ``mated`` column, non-finite scores
        or NA labels.
    ConfigError
        If ``thresholds`` is empty or holds NaN, or ``confidence`` is not in (0, 1).
    """
    validate_comparisons(comparisons, attribute)
    ths = _check_thresholds(thresholds)
    la, lb = _labels(comparisons, attribute)
    mated = comparisons["mated"].to_numpy(dtype=bool)
    score = comparisons["score"].to_numpy(dtype=np.float64)
    subj_a = comparisons["subject_a"].astype(str).to_numpy()
    subj_b = comparisons["subject_b"].astype(str).to_numpy()
    same = la == lb

    n_split = int(np.count_nonzero(mated & ~same))
    if n_split:
        logger.warning(
            "%s: %d mated comparison(s) have different labels on the two images; they "
            "count in %r but in no group", attribute, n_split, ALL_GROUP,
        )

    groups = sorted(set(la.tolist()) | set(lb.tolist()))
    # (group label, row mask for FNMR, row mask for FMR)
    selections: list[tuple[str, np.ndarray, np.ndarray]] = [(ALL_GROUP, mated, ~mated)]
    for g in groups:
        in_g = same & (la == g)
        selections.append((g, mated & in_g, ~mated & in_g))

    records: list[dict[str, object]] = []
    for g, fnmr_mask, fmr_mask in selections:
        fmr_scores = score[fmr_mask]
        fnmr_scores = score[fnmr_mask]
        fmr_subjects = len(set(subj_a[fmr_mask].tolist()) | set(subj_b[fmr_mask].tolist()))
        fnmr_subjects = len(set(subj_a[fnmr_mask].tolist()) | set(subj_b[fnmr_mask].tolist()))
        for name, t in ths.items():
            for metric, errors, n, subjects in (
                ("FMR", int(np.count_nonzero(fmr_scores >= t)), int(fmr_scores.size), fmr_subjects),
                ("FNMR", int(np.count_nonzero(fnmr_scores < t)), int(fnmr_scores.size), fnmr_subjects),
            ):
                records.append(
                    {
                        "attribute": attribute,
                        "group": g,
                        "threshold_name": name,
                        "threshold": t,
                        "metric": metric,
                        "errors": errors,
                        "comparisons": n,
                        "subjects": subjects,
                    }
                )
    out = pd.DataFrame.from_records(records)
    errors = out["errors"].to_numpy()
    n = out["comparisons"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rate"] = np.where(n > 0, errors / np.maximum(n, 1), np.nan)
    out["wilson_low"], out["wilson_high"] = wilson_interval(errors, n, confidence=confidence)
    out["cp_low"], out["cp_high"] = clopper_pearson_interval(errors, n, confidence=confidence)
    out["upper_bound_95"] = np.where(
        (errors == 0) & (n > 0), zero_error_upper_bound(n, confidence=0.95), np.nan
    )
    out["flag"] = [_flag(int(e), int(m)) for e, m in zip(errors, n)]
    out = out.astype(
        {"errors": "int64", "comparisons": "int64", "subjects": "int64", "threshold": "float64"}
    )
    return out[PER_GROUP_COLUMNS].reset_index(drop=True)


# ----------------------------------------------------------------------------- cross-group
def cross_group_fmr(
    comparisons: pd.DataFrame, *, attribute: str, threshold: float
) -> pd.DataFrame:
    """Cross-group FMR matrix in long form (metrics-reference §2.1, §2.3 item 4).

    Cell ``(g, h)`` is the FMR over non-mated comparisons with one subject in ``g`` and
    the other in ``h``. fvbench's non-mated comparisons are **unordered** image pairs
    (no separate reference and probe sets), so ``(g, h)`` and ``(h, g)`` are the same
    set of comparisons: the matrix is symmetric by construction. (NIST's matrix is not
    symmetric because its enrolment and verification sets differ.)

    Parameters
    ----------
    comparisons : pandas.DataFrame
        Comparison table (module docstring).
    attribute : str
        Attribute ``X`` with columns ``X_a``, ``X_b``.
    threshold : float
        Decision threshold; false match iff ``score >= threshold``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CROSS_GROUP_COLUMNS`; one row per ordered cell ``(g, h)`` over all
        labels seen in ``X_a`` or ``X_b`` (``G*G`` rows, sorted by ``group_a, group_b``);
        ``(g, h)`` and ``(h, g)`` carry the same counts, each diagonal cell appears once.
        ``fmr`` is NaN for cells with no comparisons. Summing ``comparisons`` over the
        upper triangle (``group_a <= group_b``) gives the number of non-mated rows.

    Raises
    ------
    DataError
        As :func:`validate_comparisons`.
    ConfigError
        If ``threshold`` is NaN.
    """
    validate_comparisons(comparisons, attribute)
    t = _check_thresholds({"threshold": threshold})["threshold"]
    la, lb = _labels(comparisons, attribute)
    groups = sorted(set(la.tolist()) | set(lb.tolist()))
    index = {g: i for i, g in enumerate(groups)}
    nonmated = ~comparisons["mated"].to_numpy(dtype=bool)
    score = comparisons["score"].to_numpy(dtype=np.float64)[nonmated]
    ia = np.fromiter((index[g] for g in la[nonmated]), dtype=np.int64, count=int(nonmated.sum()))
    ib = np.fromiter((index[g] for g in lb[nonmated]), dtype=np.int64, count=int(nonmated.sum()))
    lo = np.minimum(ia, ib)
    hi = np.maximum(ia, ib)
    size = len(groups)
    flat = lo * size + hi
    n = np.bincount(flat, minlength=size * size).reshape(size, size)
    e = np.bincount(flat, weights=(score >= t).astype(np.float64), minlength=size * size)
    e = np.rint(e).astype(np.int64).reshape(size, size)
    # fold the upper triangle into a symmetric matrix
    n = n + np.triu(n, 1).T
    e = e + np.triu(e, 1).T
    ga, gb = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    n_flat = n.ravel()
    e_flat = e.ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        fmr = np.where(n_flat > 0, e_flat / np.maximum(n_flat, 1), np.nan)
    return pd.DataFrame(
        {
            "group_a": [groups[i] for i in ga.ravel()],
            "group_b": [groups[i] for i in gb.ravel()],
            "false_matches": e_flat.astype(np.int64),
            "comparisons": n_flat.astype(np.int64),
            "fmr": fmr,
        },
        columns=CROSS_GROUP_COLUMNS,
    )


# ----------------------------------------------------------------------------- publication privacy
def withhold_small_groups(
    subject_ids: pd.Series | np.ndarray, labels: pd.DataFrame, min_subjects: int, contributors=None,
) -> tuple[np.ndarray, dict]:
    """Which images may enter published numbers: subjects of small groups are withheld.

    Design (issue #9; brief: "never publishes ... anything from which one person's
    result can be derived"). Blanking a small group's cells does not protect it:
    ``(all)`` minus the visible groups, a marginal minus the visible intersection
    cells, or a threshold's ``k`` minus the visible counts gives the blanked value
    back (complementary suppression does not help when the pooled total is 0).
    Instead every subject who belongs, in any reported attribute (intersections
    included), to a group with fewer than ``min_subjects`` subjects is **withheld**:
    their images and comparisons enter no published number -- rates, counts,
    thresholds, intervals, differentials, the cross-group matrix, figures. Published
    files are then the same whatever the withheld subjects' outcomes, so none can be
    derived; only their number (a fact of the manifest, not a result) is published.

    Withholding can shrink another group below ``min_subjects`` (a subject is in one
    group per attribute), so the rule is applied until nothing changes; the
    published population then has every group at ``>= min_subjects`` subjects.

    Parameters
    ----------
    subject_ids : Series or ndarray
        Shape (n_images,), subject of each image.
    labels : pandas.DataFrame
        Shape (n_images, n_attributes): group label per image and reported attribute
        (as :meth:`bench.data.manifest.Manifest.group_labels`).
    min_subjects : int
        Smallest group (distinct subjects) whose members are published; ``<= 1``
        withholds no one.
    contributors : callable, optional
        ``published -> contributes``: bool arrays of shape (n_images,); True for published
        images of a subject with at least one scored mated comparison under the run's
        design (:func:`bench.protocol.mated_contributors.mated_contributors`). None
        applies the group-size rule only.

    Raises
    ------
    ConfigError
        If ``min_subjects`` is not an integer in ``[1, 1e6]``.
    DataError
        If ``subject_ids`` and ``labels`` differ in length.

    Returns
    -------
    keep : numpy.ndarray of bool
        Shape (n_images,): True for images of published subjects.
    record : dict
        ``min_group_subjects``, ``subjects`` and ``images`` withheld, and ``groups``:
        attribute -> {group: subjects in the manifest} of every group whose subjects
        were all or partly withheld because it was (or became) small; ``groups_mated``:
        attribute -> {group: subjects contributing scored mated comparisons} of every
        group (``"(all)"`` included) whose 1 to ``min_subjects - 1`` contributors were
        withheld. Counts only, never who.
    """
    subj = np.asarray(pd.Series(subject_ids).astype(str))
    if len(subj) != len(labels):
        raise DataError(f"withhold_small_groups: {len(subj)} subject ids for {len(labels)} label rows")
    from bench.limits import check_int

    min_subjects = check_int("report.min_group_subjects", min_subjects, 1, 1_000_000)
    keep = np.ones(len(subj), dtype=bool)
    groups: dict[str, dict[str, int]] = {}
    mated_groups: dict[str, dict[str, int]] = {}
    full_sizes = {
        a: pd.DataFrame({"s": subj, "g": labels[a].astype(str).to_numpy()}).drop_duplicates().groupby("g")["s"].size().to_dict()
        for a in labels.columns
    }
    changed = min_subjects > 1
    while changed:
        changed = False
        for a in labels.columns:
            g = labels[a].astype(str).to_numpy()
            kept = pd.DataFrame({"s": subj[keep], "g": g[keep]}).drop_duplicates()
            sizes = kept.groupby("g")["s"].size()
            small = sizes[sizes < min_subjects].index
            if len(small):
                out = set(kept.loc[kept["g"].isin(small), "s"])
                keep &= ~np.isin(subj, list(out))
                for name in small:
                    groups.setdefault(a, {})[str(name)] = int(full_sizes[a][name])
                changed = True
        if contributors is not None and not changed:  # the people behind each FNMR (docs/protocol.md §6.2)
            contrib = np.asarray(contributors(keep), dtype=bool) & keep
            cols = [(ALL_GROUP, np.full(len(subj), ALL_GROUP, dtype=object))]
            cols += [(a, labels[a].astype(str).to_numpy()) for a in labels.columns]
            for a, g in cols:
                who = pd.DataFrame({"s": subj[contrib], "g": g[contrib]}).drop_duplicates()
                sizes = who.groupby("g")["s"].size()
                few = sizes[(sizes >= 1) & (sizes < min_subjects)].index
                if len(few):
                    out = set(who.loc[who["g"].isin(few), "s"])
                    keep &= ~np.isin(subj, list(out))
                    for name in few:
                        mated_groups.setdefault(a, {})[str(name)] = int(sizes[name])
                    changed = True
                    break
    record = {
        "min_group_subjects": min_subjects,
        "subjects": int(len(set(subj[~keep]))),
        "images": int((~keep).sum()),
        "groups": {a: dict(sorted(v.items())) for a, v in groups.items()},
        "groups_mated": {a: dict(sorted(v.items())) for a, v in mated_groups.items()},
    }
    if record["subjects"]:
        logger.warning(
            "withheld %d subject(s) (%d image(s)) from every published number: they belong to groups with fewer than %d subjects %s"
            "%s", record["subjects"], record["images"], min_subjects, record["groups"],
            f", or are the only 1 to {min_subjects - 1} subjects with scored mated comparisons in groups {record['groups_mated']}"
            if record["groups_mated"] else "",
        )
    return keep, record
