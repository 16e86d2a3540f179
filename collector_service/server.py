"""Assemble and run the collector: database, migrations, ingest path, both receivers.

``Collector`` is the asyncio object; ``CollectorThread`` runs one on a background
thread for embedding in synchronous programs (the demo, tests, benchmarks).

Stopping is a drain: readiness and gRPC health turn NOT_SERVING, new requests are
refused as retryable, requests already received get the grace period to finish (those
still running then are cancelled and answered UNAVAILABLE, so the client retries), then
the servers, the pool and the embedded database close.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1._async import HealthServicer

from collector_service.config import CollectorConfig
from collector_service.errors import StorageUnavailable
from collector_service.forward.forwarder import Forwarder
from collector_service.ingest.admission import Admission
from collector_service.ingest.offload import ArtifactOffloader, OffloadPolicy
from collector_service.ingest.pipeline import Ingestor
from collector_service.receive import artifact_http, events_http, otlp_grpc, otlp_http
from collector_service.receive.auth import TokenAuthenticator
from collector_service.receive.ports import check_ports_free, port_taken, shares_ports
from collector_service.receive.tls import ServerTLS, load_server_tls
from collector_service.store.artifacts import ArtifactStore, build_artifact_store
from collector_service.store.embedded import EmbeddedPostgres, resolve_database
from collector_service.store.migrate import apply_migrations
from collector_service.store.partitions import keep_partitions_ahead
from collector_service.store.postgres import PostgresStore
from collector_service.store.spool import Spool, orphan_folders
from collector_service.telemetry.metrics import CollectorMetrics
from collector_service.ui.serve import start_viewer

logger = logging.getLogger(__name__)

_CLOSE_MARGIN_S = 1.0
"""Of the shutdown grace, this much is kept for closing servers and the pool."""
SPOOL_CHECK_S = 0.5
"""How often a collector with spooled requests looks whether the database is back."""


@dataclass
class Endpoints:
    """Where a running collector listens."""

    grpc_port: int
    http_port: int
    database_url: str
    ui_port: int | None = None


class Collector:
    """The OTLP collector: start, serve until stopped, stop."""

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.metrics = CollectorMetrics(multiprocess_dir=config.metrics_dir)
        self._embedded: EmbeddedPostgres | None = None
        self._store: PostgresStore | None = None
        self._admission: Admission | None = None
        self._grpc: grpc.aio.Server | None = None
        self._health: HealthServicer | None = None
        self._http: web.AppRunner | None = None
        self._offloader: ArtifactOffloader | None = None
        self._spool: Spool | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._partitions: asyncio.Task[None] | None = None
        self._forwarder: Forwarder | None = None
        self._auth: TokenAuthenticator | None = None
        self._ui: web.AppRunner | None = None
        self._stopping = False
        self._published_ready = True

    async def start(self) -> Endpoints:
        """TLS files, free ports, then everything else; if any part fails, close what
        started and raise."""
        tls = load_server_tls(self.config)  # bad files stop us before anything starts
        check_ports_free(self.config)
        try:
            return await self._start(tls)
        except BaseException:
            await self.stop(grace_s=0.1)
            raise

    async def _start(self, tls: ServerTLS | None) -> Endpoints:
        """Database and migrations, tokens, the ingest path, then both receivers."""
        url = await self._start_storage()
        ingestor, artifacts = await self._start_ingest()
        grpc_port, http_port = await self._start_receivers(ingestor, artifacts, tls)
        logger.info("OTLP/gRPC on %s:%d, OTLP/HTTP on %s:%d%s", self.config.host, grpc_port,
                    self.config.host, http_port, " (TLS)" if tls else "")
        ui_port = None
        if self.config.ui_port is not None:
            auth = self._auth
            assert auth is not None
            self._ui, ui_port = await start_viewer(
                url, artifacts, self.config.host, self.config.ui_port,
                lambda header: auth.refusal(header) is None, tls.ssl_context() if tls else None)
            logger.info("web viewer on %s:%d", self.config.host, ui_port)
        return Endpoints(grpc_port, http_port, url, ui_port)

    async def _start_storage(self) -> str:
        config = self.config
        url, self._embedded = await asyncio.to_thread(resolve_database, config)
        # Worker processes: the supervisor applied them once, before starting any.
        applied = [] if shares_ports(config) else await asyncio.to_thread(apply_migrations, url)
        if applied:
            logger.info("migrations applied: %s", ", ".join(applied))
        self._store = PostgresStore(url, max_size=config.pool_max_size,
                                    timeout_s=config.db_timeout,
                                    on_availability=self._availability_changed)
        await self._store.open()
        await self._store.check_privileges()
        self._partitions = asyncio.create_task(
            keep_partitions_ahead(self._store.create_step_partitions), name="xray-partitions")
        self.metrics.db_up.set(1)
        self.metrics.watch_pool(self._store.connections_in_use)
        self._auth = TokenAuthenticator(config.auth_tokens, self.metrics.registry,
                                        self._store.managed_tokens)
        await self._auth.start(config.host)
        if config.spool_max_bytes > 0:
            self._spool = Spool(config.own_spool_dir, config.spool_max_bytes,
                                self.metrics.registry, adopt_from=orphan_folders(config))
            await asyncio.to_thread(self._spool.open)
        return url

    async def _start_ingest(self) -> tuple[Ingestor, ArtifactStore]:
        config = self.config
        assert self._store is not None
        admission = self._admission = Admission(config.max_inflight, config.max_inflight_bytes,
                                                self.metrics)
        artifacts = build_artifact_store(config)
        policy = OffloadPolicy(config.inline_ceiling, config.max_artifact_bytes,
                               config.artifact_timeout)
        self._offloader = ArtifactOffloader(artifacts, policy, self.metrics)
        ingestor = Ingestor(self._store, self._offloader, self.metrics,
                            config.max_request_bytes,
                            under_pressure=lambda: admission.under_pressure, spool=self._spool)
        if self._spool is not None:
            self._replayer = asyncio.create_task(self._replay_spool(self._spool, ingestor),
                                                 name="xray-spool-replay")
        if config.forward_endpoint:
            self._forwarder = Forwarder(config.forward_endpoint, config.forward_protocol,
                                        config.forward_headers, config.forward_queue_bytes,
                                        self.metrics.registry)
            self._forwarder.start()
            ingestor.on_commit(self._forwarder.offer)
        return ingestor, artifacts

    async def _start_receivers(self, ingestor: Ingestor, artifacts: ArtifactStore,
                               tls: ServerTLS | None) -> tuple[int, int]:
        config = self.config
        assert self._admission is not None and self._store is not None
        admission, auth = self._admission, self._auth
        self._grpc, self._health = otlp_grpc.build_server(
            ingestor.ingest, admission, self.metrics, config.max_request_bytes, auth,
            reuse_port=shares_ports(config))
        address = f"{config.host}:{config.grpc_port}"
        try:
            grpc_port = (self._grpc.add_secure_port(address, tls.grpc_credentials()) if tls
                         else self._grpc.add_insecure_port(address))
        except RuntimeError:
            grpc_port = 0
        if grpc_port == 0:
            raise port_taken(config.host, config.grpc_port, "grpc")
        await self._grpc.start()
        await otlp_grpc.set_health(self._health, True)
        app = otlp_http.build_app(
            ingestor.ingest, admission, self.metrics, self.readiness, config.max_request_bytes,
            extra_routes=[*artifact_http.routes(artifacts, self._store, auth),
                          *events_http.routes(ingestor.ingest_events, admission, self.metrics,
                                              config.max_request_bytes, auth)], auth=auth)
        # Decompression happens in the ingest path, which enforces the size limit.
        self._http = web.AppRunner(app, access_log=None, auto_decompress=False,
                                   shutdown_timeout=_CLOSE_MARGIN_S)
        await self._http.setup()
        site = web.TCPSite(self._http, config.host, config.http_port,
                           ssl_context=tls.ssl_context() if tls else None,
                           reuse_port=shares_ports(config))
        try:
            await site.start()
        except OSError as exc:
            raise port_taken(config.host, config.http_port, "http") from exc
        return grpc_port, self._http.addresses[0][1]

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether this collector takes work now, and why (``/readyz``, gRPC health)."""
        if self._stopping or self._store is None:
            return False, {"status": "shutting_down"}
        spool = self._spool
        spooled = {} if spool is None else {"spool_bytes": spool.pending_bytes}
        if self._store.available:
            return True, {"status": "ready", "database": "up", **spooled}
        down = {"database": f"down: {self._store.watch.reason}", **spooled}
        if spool is not None and spool.pending_bytes < spool.max_bytes:
            return True, {"status": "spooling", **down}
        return False, {"status": "unavailable", **down}

    async def _replay_spool(self, spool: Spool, ingestor: Ingestor) -> None:
        """Feed spooled requests to the database whenever it answers."""
        while True:
            await asyncio.sleep(SPOOL_CHECK_S)
            self._publish_health()  # a spool filling up during an outage stops readiness
            if not spool.pending_records or self._store is None or not self._store.available:
                continue
            try:
                replayed = await spool.drain(ingestor.replay)
            except StorageUnavailable:
                continue  # the database went away again; the records wait
            except Exception:
                logger.exception("replaying the spool failed; will try again")
                continue
            if replayed:
                logger.info("replayed %d spooled request(s) into the database", replayed)

    def _availability_changed(self, up: bool) -> None:
        self.metrics.db_up.set(1 if up else 0)
        self._publish_health()

    def _publish_health(self) -> None:
        """Tell gRPC health what /readyz says, when that changed."""
        ready, _ = self.readiness()
        if self._health is not None and ready != self._published_ready:
            self._published_ready = ready
            _spawn(otlp_grpc.set_health(self._health, ready))

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain (see the module docstring), then close everything."""
        grace = self.config.shutdown_grace if grace_s is None else grace_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self._stopping = True
        self._publish_health()
        if self._admission is not None:
            finished = await self._admission.drain(max(grace - _CLOSE_MARGIN_S, 0.1))
            if not finished:
                logger.warning("shutdown grace ended; requests still running were refused "
                               "as retryable")
        if self._grpc is not None:
            # Every handler now answers at once; the rest of the grace lets the last
            # answers reach their clients instead of cancelling them.
            await self._grpc.stop(max(deadline - loop.time(), _CLOSE_MARGIN_S / 2))
        if self._http is not None:
            await self._http.cleanup()
        if self._ui is not None:
            await self._ui.cleanup()
        await self._close()

    async def _close(self) -> None:
        """Background work, the pool, the spool and the embedded database, in that order."""
        for task in (self._replayer, self._partitions):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._forwarder is not None:
            await self._forwarder.stop(_CLOSE_MARGIN_S)
        if self._auth is not None:
            await self._auth.stop()
        if self._store is not None:
            await self._store.close()
        if self._offloader is not None:
            await asyncio.to_thread(self._offloader.close)
        if self._spool is not None:
            self._spool.close()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)

    async def serve_forever(
            self, watch: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Run until SIGINT or SIGTERM (even one received while starting), then stop
        within the shutdown grace. ``watch`` is given the stop event and may set it too
        (a worker process stops when its supervisor is gone)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        settle_garbage_collector()
        watcher = asyncio.create_task(watch(stop)) if watch is not None else None
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
        logger.info("shutting down (grace %gs)", self.config.shutdown_grace)
        await self.stop()
        logger.info("stopped")


GC_YOUNG_THRESHOLD = 10_000
"""Container objects allocated (net) before Python's cyclic collector runs; its default is 700."""


