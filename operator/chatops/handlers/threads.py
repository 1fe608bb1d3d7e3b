"""Long work off the event loop, on a thread of its own.

`asyncio.to_thread` shares one small executor (a few threads on a small node) with every
other handler: a backup or restore that takes an hour there would starve the looks of
every other object. `in_thread` gives the work a dedicated thread instead, and copies the
context so `kopf.event` still finds the operator's event queue from it.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def in_thread(name: str, work: Callable[[], T]) -> T:
    """The result of `work()`, run on a new daemon thread while the caller awaits."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the awaiting daemon was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = context.run(work)
        except BaseException as err:  # handed to the awaiting coroutine
            if isinstance(err, StopIteration):  # a Future refuses it: the await would hang
                err = RuntimeError(f"StopIteration escaped {name}: {err}")
            loop.call_soon_threadsafe(settle, None, err)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future
