"""Names of things in a backup: ids, S3 keys, and the mongodump directory layout.

A backup is the runbook's own artifact, so a human can still restore it by hand:

    <prefix>mongodb_YYYYmmdd_HHMMSS_<run>.tar.gz          gzip tar of a mongodump directory
    <prefix>mongodb_YYYYmmdd_HHMMSS_<run>.manifest.json   written last; without it, no backup

The id is the runbook's UTC start time plus `<run>`, the first 8 characters of the
ChatBackup's uid: two ChatBackups writing into one prefix in the same second never share
a key (and the S3 writes are conditional besides, so nothing is ever overwritten). Keys
without `<run>` (the runbook's own, or chatops before 0.3) are read the same way.

Inside the tar, as `mongodump --out DIR` writes it:

    <db>/<coll>.bson             the documents, raw BSON, one after the other
    <db>/<coll>.metadata.json    canonical Extended JSON v2: options, indexes, uuid,
                                 collectionName, type (a view has no .bson)

Collection names are escaped as mongo-tools does (Go's `url.QueryEscape`), and a name
whose escaped form passes 238 bytes is shortened exactly as mongodump shortens it (its
first 208 escaped bytes, `%24`, then the unpadded URL-safe base64 of the name's SHA-1), so
that `<name>.metadata.json.gz` stays within the 255-byte file-name limit of every file
system: `tar -xzf` extracts it and the stock mongorestore reads the true name from the
metadata's `collectionName`, as we do. Tarballs made by hand (`tar czf … -C DIR .`)
name entries `./<db>/…`, and some put a folder on top (`dump/<db>/…`): `parse_entry`
reads all of these. Everything here is pure.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import re
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from bson import json_util
from bson.binary import Binary

ID_FORMAT = "%Y%m%d_%H%M%S"
ID_PATTERN = r"[0-9]{8}_[0-9]{6}(?:_[0-9a-z]{1,16})?"
RUN_LENGTH = 8
"""Characters of the ChatBackup's uid in its backup ids."""
TARBALL_SUFFIX = ".tar.gz"
MANIFEST_SUFFIX = ".manifest.json"
_KEY = re.compile(rf"^mongodb_(?P<id>{ID_PATTERN})(?P<suffix>\.tar\.gz|\.manifest\.json)$")

OWNER_METADATA = "chatops-backup"
"""S3 user metadata on a tarball: the ChatBackup (`namespace/name`) that wrote it, for
humans."""
UID_METADATA = "chatops-backup-uid"
"""S3 user metadata on a tarball: the uid of the ChatBackup that wrote it. Ownership is by
uid: a tarball without it (the runbook's own backups, a ChatBackup of the same name in
another cluster) is never deleted by retention nor adopted."""


def backup_id(at: datetime.datetime, uid: str = "") -> str:
    """The id of a backup started at `at` by the ChatBackup of this uid: its UTC time to
    the second and the uid's first characters, `20261126_031500_3f9a2c1b`."""
    stamp = at.astimezone(datetime.UTC).strftime(ID_FORMAT)
    run = re.sub(r"[^0-9a-z]", "", uid.lower())[:RUN_LENGTH]
    return f"{stamp}_{run}" if run else stamp


def id_time(backup: str) -> datetime.datetime:
    """When the backup with this id started (UTC); ValueError if it is not an id."""
    if not re.fullmatch(ID_PATTERN, backup):
        raise ValueError(f"not a backup id: {backup!r} (expected YYYYmmdd_HHMMSS[_run])")
    stamp = backup[: len("YYYYmmdd_HHMMSS")]
    return datetime.datetime.strptime(stamp, ID_FORMAT).replace(tzinfo=datetime.UTC)


def tarball_key(prefix: str, backup: str) -> str:
    """S3 key of the backup's tarball."""
    return f"{prefix}mongodb_{backup}{TARBALL_SUFFIX}"


def manifest_key(prefix: str, backup: str) -> str:
    """S3 key of the backup's manifest."""
    return f"{prefix}mongodb_{backup}{MANIFEST_SUFFIX}"


