"""Exception and warning hierarchy of fvbench.

Every error the harness raises on purpose derives from :class:`BenchError`, so a
caller can catch "anything fvbench refused" in one clause. Messages name the bad
value (file, column, row, config key) and what was expected.
"""

from __future__ import annotations

__all__ = [
    "BenchError",
    "ConfigError",
    "DataError",
    "ImageLoadError",
    "WeightsError",
    "InsufficientDataWarning",
    "ScoreSanityWarning",
    "InsufficientDataError",
    "UnverifiedWeightsWarning",
    "ScoreRangeWarning",
    "DatasetWarning",
    "StorageError",
    "CacheEntryWarning",
    "DownloadError",
]


class BenchError(Exception):
    """Root of every error fvbench raises deliberately."""


class ConfigError(BenchError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class DataError(BenchError, ValueError):
    """A dataset manifest, image, score table or result file is malformed."""


class ImageLoadError(DataError):
    """An image file cannot be decoded into an 8-bit RGB array.

    Attributes
    ----------
    path : str
        The file that failed.
    reason : str
        A short machine-readable reason code (e.g. ``"corrupt"``, ``"empty_file"``,
        ``"too_large"``, ``"not_an_image"``), used as the failure-to-acquire reason.
    """

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        msg = f"cannot load image {self.path!r}: {reason}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class WeightsError(BenchError):
    """Model weights are missing, fail their checksum, or cannot be loaded."""


class InsufficientDataWarning(UserWarning):
    """The data cannot support the requested estimate (e.g. a target FMR below 1/N)."""


class ScoreSanityWarning(UserWarning):
    """Scores look inverted (mated comparisons score lower than non-mated ones)."""


class InsufficientDataError(DataError):
    """The data cannot support the requested estimate at all.

    Raised, for example, when a target FMR ``f`` is asked of ``N < 1/f`` non-mated
    scores: no threshold can resolve it (metrics-reference §0, §5.5).
    """


class UnverifiedWeightsWarning(UserWarning):
    """A weight file was accepted without a published checksum; its first SHA-256 was recorded."""


class ScoreRangeWarning(UserWarning):
    """A read-out of a score histogram fell outside its stated range ``[lo, hi]``.

    The result is still valid (conservative, exactly counted) but may be coarser than
    one bin width; rebuild the histogram with a wider range.
    """




class StorageError(BenchError):
    """A file or folder cannot be written (disk full, read-only, a file where a folder belongs).

    The message names the path; what was already written (previous results, finished
    cache entries) is intact.
    """


class CacheEntryWarning(UserWarning):
    """A cache entry was malformed, of another image or model, or not a regular file; it is recomputed."""


class DatasetWarning(UserWarning):
    """The dataset is usable but something in it skews a result (e.g. the same image
    file under two subject ids, one subject supplying most of a group's mated
    comparisons)."""


class DownloadError(DataError):
    """A dataset download failed or was refused (checksum, size, host, archive member).

    The message names the file, URL or archive member and what was expected; nothing
    half-written is left in the destination folder.
    """
