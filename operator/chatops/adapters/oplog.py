"""The oplog of a MongoDB deployment, as backups, the archive and replay see it.

- `window`: the first and last position of `local.oplog.rs`, None when the server keeps
  no oplog (a standalone mongod, a FerretDB without the collection);
- `read`: the entries after a position (and up to one), as the server's raw batches:
  an entry is archived byte for byte as the server wrote it;
- `tail`: the entries as they are written, for the continuous archive;
- `Applier`: the writes of `chatops.backup.oplog.replay` applied, batched per collection.

With `mongo.py` the only modules that call pymongo; errors leave as `DatabaseError`,
credentials scrubbed.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import bson
import pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne

from chatops.adapters.mongo import Mongo
from chatops.backup import oplog
from chatops.backup.bsonstream import documents
from chatops.errors import OplogGap

OPLOG_DB, OPLOG_COLLECTION = "local", "oplog.rs"
RAW: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)



@dataclasses.dataclass(frozen=True)
class Window:
    """What the oplog holds now: entries from `first` to `last`, both included."""

    first: oplog.OpTime
    last: oplog.OpTime


def _collection(mongo: Mongo) -> pymongo.collection.Collection[dict[str, Any]]:
    return mongo.client[OPLOG_DB][OPLOG_COLLECTION]


def exists(mongo: Mongo) -> bool:
    """Whether the server keeps an oplog (`local.oplog.rs` exists)."""
    with mongo.errors("listCollections on local"):
        names = mongo.client[OPLOG_DB].list_collection_names(filter={"name": OPLOG_COLLECTION})
    return OPLOG_COLLECTION in names


def window(mongo: Mongo) -> Window | None:
    """The oplog's first and last positions; None when there is no oplog (or it is
    empty, which only a brand-new one is)."""
    if not exists(mongo):  # newest's $natural sort is an error on FerretDB then
        return None
    first, last = oldest(mongo), newest(mongo)
    if first is None or last is None:
        return None
    return Window(first, last)


def newest(mongo: Mongo) -> oplog.OpTime | None:
    """The oplog's last position (None when it is empty or there is none)."""
    with mongo.errors("find on local.oplog.rs"):
        last = _collection(mongo).find_one({}, {"ts": 1}, sort=[("$natural", -1)])
    return None if last is None else oplog.OpTime.of(last["ts"])


def oldest(mongo: Mongo) -> oplog.OpTime | None:
    """The oplog's first position (None when it is empty or there is none: a find on a
    missing collection finds nothing): a forward scan in natural order stopped at one
    entry, with no sort stage. (A `$natural` sort makes FerretDB read and sort the whole
    capped collection, seconds for 10,000 entries; it ignores the hint, and without a
    sort it pushes the limit down.)"""
    with mongo.errors("find on local.oplog.rs"):
        first = _collection(mongo).find_one({}, {"ts": 1}, hint=[("$natural", 1)])
    return None if first is None else oplog.OpTime.of(first["ts"])


def _query(
    after: oplog.OpTime | None, until: oplog.OpTime | None, namespaces: oplog.Namespaces | None,
    *, inclusive: bool = False,
) -> dict[str, Any]:
    ts: dict[str, Any] = {}
    if after is not None:
        ts["$gte" if inclusive else "$gt"] = after.timestamp
    if until is not None:
        ts["$lte"] = until.timestamp
    query: dict[str, Any] = {"ts": ts} if ts else {}
    if namespaces is not None:
        query.update(namespaces.query())
    return query


def read(
    mongo: Mongo,
    after: oplog.OpTime | None,
    until: oplog.OpTime | None = None,
    namespaces: oplog.Namespaces | None = None,
    *,
    inclusive: bool = False,
) -> Iterator[bytes]:
    """The entries with `after < ts <= until` (`after <= ts` when `inclusive`; of
    `namespaces` when given), in oplog order, as the server's raw batches."""
    coll = _collection(mongo)
    query = _query(after, until, namespaces, inclusive=inclusive)
    with mongo.errors("find on local.oplog.rs"):
        cursor = coll.find_raw_batches(query, sort=[("$natural", 1)])
        try:
            for batch in cursor:
                yield cast(bytes, batch)
        finally:
            cursor.close()


