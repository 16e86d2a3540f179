"""Artifact storage: content-addressed blobs in a local folder or an S3 bucket.

An artifact's id is the SHA-256 of its bytes, so storing a payload twice stores it
once and every read can be checked against the id. Stores are synchronous (boto3 is);
the ingest path calls them from worker threads.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

_CHUNK = 1024 * 1024


class ArtifactNotFound(LookupError):
    """No artifact with that id is stored."""


class ArtifactCorrupted(ValueError):
    """The stored bytes no longer hash to the artifact's id."""


def artifact_id(data: bytes) -> str:
    """The content address of ``data``: lowercase hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def valid_artifact_id(text: str) -> bool:
    return len(text) == 64 and all(ch in "0123456789abcdef" for ch in text)


class ArtifactStore(Protocol):
    """Where artifact payloads live."""

    kind: str

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` under ``key`` (its hash) unless present; return its location."""
        ...

    def open(self, key: str) -> Iterator[bytes]:
        """Stream the stored bytes; raise :class:`ArtifactNotFound` if absent."""
        ...


class LocalArtifactStore:
    """Artifacts as files under ``root/ab/cd/<id>``, written atomically."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not valid_artifact_id(key):
            raise ArtifactNotFound(f"{key!r} is not an artifact id")
        return self.root / key[:2] / key[2:4] / key

    def put(self, key: str, data: bytes, content_type: str) -> str:
        path = self._path(key)
        if path.exists() and path.stat().st_size == len(data):
            return str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
        return str(path)

    def open(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"artifact {key} is not in {self.root}") from exc
        with handle:
            while chunk := handle.read(_CHUNK):
                yield chunk


def verified(key: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Pass ``chunks`` through; raise :class:`ArtifactCorrupted` at the end if the hash differs.

    Callers that must not emit unverified bytes buffer; streaming callers abort the
    response, so a client never sees a complete, wrong payload.
    """
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != key:
        raise ArtifactCorrupted(f"artifact {key} is corrupted: its bytes hash to "
                                f"{digest.hexdigest()}")
