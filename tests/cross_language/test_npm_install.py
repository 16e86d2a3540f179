"""The README's promise for Node.js: ``npm install`` the SDK from the repository path, wrap
three functions, and the run shows in ``xray show``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from collector_service.cli.main import main
from tests.fix_collector import RunningCollector

SDK = Path(__file__).resolve().parents[2] / "sdk" / "typescript"
NODE, NPM = shutil.which("node"), shutil.which("npm")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(NODE is None or NPM is None, reason="needs node and npm")]

APP = """
import { xray, eventsTransport } from '@xray/sdk';

xray.configure({ transport: eventsTransport({ endpoint: process.argv[2],
                                              serviceName: 'node-app' }) });
const search = () => xray.step('search', { name: 'search' }, (step) => {
  step.record({ candidatesOut: 200 });
  return Array.from({ length: 200 }, (_, i) => i);
});
const filter = (items) => xray.step('filter', { name: 'keep_even' }, async (step) => {
  const kept = items.filter((i) => i % 20 === 0);
  step.record({ candidatesIn: items.length, candidatesOut: kept.length, why: 'kept 1 in 20' });
  return kept;
});
const pick = (items) => xray.step('llm', { name: 'pick' }, () => items[0]);
await xray.run('node_pipeline', { entity: 'B0NODE', runId: 'node-run-1' },
               async () => pick(await filter(search())));
"""


def test_install_from_the_repository_path_and_see_the_run(
        tmp_path: Path, collector: RunningCollector, db: psycopg.Connection, migrated_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert NODE is not None and NPM is not None
    (tmp_path / "package.json").write_text(json.dumps(
        {"name": "node-app", "private": True, "type": "module"}))
    (tmp_path / "app.mjs").write_text(APP)
    installed = subprocess.run([NPM, "install", "--no-audit", "--no-fund", str(SDK)],
                               cwd=tmp_path, capture_output=True, text=True, timeout=300,
                               check=False)
    assert installed.returncode == 0, installed.stderr
    done = subprocess.run([NODE, "app.mjs", collector.http_url], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert main(["show", "node-run-1", "--database-url", migrated_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "run node-run-1  pipeline=node_pipeline  entity=B0NODE  status=ok"
    steps = [m.groups() for line in lines if (m := re.match(r"^ *(\d+)\. (\S+) \[(\w+)\]", line))]
    assert steps == [("1", "search", "search"), ("2", "keep_even", "filter"), ("3", "pick", "llm")]
    assert any("200 → 10  (dropped 95.0%)" in line for line in lines)
