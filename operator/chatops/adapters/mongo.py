"""MongoDB, as the backup and restore engines see it: with `oplog.py` (the oplog's
reads and replay's writes) the only modules that call pymongo.

Documents never pass through Python objects: reads are `find_raw_batches` (the
server's batch bytes, exactly the `.bson` file format), writes are `RawBSONDocument`s
that pymongo sends as they are. Every driver error leaves this module as a
`DatabaseError` whose text has been scrubbed of the connection string's credentials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import pymongo
import pymongo.errors
from bson.raw_bson import RawBSONDocument
from pymongo import read_preferences

from chatops.adapters.redact import redact, uri_secrets
from chatops.errors import DatabaseError

SYSTEM_DATABASES = frozenset({"admin", "local", "config"})
DUPLICATE_KEY = 11000
_READ_PREFERENCES: dict[str, read_preferences._ServerMode] = {
    "primary": read_preferences.Primary(),
    "primaryPreferred": read_preferences.PrimaryPreferred(),
    "secondary": read_preferences.Secondary(),
    "secondaryPreferred": read_preferences.SecondaryPreferred(),
    "nearest": read_preferences.Nearest(),
}


_SCHEMES = ("mongodb://", "mongodb+srv://")
_ESCAPE = "@ : / ? # [ ] %"


def uri_problem(uri: str) -> str | None:
    """Why pymongo would misread this connection string, or None. Never quotes it.

    pymongo takes the hosts from between the last `@` before the first `/` and that
    `/`: a password with an unescaped `/`, `?` or `@` leaves a piece of it read as a host
    name, which then shows in every error. Such a string is refused before it is used."""
    scheme = next((s for s in _SCHEMES if uri.startswith(s)), None)
    if scheme is None:
        return "the connection string must start with mongodb:// or mongodb+srv://"
    rest = uri[len(scheme):]
    authority = re.split(r"[/?]", rest, maxsplit=1)[0]
    after = rest[len(authority):]
    userinfo, _, hosts = authority.rpartition("@")
    bad = (
        "@" in after.split("?", 1)[0]
        or (after.startswith("?") and "@" in after)
        or "@" in userinfo
        or userinfo.count(":") > 1
        or any(c in userinfo for c in "/?#[]")
        or re.search(r"%(?![0-9A-Fa-f]{2})", userinfo) is not None
        or "#" in hosts
    )
    if bad:
        return (
            "the user name or password in the connection string has a character that "
            f"must be percent-encoded ({_ESCAPE}); write them with urllib.parse.quote_plus"
        )
    if not hosts:
        return "the connection string names no host"
    return None


def resolve(host: str, port: int) -> list[str]:
    """`ip:port` of every IPv4 address of `host` (its IPv6 ones when it has none; the name
    itself when it does not resolve), so two names of one server compare equal."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return [f"{host.lower()}:{port}"]
    v4 = sorted({str(f[4][0]) for f in found if f[0] == socket.AF_INET})
    v6 = sorted({str(f[4][0]) for f in found if f[0] == socket.AF_INET6})
    return [f"{ip}:{port}" for ip in v4 or v6] or [f"{host.lower()}:{port}"]


@dataclasses.dataclass(frozen=True)
class CollectionInfo:
    """One entry of listCollections."""

    name: str
    type: str
    options: Mapping[str, Any]
    info: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class InsertResult:
    inserted: int
    duplicates: int
    refused: tuple[int, ...] = ()
    """Positions in the batch of the documents refused as duplicates."""


def _split(batch: bytes) -> Iterator[memoryview]:
    view, offset = memoryview(batch), 0
    while offset < len(view):
        length = int.from_bytes(view[offset : offset + 4], "little")
        yield view[offset : offset + length]
        offset += length


