"""The restore: download, check every byte, then load raw BSON and check the result.

1. `download` streams the tarball to a local file, hashing it on the way (bounded
   memory; disk for one compressed tarball).
2. `inspect` reads it all once *before the database is touched*: the tarball's sha256
   and size against the manifest, gzip's CRCs, the tar's framing, each `.bson` file's
   document framing, count, sha256 and order-free digest against the manifest. Without
   a manifest (a runbook tarball of the real mongodump) the CRCs and framing are still
   checked and the counts and digests read from the files become what is verified.
3. `load` restores with the ChatRecovery's mode (DropDatabase, DropCollections, Merge):
   collections created with their options, documents inserted as RawBSONDocument
   (never decoded), secondary indexes built after the data, views last.
4. With `verify`, the restored database is checked: count, order-free digest of the
   documents and index names per collection (Merge: at least the backup's documents).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tarfile
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Literal

from chatops.adapters import s3
from chatops.adapters.mongo import Mongo
from chatops.backup import layout, tarstream, verify
from chatops.backup import manifest as manifests
from chatops.backup.bsonstream import Framer, FramingError, Tally, documents
from chatops.backup.manifest import Manifest
from chatops.errors import ChatopsError, RestoreFailed, VerificationFailed

Mode = Literal["DropDatabase", "DropCollections", "Merge"]
READ_CHUNK = 1024 * 1024
INSERT_BYTES = 8 * 1024 * 1024
INSERT_DOCUMENTS = 10_000
_CORRUPT: tuple[type[Exception], ...] = (
    tarfile.TarError,
    OSError,
    EOFError,
    FramingError,
    *tarstream.DECOMPRESSION_ERRORS,
)
_UNREADABLE: tuple[type[Exception], ...] = (*_CORRUPT, ValueError)


@dataclasses.dataclass(frozen=True)
class RestoreRequest:
    mode: Mode = "DropCollections"
    databases: Collection[str] | None = None
    """Restore only these databases of the backup (default: all of them)."""
    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Restore backup database X into database rename[X]."""
    verify: bool = True


@dataclasses.dataclass(frozen=True)
class Downloaded:
    path: str
    size: int
    sha256: str


@dataclasses.dataclass
class CollectionContents:
    """One collection as found in the tarball."""

    database: str
    name: str
    metadata: layout.CollectionMetadata | None = None
    tally: Tally = dataclasses.field(default_factory=Tally)
    has_bson: bool = False

    @property
    def is_view(self) -> bool:
        return self.metadata is not None and self.metadata.is_view


@dataclasses.dataclass(frozen=True)
class Contents:
    """What `inspect` found and checked: the collections in tar order."""

    collections: list[CollectionContents]
    manifest: Manifest | None

    @property
    def databases(self) -> list[str]:
        return sorted({c.database for c in self.collections})


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

    @property
    def documents(self) -> int:
        return sum(c.inserted for c in self.collections)

    @property
    def duplicates(self) -> int:
        return sum(c.duplicates for c in self.collections)


def download(store: s3.Store, key: str, directory: str) -> Downloaded:
    """The tarball at `key`, streamed to a file in `directory` and hashed."""
    path = os.path.join(directory, os.path.basename(key) or "backup.tar.gz")
    digest, size = hashlib.sha256(), 0
    with open(path, "wb") as out:
        for chunk in store.stream(key):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return Downloaded(path, size, digest.hexdigest())


def _entries(path: str) -> Iterator[tuple[layout.Entry, IO[bytes]]]:
    """The collection entries of a gzip tar, streamed."""
    with tarstream.open_gzip(path) as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
        for member in tar:
            entry = layout.parse_entry(member.name) if member.isfile() else None
            if entry is None:
                continue
            reader = tar.extractfile(member)
            if reader is not None:
                yield entry, reader


def inspect(
    downloaded: Downloaded, manifest: Manifest | None, databases: Collection[str] | None = None
) -> Contents:
    """Read the whole tarball and check it against `manifest`; VerificationFailed before
    anything touches a database if a single byte is off."""
    if manifest is not None and (
        downloaded.sha256 != manifest.tarball.sha256 or downloaded.size != manifest.tarball.size
    ):
        raise VerificationFailed(
            f"the tarball has sha256 {downloaded.sha256} and {downloaded.size} bytes, its "
            f"manifest says {manifest.tarball.sha256} and {manifest.tarball.size}: it changed "
            "after it was written; nothing was restored"
        )
    found: dict[tuple[str, str], CollectionContents] = {}
    try:
        for entry, reader in _entries(downloaded.path):
            if databases is not None and entry.database not in databases:
                continue
            coll = found.setdefault(
                (entry.database, entry.collection),
                CollectionContents(entry.database, entry.collection),
            )
            if entry.kind == "metadata":
                coll.metadata = layout.parse_metadata(reader.read(), entry.collection)
                continue
            coll.has_bson = True
            framer = Framer()
            while chunk := reader.read(READ_CHUNK):
                coll.tally.update(framer.feed(chunk))
            framer.close()
    except _UNREADABLE as err:
        raise VerificationFailed(f"the tarball is damaged: {err}; nothing was restored") from err
    contents = Contents(list(found.values()), manifest)
    if databases is not None:
        missing = set(databases) - set(contents.databases)
        if missing:
            raise RestoreFailed(
                f"database(s) {', '.join(sorted(missing))} not in the backup "
                f"(it has: {', '.join(contents.databases) or 'none'}); nothing was restored"
            )
    if manifest is not None:
        _check_against(contents, manifest, databases)
    return contents


