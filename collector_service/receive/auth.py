"""Bearer-token authentication for the receivers: who may write, checked in constant time.

Tokens come from the configuration (``--auth-token``) and from ``xray_auth_tokens``
(managed with ``xray tokens``), re-read in the background so a created or revoked
token takes effect without a restart. Authentication is on while a token is configured
or any token was ever created with ``xray tokens`` (a revoked one too: revoking the last
token must not let everybody in), and off otherwise. A presented token is hashed with
SHA-256 and compared with every known hash by ``hmac.compare_digest``, without stopping
at a match, so the time taken says nothing about which token, or how much of one, was
right.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum

import grpc
from prometheus_client import CollectorRegistry, Counter

from collector_service.errors import Unauthenticated
from collector_service.store.tokens import ManagedTokens, hash_token
from collector_service.telemetry.logs import RateLimitedLog

logger = logging.getLogger(__name__)
_refusals = RateLimitedLog(logger)

ReadManaged = Callable[[], Awaitable[ManagedTokens]]
REFRESH_S = 2.0
WWW_AUTHENTICATE = 'Bearer realm="xray"'
TRANSPORTS = ("grpc", "http", "events", "artifacts")


class Refusal(Enum):
    """Why a request was not authenticated; the value is the metric's ``reason`` label."""

    MISSING = "missing"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"

    @property
    def message(self) -> str:
        return {
            Refusal.MISSING: "authentication required: send `Authorization: Bearer <token>`",
            Refusal.MALFORMED: "malformed Authorization header: expected `Bearer <token>`",
            Refusal.UNKNOWN: "the bearer token is not accepted by this collector",
        }[self]


def parse_bearer(authorization: str | None) -> str | Refusal:
    """The token in ``Bearer <token>`` (scheme in any case), or why there is none."""
    if authorization is None or not authorization.strip():
        return Refusal.MISSING
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(ch.isspace() for ch in token):
        return Refusal.MALFORMED
    return token


class TokenAuthenticator:
    """Decides whether a request's ``Authorization`` value may write, and counts refusals."""

    def __init__(self, static_tokens: Sequence[str], registry: CollectorRegistry,
                 read_managed: ReadManaged | None = None, refresh_s: float = REFRESH_S) -> None:
        self._static = tuple(hash_token(token) for token in dict.fromkeys(static_tokens))
        self._managed = ManagedTokens(frozenset(), 0)
        self._known = self._static
        self._read_managed = read_managed
        self._refresh_s = refresh_s
        self._task: asyncio.Task[None] | None = None
        self._failures = Counter(
            "xray_auth_failures_total", "Requests refused for a missing, malformed or "
            "unknown bearer token", ["transport", "reason"], registry=registry)
        for transport in TRANSPORTS:
            for refusal in Refusal:
                self._failures.labels(transport, refusal.value)

    @property
    def enabled(self) -> bool:
        """True while tokens are required: requests without an accepted one are refused."""
        return bool(self._known or self._managed.revoked)

    def refusal(self, authorization: str | None) -> Refusal | None:
        """None when ``authorization`` may write (or authentication is off), else why not."""
        known = self._known
        if not self.enabled:
            return None
        token = parse_bearer(authorization)
        if isinstance(token, Refusal):
            return token
        presented = hash_token(token)
        matched = False
        for candidate in known:  # no early exit: every hash is compared
            matched |= hmac.compare_digest(presented, candidate)
        return None if matched else Refusal.UNKNOWN

    def allows(self, authorization: str | None) -> bool:
        return self.refusal(authorization) is None

    def require(self, authorization: str | None, transport: str) -> None:
        """Raise :class:`Unauthenticated` unless :meth:`allows`; count and log the refusal."""
        refused = self.refusal(authorization)
        if refused is not None:
            self._failures.labels(transport, refused.value).inc()
            _refusals.warning(f"{transport}/{refused.value}",
                              "refused an unauthenticated %s request (%s token)",
                              transport, refused.value)
            raise Unauthenticated(refused.message, refused.value)

    def set_managed(self, managed: ManagedTokens) -> None:
        """Replace the managed tokens; log when that turns authentication on or changes it."""
        before = self._managed
        self._use(managed)
        if managed != before:
            self.log_state()

    def _use(self, managed: ManagedTokens) -> None:
        self._managed = managed
        self._known = self._static + tuple(sorted(managed.active))

    def log_state(self) -> None:
        if self.enabled:
            logger.info("authentication on: %d static token(s), %d managed token(s) "
                        "(%d revoked)", len(self._static), len(self._managed.active),
                        self._managed.revoked)
        else:
            logger.info("authentication off: no tokens configured or managed")

    async def start(self, host: str) -> None:
        """Read the managed tokens once (errors propagate), then keep them fresh."""
        if self._read_managed is not None:
            self._use(await self._read_managed())
            self._task = asyncio.create_task(self._refresh_forever(self._read_managed),
                                             name="xray-auth-refresh")
        self.log_state()
        if not self.enabled and not is_loopback(host):
            logger.warning(
                "NO AUTHENTICATION on %s: anyone who can reach the OTLP and artifact ports "
                "can write spans and read artifacts. Set --auth-token / XRAY_AUTH_TOKENS or "
                "create a token with `xray tokens create`.", host)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh_forever(self, read: ReadManaged) -> None:
        """Re-read every ``refresh_s``; while that fails, keep the last set read."""
        failing = False
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                managed = await read()
            except Exception as exc:
                if not failing:
                    logger.warning("cannot refresh managed tokens, keeping the %d last read: "
                                   "%s", len(self._managed.active), exc)
                failing = True
                continue
            if failing:
                logger.info("managed tokens readable again")
            failing = False
            self.set_managed(managed)


def grpc_authorization(context: grpc.aio.ServicerContext) -> str | None:
    """The first ``authorization`` value in a call's metadata, if any."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else None
    return None


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable only from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
