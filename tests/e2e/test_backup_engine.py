"""The backup engine against the real local environment: FerretDB (or the MONGODB_URI
given), the S3 server, and the real mongodump / mongorestore binaries.

No mocks: every byte goes through a real MongoDB wire-protocol server and a real S3 HTTP
endpoint, and the archives are checked with the stock tools a human would use.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from bson import ObjectId
from pymongo import MongoClient

from chatops.adapters import s3
from chatops.adapters.mongo import Mongo
from chatops.adapters.s3 import Credentials, Store
from chatops.api.backup import S3Endpoint
from chatops.backup import dump, layout, restore
from chatops.backup.manifest import ManifestSource
from chatops.errors import BackupFailed, DatabaseError, StorageError, VerificationFailed
from support import PrivateServer

pytestmark = [pytest.mark.e2e, pytest.mark.mongodb]

MESSAGES = 20_000
OWNER = ManifestSource(namespace="e2e", name="nightly")


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(environment: dict[str, str]) -> Iterator[MongoClient[dict[str, Any]]]:
    with MongoClient(environment["MONGODB_URI"]) as c:
        yield c


@pytest.fixture(scope="module")
def ferretdb(client: MongoClient[dict[str, Any]]) -> bool:
    return "ferretdbVersion" in client.admin.command("buildInfo")


@pytest.fixture(scope="module")
def chat(client: MongoClient[dict[str, Any]]) -> Iterator[str]:
    """A seeded chat database: users (unique username), rooms, messages with the app's
    two compound indexes."""
    name = f"e2e_chat_{uuid.uuid4().hex[:8]}"
    seed(client, name, MESSAGES)
    yield name
    client.drop_database(name)


@pytest.fixture
def fresh(client: MongoClient[dict[str, Any]]) -> Iterator[str]:
    """A database name nobody uses, dropped afterwards."""
    name = f"e2e_fresh_{uuid.uuid4().hex[:8]}"
    yield name
    client.drop_database(name)


@pytest.fixture
def bucket(environment: dict[str, str]) -> str:
    name = f"chatops-e2e-{uuid.uuid4().hex[:8]}"
    s3_client(environment).create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(environment: dict[str, str], bucket: str) -> Store:
    return Store(endpoint(environment, bucket))


@pytest.fixture
def mongo(environment: dict[str, str]) -> Iterator[Mongo]:
    with Mongo(environment["MONGODB_URI"]) as m:
        yield m


def endpoint(environment: dict[str, str], bucket: str) -> S3Endpoint:
    return S3Endpoint(
        bucket=bucket,
        endpoint=environment["S3_ENDPOINT_URL"],
        force_path_style=True,
        region=environment.get("AWS_DEFAULT_REGION", "us-east-1"),
    )


def s3_client(environment: dict[str, str]) -> Any:
    return boto3.client("s3", endpoint_url=environment["S3_ENDPOINT_URL"])


def seed(client: MongoClient[dict[str, Any]], name: str, messages: int) -> None:
    db = client[name]
    users = [{"_id": ObjectId(), "username": f"user{i:04d}", "karma": i * 1.5} for i in range(200)]
    rooms = [{"_id": ObjectId(), "name": f"room-{i}", "topic": "général ☕"} for i in range(20)]
    db.users.insert_many(users)
    db.users.create_index("username", unique=True)
    db.rooms.insert_many(rooms)
    start = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
    batch = []
    for i in range(messages):
        batch.append(
            {
                "roomId": rooms[i % 20]["_id"],
                "userId": users[i % 200]["_id"],
                "createdAt": start + datetime.timedelta(seconds=i),
                "text": f"message {i}: " + "bonjour " * (i % 9),
                "edited": i % 13 == 0,
            }
        )
        if len(batch) == 5000:
            db.messages.insert_many(batch)
            batch = []
    if batch:
        db.messages.insert_many(batch)
    db.messages.create_index([("roomId", 1), ("createdAt", -1)])
    db.messages.create_index([("userId", 1), ("createdAt", -1)])


def fingerprint(client: MongoClient[dict[str, Any]], name: str) -> dict[str, tuple[int, str]]:
    """Per collection: document count and the sha256 of its sorted raw documents."""
    out = {}
    for coll in sorted(client[name].list_collection_names()):
        docs: list[bytes] = []
        for batch in client[name][coll].find_raw_batches():
            docs.extend(bytes(d) for d in _split(batch))
        out[coll] = (len(docs), hashlib.sha256(b"".join(sorted(docs))).hexdigest())
    return out


def _split(batch: bytes) -> Iterator[bytes]:
    offset = 0
    while offset < len(batch):
        length = int.from_bytes(batch[offset : offset + 4], "little")
        yield batch[offset : offset + length]
        offset += length


def indexes(client: MongoClient[dict[str, Any]], name: str) -> dict[str, Any]:
    """Per collection: each index's name, key and uniqueness."""
    return {
        coll: sorted(
            (i["name"], list(i["key"].items()), bool(i.get("unique")))
            for i in client[name][coll].list_indexes()
        )
        for coll in client[name].list_collection_names()
    }


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([name, *args], capture_output=True, text=True, timeout=300)


