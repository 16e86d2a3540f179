"""The collector's configuration: one frozen dataclass built at the entry point.

Each setting is looked up in the command-line arguments, then the environment, then
its default. A malformed value fails at start-up with the name of its flag or
variable. Nothing else in the collector reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from collector_service.errors import ConfigError


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/xray``, or ``~/.local/share/xray``."""
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "xray"


def default_workers() -> int:
    """One worker process per core."""
    return os.cpu_count() or 1


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be between 0 and 65535 (0 picks a free port)")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _size(text: str) -> int:
    """Bytes, with an optional KiB/MiB/GiB suffix: ``512KiB``, ``16MiB``."""
    units = {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "b": 1}
    lowered = text.strip().lower()
    for suffix, factor in units.items():
        if lowered.endswith(suffix):
            return _positive(lowered.removesuffix(suffix).strip()) * factor
    return _positive(lowered)


def _size_or_zero(text: str) -> int:
    return 0 if text.strip() == "0" else _size(text)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise ValueError("must be a number of seconds between 0 and 3600")
    return value


def _store_kind(text: str) -> str:
    if text not in ("local", "s3"):
        raise ValueError("must be local or s3")
    return text


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return value

    return parse


def _tokens(text: str) -> tuple[str, ...]:
    """Comma-separated bearer tokens; each at least 16 characters, no spaces."""
    tokens = tuple(t.strip() for t in text.split(",") if t.strip())
    for token in tokens:
        if len(token) < 16 or any(ch.isspace() for ch in token):
            raise ValueError("each token needs at least 16 characters and no spaces")
    return tokens


def _headers(text: str) -> tuple[tuple[str, str], ...]:
    """``key=value,key2=value2``, as ``OTEL_EXPORTER_OTLP_HEADERS`` writes them."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not key=value")
        pairs.append((key.strip().lower(), value.strip()))
    return tuple(pairs)


def _optional_port(text: str) -> int | None:
    return None if text.strip() == "" else _port(text)


def _database_url(text: str) -> str:
    """A ``postgresql://`` / ``postgres://`` URL or a ``key=value`` conninfo string."""
    import psycopg.conninfo  # only when a URL is given: ``xray --help`` stays fast

    value = text.strip()
    scheme, sep, _ = value.partition("://")
    if sep and scheme not in ("postgresql", "postgres"):
        raise ValueError(f"{scheme}:// is not PostgreSQL; use postgresql://user@host:5432/db")
    if not sep and "=" not in value:
        raise ValueError("not a database URL; use postgresql://user@host:5432/db "
                         "or key=value pairs such as 'host=db dbname=xray'")
    try:
        psycopg.conninfo.conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"not a valid connection string ({str(exc).strip()})") from None
    return value


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return level


@dataclass(frozen=True)
class Setting:
    """How one configuration field is named, parsed and documented."""

    field: str
    env: str
    parse: Callable[[str], Any]
    help: str
    flag_name: str | None = None
    """The command-line flag without ``--``, when it differs from the field's name."""

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.field.replace("_", "-"))


