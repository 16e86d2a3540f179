"""The deployment guide's configuration blocks parse, and its alerts name real metrics."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from collector_service.cli.main import build_parser
from collector_service.forward.forwarder import Forwarder
from collector_service.receive.auth import TokenAuthenticator
from collector_service.store.spool import Spool
from collector_service.telemetry.metrics import CollectorMetrics

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
_SUFFIXES = {"counter": ("_total",), "gauge": ("",),
             "histogram": ("_bucket", "_sum", "_count")}


def yaml_blocks() -> list[object]:
    return [yaml.safe_load(block) for block in
            re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)]


def exposed_metric_names(tmp_path: Path) -> set[str]:
    """Every series name a collector with forwarding, tokens and a spool can expose."""
    registry = CollectorRegistry()
    CollectorMetrics(registry)
    Forwarder("127.0.0.1:1", "grpc", (), 1, registry)
    TokenAuthenticator([], registry)
    Spool(tmp_path, 1, registry)
    return {family.name + suffix for family in registry.collect()
            for suffix in _SUFFIXES.get(family.type, ("",))}


def test_every_yaml_block_parses() -> None:
    assert len(yaml_blocks()) >= 2


def test_alert_rules_use_metrics_the_collector_exposes(tmp_path: Path) -> None:
    (rules,) = [b for b in yaml_blocks() if isinstance(b, dict) and "groups" in b]
    exposed = exposed_metric_names(tmp_path)
    for group in rules["groups"]:  # type: ignore[index]
        for rule in group["rules"]:
            used = set(re.findall(r"\bxray_[a-z_]+", rule["expr"]))
            assert used, rule["alert"]
            assert used <= exposed, f"{rule['alert']} names {used - exposed}"


def test_collector_pipeline_uses_defined_components() -> None:
    (config,) = [b for b in yaml_blocks() if isinstance(b, dict) and "service" in b]
    for pipeline in config["service"]["pipelines"].values():  # type: ignore[index]
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline.get(kind, []):
                assert name in config[kind], f"{kind} {name} is used but not defined"


@pytest.mark.parametrize("text", re.findall(r"`(--[a-z-]+)`", GUIDE.read_text(encoding="utf-8")))
def test_flags_in_the_guide_exist(text: str) -> None:
    flags = {option for action in _all_actions(build_parser()) for option in action.option_strings}
    assert text in flags, f"docs/deploy.md mentions {text}, which no command takes"


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    actions: list[argparse.Action] = []
    for action in parser._actions:
        actions.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions.extend(_all_actions(sub))
    return actions
