"""Code references (``"package.module:attr"``) in configs, and when they are honoured.

A config names a component by registry name, or by a code reference that is imported and called.
A reference is honoured only where the user vouched for the config: inside ``code_references()``,
which ``librobot train CONFIG`` and ``vla_from_config`` open for the config they were given, and
``from_pretrained(..., trust_remote_code=True)`` opens for a folder its caller trusts. Everywhere
else, and always while an artifact (policy folder, checkpoint, export, dataset) is being loaded, a
reference is refused: an artifact is data, and whoever can edit one must not be able to make the
loader run code. The default is "refused" so that a new loader is safe without remembering this.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from librobot.core.errors import UnknownComponentError, UntrustedCodeError
from librobot.core.registry import get_registry

# A ContextVar, not a global: a thread or task starts with the default (refused), and a trusted
# scope never leaks into a server thread that loads an artifact.
_ALLOWED: ContextVar[bool] = ContextVar("librobot_code_references", default=False)


@contextmanager
def code_references(allowed: bool = True) -> Iterator[None]:
    """Honour (or, with ``allowed=False``, refuse) ``module:attr`` references inside the block."""
    token = _ALLOWED.set(allowed)
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def code_references_allowed() -> bool:
    return _ALLOWED.get()


def is_code_reference(spec: object) -> bool:
    return isinstance(spec, str) and ":" in spec


def import_reference(spec: str, *, key: str) -> Any:
    """The object ``"package.module:attr.path"`` names, if references are honoured here."""
    if not code_references_allowed():
        raise UntrustedCodeError(
            f"{key}: '{spec}' names code to import (a 'module:attr' reference). LibroBot imports code named "
            "in a config only from a config you pass yourself (`librobot train CONFIG`, `vla_from_config`), "
            "never from a policy folder, checkpoint, export or dataset it loads: editing such a file would "
            "run code on whoever loads it. Name a registered component instead (register yours through a "
            "`librobot.plugins` entry point), or, for a folder you trust, load it with trust_remote_code=True."
        )
    module_name, _, attr_path = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        from librobot.core.errors import ConfigError

        raise ConfigError(f"{key}: cannot import {spec!r}: {exc}") from exc
    return obj


def resolve(spec: str, category: str, *, key: str) -> Any:
    """A registered name in ``category`` → its component; a code reference → the imported object.

    Unknown names raise ``UnknownComponentError`` (with close matches); refused references raise
    ``UntrustedCodeError``."""
    if is_code_reference(spec):
        return import_reference(spec, key=key)
    try:
        return get_registry(category).get(spec)
    except UnknownComponentError as exc:
        raise UnknownComponentError(f"{key}: {exc}") from None