SETTINGS: tuple[Setting, ...] = (
    Setting("database_url", "XRAY_DATABASE_URL", _database_url,
            "PostgreSQL URL; unset starts the embedded database in the data directory"),
    Setting("data_dir", "XRAY_DATA_DIR", Path,
            "where the embedded database and local artifacts live"),
    Setting("host", "XRAY_HOST", str, "address the OTLP receivers listen on"),
    Setting("grpc_port", "XRAY_GRPC_PORT", _port, "OTLP/gRPC port (0 picks a free port)"),
    Setting("http_port", "XRAY_HTTP_PORT", _port, "OTLP/HTTP port (0 picks a free port)"),
    Setting("pool_max_size", "XRAY_POOL_MAX_SIZE", _positive,
            "most Postgres connections the collector holds"),
    Setting("max_request_bytes", "XRAY_MAX_REQUEST_BYTES", _size,
            "largest OTLP request accepted, after decompression"),
    Setting("db_timeout", "XRAY_DB_TIMEOUT", _seconds,
            "seconds to wait for a database connection before answering 'retry later'"),
    Setting("max_inflight", "XRAY_MAX_INFLIGHT", _positive,
            "requests processed at once; more are refused with a retryable status"),
    Setting("artifact_store", "XRAY_ARTIFACT_STORE", _store_kind,
            "where artifacts go: local (a folder) or s3"),
    Setting("artifact_dir", "XRAY_ARTIFACT_DIR", Path,
            "folder of the local artifact store (default: <data dir>/artifacts)"),
    Setting("s3_bucket", "XRAY_S3_BUCKET", str, "S3 bucket for artifacts"),
    Setting("s3_prefix", "XRAY_S3_PREFIX", str, "key prefix inside the bucket"),
    Setting("s3_endpoint_url", "XRAY_S3_ENDPOINT_URL", str,
            "endpoint of an S3-compatible store; credentials come from the AWS chain"),
    Setting("inline_ceiling", "XRAY_INLINE_CEILING", _size,
            "largest value kept in Postgres; larger ones become artifacts"),
    Setting("max_artifact_bytes", "XRAY_MAX_ARTIFACT_BYTES", _size,
            "largest artifact stored whole; larger ones are kept as a summary"),
    Setting("artifact_timeout", "XRAY_ARTIFACT_TIMEOUT", _seconds,
            "seconds the store may take per artifact before it is kept as a summary"),
    Setting("log_level", "XRAY_LOG_LEVEL", _log_level, "DEBUG, INFO, WARNING or ERROR"),
    Setting("log_format", "XRAY_LOG_FORMAT", _choice("text", "json"),
            "text for people, json for log pipelines (one object per line)"),
    Setting("max_inflight_bytes", "XRAY_MAX_INFLIGHT_BYTES", _size,
            "request bytes processed at once; more are refused with a retryable status"),
    Setting("shutdown_grace", "XRAY_SHUTDOWN_GRACE", _seconds,
            "seconds a stopping collector gives requests already received to finish"),
    Setting("auth_tokens", "XRAY_AUTH_TOKENS", _tokens,
            "bearer tokens accepted (comma-separated); `xray tokens` adds more without a restart",
            flag_name="auth-token"),
    Setting("tls_cert_file", "XRAY_TLS_CERT_FILE", Path,
            "PEM certificate chain: serve gRPC and HTTP over TLS"),
    Setting("tls_key_file", "XRAY_TLS_KEY_FILE", Path, "PEM private key of the certificate"),
    Setting("tls_client_ca_file", "XRAY_TLS_CLIENT_CA_FILE", Path,
            "PEM CA bundle: require client certificates signed by it (mutual TLS)"),
    Setting("forward_endpoint", "XRAY_FORWARD_ENDPOINT", str,
            "pass every stored request on to this OTLP endpoint (Jaeger, Tempo, a Collector)"),
    Setting("forward_protocol", "XRAY_FORWARD_PROTOCOL", _choice("grpc", "http/protobuf"),
            "protocol of the forward endpoint: grpc or http/protobuf"),
    Setting("forward_headers", "XRAY_FORWARD_HEADERS", _headers,
            "headers sent upstream, as key=value,key2=value2"),
    Setting("forward_queue_bytes", "XRAY_FORWARD_QUEUE_BYTES", _size,
            "most bytes waiting to be forwarded; past it requests are dropped and counted"),
    Setting("spool_dir", "XRAY_SPOOL_DIR", Path,
            "folder where requests wait, durably, while the database is unreachable "
            "(default: <data dir>/spool)"),
    Setting("spool_max_bytes", "XRAY_SPOOL_MAX_BYTES", _size_or_zero,
            "most bytes spooled while the database is down; past it requests are refused "
            "(0: no spool, refuse at once)"),
    Setting("ui_port", "XRAY_UI_PORT", _optional_port,
            "also serve the web viewer on this port (unset: no viewer)"),
    Setting("workers", "XRAY_WORKERS", _positive,
            "collector processes sharing the ports, each with its own connection pool "
            "(1: a single process, no supervisor)"),
)


