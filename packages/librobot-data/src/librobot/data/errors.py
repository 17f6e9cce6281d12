"""Errors of the data package. Each derives from a core error (and so from the builtin a caller
expects), and every message names the file or dataset at fault and what is wrong with it."""

from __future__ import annotations

from librobot.core.errors import LibroBotError, SpecError


class DataFormatError(LibroBotError, ValueError):
    """A dataset on disk is malformed: missing keys or files, truncated files, mismatched lengths."""


class EpisodeError(SpecError):
    """Episode arrays handed to a writer do not match the dataset's features (shape, dtype, length)."""


class ConversionError(LibroBotError, RuntimeError):
    """A conversion could not run (destination exists, unknown format, failed midway)."""


class StoreChunkError(DataFormatError):
    """A chunk file of a store array is missing or cannot be decoded (deleted, truncated, garbled).

    Raised instead of reading the array's fill value: a missing chunk is damage, not zeros.
    ``array`` is the array's name in the store (e.g. ``data/action``), ``key`` the chunk key
    (``c/3/0``), ``file`` the chunk file's path and ``problem`` "missing" or "corrupt"."""

    def __init__(self, message: str, *, array: str, key: str, file: str, problem: str) -> None:
        super().__init__(message)
        self.array, self.key, self.file, self.problem = array, key, file, problem
