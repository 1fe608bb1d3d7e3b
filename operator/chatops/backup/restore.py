"""The restore: fetch and check the tarball, load it beside the data, then commit.

1. `fetch.fetch` reads the manifest beside the tarball and streams the tarball to a
   local file, hashing it on the way, then `contents.inspect` checks every byte and
   every name before the database is touched. A tarball chatops wrote (its S3 owner
   metadata says so) without its manifest is refused, "manifest missing", unless the
   caller accepts an unverified restore; a runbook tarball (no owner) is checked against
   its own files.
2. `load` restores with the mode (DropDatabase, DropCollections, Merge): each collection
   is created as a temporary collection with its options, documents inserted as
   RawBSONDocument (never decoded), secondary indexes built, and, with `verify`, checked
   against the backup; then `swap.commit` puts them in place all or nothing. A failure
   before or during the commit leaves the target as it was (see `swap`).
3. A consistent backup's `oplog.bson` is replayed onto them, through its consistent time
   (`replay_oplog`).

`restore` is the two in a row: the CLI, the benchmark and the tests use it; the
ChatRecovery runs the same two functions as separate steps.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import IO, Any

from bson.raw_bson import RawBSONDocument

from chatops.adapters import oplog as oplog_adapter
from chatops.adapters import s3
from chatops.adapters.mongo import Mongo
from chatops.backup import fetch, inserter, oplog, swap, verify
from chatops.backup.bsonstream import Framer, documents
from chatops.backup.contents import (
    CORRUPT,
    OPLOG,
    READ_CHUNK,
    CollectionContents,
    Contents,
    Downloaded,
    entries,
)
from chatops.errors import ChatopsError, RestoreFailed, VerificationFailed

Mode = swap.Mode
INSERT_BYTES = 8 * 1024 * 1024
INSERT_DOCUMENTS = 10_000
WORKERS = 4
"""Concurrent insert workers against MongoDB (as mongorestore's
`--numInsertionWorkersPerCollection`). Against FerretDB one: on SQLite it takes one
writer at a time and more workers only wait for each other (bench/backup_results.md)."""


class Interrupted(Exception):
    """The caller asked the load to stop (the operator stops, the ChatRecovery is
    deleted); the temporary collections were dropped, the target is as it was."""


@dataclasses.dataclass(frozen=True)
class RestoreRequest:
    mode: Mode = "DropCollections"
    databases: Collection[str] | None = None
    """Restore only these databases of the backup (default: all of them)."""
    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Restore backup database X into database rename[X]."""
    verify: bool = True
    """Check the loaded collections against the backup before the commit (`verify.loaded`:
    what the server acknowledged, the count, a read-back by `_id`, the indexes)."""
    workers: int | None = None
    """Concurrent insert workers; none chooses by the server (`WORKERS`, or 1 on
    FerretDB)."""
    token: str = ""
    """Names this restore's temporary collections; the same across the restarts of one
    restore (a ChatRecovery's uid), so a restarted one finds its own. Random if empty."""


@dataclasses.dataclass(frozen=True)
class CollectionResult:
    database: str
    """Database restored into."""
    name: str
    inserted: int
    duplicates: int
    indexes: int


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    collections: list[CollectionResult]
    verified: bool
    with_manifest: bool
    leftovers: tuple[str, ...] = ()
    """Temporary or replaced collections that could not be dropped afterwards."""
    replayed: int = 0
    """Oplog entries of the backup's `oplog.bson` replayed onto the restored data."""

    @property
    def documents(self) -> int:
        return sum(c.inserted for c in self.collections)

    @property
    def duplicates(self) -> int:
        return sum(c.duplicates for c in self.collections)


def restore(
    store: s3.Store,
    mongo: Mongo,
    key: str,
    request: RestoreRequest,
    directory: str,
    *,
    require_manifest: bool = False,
    allow_unverified: bool = False,
) -> RestoreResult:
    """Fetch, inspect and load the tarball at `key` (see the module's docstring)."""
    downloaded, contents = fetch.fetch(
        store, key, directory, request.databases,
        require_manifest=require_manifest, allow_unverified=allow_unverified,
    )
    try:
        return load(mongo, downloaded, contents, request)
    finally:
        os.unlink(downloaded.path)


# -- the load ---------------------------------------------------------------------------


