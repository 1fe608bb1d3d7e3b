"""Restores at the edges, through the real operator, FerretDB, the S3 server and the stock
mongodump / mongorestore / tar (issue 8):

- case 11: long collection names (and names that need escaping) survive `tar -xzf`, the
  stock mongorestore and a ChatRecovery; a runbook mongodump tarball with such a name is
  restored; a restore that fails part-way leaves the database exactly as it was;
- case 12: a chatops tarball whose manifest was deleted is refused ("manifest missing")
  unless `allowUnverified`; a runbook tarball without one still restores, said unverified;
- case 14: deleting a ChatRecovery mid-restore brings the app back and lets go.
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import bson
import pytest
from kubernetes import client
from pymongo import MongoClient

from backups import (
    CuttableProxy,
    available,
    backup_spec,
    create,
    create_secrets,
    deployment,
    finished_run,
    new_bucket,
    reasons,
    recovery_ended,
    s3_spec,
    status,
    uri_with_password,
)
from chatops.backup import layout, swap
from support import GROUP, VERSION, wait_for
from test_backup_engine import fingerprint, restored_counts, seed, tool

pytestmark = [pytest.mark.e2e, pytest.mark.mongodb]

LONG = "messages archive " + "é" * 40 + "/2026"
"""102 bytes, but 262 once escaped: past mongodump's 238, so its file name is shortened."""
ESCAPED = "rooms/2026 été"
"""Short, with characters that need escaping in a file name."""
QUIESCED_BY = "chatops.dev/quiesced-by"


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


def _seed_names(mongo_client: MongoClient[dict[str, Any]], database: str) -> None:
    seed(mongo_client, database, 2000)
    db = mongo_client[database]
    db[LONG].insert_many([{"_id": i, "text": f"archived {i}", "ts": i * 1.5} for i in range(300)])
    db[LONG].create_index("ts")
    db[ESCAPED].insert_many([{"_id": f"r{i}", "name": f"salle {i}"} for i in range(30)])


def _runbook_tarball(
    environment: dict[str, str], database: str, tmp_path: Path, name: str
) -> Path:
    """What the runbook does: mongodump --out, then tar czf of the folder."""
    dumped = tmp_path / f"dump-{name}"
    done = tool("mongodump", "--uri", environment["MONGODB_URI"], "--db", database,
                "--out", str(dumped))
    assert done.returncode == 0, done.stderr
    return dumped


def _tar(folder: Path, tarball: Path) -> Path:
    subprocess.run(["tar", "czf", str(tarball), "-C", str(folder), "."], check=True)
    return tarball


def _upload(environment: dict[str, str], bucket: str, path: Path, key: str) -> None:
    boto3.client("s3", endpoint_url=environment["S3_ENDPOINT_URL"]).upload_file(
        str(path), bucket, key
    )


def _from_s3(environment: dict[str, str], bucket: str, key: str, **extra: Any) -> dict[str, Any]:
    source = {**s3_spec(environment["S3_ENDPOINT_URL"], bucket, prefix=""), "key": key, **extra}
    del source["prefix"]
    return source


def _none_of_ours(mongo_client: MongoClient[dict[str, Any]], database: str) -> None:
    left = [n for n in mongo_client[database].list_collection_names() if swap.is_ours(n)]
    assert left == [], f"temporary collections left behind: {left}"


# -- case 11 ----------------------------------------------------------------------------


def test_long_and_escaped_names_survive_tar_the_stock_mongorestore_and_a_chatrecovery(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str, tmp_path: Path,
) -> None:
    """Case 11: a ChatBackup of a collection whose escaped name passes mongodump's limit
    is extracted by stock `tar -xzf` (no "File name too long"), restored by the stock
    mongorestore and by a ChatRecovery, documents equal."""
    _seed_names(mongo_client, database)
    before = fingerprint(mongo_client, database)
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatbackups", "ChatBackup", "nightly",
           backup_spec(s3_url, bucket, database))
    backup = finished_run(custom, namespace, "nightly", timeout=120)
    assert backup["result"] == "Succeeded", backup

    archive = tmp_path / "backup.tar.gz"
    boto3.client("s3", endpoint_url=s3_url).download_file(bucket, backup["key"], str(archive))
    out = tmp_path / "out"
    out.mkdir()
    untar = subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)],
                           capture_output=True, text=True)
    assert untar.returncode == 0, untar.stderr
    files = sorted(p.name for p in (out / database).iterdir())
    stem = layout.escape_collection(LONG)
    assert len(stem) == 238 and "%24" in stem  # shortened as mongodump shortens it
    assert f"{stem}.bson" in files and f"{stem}.metadata.json" in files
    assert "rooms%2F2026+%C3%A9t%C3%A9.bson" in files

    # The real mongodump names the files the same way.
    real = _runbook_tarball(environment, database, tmp_path, "real")
    theirs = sorted(p.name for p in (real / database).iterdir() if p.name != "prelude.json")
    assert theirs == files

    fresh = f"{database}_x"
    done = tool(
        "mongorestore", "--uri", environment["MONGODB_URI"], "--nsFrom", f"{database}.*",
        "--nsTo", f"{fresh}.*", "--numParallelCollections=1",
        "--numInsertionWorkersPerCollection=1", "--noIndexRestore", "--dir", str(out),
    )
    try:
        assert restored_counts(done.stderr) == (2000 + 220 + 330, 0), done.stderr
        assert fingerprint(mongo_client, fresh) == before
    finally:
        mongo_client.drop_database(fresh)

    mongo_client.drop_database(database)  # the disaster
    create(custom, namespace, "chatrecoveries", "ChatRecovery", "back", {
        "source": {"backupRef": {"name": "nightly"}}, "mode": "DropDatabase",
    })
    ended = recovery_ended(custom, namespace, "back", timeout=180)
    assert ended["phase"] == "Succeeded", ended
    assert fingerprint(mongo_client, database) == before
    assert [i["name"] for i in mongo_client[database][LONG].list_indexes()] == ["_id_", "ts_1"]
    _none_of_ours(mongo_client, database)


