"""One look at a ChatRecovery: read it, let `machine.decide` say which step is next, run
that step, and write the status before and after it.

The daemon calls `advance` until the recovery has ended, on a thread of its own (a
restore takes minutes). All it knows comes from the object's status; the `Workspace` only
saves downloading the tarball again between steps of one process.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable

from kubernetes import client

from chatops.adapters.kube import Cluster
from chatops.adapters.lease import LEASE_SECONDS, Lease, Renewal
from chatops.adapters.redact import redact
from chatops.api import validation
from chatops.api.recovery import ChatRecoverySpec, ChatRecoveryStatus
from chatops.errors import ChatopsError, InvalidSpec
from chatops.events import Event, EventSink
from chatops.recovery import machine, steps

PLURAL = "chatrecoveries"
RETRY_AFTER = 5.0
log = logging.getLogger("chatops.recovery")



def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


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
    if body is None or body["metadata"].get("deletionTimestamp"):
        workspace.close()
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
    ref = {k: body[k] for k in ("apiVersion", "kind", "metadata")}
    status = ChatRecoveryStatus.model_validate(body.get("status") or {})
    generation = int(body["metadata"].get("generation") or 0)
    problems = tuple(validation.problems("ChatRecovery", body.get("spec") or {}))
    decision = machine.decide(status, problems, now(), generation)
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
        lambda old, new: cluster.write_status(PLURAL, namespace, name, old, new), stopped,
    )
    event: Event | None
    try:
        message = steps.STEP[step](ctx)
        new = machine.succeed(ctx.status, step, message, now())
        event = Event("Normal", step, message)
    except steps.Skip as skip:
        new = machine.succeed(ctx.status, step, str(skip), now(), skipped=True)
        event = None
    except steps.Retry as retry:
        ctx.progress(str(retry))
        return Look(done=False, delay=RETRY_AFTER)
    except steps.Stopped:
        return Look(done=True)
    except (ChatopsError, client.ApiException, OSError) as err:
        text = str(err) if isinstance(err, ChatopsError) else f"{type(err).__name__}: {err}"
        if isinstance(err, InvalidSpec):
            text = f"{err.field}: {err.problem}"
        text = _scrub(ctx, text)
        new = machine.fail(ctx.status, step, text, now())
        event = Event("Warning", f"{step}Failed", text)
    ctx.save(new)
    if event is not None:
        post(ref, event)
    log.info("%s/%s: %s %s", namespace, name, step, new.message)
    return Look(done=False)


def _scrub(ctx: steps.Context, text: str) -> str:
    """`text` without the run's credentials, whether or not the plan could be made."""
    try:
        return ctx.plan.secrets.scrub(text)
    except (ChatopsError, client.ApiException, OSError):
        return redact(text)
