"""The committed Python code for ``proto/`` is what the pinned generator makes of it today."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "proto" / "generate.py"


def test_committed_generated_code_is_current(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) generates the code")
    generator = runpy.run_path(str(GENERATOR))
    done = subprocess.run([sys.executable, str(GENERATOR), str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for name in generator["GENERATED"]:
        fresh = (tmp_path / name).read_text(encoding="utf-8")
        committed = (generator["OUT_DIR"] / name).read_text(encoding="utf-8")
        assert fresh == committed, f"{name} is stale: run `python3 dev.py proto` and commit"


def test_every_proto_file_is_generated() -> None:
    generator = runpy.run_path(str(GENERATOR))
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    assert protos == sorted(generator["PROTOS"])
