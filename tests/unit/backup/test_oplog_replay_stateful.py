"""Replay, as a consistent backup and a point-in-time restore use it, against a model.

A state machine makes random chat-message writes on a model database (insert, update,
replace, delete, re-insert) and logs each as the real servers log it: a `$v: 2` diff
(MongoDB ≥ 5.0), `$set`/`$unset` (4.4), FerretDB's whole-document `$set`, or a
replacement. Then, as a dump does on a live database, a *fuzzy* base is taken: every
document as it was at its own moment after the backup's start position. Replaying the
oplog from that position up to a time T onto the base must give the model as it was at
T: the same documents with the same fields, values and types; so must replaying it twice,
and a replay interrupted after any step and restarted from its first entry. Field order is
left out of the comparison: once an entry is applied to a document already past it (which
a fuzzy base makes happen), a field deleted and set again moves to the end, and MongoDB's
own replay promises no more (its idempotency tests compare with
UnorderedFieldsBSONObjComparator). Documents are held by an in-memory server that applies
replay's writes as MongoDB would (replace with upsert, delete by `_id`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import bson
from bson.timestamp import Timestamp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chatops.backup import oplog

DB = "chat"
COLLECTIONS = ("messages", "rooms")
NS = oplog.Namespaces(frozenset({DB}))
Store = dict[str, dict[bytes, dict[str, Any]]]


class Server:
    """Documents per collection; applies replay's writes as MongoDB would."""

    def __init__(self, collections: Store) -> None:
        self.collections = copy.deepcopy(collections)

    def read(self, needed: Mapping[oplog.Key, Any]) -> dict[oplog.Key, dict[str, Any]]:
        out = {}
        for key in needed:
            _, coll, id_key = key
            found = self.collections.get(coll, {}).get(id_key)
            if found is not None:
                out[key] = copy.deepcopy(found)
        return out

    def write(self, writes: Sequence[oplog.Write]) -> None:
        for w in writes:
            if isinstance(w, oplog.Put):
                # what the server stores is the BSON it was sent
                stored = bson.decode(oplog.encode(w.document), codec_options=oplog.CODEC)
                key = oplog.id_key(w.document["_id"])
                self.collections.setdefault(w.collection, {})[key] = stored
            elif isinstance(w, oplog.Remove):
                self.collections.get(w.collection, {}).pop(oplog.id_key(w.id), None)
            else:  # pragma: no cover - this machine logs no commands
                raise AssertionError(w)

    def snapshot(self) -> dict[str, dict[str, bytes]]:
        """Every document's BSON (field order and types included), keyed readably."""
        return {c: {str(bson.decode(k)["_id"]): oplog.encode(d) for k, d in docs.items()}
                for c, docs in self.collections.items() if docs}


def unordered(snapshot: dict[str, dict[str, bytes]]) -> dict[str, dict[str, str]]:
    """The snapshot with each document's fields sorted, types named: a replay applied
    again over documents already past some of its entries ends with the same fields and
    values, but a field deleted and set again moves to the end. MongoDB's own replay
    promises no more (its idempotency tests compare with UnorderedFieldsBSONObjComparator)."""

    def fields(value: Any) -> Any:
        if isinstance(value, Mapping):
            return sorted((f, type(v).__name__, fields(v)) for f, v in value.items())
        if isinstance(value, list):
            return [fields(v) for v in value]
        return repr(value)

    return {c: {k: repr(fields(bson.decode(d))) for k, d in docs.items()}
            for c, docs in snapshot.items()}


def same(a: Any, b: Any) -> bool:
    """Equal as BSON (type included: 0, False and 0.0 differ)."""
    return bson.encode({"v": a}) == bson.encode({"v": b})


def diff(pre: Mapping[str, Any], post: Mapping[str, Any]) -> dict[str, Any]:
    """A `$v: 2` diff that turns `pre` into `post`, as the server's calculator builds
    one: fields updated in place, inserted at the end, deleted, sub-diffs of documents
    and arrays."""
    out: dict[str, Any] = {}
    deletes = {k: False for k in pre if k not in post}
    pre_order = [k for k in pre if k in post]
    post_order = [k for k in post if k in pre]
    updates_, inserts, subs = {}, {}, {}
    in_place = pre_order == post_order
    for k, v in post.items():
        if k not in pre or not in_place:
            if k in pre and same(pre[k], v) and in_place:
                continue
            inserts[k] = v
        elif same(pre[k], v):
            continue
        elif isinstance(pre[k], dict) and isinstance(v, dict):
            subs["s" + k] = diff(pre[k], v)
        elif isinstance(pre[k], list) and isinstance(v, list):
            subs["s" + k] = array_diff(pre[k], v)
        else:
            updates_[k] = v
    if not in_place:  # the server re-inserts every field when the order changed
        deletes = {k: False for k in pre if k not in post}
    for name, section in (("d", deletes), ("u", updates_), ("i", inserts)):
        if section:
            out[name] = section
    out.update(subs)
    return out


