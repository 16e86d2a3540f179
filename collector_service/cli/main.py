"""The ``xray`` command line: run the collector, migrate, inspect stored runs, manage tokens."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

# gRPC's core logs a line whenever a child process starts (the embedded database does).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from collector_service.config import SETTINGS, CollectorConfig
from collector_service.errors import NotFound, XRayError
from collector_service.telemetry.logs import configure_logging
from xray_otel.conventions import STEP_TYPES

Command = Callable[[argparse.Namespace, CollectorConfig], int]


def _add_settings(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    for setting in SETTINGS:
        if setting.field in names:
            parser.add_argument(setting.flag, dest=setting.field,
                                default=None, help=f"{setting.help} [{setting.env}]")


def cmd_collector(args: argparse.Namespace, config: CollectorConfig) -> int:
    from collector_service.server import Collector

    asyncio.run(Collector(config).serve_forever())
    return 0


def cmd_migrate(args: argparse.Namespace, config: CollectorConfig) -> int:
    from collector_service.store.embedded import resolve_database
    from collector_service.store.migrate import apply_migrations

    url, embedded = resolve_database(config)
    try:
        applied = apply_migrations(url)
    finally:
        if embedded is not None:
            embedded.stop()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xray", description=(
        "X-Ray: see which step of a decision pipeline decided what, and why."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    collector = commands.add_parser("collector", help="receive OTLP spans and store them")
    _add_settings(collector, [s.field for s in SETTINGS])
    collector.set_defaults(run=cmd_collector)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    _add_settings(migrate, DB_SETTINGS)
    migrate.set_defaults(run=cmd_migrate)

    demo = commands.add_parser("demo", help="run example pipelines and trace a wrong answer")
    demo.add_argument("--runs", type=int, default=12, help="pipeline runs (12)")
    demo.add_argument("--polluted-every", type=int, default=3,
                      help="every Nth run has polluted keyword generation (3; 0: none)")
    demo.add_argument("--json", action="store_true", help="print the findings as JSON")
    _add_settings(demo, DB_SETTINGS)
    demo.set_defaults(run=_lazy("collector_service.cli.demo", "cmd_demo"))

    _add_inspect_commands(commands)
    _add_artifact_commands(commands)
    _add_token_commands(commands)
    return parser


DB_SETTINGS = ["database_url", "data_dir", "log_level"]
STORE_SETTINGS = ["artifact_store", "artifact_dir", "s3_bucket", "s3_prefix", "s3_endpoint_url"]


def _add_inspect_commands(commands: Any) -> None:
    from collector_service.cli import inspect_runs as cli_inspect

    runs = commands.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--pipeline")
    runs.add_argument("--entity")
    runs.add_argument("--status", choices=["pending", "running", "ok", "error"])
    runs.add_argument("--since", help="an age such as 24h or 7d, or an ISO date")
    runs.set_defaults(run=cli_inspect.cmd_runs)

    show = commands.add_parser("show", help="a run's steps in order, as a funnel")
    show.add_argument("run_id", metavar="RUN")
    show.set_defaults(run=cli_inspect.cmd_show)

    steps = commands.add_parser("steps", help="steps by drop ratio (the seed query)")
    steps.add_argument("--type", choices=sorted(STEP_TYPES), help="step type, e.g. filter")
    steps.add_argument("--min-drop", type=_ratio, help="only steps dropping more, e.g. 0.9")
    steps.add_argument("--pipeline")
    steps.add_argument("--name", help="step name")
    steps.set_defaults(run=cli_inspect.cmd_steps)

    for sub in (runs, show, steps):
        sub.add_argument("--json", action="store_true", help="JSON for scripts")
        _add_settings(sub, DB_SETTINGS)
    for sub in (runs, steps):
        sub.add_argument("--limit", type=_positive_int, default=50,
                         help="most rows shown (50)")


def _add_artifact_commands(commands: Any) -> None:
    from collector_service.cli import artifacts as cli_artifacts

    artifact = commands.add_parser("artifact", help="fetch stored evidence")
    verbs = artifact.add_subparsers(dest="verb", required=True, metavar="VERB")
    get = verbs.add_parser("get", help="write an artifact to a file or stdout, verified")
    get.add_argument("artifact_id", metavar="ID")
    get.add_argument("-o", "--output", help="file to write (default: stdout)")
    get.set_defaults(run=cli_artifacts.cmd_artifact_get)
    _add_settings(get, DB_SETTINGS + STORE_SETTINGS)

    prune = commands.add_parser("prune", help="delete old runs and artifacts nothing uses")
    prune.add_argument("--older-than", required=True, help="age such as 30d, 12h")
    prune.add_argument("--artifact-grace", default="1h",
                       help="keep artifacts written within this age (default 1h)")
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    prune.set_defaults(run=cli_artifacts.cmd_prune)
    _add_settings(prune, DB_SETTINGS + STORE_SETTINGS)


def _add_token_commands(commands: Any) -> None:
    from collector_service.cli import tokens as cli_tokens

    token_parser = commands.add_parser(
        "tokens", help="bearer tokens collectors accept, added and revoked without a restart")
    verbs = token_parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    create = verbs.add_parser("create", help="make a token; it is printed once, only its "
                                             "hash is stored")
    create.add_argument("--name", required=True, help="who or what the token is for")
    create.set_defaults(run=cli_tokens.cmd_create)
    listing = verbs.add_parser("list", help="every token: id, name, created, revoked")
    listing.add_argument("--json", action="store_true", help="JSON lines for scripts")
    listing.set_defaults(run=cli_tokens.cmd_list)
    revoke = verbs.add_parser("revoke", help="refuse a token from now on")
    revoke.add_argument("token", metavar="ID_OR_NAME",
                        help="a token id, or the name of an active token")
    revoke.set_defaults(run=cli_tokens.cmd_revoke)
    for sub in (create, listing, revoke):
        _add_settings(sub, DB_SETTINGS)


def _lazy(module: str, name: str) -> Command:
    """A command whose module is imported only when it runs."""

    def run(args: argparse.Namespace, config: CollectorConfig) -> int:
        import importlib

        command: Command = getattr(importlib.import_module(module), name)
        return command(args, config)

    return run


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = CollectorConfig.from_sources(vars(args))
        # The collector reports what it does; other commands speak only of problems.
        explicit = args.log_level is not None or "XRAY_LOG_LEVEL" in os.environ
        level = config.log_level if explicit or args.command == "collector" else "WARNING"
        configure_logging(level, config.log_format)
        run: Command = args.run
        return run(args, config)
    except NotFound as exc:
        print(f"xray: {exc}", file=sys.stderr)
        return 1
    except XRayError as exc:
        print(f"xray: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
