"""X-Ray collector: receives OTLP spans, maps X-Ray steps and runs into Postgres tables."""

from __future__ import annotations

__all__: list[str] = []
