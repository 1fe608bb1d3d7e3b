"""ChatBackup at its edges (issue 8, cases 10, 13, 15, 18, 19, 21), through the real
operator, API server, FerretDB and S3 server: what a user sees in status, Events, S3 and
the operator's log."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from kubernetes import client
from pymongo import MongoClient

import localenv
from backups import (
    CuttableProxy,
    assert_no_secrets,
    backup_now,
    backup_spec,
    create,
    create_secrets,
    events,
    finished_run,
    keys,
    new_bucket,
    recovery_ended,
    s3_spec,
    status,
    steps,
    uri_with_password,
)
from support import GROUP, VERSION, kubectl, operator_process, wait_for

pytestmark = pytest.mark.e2e


def condition(custom: client.CustomObjectsApi, namespace: str, name: str, kind: str) -> Any:
    found = status(custom, namespace, "chatbackups", name).get("conditions") or []
    return next((c for c in found if c["type"] == kind), None)


def uid_of(custom: client.CustomObjectsApi, namespace: str, plural: str, name: str) -> str:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    return str(obj["metadata"]["uid"])


# -- case 10 --------------------------------------------------------------------------------


def test_two_chatbackups_on_one_prefix_at_the_same_second_keep_every_backup(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]],
) -> None:
    """Case 10: two ChatBackups share a bucket and prefix, read different databases and
    are asked to run at the same moment, again and again. Every Succeeded run's tarball
    and manifest exist and hold its own database, and the retention of one (keepLast 1)
    never deletes the other's."""
    first, second = f"e2e_{uuid.uuid4().hex[:8]}", f"e2e_{uuid.uuid4().hex[:8]}"
    mongo_client[first].rooms.insert_many([{"name": f"a-{i}"} for i in range(3)])
    mongo_client[second].rooms.insert_many([{"name": f"b-{i}"} for i in range(5)])
    try:
        s3_url = environment["S3_ENDPOINT_URL"]
        bucket = new_bucket(s3_url)
        create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
        suspended = {"schedule": "0 3 * * *", "suspend": True}
        create(custom, namespace, "chatbackups", "ChatBackup", "keeps-one",
               backup_spec(s3_url, bucket, first, retention={"keepLast": 1}, **suspended))
        create(custom, namespace, "chatbackups", "ChatBackup", "keeps-all",
               backup_spec(s3_url, bucket, second, retention={"keepLast": 30}, **suspended))
        uids = {n: uid_of(custom, namespace, "chatbackups", n) for n in ("keeps-one", "keeps-all")}
        database = {"keeps-one": first, "keeps-all": second}
        last = {"keeps-one": "", "keeps-all": ""}
        succeeded: dict[str, list[dict[str, Any]]] = {"keeps-one": [], "keeps-all": []}
        same_second = 0
        for _ in range(5):
            for name in last:  # both asked at once
                backup_now(custom, namespace, name)
            runs = {n: finished_run(custom, namespace, n, after=last[n], timeout=120)
                    for n in last}
            for name, run in runs.items():
                assert run["result"] == "Succeeded", run
                succeeded[name].append(run)
                last[name] = run["id"]
            same_second += runs["keeps-one"]["id"][:15] == runs["keeps-all"]["id"][:15]
        print(f"{same_second} of 5 rounds started both in the same second")
        assert same_second >= 1, "the runs never met in one second: nothing was tested"

        s3 = boto3.client("s3", endpoint_url=s3_url)
        present = set(keys(s3_url, bucket))
        kept = {"keeps-one": succeeded["keeps-one"][-1:], "keeps-all": succeeded["keeps-all"]}
        for name, runs in kept.items():
            for run in runs:
                manifest_key = run["key"].replace(".tar.gz", ".manifest.json")
                assert {run["key"], manifest_key} <= present, (name, run["id"])
                manifest = json.loads(
                    s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
                )
                assert manifest["databases"] == [database[name]]
                assert manifest["source"]["uid"] == uids[name]
                assert manifest["tarball"]["sha256"] == run["sha256"]
                head = s3.head_object(Bucket=bucket, Key=run["key"])
                assert head["Metadata"]["chatops-backup-uid"] == uids[name]
        assert len(present) == 2 * (1 + 5)  # retention of keeps-one left keeps-all's alone
    finally:
        mongo_client.drop_database(first)
        mongo_client.drop_database(second)


