"""The ChatBackup's I/O: a look (observe → `controller.decide` → carry out), a run (the
database Lease, the dump, retention) and the recording of how the run ended.

A run takes as long as the database is big, so the daemon runs it on a thread of its own
(see `handlers.threads`), never on the shared executor; the look before it has already
written `lastBackup` as Running, so an operator killed mid-run finds it at its next look
and settles it. Secrets are read when a run starts and never leave it unscrubbed.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client

from chatops import clock, telemetry
from chatops.adapters import s3
from chatops.adapters.kube import Cluster
from chatops.adapters.lease import LEASE_SECONDS, Lease, Renewal
from chatops.adapters.mongo import Mongo
from chatops.annotations import BACKUP_NOW
from chatops.api import validation
from chatops.api.backup import ChatBackupSpec, ChatBackupStatus
from chatops.backup import catalog, controller, credentials, dump
from chatops.backup.controller import Observation, Outcome, Start
from chatops.backup.manifest import ManifestSource
from chatops.backup.retention import RetentionPolicy, StoredBackup
from chatops.errors import ChatopsError, InvalidSpec
from chatops.events import Event, EventSink, subject

PLURAL = "chatbackups"
LEASE_POLL = 2.0
log = logging.getLogger("chatops.backup")



@dataclasses.dataclass(frozen=True)
class Run:
    """A run the look started: what it needs to go on without reading the object again."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: ChatBackupSpec
    start: Start
    ref: Mapping[str, Any]
    """What its Events are posted on (`events.subject`)."""
    worker: Lease | None = None
    """This process's worker Lease on the ChatBackup, held from the look to the record."""
    failed_keys: tuple[str, ...] = ()
    """Tarball keys of earlier failed runs: a multipart upload of theirs that could not
    be aborted then (S3 was away) is aborted after this run succeeds."""

    @property
    def resource(self) -> str:
        return f"ChatBackup {self.namespace}/{self.name}"

    @property
    def identity(self) -> str:
        return f"chatbackup/{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Look:
    requeue_after: float
    run: Run | None = None


def _ref(body: Mapping[str, Any]) -> dict[str, Any]:
    return subject(body)


