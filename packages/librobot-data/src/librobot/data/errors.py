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
