"""A consistent backup of a chat database that is being written while it is dumped.

A writer inserts, edits and deletes chat messages at a steady pace before, during and
after the dump, logging every acknowledged write. The backup's manifest says which moment
it stands for (`consistentTime`); the restore, which replays the captured `oplog.bson`,
must equal the seed with exactly the writer's writes up to that moment applied, document
for document and by per-collection digests. The tarball is what `mongodump --oplog`
writes: `tar` extracts it, the stock `bsondump` reads its `oplog.bson`, and the layout
matches the real mongodump's run against the same server."""

from __future__ import annotations

import dataclasses
import random
import shutil
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import bson
import pytest
from pymongo import MongoClient

from chatops.adapters import oplog as oplog_adapter
from chatops.adapters.mongo import Mongo
from chatops.adapters.s3 import Store
from chatops.api.backup import S3Endpoint
from chatops.backup import dump, layout, oplog, restore
from chatops.backup.bsonstream import DocumentDigest
from chatops.backup.manifest import ManifestSource

pytestmark = pytest.mark.e2e
OWNER = ManifestSource(namespace="e2e", name="consistent", uid="c0ffee00-1111")
SEED = 2_000
Doc = dict[str, Any]


@dataclasses.dataclass
class Write:
    op: str
    collection: str
    id: Any
    document: Doc | None
    """The document after the write (None: deleted)."""
    acknowledged: float


class Writer(threading.Thread):
    """Writes chat messages one at a time, every `pace` seconds, logging each write the
    server acknowledged (insert a message, edit its text, mark it read, delete it)."""

    def __init__(self, client: MongoClient[Doc], database: str, live: dict[int, Doc],
                 pace: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.db, self.live, self.pace = client[database], live, pace
        self.log: list[Write] = []
        self.stop = threading.Event()
        self.rng = random.Random(7)
        self.next_id = 1_000_000
        self.written = threading.Condition()

    def run(self) -> None:
        while not self.stop.wait(self.pace):
            self.one()

    def one(self) -> None:
        rng, ids = self.rng, sorted(self.live)
        roll = rng.random()
        if roll < 0.45 or not ids:
            self.next_id += 1
            doc = {"_id": self.next_id, "room": f"room-{rng.randrange(5)}",
                   "text": f"new message {self.next_id}", "read": False}
            self.db.messages.insert_one(doc)
            self.live[doc["_id"]] = doc
            self.record("i", doc["_id"], dict(doc))
        elif roll < 0.8:
            _id = rng.choice(ids)
            change = ({"text": f"edited {rng.randrange(10**6)}"} if roll < 0.65
                      else {"read": True, "readBy": f"user{rng.randrange(50)}"})
            self.db.messages.update_one({"_id": _id}, {"$set": change})
            self.live[_id] = {**self.live[_id], **change}
            self.record("u", _id, dict(self.live[_id]))
        else:
            _id = rng.choice(ids)
            self.db.messages.delete_one({"_id": _id})
            del self.live[_id]
            self.record("d", _id, None)

    def record(self, op: str, _id: Any, doc: Doc | None) -> None:
        with self.written:
            self.log.append(Write(op, "messages", _id, doc, time.time()))
            self.written.notify_all()

    def wait_for(self, count: int, timeout: float = 120) -> None:
        with self.written:
            assert self.written.wait_for(lambda: len(self.log) >= count, timeout), (
                f"the writer made {len(self.log)} of {count} writes in {timeout} s"
            )


@pytest.fixture
def client(environment: dict[str, str]) -> Iterator[MongoClient[Doc]]:
    with MongoClient(environment["MONGODB_URI"]) as c:
        yield c


@pytest.fixture
def chat(client: MongoClient[Doc]) -> Iterator[str]:
    name = f"e2e_pit_{uuid.uuid4().hex[:8]}"
    yield name
    client.drop_database(name)
    client.drop_database(f"{name}_restored")


@pytest.fixture
def store(environment: dict[str, str]) -> Store:
    bucket = f"chatops-pit-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=environment["S3_ENDPOINT_URL"]).create_bucket(Bucket=bucket)
    return Store(S3Endpoint(bucket=bucket, endpoint=environment["S3_ENDPOINT_URL"],
                            force_path_style=True,
                            region=environment.get("AWS_DEFAULT_REGION", "us-east-1")))


def seed(client: MongoClient[Doc], name: str) -> dict[int, Doc]:
    docs = [{"_id": i, "room": f"room-{i % 5}", "text": f"message {i}", "read": i % 3 == 0}
            for i in range(SEED)]
    client[name].messages.insert_many(docs)
    client[name].rooms.insert_many([{"_id": f"room-{i}", "topic": "général"} for i in range(5)])
    return {d["_id"]: dict(d) for d in docs}


def digest(docs: list[bytes]) -> str:
    d = DocumentDigest()
    for doc in docs:
        d.add(doc)
    return d.hexdigest()


def collection_bytes(client: MongoClient[Doc], database: str, name: str) -> list[bytes]:
    return [bson.encode(doc) for doc in client[database][name].find()]


def test_a_backup_during_writes_restores_the_database_as_of_its_consistent_time(
    client: MongoClient[Doc], chat: str, store: Store, tmp_path: Path,
    environment: dict[str, str],
) -> None:
    base = seed(client, chat)
    rooms = collection_bytes(client, chat, "rooms")
    with Mongo(environment["MONGODB_URI"]) as mongo:
        start = oplog_adapter.window(mongo)
        assert start is not None
        writer = Writer(client, chat, {k: dict(v) for k, v in base.items()})
        writer.start()
        writer.wait_for(10)
        before_dump = len(writer.log)

        calls = []

        def interrupt() -> str | None:
            # the first batch has been read: let the writer change what is still unread
            if not calls:
                writer.wait_for(before_dump + 40)
            calls.append(len(writer.log))
            return None

        request = dump.DumpRequest(prefix="pit/", database=chat, source=OWNER,
                                   spool_dir=str(tmp_path))
        manifest = dump.dump(mongo, store, request, interrupt=interrupt)
        after_dump = len(writer.log)
        writer.wait_for(after_dump + 10)  # writes after the backup, never in the restore
        writer.stop.set()
        writer.join()

        assert manifest.point_in_time and manifest.consistent_time and manifest.oplog
        consistent = oplog.OpTime.parse(manifest.consistent_time)
        # the writer is serial: its k-th write is the k-th entry of the database in the oplog
        entries = [e for b in oplog_adapter.read(mongo, start.last, None,
                                                 oplog.Namespaces(frozenset({chat})))
                   for e in oplog.entries(b) if e.collection == "messages"]
        assert len(entries) == len(writer.log)  # after the seed: the writer's, in order
        assert [e.op for e in entries] == [w.op for w in writer.log]
        k = sum(1 for e in entries if e.ts <= consistent)
        assert before_dump + 40 <= k <= after_dump, (before_dump, k, after_dump)
        assert k < len(writer.log)
        captured_from = oplog.OpTime.parse(manifest.oplog.start)
        assert manifest.oplog.count == sum(1 for e in entries if captured_from < e.ts <= consistent)

        # the writer's log up to the consistent time, applied to the seed
        expected = {key: dict(doc) for key, doc in base.items()}
        for w in writer.log[:k]:
            if w.document is None:
                expected.pop(w.id, None)
            else:
                expected[w.id] = w.document

        restored = f"{chat}_restored"
        result = restore.restore(
            store, mongo, manifest.tarball.key,
            restore.RestoreRequest(mode="DropDatabase", rename={chat: restored}),
            str(tmp_path), require_manifest=True,
        )
        assert result.replayed == manifest.oplog.count > 0
        got = {d["_id"]: d for d in client[restored].messages.find()}
        assert got == expected
        assert digest(collection_bytes(client, restored, "messages")) == digest(
            [bson.encode(d) for d in expected.values()]
        )
        assert digest(collection_bytes(client, restored, "rooms")) == digest(rooms)

    # the tarball as a human reads it: tar, then the stock bsondump on oplog.bson
    tarball = tmp_path / "backup.tar.gz"
    tarball.write_bytes(b"".join(store.stream(manifest.tarball.key)))
    out = tmp_path / "extracted"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(tarball), "-C", str(out)], check=True)
    assert sorted(p.name for p in out.iterdir()) == [chat, layout.OPLOG_ENTRY]
    assert sorted(p.name for p in (out / chat).iterdir()) == [
        "messages.bson", "messages.metadata.json", "rooms.bson", "rooms.metadata.json",
    ]
    bsondump = shutil.which("bsondump")
    assert bsondump, "bsondump is built by env/build.sh"
    shown = subprocess.run([bsondump, "--quiet", str(out / layout.OPLOG_ENTRY)],
                           check=True, capture_output=True, text=True).stdout.splitlines()
    assert len(shown) == manifest.oplog.count
    assert all('"op":' in line and f'"ns":"{chat}.' in line and '"ts":{"$timestamp"' in line
               for line in shown)


