"""The export's error type (torch-free, so callers can catch it without importing torch)."""

from __future__ import annotations

from librobot.core.errors import LibroBotError


class ExportError(LibroBotError, RuntimeError):
    """A policy that cannot be exported as asked; the message names the framework, the cause and the fix."""
