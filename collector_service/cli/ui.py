"""``xray ui``: serve the read-only web viewer over the configured (or embedded) database."""

from __future__ import annotations

import argparse
import asyncio

from prometheus_client import CollectorRegistry

from collector_service.config import CollectorConfig
from collector_service.receive.auth import TokenAuthenticator
from collector_service.store.artifacts import build_artifact_store
from collector_service.store.embedded import resolve_database
from collector_service.ui.app import TokenCheck, allow_all
from collector_service.ui.serve import start_viewer

DEFAULT_PORT = 8080


def token_check(config: CollectorConfig) -> TokenCheck:
    """The collector's static bearer tokens, when configured; otherwise everyone may look."""
    if not config.auth_tokens:
        return allow_all
    auth = TokenAuthenticator(config.auth_tokens, CollectorRegistry())
    return lambda header: auth.refusal(header) is None


def cmd_ui(args: argparse.Namespace, config: CollectorConfig) -> int:
    url, embedded = resolve_database(config)
    try:
        asyncio.run(_serve(url, config, args.host, args.port))
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


async def _serve(url: str, config: CollectorConfig, host: str, port: int) -> None:
    runner, port = await start_viewer(url, build_artifact_store(config), host, port,
                                      token_check(config))
    try:
        print(f"X-Ray viewer on http://{host}:{port}/runs (Ctrl-C stops it)", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
