"""The restore's insert: batches of raw documents sent by concurrent workers, and a tally
of what the server acknowledged, so the load proves itself without reading back.

One reader (the caller) cuts the tarball's `.bson` entries into batches and `submit`s
them; `workers` threads send them (`insert_many` unordered, raw BSON), at most `workers`
batches waiting in between, so memory is bounded by 2 * workers + 1 batches whatever the
size of the backup. pymongo releases the GIL while it waits for the server, so the reader
decompresses and frames the next batches while the server stores the last ones.

What the load knows when `close` returns, per collection (`Written`):

- `documents` and `digest`: the count and the order-free digest (`bsonstream`) of the
  exact bytes of every document the server acknowledged (a batch counts only once
  `insert_many` returned without a write error; one refused document fails the load);
- `head`: the first `SAMPLE` documents of the collection, which the server stores first:
  a collection's first batch is sent, and acknowledged, before any other of its batches,
  so they are what a plain `find().limit(n)` returns first (`verify.loaded` reads them
  back: on FerretDB, which scans for any filter, that read is the only cheap one).

A worker that fails stops the load: the reader's next `submit` raises its error, and
`close` waits for every worker to finish its batch before it raises, so nothing is
inserted after the load has given up (the caller then drops the temporary collections,
and a late insert would create one again).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from chatops.backup.bsonstream import DocumentDigest

SAMPLE = 1000
"""Documents per collection read back after the load (see `verify.loaded`): the first
ones stored."""
Key = tuple[str, str]
"""(database, collection) as loaded: the temporary collection's name."""


class Writer(Protocol):
    """What the workers need of the server (the Mongo adapter)."""

    def insert_raw(
        self, database: str, collection: str, documents: Sequence[bytes | memoryview]
    ) -> Inserted: ...


class Inserted(Protocol):
    @property
    def inserted(self) -> int: ...

    @property
    def duplicates(self) -> int: ...


class Stopped(Exception):
    """`interrupt` said stop; raised by `submit` and `close`."""


@dataclasses.dataclass
class Written:
    """What the server acknowledged of one collection (see the module's docstring)."""

    documents: int = 0
    duplicates: int = 0
    digest: DocumentDigest = dataclasses.field(default_factory=DocumentDigest)
    head: list[bytes] = dataclasses.field(default_factory=list)
    seen: int = 0
    """Documents submitted."""


class Loader:
    """Concurrent inserts with acknowledged tallies; use as a context manager, or call
    `close` (always: it joins the threads)."""

    def __init__(
        self, writer: Writer, workers: int, *, interrupt: Callable[[], bool] = lambda: False,
        sample: int = SAMPLE,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._writer, self._interrupt, self._size = writer, interrupt, sample
        self._queue: queue.Queue[tuple[Key, list[memoryview]] | None] = queue.Queue(workers)
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._failed = threading.Event()
        self._closed = False
        self.written: dict[Key, Written] = {}
        self._threads = [
            threading.Thread(target=self._work, name=f"chatops-insert-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(raising=exc[0] is None)

    def open(self, key: Key) -> Written:
        """The tally of a collection, created empty (a collection without documents is
        one too: its count is checked)."""
        with self._lock:
            return self.written.setdefault(key, Written())

    def submit(self, key: Key, batch: list[memoryview]) -> None:
        """Queue a batch (waits while `workers` batches wait); raises the error of a
        worker that failed, or Stopped. A collection's first batch is sent at once, on
        the caller's thread, so that it is stored before the others."""
        tally = self.open(key)
        first = tally.seen == 0
        tally.seen += len(batch)
        if first:
            tally.head = [bytes(d) for d in batch[: self._size]]
        while True:
            self._raise_if_failed()
            if self._interrupt():
                self._fail(Stopped("stopped while loading"))
                self._raise_if_failed()
            if first:
                self._send(key, batch)
                self._raise_if_failed()
                return
            try:
                self._queue.put((key, batch), timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self, *, raising: bool = True) -> dict[Key, Written]:
        """Wait for every batch to be sent (or, after a failure, for the workers to stop);
        raise the first error if `raising`. The tallies, once every worker is done."""
        if not self._closed:
            self._closed = True
            for _ in self._threads:  # the workers drain the queue whatever happened
                self._queue.put(None)
        for thread in self._threads:
            thread.join()
        if raising:
            self._raise_if_failed()
        return self.written

    def _raise_if_failed(self) -> None:
        if self._failed.is_set():
            assert self._error is not None
            raise self._error

    def _fail(self, err: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = err
        self._failed.set()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if not self._failed.is_set():  # else drain without sending: the load gave up
                self._send(*item)

    def _send(self, key: Key, batch: list[memoryview]) -> None:
        try:
            if self._interrupt():
                raise Stopped("stopped while loading")
            result = self._writer.insert_raw(key[0], key[1], batch)
        except BaseException as err:  # handed to the reader, which raises it
            self._fail(err)
            return
        digest = DocumentDigest()
        for doc in batch:
            digest.add(doc)
        with self._lock:
            tally = self.written[key]
            tally.documents += result.inserted
            tally.duplicates += result.duplicates
            tally.digest.merge(digest)
