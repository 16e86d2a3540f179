#!/usr/bin/env python3
"""Bootstrap for a fresh machine: needs only Python 3.11+.

    python3 dev.py demo     # the debugging story on an embedded database
    python3 dev.py test     # the whole test suite (embedded database unless configured)
    python3 dev.py lint     # ruff and mypy
    python3 dev.py proto    # regenerate the Python code for proto/ (grpcio-tools)
    python3 dev.py xray ... # any `xray` command inside the project's environment

Creates ``.venv`` beside this file and installs the project into it the first time
(and again whenever pyproject.toml changes).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("XRAY_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 -- this file runs under any python3
        sys.exit(f"X-Ray needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    stamp = VENV / ".xray-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing X-Ray and its test tools (first run only)", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    stamp.write_text(wanted)


def run(*command: str) -> int:
    return subprocess.run(command, cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    task, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if task not in {"demo", "test", "lint", "xray", "proto"}:
        print(__doc__)
        return 0 if task == "help" else 2
    ensure_environment()
    if task == "demo":
        return run(str(BIN / "xray"), "demo", *rest)
    if task == "xray":
        return run(str(BIN / "xray"), *rest)
    if task == "proto":
        return run(str(BIN / "python"), str(ROOT / "proto" / "generate.py"), *rest)
    if task == "test":
        return run(str(BIN / "python"), "-m", "pytest", *rest)
    return run(str(BIN / "ruff"), "check", ".") or run(str(BIN / "mypy"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
