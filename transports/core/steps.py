"""Running an awaitable's first step now, and the rest later (asyncio only).

Many awaits on the hot paths finish without waiting: a request body the server already holds
is handed over at the first ``receive()``. :func:`start` runs such an awaitable's first step in
the caller, so that the caller learns whether it is already done before deciding what to do
next (skip a timer), and gives back an awaitable that goes on from there when it is not.

Await that rest in the same task: a coroutine started in one task and finished in another
runs its two halves under two tasks and two contexts, which breaks code that keeps anything
tied to either across the await (a ``ContextVar`` token, ``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["start"]

T = TypeVar("T")


@types.coroutine
def _go_on(steps: Coroutine[Any, Any, T], value: Any) -> Generator[Any, Any, T]:
    """Await ``steps`` from where its first step left it (it yielded ``value``), exactly as
    ``await`` would have: what the awaiting task sends or throws goes to it, and what it
    yields goes to the task."""
    while True:
        try:
            sent = yield value
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as exc:  # the task's cancellation, forwarded as await would
            try:
                value = steps.throw(exc)
            except StopIteration as stop:
                result: T = stop.value
                return result
        else:
            try:
                value = steps.send(sent)
            except StopIteration as stop:
                result = stop.value
                return result


def start(awaitable: Awaitable[T]) -> tuple[bool, Any]:
    """Run ``awaitable``'s first step now.

    Returns ``(True, result)`` when it finished without waiting, else ``(False, rest)``:
    ``rest`` is an awaitable to await, in this same task (see the module docstring), for the
    result. What the
    first step raises is raised here. An awaitable that is not a coroutine (a future, or an
    ASGI server's own awaitable object) is not stepped: it comes back whole as ``rest``.
    """
    if not asyncio.iscoroutine(awaitable):
        return False, awaitable
    try:
        yielded = awaitable.send(None)
    except StopIteration as done:
        return True, done.value
    return False, _go_on(awaitable, yielded)