def settle_garbage_collector() -> None:
    """Tune Python's cyclic garbage collector for a collector process, once it has started.

    Mapping a request allocates thousands of dicts, tuples and rows that reference counting
    frees once the request is stored; with the default threshold the cyclic collector ran
    every 700 allocations and scanned whatever was alive, about 12% of a worker's CPU under
    load (docs/performance.md). Objects made at start-up (modules, the server, the pool)
    live as long as the process, so they are frozen out of every collection, and the
    collector runs after 10,000 allocations. Not higher: a refused gRPC request leaves a
    reference cycle (in gRPC's own abort handling) that holds its payload until the next
    collection, and at 50,000 those payloads pushed the overload test past its memory
    bound. Only for the ``xray collector`` process itself: a collector embedded in another
    program leaves that program's settings alone.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` in the background, keeping a reference until it ends."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no running loop: nothing to tell
        coro.close()
        return
    task = loop.create_task(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


class CollectorThread:
    """A collector on its own event loop in a daemon thread."""

    def __init__(self, config: CollectorConfig) -> None:
        self._collector = Collector(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="xray-collector",
                                        daemon=True)

    @property
    def collector(self) -> Collector:
        return self._collector

    def start(self) -> Endpoints:
        self._thread.start()
        try:
            return asyncio.run_coroutine_threadsafe(self._collector.start(), self._loop).result()
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)  # start closed what it opened
            self._thread.join()
            self._loop.close()
            raise

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
