"""Bearer tokens: the authenticator on its own, then real collectors refusing and accepting
real exporters on gRPC, OTLP/HTTP and the artifact endpoint, with static tokens and with
tokens managed by ``xray tokens`` while the collector runs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import grpc
import psycopg
import pytest
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from prometheus_client import CollectorRegistry

from collector_service.cli.main import main
from collector_service.errors import Unauthenticated
from collector_service.receive import auth as auth_module
from collector_service.receive.auth import Refusal, TokenAuthenticator, is_loopback, parse_bearer
from collector_service.store.artifacts import artifact_id
from collector_service.store.tokens import ManagedTokens
from tests.collector.test_events_http import EVENTS
from tests.collector.test_receivers import run_pipeline
from tests.fix_db import DatabaseFactory
from tests.fix_tls import StartCollector, StartedCollector
from tests.otlp_builders import request, span
from xray_otel import conventions as c

TOKEN = "static-token-0123456789"
OTHER = "another-token-9876543210"


def failures(registry: CollectorRegistry, transport: str, reason: str) -> float:
    value = registry.get_sample_value("xray_auth_failures_total",
                                      {"transport": transport, "reason": reason})
    return value or 0.0


# --- the authenticator ---------------------------------------------------------------------

@pytest.mark.parametrize(("header", "expected"), [
    ("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER   abc  ", "abc"),
    (None, Refusal.MISSING), ("", Refusal.MISSING), ("   ", Refusal.MISSING),
    ("Basic dXNlcjpwYXNz", Refusal.MALFORMED), ("Bearer", Refusal.MALFORMED),
    ("Bearer a b", Refusal.MALFORMED), ("abc", Refusal.MALFORMED),
])
def test_bearer_header_parsing(header: str | None, expected: str | Refusal) -> None:
    assert parse_bearer(header) == expected


def test_static_tokens_decide_and_refusals_are_counted() -> None:
    registry = CollectorRegistry()
    auth = TokenAuthenticator([TOKEN, OTHER], registry)
    assert auth.enabled
    assert auth.allows(f"Bearer {TOKEN}") and auth.allows(f"bearer {OTHER}")
    assert auth.refusal(None) is Refusal.MISSING
    assert auth.refusal("Token x") is Refusal.MALFORMED
    assert auth.refusal(f"Bearer {TOKEN}x") is Refusal.UNKNOWN
    auth.require(f"Bearer {TOKEN}", "grpc")
    with pytest.raises(Unauthenticated, match="not accepted") as caught:
        auth.require("Bearer wrong-token-000000", "http")
    assert caught.value.reason == "unknown"
    with pytest.raises(Unauthenticated, match="Authorization: Bearer"):
        auth.require(None, "artifacts")
    assert failures(registry, "http", "unknown") == 1
    assert failures(registry, "artifacts", "missing") == 1
    assert failures(registry, "grpc", "unknown") == 0


def test_no_tokens_means_authentication_off() -> None:
    auth = TokenAuthenticator([], CollectorRegistry())
    assert not auth.enabled
    assert auth.allows(None) and auth.allows("garbage")
    auth.require(None, "grpc")


def test_every_known_hash_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the work done does not depend on which token (if any) matched."""
    tokens = [f"token-number-{i}-abcdefgh" for i in range(5)]
    auth = TokenAuthenticator(tokens, CollectorRegistry())
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", counting)
    for presented in (tokens[0], tokens[-1], "no-such-token-000000"):
        calls.clear()
        auth.allows(f"Bearer {presented}")
        assert len(calls) == len(tokens)


def test_managed_tokens_switch_authentication_on_and_revoking_keeps_it_on(
        caplog: pytest.LogCaptureFixture) -> None:
    auth = TokenAuthenticator([], CollectorRegistry())
    managed = hashlib.sha256(OTHER.encode()).digest()
    with caplog.at_level(logging.INFO, logger=auth_module.__name__):
        auth.set_managed(ManagedTokens(frozenset({managed}), 0))
        assert auth.enabled and auth.allows(f"Bearer {OTHER}") and not auth.allows(None)
        auth.set_managed(ManagedTokens(frozenset({managed}), 0))  # unchanged: not logged
        auth.set_managed(ManagedTokens(frozenset(), 1))
        assert auth.enabled and not auth.allows(f"Bearer {OTHER}") and not auth.allows(None)
        auth.set_managed(ManagedTokens(frozenset(), 0))  # rows deleted by hand
        assert not auth.enabled and auth.allows(None)
    assert [r.getMessage() for r in caplog.records] == [
        "authentication on: 0 static token(s), 1 managed token(s) (0 revoked)",
        "authentication on: 0 static token(s), 0 managed token(s) (1 revoked)",
        "authentication off: no tokens configured or managed"]


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
    ("collector.example.com", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("host", "tokens", "warned"), [
    ("0.0.0.0", [], True), ("0.0.0.0", [TOKEN], False), ("127.0.0.1", [], False)])