def manifest_key_for(tarball: str) -> str:
    """The manifest's key beside any tarball key (also one not named by us)."""
    return tarball.removesuffix(TARBALL_SUFFIX) + MANIFEST_SUFFIX


@dataclasses.dataclass(frozen=True)
class ObjectName:
    """What an S3 key under a backup prefix is."""

    backup: str
    kind: Literal["tarball", "manifest"]


def parse_key(prefix: str, key: str) -> ObjectName | None:
    """The backup id and kind of a key directly under `prefix`; None for any other key
    (a sub-folder, a file a human left there)."""
    if not key.startswith(prefix):
        return None
    match = _KEY.match(key[len(prefix) :])
    if match is None:
        return None
    kind: Literal["tarball", "manifest"] = (
        "tarball" if match["suffix"] == TARBALL_SUFFIX else "manifest"
    )
    return ObjectName(match["id"], kind)


# -- inside the tar ---------------------------------------------------------------------


OPLOG_ENTRY = "oplog.bson"
"""The oplog captured during the dump, at the root of the tar (mongodump --oplog's place)."""


def is_oplog(name: str) -> bool:
    """Whether a tar entry is the dump's oplog: `oplog.bson` at its root (or `./`).
    (Under a folder it cannot be told from a collection `oplog` of a database.)"""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return parts == [OPLOG_ENTRY]


ESCAPED_LIMIT = 238
"""Longest escaped name mongodump writes as it is: 255 bytes less `.metadata.json.gz`."""
_KEPT = 208
"""Escaped bytes a shortened name keeps, before `%24` and the 27-character hash."""
NAMESPACE_LIMIT = 255
"""MongoDB's limit on `<db>.<collection>` in bytes (4.4 and later)."""


def escape_collection(name: str) -> str:
    """A collection name as a file name, byte for byte as mongodump writes it: Go's
    url.QueryEscape, shortened past 238 bytes (mongo-tools `mongodump/prepare.go`)."""
    escaped = urllib.parse.quote_plus(name, safe="")
    if len(escaped) <= ESCAPED_LIMIT:
        return escaped
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).digest()
    return escaped[:_KEPT] + "%24" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def is_shortened(stem: str) -> bool:
    """Whether a file stem is a shortened name, whose true name only the metadata has
    (mongorestore's own test: `%24` in a stem of exactly 238 bytes)."""
    return "%24" in stem and len(stem) == ESCAPED_LIMIT


def bson_entry(database: str, collection: str) -> str:
    """Tar entry of a collection's documents."""
    return f"{database}/{escape_collection(collection)}.bson"


def metadata_entry(database: str, collection: str) -> str:
    """Tar entry of a collection's metadata."""
    return f"{database}/{escape_collection(collection)}.metadata.json"


@dataclasses.dataclass(frozen=True)
class Entry:
    """A tar entry that belongs to a collection. `stem` is the file name without its
    extension, still escaped: the key that pairs a `.bson` with its `.metadata.json`."""

    database: str
    stem: str
    kind: Literal["bson", "metadata", "oplog"]

    @property
    def file_name(self) -> str | None:
        """The collection's name as the file name tells it; None when it was shortened."""
        return None if is_shortened(self.stem) else urllib.parse.unquote_plus(self.stem)


