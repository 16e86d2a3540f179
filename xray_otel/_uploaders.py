"""Upload artifacts from the producer straight to the collector's S3 store.

With an uploader configured, an ``xray.artifact.*`` value too large to send inline is
put in the bucket by the producer, and only its reference (``xray-artifact:sha256:…``)
travels in the span; the collector checks that the object exists and records it. The
keys match the collector's S3 store: ``<prefix><sha256[:2]>/<sha256>``.

boto3 is imported only when an uploader is created: the SDK does not depend on it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from xray_otel.conventions import artifact_object_key, artifact_reference


class S3ArtifactUploader:
    """An :class:`~xray_otel.ArtifactUploader` that puts artifacts in an S3 bucket.

    Args:
        bucket, prefix: the collector's ``XRAY_S3_BUCKET`` and ``XRAY_S3_PREFIX``.
        endpoint_url: for S3-compatible stores; credentials come from the AWS chain.
        timeout_s: connect and read timeout of each upload.
        client: a ready boto3 S3 client to use instead.
    """

    def __init__(self, bucket: str, prefix: str = "xray/artifacts/",
                 endpoint_url: str | None = None, timeout_s: float = 5.0,
                 client: Any = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("s3", endpoint_url=endpoint_url, config=Config(
                connect_timeout=timeout_s, read_timeout=timeout_s,
                retries={"mode": "standard", "max_attempts": 2}))
        self.bucket = bucket
        self.prefix = prefix
        self._client = client

    def upload(self, name: str, data: bytes, content_type: str) -> str | None:
        """Put ``data`` in the bucket under its hash; return the reference to send."""
        digest = hashlib.sha256(data).hexdigest()
        self._client.put_object(Bucket=self.bucket, Key=self.prefix + artifact_object_key(digest),
                                Body=data, ContentType=content_type,
                                Metadata={"sha256": digest, "attribute": name})
        return artifact_reference(digest)
