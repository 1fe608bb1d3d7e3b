"""A ChatBackup's restore drills, the I/O half of `drills`: a look (observe → decide →
write), and a drill (the newest backup restored into the scratch database, verified in
full, dropped), recorded in `status.verification`, the `Verified` condition, Events and
metrics.

The drill restores with the ChatRecovery's own functions (`fetch.fetch`, `restore.load`:
the manifest required, every byte checked, concurrent inserts verified while loading,
temporary collections renamed into place), so the time it measures is the restore time a
recovery of that backup would take (the RTO). Then it reads every document back
(`verify.restored`), which a recovery does not need but a drill can afford. With
`spec.pointInTime`, it then replays the archive's slices after that backup into the
scratch database, as a recovery to the newest archived op would, and checks every
document they touched: the RTO counts the restore and the replay, not the drill's read.

The live database is never written to:
- the API server refuses a scratch database equal to `spec.mongodb.database` on the
  source's server (CEL), and a backup of every database without a scratch server;
- before touching anything the drill asks the servers who they are (`Mongo.identity`): on
  the source's server, no scratch name may be a database of the backup or the one
  backed up;
- a scratch database that exists must be empty or carry this ChatBackup's marker
  (`chatops-drill`, planted by the drill before it writes, the only thing it drops
  besides what it restored): anything else is refused and left alone.

Drills hold no database Lease: they write only their scratch database, so a backup or a
restore of the live one goes on meanwhile. One process drills a ChatBackup at a time
(its worker Lease `chatops-chatbackupdrill-<name>`).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes import client

from chatops import clock, telemetry
from chatops.adapters import oplog as oplog_io
from chatops.adapters import s3
from chatops.adapters.kube import Cluster
from chatops.adapters.lease import LEASE_SECONDS, Lease, Renewal
from chatops.adapters.mongo import Mongo
from chatops.api import validation
from chatops.api.backup import ChatBackupSpec, ChatBackupStatus
from chatops.api.common import GROUP
from chatops.backup import (
    catalog,
    credentials,
    drills,
    fetch,
    oplog,
    pitr,
    restore,
    slices,
    verify,
)
from chatops.backup import scratch as scratchdb
from chatops.backup.retention import RetentionPolicy
from chatops.errors import ChatopsError
from chatops.events import EventSink

PLURAL = "chatbackups"
VERIFY_NOW = f"{GROUP}/verify-now"
"""On a ChatBackup with `spec.verification`: one drill now (any value)."""
KIND = "ChatBackupDrill"
WRITE_TRIES = 5
log = logging.getLogger("chatops.backup.drill")


@dataclasses.dataclass(frozen=True)
class Drill:
    """A drill the look started."""

    namespace: str
    name: str
    uid: str
    spec: ChatBackupSpec
    start: drills.Start
    ref: Mapping[str, Any]
    worker: Lease

    @property
    def resource(self) -> str:
        return f"ChatBackup {self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Look:
    requeue_after: float
    drill: Drill | None = None


def _ref(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in ("apiVersion", "kind", "metadata")}


def _observe(body: Mapping[str, Any], spec: ChatBackupSpec) -> drills.Observation:
    meta = body["metadata"]
    return drills.Observation(
        now=clock.now(), created_at=clock.parse(meta["creationTimestamp"]),
        generation=int(meta.get("generation") or 0), spec=spec,
        status=ChatBackupStatus.model_validate(body.get("status") or {}),
        on_demand=VERIFY_NOW in (meta.get("annotations") or {}),
    )


def _write(
    cluster: Cluster, namespace: str, name: str,
    change: Callable[[dict[str, Any]], tuple[ChatBackupStatus, ChatBackupStatus] | None],
) -> dict[str, Any] | None:
    """Read the object, let `change` make (old, new) of its status, and write what changed
    only if nobody wrote meanwhile (the backup daemon writes the same status); read and
    try again if somebody did. The body written from, or None (gone, or nothing to do)."""
    for _ in range(WRITE_TRIES):
        body = cluster.get(PLURAL, namespace, name)
        if body is None:
            return None
        made = change(body)
        if made is None:
            return None
        before, after = made[0].wire(), made[1].wire()
        patch: dict[str, Any] = {k: None for k in before if k not in after}
        patch.update({k: v for k, v in after.items() if before.get(k) != v})
        if not patch:
            return body
        version = str(body["metadata"]["resourceVersion"])
        if cluster.patch_status_at(PLURAL, namespace, name, version, patch):
            return body
    raise ChatopsError(f"ChatBackup {namespace}/{name}: the status kept changing under the drill")


def look(api: client.ApiClient, namespace: str, name: str, post: EventSink) -> Look:
    """Observe, decide, write; a drill to run when one is due."""
    cluster = Cluster(api)
    body = cluster.get(PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Look(drills.IDLE_LOOK)
    if validation.problems("ChatBackup", body.get("spec") or {}):
        return Look(drills.IDLE_LOOK)  # the backup's look says so in Accepted
    spec = ChatBackupSpec.model_validate(body["spec"])
    if spec.verification is None:
        return Look(drills.IDLE_LOOK)
    worker = Lease.worker(api, namespace, KIND, name)
    elsewhere = worker.acquire()
    if elsewhere is not None:
        log.info("%s/%s: drills run by %s", namespace, name, elsewhere)
        return Look(float(LEASE_SECONDS))
    try:
        looked = _look(cluster, namespace, name, spec, worker, post)
    except BaseException:
        worker.release()
        raise
    if looked.drill is None:
        worker.release()
    return looked


def _look(
    cluster: Cluster, namespace: str, name: str, spec: ChatBackupSpec, worker: Lease,
    post: EventSink,
) -> Look:
    decided: list[drills.Decision] = []

    def change(body: dict[str, Any]) -> tuple[ChatBackupStatus, ChatBackupStatus]:
        seen = _observe(body, spec)
        decided[:] = [drills.decide(seen)]
        new = decided[0].status
        if decided[0].start is not None:
            newest = drills.newest_good(seen.status)
            assert newest is not None  # decide starts none without one
            new = drills.running(new, newest.id, seen.now)
        return seen.status, new

    body = _write(cluster, namespace, name, change)
    if body is None or not decided:
        return Look(drills.IDLE_LOOK)
    decision = decided[0]
    if decision.settled is not None:
        _clean_after_crash(cluster, namespace, name, spec, str(body["metadata"]["uid"]))
    if decision.clear_on_demand:
        request = (body["metadata"].get("annotations") or {}).get(VERIFY_NOW)
        if request is not None:
            try:
                cluster.remove_annotation_if(PLURAL, namespace, name, VERIFY_NOW, request)
            except client.ApiException as err:
                log.warning("%s/%s: clearing %s: %s", namespace, name, VERIFY_NOW, err.reason)
    for event in decision.events:
        post(_ref(body), event)
    if decision.start is None:
        return Look(decision.requeue_after)
    drill = Drill(namespace, name, str(body["metadata"]["uid"]), spec, decision.start,
                  _ref(body), worker)
    return Look(decision.requeue_after, drill)


# -- the drill ------------------------------------------------------------------------------


def _references(job_namespace: str, name: str, spec: ChatBackupSpec) -> credentials.References:
    return credentials.References(
        f"ChatBackup {job_namespace}/{name}", job_namespace, spec.mongodb.uri_secret_ref,
        "spec.mongodb.uriSecretRef", spec.storage.s3, "spec.storage.s3",
    )


def _scratch_uri(cluster: Cluster, namespace: str, name: str, spec: ChatBackupSpec,
                 source: str) -> str:
    assert spec.verification is not None
    ref = spec.verification.scratch.uri_secret_ref
    if ref is None:
        return source
    return credentials.read_uri(cluster, f"ChatBackup {namespace}/{name}", namespace, ref,
                                "spec.verification.scratch.uriSecretRef")


def _clean_after_crash(
    cluster: Cluster, namespace: str, name: str, spec: ChatBackupSpec, uid: str
) -> None:
    """A drill interrupted by a dead operator left its scratch database: drop it (if it is
    marked as this ChatBackup's)."""
    try:
        secrets = _references(namespace, name, spec).read(cluster)
        with Mongo(_scratch_uri(cluster, namespace, name, spec, secrets.mongo_uri)) as scratch:
            assert spec.verification is not None
            base = spec.verification.scratch.database
            mine = {d for d in scratch.database_names() if d == base or d.startswith(f"{base}_")}
            scratchdb.drop(scratch, mine, uid)
    except ChatopsError as err:
        log.warning("%s/%s: cleaning the interrupted drill's scratch database: %s",
                    namespace, name, err)


def run(api: client.ApiClient, job: Drill, stopped: Callable[[], bool], post: EventSink
        ) -> drills.Outcome:
    """Drill, then record the outcome (status, Events, metrics)."""
    cluster = Cluster(api)
    renewal = Renewal(job.worker).start()
    try:
        outcome = _drill(cluster, job, stopped)
        record(cluster, job, outcome, post)
    finally:
        renewal.stop()
        try:
            job.worker.release()
        except (client.ApiException, OSError):
            log.warning("%s: releasing the drill's worker Lease failed; it expires", job.resource)
    return outcome


def _drill(cluster: Cluster, job: Drill, stopped: Callable[[], bool]) -> drills.Outcome:
    spec = job.spec
    assert spec.verification is not None
    started = job.start.started_at
    deadline = time.monotonic() + spec.verification.timeout_seconds
    backup = "none"
    secrets = None

    def failed(message: str) -> drills.Outcome:
        text = secrets.scrub(message) if secrets is not None else message
        return drills.Outcome(backup, started, clock.now(), False, text)

    def interrupt() -> bool:
        return stopped() or time.monotonic() > deadline

    try:
        secrets = _references(job.namespace, job.name, spec).read(cluster)
        store = credentials.store(spec.storage.s3, secrets)
        policy = RetentionPolicy(uid=job.uid)
        good = policy.good(catalog.list_backups(store, spec.storage.s3.prefix))
        if not good or good[0].tarball_key is None:
            return failed("no complete backup of this ChatBackup in S3 to verify")
        newest, tarball = good[0], good[0].tarball_key
        backup = newest.id
        with (
            Mongo(secrets.mongo_uri) as source,
            Mongo(_scratch_uri(cluster, job.namespace, job.name, spec, secrets.mongo_uri))
            as scratch,
            tempfile.TemporaryDirectory(prefix=f"chatops-drill-{job.namespace}-") as work,
        ):
            clock_start = time.monotonic()
            downloaded, contents = fetch.fetch(
                store, tarball, work, require_manifest=True
            )
            fetched = time.monotonic()
            names = scratchdb.names(spec, contents.databases)
            scratchdb.guard(source, scratch, spec, names, job.uid)
            targets = set(names.values())
            try:
                for db in sorted(targets):
                    scratch.upsert_id(db, scratchdb.MARKER, job.uid, {"chatbackup": job.resource})
                request = restore.RestoreRequest(
                    mode="DropCollections", rename=names, verify=True,
                    token=job.uid.replace("-", "")[:12],
                )
                result = restore.load(scratch, downloaded, contents, request, interrupt=interrupt)
                rto = time.monotonic() - clock_start
                if result.replayed:  # the dump's documents were verified before the replay
                    checked = (
                        f"verified while loading, then {result.replayed} oplog entries "
                        "replayed to the backup's consistent time"
                    )
                else:  # a full read a recovery does not make: not in the RTO
                    verify.restored(scratch, [
                        verify.Check(names[c.database], c.name, c)
                        for c in contents.collections if not c.is_view
                    ])
                    checked = "every document read back and matching the backup"
                if spec.point_in_time.enabled:
                    replay_start = time.monotonic()
                    archived = _replay_archive(store, spec, job.uid, newest.id, scratch, names,
                                               interrupt)
                    rto += time.monotonic() - replay_start
                    checked += f"; {archived}" if archived else ""
            finally:
                if spec.point_in_time.enabled:  # a replayed dropDatabase took the marker
                    scratchdb.remark(scratch, targets, job.uid, job.resource)
                scratchdb.drop(scratch, targets, job.uid)
        message = (
            f"{result.documents} documents of {len(result.collections)} collection(s) restored "
            f"into {', '.join(sorted(targets))} in {rto:.1f} s (download and checks "
            f"{fetched - clock_start:.1f} s), {checked}; scratch database dropped"
        )
        return drills.Outcome(backup, started, clock.now(), True, message,
                              restore_seconds=round(rto, 3), documents=result.documents)
    except restore.Interrupted:
        why = "timeoutSeconds exceeded" if time.monotonic() > deadline else "operator stopping"
        return failed(f"stopped ({why}); the scratch database was dropped")
    except ChatopsError as err:
        return failed(str(err))
    except Exception as err:  # a bug must still end the drill as Failed, with a message
        log.exception("%s: drill of %s", job.resource, backup)
        return failed(f"unexpected {type(err).__name__}: {err}")


def _replay_archive(
    store: s3.Store, spec: ChatBackupSpec, uid: str, base_id: str, scratch: Mongo,
    names: Mapping[str, str], interrupt: Callable[[], bool],
) -> str | None:
    """The archive's ops after the drilled base backup (`spec.pointInTime`), every slice
    read back verified, replayed into the scratch database as a recovery to the newest
    archived op replays them, then checked (`oplog.LastStates`): what was done, or None
    when the backup is no point-in-time base (a server without an oplog)."""
    look = slices.listing(store, spec.storage.s3.prefix, uid)
    base = next((b for b in look.bases if b.id == base_id), None)
    if base is None:
        return None
    carried, end = pitr.chain(base.consistent, look.slices)
    namespaces = oplog.Namespaces(frozenset(names))
    last = oplog.LastStates(namespaces)
    applier = oplog_io.Applier(scratch, rename=names)

    def entries() -> Iterator[oplog.Entry]:
        position = base.consistent  # chained slices may overlap: each op once
        for piece in carried:
            for entry in oplog.entries(slices.read(store, piece)):
                if interrupt():
                    raise restore.Interrupted()
                if entry.ts > position:
                    position = entry.ts
                    yield entry

    ops = oplog.replay(last.tap(entries()), namespaces, applier.read, applier.write)
    return (
        f"then {ops} op(s) of {len(carried)} archive slice(s) replayed to {pitr.rfc3339(end)}, "
        f"the newest archived op: {last.check(applier.read)}"
    )


def record(cluster: Cluster, job: Drill, outcome: drills.Outcome, post: EventSink) -> None:
    """The Event first, then the status that reports it (and the metrics)."""

    def change(body: dict[str, Any]) -> tuple[ChatBackupStatus, ChatBackupStatus]:
        seen = _observe(body, job.spec)
        return seen.status, drills.finish(seen, outcome)[0]

    post(job.ref, drills.event_of(outcome))
    _write(cluster, job.namespace, job.name, change)
    if outcome.ok:
        telemetry.record_drill(job.namespace, job.name, outcome.finished_at.timestamp(),
                               outcome.restore_seconds)
    else:
        telemetry.record_drill_failure(job.namespace, job.name)
    log.info("%s: drill of %s %s", job.resource, outcome.backup,
             "succeeded" if outcome.ok else f"failed: {outcome.message}")