def array_diff(pre: list[Any], post: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"a": True}
    if len(post) < len(pre):
        out["l"] = len(post)
    for i, v in enumerate(post):
        if i < len(pre) and same(pre[i], v):
            continue
        if i < len(pre) and isinstance(pre[i], dict) and isinstance(v, dict):
            out[f"s{i}"] = diff(pre[i], v)
        else:
            out[f"u{i}"] = v
    return out


def v1(pre: Mapping[str, Any], post: Mapping[str, Any]) -> dict[str, Any]:
    """`$set`/`$unset` of top-level fields (MongoDB 4.4 logs changed fields so)."""
    sets = {k: v for k, v in post.items() if k not in pre or not same(pre[k], v)}
    unsets = {k: True for k in pre if k not in post}
    entry: dict[str, Any] = {"$v": 1}
    if sets:
        entry["$set"] = sets
    if unsets:
        entry["$unset"] = unsets
    return entry


texts = st.text(alphabet="abcxyz ", max_size=6)
values = st.one_of(st.integers(-5, 5), texts, st.none(), st.booleans())
meta = st.fixed_dictionaries({"edits": st.integers(0, 3)},
                             optional={"by": st.fixed_dictionaries({"name": texts}),
                                       "pinned": st.booleans()})
message = st.fixed_dictionaries(
    {"room": st.integers(0, 3), "text": texts},
    optional={"tags": st.lists(texts, max_size=4), "meta": meta,
              "reactions": st.lists(st.fixed_dictionaries({"emoji": texts,
                                                           "n": st.integers(0, 3)}),
                                    max_size=3)},
)
change = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(["text", "room", "flag"]), values),
    st.tuples(st.just("unset"), st.sampled_from(["text", "tags", "meta", "reactions"]),
              st.none()),
    st.tuples(st.just("meta"), st.just("meta"), meta),
    st.tuples(st.just("meta-scalar"), st.just("meta"), st.integers(0, 3)),
    st.tuples(st.just("edit"), st.just("meta"), st.integers(0, 9)),
    st.tuples(st.just("tags"), st.just("tags"), st.lists(texts, max_size=5)),
    st.tuples(st.just("react"), st.just("reactions"), st.integers(0, 3)),
)
formats = st.sampled_from(["v2", "v1", "ferretdb", "replace"])


class ReplayMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model: Store = {c: {} for c in COLLECTIONS}
        self.history: list[Store] = [copy.deepcopy(self.model)]
        """The model after each entry: history[k] is the state after k entries."""
        self.entries: list[bytes] = []
        self.next_id = 0
        self.deleted: list[tuple[str, Any]] = []

    def log(self, op: str, coll: str, o: Mapping[str, Any],
            o2: Mapping[str, Any] | None = None) -> None:
        n = len(self.entries) + 1
        entry: dict[str, Any] = {"ts": Timestamp(1_800_000_000 + n // 3, n % 3 + 1), "t": 1,
                                 "v": 2, "op": op, "ns": f"{DB}.{coll}", "o": o}
        if o2 is not None:
            entry["o2"] = o2
        self.entries.append(bson.encode(entry))
        self.history.append(copy.deepcopy(self.model))

    def ids(self) -> list[tuple[str, bytes]]:
        return [(c, k) for c in COLLECTIONS for k in self.model[c]]

    @rule(coll=st.sampled_from(COLLECTIONS), doc=message)
    def insert(self, coll: str, doc: dict[str, Any]) -> None:
        self.next_id += 1
        full = {"_id": self.next_id, **doc}
        self.model[coll][oplog.id_key(self.next_id)] = full
        self.log("i", coll, full)

    @precondition(lambda self: self.deleted)
    @rule(pick=st.integers(0, 1000), doc=message)
    def reinsert(self, pick: int, doc: dict[str, Any]) -> None:
        coll, _id = self.deleted.pop(pick % len(self.deleted))
        full = {"_id": _id, **doc}
        self.model[coll][oplog.id_key(_id)] = full
        self.log("i", coll, full)

    @precondition(lambda self: self.ids())
    @rule(pick=st.integers(0, 1000), changes=st.lists(change, min_size=1, max_size=3),
          fmt=formats)
    def update(self, pick: int, changes: list[tuple[str, str, Any]], fmt: str) -> None:
        coll, key = self.ids()[pick % len(self.ids())]
        pre = self.model[coll][key]
        post = copy.deepcopy(pre)
        for kind, field, value in changes:
            if kind in ("set", "meta", "meta-scalar", "tags"):
                post[field] = value  # $set: in place if present, else at the end
            elif kind == "unset":
                post.pop(field, None)
            elif kind == "edit" and isinstance(post.get("meta"), dict):
                post["meta"]["edits"] = value
            elif kind == "react" and isinstance(post.get("reactions"), list) and post["reactions"]:
                post["reactions"][value % len(post["reactions"])]["n"] += 1
        if bson.encode(pre) == bson.encode(post):
            return
        self.model[coll][key] = post
        o2 = {"_id": post["_id"]}
        if fmt == "v2":
            self.log("u", coll, {"$v": 2, "diff": diff(pre, post)}, o2)
        elif fmt == "v1" and list(k for k in pre if k in post) == list(k for k in post if k in pre):
            self.log("u", coll, v1(pre, post), o2)
        elif fmt == "ferretdb":
            self.log("u", coll, {"$v": 1, "$set": post}, o2)
        else:
            self.log("u", coll, post, o2)

    @precondition(lambda self: self.ids())
    @rule(pick=st.integers(0, 1000))
    def delete(self, pick: int) -> None:
        coll, key = self.ids()[pick % len(self.ids())]
        doc = self.model[coll].pop(key)
        self.deleted.append((coll, doc["_id"]))
        self.log("d", coll, {"_id": doc["_id"]})

    # -- the check: fuzzy base + replay == the model at T ---------------------------

    def fuzzy_base(self, start: int, end: int, moments: list[int]) -> Store:
        """Every document as it was at its own moment in [start, end] (None: absent)."""
        keys = {(c, k) for state in self.history[start : end + 1] for c in COLLECTIONS
                for k in state[c]}
        base: Store = {c: {} for c in COLLECTIONS}
        for n, (c, k) in enumerate(sorted(keys)):
            at = start + moments[n % len(moments)] % (end - start + 1)
            found = self.history[at][c].get(k)
            if found is not None:
                base[c][k] = copy.deepcopy(found)
        return base

    @invariant()
    def replay_gives_the_model_at_any_time(self) -> None:
        total = len(self.entries)
        if total == 0:
            return
        # deterministic choices derived from the size keep the invariant reproducible
        for start, end in {(0, total), (total // 3, total), (total // 2, (3 * total) // 4)}:
            moments = [(7 * i + total) for i in range(1, 12)]
            base = self.fuzzy_base(start, end, moments)
            expected = Server(self.history[end]).snapshot()
            last = oplog.parse(self.entries[end - 1]).ts if end else oplog.OpTime(0, 0)
            # the entries after the start position, up to T (inclusive)
            log = [oplog.parse(e) for e in self.entries[start:]]

            server = Server(base)
            oplog.replay(oplog.until(log, last), NS, server.read, server.write, batch=4)
            assert unordered(server.snapshot()) == unordered(expected)
            oplog.replay(oplog.until(log, last), NS, server.read, server.write, batch=3)
            assert unordered(server.snapshot()) == unordered(expected), "a second replay differs"

            interrupted = Server(base)
            for i, step in enumerate(oplog.steps(oplog.until(log, last), NS, batch=2)):
                if i >= total % 5:
                    break
                assert isinstance(step, list)
                interrupted.write(oplog.fold(step, interrupted.read(oplog.reads(step))))
            oplog.replay(oplog.until(log, last), NS, interrupted.read, interrupted.write)
            assert unordered(interrupted.snapshot()) == unordered(expected), "a restart differs"


ReplayMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_replay_matches_the_model = ReplayMachine.TestCase