class _Server:
    """`swap.Server` on the Mongo adapter; counts what each Merge inserted."""

    def __init__(self, mongo: Mongo, metadata: Mapping[tuple[str, str], CollectionContents]):
        self.mongo, self._metadata = mongo, metadata
        self.merged: dict[tuple[str, str], tuple[int, int]] = {}

    def names(self, database: str) -> dict[str, Mapping[str, Any] | None]:
        return self.mongo.namespaces(database)

    def rename(self, database: str, old: str, new: str) -> None:
        self.mongo.rename_collection(database, old, new)

    def drop(self, database: str, name: str) -> None:
        self.mongo.drop_collection(database, name)

    def create_view(self, database: str, name: str, options: Mapping[str, Any]) -> None:
        self.mongo.create_collection(database, name, options)

    def merge(self, database: str, source: str, target: str) -> swap.Undo:
        inserted_ids: list[Any] = []
        duplicates = 0
        for batch in self.mongo.raw_batches(database, source, "primary"):
            docs = [bytes(d) for d in documents(batch)]
            written = self.mongo.insert_raw(database, target, docs)
            refused = set(written.refused)
            duplicates += written.duplicates
            inserted_ids += [
                RawBSONDocument(d)["_id"] for i, d in enumerate(docs) if i not in refused
            ]
        backup = self._metadata.get((database, target))
        specs = backup.metadata.secondary_indexes() if backup and backup.metadata else []
        created = self.mongo.create_indexes(database, target, specs)
        self.merged[(database, target)] = (len(inserted_ids), duplicates)

        def undo() -> None:
            self.mongo.drop_indexes(database, target, created)
            self.mongo.delete_ids(database, target, inserted_ids)

        return undo


def load(
    mongo: Mongo,
    downloaded: Downloaded,
    contents: Contents,
    request: RestoreRequest,
    *,
    interrupt: Callable[[], bool] = lambda: False,
) -> RestoreResult:
    """Restore the inspected tarball into MongoDB, all or nothing (see `swap`)."""
    token = request.token or uuid.uuid4().hex[:12]

    def target(db: str) -> str:
        return request.rename.get(db, db)

    selected = [
        c for c in contents.collections
        if request.databases is None or c.database in request.databases
    ]
    plans = _plans(selected, request, token, target)
    server = _Server(mongo, {(target(c.database), c.name): c for c in selected})
    try:
        present = {p.database: server.names(p.database) for p in plans}
        started = [p for p in plans if p.started(present[p.database])]
        if started:  # an earlier run was killed during its commit: finish it
            leftovers = [n for p in started for n in swap.roll_forward(server, p)]
            plans = [p for p in plans if p not in started]
        else:
            leftovers = []
        for plan in plans:
            swap.clean(server, plan)
            _probe_names(mongo, plan, present[plan.database])
    except ChatopsError as err:
        raise RestoreFailed(f"restore failed: {err}") from err
    try:
        if plans:
            written = _load_temporaries(
                mongo, downloaded, selected, request, token, target, interrupt
            )
            if request.verify:
                keys = [
                    (c, (target(c.database), swap.temp_name(token, c.name)))
                    for c in selected if not c.is_view
                ]
                verify.loaded(mongo, [verify.Loaded(*key, c, written[key]) for c, key in keys])
    except BaseException as err:
        for plan in plans:
            swap.clean(server, plan)
        if isinstance(err, VerificationFailed | Interrupted):
            raise
        if isinstance(err, ChatopsError):
            raise RestoreFailed(f"restore failed: {err}; nothing was restored") from err
        raise
    try:
        leftovers += swap.commit_all(server, plans)
    except swap.CommitFailed as failed:
        for plan in plans:
            swap.clean(server, plan)
        if failed.undone:
            raise RestoreFailed(
                f"restore failed while putting the collections in place: {failed}; every "
                "collection was put back as it was"
            ) from failed.cause
        raise RestoreFailed(
            f"restore failed while putting the collections in place: {failed}, and putting "
            f"them back failed too ({failed.undo_error}): the database is part-restored, "
            "run the restore again"
        ) from failed.cause
    replayed = replay_oplog(mongo, downloaded, contents, request)
    results = []
    for c in selected:
        db = target(c.database)
        indexes = len(c.metadata.secondary_indexes()) if c.metadata and not c.is_view else 0
        done, duplicates = server.merged.get((db, c.name), (c.tally.documents, 0))
        results.append(CollectionResult(db, c.name, done, duplicates, indexes))
    return RestoreResult(
        results, verified=request.verify, with_manifest=contents.manifest is not None,
        leftovers=tuple(leftovers), replayed=replayed,
    )


