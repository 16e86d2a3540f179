"""The README's Python snippet, as written, against a real collector and database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.fix_collector import RunningCollector

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    """The first fenced Python block of the README's "Instrumenting a pipeline" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Instrumenting a pipeline"):]
    match = re.search(r"^```python\n(.*?)^```$", section, re.M | re.S)
    assert match is not None, "no python block in 'Instrumenting a pipeline'"
    return match.group(1)


def test_readme_snippet_runs_as_written(collector: RunningCollector, db: psycopg.Connection,
                                        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://{collector.grpc_target}"
    result = subprocess.run([sys.executable, "-c", readme_snippet()], capture_output=True,
                            text=True, timeout=120, env=env, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    run_id, stats = result.stdout.strip().split(" ", 1)
    assert "exported=2" in stats and "failed=0" in stats and "dropped=0" in stats, stats
    row = db.execute(
        "SELECT r.pipeline, r.entity, s.step_name, s.step_type, s.seq, s.candidates_in,"
        " s.candidates_out, s.why_json, s.output"
        " FROM xray_runs r JOIN xray_steps s USING (run_id) WHERE r.run_id = %s",
        (run_id,)).fetchall()
    assert row == [("competitor_search", "B0CASE", "filter_candidates", "filter", 1, 2, 1,
                    {"top_reject_reasons": {"category_mismatch": 1}}, ["slim phone case"])]
    artifacts = db.execute("SELECT attribute, size_bytes FROM xray_artifacts"
                           " WHERE run_id = %s", (run_id,)).fetchall()
    assert artifacts == [("xray.artifact.rejected", len("laptop stand"))]