def tail(
    mongo: Mongo,
    after: oplog.OpTime,
    namespaces: oplog.Namespaces | None = None,
    *,
    poll_seconds: float = 1.0,
    wait: Callable[[float], bool] | None = None,
) -> Iterator[bytes | None]:
    """Entries after `after` as they are written: raw batches of the entries of
    `namespaces` (all when None; a batch may be empty when every entry it read belonged
    to other databases), and None after each pass that found nothing new, so the caller
    can flush. Between passes it waits `poll_seconds` with `wait` (say a
    `threading.Event.wait`; returning True stops the tail), else `time.sleep`.

    Each pass reads from the last position seen *inclusive*: that entry must still be
    the first the oplog returns, or the oplog rolled past it and OplogGap says from
    where it now starts. (A tailable-await cursor would save the passes, but FerretDB
    1.24 closes one whose first batch is not full and loses entries on getMore; polling
    behaves the same on both.)"""
    position = after
    pause = wait or _sleep
    while True:
        first, fresh = True, False
        for batch in read(mongo, position, None, None, inclusive=True):
            kept = []
            for raw in documents(batch):
                entry = oplog.parse(raw)
                if first:
                    first = False
                    if entry.ts != position:
                        raise OplogGap(
                            f"the oplog no longer holds {position}: its oldest entry is "
                            f"{entry.ts}; the entries between are lost", position, entry.ts,
                        )
                    continue
                position, fresh = entry.ts, True
                if namespaces is None or namespaces.includes(entry):
                    kept.append(bytes(raw))
            if kept or fresh:
                yield b"".join(kept)
        if first:
            now = oldest(mongo)
            raise OplogGap(
                f"the oplog no longer holds {position}"
                + (f": its oldest entry is {now}" if now else ": it has no entries"),
                position, now,
            )
        if not fresh:
            yield None
            if pause(poll_seconds):
                return


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def check_holds(mongo: Mongo, after: oplog.OpTime) -> None:
    """OplogGap if the oplog rolled past `after` (or there is no oplog any more)."""
    first = oldest(mongo)
    if first is None or first > after:
        raise OplogGap(
            f"the oplog no longer holds {after}"
            + (f": its oldest entry is {first}" if first else ": there is no oplog"),
            after, first,
        )


@dataclasses.dataclass
class _Batch:
    """One collection's writes of a batch: the `_id`s deleted, the documents inserted
    after, and those too large for the journal (upserted one by one)."""

    ids: list[Any] = dataclasses.field(default_factory=list)
    docs: list[RawBSONDocument] = dataclasses.field(default_factory=list)
    large: list[RawBSONDocument] = dataclasses.field(default_factory=list)


JOURNAL = "chatops-replay"
"""`<JOURNAL>-<token>`, in a database being replayed into: the documents of the batch
being written there, while it is written (see `Applier`)."""
JOURNALED_BYTES = 16 * 1024 * 1024 - 4096
"""A document larger than this does not fit a journal entry (16 MiB, BSON's limit, with
the entry's own fields): it is replaced by itself, an upsert by `_id`."""