def restored_counts(stderr: str) -> tuple[int, int]:
    """mongorestore exits 0 even when documents fail: read its own summary line."""
    match = re.search(
        r"(\d+) document\(s\) restored successfully\. (\d+) document\(s\) failed", stderr
    )
    assert match, f"no summary in mongorestore's output:\n{stderr[-2000:]}"
    return int(match[1]), int(match[2])


# -- tests ----------------------------------------------------------------------------


def test_dump_is_restored_by_the_real_mongorestore(
    environment: dict[str, str],
    client: MongoClient[dict[str, Any]],
    mongo: Mongo,
    store: Store,
    chat: str,
    fresh: str,
    ferretdb: bool,
    tmp_path: Path,
) -> None:
    request = dump.DumpRequest(prefix="prod/", database=chat, source=OWNER)
    manifest = dump.dump(mongo, store, request)

    keys = {o.key for o in store.objects("prod/")}
    assert keys == {
        f"prod/mongodb_{manifest.id}.tar.gz", f"prod/mongodb_{manifest.id}.manifest.json"
    }
    assert manifest.documents == MESSAGES + 220
    assert {c.name: c.documents for c in manifest.collections} == {
        "messages": MESSAGES, "rooms": 20, "users": 200,
    }

    archive = tmp_path / "backup.tar.gz"
    s3_client(environment).download_file(store.bucket, manifest.tarball.key, str(archive))
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == manifest.tarball.sha256
    out = tmp_path / "out"
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(tmp_path), "--one-top-level=out"],
                   check=True)
    assert sorted(p.name for p in (out / chat).iterdir()) == [
        "messages.bson", "messages.metadata.json", "rooms.bson", "rooms.metadata.json",
        "users.bson", "users.metadata.json",
    ]

    # Our metadata files are the ones the real mongodump writes, byte for byte.
    real = tmp_path / "real"
    done = tool("mongodump", "--uri", environment["MONGODB_URI"], "--db", chat, "--out", str(real))
    assert done.returncode == 0, done.stderr
    for coll in ("messages", "rooms", "users"):
        ours = (out / chat / f"{coll}.metadata.json").read_bytes()
        assert ours == (real / chat / f"{coll}.metadata.json").read_bytes()

    args = [
        "--uri", environment["MONGODB_URI"], "--nsFrom", f"{chat}.*", "--nsTo", f"{fresh}.*",
        "--numParallelCollections=1", "--numInsertionWorkersPerCollection=1", "--dir", str(out),
    ]
    if ferretdb:
        # mongorestore adds `ns` to every index and relies on ignoreUnknownIndexOptions,
        # which FerretDB does not honour: indexes are compared through the metadata above.
        args.append("--noIndexRestore")
    done = tool("mongorestore", *args)
    assert restored_counts(done.stderr) == (MESSAGES + 220, 0)
    assert done.returncode == 0, done.stderr
    assert fingerprint(client, fresh) == fingerprint(client, chat)
    if not ferretdb:
        assert indexes(client, fresh) == indexes(client, chat)


def test_a_runbook_tarball_of_the_real_mongodump_is_restored(
    environment: dict[str, str],
    client: MongoClient[dict[str, Any]],
    mongo: Mongo,
    store: Store,
    chat: str,
    fresh: str,
    tmp_path: Path,
) -> None:
    dumped = tmp_path / "dump"
    uri = environment["MONGODB_URI"]
    done = tool("mongodump", "--uri", uri, "--db", chat, "--out", str(dumped))
    assert done.returncode == 0, done.stderr
    name = "mongodb_20261126_031500.tar.gz"
    subprocess.run(["tar", "czf", str(tmp_path / name), "-C", str(dumped), "."], check=True)
    s3_client(environment).upload_file(str(tmp_path / name), store.bucket, f"legacy/{name}")

    work = tmp_path / "work"
    work.mkdir()
    result = restore.restore(
        store, mongo, f"legacy/{name}",
        restore.RestoreRequest(mode="DropDatabase", rename={chat: fresh}), str(work),
    )
    assert not result.with_manifest and result.verified
    assert result.documents == MESSAGES + 220
    assert fingerprint(client, fresh) == fingerprint(client, chat)
    assert indexes(client, fresh) == indexes(client, chat)
    assert list(work.iterdir()) == []  # the download is not left behind