def test_a_recreated_chatbackup_of_the_same_name_neither_adopts_nor_deletes_the_old_backups(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    """Case 10: ownership is by uid. The old object's backups stay in S3 and are not
    listed, counted nor deleted (deletionPolicy Delete) by a new one of the same name."""
    mongo_client[database].rooms.insert_one({"name": "lobby"})
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    spec = backup_spec(s3_url, bucket, database)  # no schedule: one run at creation
    create(custom, namespace, "chatbackups", "ChatBackup", "nightly", spec)
    old = finished_run(custom, namespace, "nightly", timeout=120)
    assert old["result"] == "Succeeded", old
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "chatbackups", "nightly")
    wait_for(lambda: not custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "chatbackups")["items"], timeout=60, what="it deleted")

    create(custom, namespace, "chatbackups", "ChatBackup", "nightly",
           {**spec, "deletionPolicy": "Delete"})
    new = finished_run(custom, namespace, "nightly", timeout=120)
    assert new["result"] == "Succeeded" and new["id"] != old["id"], new
    listed = subprocess.run(
        [sys.executable, "-m", "chatops.cli", "backups", "nightly", "-n", namespace],
        capture_output=True, text=True,
    )
    assert listed.returncode == 0, listed.stderr
    assert new["id"] in listed.stdout and old["id"] not in listed.stdout
    assert "1 other backup(s)" in listed.stdout
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "chatbackups", "nightly")
    old_keys = sorted([old["key"], old["key"].replace(".tar.gz", ".manifest.json")])
    wait_for(lambda: keys(s3_url, bucket) == old_keys, timeout=60,
             what="only the new object's backups deleted")


# -- case 13 --------------------------------------------------------------------------------


def _database_lease_holder(
    coordination: client.CoordinationV1Api, namespace: str, holder: str
) -> bool:
    return any(
        lease.spec.holder_identity == holder
        for lease in coordination.list_namespaced_lease(namespace).items
    )


