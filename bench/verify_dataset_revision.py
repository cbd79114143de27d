"""``fvbench-verify --dataset-metadata NEWER.csv``: is the run's dataset release still current?

FHIBE is re-released (monthly) without the people who withdrew their consent
(``SonyResearch/fhibe_evaluation_api`` README). A FHIBE run records its release in
``metrics.json`` (``dataset.provenance``: ``version``, ``metadata_sha256``,
``subject_set_sha256``; :func:`bench.data.fhibe.load_fhibe`). Given a newer release's
metadata file, :func:`check_dataset_revision` compares:

- same metadata bytes: ``ok`` (the run's release is the one given);
- otherwise the result was computed on a release that has since been revised:
  ``mismatch`` (exit status 1), stating both versions and how many of the run's people
  the newer release no longer holds. The count is exact when the run's own metadata is
  still at the dataset root (``--dataset-root`` or the recorded root, recognised by its
  SHA-256); otherwise it is the difference of the subject counts (re-releases only
  remove people). Nobody is named: only counts and digests are printed.

The newer file is read as data (:func:`bench.data.fhibe.read_fhibe_metadata`); nothing
it names is opened, imported or executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.data.consented import file_sha256, subject_set_sha256
from bench.data.fhibe import METADATA, _VERSION, read_fhibe_metadata
from bench.errors import BenchError
from bench.verify_core import Check

__all__ = ["check_dataset_revision", "records_release"]

NAME = "dataset release (--dataset-metadata)"


def _version_of(metadata: Path) -> str | None:
    """Version from ``fhibe.<version>_downsampled_public/data/processed/.../x.csv``, if the path has one."""
    for parent in metadata.resolve().parents:
        m = _VERSION.match(parent.name)
        if m:
            return m.group(1)
    return None


def records_release(metrics: dict) -> bool:
    """Whether a run's ``metrics.json`` records a dataset release that
    :func:`check_dataset_revision` can compare (``dataset.provenance`` with the subject-set
    and metadata SHA-256: a FHIBE run)."""
    ds = metrics.get("dataset") if isinstance(metrics.get("dataset"), dict) else {}
    prov = ds.get("provenance") if isinstance(ds.get("provenance"), dict) else {}
    return isinstance(prov.get("subject_set_sha256"), str) and isinstance(prov.get("metadata_sha256"), str)


def check_dataset_revision(metrics: dict, config: dict, metadata: str | Path, dataset_root: str | Path | None = None) -> Check:
    """Compare the run's recorded FHIBE release with a (newer) metadata file.

    Parameters
    ----------
    metrics : dict
        The run's ``metrics.json`` (already read as plain JSON).
    config : dict
        The run's recorded config (``dataset.loader`` gives the root and the multi-person rule).
    metadata : path
        A FHIBE ``fhibe_face_crop_align.csv`` of the release to compare with.
    dataset_root : path, optional
        Where the run's own release is now (for the exact count of people dropped).

    Returns
    -------
    Check
        ``ok`` same release; ``mismatch`` revised since (versions and the count of people
        dropped, never who); ``skipped`` the run records no release (not a FHIBE run).
    """
    ds = metrics.get("dataset") if isinstance(metrics.get("dataset"), dict) else {}
    prov = ds.get("provenance") if isinstance(ds.get("provenance"), dict) else {}
    if not isinstance(prov.get("subject_set_sha256"), str) or not isinstance(prov.get("metadata_sha256"), str):
        return Check(NAME, "skipped", "the run records no dataset release (dataset.provenance.version / subject_set_sha256): not a FHIBE run")
    loader = ((config.get("dataset") or {}).get("loader") or {}) if isinstance(config.get("dataset"), dict) else {}
    drop_multi = loader.get("drop_multiple_subjects", True) if isinstance(loader, dict) else True
    drop_multi = drop_multi if isinstance(drop_multi, bool) else True
    path = Path(metadata)
    try:
        newer, _ = read_fhibe_metadata(path, drop_multiple_subjects=drop_multi)
        newer_sha = file_sha256(path)
    except (BenchError, OSError) as err:
        return Check(NAME, "mismatch", f"cannot read the metadata given with --dataset-metadata: {str(err).splitlines()[0][:200]}")
    run_version = str(prov.get("version"))
    new_version = _version_of(path) or "(not in the path)"
    if newer_sha == prov["metadata_sha256"]:
        return Check(NAME, "ok", f"the given metadata is the run's release {run_version} (SHA-256 {newer_sha[:12]}...)")
    new_ids = set(newer["subject_id"].astype(str))
    n_run = ds.get("subjects") if isinstance(ds.get("subjects"), int) else None
    # exact count when the run's own metadata is still at hand
    old_ids = None
    root = dataset_root if dataset_root is not None else (loader.get("root") if isinstance(loader, dict) else None)
    if isinstance(root, (str, Path)) and str(root):
        old_csv = Path(root).expanduser() / METADATA
        try:
            if old_csv.is_file() and file_sha256(old_csv) == prov["metadata_sha256"]:
                old, _ = read_fhibe_metadata(old_csv, drop_multiple_subjects=drop_multi)
                old_ids = set(old["subject_id"].astype(str))
        except (BenchError, OSError):
            old_ids = None
    same_people = subject_set_sha256(new_ids) == prov["subject_set_sha256"]
    if old_ids is not None and subject_set_sha256(old_ids) == prov["subject_set_sha256"]:
        dropped, added = len(old_ids - new_ids), len(new_ids - old_ids)
        count = f"{dropped} of the run's {len(old_ids)} subjects are no longer in it" + (f", {added} are new" if added else "") + " (exact: the run's metadata is at the dataset root)"
    elif same_people:
        count = "it holds the same subjects (the labels or images listed changed)"
    elif n_run is not None:
        count = (f"{max(n_run - len(new_ids), 0)} of the run's {n_run} subjects are no longer in it (subject counts {n_run} -> {len(new_ids)}; "
                 "re-releases only remove people who withdrew consent; pass --dataset-root with the run's release for the exact count)")
    else:
        count = f"its subject set differs from the run's ({len(new_ids)} subjects now)"
    return Check(NAME, "mismatch",
                 f"the result was computed on release {run_version}, since revised (given: {new_version}, metadata SHA-256 {newer_sha[:12]}... "
                 f"vs the run's {prov['metadata_sha256'][:12]}...): {count}. Recompute on the current release and delete the old one "
                 "(people who withdrew consent must not stay in published results).")