def test_a_runbook_tarball_with_a_shortened_name_is_restored_by_a_chatrecovery(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str, tmp_path: Path,
) -> None:
    """Case 11: the stock mongodump's tarball of a long name: the name comes from the
    metadata's collectionName, not the shortened file name. Also case 12's other half: a
    runbook tarball without owner metadata or manifest restores, said unverified."""
    _seed_names(mongo_client, database)
    before = fingerprint(mongo_client, database)
    tarball = _tar(_runbook_tarball(environment, database, tmp_path, "rb"),
                   tmp_path / "mongodb_20261126_031500.tar.gz")
    bucket = new_bucket(environment["S3_ENDPOINT_URL"])
    _upload(environment, bucket, tarball, "runbook/mongodb_20261126_031500.tar.gz")
    mongo_client[database][LONG].delete_many({})
    mongo_client[database].messages.delete_many({"edited": True})

    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatrecoveries", "ChatRecovery", "runbook", {
        "source": {"s3": _from_s3(environment, bucket, "runbook/mongodb_20261126_031500.tar.gz")},
        "target": {"mongodb": {"uriSecretRef": {"name": "mongo"}, "database": database}},
        "mode": "DropCollections",
    })
    ended = recovery_ended(custom, namespace, "runbook", timeout=180)
    assert ended["phase"] == "Succeeded", ended
    assert fingerprint(mongo_client, database) == before
    download = next(s for s in ended["steps"] if s["name"] == "Download")
    assert "NOT verified against a manifest" in download["message"]
    _none_of_ours(mongo_client, database)


def _refused_document(folder: Path, database: str, ferretdb: bool) -> None:
    """A later collection whose framing is sound but which the server refuses: two
    documents with the same `_id`. Only the load can find it."""
    name = "zz_later"
    (folder / database / f"{name}.metadata.json").write_bytes(
        layout.metadata_json(layout.CollectionMetadata(collection_name=name))
    )
    docs = [bson.encode({"_id": i, "ok": True}) for i in range(50)]
    docs.append(bson.encode({"_id": 7, "ok": False}))
    (folder / database / f"{name}.bson").write_bytes(b"".join(docs))


def _unacceptable_name(folder: Path, database: str, ferretdb: bool) -> None:
    """A later collection named past the target's limit: on FerretDB (whose limit is
    shorter than MongoDB's) a name only the server can refuse; on MongoDB a namespace
    over 255 bytes. Its file name is shortened, as mongodump would."""
    name = "zz_" + "n" * ((250 if ferretdb else 260) - len(database))
    stem = layout.escape_collection(name)
    (folder / database / f"{stem}.metadata.json").write_bytes(
        layout.metadata_json(layout.CollectionMetadata(collection_name=name))
    )
    (folder / database / f"{stem}.bson").write_bytes(bson.encode({"_id": 1}))