def test_drop_database_round_trip_undoes_later_writes_and_deletes(
    client: MongoClient[dict[str, Any]], mongo: Mongo, store: Store, fresh: str, tmp_path: Path
) -> None:
    seed(client, fresh, 3000)
    before = fingerprint(client, fresh)
    manifest = dump.dump(mongo, store, dump.DumpRequest(prefix="", database=fresh, source=OWNER))

    db = client[fresh]
    db.messages.delete_many({"edited": True})
    room = db.rooms.find_one({"name": "room-3"})
    assert room is not None
    # One room's messages: FerretDB updates document by document, slowly.
    db.messages.update_many({"roomId": room["_id"]}, {"$set": {"text": "rewritten"}})
    db.users.insert_one({"username": "intruder"})
    db.create_collection("scratch")
    assert fingerprint(client, fresh) != before

    result = restore.restore(
        store, mongo, manifest.tarball.key,
        restore.RestoreRequest(mode="DropDatabase"), str(tmp_path), require_manifest=True,
    )
    assert result.verified and result.with_manifest
    assert fingerprint(client, fresh) == before
    assert "scratch" not in db.list_collection_names()
    assert [i["name"] for i in db.users.list_indexes()] == ["_id_", "username_1"]


def test_merge_keeps_existing_documents_and_counts_duplicates(
    client: MongoClient[dict[str, Any]], mongo: Mongo, store: Store, fresh: str, tmp_path: Path
) -> None:
    seed(client, fresh, 500)
    manifest = dump.dump(mongo, store, dump.DumpRequest(prefix="m/", database=fresh))
    client[fresh].messages.delete_many({"edited": True})
    deleted = 500 - client[fresh].messages.count_documents({})
    client[fresh].rooms.insert_one({"name": "created after the backup"})

    result = restore.restore(
        store, mongo, manifest.tarball.key, restore.RestoreRequest(mode="Merge"), str(tmp_path)
    )
    assert result.verified
    assert result.documents == deleted
    assert result.duplicates == manifest.documents - deleted
    assert client[fresh].messages.count_documents({}) == 500
    assert client[fresh].rooms.count_documents({}) == 21


