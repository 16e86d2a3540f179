"""Logs: JSON lines for pipelines, and repeated events said once per interval."""

from __future__ import annotations

import json
import logging

import pytest

from collector_service.telemetry.logs import JsonFormatter, RateLimitedLog


def test_json_lines_carry_message_level_and_extras() -> None:
    record = logging.makeLogRecord({"name": "xray.test", "levelname": "WARNING",
                                    "msg": "refused %d", "args": (3,), "event": "Overloaded"})
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "refused 3" and line["level"] == "WARNING"
    assert line["logger"] == "xray.test" and line["event"] == "Overloaded"


def test_repeats_are_held_back_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("xray.test"), interval_s=3600)
    with caplog.at_level(logging.WARNING, "xray.test"):
        for n in range(5):
            log.warning("bad", "bad request %d", n)
        log.warning("other", "another kind")
    assert [r.getMessage() for r in caplog.records] == ["bad request 0", "another kind"]
    log._next["bad"] = 0.0  # the interval has passed
    with caplog.at_level(logging.WARNING, "xray.test"):
        log.warning("bad", "bad request %d", 5)
    assert caplog.records[-1].getMessage() == (
        "bad request 5 (4 more like this since the last report)")
