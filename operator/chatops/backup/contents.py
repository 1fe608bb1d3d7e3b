"""What a downloaded tarball holds, read once and checked before a database is touched.

`inspect` reads every entry: the tarball's sha256 and size against the manifest, gzip's
CRCs, the tar's framing, each `.bson` file's document framing, count, sha256 and
order-free digest against the manifest. Without a manifest (a runbook tarball of the real
mongodump) the CRCs and framing are still checked and the counts and digests read from
the files become what is verified.

Every collection's name comes from `collectionName` in its metadata, never from the file
name (which mongodump shortens past 238 bytes); the file name must be what that name
escapes to. A collection without metadata, with unreadable metadata, or whose name no
MongoDB accepts is refused here, so nothing destructive ever starts on such a tarball.
"""

from __future__ import annotations

import dataclasses
import tarfile
from collections.abc import Collection, Iterator
from typing import IO

from chatops.backup import layout, tarstream
from chatops.backup.bsonstream import Framer, FramingError, Tally
from chatops.backup.manifest import Manifest
from chatops.errors import RestoreFailed, VerificationFailed

READ_CHUNK = 1024 * 1024
CORRUPT: tuple[type[Exception], ...] = (
    tarfile.TarError,
    OSError,
    EOFError,
    FramingError,
    *tarstream.DECOMPRESSION_ERRORS,
)
"""What reading a damaged tarball raises."""
_UNREADABLE: tuple[type[Exception], ...] = (*CORRUPT, ValueError)


@dataclasses.dataclass(frozen=True)
class Downloaded:
    path: str
    size: int
    sha256: str


@dataclasses.dataclass
class CollectionContents:
    """One collection as found in the tarball: `stem` is its file name (escaped, maybe
    shortened), `name` the collection's true name once the metadata is read."""

    database: str
    stem: str
    metadata: layout.CollectionMetadata | None = None
    tally: Tally = dataclasses.field(default_factory=Tally)
    has_bson: bool = False

    @property
    def name(self) -> str:
        if self.metadata is not None:
            return self.metadata.collection_name
        return layout.Entry(self.database, self.stem, "bson").file_name or self.stem

    @property
    def is_view(self) -> bool:
        return self.metadata is not None and self.metadata.is_view


OPLOG = layout.Entry("", layout.OPLOG_ENTRY, "oplog")
"""The entry `entries(..., oplog=True)` yields for the dump's `oplog.bson`."""


@dataclasses.dataclass(frozen=True)
class Contents:
    """What `inspect` found and checked: the collections in tar order, and the oplog
    captured during the dump (its count, bytes and sha256), if the tarball has one."""

    collections: list[CollectionContents]
    manifest: Manifest | None
    oplog: Tally | None = None

    @property
    def databases(self) -> list[str]:
        return sorted({c.database for c in self.collections})

    def by_stem(self) -> dict[tuple[str, str], CollectionContents]:
        return {(c.database, c.stem): c for c in self.collections}


def entries(path: str, *, oplog: bool = False) -> Iterator[tuple[layout.Entry, IO[bytes]]]:
    """The collection entries of a gzip tar, streamed; with `oplog`, its `oplog.bson`
    too (as `OPLOG`)."""
    with tarstream.open_gzip(path) as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            entry = OPLOG if oplog and layout.is_oplog(member.name) else layout.parse_entry(
                member.name
            )
            if entry is None:
                continue
            reader = tar.extractfile(member)
            if reader is not None:
                yield entry, reader


def inspect(
    downloaded: Downloaded, manifest: Manifest | None, databases: Collection[str] | None = None
) -> Contents:
    """Read the whole tarball and check it against `manifest`; VerificationFailed before
    anything touches a database if a single byte is off, RestoreFailed if a collection's
    name or metadata is unusable."""
    if manifest is not None and (
        downloaded.sha256 != manifest.tarball.sha256 or downloaded.size != manifest.tarball.size
    ):
        raise VerificationFailed(
            f"the tarball has sha256 {downloaded.sha256} and {downloaded.size} bytes, its "
            f"manifest says {manifest.tarball.sha256} and {manifest.tarball.size}: it changed "
            "after it was written; nothing was restored"
        )
    found: dict[tuple[str, str], CollectionContents] = {}
    oplog: Tally | None = None
    try:
        for entry, reader in entries(downloaded.path, oplog=True):
            if entry is OPLOG:
                oplog = _tally(reader)
                continue
            if databases is not None and entry.database not in databases:
                continue
            coll = found.setdefault(
                (entry.database, entry.stem), CollectionContents(entry.database, entry.stem)
            )
            if entry.kind == "metadata":
                coll.metadata = layout.parse_metadata(reader.read(), entry.file_name)
                continue
            coll.has_bson = True
            framer = Framer()
            while chunk := reader.read(READ_CHUNK):
                coll.tally.update(framer.feed(chunk))
            framer.close()
    except _UNREADABLE as err:
        raise VerificationFailed(f"the tarball is damaged: {err}; nothing was restored") from err
    contents = Contents(list(found.values()), manifest, oplog)
    _check_names(contents)
    if databases is not None:
        missing = set(databases) - set(contents.databases)
        if missing:
            raise RestoreFailed(
                f"database(s) {', '.join(sorted(missing))} not in the backup "
                f"(it has: {', '.join(contents.databases) or 'none'}); nothing was restored"
            )
    if manifest is not None:
        _check_against(contents, manifest, databases)
        _check_oplog(contents.oplog, manifest)
    return contents


def _tally(reader: IO[bytes]) -> Tally:
    tally, framer = Tally(), Framer()
    while chunk := reader.read(READ_CHUNK):
        tally.update(framer.feed(chunk))
    framer.close()
    return tally


def _check_oplog(found: Tally | None, manifest: Manifest) -> None:
    """The oplog the manifest describes is the one in the tarball, entry for entry."""
    want = manifest.oplog
    if want is None:
        if manifest.point_in_time:
            raise VerificationFailed(
                "the manifest says the backup is point-in-time but describes no oplog; "
                "nothing was restored"
            )
        return
    if found is None:
        raise VerificationFailed(
            f"the tarball has no {want.entry}, which its manifest lists ({want.count} "
            "entries): the backup cannot be brought to its consistent time; nothing was "
            "restored"
        )
    if (found.documents, found.bytes, found.sha256) != (want.count, want.bson_bytes, want.sha256):
        raise VerificationFailed(
            f"{want.entry} has {found.documents} entries and {found.bytes} bytes (sha256 "
            f"{found.sha256[:12]}), the manifest {want.count} and {want.bson_bytes} (sha256 "
            f"{want.sha256[:12]}); nothing was restored"
        )


def _check_names(contents: Contents) -> None:
    """Every collection has metadata naming it, its files are named as that name escapes,
    and the name is one MongoDB accepts."""
    problems = []
    for c in contents.collections:
        where = f"{c.database}/{c.stem[:60]}"
        if c.metadata is None:
            problems.append(f"{where}.bson has no .metadata.json (mongodump writes one)")
            continue
        if c.is_view and c.has_bson:
            problems.append(f"{where} is a view with documents")
        if layout.escape_collection(c.name) != c.stem:
            problems.append(
                f"{where}.metadata.json names collection {c.name[:60]!r}, whose file would "
                f"be {layout.escape_collection(c.name)[:60]!r}"
            )
        invalid = layout.invalid_name(c.database, c.name)
        if invalid:
            problems.append(f"{c.database}: {invalid}")
    if problems:
        raise RestoreFailed(
            "the tarball cannot be restored: " + "; ".join(problems[:5]) + "; nothing was restored"
        )


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
