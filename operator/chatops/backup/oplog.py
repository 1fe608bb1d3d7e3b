"""Oplog entries and their replay, pure: raw entries in, the writes that replay them out.

An entry (`local.oplog.rs`, also each document of a dump's `oplog.bson`) is
`{ts, op, ns, o, o2?, ...}`: `op` is `i` insert (`o` the document), `u` update (`o2`
the `_id`, `o` the update, see `updates`), `d` delete (`o` the `_id`), `c` a command on
`<db>.$cmd`, `n` a no-op. Entries are read as raw BSON and written back byte for byte:
chatops never re-encodes an entry it archives.

Replay turns entries into idempotent writes: every document an entry touches ends as a
whole-document `Put` (replace, inserting if absent) or a `Remove`, computed from the
document as it is before the batch. Applying the same entries again, or restarting an
interrupted replay from its first entry, ends in the same database, because each
entry's effect is: insert → the document; delete → no document; update → the update
applied to the current document, or nothing if there is none (as the oplog applier of
an initial sync does: the document was deleted later, or is inserted again later).

Commands are applied one at a time between batches of document writes: create, drop,
dropDatabase, createIndexes (and commitIndexBuild), dropIndexes, renameCollection
within the backed-up databases, and the entries nested in `applyOps` (transactions).
Index builds being started or aborted change no data and are skipped. Any other command
stops the replay with an error that names the entry: chatops does not guess.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import bson
from bson import CodecOptions, DatetimeConversion
from bson.timestamp import Timestamp

from chatops import clock
from chatops.backup import manifest as manifests
from chatops.backup import updates
from chatops.backup.bsonstream import documents
from chatops.errors import VerificationFailed

CODEC: CodecOptions[dict[str, Any]] = CodecOptions(
    document_class=dict, datetime_conversion=DatetimeConversion.DATETIME_AUTO
)
"""How replay decodes documents: dicts in field order, every BSON date representable."""
SYSTEM_DATABASES = frozenset({"admin", "local", "config"})
BATCH = 1000
"""Entries folded into one batch of writes."""
_SKIPPED_COMMANDS = frozenset({"startIndexBuild", "abortIndexBuild"})


class ReplayError(ValueError):
    """An entry replay cannot apply; the message names it by its timestamp."""


@dataclasses.dataclass(frozen=True, order=True)
class OpTime:
    """An oplog position: seconds since the epoch and the ordinal within that second."""

    t: int
    i: int

    @classmethod
    def of(cls, ts: Timestamp) -> OpTime:
        return cls(ts.time, ts.inc)

    @classmethod
    def parse(cls, value: Mapping[str, Any] | manifests.OplogTime) -> OpTime:
        """From `{t, i}` as the manifests write it."""
        if isinstance(value, manifests.OplogTime):
            return cls(value.t, value.i)
        return cls(int(value["t"]), int(value["i"]))

    def to_manifest(self) -> manifests.OplogTime:
        return manifests.OplogTime(t=self.t, i=self.i, time=clock.rfc3339(self.time))

    @property
    def timestamp(self) -> Timestamp:
        return Timestamp(self.t, self.i)

    @property
    def time(self) -> datetime.datetime:
        """The wall-clock second the position stands for (UTC)."""
        return datetime.datetime.fromtimestamp(self.t, datetime.UTC)

    def to_json(self) -> dict[str, int]:
        return {"t": self.t, "i": self.i}

    def __str__(self) -> str:
        return f"{self.t}.{self.i} ({clock.rfc3339(self.time)})"


def latest_at(at: datetime.datetime) -> OpTime:
    """The last position at or before the wall-clock time `at`: every entry of `at`'s
    second and before, none after (an oplog time has whole seconds)."""
    return OpTime(int(at.timestamp()), 2**32 - 1)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One oplog entry, parsed, with its raw bytes."""

    ts: OpTime
    op: str
    ns: str
    o: Mapping[str, Any]
    o2: Mapping[str, Any] | None
    raw: bytes

    @property
    def database(self) -> str:
        return self.ns.split(".", 1)[0]

    @property
    def collection(self) -> str:
        return self.ns.split(".", 1)[1] if "." in self.ns else ""

    def __str__(self) -> str:
        return f"oplog entry {self.ts} ({self.op} on {self.ns})"


