"""ChatRelease: one daemon per object, looking as often as its last decision asked and
at once when the object changes (a new spec, a `chatops.dev/promote`).

The daemon holds no state of its own between looks; kopf restarts it for every object
when the operator starts, and the first look resumes from the status.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kubernetes import client

from chatops import telemetry
from chatops.api.common import GROUP, VERSION
from chatops.errors import ChatopsError
from chatops.handlers import daemons
from chatops.release import runner

log = logging.getLogger("chatops.release")


@kopf.on.event(GROUP, VERSION, "chatreleases")
async def wake(memo: Any, meta: kopf.Meta, **_: Any) -> None:
    """A new spec or annotation (`chatops.dev/promote`): look now."""
    daemons.wake(memo, meta)


@kopf.daemon(GROUP, VERSION, "chatreleases", cancellation_timeout=10)
async def release(
    name: str, namespace: str | None, memo: Any, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    assert namespace is not None  # ChatRelease is namespaced
    woken = daemons.alarm(memo)
    while not stopped:
        try:
            with telemetry.look_seconds.time():
                look = await asyncio.to_thread(
                    runner.look, memo["api"], namespace, name, daemons.post
                )
            delay = look.requeue_after
        except (ChatopsError, client.ApiException, OSError) as err:
            log.warning("%s/%s: %s: %s", namespace, name, type(err).__name__, err)
            delay = daemons.ERROR_BACKOFF
        await daemons.nap(woken, stopped, delay)
    telemetry.forget_release(namespace, name)
