"""Assemble and run the collector: database, migrations, ingest path, both receivers.

``Collector`` is the asyncio object; ``CollectorThread`` runs one on a background
thread for embedding in synchronous programs (the demo, tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass

import grpc
from aiohttp import web

from collector_service.config import CollectorConfig
from collector_service.ingest.offload import ArtifactOffloader, OffloadPolicy
from collector_service.ingest.pipeline import Ingestor
from collector_service.receive import artifact_http, otlp_grpc, otlp_http
from collector_service.store.artifacts import build_artifact_store
from collector_service.store.embedded import EmbeddedPostgres, resolve_database
from collector_service.store.migrate import apply_migrations
from collector_service.store.postgres import PostgresStore
from collector_service.telemetry.stats import IngestStats

logger = logging.getLogger(__name__)


@dataclass
class Endpoints:
    """Where a running collector listens."""

    grpc_port: int
    http_port: int
    database_url: str


class Collector:
    """The OTLP collector: start, serve until stopped, stop."""

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self._embedded: EmbeddedPostgres | None = None
        self._store: PostgresStore | None = None
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._offloader: ArtifactOffloader | None = None

    async def start(self) -> Endpoints:
        config = self.config
        url, self._embedded = await asyncio.to_thread(resolve_database, config)
        applied = await asyncio.to_thread(apply_migrations, url)
        if applied:
            logger.info("migrations applied: %s", ", ".join(applied))
        self._store = PostgresStore(url, max_size=config.pool_max_size,
                                    timeout_s=config.db_timeout)
        await self._store.open()
        artifacts = build_artifact_store(config)
        policy = OffloadPolicy(config.inline_ceiling, config.max_artifact_bytes,
                               config.artifact_timeout)
        stats = IngestStats()
        self._offloader = ArtifactOffloader(artifacts, policy, stats)
        ingestor = Ingestor(self._store, self._offloader, max_inflight=config.max_inflight,
                            stats=stats)
        self._grpc, grpc_port = otlp_grpc.build_server(
            ingestor.ingest, config.host, config.grpc_port, config.max_request_bytes)
        await self._grpc.start()
        app = otlp_http.build_app(
            ingestor.ingest, self._store.check, config.max_request_bytes, stats,
            extra_routes=artifact_http.routes(artifacts, self._store))
        # Decompression happens in otlp.decompress, which enforces the size limit.
        self._http = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._http.setup()
        site = web.TCPSite(self._http, config.host, config.http_port)
        await site.start()
        http_port = self._http.addresses[0][1]
        logger.info("OTLP/gRPC on %s:%d, OTLP/HTTP on %s:%d", config.host, grpc_port,
                    config.host, http_port)
        return Endpoints(grpc_port, http_port, url)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish, then close storage."""
        if self._grpc is not None:
            await self._grpc.stop(grace_s)
        if self._http is not None:
            await self._http.cleanup()
        if self._store is not None:
            await self._store.close()
        if self._offloader is not None:
            await asyncio.to_thread(self._offloader.close)
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)

    async def serve_forever(self) -> None:
        """Run until SIGINT or SIGTERM."""
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        logger.info("shutting down")
        await self.stop()


class CollectorThread:
    """A collector on its own event loop in a daemon thread."""

    def __init__(self, config: CollectorConfig) -> None:
        self._collector = Collector(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="xray-collector",
                                        daemon=True)

    def start(self) -> Endpoints:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self._collector.start(), self._loop).result()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._collector.stop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