def replay_oplog(
    mongo: Mongo, downloaded: Downloaded, contents: Contents, request: RestoreRequest
) -> int:
    """Replay the tarball's `oplog.bson` (the writes made while the dump ran) onto the
    restored databases, through the manifest's consistent time: each collection was read
    at its own moment, and the replay brings them all to that one. Idempotent, so a
    restore that stopped during it and runs again ends the same. The entries applied.

    It runs after the commit, on the collections in place: an entry may write a
    collection the dump never saw (created while it ran). A failure here leaves the
    backup's collections in place, not yet brought to one moment; the error says so and
    running the restore again finishes it."""
    if contents.oplog is None or contents.oplog.documents == 0:
        return 0
    manifest = contents.manifest
    last = (
        oplog.OpTime.parse(manifest.consistent_time)
        if manifest is not None and manifest.consistent_time is not None else None
    )
    # the capture holds the backed-up databases only (and any made during the dump)
    wanted = request.databases
    scope = oplog.Namespaces(None if wanted is None else frozenset(wanted))
    applier = oplog_adapter.Applier(mongo, request.rename, request.token)
    try:
        for entry, reader in entries(downloaded.path, oplog=True):
            if entry is OPLOG:
                return oplog.replay(oplog.until(_entries(reader), last), scope,
                                    applier.read, applier.write)
    except (oplog.ReplayError, ChatopsError) as err:
        raise RestoreFailed(
            f"the collections are restored but replaying oplog.bson onto them failed: "
            f"{err}; they are not yet at the backup's consistent time, run the restore "
            "again"
        ) from err
    except CORRUPT as err:
        raise VerificationFailed(f"the downloaded tarball became unreadable: {err}") from err
    return 0


def _entries(reader: IO[bytes]) -> Iterator[oplog.Entry]:
    framer = Framer()
    while chunk := reader.read(READ_CHUNK):
        yield from oplog.entries(framer.feed(chunk))
    framer.close()


def _plans(
    selected: list[CollectionContents], request: RestoreRequest, token: str,
    target: Callable[[str], str],
) -> list[swap.Plan]:
    plans = []
    for db in sorted({target(c.database) for c in selected}):
        mine = [c for c in selected if target(c.database) == db]
        plans.append(swap.Plan(
            database=db, token=token, mode=request.mode,
            collections=tuple(c.name for c in mine if not c.is_view),
            views={c.name: dict(c.metadata.options) for c in mine if c.is_view and c.metadata},
        ))
    return plans


def _probe_names(mongo: Mongo, plan: swap.Plan, present: Mapping[str, object]) -> None:
    """Ask the server whether it accepts each name the commit will create (FerretDB
    allows shorter names than MongoDB): create and drop it, while nothing is changed."""
    for name in (*plan.collections, *plan.views):
        if name in present:
            continue
        try:
            mongo.create_collection(plan.database, name, {})
            mongo.drop_collection(plan.database, name)
        except ChatopsError as err:
            raise RestoreFailed(
                f"{plan.database}.{name[:60]}… cannot be created on the target server "
                f"({err}); nothing was restored"
            ) from err


def _load_temporaries(
    mongo: Mongo, downloaded: Downloaded, selected: list[CollectionContents],
    request: RestoreRequest, token: str, target: Callable[[str], str],
    interrupt: Callable[[], bool],
) -> dict[inserter.Key, inserter.Written]:
    """Every collection into its temporary collection: options, documents (sent by
    `request.workers` concurrent workers), indexes. What the server acknowledged of each."""
    wanted = {(c.database, c.stem): c for c in selected if not c.is_view}
    for each in wanted.values():
        options = each.metadata.options if each.metadata else {}
        mongo.create_collection(target(each.database), swap.temp_name(token, each.name), options)
    workers = request.workers or (1 if mongo.is_ferretdb() else WORKERS)
    loader = inserter.Loader(mongo, workers, interrupt=interrupt)
    try:
        for each in wanted.values():
            loader.open((target(each.database), swap.temp_name(token, each.name)))
        for entry, reader in entries(downloaded.path):
            c = wanted.get((entry.database, entry.stem))
            if entry.kind != "bson" or c is None:
                continue
            key = (target(c.database), swap.temp_name(token, c.name))
            framer, batch, batch_bytes = Framer(), [], 0
            while chunk := reader.read(READ_CHUNK):
                for doc in documents(framer.feed(chunk)):
                    batch.append(doc)
                    batch_bytes += len(doc)
                    if batch_bytes >= INSERT_BYTES or len(batch) >= INSERT_DOCUMENTS:
                        loader.submit(key, batch)
                        batch, batch_bytes = [], 0
            if batch:
                loader.submit(key, batch)
        written = loader.close()
    except CORRUPT as err:  # the file changed on disk since inspect()
        loader.close(raising=False)
        raise VerificationFailed(f"the downloaded tarball became unreadable: {err}") from err
    except inserter.Stopped as err:
        loader.close(raising=False)
        raise Interrupted(f"{err}; nothing was restored") from None
    except BaseException:
        loader.close(raising=False)
        raise
    for c in wanted.values():
        db, temp = target(c.database), swap.temp_name(token, c.name)
        if written[(db, temp)].duplicates:
            raise RestoreFailed(
                f"{db}.{c.name}: {written[(db, temp)].duplicates} document(s) of the backup "
                "share an _id (or a unique key) with another"
            )
    for each in wanted.values():
        if interrupt():
            raise Interrupted("stopped before building the indexes")
        indexes = each.metadata.secondary_indexes() if each.metadata else []
        mongo.create_indexes(target(each.database), swap.temp_name(token, each.name), indexes)
    return written
