"""One look at a ChatRecovery: read it, let `machine.decide` say which step is next, run
that step, and write the status before and after it.

The daemon calls `advance` until the recovery has ended, on a thread of its own (a
restore takes minutes). All it knows comes from the object's status; the `Workspace` only
saves downloading the tarball again between steps of one process.

While a recovery runs it carries the finalizer `chatops.dev/recovery-running`, so that
deleting it mid-run (the app scaled to 0, its ChatRelease held) waits for `settle`: the
app scaled back to the replicas it had, the quiesce marks cleared, the database Lease
released, an Event saying so, then the finalizer removed. A recovery that has ended has
no finalizer of ours: deleting it, or uninstalling chatops, never waits on it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from kubernetes import client

from chatops import clock
from chatops.adapters import finalizers
from chatops.adapters import oplog as oplog_io
from chatops.adapters.kube import Cluster
from chatops.adapters.lease import LEASE_SECONDS, Lease, Renewal
from chatops.adapters.mongo import Mongo
from chatops.adapters.redact import redact
from chatops.api import validation
from chatops.api.common import GROUP, unstalled
from chatops.api.recovery import ChatRecoverySpec, ChatRecoveryStatus
from chatops.backup import swap
from chatops.errors import ChatopsError, InvalidSpec
from chatops.events import Event, EventSink, subject
from chatops.recovery import machine, source, steps

PLURAL = "chatrecoveries"
FINALIZER = f"{GROUP}/recovery-running"
"""Held while a recovery runs, so a deletion mid-run still brings the app back."""
RETRY_AFTER = 5.0
log = logging.getLogger("chatops.recovery")



@dataclasses.dataclass(frozen=True)
class Look:
    done: bool
    """The recovery has ended (or cannot start): nothing more to do."""
    delay: float = 0.0
    """Seconds before the next look."""


def advance(
    api: client.ApiClient, namespace: str, name: str, workspace: steps.Workspace,
    post: EventSink, stopped: Callable[[], bool],
) -> Look:
    """Run the next step of the recovery (or conclude it)."""
    cluster = Cluster(api)
    body = cluster.get(PLURAL, namespace, name)
    if body is None:
        workspace.close()
        return Look(done=True)
    if body["metadata"].get("deletionTimestamp"):
        settle(api, namespace, name, workspace, post)
        return Look(done=True)
    if workspace.worker is None:
        worker = Lease.worker(api, namespace, "ChatRecovery", name)
        elsewhere = worker.acquire()
        if elsewhere is not None:  # another operator process is restoring it
            log.info("%s/%s: worked on by %s", namespace, name, elsewhere)
            return Look(done=False, delay=float(LEASE_SECONDS))
        workspace.worker = Renewal(worker).start()
    elif workspace.worker.lost is not None:
        log.warning("%s/%s: %s; leaving it to its holder", namespace, name, workspace.worker.lost)
        workspace.worker.stop()
        workspace.worker = None
        return Look(done=False, delay=float(LEASE_SECONDS))
    ref = subject(body)
    status = ChatRecoveryStatus.model_validate(body.get("status") or {})
    generation = int(body["metadata"].get("generation") or 0)
    problems = tuple(validation.problems("ChatRecovery", body.get("spec") or {}))
    now = clock.now()
    decision = machine.decide(status, problems, now, generation)
    # this look got this far: an earlier unexpected error no longer holds it
    conditions = unstalled(decision.status.conditions, now, generation)
    decision = dataclasses.replace(
        decision, status=decision.status.model_copy(update={"conditions": conditions})
    )
    if decision.step is not None:
        finalizers.add(cluster, PLURAL, body, FINALIZER)  # before anything is scaled down
    elif decision.status.phase in machine.TERMINAL:  # the app is back (Resume ran): let
        finalizers.remove(cluster, PLURAL, body, FINALIZER)  # go before saying it ended
    cluster.write_status(PLURAL, namespace, name, status, decision.status)
    for told in decision.events:
        post(ref, told)
    step = decision.step
    if step is None:
        workspace.close()
        return Look(done=True)
    ctx = steps.Context(
        api, cluster, namespace, name, ChatRecoverySpec.model_validate(body["spec"]),
        decision.status, step, workspace,
        lambda old, new: cluster.write_status(PLURAL, namespace, name, old, new),
        lambda: stopped() or _deleted(cluster, namespace, name),
        uid=str(body["metadata"].get("uid") or ""),
    )
    event: Event | None
    try:
        message = steps.STEP[step](ctx)
        new = machine.succeed(ctx.status, step, message, clock.now())
        event = Event("Normal", step, message)
    except steps.Skip as skip:
        new = machine.succeed(ctx.status, step, str(skip), clock.now(), skipped=True)
        event = None
    except steps.Retry as retry:
        ctx.progress(str(retry))
        return Look(done=False, delay=RETRY_AFTER)
    except steps.Stopped:  # the next look settles a deletion; a stopping operator exits
        return Look(done=False)
    except Exception as err:  # any failure of a step fails the recovery, never the daemon
        text = str(err) if isinstance(err, ChatopsError) else f"{type(err).__name__}: {err}"
        if isinstance(err, InvalidSpec):
            text = f"{err.field}: {err.problem}"
        elif not isinstance(err, ChatopsError | client.ApiException | OSError):
            log.exception("%s/%s: %s raised", namespace, name, step)
            text = f"unexpected error: {text}"
        text = _scrub(ctx, text)
        new = machine.fail(ctx.status, step, text, clock.now())
        event = Event("Warning", f"{step}Failed", text)
    ctx.save(new)
    if event is not None:
        post(ref, event)
    log.info("%s/%s: %s %s", namespace, name, step, new.message)
    return Look(done=False)


def _deleted(cluster: Cluster, namespace: str, name: str) -> bool:
    """Whether the ChatRecovery is being deleted: asked between a restore's batches, so a
    deletion stops the restore before its commit even before kopf tells the daemon."""
    try:
        body = cluster.get(PLURAL, namespace, name)
    except (client.ApiException, OSError):
        return False
    return body is None or bool(body["metadata"].get("deletionTimestamp"))


def settle(
    api: client.ApiClient, namespace: str, name: str, workspace: steps.Workspace,
    post: EventSink,
) -> None:
    """A ChatRecovery deleted before it ended: bring the app back, let go of the
    database, say so, and let the deletion finish. Idempotent: run again after a crash,
    it scales to the same replicas and posts the same Event."""
    cluster = Cluster(api)
    body = cluster.get(PLURAL, namespace, name)
    if body is None or not finalizers.has(body, FINALIZER):
        workspace.close()
        return
    status = ChatRecoveryStatus.model_validate(body.get("status") or {})
    resumed = any(s.name == "Resume" and s.state == "Succeeded" for s in status.steps)
    said = []
    if status.quiesced and not resumed:
        for deployment, replicas in status.quiesced.items():
            cluster.quiesce(namespace, deployment, None, replicas)
        said.append(
            "scaled back: " + ", ".join(f"{d} to {r}" for d, r in status.quiesced.items())
        )
    elif status.quiesced:
        said.append("the app was already back")
    workspace.close()
    said.append(_let_go(cluster, namespace, name, body, status))
    message = f"deleted while {status.phase or 'Pending'}: " + "; ".join(said)
    ref = subject(body)
    post(ref, Event("Warning", "RecoveryDeleted", message))
    log.info("%s/%s: %s", namespace, name, message)
    finalizers.remove(cluster, PLURAL, body, FINALIZER)


def _let_go(
    cluster: Cluster, namespace: str, name: str, body: dict[str, Any],
    status: ChatRecoveryStatus,
) -> str:
    """Release the database Lease and drop this recovery's temporary collections; what
    was done and what the database holds, for the Event."""
    token = str(body["metadata"].get("uid") or "").replace("-", "")[:12]
    restored = any(s.name == "Restore" and s.state == "Succeeded" for s in status.steps)
    try:
        spec = ChatRecoverySpec.model_validate(body["spec"])
        plan = source.plan(cluster, namespace, name, spec)
        holder = f"chatrecovery/{namespace}/{name}"
        said: list[str] = []
        replaced: list[str] = []
        with Mongo(plan.secrets.mongo_uri) as mongo:
            Lease.database(cluster.api, mongo.identity(), holder).release()
            said.append("database Lease released")
            if token:
                for db in mongo.database_names():
                    for coll in mongo.namespaces(db):
                        if coll.startswith((f"{swap.TEMP}-{token}-",
                                            f"{oplog_io.JOURNAL}-{token}")):
                            mongo.drop_collection(db, coll)
                        elif coll.startswith(f"{swap.REPLACED}-{token}-"):
                            replaced.append(f"{db}.{coll}")
    except (ChatopsError, client.ApiException, OSError) as err:
        text = redact(f"{type(err).__name__}: {err}")
        return f"the database Lease expires within {LEASE_SECONDS} s ({text})"
    if replaced:
        said.append(
            "a commit was interrupted by an operator restart: the replaced collections are "
            f"kept as {', '.join(replaced[:3])}; restore again to finish"
        )
    elif restored:
        said.append("the restore had completed")
    else:
        said.append("nothing was restored: the database is as it was")
    return "; ".join(said)


def _scrub(ctx: steps.Context, text: str) -> str:
    """`text` without the run's credentials, whether or not the plan could be made."""
    try:
        return ctx.plan.secrets.scrub(text)
    except (ChatopsError, client.ApiException, OSError):
        return redact(text)
