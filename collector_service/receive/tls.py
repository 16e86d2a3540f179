"""TLS for both receivers: gRPC server credentials and an ``ssl.SSLContext`` for aiohttp.

Built once at start-up from ``--tls-cert-file``, ``--tls-key-file`` and, for mutual
TLS, ``--tls-client-ca-file``. Every file is read and checked here, so a missing,
unreadable or invalid one stops the collector with a :class:`ConfigError` naming the
setting, instead of failing each client's handshake later. TLS 1.2 is the minimum.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from collector_service.config import SETTINGS, CollectorConfig
from collector_service.errors import ConfigError


def _setting(field: str) -> str:
    (setting,) = [s for s in SETTINGS if s.field == field]
    return f"{setting.env} ({setting.flag})"


@dataclass(frozen=True)
class ServerTLS:
    """The PEM material of a TLS server, checked, ready for either transport."""

    cert_file: Path
    key_file: Path
    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)], root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None)

    def ssl_context(self) -> ssl.SSLContext:
        """A server context (TLS 1.2+) that requires client certificates under mutual TLS."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca is not None:
            context.load_verify_locations(cadata=self.client_ca.decode("ascii"))
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def load_server_tls(config: CollectorConfig) -> ServerTLS | None:
    """The configured TLS material, or None when TLS is off; bad files are a ConfigError."""
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    cert = _read_pem(config.tls_cert_file, "tls_cert_file", b"CERTIFICATE")
    key = _read_pem(config.tls_key_file, "tls_key_file", b"PRIVATE KEY")
    ca = (None if config.tls_client_ca_file is None
          else _read_pem(config.tls_client_ca_file, "tls_client_ca_file", b"CERTIFICATE"))
    if b"ENCRYPTED" in key:
        raise ConfigError(f"{_setting('tls_key_file')}={config.tls_key_file}: the key is "
                          "encrypted; give the collector an unencrypted key file")
    if ca is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(
                cadata=ca.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{_setting('tls_client_ca_file')}={config.tls_client_ca_file}: "
                              f"not a valid PEM CA bundle ({exc})") from exc
    tls = ServerTLS(config.tls_cert_file, config.tls_key_file, cert, key, ca)
    try:
        tls.ssl_context()
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{_setting('tls_cert_file')} and {_setting('tls_key_file')}: cannot load the "
            f"certificate chain with this key ({exc.reason or exc}); are both PEM, and is "
            "the key the certificate's?") from exc
    return tls


def _read_pem(path: Path, field: str, kind: bytes) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{_setting(field)}={path}: cannot read it ({exc.strerror})") from exc
    if b"-----BEGIN " not in data or kind not in data:
        raise ConfigError(f"{_setting(field)}={path}: no PEM {kind.decode().lower()} in it")
    return data

