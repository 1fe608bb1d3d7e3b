"""What every chatops daemon shares: posting the Events its decisions ask for, being
woken when its object changes, sleeping until then, its next time, or shutdown, and
backing off while its looks keep failing.

Each kind registers its own `kopf.on.event` handler calling `wake`; the daemon of the
same object finds the wake-up in the per-object `memo`. Our own status writes change
neither generation nor annotations, so they wake nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client

from chatops import clock
from chatops.adapters.kube import Cluster
from chatops.adapters.redact import redact
from chatops.api.common import Condition, stalled
from chatops.events import Event, EventSink
from chatops.notify import dispatcher

log = logging.getLogger("chatops")

ERROR_BACKOFF = 5.0
"""Seconds before a look that failed (API or network trouble) is tried again."""
MAX_BACKOFF = 300.0
"""The longest wait between two failing looks of one object."""


def poster(api: client.ApiClient) -> EventSink:
    """Posts an Event synchronously through the API (kopf's own `kopf.event` only queues
    it for later), so a controller can post it before the status that it explains; then
    offers it to the object's receivers (`notify`), which never waits on them."""
    cluster = Cluster(api)

    def post(subject: Mapping[str, Any], event: Event) -> None:
        cluster.post_event(subject, event)
        dispatcher.offer(subject, event)

    return post


def report_stalled(
    api: client.ApiClient, plural: str, namespace: str, name: str, err: Exception
) -> None:
    """Put an unexpected error of a look into the object's status as `Stalled=True`
    (scrubbed of URI credentials), so it is never only in the log. Only the conditions
    are read: the rest of the status may be what broke the look. The next look that
    succeeds sets it False (`api.common.unstalled`)."""
    cluster = Cluster(api)
    try:
        body = cluster.get(plural, namespace, name)
        if body is None:
            return
        raw = (body.get("status") or {}).get("conditions") or []
        old = [Condition.model_validate(c) for c in raw]
        generation = int(body["metadata"].get("generation") or 0)
        problem = redact(f"unexpected {type(err).__name__} in a look: {err}")[:1000]
        new = stalled(old, problem, clock.now(), generation)
        cluster.patch_status(plural, namespace, name, {"conditions": [c.wire() for c in new]})
    except Exception:  # the status itself cannot be read or written: the log has it
        log.exception("%s/%s: cannot record the unexpected error in status", namespace, name)


class Backoff:
    """Seconds before the next try after `failed()` looks in a row: ERROR_BACKOFF,
    doubled each time up to MAX_BACKOFF; a look that went through resets it."""

    def __init__(self) -> None:
        self.failures = 0

    def failed(self) -> float:
        self.failures += 1
        return float(min(ERROR_BACKOFF * 2 ** (self.failures - 1), MAX_BACKOFF))

    def succeeded(self) -> None:
        self.failures = 0


def wake(memo: Any, meta: kopf.Meta) -> None:
    """Wake the object's daemon when its spec or annotations changed."""
    seen = (meta.get("generation"), tuple(sorted((meta.get("annotations") or {}).items())))
    if memo.get("seen") != seen:
        memo["seen"] = seen
        woken = memo.get("wake")
        if isinstance(woken, asyncio.Event):
            woken.set()


def alarm(memo: Any) -> asyncio.Event:
    """The Event `wake` sets for this object's daemon."""
    woken = asyncio.Event()
    memo["wake"] = woken
    return woken


async def nap(woken: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Sleep `seconds`, or until woken or stopped, whichever comes first."""
    waits = [asyncio.ensure_future(woken.wait()), asyncio.ensure_future(stopped.wait())]
    await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for waiting in waits:
        waiting.cancel()
    woken.clear()