@pytest.mark.namespaces(2)
def test_a_backup_and_a_restore_from_another_namespace_naming_the_server_otherwise_take_turns(
    environment: dict[str, str], operator: Path, namespaces: list[str], api: client.ApiClient,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    """Case 13: a backup in namespace A reaches FerretDB as `localhost`, a restore from
    namespace B as `127.0.0.1`. While the backup holds the database Lease (its upload held
    at a gate), the restore waits and says so in its Resolve step; once the backup is done,
    the restore runs."""
    mongo_client[database].rooms.insert_many([{"name": f"room-{i}"} for i in range(5)])
    uri = environment["MONGODB_URI"]
    assert "127.0.0.1" in uri
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    proxy = CuttableProxy(int(s3_url.rsplit(":", 1)[1].strip("/")))
    # One operator watches both; its database Lease lives in its own namespace, the first.
    namespace, other = namespaces
    try:
        create_secrets(core, namespace, uri_with_password(uri.replace("127.0.0.1", "localhost")))
        create_secrets(core, other, uri_with_password(uri))
        spec = backup_spec(proxy.url, bucket, database, schedule="0 3 * * *", suspend=True)
        create(custom, namespace, "chatbackups", "ChatBackup", "gated", spec)
        backup_now(custom, namespace, "gated")
        first = finished_run(custom, namespace, "gated", timeout=120)
        assert first["result"] == "Succeeded", first

        proxy.hold()  # the next run's upload is held: it keeps the database Lease
        backup_now(custom, namespace, "gated")
        holder = f"chatbackup/{namespace}/gated"
        coordination = client.CoordinationV1Api(api)
        wait_for(lambda: _database_lease_holder(coordination, namespace, holder), timeout=60,
                 what="the backup to hold the database Lease")
        source = {**s3_spec(s3_url, bucket, prefix=""), "key": first["key"]}
        del source["prefix"]
        create(custom, other, "chatrecoveries", "ChatRecovery", "restore", {
            "source": {"s3": source},
            "target": {"mongodb": {"uriSecretRef": {"name": "mongo"}, "database": database}},
            "mode": "Merge",
        })

        def waits() -> Any:
            found = status(custom, other, "chatrecoveries", "restore")
            resolve = next((s for s in found.get("steps", []) if s["name"] == "Resolve"), {})
            return holder in resolve.get("message", "") and resolve
        waiting = wait_for(waits, timeout=60, interval=0.3, what="the restore to wait")
        assert waiting["state"] == "Running"
        later = steps(status(custom, other, "chatrecoveries", "restore"))
        del later["Resolve"]
        assert set(later.values()) == {"Pending"}, later  # nothing until the backup is done

        proxy.restore()
        second = finished_run(custom, namespace, "gated", after=first["id"], timeout=120)
        assert second["result"] == "Succeeded", second
        ended = recovery_ended(custom, other, "restore", timeout=120)
        assert ended["phase"] == "Succeeded", ended
        assert mongo_client[database].rooms.count_documents({}) == 5
    finally:
        proxy.close()


# -- case 15 --------------------------------------------------------------------------------


def test_an_unescaped_at_sign_in_the_password_is_refused_and_no_part_of_it_shows(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, database: str,
) -> None:
    """Case 15: pymongo would read `Xw9Host` out of this password as a host name; the
    connection string is refused naming the Secret and key, and no fragment of the
    password is in the status, the Events or the operator's log."""
    fragments = ("Zq7Ab", "Xw9Host", "Vb4Cd")
    password = "Zq7Ab@Xw9Host/Vb4Cd"
    base = environment["MONGODB_URI"].rstrip("/").removeprefix("mongodb://")
    create_secrets(core, namespace, f"mongodb://chat:{password}@{base}/")
    s3_url = environment["S3_ENDPOINT_URL"]
    create(custom, namespace, "chatbackups", "ChatBackup", "escaped",
           backup_spec(s3_url, new_bucket(s3_url), database))

    def refused() -> Any:
        found = condition(custom, namespace, "escaped", "Accepted")
        return found if found and found["status"] == "False" else None
    accepted = wait_for(refused, timeout=60, what="the URI refused")
    assert f"Secret {namespace}/mongo key 'uri'" in accepted["message"]
    assert "must be percent-encoded" in accepted["message"]
    assert "spec.mongodb.uriSecretRef" in accepted["message"]
    wait_for(lambda: "ReferenceNotFound" in [e.reason for e in events(core, namespace)],
             timeout=30, what="the Event")
    texts = [operator.read_text(errors="replace"),
             json.dumps(status(custom, namespace, "chatbackups", "escaped"))]
    texts += [f"{e.reason} {e.message}" for e in events(core, namespace)]
    for text in texts:
        for fragment in fragments:
            assert fragment not in text, fragment


# -- case 19 --------------------------------------------------------------------------------


def test_missing_secrets_are_reported_at_once_and_the_backup_runs_when_they_appear(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    """Case 19: with neither Secret there, `Accepted=False` names both fields and nothing
    runs; when the Secrets appear the condition turns True and the first run (no schedule:
    one run at creation) happens, without waiting for any schedule. An endpoint without a
    host is refused by the API server."""
    mongo_client[database].rooms.insert_one({"name": "lobby"})
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    bad = backup_spec(s3_url, bucket, database)
    bad["storage"]["s3"]["endpoint"] = "http://"
    with pytest.raises(client.ApiException) as refused:
        create(custom, namespace, "chatbackups", "ChatBackup", "no-host", bad)
    assert refused.value.status == 422 and "endpoint" in str(refused.value.body)

    create(custom, namespace, "chatbackups", "ChatBackup", "early",
           backup_spec(s3_url, bucket, database))

    def unresolved() -> Any:
        found = condition(custom, namespace, "early", "Accepted")
        return found if found and found["reason"] == "ReferenceNotFound" else None
    accepted = wait_for(unresolved, timeout=60, what="Accepted=False")
    assert accepted["status"] == "False"
    assert f"spec.mongodb.uriSecretRef: Secret {namespace}/mongo does not exist" in (
        accepted["message"]
    )
    assert "spec.storage.s3.credentialsSecretRef" in accepted["message"]
    assert "lastBackup" not in status(custom, namespace, "chatbackups", "early")

    # The URI Secret without its key: the message names the key.
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="mongo"),
        data={"url": base64.b64encode(b"mongodb://x/").decode()},
    ))
    wait_for(lambda: "has no key 'uri'" in (unresolved() or {}).get("message", ""),
             timeout=30, what="the missing key named")
    core.delete_namespaced_secret("mongo", namespace)

    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    ok = wait_for(lambda: (condition(custom, namespace, "early", "Accepted") or {}).get(
        "status") == "True", timeout=30, what="Accepted=True once the Secrets exist")
    assert ok
    run = finished_run(custom, namespace, "early", timeout=120)
    assert run["result"] == "Succeeded", run
    assert_no_secrets(custom, core, namespace, operator)


