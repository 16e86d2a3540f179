"""A real S3 API on loopback: moto in server mode, spoken to over HTTP by boto3."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    client: Any


@pytest.fixture(scope="session")
def _moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(_moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
       request: pytest.FixtureRequest) -> S3Server:
    """A fresh bucket; credentials come from the environment, as the AWS chain reads them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=_moto_endpoint)
    bucket = f"xray-{abs(hash(request.node.nodeid)) % 10**8}"
    client.create_bucket(Bucket=bucket)
    return S3Server(_moto_endpoint, bucket, client)
