"""Fetch files of one figshare article version through the public figshare API.

The figshare v2 API lists an article version's files with their size and the MD5
figshare computed on its stored copy (``computed_md5``; ``supplied_md5`` is what the
uploader declared)::

    GET {api_base}/articles/{article_id}/versions/{version}
    -> {"id": ..., "version": ..., "license": {"name": ...},
        "files": [{"id", "name", "size", "computed_md5", "supplied_md5", "download_url", ...}]}

(source: pooch 1.9.0 ``FigshareRepository``; ``shared/docs/sources.md`` §4). The bytes
are fetched with :func:`pooch.retrieve` (temporary file, MD5 check, move into place) and
a downloader that refuses more bytes than the API declared.

Trust policy (everything the API returns is treated as untrusted input)
-----------------------------------------------------------------------
* ``api_base`` must be ``https://``; plain ``http://`` only to a loopback host
  (127.0.0.1, ::1, localhost: the test server). No user name, password, query or fragment.
* A file's ``download_url`` must use http(s) and name the API's own host, or, when the API
  is figshare's (``api.figshare.com``), a figshare host (``figshare.com`` or
  ``*.figshare.com``). Any other host is refused before a request is made. Redirects
  that the download host answers with (figshare sends files on to its storage) are
  followed: the bytes are checked against the API's MD5 and size either way.
* A file's declared ``size`` must be a positive integer no larger than ``max_bytes``;
  its MD5 must be 32 hex digits, and ``supplied_md5``, when given, must agree with
  ``computed_md5``. A download that delivers more or fewer bytes than declared, or a
  ``Content-Length`` that disagrees, is refused.
* The API response itself is read up to :data:`MAX_API_BYTES` and must describe the
  requested article id and version.
* File names from the API never become paths: callers choose which names to fetch and
  under which local name.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.errors import ConfigError, DownloadError
from bench.files import loads_json

__all__ = [
    "FIGSHARE_API",
    "MAX_API_BYTES",
    "FigshareFile",
    "check_api_base",
    "check_download_url",
    "list_files",
    "fetch_file",
]

log = logging.getLogger(__name__)

#: The public figshare API (v2).
FIGSHARE_API = "https://api.figshare.com/v2"
#: Largest API response read (bytes); an article listing is a few kB.
MAX_API_BYTES = 4 << 20
_TIMEOUT_S = 60
_CHUNK = 1 << 16
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_LOOPBACK = ("localhost",)


@dataclass(frozen=True)
class FigshareFile:
    """One file of a figshare article version, as listed by the API (validated).

    Attributes
    ----------
    name : str
        File name on figshare (e.g. ``"neutral_front.zip"``); never used as a path.
    file_id : int
        figshare file id.
    size : int
        Declared size in bytes (> 0).
    md5 : str
        ``computed_md5``: 32 lower-case hex digits.
    download_url : str
        Where the bytes are fetched from (host checked by :func:`check_download_url`).
    """

    name: str
    file_id: int
    size: int
    md5: str
    download_url: str


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_base(api_base: str) -> str:
    """Validate the API base URL and return it without a trailing slash.

    Raises
    ------
    ConfigError
        A scheme other than https (http only to a loopback host), no host, or a user
        name, password, query or fragment in the URL (the value is named).
    """
    try:
        parts = urlsplit(api_base)
        host = parts.hostname or ""
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as err:
        raise ConfigError(f"--api-base {api_base!r} is not a valid URL: {err}") from err
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"--api-base {api_base!r}: expected an https:// URL (got scheme {parts.scheme!r})")
    if not host:
        raise ConfigError(f"--api-base {api_base!r} names no host")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            f"--api-base {api_base!r}: plain http is accepted only for a loopback host (127.0.0.1, ::1, localhost); "
            "use https, the checksums come from this API"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"--api-base {api_base!r}: expected scheme://host[:port]/path without credentials, query or fragment")
    return api_base.rstrip("/")


def check_download_url(url: str, api_base: str, what: str) -> str:
    """Apply the host policy of this module to a ``download_url`` the API returned.

    Parameters
    ----------
    url : str
        The URL from the API response.
    api_base : str
        The (validated) API base URL.
    what : str
        The file it belongs to, for the message.

    Returns
    -------
    str
        ``url`` unchanged.

    Raises
    ------
    DownloadError
        The URL is not http(s), holds characters URL parsers disagree on (backslash,
        space, control, non-ASCII), carries credentials, names no host or a host outside
        the policy, or downgrades an https API to http on another host.
    """
    api = urlsplit(api_base)
    if not url.isascii() or any(c in url for c in "\\ \t\r\n") or any(ord(c) < 32 or ord(c) == 127 for c in url):
        # parsers disagree on such URLs (which host is meant): refuse rather than guess
        raise DownloadError(f"{what}: the API's download_url {url!r} holds a backslash, space, control or non-ASCII character; refused")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError as err:
        raise DownloadError(f"{what}: the API's download_url {url!r} is not a valid URL: {err}") from err
    if parts.scheme not in ("http", "https") or not host:
        raise DownloadError(f"{what}: the API's download_url {url!r} is not an http(s) URL with a host; refused")
    if parts.username or parts.password:
        raise DownloadError(f"{what}: the API's download_url {url!r} carries credentials; refused")
    api_host = (api.hostname or "").lower()
    figshare = api_host == "api.figshare.com"
    allowed = host == api_host or (figshare and (host == "figshare.com" or host.endswith(".figshare.com")))
    if not allowed:
        hosts = f"{api_host!r}" + (" or figshare.com / *.figshare.com" if figshare else "")
        raise DownloadError(
            f"{what}: the API's download_url {url!r} points to host {host!r}; only {hosts} is accepted (refused)"
        )
    if api.scheme == "https" and parts.scheme != "https" and not _is_loopback(host):
        raise DownloadError(f"{what}: the API's download_url {url!r} is plain http; expected https (refused)")
    return url


def _get_json(url: str) -> dict:
    import requests  # lazy: only the download path needs it

    try:
        with requests.get(url, timeout=_TIMEOUT_S, stream=True, allow_redirects=False,
                          headers={"Accept": "application/json"}) as r:
            if r.status_code != 200:  # a redirect included: the API answers itself
                raise DownloadError(f"figshare API {url} answered HTTP {r.status_code} {r.reason}")
            body = bytearray()
            for chunk in r.iter_content(_CHUNK):
                body += chunk
                if len(body) > MAX_API_BYTES:
                    raise DownloadError(f"figshare API {url}: response larger than {MAX_API_BYTES} bytes; refused")
    except requests.exceptions.RequestException as err:
        raise DownloadError(f"figshare API {url} unreachable: {type(err).__name__}: {err}".replace("\n", " ")) from err
    try:
        data = loads_json(bytes(body))
    except ValueError as err:  # deep nesting and huge integers included (bench.files.loads_json)
        raise DownloadError(f"figshare API {url}: response is not acceptable JSON ({err})") from None
    if not isinstance(data, dict):
        raise DownloadError(f"figshare API {url}: expected a JSON object, got {type(data).__name__}")
    return data


def list_files(
    api_base: str, article_id: int, version: int, names: tuple[str, ...], *, max_bytes: int
) -> tuple[dict, dict[str, FigshareFile]]:
    """List an article version's files and validate the ones named in ``names``.

    Parameters
    ----------
    api_base : str
        API base URL (checked by :func:`check_api_base`), e.g. :data:`FIGSHARE_API`.
    article_id, version : int
        figshare article id and version (e.g. 5047666, 5).
    names : tuple of str
        The file names wanted; other listed files are ignored.
    max_bytes : int
        Largest declared file size accepted (bytes).

    Returns
    -------
    (dict, dict of str to FigshareFile)
        The article fields kept for provenance (``id``, ``version``, ``doi``,
        ``title``, ``license``, ``license_url``; ``None`` where absent) and the wanted
        files by name.

    Raises
    ------
    ConfigError
        ``api_base`` breaks the URL policy.
    DownloadError
        The API is unreachable, answers non-200 or non-JSON, describes another article
        or version, lacks a wanted file (the listed names given), or a wanted file has a
        bad size (> ``max_bytes`` included), MD5 or download URL (file and value named).
    """
    base = check_api_base(api_base)
    url = f"{base}/articles/{int(article_id)}/versions/{int(version)}"
    data = _get_json(url)
    if data.get("id") != article_id or data.get("version") != version:
        raise DownloadError(
            f"figshare API {url} describes article {data.get('id')!r} version {data.get('version')!r}; "
            f"expected {article_id} version {version}"
        )
    files = data.get("files")
    if not isinstance(files, list):
        raise DownloadError(f"figshare API {url}: no 'files' list in the response")
    listed: dict[str, dict] = {}
    for entry in files:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            if name in listed and name in names:
                raise DownloadError(f"figshare API {url}: file {name!r} listed twice")
            listed[name] = entry
    missing = [n for n in names if n not in listed]
    if missing:
        raise DownloadError(
            f"figshare API {url} lists no file(s) {missing}; it lists {sorted(listed)[:20]}"
        )
    out = {n: _validate_entry(listed[n], base, max_bytes) for n in names}

    def _text(obj: object, key: str) -> str | None:
        v = obj.get(key) if isinstance(obj, dict) else None
        return v if isinstance(v, str) else None

    meta = {
        "id": article_id,
        "version": version,
        "doi": _text(data, "doi"),
        "title": _text(data, "title"),
        "license": _text(data.get("license"), "name"),
        "license_url": _text(data.get("license"), "url"),
    }
    return meta, out


def _validate_entry(entry: dict, api_base: str, max_bytes: int) -> FigshareFile:
    name = entry["name"]
    what = f"figshare file {name!r}"
    if entry.get("is_link_only"):
        raise DownloadError(f"{what} is a link to another site, not a stored file; refused")
    size, fid = entry.get("size"), entry.get("id")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise DownloadError(f"{what}: declared size {size!r} is not a positive whole number of bytes")
    if size > max_bytes:
        raise DownloadError(f"{what}: declared size {size} bytes exceeds the limit of {max_bytes} bytes; refused")
    if not isinstance(fid, int) or isinstance(fid, bool):
        raise DownloadError(f"{what}: file id {fid!r} is not a whole number")
    md5 = entry.get("computed_md5")
    if not isinstance(md5, str) or not _MD5.fullmatch(md5.lower()):
        raise DownloadError(f"{what}: computed_md5 {md5!r} is not 32 hex digits; cannot verify the download")
    md5 = md5.lower()
    supplied = entry.get("supplied_md5")
    if isinstance(supplied, str) and supplied.strip() and supplied.strip().lower() != md5:
        raise DownloadError(f"{what}: supplied_md5 {supplied!r} differs from computed_md5 {md5!r}; refused")
    url = entry.get("download_url")
    if not isinstance(url, str):
        raise DownloadError(f"{what}: download_url {url!r} is not a URL")
    check_download_url(url, api_base, what)
    return FigshareFile(name=name, file_id=fid, size=size, md5=md5, download_url=url)


class _Refused(DownloadError):
    """A download that must not be retried (the server sent something other than declared)."""


class _CappedDownloader:
    """pooch downloader: stream ``url`` into ``output_file``, exactly ``size`` bytes.

    A 4xx answer, a ``Content-Length`` other than ``size`` or more bytes than ``size``
    raise ``_Refused`` (not retried); a 5xx answer or a body that ends early raises
    :class:`DownloadError` (retried). pooch deletes its temporary file either way.
    """

    def __init__(self, size: int, label: str = "", progress: bool = False) -> None:
        self.size = size
        self.label = label
        self.progress = progress

    def __call__(self, url: str, output_file, pooch, check_only: bool = False) -> bool | None:  # noqa: ANN001
        import requests

        if check_only:
            return True
        with requests.get(url, timeout=_TIMEOUT_S, stream=True) as r:
            if 400 <= r.status_code < 500:  # the file is not there for us: retrying will not help
                raise _Refused(f"{url} answered HTTP {r.status_code} {r.reason}")
            if r.status_code != 200:
                raise DownloadError(f"{url} answered HTTP {r.status_code} {r.reason}")
            declared = r.headers.get("Content-Length")
            if declared is not None and declared.strip() != str(self.size):
                raise _Refused(f"{url}: Content-Length {declared!r} differs from the API's size {self.size}; refused")
            from tqdm import tqdm

            got = 0
            own = not hasattr(output_file, "write")
            f = open(output_file, "wb") if own else output_file  # noqa: SIM115
            bar = tqdm(total=self.size, unit="B", unit_scale=True, desc=self.label, disable=not self.progress, leave=False)
            try:
                for chunk in r.iter_content(_CHUNK):
                    got += len(chunk)
                    if got > self.size:
                        raise _Refused(f"{url}: more than the declared {self.size} bytes sent; refused")
                    f.write(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
                if own:
                    f.close()
        if got != self.size:
            raise DownloadError(f"{url}: download ended after {got} of {self.size} bytes (connection closed)")
        return None


def fetch_file(entry: FigshareFile, folder: Path, fname: str, *, retries: int = 2, progress: bool = False) -> Path:
    """Download one listed file into ``folder/fname`` and verify its size and MD5.

    A file already there with the right MD5 is kept (no request). The bytes go to a
    temporary file in ``folder`` and are moved to ``fname`` only after the MD5
    matched (pooch), so an interrupted or corrupt download leaves no ``fname``.

    Parameters
    ----------
    entry : FigshareFile
        From :func:`list_files`.
    folder : pathlib.Path
        Download folder (created).
    fname : str
        Local file name chosen by the caller.
    retries : int
        Further attempts after a connection failure or a 5xx answer (0 = one attempt).
        A checksum mismatch, a 4xx answer or a server sending other than declared is
        never retried.
    progress : bool
        Show a tqdm progress bar (bytes) on stderr.

    Returns
    -------
    pathlib.Path
        The verified file.

    Raises
    ------
    DownloadError
        The checksum differs (expected and found MD5 named), or every attempt failed
        (the last reason named).
    """
    import pooch
    import requests

    folder.mkdir(parents=True, exist_ok=True)
    last = ""
    for attempt in range(retries + 1):
        try:
            return Path(
                pooch.retrieve(
                    entry.download_url,
                    known_hash=f"md5:{entry.md5}",
                    fname=fname,
                    path=folder,
                    downloader=_CappedDownloader(entry.size, entry.name, progress),
                    progressbar=False,
                )
            )
        except _Refused as err:  # the server sent other than declared: never retried
            raise DownloadError(str(err)) from err
        except (DownloadError, requests.exceptions.RequestException) as err:  # before ValueError: both are ValueErrors
            last = f"{type(err).__name__}: {err}".replace("\n", " ")
        except ValueError as err:  # pooch: hash mismatch (the temporary file is deleted)
            found = re.search(r"but got ([0-9a-f]{32})", str(err))
            raise DownloadError(
                f"{entry.name} from {entry.download_url}: MD5 {found.group(1) if found else '?'} differs from "
                f"figshare's computed_md5 {entry.md5}; the download was deleted"
            ) from err
        if attempt < retries:
            log.info("%s: attempt %d failed (%s); retrying", entry.name, attempt + 1, last)
            time.sleep(min(1.0 * (attempt + 1), 10.0))
    raise DownloadError(f"{entry.name} from {entry.download_url}: download failed after {retries + 1} attempt(s): {last}")
