"""Know at once whether PostgreSQL is reachable: a circuit breaker fed by a fast probe.

While the breaker is open every database call fails immediately, so clients hear "retry
later" in milliseconds instead of after a pool timeout. A probe on its own connection
notices an outage within a second (or at once, when a real call reports a broken
connection) and, while the database is down, tries again every quarter second; the moment
it answers, the store gets a fresh pool, so storage resumes without waiting out the old
pool's reconnection back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

logger = logging.getLogger(__name__)

PROBE_INTERVAL_S = 1.0
RETRY_INTERVAL_S = 0.25
CONNECT_TIMEOUT_S = 1.0

_CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03")
"""Connection exceptions, admin/crash shutdown, cannot connect now."""


def is_connection_failure(exc: BaseException) -> bool:
    """True when ``exc`` means the database, not the statement, is the problem."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith(_CONNECTION_SQLSTATES)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DatabaseWatch:
    """The breaker: ``up`` is read on every call; a background task keeps it true."""

    def __init__(self, conninfo: str, on_down: Callable[[], Awaitable[None]],
                 on_up: Callable[[], Awaitable[None]],
                 on_change: Callable[[bool], None] = lambda up: None) -> None:
        self._conninfo = conninfo
        self._on_down = on_down
        self._on_up = on_up
        self._on_change = on_change
        self.up = True
        self.reason = ""
        self.down_since: float | None = None
        self._wake = asyncio.Event()
        self._probe_conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="xray-db-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_probe()

    def report_failure(self, exc: BaseException) -> None:
        """A real call met a broken connection: open the breaker now, probe at once."""
        if self.up and is_connection_failure(exc):
            self._open(f"{type(exc).__name__}: {first_line(exc)}")
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            interval = PROBE_INTERVAL_S if self.up else RETRY_INTERVAL_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                answered = await self._probe()
            except Exception:  # the watch must outlive anything a probe does
                logger.exception("database probe failed unexpectedly")
                answered = False
            if answered and not self.up:
                await self._close()
            elif not answered and self.up:
                self._open(self.reason or "the database stopped answering")
            if not self.up:
                await self._on_down()

    async def _probe(self) -> bool:
        try:
            conn = await self._probe_connection()
            await asyncio.wait_for(conn.execute("SELECT 1"), CONNECT_TIMEOUT_S)
            return True
        except (psycopg.Error, OSError, TimeoutError) as exc:
            self.reason = first_line(exc)
            await self._close_probe()
            return False

    async def _probe_connection(self) -> psycopg.AsyncConnection[Any]:
        """The probe's own connection, opened again when it was lost."""
        if self._probe_conn is not None and not self._probe_conn.closed:
            return self._probe_conn
        conn: psycopg.AsyncConnection[Any] = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, connect_timeout=2),
            CONNECT_TIMEOUT_S)
        self._probe_conn = conn
        return conn

    async def _close_probe(self) -> None:
        conn, self._probe_conn = self._probe_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def _open(self, reason: str) -> None:
        self.up = False
        self.reason = reason
        self.down_since = time.monotonic()
        logger.warning("database unreachable (%s); refusing or spooling until it answers",
                       reason)
        self._on_change(False)

    async def _close(self) -> None:
        outage = time.monotonic() - (self.down_since or time.monotonic())
        await self._on_up()
        self.up = True
        self.reason = ""
        self.down_since = None
        logger.warning("database reachable again after %.1fs", outage)
        self._on_change(True)