def test_a_changed_byte_in_s3_fails_verification_before_the_database_is_touched(
    environment: dict[str, str],
    client: MongoClient[dict[str, Any]],
    mongo: Mongo,
    store: Store,
    chat: str,
    fresh: str,
    tmp_path: Path,
) -> None:
    manifest = dump.dump(mongo, store, dump.DumpRequest(prefix="c/", database=chat))
    s3 = s3_client(environment)
    data = bytearray(s3.get_object(Bucket=store.bucket, Key=manifest.tarball.key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    s3.put_object(Bucket=store.bucket, Key=manifest.tarball.key, Body=bytes(data))
    client[fresh].canary.insert_one({"_id": "still here"})

    with pytest.raises(VerificationFailed, match="nothing was restored"):
        restore.restore(
            store, mongo, manifest.tarball.key,
            restore.RestoreRequest(mode="DropDatabase", rename={chat: fresh}), str(tmp_path),
        )
    assert client[fresh].list_collection_names() == ["canary"]
    assert list(client[fresh].canary.find()) == [{"_id": "still here"}]


def test_a_tarball_without_manifest_is_refused_where_one_is_required(
    environment: dict[str, str], mongo: Mongo, store: Store, chat: str, tmp_path: Path
) -> None:
    manifest = dump.dump(mongo, store, dump.DumpRequest(prefix="n/", database=chat))
    s3_client(environment).delete_object(
        Bucket=store.bucket, Key=layout.manifest_key("n/", manifest.id)
    )
    with pytest.raises(restore.RestoreFailed, match="incomplete backup"):
        restore.restore(
            store, mongo, manifest.tarball.key, restore.RestoreRequest(), str(tmp_path),
            require_manifest=True,
        )


@pytest.fixture
def blobs(client: MongoClient[dict[str, Any]]) -> Iterator[str]:
    """~20 MB that does not compress, so the tarball takes several 8 MiB parts, then a
    second collection that is read while those parts are in S3."""
    name = f"e2e_blobs_{uuid.uuid4().hex[:8]}"
    client[name].a_blobs.insert_many(
        [{"_id": i, "data": os.urandom(200_000)} for i in range(100)]
    )
    client[name].b_more.insert_many([{"_id": i} for i in range(2000)])
    yield name
    client.drop_database(name)


def test_an_interrupted_dump_aborts_its_upload_and_leaves_nothing(
    environment: dict[str, str], mongo: Mongo, store: Store, blobs: str
) -> None:
    parts: list[int] = []

    def timeout() -> str | None:
        return "timeoutSeconds (1) exceeded" if parts and parts[-1] >= 1 else None

    def progress(p: dump.Progress) -> None:
        parts.append(p.parts_uploaded)

    with pytest.raises(BackupFailed, match="timeoutSeconds"):
        dump.dump(
            mongo, store, dump.DumpRequest(prefix="i/", database=blobs),
            interrupt=timeout, progress=progress,
        )
    assert parts[-1] >= 1  # it was interrupted mid-upload, with parts in S3
    assert store.objects("i/") == []
    assert store.pending_uploads("i/") == []  # the multipart upload was aborted


def test_secrets_never_reach_an_error(environment: dict[str, str], bucket: str) -> None:
    password, secret_key = "Pa55-w0rd-do-not-leak", "s3-secret-do-not-leak"
    with Mongo(f"mongodb://chat:{password}@127.0.0.1:1/?authSource=admin", timeout_ms=300) as m:
        with pytest.raises(DatabaseError) as db_err:
            m.server_version()
        store = Store(endpoint(environment, bucket))
        with pytest.raises(BackupFailed) as backup_err:
            dump.dump(m, store, dump.DumpRequest(prefix=""))
    bad = Store(endpoint(environment, "no-such-bucket-e2e"), Credentials("AKIDE2E", secret_key))
    with pytest.raises(StorageError) as s3_err:
        bad.put("x", b"x")
    for err in (db_err.value, backup_err.value, s3_err.value):
        text = f"{err} {err!r} {err.__cause__!r}"
        assert password not in text and secret_key not in text
    assert "127.0.0.1:1" in str(db_err.value)  # the host is named, for the human
    assert "no-such-bucket-e2e" in str(s3_err.value)


class PrivateS3(PrivateServer):
    """A moto S3 server of this test's own, on a port of its own, so that stopping it
    mid-upload disturbs nobody else's tests (the shared one is watched by
    `localenv.running()`, and a concurrent session would restart everything)."""

    what = "S3 server"

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1",
                "-p", str(self.port)]

    def ready(self) -> bool:
        try:
            boto3.client("s3", endpoint_url=self.url).list_buckets()
            return True
        except Exception:
            return False


@pytest.fixture
def private_s3() -> Iterator[PrivateS3]:
    server = PrivateS3()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_s3_stopping_mid_upload_fails_the_run_without_a_manifest(
    environment: dict[str, str], mongo: Mongo, blobs: str, private_s3: PrivateS3
) -> None:
    bucket = f"chatops-e2e-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=private_s3.url)
    s3.create_bucket(Bucket=bucket)
    store = Store(S3Endpoint(bucket=bucket, endpoint=private_s3.url, force_path_style=True))
    stopped: list[bool] = []

    def progress(p: dump.Progress) -> None:
        if p.parts_uploaded >= 1 and not stopped:
            private_s3.stop()
            stopped.append(True)

    with pytest.raises(BackupFailed) as failed:
        dump.dump(mongo, store, dump.DumpRequest(prefix="s/", database=blobs), progress=progress)
    assert stopped, "the dump ended before a part was uploaded"
    message = str(failed.value)
    assert f"s3://{bucket}/s/mongodb_" in message
    assert re.search(r"failed: S3 (UploadPart|CompleteMultipartUpload|PutObject)", message), message

    # The server comes back empty (moto keeps nothing); the next run succeeds.
    private_s3.start()
    s3.create_bucket(Bucket=bucket)
    manifest = dump.dump(mongo, store, dump.DumpRequest(prefix="s/", database=blobs))
    assert {o.key for o in store.objects("s/")} == {
        manifest.tarball.key, layout.manifest_key("s/", manifest.id)
    }
    assert manifest.tarball.size > 16 * 1024 * 1024  # it really took several parts


def test_a_resent_conditional_write_that_lost_to_its_own_first_send_is_done(
    store: Store,
) -> None:
    """boto3 resends a request whose reply it did not get (a timeout on a busy machine).
    When the first send did write, the resend loses its If-None-Match to it: that is the
    same write, done — while another writer's object at the key still refuses it."""
    key = f"mongodb_{uuid.uuid4().hex[:8]}.tar.gz"
    store.put(key, b"first")
    with pytest.raises(s3.KeyTaken):
        store.put(key, b"second")
    assert store.get(key) == b"first"

    resent = f"mongodb_{uuid.uuid4().hex[:8]}.tar.gz"
    written = s3.with_nonce({})

    def send() -> None:
        store.client.put_object(Bucket=store.bucket, Key=resent, Body=b"mine",
                                Metadata=written, IfNoneMatch="*")

    send()  # the first send: it wrote, but its reply was lost
    with store.conditional("PutObject", resent, written):
        send()  # the resend loses to it, and is recognised as the same write
    with pytest.raises(s3.KeyTaken), store.conditional("PutObject", resent, s3.with_nonce({})):
        send()  # any other write still loses
    assert store.get(resent) == b"mine"
