"""The ``xray`` command line: run the collector, migrate, inspect stored runs, manage tokens.

Conventions, as in ``gh`` and ``kubectl``: every argument has help and its default,
``--json`` prints one JSON document and ``--jsonl`` one object per line, run and
artifact ids may be shortened to a unique prefix, errors name the argument as typed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

# gRPC's core logs a line whenever a child process starts (the embedded database does).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
# X-Ray's child processes (the embedded database's tools) exec at once: gRPC's fork
# handlers have nothing to do, and with them off gRPC prints no fork_posix warning.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from collector_service.config import SETTINGS, CollectorConfig, setting_default
from collector_service.errors import NotFound, XRayError
from collector_service.telemetry.logs import configure_logging
from xray_otel.conventions import STEP_TYPES

Command = Callable[[argparse.Namespace, CollectorConfig], int]


def _add_settings(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    for setting in SETTINGS:
        if setting.field in names:
            default = setting_default(setting.field)
            shown = f"default: {default}" if default not in (None, "", ()) else "default: unset"
            parser.add_argument(setting.flag, dest=setting.field, default=None,
                                metavar=setting.field.split("_")[-1].upper(),
                                help=f"{setting.help} [{setting.env}; {shown}]")


def cmd_collector(args: argparse.Namespace, config: CollectorConfig) -> int:
    import asyncio

    from collector_service.receive.ports import check_ports_free

    check_ports_free(config)  # before the server's heavy imports: a taken port fails fast
    if config.workers > 1:
        from collector_service.workers import run_supervisor

        return run_supervisor(config)
    from collector_service.server import Collector

    asyncio.run(Collector(config).serve_forever())
    return 0


def cmd_migrate(args: argparse.Namespace, config: CollectorConfig) -> int:
    from collector_service.store.embedded import resolve_database
    from collector_service.store.migrate import apply_migrations, citus_layout

    url, embedded = resolve_database(config)
    try:
        applied = apply_migrations(url)
        layout = citus_layout(url)
    finally:
        if embedded is not None:
            embedded.stop()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    for line in layout:
        print(f"citus: {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xray", description=(
        "X-Ray: see which step of a decision pipeline decided what, and why."))
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)

    collector = commands.add_parser("collector", help="receive OTLP spans and store them")
    _add_settings(collector, [s.field for s in SETTINGS])
    collector.set_defaults(run=cmd_collector)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    _add_settings(migrate, DB_SETTINGS)
    migrate.set_defaults(run=cmd_migrate)

    demo = commands.add_parser("demo", help="run example pipelines and trace a wrong answer")
    demo.add_argument("--runs", type=_positive_int, default=12,
                      help="pipeline runs (default: 12)")
    demo.add_argument("--polluted-every", type=_count, default=3,
                      help="every Nth run has polluted keyword generation (default: 3; 0: none)")
    demo.add_argument("--json", action="store_true",
                      help="print the findings as one JSON document")
    _add_settings(demo, DB_SETTINGS)
    demo.set_defaults(run=_lazy("collector_service.cli.demo", "cmd_demo"))

    _add_inspect_commands(commands)
    _add_artifact_commands(commands)
    _add_database_commands(commands)
    _add_token_commands(commands)

    ui = commands.add_parser("ui", help="serve the read-only web viewer (runs, funnels)")
    ui.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    _add_settings(ui, DB_SETTINGS + STORE_SETTINGS + ["auth_tokens"])
    ui.set_defaults(run=_lazy("collector_service.cli.ui", "cmd_ui"))

    diff = commands.add_parser("diff", help="compare a pipeline's funnel across two versions")
    diff.add_argument("--pipeline", required=True, help="the pipeline to compare (required)")
    diff.add_argument("--base", required=True, help="the version to compare against (required)")
    diff.add_argument("--head", required=True, help="the version to compare (required)")
    diff.add_argument("--json", action="store_true", help="JSON lines for scripts")
    _add_settings(diff, DB_SETTINGS)
    diff.set_defaults(run=_lazy("collector_service.cli.diff", "cmd_diff"))
    return parser


DB_SETTINGS = ["database_url", "data_dir", "log_level"]
STORE_SETTINGS = ["artifact_store", "artifact_dir", "s3_bucket", "s3_prefix", "s3_endpoint_url"]


def _add_inspect_commands(commands: Any) -> None:
    inspect = "collector_service.cli.inspect_runs"
    runs = commands.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--pipeline", help="only runs of this pipeline (default: all)")
    runs.add_argument("--entity", help="only runs about this entity, e.g. an ASIN (default: all)")
    runs.add_argument("--status", choices=["pending", "running", "ok", "error"],
                      help="only runs with this status (default: all)")
    runs.add_argument("--since", metavar="AGE",
                      help="only runs started within this age (24h, 7d, 30m) or since an "
                           "ISO date such as 2026-11-01 (default: any time)")
    runs.set_defaults(run=_lazy(inspect, "cmd_runs"))

    show = commands.add_parser("show", help="a run's steps in order, with their evidence")
    show.add_argument("run_id", metavar="RUN",
                      help="run id, or a unique prefix of one (see `xray runs`)")
    show.add_argument("--full", action="store_true",
                      help="print inputs and outputs whole (default: shortened)")
    show.set_defaults(run=_lazy(inspect, "cmd_show"))

    steps = commands.add_parser("steps", help="steps by drop ratio (the seed query)")
    steps.add_argument("--type", choices=sorted(STEP_TYPES),
                       help="only steps of this type, e.g. filter (default: all)")
    steps.add_argument("--min-drop", type=_ratio, metavar="RATIO",
                       help="only steps dropping more than this fraction, e.g. 0.9 "
                            "(default: any)")
    steps.add_argument("--pipeline", help="only steps of this pipeline (default: all)")
    steps.add_argument("--name", help="only steps with this name (default: all)")
    steps.set_defaults(run=_lazy(inspect, "cmd_steps"))

    for sub in (runs, show, steps):
        output = sub.add_mutually_exclusive_group()
        output.add_argument("--json", action="store_true",
                            help="print one JSON document (an array for lists)")
        output.add_argument("--jsonl", action="store_true",
                            help="print one JSON object per line")
        _add_settings(sub, DB_SETTINGS)
    for sub in (runs, steps):
        sub.add_argument("--limit", type=_positive_int, default=50,
                         help="most rows shown (default: 50)")


def _add_artifact_commands(commands: Any) -> None:
    artifacts = "collector_service.cli.artifacts"
    artifact = commands.add_parser("artifact", help="fetch stored evidence")
    verbs = artifact.add_subparsers(dest="verb", required=True, metavar="VERB")
    get = verbs.add_parser("get", help="write an artifact to a file or stdout, verified")
    get.add_argument("artifact_id", metavar="ID",
                     help="artifact id (64 hex characters) or a unique prefix of one")
    get.add_argument("-o", "--output", metavar="FILE", help="file to write (default: stdout)")
    get.set_defaults(run=_lazy(artifacts, "cmd_artifact_get"))
    _add_settings(get, DB_SETTINGS + STORE_SETTINGS)

    retention = commands.add_parser(
        "retention", help="drop whole partitions of old steps, old runs and artifacts nothing "
                          "uses")
    retention.add_argument("--older-than", required=True, metavar="AGE",
                           help="drop the steps and runs older than this age, e.g. 30d, "
                                "rounded down to a UTC midnight and then to the start of "
                                "the partition holding it (required)")
    retention.add_argument("--artifact-grace", default="1h", metavar="AGE",
                           help="keep artifacts written within this age (default: 1h)")
    retention.add_argument("--dry-run", action="store_true",
                           help="count what would go, remove nothing")
    retention.add_argument("--json", action="store_true", help="print one JSON document")
    retention.set_defaults(run=_lazy(artifacts, "cmd_retention"))
    _add_settings(retention, DB_SETTINGS + STORE_SETTINGS)

    prune = commands.add_parser("prune", help="delete old runs and artifacts row by row "
                                              "(small databases; see retention)")
    prune.add_argument("--older-than", required=True, metavar="AGE",
                       help="delete runs older than this age, e.g. 30d or 12h (required)")
    prune.add_argument("--artifact-grace", default="1h", metavar="AGE",
                       help="keep artifacts written within this age (default: 1h)")
    prune.add_argument("--dry-run", action="store_true",
                       help="count what would go, delete nothing")
    prune.set_defaults(run=_lazy(artifacts, "cmd_prune"))
    _add_settings(prune, DB_SETTINGS + STORE_SETTINGS)


def _add_token_commands(commands: Any) -> None:
    tokens = "collector_service.cli.tokens"
    token_parser = commands.add_parser(
        "tokens", help="bearer tokens collectors accept, added and revoked without a restart")
    verbs = token_parser.add_subparsers(dest="verb", required=True, metavar="VERB",
                                        parser_class=_Parser)
    create = verbs.add_parser("create", help="make a token; it is printed once, only its "
                                             "hash is stored")
    create.add_argument("--name", required=True, help="who or what the token is for (required)")
    create.set_defaults(run=_lazy(tokens, "cmd_create"))
    listing = verbs.add_parser("list", help="every token: id, name, created, revoked")
    output = listing.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="print one JSON document (an array)")
    output.add_argument("--jsonl", action="store_true", help="print one JSON object per line")
    listing.set_defaults(run=_lazy(tokens, "cmd_list"))
    revoke = verbs.add_parser("revoke", help="refuse a token from now on")
    revoke.add_argument("token", metavar="ID_OR_NAME",
                        help="a token id, or the name of an active token")
    revoke.set_defaults(run=_lazy(tokens, "cmd_revoke"))
    for sub in (create, listing, revoke):
        _add_settings(sub, DB_SETTINGS)


def _add_database_commands(commands: Any) -> None:
    sql = commands.add_parser("sql", help="open psql on the X-Ray database")
    sql.add_argument("psql_args", nargs="*", metavar="PSQL_ARG",
                     help="passed on to psql after --, e.g. xray sql -- -c 'SELECT count(*) "
                          "FROM xray_runs' (default: none, an interactive session)")
    sql.set_defaults(run=_lazy("collector_service.cli.db", "cmd_sql"))
    _add_settings(sql, DB_SETTINGS)

    db = commands.add_parser("db", help="about the X-Ray database")
    verbs = db.add_subparsers(dest="verb", required=True, metavar="VERB",
                              parser_class=_Parser)
    url = verbs.add_parser("url", help="print a connection string for psql or Grafana")
    url.set_defaults(run=_lazy("collector_service.cli.db", "cmd_db_url"))
    _add_settings(url, DB_SETTINGS)


class _Parser(argparse.ArgumentParser):
    """Every sub-command shows its options' defaults in ``--help``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)


