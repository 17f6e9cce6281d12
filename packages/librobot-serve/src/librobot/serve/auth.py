"""Bearer-token / API-key authentication for the policy servers.

A request carries ``Authorization: Bearer <token>`` or ``X-API-Key: <token>`` (gRPC: the same
names as metadata). Tokens are compared with ``hmac.compare_digest`` against *every* configured
token without stopping at a match, so timing reveals neither the token nor which one matched.
"""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from librobot.core.errors import ConfigError
from librobot.core.logging import get_logger
from librobot.serve.errors import UnauthenticatedError

MIN_TOKEN_CHARS = 16
log = get_logger("serve.auth")


class TokenAuth:
    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [t.encode("utf-8") for t in tokens]
        if not self._tokens:
            raise ConfigError("TokenAuth needs at least one token")
        short = [i for i, t in enumerate(self._tokens) if len(t) < MIN_TOKEN_CHARS]
        if short:
            raise ConfigError(
                f"token {short[0] + 1} is shorter than {MIN_TOKEN_CHARS} characters; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )

    def token_from(self, authorization: str | None, api_key: str | None) -> str | None:
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        return api_key.strip() if api_key else None

    def check(self, authorization: str | None, api_key: str | None) -> None:
        """Raise ``UnauthenticatedError`` unless the request carries a configured token."""
        token = self.token_from(authorization, api_key)
        if token is None:
            raise UnauthenticatedError(
                "missing credentials: send 'Authorization: Bearer <token>' or 'X-API-Key: <token>'"
            )
        candidate = token.encode("utf-8")
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(candidate, known)
        if not matched:
            raise UnauthenticatedError("invalid token")


def load_token_file(path: str | Path) -> TokenAuth:
    """One token per line; blank lines and lines starting with '#' are ignored."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"token file {path} does not exist")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token file %s is readable by other users; restrict it with `chmod 600 %s`", path, path)
    tokens = [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    if not tokens:
        raise ConfigError(f"token file {path} holds no token (one per line)")
    return TokenAuth(tokens)


def token_from_env(name: str = "LIBROBOT_SERVE_TOKEN") -> str | None:
    """The client's token from the environment (so it stays off command lines)."""
    return os.environ.get(name) or None
