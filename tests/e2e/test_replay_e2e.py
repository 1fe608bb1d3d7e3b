"""Replay's writes on the real server: a batch is one delete of its documents' `_id`s
and one insert, made all or nothing across an interruption by its journal. A replay
stopped between the two (the server refused the insert: the moment a kill is hardest
to land on, pinned) or SIGKILLed mid-batch again and again, then run again with the
same token, leaves the database as an uninterrupted one does: no document the batch
held is lost, no journal left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest
from pymongo import MongoClient

from chatops.adapters import oplog as oplog_adapter
from chatops.adapters.mongo import Mongo
from chatops.backup import oplog
from chatops.errors import DatabaseError
from support import wait_for

pytestmark = pytest.mark.mongodb

MESSAGES = 200


@pytest.fixture
def mongo(environment: dict[str, str]) -> Any:
    with Mongo(environment["MONGODB_URI"]) as m:
        yield m


def _history(
    mongo: Mongo, client: MongoClient[dict[str, Any]], database: str, copy: str
) -> oplog.OpTime:
    """`MESSAGES` messages in `database`, the same in `copy` (a restored base backup),
    then writes on the source only: every message edited (its text replaced by one the
    moderators chose), some deleted, some new. The position before those writes."""
    docs = [{"_id": n, "room": f"room-{n % 7}", "text": f"message {n}"} for n in range(MESSAGES)]
    client[database].messages.insert_many(docs)
    client[copy].messages.insert_many(docs)
    window = oplog_adapter.window(mongo)
    assert window is not None, "the environment's server keeps no oplog"
    messages = client[database].messages
    for n in range(MESSAGES):
        messages.update_one({"_id": n}, {"$set": {"text": "removed by a moderator"}})
    messages.delete_many({"_id": {"$in": list(range(0, MESSAGES, 10))}})
    messages.insert_many([{"_id": MESSAGES + n, "text": f"new {n}"} for n in range(20)])
    return window.last


def _entries(mongo: Mongo, after: oplog.OpTime, database: str) -> list[oplog.Entry]:
    ns = oplog.Namespaces(frozenset({database}))
    return [e for b in oplog_adapter.read(mongo, after, None, ns) for e in oplog.entries(b)]


def _same(client: MongoClient[dict[str, Any]], database: str, copy: str) -> None:
    source = list(client[database].messages.find().sort("_id"))
    assert list(client[copy].messages.find().sort("_id")) == source
    assert not [c for c in client[copy].list_collection_names()
                if c.startswith(oplog_adapter.JOURNAL)], "the journal was left behind"


def test_a_batch_refused_between_its_delete_and_its_insert_is_finished_by_the_next_run(
    mongo: Mongo, mongo_client: MongoClient[dict[str, Any]], database: str
) -> None:
    copy = f"{database}_copy"
    try:
        after = _history(mongo, mongo_client, database, copy)
        entries = _entries(mongo, after, database)
        scope = oplog.Namespaces(frozenset({database}))
        # the server refuses the batch's insert once its delete went through: the edited
        # messages share a text the index wants unique
        mongo_client[copy].messages.create_index("text", unique=True)
        first = oplog_adapter.Applier(mongo, {database: copy}, token="refusedrun1")
        with pytest.raises(DatabaseError, match="BulkWriteError"):
            oplog.replay(entries, scope, first.read, first.write)
        assert mongo_client[copy].messages.count_documents({}) < MESSAGES // 2  # half written
        mongo_client[copy].messages.drop_index("text_1")

        again = oplog_adapter.Applier(mongo, {database: copy}, token="refusedrun1")
        applied = oplog.replay(entries, scope, again.read, again.write)
        assert applied == len(entries)
        _same(mongo_client, database, copy)
    finally:
        mongo_client.drop_database(copy)


CHILD = """
import sys
from chatops.adapters import oplog as oplog_adapter
from chatops.adapters.mongo import Mongo
from chatops.backup import oplog
uri, database, copy, t, i = sys.argv[1:]
scope = oplog.Namespaces(frozenset({database}))
with Mongo(uri) as mongo:
    entries = [e for b in oplog_adapter.read(mongo, oplog.OpTime(int(t), int(i)), None, scope)
               for e in oplog.entries(b)]
    applier = oplog_adapter.Applier(mongo, {database: copy}, token="killedrun01")
    print(oplog.replay(entries, scope, applier.read, applier.write, batch=20), flush=True)
"""


def test_a_replay_sigkilled_mid_batch_again_and_again_ends_as_the_source(
    environment: dict[str, str], mongo: Mongo, mongo_client: MongoClient[dict[str, Any]],
    database: str,
) -> None:
    copy = f"{database}_copy"
    uri = environment["MONGODB_URI"]
    try:
        after = _history(mongo, mongo_client, database, copy)
        args = [sys.executable, "-c", CHILD, uri, database, copy, str(after.t), str(after.i)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        for _ in range(3):  # killed while a batch's journal is there: mid-batch
            child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE)

            def mid_batch(child: subprocess.Popen[bytes] = child) -> bool:
                return child.poll() is not None or any(
                    c.startswith(oplog_adapter.JOURNAL)
                    for c in mongo_client[copy].list_collection_names()
                )

            try:
                wait_for(mid_batch, timeout=120, interval=0.001, what="a batch being written")
            finally:
                child.send_signal(signal.SIGKILL)
                child.communicate()
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) == len(_entries(mongo, after, database))
        _same(mongo_client, database, copy)
    finally:
        mongo_client.drop_database(copy)
