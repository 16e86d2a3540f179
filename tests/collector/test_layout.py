"""The collector's rooms import one way: cli → server → receive → ingest → store → telemetry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import collector_service

PACKAGE = Path(collector_service.__file__).parent
ROOMS = ["cli", "workers", "server", "ui", "forward", "receive", "ingest", "store", "telemetry",
         "config", "errors"]
"""Highest first: a module may import its own room and the rooms after it, never before.

``workers`` (the supervisor of ``xray collector --workers N``) sits above ``server``: it
starts processes that each run a server, and nothing in the server knows about it."""

ALLOWED_EXCEPTIONS: set[tuple[str, str]] = set()
"""(importing room, imported room) pairs allowed against the order; none today."""


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "collector_service" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ROOMS else None


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def source_modules() -> list[tuple[str, Path]]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        modules.append((".".join(relative.parts), path))
    return modules


@pytest.mark.parametrize(("module", "path"), source_modules(), ids=lambda v: str(v))
def test_imports_point_one_way(module: str, path: Path) -> None:
    own = room_of(module)
    if own is None:  # the package's own __init__ only names things lazily
        return
    for target in imported_modules(path):
        other = room_of(target)
        if other is None or other == own or (own, other) in ALLOWED_EXCEPTIONS:
            continue
        assert ROOMS.index(other) > ROOMS.index(own), f"{module} imports {target}"


def test_sdk_never_imports_the_collector() -> None:
    sdk = PACKAGE.parent / "xray_otel"
    for path in sdk.rglob("*.py"):
        assert not any(m.startswith("collector_service") for m in imported_modules(path)), path


def test_every_room_is_a_package_with_a_docstring() -> None:
    for room in ("cli", "receive", "ingest", "store", "telemetry"):
        init = PACKAGE / room / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), room
