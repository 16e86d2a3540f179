"""Configuration: arguments beat the environment, which beats defaults; bad values say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector_service.config import SETTINGS, CollectorConfig
from collector_service.errors import ConfigError


def test_precedence() -> None:
    env = {"XRAY_GRPC_PORT": "5000", "XRAY_HTTP_PORT": "5001", "XDG_DATA_HOME": "/data"}
    config = CollectorConfig.from_sources({"grpc_port": "6000", "http_port": None}, env)
    assert (config.grpc_port, config.http_port) == (6000, 5001)
    assert config.data_dir == Path("/data/xray")
    assert CollectorConfig.from_sources({}, {}).grpc_port == 4317


def test_sizes_and_seconds() -> None:
    config = CollectorConfig.from_sources(
        {}, {"XRAY_MAX_REQUEST_BYTES": "16MiB", "XRAY_DB_TIMEOUT": "2.5"})
    assert config.max_request_bytes == 16 * 1024**2 and config.db_timeout == 2.5


@pytest.mark.parametrize("env, name", [
    ({"XRAY_GRPC_PORT": "70000"}, "XRAY_GRPC_PORT"),
    ({"XRAY_POOL_MAX_SIZE": "zero"}, "XRAY_POOL_MAX_SIZE"),
    ({"XRAY_LOG_LEVEL": "LOUD"}, "XRAY_LOG_LEVEL"),
    ({"XRAY_MAX_REQUEST_BYTES": "-1"}, "XRAY_MAX_REQUEST_BYTES"),
])
def test_bad_values_name_their_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        CollectorConfig.from_sources({}, env)


def test_bad_argument_names_its_flag() -> None:
    with pytest.raises(ConfigError, match="--http-port"):
        CollectorConfig.from_sources({"http_port": "http"}, {})


def test_every_setting_is_an_environment_variable_with_help() -> None:
    assert all(s.env.startswith("XRAY_") and s.help for s in SETTINGS)


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.flag}` | `{setting.env}` |" in readme, setting.env


def test_lists_and_choices() -> None:
    config = CollectorConfig.from_sources({"auth_tokens": "a" * 16 + ", " + "b" * 20}, {
        "XRAY_FORWARD_HEADERS": "Authorization=Bearer x, X-Scope=team",
        "XRAY_FORWARD_PROTOCOL": "HTTP/protobuf", "XRAY_UI_PORT": "8080"})
    assert config.auth_tokens == ("a" * 16, "b" * 20)
    assert config.forward_headers == (("authorization", "Bearer x"), ("x-scope", "team"))
    assert (config.forward_protocol, config.ui_port) == ("http/protobuf", 8080)


@pytest.mark.parametrize("env, name", [
    ({"XRAY_AUTH_TOKENS": "short"}, "XRAY_AUTH_TOKENS"),
    ({"XRAY_FORWARD_HEADERS": "novalue"}, "XRAY_FORWARD_HEADERS"),
    ({"XRAY_LOG_FORMAT": "xml"}, "XRAY_LOG_FORMAT"),
    ({"XRAY_TLS_CERT_FILE": "/c.pem"}, "XRAY_TLS_KEY_FILE"),
    ({"XRAY_TLS_CLIENT_CA_FILE": "/ca.pem"}, "XRAY_TLS_CERT_FILE"),
])
def test_bad_combinations_name_their_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        CollectorConfig.from_sources({}, env)
