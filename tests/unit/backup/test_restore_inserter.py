"""The restore's concurrent insert (`backup/inserter.py`): whatever the number of workers
and the batches, what it reports as acknowledged is exactly what the server stored; a
failing worker fails the load, and once the load has returned nothing more is inserted
(the caller drops the temporary collections next: a late insert would bring one back).

The server is a dict of lists behind the `Writer` interface; failures are injected at the
n-th insert.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

import bson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatops.backup import inserter
from chatops.backup.bsonstream import Tally, documents


class Refused(Exception):
    """The server failed an insert."""


@dataclasses.dataclass
class Result:
    inserted: int
    duplicates: int = 0


class Server:
    """Stores what it is sent; the `fail_at`-th insert raises; counts inserts after
    `closed` is set."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.stored: dict[tuple[str, str], list[bytes]] = {}
        self.calls = 0
        self.fail_at = fail_at
        self.lock = threading.Lock()
        self.after_close = 0
        self.closed = False

    def insert_raw(
        self, database: str, collection: str, docs: Sequence[bytes | memoryview]
    ) -> Result:
        with self.lock:
            self.calls += 1
            if self.closed:
                self.after_close += 1
            if self.calls == self.fail_at:
                raise Refused(f"insert {self.calls} failed")
            self.stored.setdefault((database, collection), []).extend(bytes(d) for d in docs)
        return Result(len(docs))


def _docs(n: int, salt: str = "") -> bytes:
    return b"".join(bson.encode({"_id": i, "text": f"message {i}{salt}"}) for i in range(n))


def _batches(raw: bytes, size: int) -> list[list[memoryview]]:
    docs = list(documents(raw))
    return [docs[i : i + size] for i in range(0, len(docs), size)]


def _tally(raw: bytes) -> Tally:
    tally = Tally()
    tally.update(raw)
    return tally


def _insert_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("chatops-insert-")]


@settings(max_examples=40, deadline=None)
@given(
    workers=st.integers(1, 6),
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=4),
    batch=st.integers(1, 64),
    sample=st.integers(1, 50),
)
def test_what_is_acknowledged_is_what_the_server_stored(
    workers: int, sizes: list[int], batch: int, sample: int
) -> None:
    server = Server()
    raws = {("chat", f"c{n}"): _docs(size, salt=str(n)) for n, size in enumerate(sizes)}
    with inserter.Loader(server, workers, sample=sample) as loader:
        for key, raw in raws.items():
            loader.open(key)
            for chunk in _batches(raw, batch):
                loader.submit(key, chunk)
        written = loader.close()
    for key, raw in raws.items():
        want, got = _tally(raw), written[key]
        assert got.documents == want.documents == len(server.stored.get(key, []))
        assert got.digest.hexdigest() == want.content_digest == _tally(
            b"".join(server.stored.get(key, []))
        ).content_digest
        stored = server.stored.get(key, [])
        # what the read-back compares with: the first documents the server stored
        assert got.head == stored[: len(got.head)] == [bytes(d) for d in documents(raw)][
            : min(sample, batch)
        ]
    assert _insert_threads() == []


@settings(max_examples=40, deadline=None)
@given(workers=st.integers(1, 6), fail_at=st.integers(1, 10), batch=st.integers(1, 40))
def test_a_failed_insert_fails_the_load_and_nothing_is_inserted_after_it_returns(
    workers: int, fail_at: int, batch: int
) -> None:
    server = Server(fail_at=fail_at)
    raw = _docs(400)
    batches = _batches(raw, batch)
    with (
        pytest.raises(Refused, match=f"insert {fail_at} failed"),
        inserter.Loader(server, workers) as loader,
    ):
        for chunk in batches:
            loader.submit(("chat", "messages"), chunk)
        loader.close()
    server.closed = True
    assert _insert_threads() == []  # every worker has finished: none can insert later
    assert server.after_close == 0


def test_an_interrupt_stops_the_load() -> None:
    server = Server()
    asked = threading.Event()
    with (
        pytest.raises(inserter.Stopped),
        inserter.Loader(server, 3, interrupt=asked.is_set) as loader,
    ):
        for n, chunk in enumerate(_batches(_docs(1000), 10)):
            if n == 5:
                asked.set()
            loader.submit(("chat", "messages"), chunk)
    assert _insert_threads() == []
    assert len(server.stored[("chat", "messages")]) <= 60  # what was sent before the stop


