"""Forward committed requests upstream from a bounded queue, best-effort.

A request is offered only after X-Ray committed it, so a request the collector refused
(and the client will send again) is not forwarded twice. ``offer`` never blocks and never
raises: past ``max_queue_bytes`` the request is dropped and counted. A few sender tasks
pass requests on unchanged as binary protobuf, over gRPC or OTLP/HTTP, retrying
retryable answers a few times with back-off; a slow or dead upstream only fills the
queue, it never touches storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import grpc
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from collector_service.telemetry.logs import RateLimitedLog

logger = logging.getLogger(__name__)
_failures = RateLimitedLog(logger)

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SENDERS = 2
ATTEMPTS = 3
TIMEOUT_S = 10.0
MAX_BACKOFF_S = 5.0
_RETRYABLE_GRPC = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                   grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
_RETRYABLE_HTTP = {429, 502, 503, 504}
_OUTCOMES = ("sent", "failed", "dropped_queue_full", "dropped_at_stop")


class Retryable(Exception):
    """The upstream asked to try again, after ``delay_s`` if it said so."""

    def __init__(self, message: str, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


@dataclass(frozen=True)
class Upstream:
    """Where and how to send: a gRPC target or an OTLP/HTTP traces URL."""

    protocol: str
    target: str
    tls: bool

    @classmethod
    def parse(cls, endpoint: str, protocol: str) -> Upstream:
        """``host:port``, ``http://host:port`` or ``https://host:port[/path]``."""
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        tls = parts.scheme == "https"
        if protocol == "grpc":
            return cls("grpc", parts.netloc, tls)
        path = parts.path if parts.path not in ("", "/") else "/v1/traces"
        return cls("http/protobuf", f"{parts.scheme}://{parts.netloc}{path}", tls)


class Forwarder:
    """The queue, its senders and their metrics."""

    def __init__(self, endpoint: str, protocol: str, headers: tuple[tuple[str, str], ...],
                 max_queue_bytes: int, registry: CollectorRegistry) -> None:
        self.upstream = Upstream.parse(endpoint, protocol)
        self._headers = headers
        self._max_queue_bytes = max_queue_bytes
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._ready = asyncio.Event()
        self._accepting = True
        self._senders: list[asyncio.Task[None]] = []
        self._busy = 0
        self._channel: grpc.aio.Channel | None = None
        self._session: aiohttp.ClientSession | None = None
        self.requests = Counter("xray_forward_requests", "Requests forwarded upstream, by outcome",
                                ["outcome"], registry=registry)
        for outcome in _OUTCOMES:
            self.requests.labels(outcome)
        self.queue_bytes = Gauge("xray_forward_queue_bytes", "Bytes waiting to be forwarded",
                                 multiprocess_mode="livesum", registry=registry)
        self.send_seconds = Histogram("xray_forward_send_seconds",
                                      "Time to forward one request, retries included",
                                      registry=registry)

    def start(self) -> None:
        if self.upstream.protocol == "grpc":
            self._channel = (
                grpc.aio.secure_channel(self.upstream.target, grpc.ssl_channel_credentials())
                if self.upstream.tls else grpc.aio.insecure_channel(self.upstream.target))
        else:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S), headers=dict(self._headers))
        self._senders = [asyncio.create_task(self._send_forever(), name=f"xray-forward-{n}")
                         for n in range(SENDERS)]
        logger.info("forwarding stored requests to %s (%s)", self.upstream.target,
                    self.upstream.protocol)

    def offer(self, payload: bytes) -> None:
        """Queue ``payload`` for the upstream, or drop it (counted) if the queue is full."""
        if not self._accepting or self._queued_bytes + len(payload) > self._max_queue_bytes:
            self.requests.labels("dropped_queue_full").inc()
            _failures.warning("forward_full", "forward queue full (%d bytes); request dropped",
                              self._queued_bytes)
            return
        self._queue.append(payload)
        self._queued_bytes += len(payload)
        self.queue_bytes.set(self._queued_bytes)
        self._ready.set()

    async def stop(self, deadline_s: float) -> None:
        """Send what is queued until ``deadline_s`` has passed, drop (and count) the rest."""
        self._accepting = False
        give_up = time.monotonic() + deadline_s
        while (self._queue or self._busy) and time.monotonic() < give_up:
            await asyncio.sleep(0.05)
        unsent = len(self._queue) + self._busy  # before cancelling, which clears _busy
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        self.requests.labels("dropped_at_stop").inc(unsent)
        self._queue.clear()
        self._queued_bytes = 0
        self.queue_bytes.set(0)
        if self._channel is not None:
            await self._channel.close()
        if self._session is not None:
            await self._session.close()

    async def _send_forever(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            payload = self._queue.popleft()
            self._queued_bytes -= len(payload)
            self.queue_bytes.set(self._queued_bytes)
            self._busy += 1
            try:
                outcome = await self._deliver(payload)
            finally:
                self._busy -= 1
            self.requests.labels(outcome).inc()

    async def _deliver(self, payload: bytes) -> str:
        """Send with retries; the outcome label."""
        started = time.perf_counter()
        delay = 0.5
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self._send(payload)
                self.send_seconds.observe(time.perf_counter() - started)
                return "sent"
            except Retryable as exc:
                if attempt == ATTEMPTS:
                    _failures.warning("forward_failed", "forwarding to %s failed: %s",
                                      self.upstream.target, exc)
                    return "failed"
                await asyncio.sleep(min(exc.delay_s or delay, MAX_BACKOFF_S))
                delay *= 2
            except Exception as exc:  # not retryable: drop and say so, never raise
                _failures.warning("forward_refused", "upstream %s refused a request: %s",
                                  self.upstream.target, exc)
                return "failed"
        raise AssertionError("unreachable")

    async def _send(self, payload: bytes) -> None:
        if self._channel is not None:
            await self._send_grpc(self._channel, payload)
        elif self._session is not None:
            await self._send_http(self._session, payload)

    async def _send_grpc(self, channel: grpc.aio.Channel, payload: bytes) -> None:
        export = channel.unary_unary(EXPORT_METHOD, request_serializer=None,
                                     response_deserializer=None)
        try:
            await export(payload, timeout=TIMEOUT_S, metadata=self._headers or None)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _RETRYABLE_GRPC:
                raise Retryable(f"{exc.code().name}: {exc.details()}",
                                _retry_delay(exc.trailing_metadata())) from exc
            raise

    async def _send_http(self, session: aiohttp.ClientSession, payload: bytes) -> None:
        try:
            async with session.post(self.upstream.target, data=payload, headers={
                    "Content-Type": "application/x-protobuf"}) as response:
                await response.read()
                if response.status in _RETRYABLE_HTTP:
                    raise Retryable(f"HTTP {response.status}",
                                    _seconds(response.headers.get("Retry-After")))
                if response.status >= 300:
                    raise RuntimeError(f"HTTP {response.status}")
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc


def _retry_delay(trailers: object) -> float | None:
    """The ``RetryInfo`` delay in a gRPC status's details, if the upstream sent one."""
    for key, value in trailers or ():  # type: ignore[attr-defined]
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        with contextlib.suppress(Exception):  # malformed details: back off as usual
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return float(info.retry_delay.ToTimedelta().total_seconds())
    return None


def _seconds(header: str | None) -> float | None:
    with contextlib.suppress(TypeError, ValueError):
        return float(header) if header is not None else None
    return None
