"""The ``xray`` command line: run the collector, migrate, and inspect stored runs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from collector_service.config import SETTINGS, CollectorConfig
from collector_service.errors import XRayError

Command = Callable[[argparse.Namespace, CollectorConfig], int]


def _add_settings(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    for setting in SETTINGS:
        if setting.field in names:
            parser.add_argument("--" + setting.field.replace("_", "-"), dest=setting.field,
                                default=None, help=f"{setting.help} [{setting.env}]")


def cmd_collector(args: argparse.Namespace, config: CollectorConfig) -> int:
    from collector_service.server import Collector

    asyncio.run(Collector(config).serve_forever())
    return 0


def cmd_migrate(args: argparse.Namespace, config: CollectorConfig) -> int:
    from collector_service.migrate import apply_migrations
    from collector_service.server import resolve_database

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
    _add_settings(migrate, ["database_url", "data_dir", "log_level"])
    migrate.set_defaults(run=cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = CollectorConfig.from_sources(vars(args))
        logging.basicConfig(level=config.log_level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        run: Command = args.run
        return run(args, config)
    except XRayError as exc:
        print(f"xray: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
