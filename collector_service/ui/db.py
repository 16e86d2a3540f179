"""The viewer's database access: named queries, each in a read-only transaction."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from collector_service.errors import StorageUnavailable
from collector_service.store.queries import load

QUERIES = load("ui.sql", "collector_service.ui")

READ_ONLY = "-c default_transaction_read_only=on"
"""Every session the viewer opens refuses writes, whatever the role may do."""


class ViewerDatabase:
    """A small pool of read-only connections and the viewer's named queries."""

    def __init__(self, url: str, max_size: int = 4) -> None:
        self._pool = AsyncConnectionPool(
            url, min_size=1, max_size=max_size, open=False, timeout=10,
            kwargs={"autocommit": True, "options": READ_ONLY})

    async def open(self) -> None:
        await self._pool.open()

    async def close(self) -> None:
        await self._pool.close()

    async def rows(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of the named query from ``ui/sql/ui.sql``."""
        return await self.run(QUERIES[name], params)

    async def run(self, query: bytes, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of ``query``."""
        try:
            async with (self._pool.connection() as conn,
                        conn.cursor(row_factory=dict_row) as cur):
                await cur.execute(query, params)
                return await cur.fetchall()
        except psycopg.errors.UndefinedTable as exc:
            raise StorageUnavailable("the X-Ray tables are missing: run `xray migrate` "
                                     "against this database") from exc
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StorageUnavailable(f"the database is unreachable: {exc}") from exc

    async def row(self, name: str, params: dict[str, Any]) -> dict[str, Any] | None:
        found = await self.rows(name, params)
        return found[0] if found else None
