"""Artifact storage: content-addressed blobs in a local folder or an S3 bucket.

An artifact's id is the SHA-256 of its bytes, so storing a payload twice stores it
once and every read can be checked against the id. Storing an existing payload again
refreshes its modification time, which is what lets pruning leave alone any object
written within its grace period. Stores are synchronous (boto3 is); the ingest path
calls them from worker threads.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from collector_service.config import CollectorConfig
from xray_otel.conventions import artifact_object_key

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

    def delete_if_idle(self, key: str, idle_s: float) -> bool:
        """Delete the object unless it was written in the last ``idle_s`` seconds."""
        ...

    def stat(self, key: str) -> tuple[int, str | None] | None:
        """Size and content type of a stored object (type may be unknown), or ``None``."""
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
            os.utime(path)  # written again: not idle, so pruning leaves it alone
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

    def stat(self, key: str) -> tuple[int, str | None] | None:
        try:
            return self._path(key).stat().st_size, None
        except FileNotFoundError:
            return None

    def delete_if_idle(self, key: str, idle_s: float) -> bool:
        path = self._path(key)
        try:
            if time.time() - path.stat().st_mtime < idle_s:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True


class S3ArtifactStore:
    """Artifacts as objects ``<prefix><id[:2]>/<id>`` in an S3 (or S3-compatible) bucket.

    Producers may upload there themselves (``xray_otel.S3ArtifactUploader`` writes the
    same keys) and send only a reference.

    Credentials and region come from the standard AWS chain; ``endpoint_url`` points at
    any S3-compatible store. Objects are always written (S3 has no cheaper "touch"), so
    storage is deduplicated and a re-written object is fresh for pruning.
    """

    kind = "s3"

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 timeout_s: float = 10.0, client: Any = None, max_connections: int = 16) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        self._client = client or boto3.client(
            "s3", endpoint_url=endpoint_url,
            config=Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                          max_pool_connections=max_connections,
                          retries={"mode": "standard", "max_attempts": 2}))

    def _key(self, key: str) -> str:
        if not valid_artifact_id(key):
            raise ArtifactNotFound(f"{key!r} is not an artifact id")
        return self.prefix + artifact_object_key(key)

    def stat(self, key: str) -> tuple[int, str | None] | None:
        from botocore.exceptions import ClientError

        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError:
            return None
        return int(head["ContentLength"]), head.get("ContentType")

    def put(self, key: str, data: bytes, content_type: str) -> str:
        object_key = self._key(key)
        self._client.put_object(Bucket=self.bucket, Key=object_key, Body=data,
                                ContentType=content_type, Metadata={"sha256": key})
        return f"s3://{self.bucket}/{object_key}"

    def open(self, key: str) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ArtifactNotFound(f"artifact {key} is not in s3://{self.bucket}") from exc
            raise
        body = response["Body"]
        try:
            yield from body.iter_chunks(_CHUNK)
        finally:
            body.close()

    def delete_if_idle(self, key: str, idle_s: float) -> bool:
        from botocore.exceptions import ClientError

        object_key = self._key(key)
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=object_key)
        except ClientError:
            return False
        if time.time() - head["LastModified"].timestamp() < idle_s:
            return False
        self._client.delete_object(Bucket=self.bucket, Key=object_key)
        return True


def build_artifact_store(config: CollectorConfig) -> ArtifactStore:
    """The artifact store the configuration names."""
    if config.artifact_store == "s3":
        assert config.s3_bucket is not None  # CollectorConfig refuses s3 without a bucket
        return S3ArtifactStore(config.s3_bucket, config.s3_prefix, config.s3_endpoint_url,
                               timeout_s=config.artifact_timeout)
    return LocalArtifactStore(config.local_artifact_dir)

def verified(key: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Pass ``chunks`` through; raise :class:`ArtifactCorrupted` at the end if the hash differs.

    Every reader goes through it: ``xray artifact get`` writes to a temporary file that
    replaces the target only when whole, and the HTTP endpoint holds back its last chunk.
    """
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != key:
        raise ArtifactCorrupted(f"artifact {key} is corrupted: its bytes hash to "
                                f"{digest.hexdigest()}")
