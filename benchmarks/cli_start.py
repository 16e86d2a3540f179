"""How long ``xray`` takes as a whole process: ``xray --help``, and ``xray show RUN`` of a
run of 10,000 steps, beside ``python -c pass`` (the interpreter starting and exiting).

    python3 benchmarks/cli_start.py [--server-url postgresql://postgres@127.0.0.1:5432/postgres]
                                    [--repeats 10]

Each command is started ``--repeats`` times (after one warm-up; the commands take turns)
with its output thrown away; the median and the fastest wall times are printed.
``python -c "import psycopg"`` is the floor under every command that reads the database:
the driver's own import. The project's modules are byte-compiled first, as installing a
package does: where ``PYTHONDONTWRITEBYTECODE`` is set (as on some CI machines) an
editable checkout would otherwise compile every module again in every run, about 0.1 s
more. The run is generated in a scratch database (dropped afterwards): every step with a
reason, a why_json, a small input and output, as the SDK would store them.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench_support import scratch_database

from collector_service.store.migrate import apply_migrations

RUN = "bench-cli-run"
STEPS = 10_000

LOAD_RUN = """
INSERT INTO xray_runs (run_id, pipeline, entity, status, started_at, ended_at, trace_id,
                       span_id, service_name)
VALUES (%(run)s, 'competitor-selection', 'B0C1234567', 'ok', timestamptz '2026-11-01',
        timestamptz '2026-11-01' + interval '20 minutes', md5(%(run)s), 'ffffffffffffffff',
        'bench')
"""
LOAD_STEPS = """
INSERT INTO xray_steps (run_id, seq, step_name, step_type, pipeline, candidates_in,
                        candidates_out, why, why_json, input, output, metrics, status,
                        started_at, ended_at, trace_id, span_id, parent_span_id)
SELECT %(run)s, i, 'filter_' || (i %% 40), 'filter', 'competitor-selection',
       20000 - i, 19999 - i, 'dropped one candidate: price above ceiling',
       jsonb_build_object('top_reject_reasons', jsonb_build_object('price', 1)),
       jsonb_build_object('query', 'wireless earbuds', 'limit', 50),
       jsonb_build_object('kept', 19999 - i), jsonb_build_object('latency_ms', i %% 97),
       'ok', timestamptz '2026-11-01' + make_interval(secs => i * 0.1),
       timestamptz '2026-11-01' + make_interval(secs => i * 0.1 + 0.05),
       md5(%(run)s), lpad(to_hex(i), 16, '0'), 'ffffffffffffffff'
FROM generate_series(1, %(steps)s) AS i
"""


def wall_times(commands: dict[str, list[str]], repeats: int) -> dict[str, list[float]]:
    """Seconds from start to exit of each command, ``repeats`` times after a warm-up.

    The commands take turns, so a slow spell of a shared machine falls on all of them.
    """
    times: dict[str, list[float]] = {label: [] for label in commands}
    for attempt in range(repeats + 1):
        for label, argv in commands.items():
            began = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)
            if attempt:
                times[label].append(time.perf_counter() - began)
    return times


def xray_command() -> list[str]:
    """The installed ``xray`` script beside this interpreter, else the module."""
    script = Path(sys.executable).parent / "xray"
    return [str(script)] if script.exists() else [sys.executable, "-m",
                                                  "collector_service.cli.main"]


def compile_project() -> None:
    """Byte-compile the project's packages, as ``pip install`` does for an installed one."""
    root = Path(__file__).resolve().parents[1]
    for package in ("collector_service", "xray_otel"):
        compileall.compile_dir(root / package, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description="Whole-process wall time of xray commands.")
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    xray = xray_command()
    with scratch_database(args.server_url) as url:
        apply_migrations(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(LOAD_RUN, {"run": RUN})
            conn.execute(LOAD_STEPS, {"run": RUN, "steps": STEPS})
            conn.execute("ANALYZE")
        compile_project()
        commands = {
            "python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
            "python -c 'import psycopg' (driver)": [sys.executable, "-c", "import psycopg"],
            "xray --help": [*xray, "--help"],
            f"xray show RUN ({STEPS:,} steps)": [*xray, "show", RUN, "--database-url", url],
        }
        print(f"{'command':<40}{'median s':>10}{'min s':>8}   ({args.repeats} runs each)")
        for label, times in wall_times(commands, args.repeats).items():
            print(f"{label:<40}{statistics.median(times):>10.3f}{min(times):>8.3f}")


if __name__ == "__main__":
    main()
