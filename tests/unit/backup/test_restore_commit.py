"""The restore's commit (`backup/swap.py`) as a property: whatever fails, at whatever
operation, the target either holds exactly what the restore promised or exactly what it
held before; and an operator killed in the middle finishes the restore when it comes back.

The database is a dict: name → ("collection", frozenset of (_id, body)) or ("view",
definition). Failures are injected at the n-th call that changes it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatops.backup import swap

Contents = frozenset[tuple[int, str]]
Thing = tuple[str, Any]


class Broken(Exception):
    """The database refused or the connection dropped."""


class World:
    """A database server whose n-th change fails, and, once `dead`, every call."""

    def __init__(self, databases: dict[str, dict[str, Thing]], fail_at: int | None,
                 crash: bool = False) -> None:
        self.databases = databases
        self.fail_at, self.crash, self.calls, self.dead = fail_at, crash, 0, False

    def _change(self) -> None:
        if self.dead:
            raise Broken("the server is gone")
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            self.dead = self.crash
            raise Broken(f"change {self.calls} failed")

    def names(self, database: str) -> dict[str, Mapping[str, Any] | None]:
        if self.dead:
            raise Broken("the server is gone")
        db = self.databases.setdefault(database, {})
        return {n: (dict(v[1]) if v[0] == "view" else None) for n, v in db.items()}

    def rename(self, database: str, old: str, new: str) -> None:
        self._change()
        db = self.databases[database]
        assert old in db and new not in db, (old, new)  # FerretDB: no dropTarget
        db[new] = db.pop(old)

    def drop(self, database: str, name: str) -> None:
        self._change()
        self.databases[database].pop(name, None)

    def create_view(self, database: str, name: str, options: Mapping[str, Any]) -> None:
        self._change()
        db = self.databases[database]
        assert name not in db
        db[name] = ("view", tuple(sorted(options.items())))

    def merge(self, database: str, source: str, target: str) -> swap.Undo:
        self._change()
        db = self.databases[database]
        have: Contents = db[target][1]
        ids = {i for i, _ in have}
        added = frozenset(d for d in db[source][1] if d[0] not in ids)
        db[target] = ("collection", have | added)

        def undo() -> None:
            self._change()
            db[target] = ("collection", db[target][1] - added)

        return undo


names = st.sampled_from(["messages", "rooms", "users", "a b/c", "x" * 230])
documents = st.frozensets(st.tuples(st.integers(0, 5), st.sampled_from(["old", "new"])),
                          max_size=4)
collections = st.dictionaries(names, documents, max_size=4)
views = st.dictionaries(st.sampled_from(["recent", "busy"]),
                        st.just({"viewOn": "messages", "pipeline": []}), max_size=2)
modes = st.sampled_from(["DropDatabase", "DropCollections", "Merge"])


def _unique(docs: Contents) -> Contents:
    """A collection's documents have distinct _ids."""
    seen: dict[int, tuple[int, str]] = {}
    for doc in sorted(docs):
        seen.setdefault(doc[0], doc)
    return frozenset(seen.values())


def _prepare(before: dict[str, Contents], old_views: dict[str, dict[str, Any]],
             backup: dict[str, Contents], new_views: dict[str, dict[str, Any]],
             mode: str) -> tuple[swap.Plan, dict[str, Thing], dict[str, Thing]]:
    """The plan, the database before (with the loaded temporaries) and after the commit."""
    plan = swap.Plan("chat", "tok", mode, tuple(sorted(backup)), new_views)  # type: ignore[arg-type]
    start: dict[str, Thing] = {n: ("collection", _unique(d)) for n, d in before.items()}
    for n, v in old_views.items():
        start.setdefault(n, ("view", tuple(sorted(v.items()))))
    expected: dict[str, Thing] = {} if mode == "DropDatabase" else dict(start)
    for name, docs in backup.items():
        docs = _unique(docs)
        current = start.get(name)
        if mode == "Merge" and current is not None and current[0] == "collection":
            ids = {i for i, _ in current[1]}
            expected[name] = ("collection", current[1] | {d for d in docs if d[0] not in ids})
        else:
            expected[name] = ("collection", docs)
    for name, view in new_views.items():
        if name in backup:
            continue
        current = start.get(name)
        if mode == "Merge" and current is not None and current[0] == "collection":
            continue
        expected[name] = ("view", tuple(sorted(view.items())))
    loaded = dict(start)
    for name, docs in backup.items():
        loaded[swap.temp_name("tok", name)] = ("collection", _unique(docs))
    return plan, loaded, expected


