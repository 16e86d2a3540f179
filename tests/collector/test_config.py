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
        flag = "--" + setting.field.replace("_", "-")
        assert f"| `{flag}` | `{setting.env}` |" in readme, setting.env