def parse(raw: bytes | memoryview) -> Entry:
    """An entry from its raw BSON; ReplayError if it is not an oplog entry."""
    data = bytes(raw)
    try:
        doc = bson.decode(data, codec_options=CODEC)
    except (bson.errors.BSONError, ValueError) as err:
        raise ReplayError(f"an oplog entry is not BSON: {err}") from None
    ts, op, ns, o = doc.get("ts"), doc.get("op"), doc.get("ns"), doc.get("o")
    if not isinstance(ts, Timestamp) or not isinstance(op, str) or not isinstance(ns, str):
        raise ReplayError(f"not an oplog entry (ts, op and ns are required): {sorted(doc)}")
    if not isinstance(o, Mapping):
        raise ReplayError(f"oplog entry {OpTime.of(ts)} has no document o")
    o2 = doc.get("o2")
    return Entry(OpTime.of(ts), op, ns, o, o2 if isinstance(o2, Mapping) else None, data)


def entries(buffer: bytes | memoryview) -> Iterator[Entry]:
    """The entries of a buffer of whole raw entries (a batch, an `oplog.bson`)."""
    for raw in documents(buffer):
        yield parse(raw)


# -- which entries -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Namespaces:
    """Which entries belong to a backup: those of its databases (None: every user
    database), never admin, local or config, never `system.*` collections."""

    databases: frozenset[str] | None = None

    def database_included(self, database: str) -> bool:
        if database in SYSTEM_DATABASES or not database:
            return False
        return self.databases is None or database in self.databases

    def includes(self, entry: Entry) -> bool:
        if entry.op == "n" or not self.database_included(entry.database):
            return False
        if entry.op == "c":
            return True  # its collection (if any) is in `o`; applyOps are filtered inside
        return not entry.collection.startswith("system.")

    def query(self) -> dict[str, Any]:
        """The same filter as a server-side query on `local.oplog.rs` (fewer entries
        cross the network; `includes` still decides)."""
        if self.databases is None:
            excluded = "|".join(sorted(SYSTEM_DATABASES))
            return {"op": {"$ne": "n"}, "ns": {"$not": {"$regex": f"^({excluded})\\."}}}
        pattern = "|".join(_regex_escape(d) for d in sorted(self.databases))
        return {"op": {"$ne": "n"}, "ns": {"$regex": f"^({pattern})\\."}}


def _regex_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in r".^$*+?()[]{}|\/-" else c for c in text)


def until(items: Iterable[Entry], last: OpTime | None) -> Iterator[Entry]:
    """The entries up to and including `last` (all when None); stops at the first later."""
    for entry in items:
        if last is not None and entry.ts > last:
            return
        yield entry


# -- replay ---------------------------------------------------------------------------


def encode(document: Mapping[str, Any]) -> bytes:
    """A replayed document as BSON, in its field order."""
    return bson.encode(document, codec_options=CODEC)


def id_key(value: Any) -> bytes:
    """A hashable key of an `_id` of any BSON type: its encoding."""
    return bson.encode({"_id": value}, codec_options=CODEC)


@dataclasses.dataclass(frozen=True)
class Put:
    """The whole document, replacing the one of its `_id` or inserted."""

    database: str
    collection: str
    document: updates.Document


@dataclasses.dataclass(frozen=True)
class Remove:
    database: str
    collection: str
    id: Any


@dataclasses.dataclass(frozen=True)
class Command:
    """A command, applied on its own, in order. `name` is one of create, drop,
    dropDatabase, createIndexes, dropIndexes, renameCollection."""

    database: str
    name: str
    spec: Mapping[str, Any]
    ts: OpTime


Write = Put | Remove | Command
Key = tuple[str, str, bytes]
"""(database, collection, id_key): one document."""


