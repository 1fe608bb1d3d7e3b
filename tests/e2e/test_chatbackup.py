"""ChatBackup through the real operator (`chatops run`), the real API server, FerretDB and
an S3 server: what a user sees in status, Events, S3, and with the stock tools."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from kubernetes import client
from pymongo import MongoClient

import support
from backups import (
    ENV_MESSAGES,
    S3_KEY_ID,
    CuttableProxy,
    PrivateFerretDB,
    assert_no_secrets,
    backup_now,
    backup_spec,
    create,
    create_secrets,
    finished_run,
    keys,
    new_bucket,
    reasons,
    run_once,
    status,
    uri_with_password,
)
from support import wait_for
from test_backup_engine import PrivateS3, fingerprint, restored_counts, seed, tool

pytestmark = [pytest.mark.e2e, pytest.mark.mongodb]


def test_a_chatbackup_writes_a_backup_the_real_mongorestore_restores(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str, tmp_path: Path,
) -> None:
    seed(mongo_client, database, ENV_MESSAGES)
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatbackups", "ChatBackup", "nightly",
           backup_spec(s3_url, bucket, database))  # no schedule: one run at creation

    last = finished_run(custom, namespace, "nightly", timeout=180)
    assert last["result"] == "Succeeded", last
    assert last["documents"] == ENV_MESSAGES + 220
    exported = support.metrics(operator)
    mine = f'name="nightly",namespace="{namespace}"'
    assert exported[f"chatops_backup_documents{{{mine}}}"] == ENV_MESSAGES + 220
    assert exported[f"chatops_backup_size_bytes{{{mine}}}"] == last["size"]
    assert exported[f"chatops_backup_failures_total{{{mine}}}"] == 0
    tarball, manifest_key = last["key"], last["key"].replace(".tar.gz", ".manifest.json")
    assert keys(s3_url, bucket) == sorted([tarball, manifest_key])
    s3 = boto3.client("s3", endpoint_url=s3_url)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    assert manifest["tarball"]["sha256"] == last["sha256"]
    assert manifest["source"] == {
        "namespace": namespace, "name": "nightly", "uid": manifest["source"]["uid"]
    }
    seen = status(custom, namespace, "chatbackups", "nightly")
    ready = next(c for c in seen["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "BackupSucceeded")
    assert seen["lastSuccessfulTime"] and "nextScheduleTime" not in seen
    assert [b["id"] for b in seen["backups"]] == [last["id"]]
    assert {"BackupStarted", "BackupSucceeded"} <= set(reasons(core, namespace, "nightly"))

    # A human restores it with the stock tools, into a fresh database.
    archive = tmp_path / "backup.tar.gz"
    s3.download_file(bucket, tarball, str(archive))
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == last["sha256"]
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)], check=True)
    fresh = f"{database}_copy"
    try:
        # FerretDB refuses the `ns` index option mongorestore adds: indexes are left out
        # here (the engine's e2e compares them through the metadata).
        done = tool(
            "mongorestore", "--uri", environment["MONGODB_URI"], "--nsFrom", f"{database}.*",
            "--nsTo", f"{fresh}.*", "--noIndexRestore", "--dir", str(out),
        )
        assert restored_counts(done.stderr) == (ENV_MESSAGES + 220, 0), done.stderr
        assert fingerprint(mongo_client, fresh) == fingerprint(mongo_client, database)
    finally:
        mongo_client.drop_database(fresh)

    # kubectl and the CLI show it as a user would look.
    shown = subprocess.run(
        ["kubectl", "get", "cbak", "nightly", "-n", namespace], capture_output=True, text=True,
        check=True,
    ).stdout
    assert last["id"] in shown and "Succeeded" in shown
    listed = subprocess.run(
        [sys.executable, "-m", "chatops.cli", "backups", "nightly", "-n", namespace],
        capture_output=True, text=True,
    )
    assert listed.returncode == 0, listed.stderr
    assert last["id"] in listed.stdout
    assert_no_secrets(custom, core, namespace, operator)


@pytest.mark.timeout(1200)  # 30+ backup runs: 315 s on a clean-clone run, over 600 in another
def test_retention_keeps_the_30_newest_good_backups_and_ignores_failures(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    mongo_client[database].rooms.insert_many([{"name": f"room-{i}"} for i in range(10)])
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    spec = backup_spec(s3_url, bucket, database, suspend=True, deletionPolicy="Delete",
                       schedule="0 3 * * *", retention={"keepLast": 30})
    create(custom, namespace, "chatbackups", "ChatBackup", "hourly", spec)

    good: list[str] = []
    failed: list[str] = []
    started = time.monotonic()
    for i in range(35):
        if i in (5, 20, 34):  # a database that is not there: the run fails
            custom.patch_namespaced_custom_object(
                "chatops.dev", "v1alpha1", namespace, "chatbackups", "hourly",
                {"spec": {"mongodb": {"database": "gone_database"}}},
            )
            run = run_once(custom, namespace, "hourly")
            assert run["result"] == "Failed" and "does not exist" in run["message"], run
            failed.append(run["id"])
            custom.patch_namespaced_custom_object(
                "chatops.dev", "v1alpha1", namespace, "chatbackups", "hourly",
                {"spec": {"mongodb": {"database": database}}},
            )
        run = run_once(custom, namespace, "hourly")
        assert run["result"] == "Succeeded", run
        good.append(run["id"])
    took = time.monotonic() - started
    print(f"38 on-demand runs in {took:.1f} s")

    expected = sorted(
        f"chat/mongodb_{b}{suffix}" for b in good[-30:] for suffix in (".tar.gz", ".manifest.json")
    )
    assert keys(s3_url, bucket) == expected
    seen = status(custom, namespace, "chatbackups", "hourly")
    assert seen["lastBackup"]["id"] == good[-1]
    assert all(r["id"] not in good[:5] for r in seen["backups"])  # deleted ones leave status
    assert {r["id"] for r in seen["backups"] if r["result"] == "Failed"} <= set(failed)
    assert "RetentionDeleted" in reasons(core, namespace, "hourly")

    # deletionPolicy: Delete takes this ChatBackup's backups with it.
    custom.delete_namespaced_custom_object(
        "chatops.dev", "v1alpha1", namespace, "chatbackups", "hourly"
    )
    wait_for(lambda: keys(s3_url, bucket) == [], timeout=60, what="the backups deleted")
    assert_no_secrets(custom, core, namespace, operator)


def test_s3_going_away_mid_upload_fails_the_run_cleanly_and_the_next_run_succeeds(
    operator: Path, namespace: str, custom: client.CustomObjectsApi, core: client.CoreV1Api,
    environment: dict[str, str], mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    mongo_client[database].blobs.insert_many(
        [{"_id": i, "data": os.urandom(200_000)} for i in range(100)]
    )
    server = PrivateS3()
    server.start()
    proxy = CuttableProxy(server.port)
    try:
        direct = boto3.client("s3", endpoint_url=server.url)
        bucket = new_bucket(server.url)
        create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
        spec = backup_spec(proxy.url, bucket, database, schedule="0 3 * * *")
        create(custom, namespace, "chatbackups", "ChatBackup", "blobs", spec)
        backup_now(custom, namespace, "blobs")

        def a_part_is_in() -> bool:
            for upload in direct.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                parts = direct.list_parts(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                if parts.get("Parts"):
                    return True
            return False

        wait_for(a_part_is_in, timeout=60, interval=0.02, what="a part uploaded")
        proxy.cut()
        failed = finished_run(custom, namespace, "blobs", timeout=120)
        assert failed["result"] == "Failed"
        assert f"s3://{bucket}/chat/mongodb_{failed['id']}.tar.gz" in failed["message"]
        assert "S3 UploadPart" in failed["message"] or "S3 Complete" in failed["message"]
        assert not [k for k in keys(server.url, bucket) if k.endswith(".manifest.json")]
        ready = next(
            c for c in status(custom, namespace, "chatbackups", "blobs")["conditions"]
            if c["type"] == "Ready"
        )
        assert (ready["status"], ready["reason"]) == ("False", "BackupFailed")

        proxy.restore()
        again = run_once(custom, namespace, "blobs")
        assert again["result"] == "Succeeded", again
        # The failed run's upload, which could not be aborted while S3 was away, is gone.
        assert direct.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert keys(server.url, bucket) == sorted(
            [again["key"], again["key"].replace(".tar.gz", ".manifest.json")]
        )
        assert S3_KEY_ID not in failed["message"]
        assert_no_secrets(custom, core, namespace, operator)
    finally:
        proxy.close()
        server.stop()


def test_mongodb_down_fails_the_run_deletes_nothing_and_the_next_schedule_retries(
    operator: Path, namespace: str, custom: client.CustomObjectsApi, core: client.CoreV1Api,
    environment: dict[str, str],
) -> None:
    ferret = PrivateFerretDB()
    ferret.start()
    try:
        with MongoClient(ferret.uri) as private:
            private.chat.rooms.insert_many([{"name": f"room-{i}"} for i in range(5)])
        s3_url = environment["S3_ENDPOINT_URL"]
        bucket = new_bucket(s3_url)
        create_secrets(core, namespace, uri_with_password(ferret.uri))
        spec = backup_spec(s3_url, bucket, "chat", schedule="* * * * *",
                           retention={"keepLast": 2})
        create(custom, namespace, "chatbackups", "ChatBackup", "minutely", spec)
        first, second = run_once(custom, namespace, "minutely"), None
        second = run_once(custom, namespace, "minutely")
        assert (first["result"], second["result"]) == ("Succeeded", "Succeeded")
        before = keys(s3_url, bucket)

        ferret.stop()
        down = run_once(custom, namespace, "minutely")
        assert down["result"] == "Failed"
        assert f"127.0.0.1:{ferret.port}" in down["message"], down["message"]
        assert keys(s3_url, bucket) == before  # nothing deleted, nothing half-written

        ferret.start()
        retried = finished_run(custom, namespace, "minutely", after=down["id"], timeout=100)
        assert retried["result"] == "Succeeded", retried
        seen = status(custom, namespace, "chatbackups", "minutely")
        assert seen["lastScheduleTime"] and seen["nextScheduleTime"] > seen["lastScheduleTime"]
        remaining = keys(s3_url, bucket)
        assert len(remaining) == 4 and any(second["id"] in k for k in remaining)
        assert_no_secrets(custom, core, namespace, operator)
    finally:
        ferret.stop()


def test_a_backup_waits_for_the_database_lease(
    operator: Path, namespace: str, custom: client.CustomObjectsApi, core: client.CoreV1Api,
    environment: dict[str, str], mongo_client: MongoClient[dict[str, Any]], database: str,
    api: client.ApiClient,
) -> None:
    from chatops.adapters.lease import Lease, database_lease_name
    from chatops.adapters.mongo import Mongo

    mongo_client[database].rooms.insert_one({"name": "lobby"})
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    uri = uri_with_password(environment["MONGODB_URI"])
    create_secrets(core, namespace, uri)
    with Mongo(uri) as mongo:
        # where the operator keeps its database Leases: its own namespace, the test's
        lease = database_lease_name(mongo.identity())
        other = Lease(api, namespace, lease, "chatrecovery/elsewhere/restore")
    assert other.acquire() is None
    create(custom, namespace, "chatbackups", "ChatBackup", "waiting",
           backup_spec(s3_url, bucket, database))

    def waiting() -> Any:
        last = status(custom, namespace, "chatbackups", "waiting").get("lastBackup") or {}
        return "chatrecovery/elsewhere/restore" in last.get("message", "") and last
    running = wait_for(waiting, timeout=60, what="the run to wait for the Lease")
    assert running["result"] == "Running"
    other.release()
    done = finished_run(custom, namespace, "waiting", timeout=60)
    assert done["result"] == "Succeeded", done
