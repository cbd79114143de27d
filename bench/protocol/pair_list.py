"""Pair-list protocol: the comparisons of a run given as a list of (image, image, mated) lines.

The 1:1 protocol normally forms every pair of acquired images (:func:`bench.protocol.pairs.all_pairs`).
With ``protocol.pair_list=FILE`` the comparisons are exactly the lines of FILE instead, and
everything downstream (thresholds, per-group rates, intervals, differentials, figures) is
unchanged. Three formats are read, detected from the content (docs/protocol.md §10):

``fvbench``
    What every table-engine run writes into its folder (:data:`PAIR_LIST_FILE`): optional
    ``#`` comment lines (provenance), then the CSV header ``image_a,image_b,mated`` and one
    line per comparison; ``mated`` is ``1`` or ``0``. Image keys are paths relative to the
    dataset root (the manifest ``path`` column, ``/``-separated), never absolute.
``rfw``
    An official RFW ``<Race>_pairs.txt`` (Wang et al., ICCV 2019): tab-separated, mated
    ``id n1 n2``, non-mated ``id1 n1 id2 n2``; ``n`` are image numbers, keys become
    ``<Race>/<id>/<id>_<nnnn>.jpg`` (the layout of ``test/data``; ../shared sources §7).
    The race comes from the file name.
``bfw``
    A BFW ``bfw-*-datatable.csv`` (Robinson et al., CVPR-W 2020): CSV with at least the
    columns ``p1, p2, label`` (1 = mated); keys are ``p1``/``p2`` as written.

Every list is hostile input: a malformed line, a key that is absolute or escapes the root, an
image the dataset does not have, a pair of an image with itself, a repeated pair (either
order), a ``mated`` flag that contradicts the dataset's subject labels (refused: the metrics
and the subject bootstrap need the subjects to be right), a line over
:data:`MAX_LINE_CHARS`, more than :data:`MAX_PAIRS` pairs or more than :data:`MAX_TEXT_BYTES`
of text (gzip bombs included) -- each is refused with one line naming ``file:line`` and what
was expected, before any image is embedded where the dataset has image files.

Pairs touching an image that failed to acquire are kept in the design, counted per group
(``lost_mated`` / ``lost_nonmated``) and folded into the generalized rates as ISO/IEC 19795-1
and NIST do (:func:`bench.metrics.fta.generalized_rates`), never silently dropped.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
import pandas as pd

from bench.protocol.pair_list_scenario import check_pair_list_scenario, recorded_scenario
from bench.errors import ConfigError, DataError
from bench.protocol.pair_list_source import PairListSource  # hashing, gzip, text and line-length caps

__all__ = [
    "PAIR_LIST_FILE", "PAIR_LIST_HEADER", "FORMATS", "MAX_LINE_CHARS", "MAX_PAIRS", "MAX_TEXT_BYTES",
    "PairList", "ResolvedPairs", "read_pair_list", "read_pair_lists", "resolve_pairs", "write_pair_list",
    "lost_pairs_by_group", "all_pair_design", "rfw_image_key", "PairDesign", "check_protocol_pair_list",
    "load_for_dataset", "write_run_pair_list",
]

#: File name of the pair list a run writes into its folder.
PAIR_LIST_FILE = "pairs.csv.gz"
#: Header line of the fvbench format.
PAIR_LIST_HEADER = "image_a,image_b,mated"
#: Formats :func:`read_pair_list` detects.
FORMATS = ("fvbench", "rfw", "bfw")
#: Longest accepted line (characters); RFW/BFW lines are under 300.
MAX_LINE_CHARS = 4096
#: Most pairs in one run's list: the table engine holds every comparison in memory (about 1 kB
#: per pair while parsing and scoring; 2e7 pairs is 4x the default table_max_comparisons).
MAX_PAIRS = 20_000_000
#: Most decompressed text read from one file (bytes): 4 GiB, 40x the BFW v0.1.5 data table.
MAX_TEXT_BYTES = 4 * 2**30

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RFW_NAME = re.compile(r"^([A-Za-z]+)_pairs\.txt$")


@dataclass(frozen=True)
class PairList:
    """Parsed comparisons, in file order.

    Attributes
    ----------
    key_a, key_b : numpy.ndarray
        Shape (n_pairs,), object (str): image keys, paths relative to the dataset root.
    mated : numpy.ndarray
        Shape (n_pairs,), bool, as the file states it.
    file_index : numpy.ndarray
        Shape (n_pairs,), int: which of :attr:`files` each pair came from.
    line : numpy.ndarray
        Shape (n_pairs,), int: 1-based line number in that file (for error messages).
    files : tuple of str
        File names as given (for messages; recorded as names only).
    formats : tuple of str
        Detected format per file (:data:`FORMATS`).
    sha256 : tuple of str
        SHA-256 of each file's bytes as read (compressed bytes for ``.gz``).
    comments : tuple of str
        ``#`` lines of fvbench-format files (provenance of the writer).
    scenarios : tuple of (str or None)
        Per file, the scenario of the run that wrote it (:mod:`bench.protocol.pair_list_scenario`).
    """

    key_a: np.ndarray
    key_b: np.ndarray
    mated: np.ndarray
    file_index: np.ndarray
    line: np.ndarray
    files: tuple[str, ...]
    formats: tuple[str, ...]
    sha256: tuple[str, ...]
    comments: tuple[str, ...] = field(default=())
    scenarios: tuple[str | None, ...] = field(default=())

    def __len__(self) -> int:
        return int(self.mated.size)

    def where(self, i: int) -> str:
        """``file:line`` of pair ``i``."""
        return f"{self.files[int(self.file_index[i])]}:{int(self.line[i])}"

    def info(self) -> dict:
        """What ``metrics.json`` records about the list (file names only, hashes, counts)."""
        return {
            "files": [Path(f).name for f in self.files],
            "formats": list(self.formats),
            "sha256": list(self.sha256),
            "pairs_listed": len(self),
            "mated_listed": int(self.mated.sum()),
            "nonmated_listed": int((~self.mated).sum()),
        }


@dataclass(frozen=True)
class ResolvedPairs:
    """A pair list matched to a run's published images.

    Attributes
    ----------
    idx_a, idx_b : numpy.ndarray
        Shape (n_pairs,), int64: rows of the published manifest table (all images,
        acquired or not), in file order; pairs touching a withheld subject are removed.
    mated : numpy.ndarray
        Shape (n_pairs,), bool.
    pairs_withheld : int
        Listed pairs left out because an image belongs to a withheld (small-group) subject.
    listed : PairList or None
        The parsed list these pairs come from.
    design : str
        How the pairs were formed, in words, when no listed file gave them (e.g. a
        scenario's reference x probe design); recorded in ``metrics.json`` and the report.
    """

    idx_a: np.ndarray
    idx_b: np.ndarray
    mated: np.ndarray
    pairs_withheld: int = 0
    listed: PairList | None = None
    design: str = ""


# --------------------------------------------------------------------------- reading
def _decode(raw: bytes, name: str, n: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{name}:{n}: not UTF-8 text ({err.reason}); expected a pair list") from None


def _check_key(key: str, where: str) -> str:
    """A relative, normalised, printable image key; refuse anything else."""
    k = key.strip()
    if not k:
        raise DataError(f"{where}: empty image key; expected a path relative to the dataset root")
    if _CONTROL.search(k):
        raise DataError(f"{where}: image key {k!r} holds a control character; expected printable text")
    if len(k) > MAX_LINE_CHARS:
        raise DataError(f"{where}: image key longer than {MAX_LINE_CHARS} characters; expected a path relative to the dataset root")
    k = k.replace("\\", "/")
    p = PurePosixPath(k)
    if p.is_absolute() or re.match(r"^[A-Za-z]:", k):
        raise DataError(f"{where}: image key {k!r} is absolute; expected a path relative to the dataset root")
    if ".." in p.parts:
        raise DataError(f"{where}: image key {k!r} leaves the dataset root ('..'); expected a path inside it")
    return p.as_posix()


def rfw_image_key(race: str, subject: str, number: int) -> str:
    """Key of RFW image ``number`` of ``subject`` in race subset ``race``: ``<Race>/<id>/<id>_<nnnn>.jpg``."""
    return f"{race}/{subject}/{subject}_{int(number):04d}.jpg"


def _detect(first: str, name: str) -> str:
    s = first.lstrip("\ufeff").strip()
    if s.startswith("#") or s.replace(" ", "") == PAIR_LIST_HEADER:
        return "fvbench"
    cols = [c.strip() for c in next(csv.reader([s]))] if s else []
    if {"p1", "p2", "label"} <= set(cols):
        return "bfw"
    if "\t" in s or _RFW_NAME.match(Path(name).name):
        return "rfw"
    raise DataError(
        f"{name}:1: unrecognised pair list; expected the fvbench header {PAIR_LIST_HEADER!r}, a BFW datatable header "
        f"with columns p1,p2,label, or RFW '<Race>_pairs.txt' tab-separated lines; got {s[:80]!r}"
    )


def _read_line(src: io.BufferedReader, name: str, n: int) -> str | None:
    raw = src.readline(MAX_LINE_CHARS + 2)
    if not raw:
        return None
    if len(raw) > MAX_LINE_CHARS and not raw.endswith(b"\n"):
        raise DataError(f"{name}:{n}: line longer than {MAX_LINE_CHARS} characters; expected one pair per line")
    return _decode(raw, name, n)


def _csv_rows(src: io.BufferedReader, name: str, columns: list[str], start: int, what: str) -> pd.DataFrame:
    """The CSV body after the header (C parser, at most :data:`MAX_PAIRS` + 1 rows); ``line`` = 1-based file line."""
    try:
        df = pd.read_csv(src, header=None, names=columns, dtype=str, keep_default_na=False, skip_blank_lines=False,
                         encoding="utf-8", engine="c", na_filter=False, nrows=MAX_PAIRS + 1)
    except pd.errors.EmptyDataError:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in [*columns, "line"]})
    except pd.errors.ParserError as err:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        if m:
            raise DataError(f"{name}:{start + int(m.group(2))}: expected {m.group(1)} comma-separated fields ({what}), "
                            f"got {m.group(3)}") from None
        raise DataError(f"{name}: not a CSV pair list ({str(err).splitlines()[-1][:120]}); expected {what}") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{name}: not UTF-8 text ({err.reason}); expected a pair list") from None
    df["line"] = np.arange(len(df), dtype=np.int64) + start + 1
    if len(df) > MAX_PAIRS:
        _room(MAX_PAIRS, name, start + MAX_PAIRS + 1)
    blank = (df[columns] == "").all(axis=1)
    df = df[~blank]
    short = (df[columns] == "").any(axis=1)
    if short.any():
        r = df[short].iloc[0]
        raise DataError(f"{name}:{int(r['line'])}: a field is empty or missing; expected {len(columns)} comma-separated fields ({what})")
    return df


def _keys(col: pd.Series, lines: np.ndarray, name: str) -> np.ndarray:
    """Checked, normalised keys of a column (each distinct key checked once)."""
    codes, uniq = pd.factorize(col, sort=False)
    checked = []
    for j, k in enumerate(uniq):
        try:
            checked.append(_check_key(str(k), ""))
        except DataError as err:
            i = int(np.flatnonzero(codes == j)[0])
            raise DataError(f"{name}:{int(lines[i])}{err}") from None
    return np.asarray(checked, dtype=object)[codes]


def _parse_fvbench(src: io.BufferedReader, name: str, first: str, n: int, comments: list) -> pd.DataFrame:
    ln: str | None = first
    while ln is not None and ln.lstrip("\ufeff").startswith("#"):
        comments.append(ln.lstrip("\ufeff").rstrip("\r\n"))
        n += 1
        ln = _read_line(src, name, n)
    if ln is None or ln.strip().replace(" ", "") != PAIR_LIST_HEADER:
        raise DataError(f"{name}:{n}: expected the header {PAIR_LIST_HEADER!r}, got {(ln or '').strip()[:80]!r}")
    df = _csv_rows(src, name, ["image_a", "image_b", "mated"], n, PAIR_LIST_HEADER)
    m = df["mated"].str.strip().str.lower()
    bad = ~m.isin(["1", "0", "true", "false"])
    if bad.any():
        r = df[bad].iloc[0]
        raise DataError(f"{name}:{int(r['line'])}: mated must be 1 or 0, got {r['mated'][:20]!r}")
    lines = df["line"].to_numpy()
    return pd.DataFrame({"a": _keys(df["image_a"], lines, name), "b": _keys(df["image_b"], lines, name),
                         "m": m.isin(["1", "true"]).to_numpy(), "line": lines})


def _parse_bfw(src: io.BufferedReader, name: str, first: str) -> pd.DataFrame:
    header = [c.strip() for c in next(csv.reader([first.lstrip("\ufeff").rstrip("\r\n")]))]
    if len(set(header)) != len(header):
        raise DataError(f"{name}:1: repeated column names in the header {header}")
    df = _csv_rows(src, name, header, 1, f"{len(header)} fields as in the header")
    lab = df["label"].str.strip()
    bad = ~lab.isin(["0", "1", "0.0", "1.0"])
    if bad.any():
        r = df[bad].iloc[0]
        raise DataError(f"{name}:{int(r['line'])}: label must be 1 (mated) or 0 (non-mated), got {r['label'][:20]!r}")
    lines = df["line"].to_numpy()
    return pd.DataFrame({"a": _keys(df["p1"], lines, name), "b": _keys(df["p2"], lines, name),
                         "m": lab.str.startswith("1").to_numpy(), "line": lines})


def _parse_rfw(src: io.BufferedReader, name: str, first: str, n: int) -> pd.DataFrame:
    m = _RFW_NAME.match(Path(name).name)
    if not m:
        raise DataError(f"{name}: an RFW pair list must be named '<Race>_pairs.txt' (the race subset folder); got {Path(name).name!r}")
    race = m.group(1)
    out = []
    ln: str | None = first
    while ln is not None:
        s = ln.strip()
        if s:
            f = s.split()
            if len(f) not in (3, 4):
                raise DataError(
                    f"{name}:{n}: expected 3 tab-separated fields (mated: id n1 n2) or 4 (non-mated: id1 n1 id2 n2), "
                    f"got {len(f)}: {s[:80]!r}")
            nums = (f[1], f[2]) if len(f) == 3 else (f[1], f[3])
            if not all(x.isdigit() for x in nums):
                raise DataError(f"{name}:{n}: image numbers must be non-negative integers (id n1 n2 / id1 n1 id2 n2), got {s[:80]!r}")
            if len(f) == 3:
                a, b, mated = rfw_image_key(race, f[0], int(f[1])), rfw_image_key(race, f[0], int(f[2])), True
            else:
                a, b, mated = rfw_image_key(race, f[0], int(f[1])), rfw_image_key(race, f[2], int(f[3])), False
            _room(len(out), name, n)
            out.append((_check_key(a, f"{name}:{n}"), _check_key(b, f"{name}:{n}"), mated, n))
        n += 1
        ln = _read_line(src, name, n)
    return pd.DataFrame(out, columns=["a", "b", "m", "line"])


def _room(have: int, name: str, n: int) -> None:
    if have >= MAX_PAIRS:
        raise DataError(f"{name}:{n}: more than {MAX_PAIRS:,} pairs; a table-engine run cannot hold them (split the list)")


def read_pair_list(path: str | Path, *, fmt: str = "auto") -> PairList:
    """Parse one pair-list file (format detected from its first line unless ``fmt`` is given).

    Parameters
    ----------
    path : str or pathlib.Path
        ``.csv``, ``.txt``, or either gzip-compressed (detected by its magic bytes).
    fmt : {"auto", "fvbench", "rfw", "bfw"}

    Returns
    -------
    PairList

    Raises
    ------
    ConfigError
        Missing/unreadable file or unknown ``fmt``.
    DataError
        Malformed content, named ``file:line`` with what was expected; an empty list;
        more than :data:`MAX_PAIRS` pairs; a repeated pair; a pair of an image with itself.
    """
    return read_pair_lists([path], fmt=fmt)


def read_pair_lists(paths: Sequence[str | Path] | str | Path, *, fmt: str = "auto") -> PairList:
    """:func:`read_pair_list` of several files concatenated (e.g. the four RFW race subsets).

    Duplicates and self-pairs are checked across all the files.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise ConfigError("protocol.pair_list: empty list of files")
    if fmt not in ("auto", *FORMATS):
        raise ConfigError(f"protocol.pair_list format must be one of {['auto', *FORMATS]}, got {fmt!r}")
    parts: list[pd.DataFrame] = []
    formats, hashes, comments, scenarios, names, total = [], [], [], [], [], 0  # scenarios: per file (pair_list_scenario)
    for fi, p in enumerate(paths):
        p = Path(str(p)).expanduser()
        name = str(p)  # messages name the file as given
        names.append(name)
        source = PairListSource(p, max_text_bytes=MAX_TEXT_BYTES, max_line_chars=MAX_LINE_CHARS)
        try:
            src = io.BufferedReader(source, buffer_size=1 << 20)
            n = 1
            first = _read_line(src, name, n)
            while first is not None and not first.strip():
                n += 1
                first = _read_line(src, name, n)
            if first is None:
                source.finish()
                raise DataError(f"{name}: empty pair list; expected at least one (image, image, mated) line")
            f = _detect(first, name) if fmt == "auto" else fmt
            before = len(comments)
            if f == "fvbench":
                got = _parse_fvbench(src, name, first, n, comments)
            elif f == "rfw":
                got = _parse_rfw(src, name, first, n)
            else:
                if not {"p1", "p2", "label"} <= {c.strip() for c in next(csv.reader([first.strip()]))}:
                    raise DataError(f"{name}:{n}: a BFW datatable needs the columns p1, p2, label; got {first.strip()[:80]!r}")
                got = _parse_bfw(src, name, first)
            hashes.append(source.finish())
            scenarios.append(recorded_scenario(comments[before:]))  # None for rfw/bfw files (no comment lines)
        finally:
            source.close_raw()
        if got.empty:
            raise DataError(f"{name}: no pairs; expected at least one (image, image, mated) line")
        if total + len(got) > MAX_PAIRS:
            _room(MAX_PAIRS, name, int(got["line"].iloc[MAX_PAIRS - total]))
        total += len(got)
        got["file"] = fi
        parts.append(got)
        formats.append(f)
    allp = pd.concat(parts, ignore_index=True)
    ka = allp["a"].to_numpy(dtype=object)
    kb = allp["b"].to_numpy(dtype=object)
    pl = PairList(key_a=ka, key_b=kb, mated=allp["m"].to_numpy(dtype=bool),
                  file_index=allp["file"].to_numpy(np.int64), line=allp["line"].to_numpy(np.int64),
                  files=tuple(names), formats=tuple(formats), sha256=tuple(hashes), comments=tuple(comments), scenarios=tuple(scenarios))
    same = np.flatnonzero(ka == kb)
    if same.size:
        raise DataError(f"{pl.where(same[0])}: pair of image {ka[same[0]]!r} with itself; expected two different images")
    lo = np.where(ka < kb, ka, kb)
    hi = np.where(ka < kb, kb, ka)
    dup = pd.DataFrame({"lo": lo, "hi": hi}).duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first_i = int(np.flatnonzero((lo == lo[i]) & (hi == hi[i]))[0])
        raise DataError(
            f"{pl.where(i)}: pair ({ka[i]!r}, {kb[i]!r}) repeats {pl.where(first_i)}; each comparison must be listed once "
            "(in either order)")
    return pl


# --------------------------------------------------------------------------- matching
def resolve_pairs(pairs: PairList, keys: Sequence[str], subject_ids: Sequence[str], *, dataset: str,
                  published: np.ndarray | None = None) -> ResolvedPairs:
    """Match a pair list to a dataset's images and check it against the subject labels.

    Parameters
    ----------
    pairs : PairList
    keys : sequence of str
        Shape (n_images,): image key per manifest row (its ``path``, ``/``-separated).
    subject_ids : sequence of str
        Shape (n_images,): subject per manifest row.
    dataset : str
        Dataset name (for messages).
    published : numpy.ndarray, optional
        Shape (n_images,), bool: rows kept after small-group withholding. Pairs touching
        a withheld row are removed and only counted; the returned indices refer to the
        published rows (their order preserved). None keeps every row.

    Returns
    -------
    ResolvedPairs

    Raises
    ------
    DataError
        ``file:line`` of the first image the dataset lacks, or of the first pair whose
        ``mated`` flag contradicts the subjects (a "mated" pair of two subjects, or a
        "non-mated" pair of one subject).
    """
    keys = pd.Index(np.asarray([str(k).replace("\\", "/") for k in keys], dtype=object))
    if not keys.is_unique:
        dup = keys[keys.duplicated()][0]
        raise DataError(f"dataset {dataset!r}: image key {dup!r} appears twice in the manifest; a pair list cannot name it")
    ia = keys.get_indexer(pd.Index(pairs.key_a))
    ib = keys.get_indexer(pd.Index(pairs.key_b))
    bad = np.flatnonzero((ia < 0) | (ib < 0))
    if bad.size:
        i = int(bad[0])
        k = pairs.key_a[i] if ia[i] < 0 else pairs.key_b[i]
        example = keys[0] if len(keys) else ""
        raise DataError(
            f"{pairs.where(i)}: image {k!r} is not in dataset {dataset!r} ({len(keys):,} images; {bad.size:,} listed pair(s) "
            f"name unknown images); keys are paths relative to the dataset root, e.g. {example!r}")
    sub = np.asarray([str(s) for s in subject_ids], dtype=object)
    same = sub[ia] == sub[ib]
    wrong = np.flatnonzero(same != pairs.mated)
    if wrong.size:
        i = int(wrong[0])
        what = (f"marked mated but the dataset labels its images as subjects {sub[ia[i]]!r} and {sub[ib[i]]!r}" if pairs.mated[i]
                else f"marked non-mated but both images belong to subject {sub[ia[i]]!r}")
        raise DataError(
            f"{pairs.where(i)}: pair ({pairs.key_a[i]!r}, {pairs.key_b[i]!r}) is {what} ({wrong.size:,} such pair(s)); "
            "fix the list or the subject ids: the mated flag must agree with the dataset's subjects")
    withheld = 0
    if published is not None:
        published = np.asarray(published, bool)
        keep = published[ia] & published[ib]
        withheld = int((~keep).sum())
        new = np.cumsum(published) - 1
        ia, ib, mated = new[ia[keep]], new[ib[keep]], pairs.mated[keep]
    else:
        mated = pairs.mated
    return ResolvedPairs(idx_a=np.asarray(ia, np.int64), idx_b=np.asarray(ib, np.int64), mated=np.asarray(mated, bool),
                         pairs_withheld=withheld, listed=pairs)


def all_pair_design(subject_ids: np.ndarray, acquired: np.ndarray, *, max_nonmated: int | None, seed: int,
                    capture_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs an all-pairs run compares, written as its pair list (manifest rows, file order).

    Without sampling: every unordered pair of the published images, acquired or not, mated
    pairs first (so a rerun from the list counts the pairs lost to failures to acquire exactly
    as the all-pairs run does). With ``max_nonmated``: every mated pair of the published
    images, then the seeded non-mated sample drawn among the acquired images exactly as
    :func:`bench.protocol.pairs.all_pairs` draws it (a rerun then counts no non-mated pair
    lost to FTA, where the all-pairs run counts the unsampled ones: docs/protocol.md §10).
    ``capture_ids`` (shape (n,), or None): two images of one capture (frames of one video)
    are never a mated pair, as in :func:`bench.protocol.pairs.all_pairs`.

    Returns
    -------
    idx_a, idx_b : numpy.ndarray
        Shape (n_pairs,), int64 rows of the manifest.
    mated : numpy.ndarray
        Shape (n_pairs,), bool.
    """
    from bench.protocol.pairs import all_pairs

    subject_ids = np.asarray(subject_ids)
    acquired = np.asarray(acquired, bool)
    if max_nonmated is None:
        return all_pairs(subject_ids, capture_ids=capture_ids)
    ia, ib = np.triu_indices(subject_ids.size, k=1)
    same = subject_ids[ia] == subject_ids[ib]
    ma, mb = ia[same], ib[same]
    if capture_ids is not None:  # issue #14: no mated pair within one capture (video)
        capture_ids = np.asarray(capture_ids)
        other = capture_ids[ma] != capture_ids[mb]
        ma, mb = ma[other], mb[other]
    rows = np.flatnonzero(acquired)
    sa, sb, sm = all_pairs(subject_ids[rows], max_nonmated=max_nonmated, seed=seed,
                           capture_ids=None if capture_ids is None else capture_ids[rows])
    na, nb = rows[sa[~sm]], rows[sb[~sm]]
    return (np.concatenate([ma, na]).astype(np.int64), np.concatenate([mb, nb]).astype(np.int64),
            np.concatenate([np.ones(ma.size, bool), np.zeros(na.size, bool)]))


def lost_pairs_by_group(labels: pd.Series, acquired: np.ndarray, idx_a: np.ndarray, idx_b: np.ndarray, mated: np.ndarray) -> dict[str, tuple[int, int]]:
    """Listed pairs lost to a failure to acquire, per group: ``{group: (lost_mated, lost_nonmated)}``.

    A pair belongs to group g when both images are labelled g (docs/protocol.md §0.5);
    ``"(all)"`` counts every lost pair. These counts replace the all-pairs combinatorics in
    :func:`bench.metrics.fta.generalized_rates` for a pair-list run.

    Parameters
    ----------
    labels : pandas.Series
        Shape (n_images,), group per manifest row.
    acquired : numpy.ndarray
        Shape (n_images,), bool.
    idx_a, idx_b, mated : numpy.ndarray
        Shape (n_pairs,): the run's pairs over manifest rows, before FTA removal.
    """
    from bench.metrics.fta import ALL_GROUP

    acquired = np.asarray(acquired, bool)
    lost = ~(acquired[idx_a] & acquired[idx_b])
    lab = labels.astype(str).to_numpy()
    la, lb = lab[idx_a], lab[idx_b]
    out = {ALL_GROUP: (int((lost & mated).sum()), int((lost & ~mated).sum()))}
    for g in sorted(set(lab.tolist())):
        sel = lost & (la == g) & (lb == g)
        out[g] = (int((sel & mated).sum()), int((sel & ~mated).sum()))
    return out


# --------------------------------------------------------------------------- writing
def write_pair_list(path: str | Path, keys_a: Sequence[str], keys_b: Sequence[str], mated: np.ndarray, *,
                    comments: Sequence[str] = ()) -> str:
    """Write a pair list in the fvbench format, gzip-compressed and byte-deterministic.

    Parameters
    ----------
    path : path
        Output file (``.csv.gz``).
    keys_a, keys_b : sequence of str
        Shape (n_pairs,): image keys (paths relative to the dataset root).
    mated : numpy.ndarray
        Shape (n_pairs,), bool.
    comments : sequence of str
        Provenance lines written first, each prefixed ``# `` (no newline inside).

    Returns
    -------
    str
        SHA-256 of the written file.
    """
    ka = np.asarray([str(k) for k in keys_a] if not isinstance(keys_a, np.ndarray) else keys_a.astype(str), dtype=object)
    kb = np.asarray([str(k) for k in keys_b] if not isinstance(keys_b, np.ndarray) else keys_b.astype(str), dtype=object)
    m = np.asarray(mated, bool)
    head = "".join(f"# {_CONTROL.sub(' ', c)}\n" for c in comments)
    if any(ch in k for k in set(ka.tolist()) | set(kb.tolist()) for ch in ',"\r\n'):  # CSV quoting needed: the slow path
        body = pd.DataFrame({"image_a": ka, "image_b": kb, "mated": m.astype(np.int8)}).to_csv(index=False, lineterminator="\n")
    else:  # plain keys: one vectorised join (about 10x faster than DataFrame.to_csv for 10^6 pairs)
        body = PAIR_LIST_HEADER + "\n" + "".join((ka + "," + kb + np.where(m, ",1\n", ",0\n").astype(object)).tolist())
    text = head + body
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(text.encode("utf-8"))
    data = buf.getvalue()
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- run glue
def check_protocol_pair_list(value: object, engine: str, max_nonmated: int | None) -> str | list[str]:
    """Validate ``protocol.pair_list`` against the other protocol keys; return it as str or list of str.

    Raises
    ------
    ConfigError
        Not a file name or list of them; combined with ``max_nonmated`` (a list is its own
        design) or ``engine: stream`` (the listed comparisons are kept in a table).
    """
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(f"protocol.pair_list must be a file name or a non-empty list of file names, got {value!r}")
        out: str | list[str] = [str(v) for v in value]
    elif isinstance(value, (str, Path)) and str(value).strip():
        out = str(value)
    else:
        raise ConfigError(f"protocol.pair_list must be a file name or a list of file names (or null), got {value!r}")
    if max_nonmated is not None:
        raise ConfigError(f"protocol.pair_list and protocol.max_nonmated={max_nonmated}: a pair list fixes every comparison; "
                          "set max_nonmated: null (sample when writing the list instead)")
    if engine == "stream":
        raise ConfigError("protocol.pair_list needs the table engine (the listed comparisons are kept in a table); "
                          "set protocol.engine: auto or table")
    return out


def load_for_dataset(files: str | Sequence[str], dataset: object, scenario: str | None = None) -> PairList:
    """Parse ``protocol.pair_list`` and, for a dataset of image files, match it before any embedding.

    Synthetic populations are matched after generation (by :func:`resolve_pairs` in
    :func:`bench.run.evaluate`); their keys are the generated ``path`` column; another scenario's list is refused.
    """
    from bench.data.manifest import Manifest

    pl = read_pair_lists(files)
    check_pair_list_scenario(pl, scenario)
    if isinstance(dataset, Manifest):
        t = dataset.table
        resolve_pairs(pl, t["path"].astype(str), t["subject_id"].astype(str), dataset=dataset.name)
    return pl


class PairDesign:
    """The comparisons a run was designed to make, over the published manifest rows.

    Built by :meth:`all_pairs` (the all-pairs protocol, computed lazily: only when written)
    or :meth:`listed` (a pair list). Pairs touching an image that failed to acquire stay in
    the design and are counted (:meth:`lost_by_group`); :meth:`acquired` gives the pairs
    that are scored.
    """

    def __init__(self, source: str, *, subjects: np.ndarray | None = None, ok: np.ndarray | None = None,
                 max_nonmated: int | None = None, seed: int = 0, resolved: ResolvedPairs | None = None,
                 listed: PairList | None = None, capture_ids: np.ndarray | None = None) -> None:
        self.source = source
        self._subjects, self._ok, self.max_nonmated, self.seed = subjects, ok, max_nonmated, seed
        self._capture_ids = capture_ids
        self._resolved, self.listed = resolved, listed
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def all_pairs(cls, subjects: np.ndarray, ok: np.ndarray, max_nonmated: int | None, seed: int,
                  capture_ids: np.ndarray | None = None) -> "PairDesign":
        """The all-pairs design (:func:`all_pair_design`)."""
        return cls("all_pairs", subjects=np.asarray(subjects), ok=np.asarray(ok, bool), max_nonmated=max_nonmated, seed=seed,
                   capture_ids=capture_ids)

    @classmethod
    def from_list(cls, resolved: ResolvedPairs) -> "PairDesign":
        """The design of a pair list matched to the published rows."""
        return cls("pair_list", resolved=resolved, listed=resolved.listed)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``idx_a, idx_b, mated`` over the published manifest rows, shape (n_pairs,) each."""
        if self._arrays is None:
            if self._resolved is not None:
                r = self._resolved
                self._arrays = (r.idx_a, r.idx_b, r.mated)
            else:
                assert self._subjects is not None and self._ok is not None
                self._arrays = all_pair_design(self._subjects, self._ok, max_nonmated=self.max_nonmated, seed=self.seed,
                                               capture_ids=self._capture_ids)
        return self._arrays

    def acquired(self, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The scored pairs: both images acquired; indices into the acquired rows (``table[ok]``)."""
        a, b, m = self.arrays()
        ok = np.asarray(ok, bool)
        keep = ok[a] & ok[b]
        new = np.cumsum(ok) - 1
        return new[a[keep]].astype(np.int64), new[b[keep]].astype(np.int64), m[keep]

    def lost_by_group(self, labels: pd.Series, ok: np.ndarray) -> dict[str, tuple[int, int]]:
        """:func:`lost_pairs_by_group` of this design."""
        a, b, m = self.arrays()
        return lost_pairs_by_group(labels, ok, a, b, m)

    def info(self, ok: np.ndarray) -> dict:
        """The ``dataset.pair_list`` record of ``metrics.json`` (a pair-list run)."""
        a, b, m = self.arrays()
        ok = np.asarray(ok, bool)
        lost = ~(ok[a] & ok[b])
        out = dict(self.listed.info()) if self.listed is not None else {}
        out.update({
            "pairs_withheld": int(self._resolved.pairs_withheld) if self._resolved is not None else 0,
            "pairs_in_design": int(m.size),
            "lost_to_fta": {"mated": int((lost & m).sum()), "nonmated": int((lost & ~m).sum())},
            "fta_rule": "pairs with an image that failed to acquire are not scored; they are counted per group "
                        "(generalized_rates.csv lost_mated / lost_nonmated) and folded into the ISO/IEC 19795-1 and NIST "
                        "generalized rates (docs/protocol.md §1.2, §10)",
        })
        return out


def write_run_pair_list(result: object, out_dir: Path, *, enabled: bool = True) -> dict | None:
    """Write the run's design as :data:`PAIR_LIST_FILE` into its folder; return its record.

    Only published rows appear (subjects withheld as small groups are in no published file);
    keys are the manifest ``path`` column, relative to the dataset root. Nothing is written for
    a streamed run (every pair of the acquired images, no table) or a run without a design.

    ``enabled=False`` (``report.pair_list: false``, e.g. when file names identify people)
    writes nothing. A list left in ``out_dir`` by an earlier run is removed whenever none is
    written (it would not describe these numbers).

    Returns
    -------
    dict or None
        ``{file, sha256, pairs, mated, nonmated, design}`` for ``metrics.json``.
    """
    design = getattr(result, "pairs", None)
    if not enabled or design is None or getattr(result, "comparisons", None) is None:
        stale = Path(out_dir) / PAIR_LIST_FILE
        if stale.is_file():
            stale.unlink()
        return None
    a, b, m = design.arrays()
    keys = result.manifest.table["path"].astype(str).str.replace("\\", "/", regex=False).to_numpy(dtype=object)
    p = result.protocol
    what = ("all pairs" if p.max_nonmated is None else f"all mated pairs + seeded sample of {p.max_nonmated} non-mated pairs (seed {p.seed})") \
        if design.source == "all_pairs" else ("pair list " + ", ".join(design.listed.info()["files"]) if design.listed is not None
                                              else getattr(design._resolved, "design", "") or "pairs given by the run's protocol")
    comments = [
        "fvbench pair list v1: image keys are paths relative to the dataset root; mated 1/0 (docs/protocol.md §10)",
        f"dataset={result.dataset_info.get('name')} manifest_sha256={result.dataset_info.get('manifest_sha256')}",
        f"design={what}",
        f"scenario={(getattr(result, 'scenario', None) or {}).get('name') or 'none'}",  # checked on rerun (check_pair_list_scenario)
        "rerun exactly these comparisons: fvbench ... protocol.pair_list=<this file>",
    ]
    sha = write_pair_list(Path(out_dir) / PAIR_LIST_FILE, keys[a], keys[b], m, comments=comments)
    return {"file": PAIR_LIST_FILE, "sha256": sha, "pairs": int(m.size), "mated": int(m.sum()),
            "nonmated": int((~m).sum()), "design": what}