def parse_entry(name: str) -> Entry | None:
    """The collection a tar entry holds, whatever sits above `<db>/` (`./`, `dump/`).
    None for anything else: directories, the oplog, gzipped files, system collections
    and mongodump's `$admin.system.users` (users and roles are not the chat app's)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if len(parts) < 2:
        return None
    database, file = parts[-2], parts[-1]
    kind: Literal["bson", "metadata"]
    if file.endswith(".metadata.json"):
        kind, stem = "metadata", file.removesuffix(".metadata.json")
    elif file.endswith(".bson"):
        kind, stem = "bson", file.removesuffix(".bson")
    else:
        return None
    shown = urllib.parse.unquote_plus(stem)
    if not stem or shown.startswith(("system.", "$")) or database in ("local", "config"):
        return None
    return Entry(database, stem, kind)


def invalid_name(database: str, collection: str) -> str | None:
    """Why MongoDB would refuse `collection` in `database`, or None. The server is asked
    too (a FerretDB allows shorter names); this catches what every server refuses."""
    if not collection:
        return "an empty collection name"
    if "$" in collection or "\0" in collection:
        return f"collection name {collection!r} has '$' or a NUL"
    if collection.startswith(".") or collection.startswith("system."):
        return f"collection name {collection!r} starts with '.' or 'system.'"
    size = len(f"{database}.{collection}".encode())
    if size > NAMESPACE_LIMIT:
        return (
            f"namespace {database}.{collection[:40]}… is {size} bytes, over MongoDB's "
            f"{NAMESPACE_LIMIT}"
        )
    return None


@dataclasses.dataclass(frozen=True)
class CollectionMetadata:
    """What `<coll>.metadata.json` says: enough to recreate the collection and its indexes."""

    collection_name: str
    type: str = "collection"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    indexes: Sequence[Mapping[str, Any]] = ()
    uuid: str | None = None

    @property
    def is_view(self) -> bool:
        return self.type == "view"

    def secondary_indexes(self) -> list[dict[str, Any]]:
        """Index specs to create after the documents: all but `_id_`, without `ns`
        (refused since MongoDB 4.4) and `v` (the server's default; FerretDB refuses it)."""
        return [
            {k: v for k, v in index.items() if k not in ("ns", "v")}
            for index in self.indexes
            if index.get("name") != "_id_"
        ]


def metadata_json(meta: CollectionMetadata) -> bytes:
    """The metadata file, byte for byte as mongodump writes it: canonical Extended JSON
    v2, no spaces, keys in mongo-tools' order (options if any, indexes, uuid if known,
    collectionName, type)."""
    doc: dict[str, Any] = {}
    if meta.options:
        doc["options"] = dict(meta.options)
    doc["indexes"] = [dict(index) for index in meta.indexes]
    if meta.uuid:
        doc["uuid"] = meta.uuid
    doc["collectionName"] = meta.collection_name
    if meta.type:
        doc["type"] = meta.type
    text = json_util.dumps(
        doc,
        json_options=json_util.CANONICAL_JSON_OPTIONS,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return text.encode()


def parse_metadata(data: bytes, collection: str | None) -> CollectionMetadata:
    """A metadata file read back (ours or mongodump's); ValueError if it is not one.
    Older mongodumps write no `type` and no `collectionName`: then the file name gives
    it (`collection`), and a shortened file name (None) is an error."""
    try:
        doc = json_util.loads(data.decode(), json_options=json_util.CANONICAL_JSON_OPTIONS)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"metadata of {collection!r} is not Extended JSON: {err}") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("indexes", []), list)
        or not all(isinstance(i, dict) for i in doc.get("indexes", []))
        or not isinstance(doc.get("options") or {}, dict)
    ):
        raise ValueError(
            f"metadata of {collection!r} is not a mongodump metadata document (options "
            "must be a document, indexes a list of documents)"
        )
    name = doc.get("collectionName") or collection
    if not isinstance(name, str) or not name:
        raise ValueError(
            "a metadata file with a shortened file name has no collectionName; the "
            "collection's name is lost"
        )
    return CollectionMetadata(
        collection_name=name,
        type=str(doc.get("type") or "collection"),
        options=dict(doc.get("options") or {}),
        indexes=tuple(dict(i) for i in doc.get("indexes", [])),
        uuid=str(doc["uuid"]) if doc.get("uuid") else None,
    )


def uuid_hex(info: Mapping[str, Any]) -> str | None:
    """The collection UUID from listCollections' `info`, as mongodump writes it (hex of a
    subtype-4 binary); None when the server gives none (FerretDB)."""
    value = info.get("uuid")
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, Binary) and value.subtype == 4:
        return bytes(value).hex()
    return None
