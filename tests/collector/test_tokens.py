"""``xray tokens create|list|revoke`` against a real database, and the table behind them."""

from __future__ import annotations

import hashlib
import json

import psycopg
import pytest

from collector_service.cli.main import main
from tests.fix_db import DatabaseFactory

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


pytestmark = pytest.mark.usefixtures("no_xray_environment")


@pytest.fixture
def url(databases: DatabaseFactory) -> str:
    """A database of the test's own, migrated by the first command."""
    url = databases.create()
    assert main(["migrate", "--database-url", url]) == 0
    return url


def xray(url: str, *argv: str) -> int:
    return main([*argv, "--database-url", url])


def create(url: str, name: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert xray(url, "tokens", "create", "--name", name) == 0
    out, err = capsys.readouterr()
    assert "shown only now" in err
    return out.strip()


def listed(url: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, str | None]]:
    capsys.readouterr()
    assert xray(url, "tokens", "list", "--json") == 0
    document: list[dict[str, str | None]] = json.loads(capsys.readouterr().out)
    assert xray(url, "tokens", "list", "--jsonl") == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == document
    return document


def test_create_stores_only_the_hash_and_list_never_shows_secrets(
        url: str, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = create(url, "pipeline-a", capsys), create(url, "ci", capsys)
    assert first != second
    for secret in (first, second):
        assert secret.startswith("xr_") and len(secret) == 3 + 43  # 32 random bytes
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT name, token_sha256 FROM xray_auth_tokens ORDER BY name"
                            ).fetchall()
        stored_text = str(conn.execute("SELECT * FROM xray_auth_tokens").fetchall())
    assert rows == [("ci", hashlib.sha256(second.encode()).digest()),
                    ("pipeline-a", hashlib.sha256(first.encode()).digest())]
    assert first not in stored_text and second not in stored_text
    tokens = listed(url, capsys)
    assert [(t["name"], t["revoked"]) for t in tokens] == [("pipeline-a", None), ("ci", None)]
    assert all(set(t) == {"id", "name", "created", "revoked"} for t in tokens)
    assert all(len(str(t["id"])) == 12 for t in tokens)
    assert xray(url, "tokens", "list") == 0
    table = capsys.readouterr().out
    assert "pipeline-a" in table and "ci" in table
    for secret in (first, second):
        assert secret not in table and hashlib.sha256(secret.encode()).hexdigest() not in table


def test_revoke_by_name_or_id_and_reuse_of_a_revoked_name(
        url: str, capsys: pytest.CaptureFixture[str]) -> None:
    create(url, "pipeline-a", capsys)
    assert xray(url, "tokens", "create", "--name", "pipeline-a") == 2
    assert "active already" in capsys.readouterr().err
    assert xray(url, "tokens", "revoke", "pipeline-a") == 0
    assert "revoked token" in capsys.readouterr().out
    (old,) = listed(url, capsys)
    assert old["revoked"] is not None
    create(url, "pipeline-a", capsys)  # the name is free again
    assert xray(url, "tokens", "revoke", str(old["id"])) == 0
    assert "already revoked" in capsys.readouterr().out
    newer = [t for t in listed(url, capsys) if t["id"] != old["id"]]
    assert [t["revoked"] for t in newer] == [None]
    assert xray(url, "tokens", "revoke", str(newer[0]["id"])) == 0
    assert [t["revoked"] is not None for t in listed(url, capsys)] == [True, True]


def test_bad_requests_say_what_is_wrong(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert xray(url, "tokens", "revoke", "no-such-token") == 1
    assert "no token with id 'no-such-token'" in capsys.readouterr().err
    assert xray(url, "tokens", "create", "--name", "  ") == 2
    assert "must not be empty" in capsys.readouterr().err
    assert xray(url, "tokens", "create", "--name", "x" * 101) == 2
    assert "at most 100" in capsys.readouterr().err
    assert xray(url, "tokens", "create", "--name", "bad\nname") == 2
    assert "control characters" in capsys.readouterr().err
    assert xray(url, "tokens", "list") == 0
    assert "no tokens" in capsys.readouterr().out
    assert xray(UNREACHABLE, "tokens", "list") == 2
    assert "cannot reach the database" in capsys.readouterr().err


def test_token_table_is_documented_and_hidden_from_analysts(url: str) -> None:
    with psycopg.connect(url) as conn:
        comments = conn.execute(
            "SELECT a.attname, col_description(c.oid, a.attnum) FROM pg_class c"
            " JOIN pg_attribute a ON a.attrelid = c.oid WHERE c.relname = 'xray_auth_tokens'"
            " AND a.attnum > 0 AND NOT a.attisdropped").fetchall()
        table_comment = conn.execute(
            "SELECT obj_description('xray_auth_tokens'::regclass)").fetchone()
        analyst = conn.execute(
            "SELECT has_table_privilege('xray_analyst', 'xray_auth_tokens', 'SELECT'),"
            " has_table_privilege('xray_analyst', 'xray_runs', 'SELECT')").fetchone()
    assert {name for name, _ in comments} == {
        "token_id", "name", "token_sha256", "created_at", "revoked_at"}
    assert all(len(text or "") > 10 for _, text in comments)
    assert table_comment is not None and "xray tokens" in table_comment[0]
    assert analyst == (False, True)
