"""The decorator wrappers, one per kind of callable, all driving the same ``Step`` scope.

Plain functions and coroutine functions run inside ``with step:`` (the one context
manager, shared by sync and async code). Generators and async generators get one span
for their whole iteration: it starts at the first ``next()`` and ends when the generator
is exhausted, raises, or is closed early (closing is not an error). The generator's body
must see its step as current on every resumption while the consumer, between items,
must not:

* a sync generator's body runs entirely inside a private copy of the context
  (``Context.run`` on every resumption), so even a ``with`` block inside the body that
  spans a ``yield`` cannot leak into the consumer;
* an async generator's body runs in the awaiting task's context, so the step is made
  current around each resumption and reset before the item is handed out.

Values sent and exceptions thrown into the wrapper are forwarded, so the wrapper
behaves like the generator it wraps (``send``, ``throw``, ``close``, return value).
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xray_otel._step import StepSpec


def wrap_function(spec: StepSpec, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Wrap a plain function: one step per call; the return value is passed through."""

    @functools.wraps(fn)
    def xray_step(*args: Any, **kwargs: Any) -> Any:
        with spec.open(name, args, kwargs) as step:
            result = fn(*args, **kwargs)
            step._set_result(result)
            return result

    return xray_step


def wrap_coroutine(spec: StepSpec, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Wrap a coroutine function: one step per awaited call."""

    @functools.wraps(fn)
    async def xray_step(*args: Any, **kwargs: Any) -> Any:
        with spec.open(name, args, kwargs) as step:
            result = await fn(*args, **kwargs)
            step._set_result(result)
            return result

    return xray_step


def _drive(
    gen: Generator[Any, Any, Any], ctx: contextvars.Context, count: Callable[[], None]
) -> Generator[Any, Any, Any]:
    """``yield from gen``, but resuming ``gen`` inside ``ctx`` each time."""
    method: Callable[[Any], Any] = gen.send
    arg: Any = None
    while True:
        try:
            item = ctx.run(method, arg)
        except StopIteration as stop:
            return stop.value
        count()
        try:
            arg = yield item
            method = gen.send
        except GeneratorExit:
            ctx.run(gen.close)
            raise
        except BaseException as exc:
            method, arg = gen.throw, exc


def wrap_generator(spec: StepSpec, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Wrap a generator function so that its whole iteration is one step."""

    @functools.wraps(fn)
    def xray_step(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        ctx = contextvars.copy_context()
        step = ctx.run(spec.open, name, args, kwargs)
        ctx.run(step.__enter__)
        try:
            gen = ctx.run(fn, *args, **kwargs)
            result = yield from _drive(gen, ctx, step._count_item)
        except BaseException as exc:
            ctx.run(step._finish, exc)
            raise
        ctx.run(step._finish, None)
        return result

    return xray_step


def wrap_async_generator(spec: StepSpec, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Wrap an async generator function so that its whole iteration is one step."""

    @functools.wraps(fn)
    async def xray_step(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        step = spec.open(name, args, kwargs)
        try:
            agen = fn(*args, **kwargs)
            method: Callable[[Any], Any] = agen.asend
            arg: Any = None
            while True:
                step._activate()
                try:
                    item = await method(arg)
                except StopAsyncIteration:
                    break
                finally:
                    step._deactivate()
                step._count_item()
                try:
                    arg = yield item
                    method = agen.asend
                except GeneratorExit:
                    step._activate()
                    try:
                        await agen.aclose()
                    finally:
                        step._deactivate()
                    raise
                except BaseException as exc:
                    method, arg = agen.athrow, exc
        except BaseException as exc:
            step._finish(exc)
            raise
        step._finish(None)

    return xray_step
