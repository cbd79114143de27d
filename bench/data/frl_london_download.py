"""Download the FRL London set (front views) from figshare into the loader's layout.

Command: ``fvbench-download frl_london --dest DIR`` (``python -m bench.download``).

Source: DeBruine, L. & Jones, B. (2017). Face Research Lab London Set (Version 5).
figshare, doi:10.6084/m9.figshare.5047666.v5, article 5047666 version 5, CC BY 4.0
(``shared/docs/sources.md`` §4). Three files of that version are fetched:
``neutral_front.zip``, ``smiling_front.zip`` and ``london_faces_info.csv``; each is
checked against the size and ``computed_md5`` the figshare API lists (figshare publishes
no checksum elsewhere, so none is pinned here), and unpacked into the layout
:func:`bench.data.frl_london.load_frl_london` reads::

    DIR/neutral_front/NNN_03.jpg  (+ NNN_03.tem)
    DIR/smiling_front/NNN_08.jpg
    DIR/london_info.csv            (london_faces_info.csv renamed)
    DIR/fvbench_download.json      what was downloaded: article, version, licence,
                                   file names, sizes, MD5 and SHA-256

Safety rules
------------
* ``DIR`` must be empty or absent. If it already holds anything (other than this
  tool's own ``.fvbench-download/`` work folder) the download is refused, unless it is a
  complete earlier download of the same version (then nothing is done) or ``force=True``:
  then only ``neutral_front/``, ``smiling_front/``, ``london_info.csv`` and
  ``fvbench_download.json`` are replaced; other entries of ``DIR`` are never touched.
  Even with ``force``, a view folder holding files the previous download did not record
  installing (``fvbench_download.json``: ``unpacked.<view>.names``) is refused, naming them.
* The work folder is deleted when the download is installed, so it must hold only what
  this tool puts there (the archives, pooch's temporary files, ``unpack/``): anything
  else refuses the download, naming it.
* Downloads go to ``DIR/.fvbench-download/`` (temporary file, MD5 check, move: pooch).
  A file that fails its checksum is deleted; verified archives stay there until the
  whole dataset is installed, so a rerun after an interruption resumes with the files
  still missing.
* Every archive is checked before anything is unpacked: a member with an absolute path,
  a drive letter, a backslash, ``.`` or ``..`` component, a symbolic link or other
  special file, encryption, more than :data:`MAX_MEMBER_BYTES`, or archives declaring
  together more than :data:`MAX_UNPACKED_BYTES` or :data:`MAX_MEMBERS` members, refuses
  the whole download. macOS metadata (``__MACOSX/``, ``._*``, ``.DS_Store``) is skipped;
  other members that are not ``<view>/NNN_SS.jpg|.tem`` (or ``NNN_SS.jpg|.tem`` at the top;
  ``SS`` the view's code) are skipped, logged and counted in the record, so the installed
  folders hold only files the loader accepts.
* Unpacking happens in the work folder; the info CSV is parsed with the loader's own
  reader; only then are the finished folders moved into ``DIR`` (a rename), and the
  record is written last. A refused or interrupted run therefore never leaves a
  half-unpacked view folder in ``DIR``.
* Host and URL policy for the API and its download links: :mod:`bench.data.figshare`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import stat
import zipfile
from pathlib import Path

from bench.data.figshare import FIGSHARE_API, FigshareFile, fetch_file, list_files
from bench.data.frl_london import (
    DOI, DOWNLOAD_COMMAND, LICENCE, LICENCE_PAGE, RECORD_NAME, VIEWS, read_london_info, release_of,
)
from bench.errors import DataError, DownloadError

__all__ = [
    "ARTICLE_ID",
    "VERSION",
    "DOI",
    "DATASET_PAGE",
    "LICENCE",
    "LICENCE_PAGE",
    "RECORD_NAME",
    "WORK_DIR_NAME",
    "MAX_FILE_BYTES",
    "MAX_CSV_BYTES",
    "MAX_MEMBER_BYTES",
    "MAX_UNPACKED_BYTES",
    "MAX_MEMBERS",
    "DOWNLOAD_COMMAND",
    "download_frl_london",
    "read_download_record",
    "release_of",
]

log = logging.getLogger(__name__)

ARTICLE_ID = 5047666
VERSION = 5
DATASET_PAGE = f"https://doi.org/{DOI}"

#: figshare file name -> (kind, name in the dataset root).
FILES: dict[str, tuple[str, str]] = {
    "neutral_front.zip": ("zip", "neutral_front"),
    "smiling_front.zip": ("zip", "smiling_front"),
    "london_faces_info.csv": ("csv", "london_info.csv"),
}
WORK_DIR_NAME = ".fvbench-download"
#: Largest declared size of one downloaded file (bytes).
MAX_FILE_BYTES = 2 << 30
#: Largest declared size of the info CSV (102 rows: about 2 kB).
MAX_CSV_BYTES = 16 << 20
#: Largest uncompressed size of one archive member (a 1350x1350 JPEG is well under 2 MB).
MAX_MEMBER_BYTES = 64 << 20
#: Largest total uncompressed size of all archives (bytes).
MAX_UNPACKED_BYTES = 4 << 30
#: Most members in all archives together.
MAX_MEMBERS = 20_000

_JUNK = (".DS_Store", "Thumbs.db")
_DRIVE = re.compile(r"^[A-Za-z]:")


def _outputs() -> list[str]:
    return [local for _, local in FILES.values()] + [RECORD_NAME]


def read_download_record(root: str | os.PathLike[str]) -> dict | None:
    """The record a download left in a dataset root, or ``None`` when there is none.

    Returns
    -------
    dict or None
        The parsed ``fvbench_download.json`` (keys ``dataset``, ``doi``, ``article_id``,
        ``version``, ``licence``, ``files`` with ``name``, ``size``, ``md5``, ``sha256``...),
        so that a run can cite the dataset version it read.

    Raises
    ------
    DataError
        The record exists but is not a JSON object.
    """
    path = Path(root) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{str(path)!r} is not a JSON download record: {err}") from err
    if not isinstance(data, dict):
        raise DataError(f"{str(path)!r} is not a JSON object")
    return data


def _existing_entries(dest: Path) -> list[str]:
    if not dest.exists():
        return []
    return sorted(e.name for e in dest.iterdir() if e.name != WORK_DIR_NAME)


_POOCH_TMP = re.compile(r"tmp[a-z0-9_]{8}")  # pooch's temporary download file (left by a killed download)
_INSTALLED = re.compile(r"\d{3}_\d{2}\.(jpg|jpeg|tem)", re.IGNORECASE | re.ASCII)


def _plain_file(p: Path) -> bool:
    return p.is_file() and not p.is_symlink()


def _foreign_in_work(work: Path) -> list[str]:
    """Entries of the work folder this tool does not put there (relative to ``work``, sorted).

    The tool's own: the fetched archives (:data:`FILES`), pooch's temporary files and the
    ``unpack/`` folder holding only the views' ``NNN_SS.jpg|.tem`` files and the info CSV.
    """
    if work.is_symlink() or not work.is_dir():
        return []
    out = []
    for e in sorted(work.iterdir()):
        if e.name in FILES or _POOCH_TMP.fullmatch(e.name):
            if not _plain_file(e):
                out.append(e.name)
        elif e.name == "unpack" and e.is_dir() and not e.is_symlink():
            for u in sorted(e.iterdir()):
                rel = f"unpack/{u.name}"
                if u.name == FILES["london_faces_info.csv"][1] and _plain_file(u):
                    continue
                if u.name in VIEWS and u.is_dir() and not u.is_symlink():
                    out += [f"{rel}/{f.name}" for f in sorted(u.iterdir()) if not (_plain_file(f) and _INSTALLED.fullmatch(f.name))]
                else:
                    out.append(rel)
        else:
            out.append(e.name)
    return out


def _recorded_names(dest: Path) -> dict[str, set[str]]:
    """Per view folder, the files the previous download recorded installing (empty when none)."""
    try:
        rec = read_download_record(dest) or {}
    except DataError:
        return {}
    out: dict[str, set[str]] = {}
    unpacked = rec.get("unpacked") if isinstance(rec.get("unpacked"), dict) else {}
    for local, entry in unpacked.items():
        names = entry.get("names") if isinstance(entry, dict) else None
        if isinstance(local, str) and isinstance(names, list):
            out[local] = {n for n in names if isinstance(n, str)}
    return out


def _unexpected_outputs(dest: Path) -> list[str]:
    """Files in ``dest``'s own outputs (what ``force`` replaces) that the previous download did not install.

    A view folder may hold exactly the files ``fvbench_download.json`` records (``unpacked.<view>.names``),
    no subfolder and no link; ``london_info.csv`` and the record must be plain files.
    """
    recorded = _recorded_names(dest)
    out = []
    for kind, local in FILES.values():
        p = dest / local
        if not (p.exists() or p.is_symlink()):
            continue
        if kind != "zip":
            if not _plain_file(p):
                out.append(local)
            continue
        if p.is_symlink() or not p.is_dir():
            out.append(local)
            continue
        names = recorded.get(local, set())
        out += [f"{local}/{f.name}" + ("/" if f.is_dir() and not f.is_symlink() else "")
                for f in sorted(p.iterdir()) if not (_plain_file(f) and f.name in names)]
    rec = dest / RECORD_NAME
    if (rec.exists() or rec.is_symlink()) and not _plain_file(rec):
        out.append(RECORD_NAME)
    return out


def _listed(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _already_complete(dest: Path) -> dict | None:
    try:
        rec = read_download_record(dest)
    except DataError:
        return None
    if not rec or rec.get("article_id") != ARTICLE_ID or rec.get("version") != VERSION:
        return None
    if all((dest / local).exists() for _, local in FILES.values()):
        return rec
    return None


def _member_plan(archive: Path, view: str, budget: dict) -> tuple[list[tuple[zipfile.ZipInfo, str]], int]:
    """Check every member of ``archive``; return (member, file name) pairs to extract and the skip count."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DownloadError(f"{archive.name}: not a readable zip archive ({err})") from err
    plan: list[tuple[zipfile.ZipInfo, str]] = []
    seen: dict[str, str] = {}
    skipped = 0
    with zf:
        for info in zf.infolist():
            name = info.filename
            where = f"{archive.name}: member {name!r}"
            if "\\" in name or "\x00" in name or name.startswith("/") or _DRIVE.match(name):
                raise DownloadError(f"{where} has an absolute or non-portable path; archive refused")
            parts = name.rstrip("/").split("/")
            if any(p in ("", ".", "..") for p in parts):
                raise DownloadError(f"{where} has an empty, '.' or '..' path component; archive refused")
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind == stat.S_IFLNK:
                raise DownloadError(f"{where} is a symbolic link; archive refused")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise DownloadError(f"{where} is a special file (mode {oct(mode)}); archive refused")
            if info.flag_bits & 0x1:
                raise DownloadError(f"{where} is encrypted; archive refused")
            budget["members"] += 1
            if budget["members"] > MAX_MEMBERS:
                raise DownloadError(f"{archive.name}: more than {MAX_MEMBERS} members in the archives; refused")
            if info.is_dir():
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                raise DownloadError(
                    f"{where} declares {info.file_size} bytes uncompressed (limit {MAX_MEMBER_BYTES}); archive refused"
                )
            budget["bytes"] += info.file_size
            if budget["bytes"] > MAX_UNPACKED_BYTES:
                raise DownloadError(f"{archive.name}: archives declare more than {MAX_UNPACKED_BYTES} bytes uncompressed; refused")
            base = parts[-1]
            if parts[0] == "__MACOSX" or base.startswith("._") or base in _JUNK:
                continue
            inner = parts[1:] if len(parts) == 2 and parts[0] == view else parts
            if len(inner) != 1 or not re.fullmatch(rf"\d{{3}}_{VIEWS[view]}\.(jpg|jpeg|tem)", base, re.IGNORECASE | re.ASCII):
                skipped += 1
                log.warning("%s: skipped (expected %s/NNN_%s.jpg or .tem)", where, view, VIEWS[view])
                continue
            key = base.lower()
            if key in seen:
                raise DownloadError(f"{where} and {seen[key]!r} unpack to the same file {base!r}; archive refused")
            seen[key] = name
            plan.append((info, base))
    return plan, skipped


