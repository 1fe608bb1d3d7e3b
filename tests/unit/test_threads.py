"""`in_thread` hands whatever the work raised to the awaiting daemon, so a look's
failure is reported and retried instead of hanging that object's daemon for ever."""

from __future__ import annotations

import asyncio

import pytest

from chatops.handlers.threads import in_thread


def _raise(err: BaseException) -> None:
    raise err


@pytest.mark.parametrize("err", [ValueError("bad"), StopIteration()])
def test_an_error_of_the_work_reaches_the_caller(err: BaseException) -> None:
    async def call() -> None:
        await asyncio.wait_for(in_thread("t", lambda: _raise(err)), timeout=10)

    with pytest.raises((ValueError, RuntimeError)):  # StopIteration cannot cross a Future
        asyncio.run(call())


def test_the_result_of_the_work_reaches_the_caller() -> None:
    assert asyncio.run(in_thread("t", lambda: 42)) == 42
