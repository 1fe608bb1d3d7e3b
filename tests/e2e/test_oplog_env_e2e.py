"""The environment's oplog, as a consistent backup and the point-in-time archive use it:
FerretDB reports its replica set, records every write of a chat database into
`local.oplog.rs`, the oplog rolls over at the size the env file states, a tail notices
when it has, and replaying the recorded entries rebuilds the collection exactly."""

from __future__ import annotations

import os
from typing import Any

import bson
import pytest
from pymongo import MongoClient

from chatops.adapters import oplog as oplog_adapter
from chatops.adapters.mongo import Mongo
from chatops.backup import oplog
from chatops.errors import OplogGap

LOCAL = "MONGODB_OPLOG_MAX_DOCS" in os.environ or "MONGODB_URI" not in os.environ


@pytest.fixture
def mongo(environment: dict[str, str]) -> Any:
    with Mongo(environment["MONGODB_URI"]) as m:
        yield m


def entries_after(mongo: Mongo, after: oplog.OpTime, database: str) -> list[oplog.Entry]:
    ns = oplog.Namespaces(frozenset({database}))
    return [e for b in oplog_adapter.read(mongo, after, None, ns) for e in oplog.entries(b)]


def test_the_server_is_a_replica_set_member_with_an_oplog(
    mongo: Mongo, mongo_client: MongoClient[dict[str, Any]], database: str
) -> None:
    assert mongo.identity().startswith("replicaset/")
    before = oplog_adapter.window(mongo)
    assert before is not None, "the environment's server keeps no oplog"
    messages = mongo_client[database]["messages"]
    messages.insert_one({"_id": 1, "room": "general", "text": "hi", "draft": True})
    messages.update_one({"_id": 1}, {"$set": {"text": "hi all"}, "$unset": {"draft": ""}})
    messages.insert_one({"_id": 2, "room": "general", "text": "bye"})
    messages.delete_one({"_id": 2})

    found = entries_after(mongo, before.last, database)
    assert [(e.op, e.ns) for e in found] == [
        ("i", f"{database}.messages"), ("u", f"{database}.messages"),
        ("i", f"{database}.messages"), ("d", f"{database}.messages"),
    ]
    assert [e.ts for e in found] == sorted(e.ts for e in found)
    after = oplog_adapter.window(mongo)
    assert after is not None and after.last == found[-1].ts

    # replayed into another database, the entries give the collection as it is
    copy = f"{database}_replayed"
    applier = oplog_adapter.Applier(mongo, {database: copy})
    try:
        applied = oplog.replay(found, oplog.Namespaces(frozenset({database})),
                               applier.read, applier.write)
        assert applied == 4
        assert list(mongo_client[copy]["messages"].find()) == list(messages.find())
        assert bson.encode(mongo_client[copy]["messages"].find_one()) == bson.encode(
            messages.find_one()
        )
    finally:
        mongo_client.drop_database(copy)


@pytest.mark.skipif(not LOCAL, reason="rolls the oplog over: only on the environment's own")
def test_the_oplog_rolls_over_and_a_tail_says_so(
    mongo: Mongo, mongo_client: MongoClient[dict[str, Any]], database: str,
    environment: dict[str, str],
) -> None:
    limit = int(environment["MONGODB_OPLOG_MAX_DOCS"])
    start = oplog_adapter.window(mongo)
    assert start is not None
    tail = oplog_adapter.tail(mongo, start.last, oplog.Namespaces(frozenset({database})),
                              poll_seconds=0.2)
    assert next(tail) is None  # nothing new yet
    mongo_client[database]["messages"].insert_many(
        [{"_id": n, "text": "x" * 20} for n in range(limit + limit // 2)]
    )

    def rolled() -> bool:
        now = oplog_adapter.window(mongo)
        return now is not None and now.first > start.last

    from support import wait_for

    wait_for(rolled, timeout=120, what="the oplog to roll past the start position")
    with pytest.raises(OplogGap) as gap:
        for _ in tail:
            pass
    assert gap.value.after == start.last
    assert isinstance(gap.value.oldest, oplog.OpTime) and gap.value.oldest > start.last
    with pytest.raises(OplogGap):
        oplog_adapter.check_holds(mongo, start.last)
