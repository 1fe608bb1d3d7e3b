"""ChatRelease: one daemon per object, looking as often as its last decision asked and
at once when the object changes (a new spec, a `chatops.dev/promote`).

The daemon holds no state of its own between looks; kopf restarts it for every object
when the operator starts, and the first look resumes from the status.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf
from kubernetes import client

from chatops import telemetry
from chatops.api.common import GROUP, VERSION
from chatops.errors import ChatopsError
from chatops.release import runner
from chatops.release.model import Event

log = logging.getLogger("chatops.release")
ERROR_BACKOFF = 5.0


def _post(body: dict[str, Any], event: Event) -> None:
    # kopf reads only apiVersion, kind and metadata from the body, which a raw dict has.
    kopf.event(cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.message)


@kopf.on.event(GROUP, VERSION, "chatreleases")
async def wake(memo: kopf.Memo, meta: kopf.Meta, **_: Any) -> None:
    """A new spec or annotation: let the object's daemon look now, not at its next
    time. Status writes (our own) change neither, so they wake nothing."""
    seen = (meta.get("generation"), tuple(sorted((meta.get("annotations") or {}).items())))
    if memo.get("seen") != seen:
        memo["seen"] = seen
        woken = memo.get("wake")
        if isinstance(woken, asyncio.Event):
            woken.set()


@kopf.daemon(GROUP, VERSION, "chatreleases", cancellation_timeout=10)
async def release(
    name: str, namespace: str | None, memo: Any, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    assert namespace is not None  # ChatRelease is namespaced
    woken = asyncio.Event()
    memo["wake"] = woken
    while not stopped:
        woken.clear()
        try:
            with telemetry.look_seconds.time():
                look = await asyncio.to_thread(runner.look, memo["api"], namespace, name, _post)
            delay = look.requeue_after
        except (ChatopsError, client.ApiException, OSError) as err:
            log.warning("%s/%s: %s: %s", namespace, name, type(err).__name__, err)
            delay = ERROR_BACKOFF
        waits = [asyncio.ensure_future(woken.wait()), asyncio.ensure_future(stopped.wait())]
        await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
    telemetry.forget_release(namespace, name)
