"""The streaming dump: MongoDB → raw BSON → tar → gzip → S3 multipart, then the manifest.

A consistent backup, as `mongodump --oplog`: the oplog's last position is noted before
the first collection is read; after the last one, the entries written meanwhile (of the
backed-up databases) go into `oplog.bson` at the tarball's root, through the oplog's last
position then, the backup's consistent time. A restore replays them onto the collections
(each read at its own moment) and gets the databases as they were at that time. A server
without an oplog gets the per-collection dump, and a manifest that says `pointInTime:
false`.

Two threads overlap: one reads a collection's raw batches from MongoDB (and counts and
hashes them), the other compresses them into the tar (see `tarstream` for how an entry
of unknown size is framed) and uploads parts. Socket reads, deflate and sha256 all
release the GIL. Memory is bounded by the reader's queue (two batches of at most 16 MiB),
one upload part, and the spool threshold, whatever the database's size.

Failure anywhere aborts the multipart upload and writes no manifest: the tarball never
becomes visible, or is deleted if it did, so nothing half-done is ever listed as a
backup. The manifest is uploaded last, after S3 has confirmed the tarball's size.
"""

from __future__ import annotations

import dataclasses
import datetime
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from chatops import clock
from chatops.adapters import oplog as oplog_adapter
from chatops.adapters import s3
from chatops.adapters.mongo import Mongo
from chatops.backup import layout, oplog, tarstream
from chatops.backup.bsonstream import Tally
from chatops.backup.manifest import (
    CollectionManifest,
    Manifest,
    ManifestSource,
    OplogManifest,
    TarballManifest,
)
from chatops.errors import BackupFailed, ChatopsError, OplogGap

T = TypeVar("T")
READ_AHEAD = 2
"""Batches the reader may hold ahead of the compressor (each at most 16 MiB)."""


