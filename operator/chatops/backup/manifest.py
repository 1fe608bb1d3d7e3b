"""The manifest: what a backup holds, written last so its presence means "complete".

`<prefix>mongodb_<id>.manifest.json` beside the tarball lets a restore check every byte
before it touches a database (the tarball's sha256 and size), and check the restored
database afterwards (per collection: document count, sha256 of the `.bson` bytes, and an
order-free digest of the documents). It holds names and numbers only: never the
connection string, never a credential.
"""

from __future__ import annotations

import datetime
from typing import Literal

import pydantic
from pydantic import Field

from chatops.api.common import Model


class CollectionManifest(Model):
    """One collection (or view) in the backup."""

    database: str
    """Database it came from."""
    name: str
    """Collection name."""
    type: str = "collection"
    """collection or view (a view has metadata only)."""
    documents: int = Field(ge=0)
    """Documents written to its `.bson`."""
    bson_bytes: int = Field(ge=0)
    """Size of its `.bson` entry."""
    sha256: str
    """SHA-256 of its `.bson` bytes, in the order they are in the tar."""
    content_digest: str
    """Order-free digest of its documents (see `bsonstream.DocumentDigest`), so a restored
    collection can be compared whatever order the server returns it in."""
    indexes: int = Field(default=0, ge=0)
    """Indexes in its metadata, `_id_` included."""


class TarballManifest(Model):
    """The tarball as uploaded."""

    key: str
    """Its S3 key."""
    size: int = Field(ge=0)
    """Bytes."""
    sha256: str
    """SHA-256 of every byte, checked before a restore touches a database."""
    compression: Literal["gzip"] = "gzip"
    """How the tar is compressed (gzip members, readable by gunzip and tar -xz)."""


class OplogTime(Model):
    """An oplog position: the server's Timestamp `{t, i}`, and its second as RFC 3339."""

    t: int = Field(ge=0)
    """Seconds since the epoch."""
    i: int = Field(ge=0)
    """Ordinal within that second."""
    time: str
    """`t` as RFC 3339 (UTC), for humans and `chatops restore-points`."""


class OplogManifest(Model):
    """The oplog captured during the dump, `oplog.bson` at the tarball's root (the layout
    `mongodump --oplog` writes): every entry of the backed-up databases after `start`
    up to the consistent time, raw BSON as the server wrote it."""

    entry: str = "oplog.bson"
    """Its tar entry."""
    start: OplogTime
    """The oplog's last position noted before the first collection was read; the capture
    holds the entries after it."""
    count: int = Field(ge=0)
    """Entries in `oplog.bson`."""
    bson_bytes: int = Field(ge=0)
    """Its size."""
    sha256: str
    """SHA-256 of its bytes."""


class ManifestSource(Model):
    """The ChatBackup that made the backup: retention only ever counts its own."""

    namespace: str
    name: str
    uid: str | None = None

    @property
    def ref(self) -> str:
        """`namespace/name`, also written on the tarball as S3 user metadata, so an
        upload that never got its manifest can still be told apart from a human's file."""
        return f"{self.namespace}/{self.name}"


class Manifest(Model):
    """A complete, verified backup."""

    format: Literal["chatops.dev/backup-manifest/v1"] = "chatops.dev/backup-manifest/v1"
    """Manifest format, for readers of later versions."""
    id: str
    """Backup id (YYYYmmdd_HHMMSS, UTC start time)."""
    source: ManifestSource | None = None
    """The ChatBackup that made it; none for a backup made outside a ChatBackup."""
    server_version: str
    """MongoDB version the server reported (FerretDB reports the one it emulates)."""
    databases: list[str]
    """Databases dumped (names only, never the connection string)."""
    started_at: datetime.datetime
    """When the dump started."""
    finished_at: datetime.datetime
    """When the tarball was complete in S3."""
    collections: list[CollectionManifest]
    """Every collection and view, in tar order."""
    tarball: TarballManifest
    """The uploaded tarball."""
    point_in_time: bool = False
    """Whether the backup is consistent: its collections, restored and replayed with
    `oplog.bson`, are the databases as they were at `consistentTime`. False when the
    server keeps no oplog: each collection is then as it was when it was read."""
    consistent_time: OplogTime | None = None
    """The moment the backup stands for: the oplog's last position when the dump ended,
    which the capture read through (entries of other databases are read past and left
    out). A point-in-time archive continues from here."""
    oplog: OplogManifest | None = None
    """The oplog capture, when `pointInTime`."""

    @property
    def documents(self) -> int:
        """Documents in the whole backup."""
        return sum(c.documents for c in self.collections)

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def collection(self, database: str, name: str) -> CollectionManifest | None:
        for c in self.collections:
            if c.database == database and c.name == name:
                return c
        return None

    def to_json(self) -> bytes:
        """The manifest file: camelCase JSON, indented so a human can read it in S3."""
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()


def parse(data: bytes) -> Manifest:
    """A manifest file read back; ValueError (never a pydantic error) if it is not one."""
    try:
        return Manifest.model_validate_json(data)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ValueError(f"not a chatops backup manifest: {where}: {first['msg']}") from None
