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
from chatops.events import EventSink
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
    """Look as often as the last look asked. A look that raises is said in the status
    and an Event (`runner.report_failure`), then tried again after a growing delay: never
    a silent retry loop, never a daemon kopf restarts for ever."""
    assert namespace is not None  # ChatRelease is namespaced
    api = memo["api"]
    woken = daemons.alarm(memo)
    post = daemons.poster(api)
    backoff = daemons.Backoff()
    while not stopped:
        try:
            with telemetry.look_seconds.time():
                look = await asyncio.to_thread(runner.look, api, namespace, name, post)
            delay = look.requeue_after
            backoff.succeeded()
        except Exception as err:  # whatever it is, it is reported, not re-raised
            delay = backoff.failed()
            log.warning("%s/%s: look failed (%s: %s); next try in %.0f s",
                        namespace, name, type(err).__name__, err, delay)
            await _report(api, namespace, name, err, post)
        await daemons.nap(woken, stopped, delay)
    telemetry.forget_release(namespace, name)


async def _report(
    api: client.ApiClient, namespace: str, name: str, err: Exception, post: EventSink
) -> None:
    try:
        await asyncio.to_thread(runner.report_failure, api, namespace, name, err, post)
    except Exception as failed:  # the API server is away too: the log has said it
        log.warning("%s/%s: cannot report it: %s: %s", namespace, name,
                    type(failed).__name__, failed)
