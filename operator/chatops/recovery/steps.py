"""What each ChatRecovery step does to the world. Each is idempotent, because a step the
operator was killed in runs again from its start.

A step returns what it did (a message for `status.steps[]`), raises `Skip` when it has
nothing to do, `Retry` when it must be tried again later without failing the recovery
(scaling the app back up never gives up), and any ChatopsError to fail the recovery.
The downloaded tarball and what `inspect` found are kept in the `Workspace` between
steps; after a restart they are simply made again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from chatops import clock
from chatops.adapters import http
from chatops.adapters.kube import Cluster
from chatops.adapters.lease import Lease, Renewal
from chatops.adapters.mongo import Mongo
from chatops.api.pitr import RecoveredPointInTime
from chatops.api.recovery import ChatRecoverySpec, ChatRecoveryStatus
from chatops.backup import credentials, fetch, restore, slices, verify
from chatops.backup.contents import Contents, Downloaded
from chatops.backup.oplog import OpTime
from chatops.errors import RestoreFailed
from chatops.recovery import machine, pointintime, source

POLL = 2.0
SCALE_WAIT = 120.0
"""Seconds quiesced Deployments have to lose their pods."""


class Skip(Exception):
    """The step has nothing to do; the message says why."""


class Retry(Exception):
    """Try the step again later; the recovery does not fail for it."""


class Stopped(Exception):
    """The operator is stopping: leave the step Running, it resumes at the next start."""


@dataclasses.dataclass
class Workspace:
    """What one operator process keeps between the steps of one ChatRecovery: the Lease
    it holds and the downloaded tarball. Never the truth: the status is."""

    worker: Renewal | None = None
    """This process's hold on the ChatRecovery's worker Lease."""
    renewal: Renewal | None = None
    lease: Lease | None = None
    directory: str | None = None
    downloaded: Downloaded | None = None
    contents: Contents | None = None

    def release(self) -> None:
        if self.renewal is not None:
            self.renewal.stop()
            self.renewal = None
        if self.lease is not None:
            with contextlib.suppress(client.ApiException, OSError):  # it expires anyway
                self.lease.release()
            self.lease = None

    def close(self) -> None:
        self.release()
        if self.worker is not None:
            self.worker.stop()
            with contextlib.suppress(client.ApiException, OSError):
                self.worker.lease.release()
            self.worker = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory, self.downloaded, self.contents = None, None, None


@dataclasses.dataclass
class Context:
    """What a step works with; `status` is the latest written."""

    api: client.ApiClient
    cluster: Cluster
    namespace: str
    name: str
    spec: ChatRecoverySpec
    status: ChatRecoveryStatus
    step: machine.StepName
    workspace: Workspace
    write: Callable[[ChatRecoveryStatus, ChatRecoveryStatus], None]
    """Patch the status from the first to the second."""
    stopped: Callable[[], bool]
    """The operator is stopping or the ChatRecovery is being deleted: leave off."""
    uid: str = ""
    """The ChatRecovery's uid: names its temporary collections across restarts."""
    _plan: source.Plan | None = None

    @property
    def plan(self) -> source.Plan:
        if self._plan is None:
            self._plan = source.plan(self.cluster, self.namespace, self.name, self.spec)
        return self._plan

    def save(self, new: ChatRecoveryStatus) -> None:
        """Write an intermediate status, e.g. the replicas remembered before scaling."""
        self.write(self.status, new)
        self.status = new

    def progress(self, message: str) -> None:
        """Say what the running step waits for."""
        self.save(machine.progress(self.status, self.step, message))

    @property
    def identity(self) -> str:
        return f"chatrecovery/{self.namespace}/{self.name}"


def _hold_lease(ctx: Context) -> None:
    """Take the database Lease (again, after a restart), waiting as long as it takes."""
    ws = ctx.workspace
    if ws.renewal is not None and ws.renewal.lost is None:
        return
    ws.release()
    with Mongo(ctx.plan.secrets.mongo_uri) as mongo:  # the Lease is named by the server
        lease = Lease.database(ctx.api, mongo.identity(), ctx.identity)
    told = None
    while (holder := lease.acquire()) is not None:
        if holder != told:
            told = holder
            ctx.progress(f"waiting for the database Lease, held by {holder}")
        if ctx.stopped():
            raise Stopped()
        time.sleep(POLL)
    ws.lease, ws.renewal = lease, Renewal(lease).start()


