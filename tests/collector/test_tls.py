"""TLS on both transports, with and without client certificates, driven by the stock
OpenTelemetry exporters, and the start-up errors for unusable certificate files."""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import psycopg
import pytest
import trustme
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.trace.export import SpanExporter

from collector_service.cli.main import main
from collector_service.config import CollectorConfig
from collector_service.errors import ConfigError
from collector_service.receive.tls import load_server_tls
from tests.collector.test_receivers import run_pipeline
from tests.fix_tls import Certificates, StartCollector, StartedCollector, write_certificates
from tests.otlp_builders import request, span
from xray_otel import conventions as c

TOKEN = "tls-test-token-0123456789"
BEARER = f"Bearer {TOKEN}"


@pytest.fixture(autouse=True)
def _exporter_certificates_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests prefers these variables to the OTLP/HTTP exporter's own CA file."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tls_only(start_collector: StartCollector, migrated_url: str, db: psycopg.Connection,
             certs: Certificates) -> StartedCollector:
    """TLS (no client certificates) and a token."""
    return start_collector(migrated_url, auth_tokens=(TOKEN,), tls_cert_file=certs.server_cert,
                           tls_key_file=certs.server_key)


@pytest.fixture
def mutual(start_collector: StartCollector, migrated_url: str, db: psycopg.Connection,
           certs: Certificates) -> StartedCollector:
    """Mutual TLS (client certificates signed by the test CA required) and a token."""
    return start_collector(migrated_url, auth_tokens=(TOKEN,), tls_cert_file=certs.server_cert,
                           tls_key_file=certs.server_key, tls_client_ca_file=certs.ca)