def test_open_collector_on_a_reachable_address_warns(
        host: str, tokens: list[str], warned: bool, caplog: pytest.LogCaptureFixture) -> None:
    auth = TokenAuthenticator(tokens, CollectorRegistry())
    with caplog.at_level(logging.INFO, logger=auth_module.__name__):
        asyncio.run(auth.start(host))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(warnings) is warned
    if warned:
        assert "anyone who can reach" in warnings[0] and host in warnings[0]


def test_refresh_keeps_the_last_tokens_while_the_database_is_down() -> None:
    managed = ManagedTokens(frozenset({hashlib.sha256(OTHER.encode()).digest()}), 0)
    answers: list[ManagedTokens | Exception] = [managed]
    reads: list[int] = []

    async def read() -> ManagedTokens:
        reads.append(1)
        answer = answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def scenario() -> None:
        auth = TokenAuthenticator([], CollectorRegistry(), read, refresh_s=0.01)
        await auth.start("127.0.0.1")
        assert auth.allows(f"Bearer {OTHER}")
        answers[0] = OSError("database unreachable")
        await until(lambda: len(reads) >= 5)
        assert auth.enabled and auth.allows(f"Bearer {OTHER}") and not auth.allows(None)
        answers[0] = ManagedTokens(frozenset(), 0)
        await until(lambda: not auth.enabled)
        await auth.stop()

    asyncio.run(scenario())


async def until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    give_up = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < give_up, "condition never held"
        await asyncio.sleep(0.01)


# --- a collector with a static token -------------------------------------------------------