def resolve(ctx: Context) -> str:
    wanted = ctx.spec.point_in_time
    if wanted is not None:
        backup, recovered, said = pointintime.resolve(
            ctx.cluster, f"ChatRecovery {ctx.namespace}/{ctx.name}", ctx.namespace, ctx.plan,
            wanted,
        )
        ctx.save(ctx.status.model_copy(update={"backup": backup, "point_in_time": recovered}))
        _hold_lease(ctx)
        return f"{said}; holding the database Lease"
    backup = source.resolve(ctx.plan)
    ctx.save(ctx.status.model_copy(update={"backup": backup}))
    _hold_lease(ctx)
    return f"backup {backup.id or backup.key}; holding the database Lease"


def _recovered(ctx: Context) -> RecoveredPointInTime:
    recovered = ctx.status.point_in_time
    if recovered is None:
        raise RestoreFailed("no point in time resolved (the Resolve step did not record one)")
    return recovered


def replay(ctx: Context) -> str:
    if ctx.spec.point_in_time is None:
        raise Skip("no spec.pointInTime")
    _hold_lease(ctx)
    recovered = _recovered(ctx)
    after = _base_position(ctx)
    try:
        applied = pointintime.replay(ctx.plan, recovered, after, ctx.stopped,
                                     token=ctx.uid.replace("-", "")[:12])
    except pointintime.Stopped:
        raise Stopped() from None
    ctx.save(ctx.status.model_copy(
        update={"point_in_time": recovered.model_copy(update={"ops": applied})}
    ))
    return (
        f"{applied} op(s) from {len(recovered.slices)} slice(s) replayed: the database is as "
        f"it was at {recovered.target}"
    )


def _base_position(ctx: Context) -> OpTime:
    """The base backup's consistent position, read again from its manifest."""
    _, contents = _fetch(ctx)
    manifest = contents.manifest
    at = slices.consistent_time(manifest) if manifest is not None else None
    if at is None:
        raise RestoreFailed("the base backup's manifest has no consistentTime")
    return at


def _deployment(ctx: Context, name: str) -> Any:
    try:
        return ctx.cluster.apps.read_namespaced_deployment(name, ctx.namespace)
    except client.ApiException as err:
        if err.status == 404:
            raise RestoreFailed(
                f"Deployment {ctx.namespace}/{name} does not exist (spec.quiesce.deployments)"
            ) from None
        raise


def quiesce(ctx: Context) -> str:
    names = ctx.spec.quiesce.deployments
    if not names:
        raise Skip("no spec.quiesce.deployments")
    _hold_lease(ctx)
    # Remember every replica count before scaling any: a crash in between must find what
    # to scale back to. A count remembered earlier (we are here again) is the true one.
    remembered = dict(ctx.status.quiesced)
    for name in names:
        if name not in remembered:
            remembered[name] = int(_deployment(ctx, name).spec.replicas or 0)
    ctx.save(ctx.status.model_copy(update={"quiesced": remembered}))
    for name in names:
        ctx.cluster.quiesce(ctx.namespace, name, f"{ctx.namespace}/{ctx.name}", 0)
    deadline = time.monotonic() + SCALE_WAIT
    while busy := [n for n in names if (_deployment(ctx, n).status.replicas or 0) > 0]:
        if time.monotonic() > deadline:
            raise RestoreFailed(
                f"Deployment(s) {', '.join(busy)} still have pods {SCALE_WAIT:.0f} s after "
                "scaling to 0; nothing was restored"
            )
        time.sleep(POLL / 4)
    return "scaled to 0: " + ", ".join(f"{n} (was {remembered[n]})" for n in names)


def _store(ctx: Context) -> Any:
    return credentials.store(ctx.plan.storage, ctx.plan.secrets)


def _fetch(ctx: Context) -> tuple[Downloaded, Contents]:
    """Download and inspect the tarball (once per process)."""
    ws = ctx.workspace
    if ws.downloaded is not None and ws.contents is not None:
        return ws.downloaded, ws.contents
    backup = ctx.status.backup
    if backup is None:
        raise RestoreFailed("no backup resolved (the Resolve step did not record one)")
    if ws.directory is None:
        ws.directory = tempfile.mkdtemp(prefix=f"chatops-restore-{ctx.namespace}-{ctx.name}-")
    ws.downloaded, ws.contents = fetch.fetch(
        _store(ctx), backup.key, ws.directory, ctx.plan.databases,
        require_manifest=ctx.plan.require_manifest, allow_unverified=ctx.plan.allow_unverified,
    )
    return ws.downloaded, ws.contents


def download(ctx: Context) -> str:
    _hold_lease(ctx)
    ctx.workspace.downloaded = ctx.workspace.contents = None  # this step always re-checks
    downloaded, contents = _fetch(ctx)
    checked = (
        "checked against its manifest" if contents.manifest
        else "NOT verified against a manifest (none beside it): checked against its own files"
    )
    return (
        f"{downloaded.size} bytes, sha256 {downloaded.sha256[:12]}…; "
        f"{len(contents.collections)} collection(s) {checked}"
    )