class Applier:
    """Applies replay's writes, commands one by one, a batch's documents per collection
    as one delete of their `_id`s and one insert of those that remain (FerretDB answers
    each upsert of a bulk with a scan of the collection: 30 to 75 ms a document measured
    here, against 0.5 ms for the pair; bench/backup_results.md). The pair is made all or
    nothing by a journal: the documents are first inserted into `<JOURNAL>-<token>` of
    that database, which is dropped once the batch is in; a replay with the same
    `token` that finds it (the operator was killed between the two) writes it first,
    before it reads or writes that database. Journals of other tokens are left over
    from a run a newer restore replaced: dropped unread. `rename` maps a backup's
    database to the one restored into."""

    def __init__(
        self, mongo: Mongo, rename: Mapping[str, str] | None = None, token: str = ""
    ) -> None:
        self._mongo, self._rename = mongo, dict(rename or {})
        self._journal = f"{JOURNAL}-{token or uuid.uuid4().hex[:12]}"
        self._opened: set[str] = set()
        self.documents = 0
        self.commands = 0

    def _db(self, database: str) -> str:
        return self._rename.get(database, database)

    def _open(self, db: str) -> None:
        """Before the first read or write of database `db`: finish this run's batch a
        kill interrupted, drop what older runs left."""
        if db in self._opened:
            return
        self._opened.add(db)
        database = self._mongo.client[db]
        with self._mongo.errors(f"listCollections on {db}"):
            left = database.list_collection_names(filter={"name": {"$regex": f"^{JOURNAL}-"}})
        if self._journal in left:
            pending: dict[str, list[RawBSONDocument]] = {}
            with self._mongo.errors(f"find on {db}.{self._journal}"):
                for entry in database.get_collection(
                    self._journal, codec_options=RAW
                ).find():
                    pending.setdefault(str(entry["c"]), []).append(entry["d"])
            for coll, docs in pending.items():
                self._swap(db, coll, [d["_id"] for d in docs], docs)
        for name in left:
            with self._mongo.errors(f"drop {db}.{name}"):
                database.drop_collection(name)

    def read(self, needed: Mapping[oplog.Key, Any]) -> dict[oplog.Key, dict[str, Any]]:
        """The documents of `needed` that exist, decoded for replay."""
        by_collection: dict[tuple[str, str], list[Any]] = {}
        for (db, coll, _), value in needed.items():
            by_collection.setdefault((db, coll), []).append(value)
        found: dict[oplog.Key, dict[str, Any]] = {}
        for (db, coll), ids in by_collection.items():
            self._open(self._db(db))
            target = self._mongo.client[self._db(db)].get_collection(
                coll, codec_options=oplog.CODEC
            )
            with self._mongo.errors(f"find on {self._db(db)}.{coll}"):
                for start in range(0, len(ids), 1000):
                    for doc in target.find({"_id": {"$in": ids[start : start + 1000]}}):
                        found[(db, coll, oplog.id_key(doc["_id"]))] = doc
        return found

    def write(self, writes: Sequence[oplog.Write]) -> None:
        batches: dict[tuple[str, str], _Batch] = {}
        for w in writes:
            if isinstance(w, oplog.Command):
                self._open(self._db(w.database))
                self._command(w)
                continue
            batch = batches.setdefault((self._db(w.database), w.collection), _Batch())
            if isinstance(w, oplog.Remove):
                batch.ids.append(w.id)
                continue
            doc = RawBSONDocument(oplog.encode(w.document))
            if len(doc.raw) > JOURNALED_BYTES:
                batch.large.append(doc)
            else:
                batch.ids.append(w.document["_id"])
                batch.docs.append(doc)
        for (db, coll), batch in batches.items():
            self._open(db)
            journal = self._mongo.client[db][self._journal]
            if batch.docs:
                with self._mongo.errors(f"insert into {db}.{self._journal}"):
                    journal.insert_many(
                        [RawBSONDocument(bson.encode({"c": coll, "d": d})) for d in batch.docs]
                    )
            self._swap(db, coll, batch.ids, batch.docs)
            if batch.docs:
                with self._mongo.errors(f"drop {db}.{self._journal}"):
                    journal.drop()
            if batch.large:
                with self._mongo.errors(f"replay into {db}.{coll}"):
                    self._mongo.client[db][coll].bulk_write(
                        [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in batch.large],
                        ordered=False,
                    )
            self.documents += len(batch.ids) + len(batch.large)

    def _swap(self, db: str, coll: str, ids: Sequence[Any], docs: Sequence[RawBSONDocument]
              ) -> None:
        """The documents `ids` deleted, then `docs` inserted: idempotent."""
        target = self._mongo.client[db][coll]
        with self._mongo.errors(f"replay into {db}.{coll}"):
            for start in range(0, len(ids), 1000):
                target.delete_many({"_id": {"$in": list(ids[start : start + 1000])}})
            if docs:
                target.insert_many(docs, ordered=False)

    def _command(self, command: oplog.Command) -> None:
        db = self._db(command.database)
        spec = dict(command.spec)
        doing = f"replay of {command.name} on {db} ({command.ts})"
        client = self._mongo.client
        with self._mongo.errors(doing):
            if command.name == "dropDatabase":
                client.drop_database(db)
            elif command.name == "drop":
                client[db].drop_collection(str(spec["drop"]))
            elif command.name == "create":
                name = str(spec.pop("create"))
                if name not in client[db].list_collection_names(filter={"name": name}):
                    client[db].command({"create": name, **spec})
            elif command.name == "renameCollection":
                source = self._renamed(str(spec["renameCollection"]))
                target = self._renamed(str(spec["to"]))
                names = client[db].list_collection_names()
                if source.split(".", 1)[1] in names:
                    client.admin.command({
                        "renameCollection": source, "to": target,
                        "dropTarget": bool(spec.get("dropTarget")),
                    })
            elif command.name == "createIndexes":
                indexes = [
                    {k: v for k, v in i.items() if k not in ("ns", "v")}
                    for i in spec["indexes"]
                ]
                client[db].command({"createIndexes": spec["createIndexes"],
                                    "indexes": indexes})
            elif command.name == "dropIndexes":
                coll = str(spec["dropIndexes"])
                if coll in client[db].list_collection_names(filter={"name": coll}):
                    existing = {i["name"] for i in client[db][coll].list_indexes()}
                    if spec.get("index") in existing or spec.get("index") == "*":
                        client[db].command({"dropIndexes": coll, "index": spec["index"]})
        self.commands += 1

    def _renamed(self, namespace: str) -> str:
        db, _, coll = namespace.partition(".")
        return f"{self._db(db)}.{coll}"
