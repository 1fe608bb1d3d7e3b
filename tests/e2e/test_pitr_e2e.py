"""Point-in-time recovery through the real operator, FerretDB's oplog and S3 (issue 9):

- the operator SIGKILLed while archiving, several times: the slices still hold every op
  of the database after the base backup exactly once, in order, as the oplog has them;
  a restore to a time between two base backups equals the database at that time; a
  corrupted, then a missing slice, refuses the restore before anything is touched;
- the oplog rolled over while the operator is down: `PointInTimeGap` with the lost
  interval, a new base backup, and a restore to a time inside the gap refused;
- a restore to the start of a bad ChatRelease revision equals the data before its
  first write;
- a restore drill replays the archive after its base backup into the scratch database,
  every op of it, and fails naming a corrupted slice.
"""

from __future__ import annotations

import datetime
import gzip
import json
import math
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import bson
import pytest
from kubernetes import client
from pymongo import MongoClient

import releases as rel
from backups import (
    backup_now,
    backup_spec,
    create,
    create_secrets,
    drill_after,
    finished_run,
    free_port,
    new_bucket,
    reasons,
    recovery_ended,
    status,
    steps,
    verify_now,
)
from support import start_operator, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.mongodb]
PIT = {"enabled": True, "flushInterval": "1s", "sliceLength": "4s"}


class Operator:
    """`chatops run` for one namespace, which the test may SIGKILL and start again."""

    def __init__(self, namespace: str, log: Path) -> None:
        self.namespace, self.log = namespace, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # its Leases in the test's namespace, as every test's operator (tests/e2e/conftest.py)
        self.proc = start_operator(self.log, free_port(), [self.namespace])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture
def own_operator(crds: None, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(namespace, tmp_path / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


class Writer(threading.Thread):
    """A chat app writing steadily: new messages, edits and deletions, each acknowledged
    before the next. `quiet()` holds it still across a second boundary and returns that
    whole second: nothing was written in it, so the database then is the database at it."""

    def __init__(self, uri: str, database: str, rate: float = 20.0, prefix: str = "m") -> None:
        super().__init__(daemon=True)
        self.client: MongoClient[dict[str, Any]] = MongoClient(uri)
        self.coll = self.client[database]["messages"]
        self.rate, self.prefix = rate, prefix
        self.go, self.idle, self.done = threading.Event(), threading.Event(), threading.Event()
        self.go.set()
        self.last_ack = 0.0
        self.ids: list[str] = []
        self.n = 0
        self.rng = random.Random(9)

    def run(self) -> None:
        while not self.done.is_set():
            if not self.go.is_set():
                self.idle.set()
                self.go.wait(0.1)
                continue
            self.idle.clear()
            self._one()
            self.last_ack = time.time()
            time.sleep(1 / self.rate)
        self.idle.set()

    def _one(self) -> None:
        roll = self.rng.random()
        if roll < 0.6 or len(self.ids) < 5:
            self.n += 1
            doc_id = f"{self.prefix}{self.n:06d}"
            self.coll.insert_one({"_id": doc_id, "room": self.n % 7, "text": f"hello {self.n}"})
            self.ids.append(doc_id)
        elif roll < 0.85:
            target = self.rng.choice(self.ids)
            self.coll.update_one({"_id": target}, {"$set": {"text": f"edited {self.n}"}})
        else:
            target = self.ids.pop(self.rng.randrange(len(self.ids)))
            self.coll.delete_one({"_id": target})

    def quiet(self) -> datetime.datetime:
        """Hold still until a whole second passed with no write; that second."""
        self.go.clear()
        wait_for(self.idle.is_set, timeout=10, interval=0.02, what="the writer to pause")
        second = math.floor(self.last_ack) + 1
        wait_for(lambda: time.time() >= second + 1.05, timeout=5, interval=0.02,
                 what="a quiet second to pass")
        return datetime.datetime.fromtimestamp(second, datetime.UTC)

    def resume(self) -> None:
        self.go.set()

    def stop(self) -> None:
        self.done.set()
        self.go.set()
        self.join(timeout=10)
        self.client.close()


def contents(mongo: MongoClient[dict[str, Any]], database: str) -> dict[str, list[Any]]:
    """Every collection's documents, sorted by _id: what a user would compare."""
    return {
        name: sorted(mongo[database][name].find(), key=lambda d: str(d["_id"]))
        for name in sorted(mongo[database].list_collection_names())
    }


def oplog_ts(mongo: MongoClient[dict[str, Any]], database: str) -> list[tuple[int, int]]:
    """The oplog's entries of `database`, as (t, i), in order."""
    found = mongo["local"]["oplog.rs"].find(
        {"ns": {"$regex": f"^{database}\\."}}, {"ts": 1}
    ).sort("$natural", 1)
    return [(e["ts"].time, e["ts"].inc) for e in found]


def slices_in_s3(endpoint: str, bucket: str) -> list[dict[str, Any]]:
    """Complete slices (manifest and object) as a user finds them in the bucket, each
    with its ops' (t, i) read from the object."""
    s3 = boto3.client("s3", endpoint_url=endpoint)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="chat/pitr/")
    keys = {o["Key"] for page in pages for o in page.get("Contents", [])}
    out = []
    for key in sorted(k for k in keys if k.endswith(".manifest.json")):
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        if manifest["key"] not in keys:
            continue
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=manifest["key"])["Body"].read())
        ops = [(d["ts"].time, d["ts"].inc) for d in bson.decode_all(body)]
        out.append({**manifest, "ops": ops, "manifest_key": key})
    return out


