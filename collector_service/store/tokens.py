"""Bearer tokens kept in ``xray_auth_tokens``: create, list, revoke, and read the active hashes.

Only the SHA-256 of a token is stored, so the database never holds a usable secret.
The create/list/revoke functions are synchronous (``xray tokens``); the collector reads
the hashes of unrevoked tokens asynchronously, every few seconds.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from collector_service.errors import NotFound, XRayError
from collector_service.store.queries import load

_QUERIES = load("tokens.sql")
_ACTIVE_NAME_INDEX = re.compile(r"xray_auth_tokens_active_name_idx(_\d+)?")
"""The unique index on active names; on Citus the error names its shard (``_<shard id>``)."""
TOKEN_PREFIX = "xr_"
MAX_NAME_CHARS = 100
_ID_ATTEMPTS = 5


def hash_token(token: str) -> bytes:
    """The SHA-256 of ``token``'s UTF-8 bytes: what is stored and compared."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def new_secret() -> str:
    """A new token: ``xr_`` and 256 random bits, URL-safe (fits an HTTP header as is)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a token: never its secret or its hash."""

    token_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class NewToken:
    """A token just created, with the secret that is shown this once."""

    info: TokenInfo
    secret: str


def check_name(name: str) -> str:
    """``name`` stripped, or an error saying why it cannot name a token."""
    name = name.strip()
    if not name:
        raise XRayError("--name must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise XRayError(f"--name is {len(name)} characters long; at most {MAX_NAME_CHARS}")
    if not name.isprintable():
        raise XRayError(f"--name {name!r} contains control characters")
    return name


def create_token(conn: psycopg.Connection[Any], name: str) -> NewToken:
    """Store a new token's hash under ``name`` (unique among active tokens); return the secret."""
    name = check_name(name)
    for _ in range(_ID_ATTEMPTS):
        secret = new_secret()
        params = {"token_id": secrets.token_hex(6), "name": name,
                  "token_sha256": hash_token(secret)}
        try:
            with conn.transaction():
                row = conn.execute(_QUERIES["create"], params).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            if _ACTIVE_NAME_INDEX.fullmatch(exc.diag.constraint_name or ""):
                raise XRayError(f"a token named {name!r} is active already; revoke it "
                                "first or choose another name") from None
            continue  # an id (or, in theory, a hash) already taken: draw again
        assert row is not None
        return NewToken(TokenInfo(*row), secret)
    raise XRayError("could not draw an unused token id; try again")


def list_tokens(conn: psycopg.Connection[Any]) -> list[TokenInfo]:
    """Every token ever created, oldest first, revoked ones included."""
    return [TokenInfo(*row) for row in conn.execute(_QUERIES["list"]).fetchall()]


def revoke_token(conn: psycopg.Connection[Any], key: str) -> tuple[TokenInfo, bool]:
    """Revoke the token with id ``key``, or the active one named ``key``.

    Returns the token and whether this call revoked it (False: it was revoked before).
    """
    with conn.transaction():
        row = conn.execute(_QUERIES["find"], {"key": key}).fetchone()
        if row is None:
            raise NotFound(f"no token with id {key!r} and no active token named {key!r}")
        found = TokenInfo(*row)
        revoked = conn.execute(_QUERIES["revoke"], {"token_id": found.token_id}).fetchone()
    return (TokenInfo(*revoked), True) if revoked else (found, False)


@dataclass(frozen=True)
class ManagedTokens:
    """What a collector needs to know of the managed tokens."""

    active: frozenset[bytes]
    """SHA-256 hashes of the unrevoked tokens: these are accepted."""
    revoked: int
    """How many were revoked: once a token was ever created, authentication stays on, so
    revoking the last (perhaps leaked) token never opens the collector to everybody."""


async def read_managed_tokens(conn: psycopg.AsyncConnection[Any]) -> ManagedTokens:
    cur = await conn.execute(_QUERIES["managed"])
    rows = await cur.fetchall()
    return ManagedTokens(frozenset(bytes(digest) for digest, revoked in rows if not revoked),
                         sum(1 for _, revoked in rows if revoked))