@pytest.mark.parametrize(
    ("damage", "mode"),
    [
        (_refused_document, "DropDatabase"),
        (_refused_document, "DropCollections"),
        (_refused_document, "Merge"),
        (_unacceptable_name, "DropDatabase"),
    ],
)
def test_a_restore_that_fails_part_way_leaves_the_database_as_it_was(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str, tmp_path: Path,
    damage: Any, mode: str,
) -> None:
    """Case 11: a runbook tarball whose last collection cannot be restored; the restore
    fails and every collection holds exactly what it held before (digests equal)."""
    _seed_names(mongo_client, database)
    folder = _runbook_tarball(environment, database, tmp_path, "bad")
    damage(folder, database, "ferretdbVersion" in mongo_client.admin.command("buildInfo"))
    tarball = _tar(folder, tmp_path / "mongodb_20261126_031500.tar.gz")
    bucket = new_bucket(environment["S3_ENDPOINT_URL"])
    _upload(environment, bucket, tarball, "bad/mongodb_20261126_031500.tar.gz")
    # Later writes the restore would undo: they must survive the failed restore.
    mongo_client[database].messages.delete_many({"edited": True})
    mongo_client[database].scratch.insert_one({"_id": "written after the dump"})
    before = fingerprint(mongo_client, database)

    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatrecoveries", "ChatRecovery", "bad", {
        "source": {"s3": _from_s3(environment, bucket, "bad/mongodb_20261126_031500.tar.gz")},
        "target": {"mongodb": {"uriSecretRef": {"name": "mongo"}, "database": database}},
        "mode": mode,
    })
    ended = recovery_ended(custom, namespace, "bad", timeout=180)
    assert ended["phase"] == "Failed", ended
    assert "nothing was restored" in ended["message"], ended["message"]
    assert fingerprint(mongo_client, database) == before
    _none_of_ours(mongo_client, database)


# -- case 12 ----------------------------------------------------------------------------


def test_a_chatops_tarball_whose_manifest_was_deleted_is_refused_unless_allowed(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    """Case 12: source.s3 on a tarball a ChatBackup wrote, manifest deleted: refused with
    "manifest missing" and the newer data kept; restored with allowUnverified."""
    seed(mongo_client, database, 500)
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatbackups", "ChatBackup", "nightly",
           backup_spec(s3_url, bucket, database))
    backup = finished_run(custom, namespace, "nightly", timeout=120)
    assert backup["result"] == "Succeeded", backup
    boto3.client("s3", endpoint_url=s3_url).delete_object(
        Bucket=bucket, Key=layout.manifest_key_for(backup["key"])
    )
    mongo_client[database].newer.insert_one({"_id": "written after the backup"})
    newer = fingerprint(mongo_client, database)

    target = {"mongodb": {"uriSecretRef": {"name": "mongo"}, "database": database}}
    create(custom, namespace, "chatrecoveries", "ChatRecovery", "unverified", {
        "source": {"s3": _from_s3(environment, bucket, backup["key"])},
        "target": target, "mode": "DropDatabase",
    })
    ended = recovery_ended(custom, namespace, "unverified", timeout=120)
    assert ended["phase"] == "Failed", ended
    assert "manifest missing" in ended["message"]
    assert fingerprint(mongo_client, database) == newer  # DropDatabase wiped nothing

    create(custom, namespace, "chatrecoveries", "ChatRecovery", "accepted", {
        "source": {"s3": _from_s3(environment, bucket, backup["key"], allowUnverified=True)},
        "target": target, "mode": "DropDatabase",
    })
    ended = recovery_ended(custom, namespace, "accepted", timeout=120)
    assert ended["phase"] == "Succeeded", ended
    assert "newer" not in mongo_client[database].list_collection_names()


# -- case 14 ----------------------------------------------------------------------------


def test_a_malformed_tarball_fails_the_recovery_and_brings_the_app_back(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, apps: client.AppsV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str, tmp_path: Path,
) -> None:
    """Case 14: a metadata file whose `options` is not a document used to raise a
    TypeError out of the step, and the daemon restarted forever with the app at 0. Now the
    step fails with a message and the app is scaled back."""
    seed(mongo_client, database, 200)
    folder = _runbook_tarball(environment, database, tmp_path, "odd")
    (folder / database / "rooms.metadata.json").write_bytes(b'{"options":[1],"indexes":[]}')
    tarball = _tar(folder, tmp_path / "mongodb_20261126_031500.tar.gz")
    bucket = new_bucket(environment["S3_ENDPOINT_URL"])
    _upload(environment, bucket, tarball, "odd/mongodb_20261126_031500.tar.gz")
    before = fingerprint(mongo_client, database)
    deployment(apps, namespace, "chat-api", 2)

    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatrecoveries", "ChatRecovery", "odd", {
        "source": {"s3": _from_s3(environment, bucket, "odd/mongodb_20261126_031500.tar.gz")},
        "target": {"mongodb": {"uriSecretRef": {"name": "mongo"}, "database": database}},
        "mode": "DropDatabase", "quiesce": {"deployments": ["chat-api"]},
    })
    ended = recovery_ended(custom, namespace, "odd", timeout=120)
    assert ended["phase"] == "Failed", ended
    assert "metadata" in ended["message"] and "scaled back up" in ended["message"]
    assert apps.read_namespaced_deployment("chat-api", namespace).spec.replicas == 2
    assert fingerprint(mongo_client, database) == before
    body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "chatrecoveries", "odd")
    assert "chatops.dev/recovery-running" not in (body["metadata"].get("finalizers") or [])


