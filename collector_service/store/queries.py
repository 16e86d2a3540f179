"""Load the named SQL queries kept in ``collector_service/store/sql/*.sql``.

Each query starts with a ``-- name: NAME`` line; the text up to the next one is the
query. Keeping SQL in ``.sql`` files lets it be read, reviewed and run on its own.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def load(filename: str, package: str = "collector_service.store") -> dict[str, bytes]:
    """All named queries in ``sql/<filename>`` of ``package``, keyed by name."""
    text = resources.files(package).joinpath("sql", filename).read_text("utf-8")
    parts = _NAME_LINE.split(text)
    queries: dict[str, bytes] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        statement = "\n".join(line for line in body.strip().splitlines()
                              if not line.lstrip().startswith("--"))
        queries[name] = statement.strip().encode()
    return queries