# -- case 18 (ChatBackup half) ----------------------------------------------------------------


def test_an_unexpected_error_in_a_look_is_told_in_status(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, database: str,
) -> None:
    """Case 18: a status a human broke (a start time that is not a time) makes every look
    raise; the error is in a `Stalled` condition, not only a retry loop in the log."""
    s3_url = environment["S3_ENDPOINT_URL"]
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatbackups", "ChatBackup", "broken",
           backup_spec(s3_url, new_bucket(s3_url), database, schedule="0 3 * * *",
                       suspend=True))
    wait_for(lambda: condition(custom, namespace, "broken", "Accepted"), timeout=60,
             what="a first look")
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "chatbackups", "broken",
        {"status": {"lastBackup": {"id": "20261201_030000", "result": "Running",
                                   "startedAt": "yesterday"}}},
    )
    backup_now(custom, namespace, "broken")  # wakes the daemon
    stalled = wait_for(
        lambda: (c := condition(custom, namespace, "broken", "Stalled")) and c["status"] == "True"
        and c, timeout=60, what="Stalled=True",
    )
    assert stalled["reason"] == "UnexpectedError"
    assert "unexpected ValueError in a look" in stalled["message"]


# -- case 21 (ChatBackup) -----------------------------------------------------------------


def test_without_an_operator_a_default_policy_chatbackup_is_deleted_at_once(
    environment: dict[str, str], crds: None, namespace: str, tmp_path: Path,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, database: str,
) -> None:
    """Case 21: only `deletionPolicy: Delete` carries the finalizer; after the operator is
    gone (helm uninstall), `kubectl delete cbak` of a default-policy ChatBackup completes."""
    s3_url = environment["S3_ENDPOINT_URL"]
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    suspended = {"schedule": "0 3 * * *", "suspend": True}
    with operator_process(tmp_path / "operator.log", localenv.free_port(), [namespace]):
        create(custom, namespace, "chatbackups", "ChatBackup", "kept",
               backup_spec(s3_url, new_bucket(s3_url), database, **suspended))
        create(custom, namespace, "chatbackups", "ChatBackup", "deleted",
               backup_spec(s3_url, new_bucket(s3_url), database, deletionPolicy="Delete",
                           **suspended))
        for name in ("kept", "deleted"):
            wait_for(lambda n=name: condition(custom, namespace, n, "Accepted"), timeout=60,
                     what=f"{name} looked at")

        def finalizers(name: str) -> list[str]:
            obj = custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "chatbackups", name)
            return list(obj["metadata"].get("finalizers") or [])
        wait_for(lambda: finalizers("deleted"), timeout=30, what="the Delete one's finalizer")
        assert finalizers("kept") == []
    done = kubectl("delete", "cbak", "kept", "-n", namespace, "--timeout=30s", check=False)
    assert done.returncode == 0, done.stderr
    # The Delete one waits for an operator, as it should; let the namespace go.
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "chatbackups", "deleted", {"metadata": {"finalizers": None}}
    )
