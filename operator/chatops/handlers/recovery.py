"""ChatRecovery: one daemon per object, advancing its restore one step at a time on a
thread of its own until it has ended. An operator restarted midway starts the daemon
again, and the first look resumes from the status.

A recovery deleted mid-run is settled (the app brought back, see `runner.settle`) by its
daemon as it stops, or, when it was deleted while no operator ran (kopf starts no daemon
for an object being deleted), by the event handler.

The runner is imported inside the handlers: it brings pymongo and boto3, which an
operator with no ChatRecovery never needs (see bench/memory_results.md)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import kopf
from kubernetes import client

from chatops.api.common import GROUP, VERSION
from chatops.errors import ChatopsError
from chatops.handlers import daemons
from chatops.handlers.threads import in_thread

if TYPE_CHECKING:
    from chatops.recovery.steps import Workspace

log = logging.getLogger("chatops.recovery")
_LOOK_FAILED = (ChatopsError, client.ApiException, OSError)


STOP_GRACE = 60.0
"""Seconds a stopped daemon has to leave off by itself before kopf cancels it: a restore
stops at its next batch (and a commit, a few renames, finishes), so its thread is never
left running while the deletion is settled or the workspace removed."""


@kopf.daemon(
    GROUP, VERSION, "chatrecoveries", cancellation_backoff=STOP_GRACE, cancellation_timeout=30
)
async def recovery(
    name: str, namespace: str | None, memo: Any, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    assert namespace is not None  # ChatRecovery is namespaced
    from chatops.recovery import runner  # pymongo and boto3: first ChatRecovery only
    from chatops.recovery.steps import Workspace

    api = memo["api"]
    workspace = Workspace()
    memo["daemon"] = True
    backoff = daemons.Backoff()
    try:
        while not stopped:
            try:
                look = await in_thread(
                    f"chatops-recovery-{namespace}-{name}",
                    lambda: runner.advance(
                        api, namespace, name, workspace, daemons.poster(api), lambda: bool(stopped)
                    ),
                )
            except Exception as err:  # a look that failed is tried again, never the daemon
                delay = backoff.failed()
                if isinstance(err, _LOOK_FAILED):
                    log.warning("%s/%s: %s: %s", namespace, name, type(err).__name__, err)
                else:  # a bug: said in status (Stalled), not only in the log
                    log.exception("%s/%s: a look failed", namespace, name)
                    await asyncio.to_thread(
                        daemons.report_stalled, api, runner.PLURAL, namespace, name, err
                    )
                await stopped.wait(delay)
                continue
            backoff.succeeded()
            if look.done:
                break
            if look.delay:
                await stopped.wait(look.delay)
        reason = stopped.reason
        if reason is not None and reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
            await _settle(api, namespace, name, workspace)
    finally:
        memo["daemon"] = False
        workspace.close()


@kopf.on.delete(GROUP, VERSION, "chatrecoveries", optional=True)
async def deleted(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """Settle a deleted recovery once no daemon of ours works on it (its daemon settles
    it itself as it stops; this covers a deletion while no operator ran, and a settle
    that failed, which kopf retries)."""
    assert namespace is not None
    if memo.get("daemon"):
        raise kopf.TemporaryError("the recovery's daemon is stopping", delay=2)
    from chatops.recovery import runner
    from chatops.recovery.steps import Workspace

    api = memo["api"]
    try:
        await in_thread(
            f"chatops-recovery-settle-{namespace}-{name}",
            lambda: runner.settle(api, namespace, name, Workspace(), daemons.poster(api)),
        )
    except _LOOK_FAILED as err:
        raise kopf.TemporaryError(f"settling the deletion: {type(err).__name__}", delay=5) from err


async def _settle(api: client.ApiClient, namespace: str, name: str, workspace: Workspace) -> None:
    from chatops.recovery import runner

    try:
        await in_thread(
            f"chatops-recovery-settle-{namespace}-{name}",
            lambda: runner.settle(api, namespace, name, workspace, daemons.poster(api)),
        )
    except _LOOK_FAILED as err:  # the deletion handler tries again
        log.warning("%s/%s: settling the deletion: %s: %s", namespace, name,
                    type(err).__name__, err)