@dataclass(frozen=True)
class CollectorConfig:
    """Everything the collector needs to run; see ``SETTINGS`` for names and meaning."""

    database_url: str | None = None
    data_dir: Path = field(default_factory=lambda: default_data_dir({}))
    host: str = "127.0.0.1"
    grpc_port: int = 4317
    http_port: int = 4318
    pool_max_size: int = 8
    max_request_bytes: int = 64 * 1024**2
    db_timeout: float = 10.0
    max_inflight: int = 32
    artifact_store: str = "local"
    artifact_dir: Path | None = None
    s3_bucket: str | None = None
    s3_prefix: str = "xray/artifacts/"
    s3_endpoint_url: str | None = None
    inline_ceiling: int = 4096
    max_artifact_bytes: int = 16 * 1024**2
    artifact_timeout: float = 10.0
    log_level: str = "INFO"
    log_format: str = "text"
    max_inflight_bytes: int = 64 * 1024**2
    shutdown_grace: float = 10.0
    auth_tokens: tuple[str, ...] = ()
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    forward_endpoint: str | None = None
    forward_protocol: str = "grpc"
    forward_headers: tuple[tuple[str, str], ...] = ()
    forward_queue_bytes: int = 64 * 1024**2
    spool_dir: Path | None = None
    spool_max_bytes: int = 1024**3
    ui_port: int | None = None
    workers: int = field(default_factory=default_workers)
    worker_index: int | None = None
    """Set by the supervisor in each worker's copy (not a setting): which worker this is."""
    metrics_dir: Path | None = None
    """Set by the supervisor (not a setting): where the workers' metrics are shared."""

    def __post_init__(self) -> None:
        if self.artifact_store == "s3" and not self.s3_bucket:
            raise ConfigError("XRAY_ARTIFACT_STORE=s3 needs XRAY_S3_BUCKET (--s3-bucket)")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("TLS needs both XRAY_TLS_CERT_FILE (--tls-cert-file) and "
                              "XRAY_TLS_KEY_FILE (--tls-key-file)")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ConfigError("XRAY_TLS_CLIENT_CA_FILE (--tls-client-ca-file) needs TLS: "
                              "set XRAY_TLS_CERT_FILE and XRAY_TLS_KEY_FILE too")

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def local_spool_dir(self) -> Path:
        """The spool's root folder; a single process spools here, worker ``i`` below it."""
        return self.spool_dir or self.data_dir / "spool"

    @property
    def own_spool_dir(self) -> Path:
        """The folder this process spools to (each holds a lock on its own)."""
        root = self.local_spool_dir
        return root if self.worker_index is None else root / f"worker-{self.worker_index}"

    @property
    def local_artifact_dir(self) -> Path:
        return self.artifact_dir or self.data_dir / "artifacts"

    @classmethod
    def from_sources(
        cls, args: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> CollectorConfig:
        """Build from parsed arguments (None means unset), then ``environ``, then defaults."""
        args = args or {}
        environ = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {"data_dir": default_data_dir(environ)}
        for setting in SETTINGS:
            if setting.field not in known:
                raise ConfigError(f"setting {setting.field} has no configuration field")
            if args.get(setting.field) is not None:
                source, raw = setting.flag, args[setting.field]
            elif environ.get(setting.env):
                source, raw = setting.env, environ[setting.env]
            else:
                continue
            try:
                values[setting.field] = setting.parse(str(raw))
            except ValueError as exc:
                raise ConfigError(f"{source}={raw!r}: {exc}") from exc
        return cls(**values)


def setting_default(name: str) -> Any:
    """The default of one setting, as ``--help`` shows it."""
    if name == "data_dir":
        return default_data_dir(os.environ)
    if name == "workers":
        return default_workers()
    for f in fields(CollectorConfig):
        if f.name == name:
            return None if f.default is MISSING else f.default
    raise KeyError(name)


def colour_wanted(is_terminal: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (no-color.org)."""
    environ = os.environ if environ is None else environ
    return is_terminal and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"
