"""``GET /v1/artifacts/{id}``: stream an artifact from the store, verifying its hash.

Chunks pass through :func:`verified`, and each is sent only when the next has been read,
so the last one goes out only after the hash is checked: a corrupted artifact ends the
response short of its ``Content-Length``, and no client mistakes it for the real one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from aiohttp import web

from collector_service.errors import StorageUnavailable, Unauthenticated
from collector_service.receive.auth import WWW_AUTHENTICATE, TokenAuthenticator
from collector_service.store.artifacts import (
    ArtifactCorrupted,
    ArtifactNotFound,
    ArtifactStore,
    valid_artifact_id,
    verified,
)
from collector_service.store.postgres import PostgresStore

logger = logging.getLogger(__name__)


def routes(store: ArtifactStore, db: PostgresStore,
           auth: TokenAuthenticator | None = None) -> list[web.RouteDef]:
    """The artifact-fetching routes (bearer token checked first, with ``auth``)."""

    async def get_artifact(request: web.Request) -> web.StreamResponse:
        try:
            if auth is not None:
                auth.require(request.headers.get("Authorization"), "artifacts")
        except Unauthenticated as exc:
            refused = _error(401, str(exc))
            refused.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
            return refused
        key = request.match_info["artifact_id"].lower()
        if not valid_artifact_id(key):
            return _error(400, f"{key!r} is not an artifact id (64 hex characters)")
        try:
            info = await db.artifact_info(key)
        except StorageUnavailable as exc:
            return _error(503, str(exc))
        if info is None:
            return _error(404, f"no step references artifact {key}")
        if not info.stored:
            return _error(404, f"artifact {key} was kept only as a summary "
                               f"({info.downgrade_reason}); preview: {info.preview!r}")
        chunks = verified(key, store.open(key))
        try:
            first = await asyncio.to_thread(next, chunks, None)
        except ArtifactNotFound as exc:
            return _error(404, f"{exc}; the reference exists but the object is gone")
        except ArtifactCorrupted as exc:  # nothing sent yet: say so plainly
            logger.error("%s", exc)
            return _error(500, str(exc))
        response = web.StreamResponse(headers={
            "Content-Type": info.content_type, "Content-Length": str(info.size_bytes),
            "ETag": f'"{key}"', "Cache-Control": "public, max-age=31536000, immutable"})
        await response.prepare(request)
        await send_verified(response, key, first, chunks)
        return response

    return [web.get("/v1/artifacts/{artifact_id}", get_artifact)]


async def send_verified(response: web.StreamResponse, key: str, held: bytes | None,
                        chunks: Iterator[bytes]) -> None:
    """Send ``held`` then the rest of ``chunks``, always one chunk behind the reads, so
    the last chunk goes out only once the hash is checked (the viewer's downloads too)."""
    try:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            if held is not None:
                await response.write(held)
            held = chunk
    except ArtifactCorrupted as exc:
        logger.error("%s", exc)
        raise ConnectionAbortedError(f"artifact {key} is corrupted") from exc
    if held is not None:
        await response.write(held)
    await response.write_eof()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
