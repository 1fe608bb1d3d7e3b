"""ChatRecovery through the real operator: a runbook tarball of the real mongodump
restored, a round trip that undoes later writes with the app quiesced and brought back
healthy, and a corrupted tarball refused before the database is touched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from kubernetes import client
from pymongo import MongoClient

from backups import (
    ENV_MESSAGES,
    assert_no_secrets,
    available,
    backup_spec,
    create,
    create_secrets,
    deployment,
    finished_run,
    free_port,
    new_bucket,
    reasons,
    recovery_ended,
    s3_spec,
    status,
    steps,
    uri_with_password,
)
from chatops.api.common import GROUP, VERSION
from support import operator_process, wait_for
from test_backup_engine import fingerprint, indexes, seed, tool

pytestmark = [pytest.mark.e2e, pytest.mark.mongodb]


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


def _healthy(core: client.CoreV1Api, namespace: str, service: str) -> str:
    """The Service `service` in front of the Deployment of that name, and its pods'
    /api/health as the host reaches it (through the simulator's view of the Service):
    2xx only while a ready pod answers."""
    core.create_namespaced_service(namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": service},
        "spec": {"selector": {"app": service}, "ports": [{"port": 8080}]},
    })
    return f"{os.environ['CHATAPP_URL']}/services/{namespace}/{service}/proxy/api/health"


def test_a_runbook_tarball_of_the_real_mongodump_is_restored_by_a_chatrecovery(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str, tmp_path: Path,
) -> None:
    seed(mongo_client, database, ENV_MESSAGES)
    before, index_before = fingerprint(mongo_client, database), indexes(mongo_client, database)
    dumped = tmp_path / "dump"
    done = tool("mongodump", "--uri", environment["MONGODB_URI"], "--db", database,
                "--out", str(dumped))
    assert done.returncode == 0, done.stderr
    name = "mongodb_20261126_031500.tar.gz"
    subprocess.run(["tar", "czf", str(tmp_path / name), "-C", str(dumped), "."], check=True)
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    boto3.client("s3", endpoint_url=s3_url).upload_file(
        str(tmp_path / name), bucket, f"runbook/{name}"
    )
    mongo_client.drop_database(database)  # the disaster

    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    source = {**s3_spec(s3_url, bucket, prefix=""), "key": f"runbook/{name}"}
    del source["prefix"]
    create(custom, namespace, "chatrecoveries", "ChatRecovery", "from-runbook", {
        "source": {"s3": source},
        "target": {"mongodb": {"uriSecretRef": {"name": "mongo"}, "database": database}},
        "mode": "DropDatabase",
    })
    ended = recovery_ended(custom, namespace, "from-runbook", timeout=180)
    assert ended["phase"] == "Succeeded", ended
    assert steps(ended) == {
        "Resolve": "Succeeded", "Quiesce": "Skipped", "Download": "Succeeded",
        "Restore": "Succeeded", "Replay": "Skipped", "Verify": "Succeeded", "Resume": "Skipped",
        "HealthCheck": "Skipped",
    }
    assert ended["restoredDocuments"] == ENV_MESSAGES + 220
    assert fingerprint(mongo_client, database) == before
    assert indexes(mongo_client, database) == index_before
    assert "RecoverySucceeded" in reasons(core, namespace, "from-runbook")
    assert_no_secrets(custom, core, namespace, operator)


def test_a_round_trip_undoes_later_writes_with_the_app_quiesced_and_back_healthy(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, apps: client.AppsV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    seed(mongo_client, database, 3000)
    before = fingerprint(mongo_client, database)
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatbackups", "ChatBackup", "nightly",
           backup_spec(s3_url, bucket, database))
    backup = finished_run(custom, namespace, "nightly", timeout=120)
    assert backup["result"] == "Succeeded", backup

    deployment(apps, namespace, "chat-api", 2)
    deployment(apps, namespace, "chat-worker", 1)
    wait_for(lambda: available(apps, namespace, "chat-api") == (2, 2), timeout=90,
             what="chat-api available")
    db = mongo_client[database]
    db.messages.delete_many({"edited": True})
    room = db.rooms.find_one({"name": "room-3"})
    assert room is not None
    db.messages.update_many({"roomId": room["_id"]}, {"$set": {"text": "rewritten"}})
    db.users.insert_one({"username": "intruder"})
    db.create_collection("scratch")
    assert fingerprint(mongo_client, database) != before

    health = _healthy(core, namespace, "chat-api")
    create(custom, namespace, "chatrecoveries", "ChatRecovery", "undo", {
        "source": {"backupRef": {"name": "nightly", "id": "latest"}},
        "mode": "DropDatabase",
        "quiesce": {"deployments": ["chat-api", "chat-worker"]},
        "postRestore": {"healthChecks": [{"url": health}], "timeoutSeconds": 60},
    })
    ended = recovery_ended(custom, namespace, "undo", timeout=180)
    assert ended["phase"] == "Succeeded", ended
    # Replay runs for a spec.pointInTime restore only
    done = steps(ended)
    assert done.pop("Replay") == "Skipped"
    assert set(done.values()) == {"Succeeded"}
    assert ended["backup"]["id"] == backup["id"]
    assert ended["quiesced"] == {"chat-api": 2, "chat-worker": 1}
    assert fingerprint(mongo_client, database) == before
    assert "scratch" not in db.list_collection_names()
    wait_for(lambda: available(apps, namespace, "chat-api") == (2, 2), timeout=90,
             what="chat-api back at 2 available replicas")
    assert available(apps, namespace, "chat-worker")[0] == 1
    ready = next(c for c in ended["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    shown = subprocess.run(["kubectl", "get", "crec", "undo", "-n", namespace],
                           capture_output=True, text=True, check=True).stdout
    assert "Succeeded" in shown and backup["id"] in shown
    assert_no_secrets(custom, core, namespace, operator)


def test_a_corrupted_tarball_fails_the_recovery_before_the_database_is_touched(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, apps: client.AppsV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    seed(mongo_client, database, 2000)
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatbackups", "ChatBackup", "nightly",
           backup_spec(s3_url, bucket, database))
    backup = finished_run(custom, namespace, "nightly", timeout=120)
    assert backup["result"] == "Succeeded", backup
    s3 = boto3.client("s3", endpoint_url=s3_url)
    data = bytearray(s3.get_object(Bucket=bucket, Key=backup["key"])["Body"].read())
    data[len(data) // 2] ^= 0x01
    s3.put_object(Bucket=bucket, Key=backup["key"], Body=bytes(data))
    mongo_client[database].canary.insert_one({"_id": "written after the backup"})
    before = fingerprint(mongo_client, database)
    deployment(apps, namespace, "chat-api", 2)

    create(custom, namespace, "chatrecoveries", "ChatRecovery", "bad", {
        "source": {"backupRef": {"name": "nightly"}},
        "mode": "DropDatabase",
        "quiesce": {"deployments": ["chat-api"]},
    })
    ended = recovery_ended(custom, namespace, "bad", timeout=120)
    assert ended["phase"] == "Failed"
    assert steps(ended) == {
        "Resolve": "Succeeded", "Quiesce": "Succeeded", "Download": "Failed",
        "Restore": "Skipped", "Replay": "Skipped", "Verify": "Skipped", "Resume": "Succeeded",
        "HealthCheck": "Skipped",
    }
    assert "sha256" in ended["message"] and "nothing was restored" in ended["message"]
    assert "scaled back up" in ended["message"]
    assert fingerprint(mongo_client, database) == before  # untouched, canary included
    assert apps.read_namespaced_deployment("chat-api", namespace).spec.replicas == 2
    assert {"DownloadFailed", "RecoveryFailed"} <= set(reasons(core, namespace, "bad"))
    assert_no_secrets(custom, core, namespace, operator)


def _stalled(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any] | None:
    found = status(custom, namespace, "chatrecoveries", name)
    return next((c for c in found.get("conditions") or [] if c["type"] == "Stalled"), None)


def test_a_look_that_raises_is_told_in_status_and_cleared_once_looks_succeed(
    environment: dict[str, str], crds: None, namespace: str, tmp_path: Path,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, database: str,
) -> None:
    """Issue 8, case 18 (ChatRecovery half): a status edited by hand (a phase whose steps
    are missing) makes every look raise outside any step. It is said in a `Stalled`
    condition, not only retried in the log, and a look that succeeds again clears it."""
    s3_url = environment["S3_ENDPOINT_URL"]
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    source = {**s3_spec(s3_url, new_bucket(s3_url), prefix=""), "key": "runbook/none.tar.gz"}
    del source["prefix"]
    create(custom, namespace, "chatrecoveries", "ChatRecovery", "hand-edited", {
        "source": {"s3": source},
        "target": {"mongodb": {"uriSecretRef": {"name": "mongo"}, "database": database}},
        "mode": "Merge",
    })
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "chatrecoveries", "hand-edited",
        {"status": {"phase": "Quiescing", "steps": [{"name": "Quiesce", "state": "Running"}]}},
    )
    with operator_process(tmp_path / "operator.log", free_port(), [namespace]):
        stalled = wait_for(
            lambda: (c := _stalled(custom, namespace, "hand-edited")) and c["status"] == "True"
            and c, timeout=60, what="Stalled=True",
        )
        assert stalled["reason"] == "UnexpectedError"
        assert "was the status edited by hand" in stalled["message"], stalled
        # the human puts the status right: the next look goes on, and says so
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "chatrecoveries", "hand-edited",
            {"status": {"phase": None, "steps": None}},
        )
        ended = recovery_ended(custom, namespace, "hand-edited", timeout=120)
        assert ended["phase"] == "Failed"  # the source object does not exist
        cleared = _stalled(custom, namespace, "hand-edited")
        assert cleared is not None and cleared["status"] == "False", cleared