def flatten(entry: Entry, namespaces: Namespaces) -> Iterator[Entry]:
    """The entry, or the entries an `applyOps` holds (each with the outer `ts`), that
    belong to `namespaces`."""
    if entry.op == "c" and "applyOps" in entry.o:
        inner = entry.o["applyOps"]
        if not isinstance(inner, list):
            raise ReplayError(f"{entry}: applyOps is not a list")
        for op in inner:
            if not isinstance(op, Mapping):
                raise ReplayError(f"{entry}: an applyOps element is not a document")
            raw = bson.encode({**op, "ts": entry.ts.timestamp}, codec_options=CODEC)
            yield from flatten(parse(raw), namespaces)
        return
    if namespaces.includes(entry):
        yield entry


def _document_key(entry: Entry) -> Key:
    if entry.op == "u":
        source = entry.o2
    elif entry.op in ("i", "d"):
        source = entry.o
    else:
        raise ReplayError(f"{entry}: not a document operation")
    if source is None or "_id" not in source:
        raise ReplayError(f"{entry} has no _id")
    return entry.database, entry.collection, id_key(source["_id"])


def reads(batch: Iterable[Entry]) -> dict[Key, Any]:
    """The documents a batch needs as they are now: those it updates before it inserts
    or deletes them. Maps each key to its `_id`, for the adapter's query."""
    settled: set[Key] = set()
    needed: dict[Key, Any] = {}
    for entry in batch:
        key = _document_key(entry)
        if key in settled:
            continue
        if entry.op == "u":
            assert entry.o2 is not None
            needed[key] = entry.o2["_id"]
        settled.add(key)
    return needed


def fold(
    batch: Iterable[Entry], current: Mapping[Key, updates.Document | None]
) -> list[Put | Remove]:
    """The writes that leave every document of the batch as its entries leave it,
    given the documents `reads` asked for (`current`; a missing key is no document)."""
    state: dict[Key, updates.Document | None] = {}
    for entry in batch:
        key = _document_key(entry)
        if entry.op == "i":
            state[key] = dict(entry.o)
        elif entry.op == "d":
            state[key] = None
        else:
            before = state[key] if key in state else current.get(key)
            if before is None:
                continue  # no document to update: deleted later, or inserted again later
            try:
                state[key] = updates.apply(before, entry.o)
            except updates.UpdateError as err:
                raise ReplayError(f"{entry}: {err}") from None
    writes: list[Put | Remove] = []
    for (db, coll, id_bytes), document in state.items():
        if document is None:
            writes.append(Remove(db, coll, bson.decode(id_bytes, codec_options=CODEC)["_id"]))
        else:
            writes.append(Put(db, coll, document))
    return writes


def command(entry: Entry, namespaces: Namespaces) -> Command | None:
    """The command of a `c` entry, None when it changes no data (an index build being
    started or aborted); ReplayError for a command replay does not know."""
    name = next(iter(entry.o), "")
    spec = dict(entry.o)
    if name in _SKIPPED_COMMANDS:
        return None
    if name == "commitIndexBuild":
        return Command(entry.database, "createIndexes",
                       {"createIndexes": spec["commitIndexBuild"],
                        "indexes": list(spec.get("indexes") or [])}, entry.ts)
    if name == "createIndexes":
        if "indexes" in spec:
            return Command(entry.database, name, spec, entry.ts)
        index = {k: v for k, v in spec.items() if k != "createIndexes"}
        return Command(entry.database, name,
                       {"createIndexes": spec["createIndexes"], "indexes": [index]}, entry.ts)
    if name == "renameCollection":
        source, target = str(spec.get("renameCollection")), str(spec.get("to"))
        if source.split(".", 1)[0] != target.split(".", 1)[0] or not all(
            namespaces.database_included(ns.split(".", 1)[0]) for ns in (source, target)
        ):
            raise ReplayError(
                f"{entry}: renameCollection {source} → {target} crosses databases, which "
                "replay cannot do"
            )
        return Command(entry.database, name, spec, entry.ts)
    if name in ("create", "drop", "dropDatabase", "dropIndexes", "deleteIndexes"):
        return Command(entry.database, "dropIndexes" if name == "deleteIndexes" else name,
                       spec, entry.ts)
    raise ReplayError(
        f"{entry}: the command {name!r} is not one replay applies; restore this backup on a "
        "MongoDB replica set with mongorestore --oplogReplay"
    )


Step = list[Entry] | Command
"""A batch of document entries, or one command."""


