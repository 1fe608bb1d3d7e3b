"""The reader thread of a dump: errors reach the run, and a failed run stops the reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from chatops.backup.dump import overlapped


def test_items_arrive_in_order() -> None:
    assert list(overlapped(iter(range(100)), depth=2)) == list(range(100))


def test_a_reader_error_is_raised_in_the_run() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise ConnectionError("server went away")

    got = []
    with pytest.raises(ConnectionError, match="went away"):
        for item in overlapped(failing(), depth=2):
            got.append(item)
    assert got == [1]


def test_a_run_that_stops_early_stops_and_closes_the_reader() -> None:
    closed = threading.Event()
    produced = []

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                produced.append(n)
                yield n
                n += 1
        finally:
            closed.set()

    for item in overlapped(endless(), depth=2):
        if item == 3:
            break
    assert closed.wait(5)
    assert len(produced) <= 3 + 1 + 2 + 1  # at most `depth` ahead of the consumer