def covered(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slices less those whose whole interval another covers (parts of a merge that was
    interrupted)."""
    def span(s: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int]]:
        return (s["previous"]["t"], s["previous"]["i"]), (s["last"]["t"], s["last"]["i"])

    return [
        s for s in found
        if not any(o is not s and span(o)[0] <= span(s)[0] and span(s)[1] <= span(o)[1]
                   and span(o) != span(s) for o in found)
    ]


def archived_to(custom: client.CustomObjectsApi, namespace: str, name: str) -> tuple[int, int]:
    pit = status(custom, namespace, "chatbackups", name).get("pointInTime") or {}
    ts = pit.get("lastArchivedTs") or {"t": 0, "i": 0}
    return int(ts["t"]), int(ts["i"])


def recover(
    custom: client.CustomObjectsApi, namespace: str, name: str, point: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    create(custom, namespace, "chatrecoveries", "ChatRecovery", name, {
        "source": {"backupRef": {"name": "chat"}}, "mode": "DropDatabase",
        "pointInTime": point, **extra,
    })
    return recovery_ended(custom, namespace, name, timeout=600)


@pytest.mark.timeout(1500)
def test_a_sigkilled_archiver_leaves_every_op_once_and_restores_to_any_second(
    environment: dict[str, str], own_operator: Operator, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    mongo_client[database]["rooms"].insert_many([{"_id": r, "name": f"room-{r}"} for r in range(7)])
    create_secrets(core, namespace, environment["MONGODB_URI"])
    create(custom, namespace, "chatbackups", "ChatBackup", "chat",
           backup_spec(s3_url, bucket, database, pointInTime=PIT))
    base1 = finished_run(custom, namespace, "chat", timeout=120)
    assert base1["result"] == "Succeeded", base1
    writer = Writer(environment["MONGODB_URI"], database)
    writer.start()
    try:
        rng = random.Random(3)
        for _ in range(3):  # killed mid-archive, three times, each after it went on
            before = wait_for(lambda: archived_to(custom, namespace, "chat") > (0, 0)
                              and archived_to(custom, namespace, "chat"),
                              timeout=300, what="ops archived")
            written = writer.n + rng.randint(3, 40)  # killed somewhere between two uploads
            wait_for(lambda w=written: writer.n >= w, timeout=30, interval=0.01,
                     what="more writes")
            own_operator.kill()
            writer.quiet()  # (while the next operator waits for the dead one's Lease)
            own_operator.start()
            wait_for(lambda b=before: archived_to(custom, namespace, "chat") > b, timeout=90,
                     interval=0.3, what="the restarted archiver to go on")
            writer.resume()
        at = writer.quiet()
        expected = contents(mongo_client, database)
        writer.resume()
        base2 = run_once_after(custom, namespace, base1["id"])
        assert base2["result"] == "Succeeded", base2
        more = writer.n + 40
        wait_for(lambda: writer.n > more, timeout=60, what="more writes after the second base")
    finally:
        writer.stop()
    last = oplog_ts(mongo_client, database)[-1]
    wait_for(lambda: archived_to(custom, namespace, "chat") >= last, timeout=300, interval=0.3,
             what="the archive to catch up with the oplog")

    # every op of the database after the first base, exactly once, in oplog order
    found = covered(slices_in_s3(s3_url, bucket))
    archived = [op for s in sorted(found, key=lambda s: (s["first"]["t"], s["first"]["i"]))
                for op in s["ops"]]
    consistent = _consistent(s3_url, bucket, base1["key"])
    assert archived == [op for op in oplog_ts(mongo_client, database) if op > consistent]
    assert len(set(archived)) == len(archived)

    shown = subprocess.run(
        [sys.executable, "-m", "chatops.cli", "restore-points", "chat", "-n", namespace],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "Archiving" in shown and base1["id"] in shown and "gap:" not in shown

    # a time between the two base backups: the database as it was then
    mongo_client[database]["messages"].insert_one({"_id": "after-everything"})
    ended = recover(custom, namespace, "back-then", {"time": at.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert ended["phase"] == "Succeeded", ended
    assert set(steps(ended).values()) <= {"Succeeded", "Skipped"}
    assert steps(ended)["Replay"] == "Succeeded"
    assert ended["pointInTime"]["base"] == base1["id"]
    assert contents(mongo_client, database) == expected

    # a corrupted slice, then a missing one: refused before anything is touched
    now = contents(mongo_client, database)
    s3 = boto3.client("s3", endpoint_url=s3_url)
    victim = next(s for s in found if s["count"] > 1
                  and (s["first"]["t"], s["first"]["i"]) <= (at.timestamp(), 0))
    body = bytearray(s3.get_object(Bucket=bucket, Key=victim["key"])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=victim["key"], Body=bytes(body))
    spoiled = recover(custom, namespace, "spoiled", {"time": at.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert spoiled["phase"] == "Failed"
    assert steps(spoiled)["Resolve"] == "Failed" and steps(spoiled)["Restore"] == "Skipped"
    assert victim["key"] in spoiled["message"]
    assert contents(mongo_client, database) == now
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": victim["key"]},
                                                         {"Key": victim["manifest_key"]}]})
    holed = recover(custom, namespace, "holed", {"time": at.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert holed["phase"] == "Failed" and steps(holed)["Resolve"] == "Failed"
    assert "spec.pointInTime.time" in holed["message"] and "missing" in holed["message"]
    assert contents(mongo_client, database) == now


def run_once_after(custom: client.CustomObjectsApi, namespace: str, after: str) -> dict[str, Any]:
    backup_now(custom, namespace, "chat")
    return finished_run(custom, namespace, "chat", after=after, timeout=120)


def _consistent(endpoint: str, bucket: str, tarball: str) -> tuple[int, int]:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    key = tarball.removesuffix(".tar.gz") + ".manifest.json"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    ts = manifest["consistentTime"]
    ts = ts.get("ts", ts)
    return int(ts["t"]), int(ts["i"])


@pytest.mark.timeout(1200)
def test_an_oplog_rolled_over_while_the_operator_is_down_is_a_gap_and_a_new_base(
    environment: dict[str, str], own_operator: Operator, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    create_secrets(core, namespace, environment["MONGODB_URI"])
    mongo_client[database]["messages"].insert_one({"_id": "first"})
    create(custom, namespace, "chatbackups", "ChatBackup", "chat",
           backup_spec(s3_url, bucket, database, pointInTime=PIT))
    base1 = finished_run(custom, namespace, "chat", timeout=120)
    assert base1["result"] == "Succeeded", base1
    mongo_client[database]["messages"].insert_many([{"_id": f"a{n}"} for n in range(20)])
    last = oplog_ts(mongo_client, database)[-1]
    wait_for(lambda: archived_to(custom, namespace, "chat") >= last, timeout=60, interval=0.3,
             what="the first ops archived")
    own_operator.kill()

    max_docs = int(environment.get("MONGODB_OPLOG_MAX_DOCS", "10000"))
    oplog = mongo_client["local"]["oplog.rs"]
    filler = mongo_client[f"{database}_filler"]["noise"]
    try:
        for start in range(0, max_docs + 500, 1000):  # the oplog rolls over past `last`
            filler.insert_many([{"n": n} for n in range(start, start + 1000)])
        first = wait_for(
            lambda: (f := oplog.find_one({}, sort=[("$natural", 1)])) is not None
            and (f["ts"].time, f["ts"].inc) > last and (f["ts"].time, f["ts"].inc),
            timeout=60, interval=0.5, what="the oplog to roll past the archive",
        )
        wait_for(lambda: oplog.count_documents({}) <= max_docs, timeout=60, interval=0.5,
                 what="the oplog trimmed to its size")
        oldest = oplog.find_one({}, sort=[("$natural", 1)])
        assert oldest is not None
        first = (oldest["ts"].time, oldest["ts"].inc)
        own_operator.start()
        gapped = wait_for(
            lambda: next((c for c in status(custom, namespace, "chatbackups", "chat")
                          .get("conditions", []) if c["type"] == "PointInTimeGap"
                          and c["status"] == "True"), None),
            timeout=90, interval=0.3, what="PointInTimeGap",
        )
        gap = status(custom, namespace, "chatbackups", "chat")["pointInTime"]["gaps"][-1]
        assert (gap["startTs"]["t"], gap["startTs"]["i"]) == last
        assert (gap["endTs"]["t"], gap["endTs"]["i"]) == first
        assert gap["start"] in gapped["message"] and gap["end"] in gapped["message"]
        assert "PointInTimeGap" in reasons(core, namespace, "chat")
        base2 = finished_run(custom, namespace, "chat", after=base1["id"], timeout=120)
        assert base2["result"] == "Succeeded", base2
        wait_for(
            lambda: next(c for c in status(custom, namespace, "chatbackups", "chat")
                         ["conditions"] if c["type"] == "PointInTimeGap")["status"] == "False",
            timeout=90, interval=0.3, what="the archive to start again from the new base",
        )
        resumed = status(custom, namespace, "chatbackups", "chat")["pointInTime"]["gaps"][-1]
        assert resumed["resumedFrom"] == base2["id"]

        inside = datetime.datetime.fromtimestamp(last[0] + (first[0] - last[0]) / 2, datetime.UTC)
        if first[0] - last[0] < 2:  # the gap is within a second or two: its end second
            inside = datetime.datetime.fromtimestamp(first[0] - 0.5, datetime.UTC)
        untouched = contents(mongo_client, database)
        refused = recover(custom, namespace, "in-the-gap",
                          {"time": inside.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
        assert refused["phase"] == "Failed" and steps(refused)["Resolve"] == "Failed"
        assert "spec.pointInTime.time" in refused["message"]
        assert "inside an archive gap" in refused["message"]
        assert contents(mongo_client, database) == untouched
    finally:
        mongo_client.drop_database(f"{database}_filler")


@pytest.mark.timeout(1200)
def test_a_restore_to_before_a_bad_release_undoes_its_writes(
    environment: dict[str, str], own_operator: Operator, namespace: str, api: client.ApiClient,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    create_secrets(core, namespace, environment["MONGODB_URI"])
    rel.http_route(api, namespace)
    for color in ("blue", "green"):
        rel.traffic(namespace, "chat", color)
    rel.create(custom, namespace, "chat", rel.release_spec(
        "1.0", rel.canary(pause="300s", weights=(10,)), {"gatewayAPI": {"httpRoute": "chat"}}
    ))
    mongo_client[database]["messages"].insert_one({"_id": "seed"})
    create(custom, namespace, "chatbackups", "ChatBackup", "chat",
           backup_spec(s3_url, bucket, database, pointInTime=PIT))
    base = finished_run(custom, namespace, "chat", timeout=120)
    assert base["result"] == "Succeeded", base
    rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=120)
    good = Writer(environment["MONGODB_URI"], database, prefix="good")
    good.start()
    wait_for(lambda: good.n > 60, timeout=60, what="good writes")
    good.quiet()
    before = contents(mongo_client, database)
    good.stop()

    rel.set_version(custom, namespace, "chat", "1.1")  # the bad version
    started = wait_for(
        lambda: (s := rel.status(custom, namespace, "chat")).get("releaseStartedAt")
        and s.get("canaryRevision") and s,
        timeout=60, interval=0.2, what="release 1.1 to start",
    )
    bad = Writer(environment["MONGODB_URI"], database, prefix="bad")
    bad.start()
    try:
        wait_for(lambda: bad.n > 40, timeout=60, what="the bad version's writes")
    finally:
        bad.stop()
    last = oplog_ts(mongo_client, database)[-1]
    wait_for(lambda: archived_to(custom, namespace, "chat") >= last, timeout=60, interval=0.3,
             what="the bad writes archived")
    ended = recover(custom, namespace, "before-1-1", {
        "releaseRevision": {"release": "chat", "revision": started["canaryRevision"]}
    })
    assert ended["phase"] == "Succeeded", ended
    assert ended["pointInTime"]["target"].startswith(started["releaseStartedAt"][:19])
    assert contents(mongo_client, database) == before


@pytest.mark.timeout(900)
def test_a_drill_replays_the_archive_after_its_base_and_fails_on_a_corrupted_slice(
    environment: dict[str, str], own_operator: Operator, namespace: str,
    custom: client.CustomObjectsApi, core: client.CoreV1Api,
    mongo_client: MongoClient[dict[str, Any]], database: str,
) -> None:
    s3_url = environment["S3_ENDPOINT_URL"]
    bucket = new_bucket(s3_url)
    create_secrets(core, namespace, environment["MONGODB_URI"])
    messages = mongo_client[database]["messages"]
    messages.insert_many([{"_id": f"m{n:03d}", "text": "before"} for n in range(20)])
    scratch = f"{database}_drill"
    # slices are not merged while the test runs (a merge would replace the corrupted one)
    create(custom, namespace, "chatbackups", "ChatBackup", "chat", backup_spec(
        s3_url, bucket, database, pointInTime={**PIT, "sliceLength": "10m"},
        verification={"schedule": "0 0 1 1 *", "scratch": {"database": scratch}},
    ))
    base = finished_run(custom, namespace, "chat", timeout=120)
    assert base["result"] == "Succeeded", base
    messages.insert_many([{"_id": f"n{n:03d}", "text": "after"} for n in range(30)])
    for n in range(10):
        messages.update_one({"_id": f"m{n:03d}"}, {"$set": {"text": "edited"}})
    messages.delete_many({"_id": {"$in": [f"n{n:03d}" for n in range(5)]}})
    last = oplog_ts(mongo_client, database)[-1]
    wait_for(lambda: archived_to(custom, namespace, "chat") >= last, timeout=90, interval=0.3,
             what="the writes archived")
    consistent = _consistent(s3_url, bucket, base["key"])
    after_base = [op for op in oplog_ts(mongo_client, database) if op > consistent]
    live = contents(mongo_client, database)

    asked = verify_now(custom, namespace, "chat")
    drilled = drill_after(custom, namespace, "chat", asked, timeout=180)["lastDrill"]
    assert drilled["result"] == "Succeeded", drilled
    assert drilled["backup"] == base["id"]
    # every op after the base, each once (the writes after the base: 30 + 10 + 5)
    assert f"then {len(after_base)} op(s) of " in drilled["message"], drilled["message"]
    assert len(after_base) >= 45
    assert "document(s) the replay touched are as their last op left them" in drilled["message"]
    assert scratch not in mongo_client.list_database_names()
    assert contents(mongo_client, database) == live

    # a corrupted slice: the drill fails naming it, and the condition says so
    s3 = boto3.client("s3", endpoint_url=s3_url)
    victim = next(s for s in covered(slices_in_s3(s3_url, bucket))
                  if (s["last"]["t"], s["last"]["i"]) > consistent)
    body = bytearray(s3.get_object(Bucket=bucket, Key=victim["key"])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=victim["key"], Body=bytes(body))
    asked = verify_now(custom, namespace, "chat")
    failed = drill_after(custom, namespace, "chat", asked, timeout=180)["lastDrill"]
    assert failed["result"] == "Failed" and victim["key"] in failed["message"], failed
    verified = next(c for c in status(custom, namespace, "chatbackups", "chat")["conditions"]
                    if c["type"] == "Verified")
    assert (verified["status"], verified["reason"]) == ("False", "DrillFailed"), verified
    assert scratch not in mongo_client.list_database_names()
    assert contents(mongo_client, database) == live
