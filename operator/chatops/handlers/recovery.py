"""ChatRecovery: one daemon per object, advancing its restore one step at a time on a
thread of its own until it has ended. An operator restarted midway starts the daemon
again, and the first look resumes from the status."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes import client

from chatops.api.common import GROUP, VERSION
from chatops.errors import ChatopsError
from chatops.handlers import daemons
from chatops.handlers.threads import in_thread
from chatops.recovery import runner
from chatops.recovery.steps import Workspace

log = logging.getLogger("chatops.recovery")


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
                        api, namespace, name, workspace, daemons.poster(api), lambda: bool(stopped)
                    ),
                )
            except (ChatopsError, client.ApiException, OSError) as err:
                log.warning("%s/%s: %s: %s", namespace, name, type(err).__name__, err)
                await stopped.wait(daemons.ERROR_BACKOFF)
                continue
            if look.done:
                return
            if look.delay:
                await stopped.wait(look.delay)
    finally:
        workspace.close()