def test_grpc_exporter_configured_by_environment_variables(
        tls_only: StartedCollector, certs: Certificates,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What an operator sets for any OpenTelemetry SDK: endpoint, CA file, header."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"https://{tls_only.grpc_target}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(certs.ca))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{TOKEN}")
    run_pipeline(GrpcExporter(), entity="tls-env")
    assert tls_only.stored() == (3, 1)


def mutual_exporter(protocol: str, collector: StartedCollector,
                    certs: Certificates) -> SpanExporter:
    if protocol == "grpc":
        credentials = grpc.ssl_channel_credentials(
            certs.read("ca"), certs.read("client_key"), certs.read("client_cert"))
        return GrpcExporter(endpoint=f"https://{collector.grpc_target}",
                            credentials=credentials, headers={"authorization": BEARER})
    return HttpExporter(endpoint=collector.http_url("https") + "/v1/traces",
                        certificate_file=str(certs.ca), client_key_file=str(certs.client_key),
                        client_certificate_file=str(certs.client_cert),
                        headers={"authorization": BEARER})


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_exporters_with_client_certificates_store_spans(
        mutual: StartedCollector, certs: Certificates, protocol: str) -> None:
    run_pipeline(mutual_exporter(protocol, mutual, certs), entity=f"mtls-{protocol}")
    assert mutual.stored() == (3, 1)


def test_wrong_token_over_tls_is_refused(tls_only: StartedCollector,
                                         certs: Certificates) -> None:
    credentials = grpc.ssl_channel_credentials(certs.read("ca"))
    with grpc.secure_channel(tls_only.grpc_target, credentials) as channel:
        code = export(channel, (("authorization", "Bearer not-the-token-000000"),))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    context = ssl.create_default_context(cafile=certs.ca)
    status = https_post(tls_only, context, {"Authorization": "Bearer not-the-token-000000"})
    assert status == 401
    assert tls_only.metric("xray_auth_failures_total", transport="grpc", reason="unknown") == 1
    assert tls_only.metric("xray_auth_failures_total", transport="http", reason="unknown") == 1
    assert tls_only.stored() == (0, 0)


def export(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ((
        "authorization", BEARER),)) -> grpc.StatusCode:
    """Export one step span; the status code it got."""
    try:
        TraceServiceStub(channel).Export(  # type: ignore[no-untyped-call]
            request(span("s", {c.STEP_TYPE: "other"})), metadata=metadata, timeout=5)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def https_post(collector: StartedCollector, context: ssl.SSLContext,
               headers: dict[str, str] | None = None) -> int:
    body = request(span("s", {c.STEP_TYPE: "other"})).SerializeToString()
    req = urllib.request.Request(
        collector.http_url("https") + "/v1/traces", data=body,
        headers={"Content-Type": "application/x-protobuf", "Authorization": BEARER,
                 **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code


def test_plain_text_clients_are_refused_on_tls_ports(tls_only: StartedCollector) -> None:
    with grpc.insecure_channel(tls_only.grpc_target) as channel:
        assert export(channel) == grpc.StatusCode.UNAVAILABLE
    req = urllib.request.Request(
        tls_only.http_url("http") + "/v1/traces", data=b"\x0a\x00",
        headers={"Content-Type": "application/x-protobuf", "Authorization": BEARER})
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
        urllib.request.urlopen(req, timeout=10)
    assert tls_only.stored() == (0, 0)


def test_clients_without_a_certificate_are_refused_under_mutual_tls(
        mutual: StartedCollector, certs: Certificates, tmp_path: Path) -> None:
    credentials = grpc.ssl_channel_credentials(certs.read("ca"))  # trusts us, shows nothing
    with grpc.secure_channel(mutual.grpc_target, credentials) as channel:
        assert export(channel) == grpc.StatusCode.UNAVAILABLE
    context = ssl.create_default_context(cafile=certs.ca)
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        https_post(mutual, context)
    stranger = write_certificates(tmp_path, trustme.CA())  # signed by another CA
    context.load_cert_chain(stranger.client_cert, stranger.client_key)
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        https_post(mutual, context)
    assert mutual.stored() == (0, 0)
    proper = ssl.create_default_context(cafile=certs.ca)
    proper.load_cert_chain(certs.client_cert, certs.client_key)
    assert https_post(mutual, proper) == 200
    assert mutual.stored() == (1, 1)


# --- unusable files stop the collector at start-up -------------------------------------------

def tls_config(certs: Certificates, **overrides: Path) -> CollectorConfig:
    files = {"tls_cert_file": certs.server_cert, "tls_key_file": certs.server_key,
             "tls_client_ca_file": certs.ca, **overrides}
    return CollectorConfig(**files)


def test_usable_files_load(certs: Certificates) -> None:
    tls = load_server_tls(tls_config(certs))
    assert tls is not None and tls.client_ca == certs.read("ca")
    context = tls.ssl_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert load_server_tls(CollectorConfig()) is None


def test_unusable_files_are_config_errors_naming_the_setting(
        certs: Certificates, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    other = write_certificates(tmp_path / "other", trustme.CA())
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n"
                         "-----END ENCRYPTED PRIVATE KEY-----\n")
    corrupt = tmp_path / "corrupt.pem"
    corrupt.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    cases = [
        ({"tls_cert_file": tmp_path / "missing.pem"}, "XRAY_TLS_CERT_FILE", "cannot read"),
        ({"tls_cert_file": garbage}, "XRAY_TLS_CERT_FILE", "no PEM certificate"),
        ({"tls_key_file": certs.server_cert}, "XRAY_TLS_KEY_FILE", "no PEM private key"),
        ({"tls_key_file": encrypted}, "XRAY_TLS_KEY_FILE", "encrypted"),
        ({"tls_key_file": other.server_key}, "XRAY_TLS_KEY_FILE", "is the key the"),
        ({"tls_cert_file": corrupt}, "XRAY_TLS_CERT_FILE", "cannot load"),
        ({"tls_client_ca_file": tmp_path}, "XRAY_TLS_CLIENT_CA_FILE", "cannot read"),
        ({"tls_client_ca_file": corrupt}, "XRAY_TLS_CLIENT_CA_FILE", "not a valid PEM"),
    ]
    for overrides, variable, problem in cases:
        with pytest.raises(ConfigError, match=problem) as caught:
            load_server_tls(tls_config(certs, **overrides))
        assert variable in str(caught.value), overrides


def test_collector_command_stops_before_anything_starts(
        certs: Certificates, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["collector", "--tls-cert-file", str(tmp_path / "missing.pem"),
                 "--tls-key-file", str(certs.server_key), "--grpc-port", "0",
                 "--http-port", "0", "--data-dir", str(tmp_path / "xray"),
                 "--database-url", "postgresql://nobody@127.0.0.1:1/none"])
    assert code == 2
    error = capsys.readouterr().err
    assert "XRAY_TLS_CERT_FILE (--tls-cert-file)" in error and "missing.pem" in error
    assert "database" not in error
