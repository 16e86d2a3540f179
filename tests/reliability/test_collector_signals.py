"""The collector process is killed or stopped while clients are sending to it.

SIGKILL: what it acknowledged is committed (or durably spooled), so a client retrying
through the restart loses nothing and duplicates nothing. SIGTERM: every request it
already received ends acknowledged or ``UNAVAILABLE``, and it exits with status 0.

gRPC itself answers ``CANCELLED`` to a call that reaches the port in the instant the
server closes, before any handler sees it (the same happens with a bare grpc.aio server
stopped under load). OTLP exporters retry ``CANCELLED``. The tests allow that outcome
only with proof the collector never received the request: none of its spans is stored.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from tests.fix_collector_process import CollectorProcess, SpawnCollector
from tests.fix_pg_instance import PostgresInstance
from tests.reliability.load import (
    Ledger,
    Sender,
    SpanKey,
    run_senders,
    stop_senders,
    wait_stored,
    wait_until,
)

pytestmark = pytest.mark.slow

SENDERS = 4
EXIT_TIMEOUT_S = 60.0


def assert_stored_once(url: str, acked: set[SpanKey], collector: CollectorProcess) -> None:
    """Every acknowledged span is in ``xray_steps``, and no span is there twice."""
    stored = wait_stored(url, acked)
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged spans missing:\n{collector.log[-3000:]}"
    twice = [key for key, n in Counter(stored).items() if n > 1]
    assert not twice, f"stored twice: {twice[:5]}"


def assert_cancelled_never_received(url: str, ledger: Ledger) -> None:
    """A CANCELLED request was never handled: nothing of it reached the database."""
    received = ledger.cancelled & set(wait_stored(url, ledger.acked))
    assert not received, f"{len(received)} spans of CANCELLED requests were stored"


ANSWERS = {"OK", "UNAVAILABLE", "CANCELLED"}


def test_sigkill_under_retrying_load_loses_and_duplicates_nothing(
        pg_instance: PostgresInstance, spawn_collector: SpawnCollector) -> None:
    collector = spawn_collector(pg_instance.url)
    ledger = Ledger()
    senders = run_senders(Sender([collector.grpc_target], ledger) for _ in range(SENDERS))
    try:
        wait_until(lambda: ledger.acks() >= 20, "acknowledged batches before the kill")
        collector.signal(signal.SIGKILL)
        assert collector.wait(EXIT_TIMEOUT_S) == -signal.SIGKILL
        before_restart = ledger.acks()
        collector.restart()
        wait_until(lambda: ledger.acks() >= before_restart + 20,
                   "acknowledged batches after the restart")
    finally:
        stop_senders(senders)
    assert ledger.outcomes["UNAVAILABLE"] > 0, "the kill never reached a client"
    assert set(ledger.outcomes) <= ANSWERS, ledger.outcomes
    assert_stored_once(pg_instance.url, ledger.acked, collector)
    assert_cancelled_never_received(pg_instance.url, ledger)


def test_sigterm_under_load_answers_every_request_and_exits_0(
        pg_instance: PostgresInstance, spawn_collector: SpawnCollector) -> None:
    collector = spawn_collector(pg_instance.url)
    ledger = Ledger()
    senders = run_senders(Sender([collector.grpc_target], ledger, retry=False,
                                 spans_per_batch=200) for _ in range(SENDERS))
    try:
        wait_until(lambda: ledger.acks() >= 10, "acknowledged batches before SIGTERM")
        signalled = ledger.while_in_flight(lambda: collector.signal(signal.SIGTERM))
        exit_code = collector.wait(EXIT_TIMEOUT_S)
    finally:
        stop_senders(senders)
    assert exit_code == 0, collector.log[-3000:]
    in_flight = Counter(ledger.spanning(signalled))
    assert set(in_flight) <= ANSWERS, in_flight
    assert set(ledger.outcomes) <= ANSWERS, ledger.outcomes
    assert_stored_once(pg_instance.url, ledger.acked, collector)
    assert_cancelled_never_received(pg_instance.url, ledger)