def test_mongodump_oplog_writes_the_same_layout(
    client: MongoClient[Doc], chat: str, store: Store, tmp_path: Path,
    environment: dict[str, str],
) -> None:
    """The stock `mongodump --oplog` (whole server, as it requires) against the same
    server: `oplog.bson` at the root beside the database folders, as ours."""
    seed(client, chat)
    with Mongo(environment["MONGODB_URI"]) as mongo:
        manifest = dump.dump(mongo, store, dump.DumpRequest(prefix="md/", source=OWNER,
                                                            spool_dir=str(tmp_path)))
    theirs = tmp_path / "mongodump"
    tool = shutil.which("mongodump")
    assert tool
    run = subprocess.run(
        [tool, "--uri", environment["MONGODB_URI"], "--oplog", "--out", str(theirs),
         "--numParallelCollections=1"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    ours = tmp_path / "ours"
    ours.mkdir()
    tarball = tmp_path / "ours.tar.gz"
    tarball.write_bytes(b"".join(store.stream(manifest.tarball.key)))
    with tarfile.open(tarball, mode="r:gz") as tar:
        tar.extractall(ours, filter="data")

    def tree(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*")
                if p.name != "prelude.json" and not p.name.startswith("system.")
                and p.relative_to(root).parts[0] not in ("admin", "config", "local")}

    assert (theirs / "oplog.bson").is_file() and (ours / "oplog.bson").is_file()
    assert {p for p in tree(theirs) if p.startswith(chat)} == {
        p for p in tree(ours) if p.startswith(chat)
    }
    assert "oplog.bson" in tree(theirs) & tree(ours)
