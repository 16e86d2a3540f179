"""The command line as a new user meets it: JSON documents, help, ids by prefix, the
evidence in ``xray show``, steps without ``seq``, tables on a terminal, ``xray sql``.

In-process against a real collector's database, seeded with real OTLP spans.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from collector_service.cli.main import build_parser, main
from collector_service.cli.tables import Style, table
from collector_service.config import colour_wanted
from tests.collector.test_cli import PAYLOAD_ID, Cli, seed
from tests.fix_collector import RunningCollector
from tests.otlp_builders import new_trace_id, request, span
from xray_otel import conventions as c

LONG_OUTPUT = [f"candidate-{i:03d}" for i in range(60)]


pytestmark = pytest.mark.usefixtures("no_xray_environment")


@pytest.fixture
def seeded(collector: RunningCollector, db: psycopg.Connection, migrated_url: str) -> Cli:
    """The runs of test_cli, plus run-d: OpenTelemetry-style steps without seq, with
    inputs, outputs and metrics, sent in an order unlike their start order."""
    with grpc.insecure_channel(collector.grpc_target) as channel:
        stub = TraceServiceStub(channel)
        seed(stub)
        trace, now = new_trace_id(), time.time_ns() - 30 * 10**9
        ms = 1_000_000
        stub.Export(request(
            span("rank", {c.STEP_TYPE: "rank", c.RUN_ID: "run-d",
                          c.STEP_OUTPUT: json.dumps(LONG_OUTPUT)},
                 trace_id=trace, start_ns=now + 30 * ms),
            span("keywords", {c.STEP_TYPE: "llm", c.RUN_ID: "run-d",
                              c.STEP_INPUT: json.dumps({"title": "phone case"}),
                              c.STEP_OUTPUT: json.dumps(["phone case", "phone stand", "stand"]),
                              c.metric_attribute("prompt_tokens"): 31},
                 trace_id=trace, start_ns=now + 10 * ms),
            span("search", {c.STEP_TYPE: "search", c.RUN_ID: "run-d"},
                 trace_id=trace, start_ns=now + 20 * ms),
        ))
    return Cli(db, migrated_url, collector.data_dir)


def test_json_is_one_document_and_jsonl_one_object_per_line(
        seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("runs", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in document] == ["run-d", "run-a", "run-b", "run-c"]
    assert seeded.xray("runs", "--jsonl") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == document
    assert seeded.xray("steps", "--json", "--type", "filter") == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)


def test_json_and_jsonl_exclude_each_other(seeded: Cli,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        seeded.xray("runs", "--json", "--jsonl")
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert re.fullmatch(r"xray \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def _commands(parser: argparse.ArgumentParser, path: str = "xray"
              ) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_commands(sub, f"{path} {name}"))
    return found


def test_every_argument_has_help_and_says_its_default() -> None:
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help, f"{path} {name} has no help"
            if action.option_strings and not isinstance(action, argparse._StoreTrueAction) \
                    and action.dest != "version":
                assert "default" in action.help or "required" in action.help, \
                    f"{path} {name}: help does not say the default: {action.help!r}"


def test_collector_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["collector", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "[XRAY_GRPC_PORT; default: 4317]" in out
    assert "[XRAY_HTTP_PORT; default: 4318]" in out


@pytest.mark.parametrize(("argv", "expected"), [
    (["steps", "--min-drop", "abc"], "argument --min-drop: 'abc' is not a fraction"),
    (["steps", "--limit", "0"], "argument --limit: '0': must be at least 1"),
    (["demo", "--runs", "many"], "argument --runs: 'many' is not a whole number"),
])
def test_argument_errors_speak_the_users_words(capsys: pytest.CaptureFixture[str],
                                               argv: list[str], expected: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "_ratio" not in err and "invalid" not in err


def test_since_accepts_a_leading_dash(seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("runs", "--since", "-5h", "--jsonl") == 0
    dashed = capsys.readouterr().out
    assert seeded.xray("runs", "--since", "5h", "--jsonl") == 0
    assert dashed == capsys.readouterr().out
    assert {json.loads(line)["run_id"] for line in dashed.splitlines()} == {"run-a", "run-d"}


def test_show_accepts_a_unique_prefix(seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("show", "run-b", "--json") == 0
    whole = json.loads(capsys.readouterr().out)
    assert seeded.xray("show", "run-", "--json") == 2
    err = capsys.readouterr().err
    assert err.startswith("xray: error: run id 'run-' is ambiguous")
    assert all(r in err for r in ("run-a", "run-b", "run-c", "run-d"))
    seeded.db.execute("INSERT INTO xray_runs (run_id, trace_id) VALUES ('other-b', 'x')")
    assert seeded.xray("show", "run-b", "--json") == 0  # a whole id is never ambiguous
    assert json.loads(capsys.readouterr().out) == whole
    assert seeded.xray("show", "oth") == 0
    assert capsys.readouterr().out.startswith("run other-b")


def test_artifact_get_accepts_a_unique_prefix(
        seeded: Cli, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert seeded.xray("artifact", "get", PAYLOAD_ID[:8].upper(), data_dir=True) == 0
    assert json.loads(capsysbinary.readouterr().out)["results"][0]["asin"] == "B00000"
    assert seeded.xray("artifact", "get", "f" * 10, data_dir=True) in (1, 2)
    assert "no artifact" in capsysbinary.readouterr().err.decode()


def test_show_prints_inputs_outputs_and_metrics(seeded: Cli,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("show", "run-d") == 0
    out = capsys.readouterr().out
    assert '     input: {"title":"phone case"}' in out.splitlines()
    assert '     output: ["phone case","phone stand","stand"]' in out.splitlines()
    assert "     metrics: prompt_tokens=31" in out.splitlines()
    whole = json.dumps(LONG_OUTPUT, separators=(",", ":"))
    assert whole not in out and "--full shows all" in out
    assert seeded.xray("show", "run-d", "--full") == 0
    assert f"     output: {whole}" in capsys.readouterr().out.splitlines()


def test_show_json_includes_everything(seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("show", "run-d", "--json") == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    keywords = steps[0]
    assert keywords["input"] == {"title": "phone case"}
    assert keywords["output"] == ["phone case", "phone stand", "stand"]
    assert keywords["metrics"] == {"prompt_tokens": 31}
    assert steps[2]["output"] == LONG_OUTPUT
    assert {"attributes", "trace_id", "span_id", "started_at", "artifacts"} <= set(keywords)


def test_steps_without_seq_are_placed_by_start_time(
        seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("show", "run-d") == 0
    out = capsys.readouterr().out
    numbered = re.findall(r"^ *(\d+)\. (\w+)", out, re.M)
    assert numbered == [("1", "keywords"), ("2", "search"), ("3", "rank")]
    assert "-." not in out and "placed by start time" in out
    rows = seeded.db.execute("SELECT position, step_name, seq FROM xray_step_funnel"
                             " WHERE run_id = 'run-d' ORDER BY position").fetchall()
    assert rows == [(1, "keywords", None), (2, "search", None), (3, "rank", None)]
    # Sequenced runs keep their seq order.
    rows = seeded.db.execute("SELECT position, seq FROM xray_step_funnel"
                             " WHERE run_id = 'run-a' ORDER BY position").fetchall()
    assert rows == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert seeded.db.execute("SELECT DISTINCT position FROM xray_reject_reasons"
                             " WHERE run_id = 'run-a'").fetchall() == [(3,)]


class _Terminal(Style):
    def __init__(self, width: int, colour: bool) -> None:
        self.terminal, self.colour, self.width = True, colour, width


def test_table_fits_the_terminal_and_right_aligns_numbers() -> None:
    rows = [["a" * 70, 5, "ok"], ["b", 12345, "error"]]
    text = table(["why", "count", "status"], rows, _Terminal(40, colour=False))
    lines = text.splitlines()
    assert all(len(line) <= 40 for line in lines), text
    assert lines[2].startswith("a") and "…" in lines[2]
    count_column = [line[lines[0].index("count"):][:5] for line in lines[2:]]
    assert count_column == ["    5", "12345"]


def test_table_colour_only_when_wanted() -> None:
    rows = [["x", "error"]]
    assert "\033[" in table(["id", "status"], rows, _Terminal(80, colour=True))
    assert "\033[" not in table(["id", "status"], rows, _Terminal(80, colour=False))
    assert colour_wanted(True, {}) is True
    assert colour_wanted(True, {"NO_COLOR": "1"}) is False
    assert colour_wanted(False, {}) is False


def test_piped_output_has_no_colour_and_cuts_nothing(
        seeded: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    seeded.db.execute("UPDATE xray_runs SET error = repeat('e', 150) WHERE run_id = 'run-b'")
    assert seeded.xray("runs") == 0
    out = capsys.readouterr().out
    assert "\033[" not in out and "e" * 150 in out


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
def test_sql_runs_psql_on_the_database(seeded: Cli, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "--database-url", seeded.url, "--",
                 "-tA", "-c", "SELECT count(*) FROM xray_runs"]) == 0
    assert capfd.readouterr().out.strip() == "4"


def test_sql_without_psql_says_so(seeded: Cli, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert seeded.xray("sql") == 2
    assert "psql is not installed" in capsys.readouterr().err


def test_db_url_prints_a_url_psql_can_use(seeded: Cli,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert seeded.xray("db", "url") == 0
    url = capsys.readouterr().out.strip()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM xray_runs").fetchone() == (4,)