def _check_against(
    contents: Contents, manifest: Manifest, databases: Collection[str] | None
) -> None:
    found = {(c.database, c.name): c for c in contents.collections}
    problems = []
    for want in manifest.collections:
        if databases is not None and want.database not in databases:
            continue
        got = found.pop((want.database, want.name), None)
        if got is None:
            problems.append(f"{want.database}.{want.name} is missing")
        elif (got.tally.documents, got.tally.bytes, got.tally.sha256) != (
            want.documents,
            want.bson_bytes,
            want.sha256,
        ):
            problems.append(
                f"{want.database}.{want.name} has {got.tally.documents} documents and "
                f"{got.tally.bytes} bytes (sha256 {got.tally.sha256[:12]}), the manifest "
                f"{want.documents} and {want.bson_bytes} (sha256 {want.sha256[:12]})"
            )
    problems += [f"{db}.{name} is not in the manifest" for db, name in found]
    if problems:
        raise VerificationFailed(
            "the tarball does not match its manifest: "
            + "; ".join(problems[:5])
            + "; nothing was restored"
        )


def load(
    mongo: Mongo, downloaded: Downloaded, contents: Contents, request: RestoreRequest
) -> RestoreResult:
    """Restore the inspected tarball into MongoDB and, with `verify`, check the result."""

    def target(db: str) -> str:
        return request.rename.get(db, db)

    selected = [
        c
        for c in contents.collections
        if request.databases is None or c.database in request.databases
    ]
    try:
        if request.mode == "DropDatabase":
            for db in sorted({target(c.database) for c in selected}):
                mongo.drop_database(db)
        for c in selected:
            if request.mode == "DropCollections":
                mongo.drop_collection(target(c.database), c.name)
            if not c.is_view:
                options = c.metadata.options if c.metadata else {}
                mongo.create_collection(target(c.database), c.name, options)
        inserted = _insert_all(mongo, downloaded, request)
        results = []
        for c in selected:
            indexes = c.metadata.secondary_indexes() if c.metadata and not c.is_view else []
            mongo.create_indexes(target(c.database), c.name, indexes)
            if c.is_view and c.metadata is not None:
                mongo.create_collection(target(c.database), c.name, c.metadata.options)
            done, duplicates = inserted.get((c.database, c.name), (0, 0))
            results.append(
                CollectionResult(target(c.database), c.name, done, duplicates, len(indexes))
            )
    except ChatopsError as err:
        raise RestoreFailed(f"restore failed: {err}") from err
    result = RestoreResult(results, verified=False, with_manifest=contents.manifest is not None)
    if request.verify:
        verify.restored(mongo, [c for c in selected if not c.is_view], request.mode, request.rename)
        result = dataclasses.replace(result, verified=True)
    return result


def _insert_all(
    mongo: Mongo, downloaded: Downloaded, request: RestoreRequest
) -> dict[tuple[str, str], tuple[int, int]]:
    """Insert every `.bson` entry's documents in batches; (inserted, duplicates) each."""
    rename = request.rename
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    try:
        for entry, reader in _entries(downloaded.path):
            if entry.kind != "bson":
                continue
            if request.databases is not None and entry.database not in request.databases:
                continue
            db = rename.get(entry.database, entry.database)
            framer, batch, batch_bytes = Framer(), [], 0
            done = duplicates = 0
            while chunk := reader.read(READ_CHUNK):
                for doc in documents(framer.feed(chunk)):
                    batch.append(doc)
                    batch_bytes += len(doc)
                    if batch_bytes >= INSERT_BYTES or len(batch) >= INSERT_DOCUMENTS:
                        written = mongo.insert_raw(db, entry.collection, batch)
                        done, duplicates = done + written.inserted, duplicates + written.duplicates
                        batch, batch_bytes = [], 0
            if batch:
                written = mongo.insert_raw(db, entry.collection, batch)
                done, duplicates = done + written.inserted, duplicates + written.duplicates
            if duplicates and request.mode != "Merge":
                raise RestoreFailed(
                    f"{db}.{entry.collection}: {duplicates} document(s) already existed "
                    f"although mode {request.mode} had dropped the data first"
                )
            counts[(entry.database, entry.collection)] = (done, duplicates)
    except _CORRUPT as err:  # the file changed on disk since inspect()
        raise VerificationFailed(f"the downloaded tarball became unreadable: {err}") from err
    return counts


def restore(
    store: s3.Store,
    mongo: Mongo,
    key: str,
    request: RestoreRequest,
    directory: str,
    *,
    require_manifest: bool = False,
) -> RestoreResult:
    """Download, inspect and load the tarball at `key`, checked against the manifest beside
    it. A tarball without one (made by hand with mongodump) is restored when
    `require_manifest` is false, verified against its own `.bson` files."""
    try:
        raw = store.get(layout.manifest_key_for(key))
    except ChatopsError as err:
        raise RestoreFailed(f"reading the manifest of {key} failed: {err}") from err
    manifest = None
    if raw is not None:
        try:
            manifest = manifests.parse(raw)
        except ValueError as err:
            raise VerificationFailed(f"the manifest of {key} is unreadable: {err}") from err
    elif require_manifest:
        raise RestoreFailed(f"{key} has no manifest: it is an incomplete backup")
    try:
        downloaded = download(store, key, directory)
    except ChatopsError as err:
        raise RestoreFailed(f"downloading {key} failed: {err}") from err
    try:
        contents = inspect(downloaded, manifest, request.databases)
        return load(mongo, downloaded, contents, request)
    finally:
        os.unlink(downloaded.path)
