"""Carry the current run and step into worker threads.

asyncio tasks copy the context on creation, so steps in tasks find their run without
help. Threads do not: ``threading.Thread`` and ``ThreadPoolExecutor`` workers start
from an empty context. :func:`propagate` captures the caller's context when it wraps a
callable; :class:`ContextThreadPoolExecutor` does the same on every ``submit`` (and so
every ``map``).
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def propagate(fn: Callable[P, R]) -> Callable[P, R]:
    """Return ``fn`` bound to the caller's current context (run, step, span).

    Call it where the work is handed off, e.g.
    ``pool.submit(xray.propagate(score), item)`` or
    ``threading.Thread(target=xray.propagate(work))``. Each call of the result runs in
    a fresh copy of the captured context, so it may run in many threads at once.
    """
    if not callable(fn):
        raise TypeError(f"propagate() needs a callable, got {type(fn).__name__}")
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_captured_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run_in_captured_context


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the context of the caller of ``submit``.

    Steps submitted from inside ``xray.run(...)`` belong to that run and nest under the
    step that submitted them, exactly as if they had been called inline.
    """

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        ctx = contextvars.copy_context()
        return super().submit(functools.partial(ctx.run, fn, *args, **kwargs))