def _request(ctx: Context) -> restore.RestoreRequest:
    """The loaded collections are checked before the commit; Verify checks the targets
    again after it."""
    return restore.RestoreRequest(
        mode=ctx.spec.mode, databases=ctx.plan.databases, verify=ctx.spec.verify,
        token=ctx.uid.replace("-", "")[:12],
    )


def load(ctx: Context) -> str:
    _hold_lease(ctx)
    downloaded, contents = _fetch(ctx)
    with Mongo(ctx.plan.secrets.mongo_uri) as mongo:
        try:
            result = restore.load(mongo, downloaded, contents, _request(ctx), interrupt=ctx.stopped)
        except restore.Interrupted:
            raise Stopped() from None
    ctx.save(ctx.status.model_copy(update={"restored_documents": result.documents}))
    databases = sorted({c.database for c in result.collections})
    left = f"; could not drop {', '.join(result.leftovers)}" if result.leftovers else ""
    return (
        f"{result.documents} documents into {', '.join(databases)} ({ctx.spec.mode}), loaded "
        f"beside the data and put in place at once; "
        f"{sum(c.indexes for c in result.collections)} index(es) built{left}"
        + (f"; {result.replayed} oplog entries replayed to the backup's consistent time"
           if result.replayed else "")
    )


def check(ctx: Context) -> str:
    if not ctx.spec.verify:
        raise Skip("spec.verify is false")
    _hold_lease(ctx)
    if ctx.spec.point_in_time is not None:
        recovered = _recovered(ctx)
        said = pointintime.check(ctx.plan, recovered, _base_position(ctx))
        return f"the base backup matched its manifest before its commit; {said}"
    downloaded, contents = _fetch(ctx)
    if contents.oplog is not None and contents.oplog.documents:
        raise Skip(
            "the collections were checked against the backup before they were put in "
            f"place; the {contents.oplog.documents} oplog entries written during the dump "
            "were then replayed onto them (to the backup's consistent time), so they no "
            "longer hold the dump's documents"
        )
    wanted = ctx.plan.databases
    exact = ctx.spec.mode != "Merge"
    checks = [
        verify.Check(c.database, c.name, c, exact=exact) for c in contents.collections
        if not c.is_view and (wanted is None or c.database in wanted)
    ]
    with Mongo(ctx.plan.secrets.mongo_uri) as mongo:
        read = verify.targets(mongo, downloaded, checks)
    return (
        f"{len(checks)} collection(s) match the backup: counts, digests of what the server "
        f"acknowledged, indexes, and the first {read} document(s) stored read back"
    )


def resume(ctx: Context) -> str:
    ctx.workspace.close()  # the database is done with: let a backup have it
    quiesced = ctx.status.quiesced
    if not quiesced:
        raise Skip("nothing was quiesced")
    try:
        for name, replicas in quiesced.items():
            ctx.cluster.quiesce(ctx.namespace, name, None, replicas)
    except (client.ApiException, OSError) as err:
        raise Retry(f"scaling the app back up failed ({type(err).__name__}); retrying") from None
    return "scaled back: " + ", ".join(f"{n} to {r}" for n, r in quiesced.items())


def health(ctx: Context) -> str:
    post = ctx.spec.post_restore
    if not post.health_checks:
        raise Skip("no postRestore.healthChecks")
    started = clock.now()
    deadline = time.monotonic() + post.timeout_seconds
    told = ""
    while True:
        failing = [
            p for c in post.health_checks if (p := http.probe(c.url, c.timeout_seconds))
        ]
        if not failing:
            took = (clock.now() - started).total_seconds()
            return f"{len(post.health_checks)} health check(s) answered 2xx after {took:.0f} s"
        if time.monotonic() > deadline:
            raise RestoreFailed(
                f"health checks did not pass within {post.timeout_seconds} s "
                f"(postRestore.timeoutSeconds): {'; '.join(failing[:3])}"
            )
        if ctx.stopped():
            raise Stopped()
        if failing[0] != told:
            told = failing[0]
            ctx.progress(f"waiting for the health checks: {'; '.join(failing[:3])}")
        time.sleep(POLL)


STEP: dict[str, Callable[[Context], str]] = {
    "Resolve": resolve,
    "Quiesce": quiesce,
    "Download": download,
    "Restore": load,
    "Replay": replay,
    "Verify": check,
    "Resume": resume,
    "HealthCheck": health,
}
