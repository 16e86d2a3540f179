"""The collector's logs: text for people or JSON lines for log pipelines, rate-limited.

A misbehaving producer can fail thousands of requests a second; each failure is counted
in the metrics, but the log says it at most once per interval per kind, with the number
of repeats it held back, so the log stays readable and cheap.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text", worker: int | None = None) -> None:
    """Send the root logger to stderr in ``fmt`` (``text`` or ``json``) at ``level``.

    A worker process's lines carry its index (``[worker 1]``, or ``"worker": 1`` in JSON).
    """
    handler = logging.StreamHandler()
    text = TEXT_FORMAT
    if worker is not None:
        handler.addFilter(_WorkerTag(worker))
        text = "%(asctime)s %(levelname)s [worker %(worker)d] %(name)s: %(message)s"
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(text))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class _WorkerTag(logging.Filter):
    """Adds the worker index to every record the handler writes."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self._worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self._worker
        return True


class RateLimitedLog:
    """Log a kind of event at most once per ``interval_s``, saying how many were held back."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        self.log(logging.WARNING, kind, message, *args)

    def error(self, kind: str, message: str, *args: object,
              exc_info: BaseException | None = None) -> None:
        self.log(logging.ERROR, kind, message, *args, exc_info=exc_info)

    def log(self, level: int, kind: str, message: str, *args: object,
            exc_info: BaseException | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next.get(kind, 0.0):
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            held = self._held.pop(kind, 0)
            self._next[kind] = now + self._interval_s
        suffix = f" ({held} more like this since the last report)" if held else ""
        self._logger.log(level, message + suffix, *args, exc_info=exc_info,
                         extra={"event": kind, "repeats": held})
