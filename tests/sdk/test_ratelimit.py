"""Rate-limited logging: repeated messages are suppressed and counted, never raised."""

from __future__ import annotations

import logging

import pytest

from xray_otel._ratelimit import RateLimitedLogger, RateLimiter, RateLimitFilter


def test_limiter_admits_once_per_interval_and_counts_suppressed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr("xray_otel._ratelimit.time.monotonic", lambda: now[0])
    limiter = RateLimiter(interval_s=10)
    assert limiter.admit("k") == 0
    assert limiter.admit("k") is None
    assert limiter.admit("k") is None
    assert limiter.admit("other") == 0
    now[0] += 11
    assert limiter.admit("k") == 2


def test_limiter_bounds_its_keys() -> None:
    limiter = RateLimiter(interval_s=60, max_keys=3)
    admitted = [limiter.admit(i) for i in range(10)]
    assert admitted[:4] == [0, 0, 0, 0]  # three keys, then the shared overflow slot
    assert admitted[4:] == [None] * 6
    assert len(limiter._last) == 4


def test_logger_suppresses_repeats(caplog: pytest.LogCaptureFixture) -> None:
    target = logging.getLogger("xray_otel.test_ratelimit")
    log = RateLimitedLogger(target, interval_s=60)
    with caplog.at_level(logging.DEBUG, target.name):
        for _ in range(5):
            log.warning("key", "message %d", 1)
        log.once(logging.WARNING, "once", "only once")
        log.once(logging.WARNING, "once", "only once")
    assert caplog.text.count("message 1") == 1
    assert caplog.text.count("only once") == 1


def test_logger_never_raises_on_bad_format_arguments() -> None:
    log = RateLimitedLogger(logging.getLogger("xray_otel.test_ratelimit.bad"))
    log.error("bad", "%d %d", "not", "numbers")  # logging reports it; we do not raise


def test_filter_rate_limits_records() -> None:
    logger = logging.getLogger("xray_otel.test_ratelimit.filter")
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger.addFilter(RateLimitFilter(interval_s=60))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for _ in range(20):
            logger.error("Failed to export traces to %s", "x")
        logger.error("a different message")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == [
        "Failed to export traces to x",
        "a different message",
    ]