class Mongo:
    """A MongoDB deployment reached through one connection string."""

    def __init__(self, uri: str, *, timeout_ms: int = 10_000, app_name: str = "chatops") -> None:
        self._secrets = uri_secrets(uri)
        problem = uri_problem(uri)
        if problem is not None:  # credentials.read refuses these first, naming the Secret
            raise DatabaseError(f"MongoDB connect: {problem}")
        with self.errors("connect"):
            self._client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
                uri,
                appname=app_name,
                serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms,
            )

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn driver errors into DatabaseError, credentials scrubbed from the text."""
        try:
            yield
        except pymongo.errors.PyMongoError as err:
            text = redact(str(err), self._secrets)
            raise DatabaseError(f"MongoDB {doing}: {type(err).__name__}: {text}") from None

    @property
    def client(self) -> pymongo.MongoClient[dict[str, Any]]:
        """The driver's client, for the oplog adapter (`adapters/oplog.py`) only."""
        return self._client

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Mongo:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------

    def identity(self) -> str:
        """What names this deployment whatever connection string reached it: the replica
        set name (`hello.setName`), else the servers' addresses resolved to IPs, so
        `localhost` and `127.0.0.1`, or an SRV record and its seed list, are one. Replica
        sets of the same name in different places are taken for one (they take turns on
        the database Lease, which is harmless)."""
        with self.errors("hello"):
            hello = self._client.admin.command("hello")
            nodes = set(self._client.nodes) or {self._client.address or ("", 0)}
        name = hello.get("setName")
        if name:
            return f"replicaset/{name}"
        return "servers/" + ",".join(sorted(a for h, p in nodes for a in resolve(h, p or 27017)))

    def ping(self) -> None:
        """One round trip (`ping`): the server is up and answers this client."""
        with self.errors("ping"):
            self._client.admin.command("ping")

    def server_version(self) -> str:
        with self.errors("buildInfo"):
            return str(self._client.admin.command("buildInfo").get("version", "unknown"))

    def is_ferretdb(self) -> bool:
        """Whether the server is FerretDB (its buildInfo says so)."""
        with self.errors("buildInfo"):
            return "ferretdbVersion" in self._client.admin.command("buildInfo")

    def database_names(self) -> list[str]:
        """User databases, without admin, local and config."""
        with self.errors("listDatabases"):
            names = self._client.list_database_names()
        return sorted(n for n in names if n not in SYSTEM_DATABASES)

    def collections(self, database: str) -> list[CollectionInfo]:
        """Collections and views, sorted by name, without `system.*`."""
        with self.errors(f"listCollections on {database}"):
            entries = list(self._client[database].list_collections())
        return sorted(
            (
                CollectionInfo(
                    name=str(e["name"]),
                    type=str(e.get("type") or "collection"),
                    options=dict(e.get("options") or {}),
                    info=dict(e.get("info") or {}),
                )
                for e in entries
                if not str(e["name"]).startswith("system.")
            ),
            key=lambda c: c.name,
        )

    def indexes(self, database: str, collection: str) -> list[dict[str, Any]]:
        """Index specs as listIndexes returns them, in its order."""
        with self.errors(f"listIndexes on {database}.{collection}"):
            return [dict(i) for i in self._client[database][collection].list_indexes()]

    def data_size(self, database: str) -> int:
        """Uncompressed bytes of the database's documents (dbStats.dataSize), 0 if unknown."""
        with self.errors(f"dbStats on {database}"):
            stats = self._client[database].command("dbStats")
        try:
            return max(0, int(stats.get("dataSize", 0)))
        except (TypeError, ValueError):
            return 0

    def raw_batches(
        self, database: str, collection: str, read_preference: str = "primary"
    ) -> Iterator[bytes]:
        """Every document of a collection, as the server's batches of raw BSON."""
        db = self._client.get_database(database, read_preference=_READ_PREFERENCES[read_preference])
        with self.errors(f"find on {database}.{collection}"):
            cursor = db[collection].find_raw_batches({})
            try:
                for batch in cursor:
                    yield cast(bytes, batch)
            finally:
                cursor.close()

    def first_raw(self, database: str, collection: str, n: int) -> list[bytes]:
        """The first `n` documents in the server's natural order (the order it stored
        them, for a collection only ever inserted into), raw: the server stops reading
        after them, whatever its indexes."""
        if n <= 0:
            return []
        with self.errors(f"find on {database}.{collection}"):
            cursor = self._client[database][collection].find_raw_batches({}).limit(n)
            try:
                return [bytes(d) for batch in cursor for d in _split(cast(bytes, batch))]
            finally:
                cursor.close()

    def raw_by_ids(self, database: str, collection: str, ids: Sequence[Any]) -> list[bytes]:
        """The documents with these `_id`s, raw, in one query (through the `_id` index on
        MongoDB; FerretDB reads the whole collection for it)."""
        with self.errors(f"find by _id on {database}.{collection}"):
            cursor = self._client[database][collection].find_raw_batches(
                {"_id": {"$in": list(ids)}}
            )
            try:
                return [bytes(d) for batch in cursor for d in _split(cast(bytes, batch))]
            finally:
                cursor.close()

    def stored_count(self, database: str, collection: str) -> int:
        """How many documents the server says the collection holds, from its storage
        (`collStats`), not by reading them: exact for a collection just written, as a
        restore's own temporary one (MongoDB's record count drifts only after an unclean
        shutdown); counted (`count_documents`) where collStats is refused."""
        with self.errors(f"collStats on {database}.{collection}"):
            try:
                stats = self._client[database].command("collStats", collection)
                return int(stats["count"])
            except (pymongo.errors.OperationFailure, KeyError, TypeError, ValueError):
                return int(self._client[database][collection].count_documents({}))

    def find_id(self, database: str, collection: str, id_: Any) -> dict[str, Any] | None:
        """The document with this `_id`, or None."""
        with self.errors(f"find on {database}.{collection}"):
            return self._client[database][collection].find_one({"_id": id_})

    def count(self, database: str, collection: str) -> int:
        with self.errors(f"count on {database}.{collection}"):
            return int(self._client[database][collection].count_documents({}))

    # -- writing ----------------------------------------------------------------------

    def drop_database(self, database: str) -> None:
        with self.errors(f"dropDatabase {database}"):
            self._client.drop_database(database)

    def drop_collection(self, database: str, collection: str) -> None:
        with self.errors(f"drop {database}.{collection}"):
            self._client[database].drop_collection(collection)

    def create_collection(self, database: str, collection: str, options: Mapping[str, Any]) -> None:
        """Create a collection (or a view: options `viewOn` and `pipeline`) unless it exists."""
        with self.errors(f"create {database}.{collection}"):
            db = self._client[database]
            if collection in db.list_collection_names(filter={"name": collection}):
                return
            db.command({"create": collection, **options})

    def insert_raw(
        self, database: str, collection: str, documents: Sequence[bytes | memoryview]
    ) -> InsertResult:
        """Insert raw documents unordered; duplicates of an existing `_id` (or unique key)
        are counted, any other write error raises."""
        coll = self._client[database].get_collection(collection)
        raw = [RawBSONDocument(bytes(d)) for d in documents]
        with self.errors(f"insert into {database}.{collection}"):
            try:
                coll.insert_many(raw, ordered=False)
                return InsertResult(inserted=len(raw), duplicates=0)
            except pymongo.errors.BulkWriteError as err:
                details = err.details
                write_errors = details.get("writeErrors", [])
                others = [e for e in write_errors if e.get("code") != DUPLICATE_KEY]
                if others or details.get("writeConcernErrors"):
                    first = others[0] if others else details["writeConcernErrors"][0]
                    raise DatabaseError(
                        f"MongoDB insert into {database}.{collection}: "
                        f"{len(others)} document(s) refused, first: code {first.get('code')}: "
                        f"{redact(str(first.get('errmsg', '')), self._secrets)}"
                    ) from None
                return InsertResult(
                    inserted=int(details.get("nInserted", 0)),
                    duplicates=len(write_errors),
                    refused=tuple(int(e.get("index", -1)) for e in write_errors),
                )

    def create_indexes(
        self, database: str, collection: str, specs: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """Create the indexes not there yet (by name); the names of those created. An index
        of the same name is left as it is (Merge into a live database keeps its indexes)."""
        existing = {str(i.get("name")) for i in self.indexes(database, collection)}
        missing = [dict(s) for s in specs if str(s.get("name")) not in existing]
        if not missing:
            return []
        with self.errors(f"createIndexes on {database}.{collection}"):
            self._client[database].command({"createIndexes": collection, "indexes": missing})
        return [str(s.get("name")) for s in missing]

    def drop_indexes(self, database: str, collection: str, names: Sequence[str]) -> None:
        for name in names:
            with self.errors(f"dropIndexes on {database}.{collection}"):
                self._client[database][collection].drop_index(name)

    def namespaces(self, database: str) -> dict[str, Mapping[str, Any] | None]:
        """Every collection (None) and view (its options) of a database, `system.*` too
        excluded, for a restore's commit."""
        return {
            c.name: (dict(c.options) if c.type == "view" else None)
            for c in self.collections(database)
        }

    def rename_collection(self, database: str, old: str, new: str) -> None:
        """Rename within one database (FerretDB renames only there, and never over an
        existing collection: no `dropTarget`)."""
        with self.errors(f"renameCollection {database}.{old}"):
            self._client.admin.command(
                {"renameCollection": f"{database}.{old}", "to": f"{database}.{new}"}
            )

    def upsert_id(
        self, database: str, collection: str, id_: Any, fields: Mapping[str, Any]
    ) -> None:
        """Write the document `_id` with `fields` (creating the collection if needed)."""
        with self.errors(f"update {database}.{collection}"):
            self._client[database][collection].replace_one(
                {"_id": id_}, {"_id": id_, **fields}, upsert=True
            )

    def delete_ids(self, database: str, collection: str, ids: Sequence[Any]) -> None:
        """Delete the documents with these `_id`s, in batches."""
        with self.errors(f"delete from {database}.{collection}"):
            for start in range(0, len(ids), 1000):
                chunk = list(ids[start : start + 1000])
                self._client[database][collection].delete_many({"_id": {"$in": chunk}})