class _VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked for (reading the
    package metadata costs every other command about 10 ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default,
                         help=help or "show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("xray-otel")
        except PackageNotFoundError:
            installed = "unknown (not installed)"
        print(f"xray {installed}")
        parser.exit()


def _lazy(module: str, name: str) -> Command:
    """A command whose module is imported only when it runs."""

    def run(args: argparse.Namespace, config: CollectorConfig) -> int:
        import importlib

        command: Command = getattr(importlib.import_module(module), name)
        return command(args, config)

    return run


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a fraction; use a number from 0 to 1, e.g. 0.9") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use a fraction from 0 to 1, e.g. 0.9 for 90%")
    return value


_AGE_FLAGS = ("--since", "--older-than", "--artifact-grace")


def _join_dash_values(argv: Sequence[str]) -> list[str]:
    """``--since -5h`` as ``--since=-5h``: argparse would take ``-5h`` for an option."""
    joined: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _AGE_FLAGS and i + 1 < len(argv) and argv[i + 1].startswith("-") \
                and not argv[i + 1].startswith("--"):
            joined.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        joined.append(argv[i])
        i += 1
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(
        _join_dash_values(sys.argv[1:] if argv is None else list(argv)))
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
    except BrokenPipeError:
        # The reader went away (`xray steps | head`): stop quietly, as other tools do.
        # Python would otherwise report the failed flush of stdout again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by it


if __name__ == "__main__":
    sys.exit(main())