def look(api: client.ApiClient, namespace: str, name: str, post: EventSink) -> Look:
    """Observe the ChatBackup, decide, write the status, and say whether to run now."""
    cluster = Cluster(api)
    body = cluster.get(PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Look(controller.IDLE_LOOK)
    worker = Lease.worker(api, namespace, "ChatBackup", name)
    elsewhere = worker.acquire()
    if elsewhere is not None:  # another operator process works on it (a run, or a look)
        log.info("%s/%s: worked on by %s", namespace, name, elsewhere)
        return Look(float(LEASE_SECONDS))
    try:
        looked = _look(api, cluster, body, worker, post)
    except BaseException:
        worker.release()
        raise
    if looked.run is None:
        worker.release()
    return looked


def _look(
    api: client.ApiClient, cluster: Cluster, body: dict[str, Any], worker: Lease,
    post: EventSink,
) -> Look:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status = ChatBackupStatus.model_validate(body.get("status") or {})
    problems = tuple(validation.problems("ChatBackup", body.get("spec") or {}))
    spec = None if problems else ChatBackupSpec.model_validate(body["spec"])
    annotations = meta.get("annotations") or {}
    request = annotations.get(BACKUP_NOW)
    uid = str(meta.get("uid") or "")
    leftover = None
    last = status.last_backup
    if spec is not None and last is not None and last.result == "Running":
        leftover = _leftover(cluster, namespace, name, spec, last.id, last.key)
    unresolved = () if spec is None else tuple(
        _references(namespace, name, spec).unresolved(cluster)
    )
    seen = Observation(
        namespace=namespace,
        name=name,
        now=clock.now(),
        created_at=datetime.datetime.fromisoformat(meta["creationTimestamp"]),
        generation=int(meta.get("generation") or 0),
        spec=spec,
        status=status,
        problems=problems,
        on_demand=request is not None,
        leftover=leftover,
        uid=uid,
        unresolved=unresolved,
    )
    decision = controller.decide(seen)
    # Status first: a crash before the annotation is cleared runs the backup twice, never
    # zero times.
    cluster.write_status(PLURAL, namespace, name, status, decision.status)
    if decision.clear_on_demand and request is not None:
        try:
            cluster.remove_annotation_if(PLURAL, namespace, name, BACKUP_NOW, request)
        except client.ApiException as err:  # the run still starts; at worst it runs twice
            log.warning("%s/%s: clearing %s: %s", namespace, name, BACKUP_NOW,
                        err.reason)
    for event in decision.events:
        post(_ref(body), event)
    if decision.start is None or spec is None:
        return Look(decision.requeue_after)
    failed = tuple(r.key for r in status.backups if r.result == "Failed" and r.key)
    run = Run(
        namespace, name, uid, seen.generation, spec, decision.start, _ref(body), worker, failed,
    )
    return Look(decision.requeue_after, run)


def _leftover(
    cluster: Cluster, namespace: str, name: str, spec: ChatBackupSpec, backup: str,
    key: str | None,
) -> StoredBackup | None:
    """What S3 holds of an interrupted run, its multipart upload aborted if it had one."""
    try:
        secrets = _secrets(cluster, namespace, name, spec)
        store = credentials.store(spec.storage.s3, secrets)
        found = [b for b in catalog.list_backups(store, spec.storage.s3.prefix) if b.id == backup]
        if key is not None:
            for pending in store.pending_uploads(key):
                if pending.key == key:
                    store.abort_upload(pending.key, pending.upload_id)
    except ChatopsError as err:
        log.warning("%s/%s: cannot look for the interrupted run %s: %s", namespace, name,
                    backup, err)
        return None
    return found[0] if found else None


def _references(namespace: str, name: str, spec: ChatBackupSpec) -> credentials.References:
    return credentials.References(
        f"ChatBackup {namespace}/{name}", namespace, spec.mongodb.uri_secret_ref,
        "spec.mongodb.uriSecretRef", spec.storage.s3, "spec.storage.s3",
    )


def _secrets(
    cluster: Cluster, namespace: str, name: str, spec: ChatBackupSpec
) -> credentials.Secrets:
    return _references(namespace, name, spec).read(cluster)


# -- the run --------------------------------------------------------------------------------


def run(api: client.ApiClient, job: Run, stopped: Callable[[], bool], post: EventSink) -> Outcome:
    """Take the database Lease, dump, apply retention, and record the outcome."""
    cluster = Cluster(api)
    renewal = Renewal(job.worker).start() if job.worker else None
    try:
        outcome = _execute(api, cluster, job, stopped, post)
        record(cluster, job, outcome, post)
    finally:
        if renewal is not None:
            renewal.stop()
        if job.worker is not None:
            try:
                job.worker.release()
            except (client.ApiException, OSError):
                log.warning("%s: releasing the worker Lease failed; it expires", job.resource)
    return outcome


def _failed(job: Run, message: str) -> Outcome:
    return Outcome(job.start.id, job.start.key, job.start.started_at, clock.now(), None, message)


def _execute(
    api: client.ApiClient, cluster: Cluster, job: Run, stopped: Callable[[], bool],
    post: EventSink,
) -> Outcome:
    spec = job.spec
    deadline = time.monotonic() + spec.timeout_seconds
    try:
        secrets = _secrets(cluster, job.namespace, job.name, spec)
    except InvalidSpec as err:
        return _failed(job, str(err))
    try:
        with Mongo(secrets.mongo_uri) as mongo:
            return _with_lease(api, cluster, job, mongo, secrets, deadline, stopped, post)
    except ChatopsError as err:
        return _failed(job, secrets.scrub(str(err)))


def _with_lease(
    api: client.ApiClient, cluster: Cluster, job: Run, mongo: Mongo,
    secrets: credentials.Secrets, deadline: float, stopped: Callable[[], bool],
    post: EventSink,
) -> Outcome:
    """Take the database Lease (named by what the server says it is), then dump."""
    spec = job.spec
    lease = Lease.database(api, mongo.identity(), job.identity)
    try:
        problem = _acquire(cluster, lease, job, deadline, stopped, post)
    except (client.ApiException, OSError) as err:
        return _failed(job, f"taking the database Lease failed: {type(err).__name__}")
    if problem is not None:
        return _failed(job, problem)
    renewal = Renewal(lease).start()

    def interrupt() -> str | None:
        if stopped():
            return "the operator is stopping or the ChatBackup is being deleted"
        if time.monotonic() > deadline:
            return f"timeoutSeconds ({spec.timeout_seconds}) exceeded"
        return renewal.lost

    started = job.start.started_at
    first = iter([started])
    try:
        store = credentials.store(spec.storage.s3, secrets)
        request = dump.DumpRequest(
            prefix=spec.storage.s3.prefix,
            database=spec.mongodb.database,
            read_preference=spec.mongodb.read_preference,
            source=ManifestSource(namespace=job.namespace, name=job.name, uid=job.uid),
            backup=job.start.id,
        )
        manifest = dump.dump(
            mongo, store, request, now=lambda: next(first, None) or clock.now(),
            interrupt=interrupt,
        )
        deleted, retention_problem = _retention(store, job)
        return Outcome(
            job.start.id, manifest.tarball.key, started, manifest.finished_at, manifest,
            deleted=deleted, retention_problem=secrets.scrub(retention_problem),
        )
    except ChatopsError as err:
        return _failed(job, secrets.scrub(str(err)))
    except Exception as err:  # a bug must still end the run as Failed, with a message
        log.exception("%s: backup %s", job.resource, job.start.id)
        return _failed(job, secrets.scrub(f"unexpected {type(err).__name__}: {err}"))
    finally:
        renewal.stop()
        try:
            lease.release()
        except (client.ApiException, OSError) as err:
            log.warning("%s: releasing the database Lease: %s", job.resource, type(err).__name__)


def _acquire(
    cluster: Cluster, lease: Lease, job: Run, deadline: float,
    stopped: Callable[[], bool], post: EventSink,
) -> str | None:
    """Wait for the database Lease; a reason to give up, or None once it is ours."""
    told = None
    while (holder := lease.acquire()) is not None:
        if holder != told:
            told = holder
            body = cluster.get(PLURAL, job.namespace, job.name)
            if body is not None:
                old = ChatBackupStatus.model_validate(body.get("status") or {})
                cluster.write_status(
                    PLURAL, job.namespace, job.name, old, controller.waiting(old, holder)
                )
            post(job.ref, Event("Normal", "WaitingForLease",
                                f"backup {job.start.id} waits for the database, held by {holder}"))
        if stopped():
            return f"stopped while waiting for the database Lease held by {holder}"
        if time.monotonic() > deadline:
            return (
                f"timeoutSeconds ({job.spec.timeout_seconds}) exceeded while waiting for the "
                f"database Lease held by {holder}"
            )
        time.sleep(LEASE_POLL)
    return None


def _retention(store: s3.Store, job: Run) -> tuple[tuple[str, ...], str]:
    """Apply keepLast/maxAge to this ChatBackup's backups; (ids deleted, problem)."""
    policy = RetentionPolicy(
        uid=job.uid,
        keep_last=job.spec.retention.keep_last,
        max_age=controller.max_age(job.spec),
    )
    try:
        backups = catalog.list_backups(store, job.spec.storage.s3.prefix)
        expiry = policy.expired(backups, clock.now())
        doomed = [*expiry.expired, *expiry.incomplete]
        if doomed:
            catalog.delete(store, doomed)
        for key in job.failed_keys:
            for pending in store.pending_uploads(key):
                if pending.key == key:
                    store.abort_upload(pending.key, pending.upload_id)
    except ChatopsError as err:
        return (), f"retention failed, it is retried after the next run: {err}"
    return tuple(b.id for b in doomed), ""


def record(cluster: Cluster, job: Run, outcome: Outcome, post: EventSink) -> None:
    """Write how the run ended into the status, and tell it in Events."""
    body = cluster.get(PLURAL, job.namespace, job.name)
    if body is None:
        return
    old = ChatBackupStatus.model_validate(body.get("status") or {})
    generation = int(body["metadata"].get("generation") or 0)
    new, events = controller.finish(old, outcome, clock.now(), generation)
    # The metrics first: whoever reads the run in the status finds it in /metrics too.
    if outcome.manifest is not None:
        m = outcome.manifest
        telemetry.record_backup(job.namespace, job.name, outcome.finished_at.timestamp(),
                                m.duration_seconds, m.tarball.size, m.documents)
    else:
        telemetry.record_backup_failure(job.namespace, job.name)
    cluster.write_status(PLURAL, job.namespace, job.name, old, new)
    for event in events:
        post(job.ref, event)
    log.info("%s: backup %s %s", job.resource, outcome.id,
             "succeeded" if outcome.manifest else f"failed: {outcome.message}")


# -- deletion -------------------------------------------------------------------------------


def delete_backups(
    api: client.ApiClient, namespace: str, name: str, uid: str, spec: ChatBackupSpec
) -> int:
    """`deletionPolicy: Delete`: every object this ChatBackup (this uid) wrote, complete or
    not; never another's, whatever its name."""
    cluster = Cluster(api)
    secrets = _secrets(cluster, namespace, name, spec)
    store = credentials.store(spec.storage.s3, secrets)
    policy = RetentionPolicy(uid=uid)
    try:
        mine = [b for b in catalog.list_backups(store, spec.storage.s3.prefix) if policy.owns(b)]
        catalog.delete(store, mine)
    except ChatopsError as err:
        raise ChatopsError(secrets.scrub(str(err))) from None
    return len(mine)

