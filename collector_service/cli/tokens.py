"""``xray tokens create|list|revoke``: the bearer tokens collectors accept without a restart."""

from __future__ import annotations

import argparse
import sys

from collector_service.cli import db as cli_db
from collector_service.cli.tables import print_records, table
from collector_service.config import CollectorConfig
from collector_service.store import tokens


def cmd_create(args: argparse.Namespace, config: CollectorConfig) -> int:
    """Print the new token alone on stdout (for scripts); say what it is on stderr."""
    with cli_db.connect(config) as conn:
        created = tokens.create_token(conn, args.name)
    print(created.secret)
    print(f"created token {created.info.token_id} ({created.info.name!r}); the token above "
          "is shown only now. Producers send it as `Authorization: Bearer <token>`, e.g. "
          "OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace, config: CollectorConfig) -> int:
    with cli_db.connect(config) as conn:
        found = tokens.list_tokens(conn)
    rows = [(t.token_id, t.name, t.created_at, t.revoked_at) for t in found]
    if args.json or args.jsonl:
        print_records([{"id": token_id, "name": name, "created": created, "revoked": revoked}
                       for token_id, name, created, revoked in rows], lines=args.jsonl)
    elif rows:
        print(table(["id", "name", "created", "revoked"], rows))
    else:
        print("no tokens; create one with `xray tokens create --name NAME`")
    return 0


def cmd_revoke(args: argparse.Namespace, config: CollectorConfig) -> int:
    with cli_db.connect(config) as conn:
        token, now = tokens.revoke_token(conn, args.token)
    if now:
        print(f"revoked token {token.token_id} ({token.name!r}); running collectors refuse "
              "it within a few seconds")
    else:
        print(f"token {token.token_id} ({token.name!r}) was already revoked at "
              f"{token.revoked_at:%Y-%m-%d %H:%M:%S}")
    return 0
