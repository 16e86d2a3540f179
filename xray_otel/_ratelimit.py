"""Rate-limited logging, so a failing collector or a hot misuse never floods the log.

X-Ray reports its own problems through the ``xray_otel`` logger, but a message that
repeats (an exporter failing every few seconds, ``record`` called outside a step in a
loop) is emitted at most once per interval per key; the next emission says how many
were suppressed. ``once`` emits a message once per key for the life of the process.
Nothing here blocks or raises.
"""

from __future__ import annotations

import logging
import time
from typing import Final

logger: Final = logging.getLogger("xray_otel")

_DEFAULT_INTERVAL_S: Final = 60.0
_MAX_KEYS: Final = 1024
_OVERFLOW_KEY: Final = "<too many distinct messages>"


class RateLimiter:
    """Decides whether the message identified by a key may be emitted now.

    Keys are bounded (``max_keys``); past the bound every new key shares one slot.
    Races between threads can at worst emit a message twice, never raise.
    """

    __slots__ = ("_interval", "_last", "_max_keys", "_suppressed")

    def __init__(self, interval_s: float = _DEFAULT_INTERVAL_S, max_keys: int = _MAX_KEYS) -> None:
        self._interval = interval_s
        self._max_keys = max_keys
        self._last: dict[object, float] = {}
        self._suppressed: dict[object, int] = {}

    def admit(self, key: object) -> int | None:
        """``None`` to suppress, else the number of messages suppressed since the last one."""
        if key not in self._last and len(self._last) >= self._max_keys:
            key = _OVERFLOW_KEY
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


class RateLimitedLogger:
    """A logger facade whose every call names a key and is rate limited per key."""

    __slots__ = ("_limiter", "_logger", "_seen")

    def __init__(self, target: logging.Logger = logger, interval_s: float = _DEFAULT_INTERVAL_S):
        self._logger = target
        self._limiter = RateLimiter(interval_s)
        self._seen: set[object] = set()

    def log(self, level: int, key: object, msg: str, *args: object, exc: bool = False) -> None:
        """Log ``msg % args`` at ``level`` unless ``key`` was logged within the interval."""
        try:
            if not self._logger.isEnabledFor(level):
                return
            suppressed = self._limiter.admit(key)
            if suppressed is None:
                return
            if suppressed:
                msg = f"{msg} ({suppressed} similar messages suppressed)"
            self._logger.log(level, msg, *args, exc_info=exc)
        except Exception:  # logging must never break the caller
            pass

    def once(self, level: int, key: object, msg: str, *args: object) -> None:
        """Log ``msg % args`` the first time ``key`` is seen (bounded memory)."""
        try:
            if key in self._seen:
                return
            if len(self._seen) < _MAX_KEYS:
                self._seen.add(key)
            self._logger.log(level, msg, *args)
        except Exception:  # logging must never break the caller
            pass

    def debug(self, key: object, msg: str, *args: object) -> None:
        self.log(logging.DEBUG, key, msg, *args)

    def warning(self, key: object, msg: str, *args: object) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def error(self, key: object, msg: str, *args: object, exc: bool = False) -> None:
        self.log(logging.ERROR, key, msg, *args, exc=exc)


class RateLimitFilter(logging.Filter):
    """A ``logging.Filter`` that rate limits records per (logger, level, message template).

    ``configure()`` attaches it to the OTLP exporters' loggers, which otherwise log
    every failed export.
    """

    def __init__(self, interval_s: float = _DEFAULT_INTERVAL_S) -> None:
        super().__init__()
        self._limiter = RateLimiter(interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            suppressed = self._limiter.admit((record.name, record.levelno, str(record.msg)))
            if suppressed is None:
                return False
            if suppressed:
                record.msg = f"{record.msg} ({suppressed} similar messages suppressed)"
        except Exception:  # a broken filter must not drop the record silently
            pass
        return True


log: Final = RateLimitedLogger()
"""The shared rate-limited logger of the package."""
