"""The error hierarchy: every error the project raises on purpose derives from LibroBotError.

Each class also derives from the builtin a caller would expect (KeyError, ValueError, ImportError…),
so ``except ValueError`` keeps working for code that does not know about LibroBot.
"""

from __future__ import annotations


class LibroBotError(Exception):
    """Root of every error LibroBot raises deliberately."""


class ConfigError(LibroBotError, ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, bad interpolation)."""


class UntrustedCodeError(ConfigError):
    """A config or artifact names code to import ("module:attr") where only registered names are honoured."""


class RegistryError(LibroBotError):
    """Base for registry problems."""


class UnknownComponentError(RegistryError, KeyError):
    """A name that no registry entry (or alias) matches."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0]) if self.args else ""


class DuplicateComponentError(RegistryError, ValueError):
    """Two different objects were registered under one name or alias."""


class PluginError(LibroBotError, ImportError):
    """A plugin module or folder failed to load."""


class CheckpointError(LibroBotError, OSError):
    """A checkpoint is missing, incomplete or malformed."""


class ChecksumMismatchError(CheckpointError):
    """A checkpoint file's sha256 differs from the one recorded when it was written."""


class MissingExtraError(LibroBotError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


class SpecError(LibroBotError, ValueError):
    """Data does not match its declared feature/space spec (shape, dtype, bounds, NaN)."""