class HeldProxy(CuttableProxy):
    """A TCP forwarder that can hold every byte until released: a restore that reaches
    the database through it waits in Restoring for as long as the test needs."""

    def __init__(self, target_port: int) -> None:
        self.flowing = threading.Event()
        self.flowing.set()
        super().__init__(target_port)

    def _pipe(self, src: Any, dst: Any) -> None:  # type: ignore[override]
        try:
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()


@pytest.fixture
def held(environment: dict[str, str]) -> Iterator[HeldProxy]:
    port = int(environment["MONGODB_URI"].rsplit(":", 1)[1].split("/")[0])
    proxy = HeldProxy(port)
    yield proxy
    proxy.flowing.set()
    proxy.close()


def test_deleting_a_recovery_mid_restore_brings_the_app_back_and_lets_go(
    environment: dict[str, str], operator: Path, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api, apps: client.AppsV1Api,
    api: client.ApiClient, mongo_client: MongoClient[dict[str, Any]], database: str,
    held: HeldProxy,
) -> None:
    """Case 14: `kubectl delete crec` while it is Restoring, the Deployments at 0: they
    are scaled back to their replicas, the quiesce marks cleared (a ChatRelease resumes),
    the database Lease released, an Event says so, and the database is as it was."""
    seed(mongo_client, database, 2000)
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    create_secrets(core, namespace, uri_with_password(environment["MONGODB_URI"]))
    create(custom, namespace, "chatbackups", "ChatBackup", "nightly",
           backup_spec(s3_url, bucket, database))
    backup = finished_run(custom, namespace, "nightly", timeout=120)
    assert backup["result"] == "Succeeded", backup
    mongo_client[database].newer.insert_one({"_id": "kept"})
    before = fingerprint(mongo_client, database)
    deployment(apps, namespace, "chat-api", 2)
    deployment(apps, namespace, "chat-worker", 1)
    wait_for(lambda: available(apps, namespace, "chat-api") == (2, 2), timeout=90,
             what="chat-api available")

    # The restore reaches the database through a proxy holding every byte.
    held_uri = f"mongodb://127.0.0.1:{held.port}/"
    encoded = base64.b64encode(uri_with_password(held_uri).encode()).decode()
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="held"), data={"uri": encoded}))
    create(custom, namespace, "chatrecoveries", "ChatRecovery", "doomed", {
        "source": {"backupRef": {"name": "nightly"}},
        "target": {"mongodb": {"uriSecretRef": {"name": "held"}, "database": database}},
        "mode": "DropDatabase",
        "quiesce": {"deployments": ["chat-api", "chat-worker"]},
    })
    # Resolve reaches the database once (the Lease is named by the server's identity);
    # the next connection is the restore's own: hold it from the moment the app quiesces.
    wait_for(lambda: status(custom, namespace, "chatrecoveries", "doomed").get("phase")
             == "Quiescing", timeout=120, interval=0.05, what="doomed Quiescing")
    held.flowing.clear()
    wait_for(lambda: status(custom, namespace, "chatrecoveries", "doomed").get("phase")
             == "Restoring", timeout=120, interval=0.1, what="doomed Restoring")
    assert apps.read_namespaced_deployment("chat-api", namespace).spec.replicas == 0
    body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "chatrecoveries",
                                               "doomed")
    assert "chatops.dev/recovery-running" in body["metadata"]["finalizers"]

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "chatrecoveries",
                                           "doomed")
    held.flowing.set()

    def gone() -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "chatrecoveries",
                                                "doomed")
        except client.ApiException as err:
            return err.status == 404
        return False

    wait_for(gone, timeout=90, interval=0.2, what="the deleted recovery to go")
    for name, replicas in (("chat-api", 2), ("chat-worker", 1)):
        d = apps.read_namespaced_deployment(name, namespace)
        assert d.spec.replicas == replicas
        assert QUIESCED_BY not in (d.metadata.annotations or {})
    wait_for(lambda: available(apps, namespace, "chat-api") == (2, 2), timeout=90,
             what="chat-api back at 2 available replicas")
    assert "RecoveryDeleted" in reasons(core, namespace, "doomed")
    told = next(e.message for e in core.list_namespaced_event(namespace).items
                if e.reason == "RecoveryDeleted")
    assert "scaled back" in told and "Lease released" in told
    assert "nothing was restored" in told  # stopped before its commit, not failed
    assert "RestoreFailed" not in reasons(core, namespace, "doomed")
    leases = client.CoordinationV1Api(api).list_lease_for_all_namespaces().items
    holders = [lease.spec.holder_identity or "" for lease in leases]
    assert not [h for h in holders if h.startswith(f"chatrecovery/{namespace}/doomed")]
    assert fingerprint(mongo_client, database) == before  # nothing was restored
    _none_of_ours(mongo_client, database)
