"""The decompressed bytes of one pair-list file, read with its limits enforced as they arrive.

:class:`PairListSource` is the raw stream :mod:`bench.protocol.pair_list` parses: it hashes the
file as read (SHA-256 of the bytes on disk), decompresses gzip (detected by its magic bytes),
caps the total text, and refuses a line longer than its limit as soon as that many bytes of
the line have been decompressed -- so a small gzip whose one line expands to gigabytes costs
one read buffer, not the line (the CSV parser would otherwise buffer it whole).

Errors: :class:`~bench.errors.ConfigError` (missing/unreadable file), :class:`~bench.errors.DataError`
(truncated or corrupt gzip, too much text, a line too long), each one line naming ``file[:line]``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import numpy as np

from bench.errors import ConfigError, DataError

__all__ = ["PairListSource"]


class PairListSource(io.RawIOBase):
    """The decompressed bytes of a pair-list file: hashes the raw file, caps the text read.

    Line lengths are checked here, as the bytes are decompressed, so a gzip whose one line
    decompresses to gigabytes is refused after about ``max_line_chars`` bytes of that line
    (plus one read buffer), before the CSV parser buffers it.
    """

    def __init__(self, path: Path, *, max_text_bytes: int, max_line_chars: int) -> None:
        try:
            self._raw = path.open("rb")
        except FileNotFoundError:
            raise ConfigError(f"protocol.pair_list: file not found: {str(path)!r}") from None
        except OSError as err:
            raise ConfigError(f"protocol.pair_list: cannot read {str(path)!r} ({err.strerror or err})") from None
        self.path, self.digest, self.total = path, hashlib.sha256(), 0
        self._newlines, self._line_bytes = 0, 0  # newlines seen; bytes of the current line so far
        self.max_text_bytes, self.max_line_chars = max_text_bytes, max_line_chars
        hashing = io.BufferedReader(_Hashing(self._raw, self.digest))
        self._src: io.BufferedIOBase = gzip.GzipFile(fileobj=hashing, mode="rb") if hashing.peek(2)[:2] == b"\x1f\x8b" else hashing  # type: ignore[assignment]

    def readable(self) -> bool:
        return True

    def readinto(self, b):  # type: ignore[override]
        try:
            n = self._src.readinto(b)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise DataError(f"{str(self.path)}: unreadable or truncated ({err}); expected a pair list (.csv, .txt, or .gz of one)") from None
        self.total += n or 0
        if self.total > self.max_text_bytes:
            raise DataError(f"{str(self.path)}: more than {self.max_text_bytes:,} bytes of text; a pair list is expected to be smaller")
        if n:
            self._check_lines(bytes(memoryview(b)[:n]))
        return n

    def _check_lines(self, chunk: bytes) -> None:
        """Refuse a line longer than ``max_line_chars`` (+1 for a ``\\r``), counted in bytes as read (vectorised)."""
        limit = self.max_line_chars + 1
        nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
        if nl.size == 0:
            self._line_bytes += len(chunk)
            bad_line = self._newlines + 1 if self._line_bytes > limit else 0
        else:
            lengths = np.diff(nl, prepend=-1) - 1  # bytes of each line ending in this chunk
            lengths[0] += self._line_bytes
            over = np.flatnonzero(lengths > limit)
            bad_line = self._newlines + 1 + int(over[0]) if over.size else 0
            if not bad_line:
                self._newlines += int(nl.size)
                self._line_bytes = len(chunk) - int(nl[-1]) - 1
                bad_line = self._newlines + 1 if self._line_bytes > limit else 0
        if bad_line:
            raise DataError(f"{str(self.path)}:{bad_line}: line longer than {self.max_line_chars} characters; expected one pair per line")

    def finish(self) -> str:
        """Hash the rest of the raw file, close it, return its SHA-256."""
        while self._raw.read(1 << 20):
            pass
        self._raw.close()
        return self.digest.hexdigest()

    def close_raw(self) -> None:
        """Close the file (also after an error)."""
        if not self._raw.closed:
            self._raw.close()


class _Hashing(io.RawIOBase):
    def __init__(self, raw, digest) -> None:
        self._raw, self._digest = raw, digest

    def readable(self) -> bool:
        return True

    def readinto(self, b):  # type: ignore[override]
        n = self._raw.readinto(b)
        if n:
            self._digest.update(memoryview(b)[:n])
        return n