@settings(max_examples=300, deadline=None)
@given(collections, views, collections, views, modes, st.integers(1, 20) | st.none())
def test_a_failed_commit_leaves_the_target_as_it_was(
    before: dict[str, Contents], old_views: dict[str, dict[str, Any]],
    backup: dict[str, Contents], new_views: dict[str, dict[str, Any]], mode: str,
    fail_at: int | None,
) -> None:
    new_views = {n: v for n, v in new_views.items() if n not in backup}
    plan, loaded, expected = _prepare(before, old_views, backup, new_views, mode)
    original = {n: v for n, v in loaded.items() if not swap.is_ours(n)}
    world = World({"chat": copy.deepcopy(loaded)}, fail_at)
    try:
        left = swap.commit_all(world, [plan])
    except swap.CommitFailed as failed:
        assert failed.undone
        world.fail_at = None
        swap.clean(world, plan)
        assert world.databases["chat"] == original
    else:
        # Past the last rename the restore has succeeded; a replaced collection it could
        # not drop is reported, never silently left.
        db = world.databases["chat"]
        assert {n: v for n, v in db.items() if not swap.is_ours(n)} == expected
        assert sorted(n for n in db if swap.is_ours(n)) == sorted(left)


@settings(max_examples=300, deadline=None)
@given(collections, views, collections, views, modes, st.integers(1, 20))
def test_an_operator_killed_in_the_commit_finishes_it_when_it_comes_back(
    before: dict[str, Contents], old_views: dict[str, dict[str, Any]],
    backup: dict[str, Contents], new_views: dict[str, dict[str, Any]], mode: str,
    crash_at: int,
) -> None:
    new_views = {n: v for n, v in new_views.items() if n not in backup}
    plan, loaded, expected = _prepare(before, old_views, backup, new_views, mode)
    world = World({"chat": copy.deepcopy(loaded)}, crash_at, crash=True)
    with contextlib.suppress(swap.CommitFailed):  # the operator dies: nothing undone
        swap.commit_all(world, [plan])
    # The next operator: what `restore.load` does at the start of the Restore step.
    again = World(world.databases, None)
    if plan.started(again.names("chat")):
        swap.roll_forward(again, plan)
    else:
        swap.clean(again, plan)
        again.databases["chat"].update(
            {k: v for k, v in loaded.items() if swap.is_ours(k)}  # loaded once more
        )
        swap.commit_all(again, [plan])
    db = again.databases["chat"]
    assert db == expected


@pytest.mark.parametrize(
    ("mode", "present", "ops"),
    [
        (
            "DropCollections",
            {"messages": None, "other": None},
            [swap.Rename("messages", swap.replaced_name("t", "messages")),
             swap.Rename(swap.temp_name("t", "messages"), "messages")],
        ),
        (
            "DropDatabase",
            {"messages": None, "other": None},
            [swap.Rename("messages", swap.replaced_name("t", "messages")),
             swap.Rename("other", swap.replaced_name("t", "other")),
             swap.Rename(swap.temp_name("t", "messages"), "messages")],
        ),
        (
            "Merge",
            {"messages": None, "other": None},
            [swap.Merge(swap.temp_name("t", "messages"), "messages")],
        ),
    ],
)
def test_the_commit_renames_aside_then_in(
    mode: swap.Mode, present: dict[str, None], ops: list[swap.Operation]
) -> None:
    plan = swap.Plan("chat", "t", mode, ("messages",))
    now = {**present, swap.temp_name("t", "messages"): None}
    assert swap.operations(plan, now) == ops


def test_temporary_names_are_short_whatever_the_collection() -> None:
    long = "x" * 235
    assert len(swap.temp_name("0123456789ab", long)) < 50
    assert swap.temp_name("t", long) != swap.temp_name("t", long[:-1])
    assert swap.is_ours(swap.replaced_name("t", "a")) and not swap.is_ours("messages")
