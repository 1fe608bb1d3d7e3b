"""ChatRecovery: one daemon per object, advancing its restore one step at a time on a
thread of its own until it has ended. An operator restarted midway starts the daemon
again, and the first look resumes from the status."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes import client

from chatops.api.common import GROUP, VERSION
from chatops.errors import ChatopsError
from chatops.handlers.threads import in_thread
from chatops.recovery import runner
from chatops.recovery.machine import Event
from chatops.recovery.steps import Workspace

log = logging.getLogger("chatops.recovery")
ERROR_BACKOFF = 5.0


def post(ref: Mapping[str, Any], event: Event) -> None:
    kopf.event(cast(kopf.Body, dict(ref)), type=event.type, reason=event.reason,
               message=event.message)


@kopf.daemon(GROUP, VERSION, "chatrecoveries", cancellation_timeout=30)
async def recovery(
    name: str, namespace: str | None, memo: Any, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    assert namespace is not None  # ChatRecovery is namespaced
    api = memo["api"]
    workspace = Workspace()
    try:
        while not stopped:
            try:
                look = await in_thread(
                    f"chatops-recovery-{namespace}-{name}",
                    lambda: runner.advance(
                        api, namespace, name, workspace, post, lambda: bool(stopped)
                    ),
                )
            except (ChatopsError, client.ApiException, OSError) as err:
                log.warning("%s/%s: %s: %s", namespace, name, type(err).__name__, err)
                await stopped.wait(ERROR_BACKOFF)
                continue
            if look.done:
                return
            if look.delay:
                await stopped.wait(look.delay)
    finally:
        workspace.close()
