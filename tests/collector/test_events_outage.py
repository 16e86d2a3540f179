"""``POST /events`` while the database is down: retryable answers, the outage spool, replay."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg

from collector_service.server import Endpoints
from tests.collector.test_events_http import EVENTS, post
from tests.collector.test_storage_down import Switch, outage, spooling
from tests.fix_collector import RunningCollector

__all__ = ["outage", "spooling"]  # the fixtures, shared with test_storage_down
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


def test_events_are_spooled_during_an_outage_and_stored_once_it_ends(
        spooling: tuple[Endpoints, Switch, str]) -> None:
    endpoints, switch, url = spooling
    collector = RunningCollector(endpoints, Path())
    switch.cut()
    start, end = {"events": EVENTS["events"][:2]}, {"events": EVENTS["events"][2:]}
    for batch in (start, end):  # a step's start and its end in two spooled requests
        status, body, _ = post(collector, json.dumps(batch).encode())
        assert status == 200, body
    switch.restore()
    give_up = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < give_up:
            rows = conn.execute("SELECT step_name, status FROM xray_steps ORDER BY seq").fetchall()
            if rows == [("keywords", "ok"), ("category_filter", "ok")]:
                break
            time.sleep(0.1)
        run = conn.execute("SELECT status, entity FROM xray_runs").fetchone()
    assert rows == [("keywords", "ok"), ("category_filter", "ok")]
    assert run == ("ok", "B0CX")