def steps(items: Iterable[Entry], namespaces: Namespaces, batch: int = BATCH) -> Iterator[Step]:
    """The entries of `namespaces` as batches of document operations and commands, in
    oplog order: a command ends the batch before it."""
    pending: list[Entry] = []
    for outer in items:
        for entry in flatten(outer, namespaces):
            if entry.op == "c":
                found = command(entry, namespaces)
                if found is None:
                    continue
                if pending:
                    yield pending
                    pending = []
                yield found
            elif entry.op in ("i", "u", "d"):
                pending.append(entry)
                if len(pending) >= batch:
                    yield pending
                    pending = []
            else:
                raise ReplayError(f"{entry}: unknown operation {entry.op!r}")
    if pending:
        yield pending


def replay(
    items: Iterable[Entry],
    namespaces: Namespaces,
    read: Callable[[Mapping[Key, Any]], Mapping[Key, updates.Document]],
    write: Callable[[Sequence[Write]], None],
    *,
    batch: int = BATCH,
) -> int:
    """Replay entries: `read` gets the current documents a batch needs (a dict of those
    that exist), `write` applies a step's writes (one command, or a batch's documents).
    Returns the entries applied."""
    applied = 0
    for step in steps(items, namespaces, batch):
        if isinstance(step, Command):
            write([step])
            applied += 1
            continue
        needed = reads(step)
        write(fold(step, read(needed) if needed else {}))
        applied += len(step)
    return applied


class LastStates:
    """What the replayed ops leave, document by document, to check a replay against:
    the last insert or whole-document update of a document (that document) or its delete
    (no document). A document whose last op names fields only is left out: replay itself
    computes it from the document it read."""

    def __init__(self, namespaces: Namespaces) -> None:
        self.namespaces = namespaces
        self.expected: dict[Key, tuple[Any, dict[str, Any] | None]] = {}
        """(database, collection, id) → (the `_id`, the document, or None once deleted)."""

    def seen(self, entry: Entry) -> None:
        """One entry on its way to the replay (a transaction's: each of its ops)."""
        for one in flatten(entry, self.namespaces):
            if one.op not in ("i", "u", "d"):
                continue
            ident = (one.o2 or {}).get("_id") if one.op == "u" else one.o.get("_id")
            if ident is None:
                continue
            key = (one.database, one.collection, id_key(ident))
            whole = _whole(one)
            if one.op == "d":
                self.expected[key] = (ident, None)
            elif whole is not None:
                self.expected[key] = (ident, whole)
            else:
                self.expected.pop(key, None)

    def tap(self, items: Iterable[Entry]) -> Iterator[Entry]:
        """`items`, each one seen on its way to the replay (one pass over the slices)."""
        for entry in items:
            self.seen(entry)
            yield entry

    def check(self, read: Callable[[Mapping[Key, Any]], Mapping[Key, updates.Document]]) -> str:
        """The expected documents read back (`read` as `replay` takes it) after the
        replay: what was checked, or VerificationFailed naming the first collection that
        differs."""
        if not self.expected:
            return "no document to check: the ops replayed change no whole document"
        found = read({k: v[0] for k, v in self.expected.items()})
        wrong = [
            k for k, (_, doc) in self.expected.items()
            if (doc is None and k in found) or (doc is not None and found.get(k) != doc)
        ]
        if wrong:
            db, coll, _ = wrong[0]
            raise VerificationFailed(
                f"{len(wrong)} of {len(self.expected)} document(s) the replay touched differ "
                f"from their last op, first in {db}.{coll}"
            )
        return f"{len(self.expected)} document(s) the replay touched are as their last op left them"


def _whole(entry: Entry) -> dict[str, Any] | None:
    """The document an insert or a whole-document update leaves; None otherwise."""
    if entry.op == "i":
        return dict(entry.o)
    o = dict(entry.o)
    if not any(k.startswith("$") for k in o):
        return o  # a replacement
    if set(o) <= {"$v", "$set"} and isinstance(o.get("$set"), dict):
        doc = dict(o["$set"])
        if "_id" in doc and (entry.o2 or {}).get("_id") == doc["_id"]:
            return doc  # FerretDB's `{$v: 1, $set: <whole document>}`
    return None
