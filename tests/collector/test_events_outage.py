"""``POST /events`` while the database is down: retryable answers, the outage spool, replay."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import psycopg

from collector_service.config import CollectorConfig
from collector_service.ingest.offload import ArtifactOffloader
from collector_service.ingest.pipeline import XRAY_EVENTS, Ingestor
from collector_service.server import Endpoints
from collector_service.store.artifacts import build_artifact_store
from collector_service.store.postgres import PostgresStore
from collector_service.telemetry.metrics import CollectorMetrics
from tests.collector.test_events_http import EVENTS, post
from tests.collector.test_storage_down import Switch, outage
from tests.fix_collector import RunningCollector

__all__ = ["outage"]  # the fixture, shared with test_storage_down
BODY = json.dumps(EVENTS).encode()


def test_events_are_refused_as_retryable_until_the_database_returns(
        outage: tuple[Endpoints, Switch, str]) -> None:
    endpoints, switch, url = outage
    collector = RunningCollector(endpoints, Path())
    switch.cut()
    status, body, headers = post(collector, BODY)
    assert status == 503 and "Retry-After" in headers
    assert "database unavailable" in json.loads(body)["message"]
    switch.restore()
    for _ in range(80):  # the collector notices the database is back after a probe
        status, _, _ = post(collector, BODY)
        if status == 200:
            break
        time.sleep(0.25)
    assert status == 200
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM xray_steps").fetchone() == (2,)


class ListSpool:
    """The outage spool's interface, in memory."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    def append(self, kind: str, payload: bytes) -> None:
        self.records.append((kind, payload))


def test_spooled_events_are_replayed_into_the_same_rows(
        outage: tuple[Endpoints, Switch, str], tmp_path: Path) -> None:
    _, switch, url = outage
    spool = ListSpool()

    async def scenario() -> None:
        store = PostgresStore(url, max_size=2, timeout_s=1.0)
        await store.open()
        config = CollectorConfig(database_url=url, data_dir=tmp_path)
        offloader = ArtifactOffloader(build_artifact_store(config))
        ingestor = Ingestor(store, offloader, CollectorMetrics(), 1 << 20, spool=spool)
        try:
            switch.cut()
            outcome = await ingestor.ingest_events(BODY, "json")
            assert outcome.spooled and (outcome.steps, outcome.runs) == (2, 1)
            switch.restore()
            for _ in range(80):
                try:
                    await ingestor.replay(*spool.records[0])
                    break
                except Exception:
                    await asyncio.sleep(0.25)
        finally:
            await store.close()
            offloader.close()

    asyncio.run(scenario())
    assert [kind for kind, _ in spool.records] == [XRAY_EVENTS]
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT step_name, status FROM xray_steps ORDER BY seq").fetchall()
        run = conn.execute("SELECT status, entity FROM xray_runs").fetchone()
    assert rows == [("keywords", "ok"), ("category_filter", "ok")]
    assert run == ("ok", "B0CX")

