"""Two collectors share one database and are restarted in turn, as in a rolling deploy.

A client spreads its batches over both and sends a refused batch again to the other
one; every span either collector acknowledged is stored exactly once, and each
collector stops with status 0.
"""

from __future__ import annotations

import signal

import pytest

from tests.fix_collector_process import CollectorProcess, SpawnCollector
from tests.fix_pg_instance import PostgresInstance
from tests.reliability.load import Ledger, Sender, run_senders, stop_senders, wait_until
from tests.reliability.test_collector_signals import (
    ANSWERS,
    EXIT_TIMEOUT_S,
    assert_cancelled_never_received,
    assert_stored_once,
)

pytestmark = pytest.mark.slow


def restart(collector: CollectorProcess, ledger: Ledger) -> None:
    """SIGTERM, wait for exit 0, start again, and wait until it acknowledges again."""
    collector.signal(signal.SIGTERM)
    assert collector.wait(EXIT_TIMEOUT_S) == 0, collector.log[-3000:]
    before = ledger.acks(collector.grpc_target)
    collector.restart()
    wait_until(lambda: ledger.acks(collector.grpc_target) >= before + 5,
               f"batches acknowledged by the restarted {collector.grpc_target}")


def test_rolling_restart_of_two_collectors_loses_nothing(
        pg_instance: PostgresInstance, spawn_collector: SpawnCollector) -> None:
    first = spawn_collector(pg_instance.url, name="first")
    second = spawn_collector(pg_instance.url, name="second")
    ledger = Ledger()
    targets = [first.grpc_target, second.grpc_target]
    senders = run_senders(Sender(targets[i % 2:] + targets[:i % 2], ledger) for i in range(4))
    try:
        wait_until(lambda: ledger.acks() >= 20, "acknowledged batches before the restarts")
        restart(first, ledger)
        restart(second, ledger)
    finally:
        stop_senders(senders)
    assert set(ledger.outcomes) <= ANSWERS, ledger.outcomes
    assert_stored_once(pg_instance.url, ledger.acked, second)
    assert_cancelled_never_received(pg_instance.url, ledger)