@dataclasses.dataclass(frozen=True)
class DumpRequest:
    """One backup to make."""

    prefix: str
    """S3 key prefix, empty or ending in `/`."""
    database: str | None = None
    """One database, or every user database when None."""
    read_preference: str = "secondaryPreferred"
    source: ManifestSource | None = None
    """The ChatBackup making it, recorded in the manifest for retention."""
    backup: str | None = None
    """The backup id the ChatBackup chose for this run; none derives it from the start
    time and the source's uid (`layout.backup_id`)."""
    spool_dir: str | None = None
    """Where a large collection's compressed body waits for its tar header."""
    spool_memory: int = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where a running dump is, reported after every batch."""

    collection: str
    documents: int
    bytes_read: int
    bytes_written: int
    parts_uploaded: int


def dump(
    mongo: Mongo,
    store: s3.Store,
    request: DumpRequest,
    *,
    now: Callable[[], datetime.datetime] = clock.now,
    interrupt: Callable[[], str | None] = lambda: None,
    progress: Callable[[Progress], None] = lambda _: None,
) -> Manifest:
    """Make one backup and return its manifest (already in S3).

    `interrupt` is asked between batches; a reason it returns (say the ChatBackup's
    timeoutSeconds passed) stops the dump as a failure. Raises BackupFailed, with
    nothing left in S3, on any failure."""
    started = now()
    uid = request.source.uid if request.source else None
    backup = request.backup or layout.backup_id(started, uid or "")
    key = layout.tarball_key(request.prefix, backup)
    where = f"backup {backup} (s3://{store.bucket}/{key})"
    upload: s3.MultipartUpload | None = None
    completed = False
    try:
        server_version = mongo.server_version()
        databases = _databases(mongo, request.database)
        expected = sum(mongo.data_size(db) for db in databases)
        owner = owner_metadata(request.source)
        upload = store.upload(key, s3.choose_part_size(expected), owner)
        writer = tarstream.TarGzWriter(upload)
        run = _Run(mongo, writer, upload, request, interrupt, progress)
        start = oplog_adapter.window(mongo)  # before the first read, or no oplog at all
        for db in databases:
            run.database(db, started.timestamp())
        capture = None
        if start is not None:
            scope = oplog.Namespaces(None if request.database is None else frozenset(databases))
            capture = run.capture(start.last, scope, started.timestamp())
        writer.close()
        size = upload.complete()
        completed = True
        stored = store.size(key)
        if stored != writer.size or size != writer.size:
            raise BackupFailed(f"S3 holds {stored} bytes where {writer.size} were written")
        manifest = Manifest(
            id=backup,
            source=request.source,
            server_version=server_version,
            databases=databases,
            started_at=started,
            finished_at=now(),
            collections=run.collections,
            tarball=TarballManifest(key=key, size=writer.size, sha256=writer.sha256),
            point_in_time=capture is not None,
            consistent_time=capture.end.to_manifest() if capture else None,
            oplog=capture.manifest if capture else None,
        )
        store.put(layout.manifest_key(request.prefix, backup), manifest.to_json(),
                  metadata=owner)
        return manifest
    except (ChatopsError, ValueError) as err:
        raise BackupFailed(f"{where} failed: {err}{_clean_up(store, upload, completed)}") from err
    except BaseException:
        _clean_up(store, upload, completed)
        raise


def owner_metadata(source: ManifestSource | None) -> dict[str, str]:
    """The S3 user metadata that says which ChatBackup wrote an object."""
    if source is None:
        return {}
    found = {layout.OWNER_METADATA: source.ref}
    if source.uid:
        found[layout.UID_METADATA] = source.uid
    return found


def _clean_up(store: s3.Store, upload: s3.MultipartUpload | None, completed: bool) -> str:
    """Remove whatever the failed run left in S3; a note for the error if that failed."""
    if upload is None:
        return ""
    try:
        if completed:
            store.delete([upload.key])
        else:
            upload.abort()
    except ChatopsError as err:
        return f"; cleaning up failed too ({err}), retention will remove it"
    return ""


def _databases(mongo: Mongo, database: str | None) -> list[str]:
    present = mongo.database_names()
    if database is None:
        if not present:
            raise BackupFailed("the server has no user database to back up")
        return present
    if database not in present:
        raise BackupFailed(
            f"database {database!r} does not exist on the server (spec.mongodb.database); "
            "an empty backup would look like a good one"
        )
    return [database]


@dataclasses.dataclass(frozen=True)
class Capture:
    """The oplog captured after the collections: through `end`, the consistent time."""

    end: oplog.OpTime
    manifest: OplogManifest


class _Run:
    """The tar entries of one dump, and the manifest lines they add up to."""

    def __init__(
        self,
        mongo: Mongo,
        writer: tarstream.TarGzWriter,
        upload: s3.MultipartUpload,
        request: DumpRequest,
        interrupt: Callable[[], str | None],
        progress: Callable[[Progress], None],
    ) -> None:
        self._mongo, self._writer, self._upload = mongo, writer, upload
        self._request, self._interrupt, self._progress = request, interrupt, progress
        self.collections: list[CollectionManifest] = []

    def database(self, db: str, mtime: float) -> None:
        self._writer.add_directory(db, mtime)
        for info in self._mongo.collections(db):
            if info.type not in ("collection", "view"):
                raise BackupFailed(
                    f"{db}.{info.name} is a {info.type} collection, which chatops cannot "
                    "back up yet; leaving it out would make an incomplete backup"
                )
            indexes = [] if info.type == "view" else self._mongo.indexes(db, info.name)
            meta = layout.CollectionMetadata(
                collection_name=info.name,
                type=info.type,
                options=info.options,
                indexes=indexes,
                uuid=layout.uuid_hex(info.info),
            )
            self._writer.add_file(
                layout.metadata_entry(db, info.name), layout.metadata_json(meta), mtime
            )
            tally = Tally()
            if info.type == "collection":
                self._collection(db, info.name, tally, mtime)
            self.collections.append(
                CollectionManifest(
                    database=db,
                    name=info.name,
                    type=info.type,
                    documents=tally.documents,
                    bson_bytes=tally.bytes,
                    sha256=tally.sha256,
                    content_digest=tally.content_digest,
                    indexes=len(indexes),
                )
            )

    def capture(self, start: oplog.OpTime, scope: oplog.Namespaces, mtime: float) -> Capture:
        """`oplog.bson`: the entries of `scope` after `start` through the oplog's last
        position now, as the server wrote them. The oplog must still hold `start` once
        they are read, or entries were lost while the collections were read."""
        self._check(start)
        end = oplog_adapter.newest(self._mongo) or start
        body = tarstream.Body(self._request.spool_memory, self._request.spool_dir)
        tally = Tally()
        try:
            for batch in oplog_adapter.read(self._mongo, start, end, scope):
                kept = b"".join(e.raw for e in oplog.entries(batch) if scope.includes(e))
                tally.update(kept)
                body.write(kept)
            self._check(start)
            self._writer.add_body(layout.OPLOG_ENTRY, body, mtime)
        finally:
            body.close()
        return Capture(end, OplogManifest(
            start=start.to_manifest(), count=tally.documents, bson_bytes=tally.bytes,
            sha256=tally.sha256,
        ))

    def _check(self, start: oplog.OpTime) -> None:
        try:
            oplog_adapter.check_holds(self._mongo, start)
        except OplogGap as gap:
            raise BackupFailed(
                f"the oplog rolled over while the collections were read ({gap}); the "
                "backup cannot be made consistent: make the oplog larger (it must hold "
                "at least a backup's duration of writes)"
            ) from None

    def _collection(self, db: str, name: str, tally: Tally, mtime: float) -> None:
        body = tarstream.Body(self._request.spool_memory, self._request.spool_dir)
        try:
            batches = self._mongo.raw_batches(db, name, self._request.read_preference)
            for batch in overlapped(_tallied(batches, tally), READ_AHEAD):
                reason = self._interrupt()
                if reason:
                    raise BackupFailed(f"interrupted while reading {db}.{name}: {reason}")
                body.write(batch)
                self._progress(
                    Progress(
                        collection=f"{db}.{name}",
                        documents=tally.documents,
                        bytes_read=tally.bytes,
                        bytes_written=self._writer.size,
                        parts_uploaded=self._upload.parts_uploaded,
                    )
                )
            self._writer.add_body(layout.bson_entry(db, name), body, mtime)
        finally:
            body.close()


def _tallied(batches: Iterator[bytes], tally: Tally) -> Iterator[bytes]:
    for batch in batches:
        tally.update(batch)
        yield batch


_END = object()


def overlapped(source: Iterator[T], depth: int) -> Iterator[T]:
    """The items of `source`, produced on a thread of their own up to `depth` ahead of
    the consumer. An exception in the producer is raised in the consumer; a consumer that
    stops early stops the producer."""
    items: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object, error: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                items.put((item, error), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_END)
        except BaseException as err:  # handed to the consumer, which raises it
            put(_END, err)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="chatops-dump-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