def _extract(archive: Path, plan: list[tuple[zipfile.ZipInfo, str]], folder: Path) -> None:
    folder.mkdir()
    try:
        with zipfile.ZipFile(archive) as zf:
            for info, base in plan:
                left = info.file_size
                with zf.open(info) as src, open(folder / base, "xb") as out:
                    while chunk := src.read(min(1 << 20, left + 1)):
                        left -= len(chunk)
                        if left < 0:
                            raise DownloadError(f"{archive.name}: member {info.filename!r} is longer than declared; refused")
                        out.write(chunk)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as err:
        raise DownloadError(f"{archive.name}: corrupt archive ({err}); nothing was installed") from err


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _check_space(dest: Path, files: dict[str, FigshareFile]) -> None:
    probe = dest
    while not probe.exists():
        probe = probe.parent
    need = 2 * sum(f.size for f in files.values()) + (64 << 20)  # archives + unpacked copy + margin
    free = shutil.disk_usage(probe).free
    if free < need:
        raise DownloadError(f"not enough free space under {str(probe)!r}: {free} bytes free, about {need} needed")


def download_frl_london(
    dest: str | os.PathLike[str],
    *,
    api_base: str = FIGSHARE_API,
    force: bool = False,
    retries: int = 2,
    keep_archives: bool = False,
    progress: bool = False,
) -> tuple[dict, bool]:
    """Download, verify and unpack the FRL London front views into ``dest``.

    Parameters
    ----------
    dest : str or path-like
        The dataset root to create (what ``dataset.loader.root`` points to, by default
        ``<paths.data_dir>/frl_london``). Must be absent or empty (see the module's
        safety rules).
    api_base : str
        figshare API base URL (:data:`bench.data.figshare.FIGSHARE_API`; tests pass a
        loopback server).
    force : bool
        Replace an existing copy's ``neutral_front/``, ``smiling_front/``,
        ``london_info.csv`` and record; nothing else in ``dest`` is touched.
    retries : int
        Further attempts per file after a connection failure (>= 0).
    keep_archives : bool
        Keep the verified archives in ``dest/.fvbench-download/`` afterwards.
    progress : bool
        Show a progress bar per file (stderr).

    Returns
    -------
    (dict, bool)
        The download record (also written to ``dest/fvbench_download.json``) and whether
        anything was downloaded (``False``: a complete copy of this version was there).

    Raises
    ------
    DownloadError
        ``dest`` holds other data (without ``force``) or is not a folder; the API or a
        download fails; a checksum, size, host or archive member is refused (see the
        module docstring). ``dest`` then holds no new dataset file.
    ConfigError
        ``api_base`` is not an allowed URL.
    DataError
        The downloaded info CSV cannot be read by the loader.
    """
    dest = Path(dest)
    if retries < 0:
        raise DownloadError(f"retries={retries}: expected 0 or more")
    if dest.exists() and not dest.is_dir():
        raise DownloadError(f"--dest {str(dest)!r} exists and is not a folder")
    work = dest / WORK_DIR_NAME
    foreign = _foreign_in_work(work)
    if foreign:  # the work folder is deleted at the end: it must hold only what this tool put there
        raise DownloadError(
            f"{str(work)!r} holds files this tool did not put there ({_listed(foreign)}); refusing to download: "
            "move them away first"
        )
    present = _existing_entries(dest)
    if present and force:
        unexpected = _unexpected_outputs(dest)
        if unexpected:  # --force replaces the dataset's own files, never the user's
            raise DownloadError(
                f"--dest {str(dest)!r}: --force would delete files the previous download did not install "
                f"({_listed(unexpected)}); refusing: move them away first"
            )
    if present and not force:
        done = _already_complete(dest)
        if done is not None:
            return done, False
        raise DownloadError(
            f"--dest {str(dest)!r} already holds {present[:5]}{' ...' if len(present) > 5 else ''}; refusing to "
            f"write there (pass --force to replace {', '.join(_outputs())}; other entries are never touched)"
        )
    meta, files = list_files(api_base, ARTICLE_ID, VERSION, tuple(FILES), max_bytes=MAX_FILE_BYTES)
    for name, (kind, _) in FILES.items():
        if kind == "csv" and files[name].size > MAX_CSV_BYTES:
            raise DownloadError(f"figshare file {name!r}: declared size {files[name].size} bytes exceeds the limit of "
                                f"{MAX_CSV_BYTES} bytes for the info CSV; refused")
    _check_space(dest, files)

    if work.is_symlink() or (work.exists() and not work.is_dir()):
        raise DownloadError(f"{str(work)!r} is not this tool's work folder (a link or a file); remove it first")
    work.mkdir(parents=True, exist_ok=True)
    got: dict[str, Path] = {}
    for name in FILES:
        log.info("fetching %s (%d bytes, md5 %s)", name, files[name].size, files[name].md5)
        got[name] = fetch_file(files[name], work, name, retries=retries, progress=progress)

    # check every archive before unpacking any of them
    budget = {"members": 0, "bytes": 0}
    plans = {}
    for name, (kind, local) in FILES.items():
        if kind == "zip":
            plans[name] = _member_plan(got[name], local, budget)
            if not any(b.lower().endswith((".jpg", ".jpeg")) for _, b in plans[name][0]):
                raise DownloadError(f"{name}: no {local}/NNN_SS.jpg image in the archive; refused")

    stage = work / "unpack"
    if stage.exists() or stage.is_symlink():
        _remove(stage)  # our own leftover from an interrupted run
    stage.mkdir()
    unpacked: dict[str, dict] = {}
    try:
        for name, (kind, local) in FILES.items():
            if kind == "zip":
                plan, skipped = plans[name]
                _extract(got[name], plan, stage / local)
                unpacked[local] = {"files": len(plan), "skipped_members": skipped, "names": sorted(b for _, b in plan)}
            else:
                shutil.copyfile(got[name], stage / local)
                info = read_london_info(stage / local)  # refuse a CSV the loader cannot read
                unpacked[local] = {"rows": len(info)}
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise

    api_licence = (meta.get("license") or "")[:200]  # text from the API: recorded as said, never interpreted
    if api_licence != LICENCE:
        log.warning("figshare lists the licence of article %d v%d as %r; expected %r (check %s)",
                    ARTICLE_ID, VERSION, api_licence, LICENCE, DATASET_PAGE)
    record = {
        "dataset": "frl_london",
        "title": "Face Research Lab London Set",
        "citation": "DeBruine, L. & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare.",
        "doi": DOI,
        "dataset_page": DATASET_PAGE,
        "article_id": ARTICLE_ID,
        "version": VERSION,
        "licence": LICENCE,
        "licence_page": LICENCE_PAGE,
        "licence_listed_by_api": api_licence or None,
        "api": api_base.rstrip("/"),
        "files": [
            {
                "name": name,
                "figshare_file_id": files[name].file_id,
                "size": files[name].size,
                "md5": files[name].md5,
                "sha256": _sha256(got[name]),
                "unpacked_to": FILES[name][1],
            }
            for name in FILES
        ],
        "unpacked": unpacked,
        "tool": {"fvbench": _version("fvbench"), "pooch": _version("pooch")},
        "downloaded_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }

    # install: replace only our own outputs, record last
    for out in _outputs():
        if (dest / out).exists() or (dest / out).is_symlink():
            _remove(dest / out)  # only reached with force=True (or our own partial install)
    for _, local in FILES.values():
        os.replace(stage / local, dest / local)
    _write_json_atomic(dest / RECORD_NAME, record)
    shutil.rmtree(stage)
    if not keep_archives:
        shutil.rmtree(work)
    return record, True


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