def raw_export(target: str, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.RpcError | None:
    """Export one step span over plain gRPC; the error, or None when it was accepted."""
    with grpc.insecure_channel(target) as channel:
        try:
            TraceServiceStub(channel).Export(  # type: ignore[no-untyped-call]
                request(span("s", {c.STEP_TYPE: "other"})), metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc
    return None


def http_call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
              ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def guarded(start_collector: StartCollector, migrated_url: str,
            db: psycopg.Connection) -> StartedCollector:
    """A collector on the shared (emptied) database that accepts only ``TOKEN``."""
    return start_collector(migrated_url, auth_tokens=(TOKEN,))


@pytest.mark.parametrize("metadata", [(), (("authorization", f"Bearer {OTHER}"),),
                                      (("authorization", TOKEN),)],
                         ids=["missing", "unknown", "malformed"])
def test_grpc_without_an_accepted_token_is_unauthenticated(
        guarded: StartedCollector, metadata: tuple[tuple[str, str], ...]) -> None:
    reason = "missing" if not metadata else ("unknown" if "Bearer" in metadata[0][1]
                                             else "malformed")
    error = raw_export(guarded.grpc_target, metadata)
    assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "token" in (error.details() or "").lower()
    assert guarded.metric("xray_auth_failures_total", transport="grpc", reason=reason) == 1
    assert guarded.metric("xray_requests_total", transport="grpc", code="unauthenticated") == 1
    assert guarded.stored() == (0, 0)


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/json"])
def test_http_without_an_accepted_token_is_401(guarded: StartedCollector,
                                               content_type: str) -> None:
    body = request(span("s", {c.STEP_TYPE: "other"})).SerializeToString()
    url = guarded.http_url() + "/v1/traces"
    for headers in ({}, {"Authorization": f"Bearer {OTHER}"}):
        status, response_headers, payload = http_call(
            url, body, {"Content-Type": content_type, **headers})
        assert status == 401
        assert response_headers["WWW-Authenticate"] == 'Bearer realm="xray"'
        if content_type == "application/json":
            assert json.loads(payload)["code"] == code_pb2.UNAUTHENTICATED
        else:
            assert status_pb2.Status.FromString(payload).code == code_pb2.UNAUTHENTICATED
    assert guarded.metric("xray_auth_failures_total", transport="http", reason="missing") == 1
    assert guarded.metric("xray_auth_failures_total", transport="http", reason="unknown") == 1
    assert guarded.stored() == (0, 0)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_exporters_with_the_token_store_spans(guarded: StartedCollector, protocol: str) -> None:
    header = {"authorization": f"Bearer {TOKEN}"}
    exporter = (GrpcExporter(endpoint=guarded.grpc_target, insecure=True, headers=header)
                if protocol == "grpc"
                else HttpExporter(endpoint=guarded.http_url() + "/v1/traces", headers=header))
    run_pipeline(exporter, entity=f"auth-{protocol}")
    assert guarded.stored() == (3, 1)
    assert guarded.metric("xray_auth_failures_total", transport=protocol, reason="missing") == 0


def test_events_endpoint_needs_the_token(guarded: StartedCollector) -> None:
    body = json.dumps(EVENTS).encode()
    url = guarded.http_url() + "/events"
    status, headers, payload = http_call(url, body, {"Content-Type": "application/json"})
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="xray"'
    assert json.loads(payload)["code"] == code_pb2.UNAUTHENTICATED
    assert guarded.metric("xray_auth_failures_total", transport="events", reason="missing") == 1
    assert guarded.stored() == (0, 0)
    status, _, _ = http_call(url, body, {"Content-Type": "application/json",
                                         "Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and guarded.stored() == (2, 1)


def test_probes_and_scrapers_need_no_token(guarded: StartedCollector) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/stats"):
        status, _, _ = http_call(guarded.http_url() + path)
        assert status == 200, path
    with grpc.insecure_channel(guarded.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_artifact_endpoint_needs_the_token(guarded: StartedCollector) -> None:
    payload = "evidence " * 100
    step = span("s", {c.STEP_TYPE: "llm", c.artifact_attribute("prompt"): payload})
    with grpc.insecure_channel(guarded.grpc_target) as channel:
        TraceServiceStub(channel).Export(  # type: ignore[no-untyped-call]
            request(step), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=10)
    url = f"{guarded.http_url()}/v1/artifacts/{artifact_id(payload.encode())}"
    status, headers, body = http_call(url)
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="xray"'
    assert payload.encode() not in body
    status, _, _ = http_call(url, headers={"Authorization": f"Bearer {OTHER}"})
    assert status == 401
    status, _, body = http_call(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and body == payload.encode()
    assert guarded.metric("xray_auth_failures_total", transport="artifacts",
                          reason="missing") == 1
    assert guarded.metric("xray_auth_failures_total", transport="artifacts",
                          reason="unknown") == 1


# --- tokens managed while the collector runs -----------------------------------------------

def xray(url: str, *argv: str) -> int:
    return main([*argv, "--database-url", url])


def wait_for(condition: Callable[[], bool], deadline_s: float = 20.0) -> None:
    give_up = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < give_up, "the collector never saw the change"
        time.sleep(0.1)


def accepted(collector: StartedCollector, token: str) -> bool:
    return raw_export(collector.grpc_target, (("authorization", f"Bearer {token}"),)) is None


def test_created_token_works_without_restart_and_revoked_one_stops(
        databases: DatabaseFactory, start_collector: StartCollector,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = databases.create()
    collector = start_collector(url)
    assert accepted(collector, "anything-goes-while-off")  # no tokens: authentication off
    assert xray(url, "tokens", "create", "--name", "pipeline-a") == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("xr_") and len(secret) > 40
    wait_for(lambda: not accepted(collector, "anything-goes-while-off"))
    assert accepted(collector, secret)
    assert xray(url, "tokens", "revoke", "pipeline-a") == 0
    wait_for(lambda: not accepted(collector, secret))
    steps_before = collector.stored()[0]
    error = raw_export(collector.grpc_target, (("authorization", f"Bearer {secret}"),))
    assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED
    # The last token revoked: authentication stays on rather than letting everybody in.
    assert not accepted(collector, "anything-goes-while-off")
    assert collector.stored()[0] == steps_before
