"""Oplog entries beyond documents: which commands replay applies, in what order, and
which it refuses (naming the entry), and the transactions nested in `applyOps`."""

from __future__ import annotations

from typing import Any

import bson
import pytest
from bson.timestamp import Timestamp

from chatops.backup import oplog
from chatops.errors import VerificationFailed

NS = oplog.Namespaces(frozenset({"chat"}))


def entry(n: int, op: str, ns: str, o: dict[str, Any], o2: dict[str, Any] | None = None
          ) -> oplog.Entry:
    doc: dict[str, Any] = {"ts": Timestamp(1_800_000_000, n), "op": op, "ns": ns, "o": o}
    if o2 is not None:
        doc["o2"] = o2
    return oplog.parse(bson.encode(doc))


def shape(steps: list[oplog.Step]) -> list[Any]:
    return [s.name if isinstance(s, oplog.Command) else [e.op for e in s] for s in steps]


def test_commands_end_a_batch_and_keep_the_oplog_order() -> None:
    items = [
        entry(1, "c", "chat.$cmd", {"create": "rooms"}),
        entry(2, "i", "chat.rooms", {"_id": 1}),
        entry(3, "i", "chat.rooms", {"_id": 2}),
        entry(4, "c", "chat.$cmd", {"createIndexes": "rooms", "v": 2, "key": {"name": 1},
                                    "name": "name_1"}),
        entry(5, "u", "chat.rooms", {"$v": 2, "diff": {"u": {"name": "x"}}}, {"_id": 1}),
        entry(6, "c", "chat.$cmd", {"startIndexBuild": "rooms", "indexes": []}),
        entry(7, "c", "chat.$cmd", {"drop": "rooms"}),
        entry(8, "n", "", {"msg": "periodic noop"}),
        entry(9, "i", "other.rooms", {"_id": 9}),
        entry(10, "i", "chat.system.views", {"_id": "v"}),
    ]
    steps = list(oplog.steps(items, NS))
    assert shape(steps) == ["create", ["i", "i"], "createIndexes", ["u"], "drop"]
    index = steps[2]
    assert isinstance(index, oplog.Command)
    assert index.spec == {"createIndexes": "rooms",
                          "indexes": [{"v": 2, "key": {"name": 1}, "name": "name_1"}]}


def test_a_transaction_is_replayed_as_its_operations() -> None:
    txn = entry(1, "c", "admin.$cmd", {"applyOps": [
        {"op": "i", "ns": "chat.messages", "o": {"_id": 1, "text": "a"}},
        {"op": "i", "ns": "other.messages", "o": {"_id": 2}},
        {"op": "d", "ns": "chat.messages", "o": {"_id": 3}},
    ]})
    steps = list(oplog.steps([txn], NS))
    assert shape(steps) == [["i", "d"]]
    assert all(e.ts == txn.ts for e in steps[0])  # type: ignore[union-attr]


@pytest.mark.parametrize(("o", "problem"), [
    ({"collMod": "rooms", "validator": {}}, "collMod"),
    ({"renameCollection": "chat.a", "to": "other.b"}, "crosses databases"),
])
def test_a_command_replay_cannot_apply_is_refused_by_its_timestamp(
    o: dict[str, Any], problem: str
) -> None:
    with pytest.raises(oplog.ReplayError, match=problem) as refused:
        list(oplog.steps([entry(4, "c", "chat.$cmd", o)], NS))
    assert "1800000000.4" in str(refused.value)


def test_until_is_inclusive_and_latest_at_takes_the_whole_second() -> None:
    items = [entry(n, "i", "chat.m", {"_id": n}) for n in (1, 2, 3)]
    assert [e.ts.i for e in oplog.until(items, oplog.OpTime(1_800_000_000, 2))] == [1, 2]
    whole = oplog.latest_at(oplog.OpTime(1_800_000_000, 1).time)
    assert [e.ts.i for e in oplog.until(items, whole)] == [1, 2, 3]


def test_an_update_of_a_missing_document_writes_nothing() -> None:
    items = [entry(1, "u", "chat.m", {"$v": 1, "$set": {"_id": 5, "a": 1}}, {"_id": 5})]
    assert oplog.fold(items, {}) == []


def test_the_replay_is_checked_against_each_documents_last_whole_op() -> None:
    """What a drill and a point-in-time restore check after the replay: the last insert
    or whole-document update of each document, or its delete; a field update leaves it to
    replay; a transaction's ops count one by one; another database's ops not at all."""
    last = oplog.LastStates(NS)
    for e in [
        entry(1, "i", "chat.messages", {"_id": 1, "text": "a"}),
        entry(2, "u", "chat.messages", {"$v": 1, "$set": {"_id": 1, "text": "b"}}, {"_id": 1}),
        entry(3, "i", "chat.messages", {"_id": 2, "text": "c"}),
        entry(4, "d", "chat.messages", {"_id": 2}),
        entry(5, "i", "chat.messages", {"_id": 3, "text": "d"}),
        entry(6, "u", "chat.messages", {"$v": 2, "diff": {"u": {"text": "e"}}}, {"_id": 3}),
        entry(7, "c", "admin.$cmd", {"applyOps": [
            {"op": "i", "ns": "chat.rooms", "o": {"_id": "r", "name": "general"}},
        ]}),
        entry(8, "i", "other.messages", {"_id": 9}),
    ]:
        last.seen(e)
    key = oplog.id_key
    assert last.expected == {
        ("chat", "messages", key(1)): (1, {"_id": 1, "text": "b"}),
        ("chat", "messages", key(2)): (2, None),
        ("chat", "rooms", key("r")): ("r", {"_id": "r", "name": "general"}),
    }
    right = {("chat", "messages", key(1)): {"_id": 1, "text": "b"},
             ("chat", "rooms", key("r")): {"_id": "r", "name": "general"}}
    assert "3 document(s)" in last.check(lambda needed: right)
    stale = {**right, ("chat", "messages", key(1)): {"_id": 1, "text": "a"}}
    with pytest.raises(VerificationFailed, match=r"1 of 3 .* first in chat\.messages"):
        last.check(lambda needed: stale)
    undeleted = {**right, ("chat", "messages", key(2)): {"_id": 2, "text": "c"}}
    with pytest.raises(VerificationFailed, match="1 of 3"):
        last.check(lambda needed: undeleted)
