"""Restores with concurrent insert workers, verified while loading, and restore drills,
against the real FerretDB (or MONGODB_URI), the S3 server and the API server (issue 9,
parts 4 and 5):

- a restore with four workers equals its source, collection by collection (digests of
  the sorted raw documents, indexes);
- a restore that fails mid-insert (a document the server refuses in the middle of a
  collection, with other batches in flight; or a stop asked mid-insert) leaves the
  database exactly as it was, with none of its temporary collections;
- a ChatBackup's drill runs on its schedule: status, the `Verified` condition, Events and
  metrics show it, the scratch database is gone afterwards, and the live database is
  untouched; a scratch database holding data a drill did not create is refused and left
  alone; a corrupted backup makes the drill fail visibly.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import bson
import pytest
from kubernetes import client
from pymongo import MongoClient

from backups import (
    create,
    create_secrets,
    drill_after,
    finished_run,
    new_bucket,
    reasons,
    s3_spec,
    status,
    uri_with_password,
    verify_now,
)
from chatops.adapters.mongo import Mongo
from chatops.adapters.s3 import Store
from chatops.api.backup import S3Endpoint
from chatops.backup import dump, fetch, restore, swap
from chatops.errors import RestoreFailed
from support import metrics, wait_for
from test_backup_engine import fingerprint, indexes, seed, tool

pytestmark = pytest.mark.e2e
MESSAGES = 25_000
"""Three insert batches of messages (`restore.INSERT_DOCUMENTS`), so workers overlap."""


@pytest.fixture
def store(environment: dict[str, str]) -> Store:
    bucket = new_bucket(environment["S3_ENDPOINT_URL"])
    return Store(S3Endpoint(bucket=bucket, endpoint=environment["S3_ENDPOINT_URL"],
                            force_path_style=True))


@pytest.fixture
def mongo(environment: dict[str, str]) -> Iterator[Mongo]:
    with Mongo(environment["MONGODB_URI"]) as m:
        yield m


@pytest.fixture
def restored(mongo_client: MongoClient[dict[str, Any]]) -> Iterator[str]:
    name = f"e2e_restored_{uuid.uuid4().hex[:8]}"
    yield name
    mongo_client.drop_database(name)


def _ours(mongo_client: MongoClient[dict[str, Any]], database: str) -> list[str]:
    return [n for n in mongo_client[database].list_collection_names() if swap.is_ours(n)]


def test_a_restore_with_concurrent_workers_equals_its_source(
    mongo_client: MongoClient[dict[str, Any]], mongo: Mongo, store: Store, database: str,
    restored: str, tmp_path: Path,
) -> None:
    seed(mongo_client, database, MESSAGES)
    manifest = dump.dump(mongo, store, dump.DumpRequest(prefix="fast/", database=database))
    result = restore.restore(
        store, mongo, manifest.tarball.key,
        restore.RestoreRequest(mode="DropDatabase", rename={database: restored}, workers=4),
        str(tmp_path),
    )
    assert result.verified and result.documents == MESSAGES + 220
    assert fingerprint(mongo_client, restored) == fingerprint(mongo_client, database)
    assert indexes(mongo_client, restored) == indexes(mongo_client, database)
    assert _ours(mongo_client, restored) == []


def _runbook_tarball(
    environment: dict[str, str], database: str, tmp_path: Path, refused: bool
) -> Path:
    """mongodump's folder of `database` tarred as the runbook does; with `refused`, its
    messages given, in the middle, a document the server refuses (an array `_id`)."""
    folder = tmp_path / "dump"
    done = tool("mongodump", "--uri", environment["MONGODB_URI"], "--db", database,
                "--out", str(folder))
    assert done.returncode == 0, done.stderr
    if refused:
        path = folder / database / "messages.bson"
        docs = list(_documents(path.read_bytes()))
        docs.insert(len(docs) // 2, bson.encode({"_id": [1, 2], "text": "refused"}))
        path.write_bytes(b"".join(docs))
    tarball = tmp_path / "mongodb_20261202_031500.tar.gz"
    subprocess.run(["tar", "czf", str(tarball), "-C", str(folder), "."], check=True)
    return tarball


def _documents(raw: bytes) -> Iterator[bytes]:
    offset = 0
    while offset < len(raw):
        length = int.from_bytes(raw[offset : offset + 4], "little")
        yield raw[offset : offset + length]
        offset += length


@pytest.mark.parametrize("failure", ["refused", "stopped"])
def test_a_restore_that_fails_mid_insert_leaves_the_database_as_it_was(
    environment: dict[str, str], mongo_client: MongoClient[dict[str, Any]], mongo: Mongo,
    store: Store, database: str, restored: str, tmp_path: Path, failure: str,
) -> None:
    seed(mongo_client, database, MESSAGES)
    tarball = _runbook_tarball(environment, database, tmp_path, refused=failure == "refused")
    boto3.client("s3", endpoint_url=environment["S3_ENDPOINT_URL"]).upload_file(
        str(tarball), store.bucket, "fast/mongodb_20261202_031500.tar.gz"
    )
    # What the restore would replace: an older copy, and writes made since.
    seed(mongo_client, restored, 2000)
    mongo_client[restored].messages.delete_many({"edited": True})
    mongo_client[restored].notes.insert_one({"_id": "written after the backup"})
    before = fingerprint(mongo_client, restored)
    downloaded, contents = fetch.fetch(store, "fast/mongodb_20261202_031500.tar.gz",
                                         str(tmp_path))
    looks = iter(range(1_000_000))
    request = restore.RestoreRequest(mode="DropDatabase", rename={database: restored},
                                     workers=4)
    if failure == "refused":
        with pytest.raises(RestoreFailed, match="_id") as refused:
            restore.load(mongo, downloaded, contents, request)
        assert "nothing was restored" in str(refused.value)
    else:  # asked to stop after a few batches are in (a ChatRecovery deleted mid-restore)
        with pytest.raises(restore.Interrupted, match="nothing was restored"):
            restore.load(mongo, downloaded, contents, request,
                         interrupt=lambda: next(looks) >= 4)
    assert fingerprint(mongo_client, restored) == before
    assert _ours(mongo_client, restored) == []


# -- restore drills -----------------------------------------------------------------------


def _verified(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    conditions = status(custom, namespace, "chatbackups", name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Verified"), {})


def _metric(operator: Path, name: str, namespace: str, backup: str) -> float | None:
    return metrics(operator).get(f'{name}{{name="{backup}",namespace="{namespace}"}}')


def test_a_drill_runs_on_schedule_never_touches_the_live_database_and_fails_visibly(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    seed(mongo_client, database, 3000)
    live = fingerprint(mongo_client, database)
    scratch = f"{database}_drill"
    endpoint = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(endpoint)
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatbackups", "ChatBackup", "nightly", {
        "mongodb": {"uriSecretRef": {"name": "mongo"}, "database": database},
        "storage": {"s3": s3_spec(endpoint, bucket)},
        "verification": {"schedule": "* * * * *", "scratch": {"database": scratch},
                         "timeoutSeconds": 300},
    })
    backup = finished_run(custom, namespace, "nightly", timeout=120)
    assert backup["result"] == "Succeeded", backup

    # 1. The scheduled drill (every minute): restored, verified, dropped, recorded.
    drilled = drill_after(custom, namespace, "nightly", "", timeout=150)
    last = drilled["lastDrill"]
    assert last["result"] == "Succeeded", last
    assert drilled["lastVerifiedBackup"] == backup["id"]
    assert drilled["lastVerifiedTime"] and drilled["restoreSeconds"] > 0
    assert drilled["nextDrillTime"] > drilled["lastScheduleTime"]
    assert last["documents"] == 3220
    verified = _verified(custom, namespace, "nightly")
    assert (verified["status"], verified["reason"]) == ("True", "DrillSucceeded"), verified
    assert "DrillSucceeded" in reasons(core, namespace, "nightly")
    rto = wait_for(lambda: _metric(operator, "chatops_backup_restore_seconds", namespace,
                                   "nightly"), timeout=10, what="the RTO metric")
    assert rto == pytest.approx(drilled["restoreSeconds"])
    assert (_metric(operator, "chatops_backup_last_verified_timestamp_seconds", namespace,
                    "nightly") or 0) > 0
    assert scratch not in mongo_client.list_database_names()
    assert fingerprint(mongo_client, database) == live

    # 2. A scratch database holding what a drill did not create: refused, left alone.
    mongo_client[scratch].precious.insert_one({"_id": "not the drill's"})
    try:
        asked = verify_now(custom, namespace, "nightly")
        refused = drill_after(custom, namespace, "nightly", asked, timeout=90)["lastDrill"]
        assert refused["result"] == "Failed" and "did not create" in refused["message"], refused
        assert list(mongo_client[scratch].precious.find()) == [{"_id": "not the drill's"}]
        assert mongo_client[scratch].list_collection_names() == ["precious"]
    finally:
        mongo_client.drop_database(scratch)

    # 3. A corrupted backup: the drill fails, says why, and the condition shows it.
    s3 = boto3.client("s3", endpoint_url=endpoint)
    body = bytearray(s3.get_object(Bucket=bucket, Key=backup["key"])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=backup["key"], Body=bytes(body))
    asked = verify_now(custom, namespace, "nightly")
    failed = drill_after(custom, namespace, "nightly", asked, timeout=90)
    assert failed["lastDrill"]["result"] == "Failed"
    assert "sha256" in failed["lastDrill"]["message"], failed["lastDrill"]
    assert failed["lastVerifiedBackup"] == backup["id"]  # the earlier proof is kept
    verified = _verified(custom, namespace, "nightly")
    assert (verified["status"], verified["reason"]) == ("False", "DrillFailed"), verified
    assert "sha256" in verified["message"]
    assert reasons(core, namespace, "nightly").count("DrillFailed") == 2
    assert _metric(operator, "chatops_backup_drill_failures_total", namespace, "nightly") == 2
    assert scratch not in mongo_client.list_database_names()
    assert fingerprint(mongo_client, database) == live
