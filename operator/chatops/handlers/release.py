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

from chatops import clock, telemetry
from chatops.adapters.watched import Key, Seen
from chatops.api.common import GROUP, VERSION
from chatops.errors import ChatopsError
from chatops.events import EventSink
from chatops.handlers import daemons, sweep, watched
from chatops.release import deletion, runner

log = logging.getLogger("chatops.release")


@kopf.on.event(GROUP, VERSION, "chatreleases")
async def wake(memo: Any, meta: kopf.Meta, **_: Any) -> None:
    """A new spec or annotation (`chatops.dev/promote`): look now."""
    daemons.wake(memo, meta)


@kopf.daemon(GROUP, VERSION, "chatreleases", cancellation_timeout=10)
async def release(
    name: str,
    namespace: str | None,
    body: kopf.Body,
    memo: Any,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    """Look as often as the last look asked, or at once when the release or what it
    reads changes (`handlers/watched.py`). A look that raises is said in the status
    and an Event (`runner.report_failure`), then tried again after a growing delay: never
    a silent retry loop, never a daemon kopf restarts for ever."""
    assert namespace is not None  # ChatRelease is namespaced
    api = memo["api"]
    woken = daemons.alarm(memo)
    watched.subscribe(memo, namespace, name, woken)
    post = daemons.poster(api)
    backoff = daemons.Backoff()
    written: str | None = None
    wrote: dict[Key, str] = {}  # other objects' versions as the looks left them
    sweeper: sweep.Sweeper = memo["sweep"]
    try:
        while not stopped:
            seen: Seen | None = None
            try:
                # here, in the event loop, where the indexes and the sweep change
                seen = sweeper.fill(watched.seen(body, written, kwargs, wrote),
                                    (namespace, name), clock.now())
                with telemetry.look_seconds.time():
                    look = await asyncio.to_thread(_look, memo, api, namespace, name, post, seen)
                delay, written = look.requeue_after, look.version
                sweeper.watch((namespace, name), look.watch)
                backoff.succeeded()
            except Exception as err:  # whatever it is, it is reported, not re-raised
                delay = backoff.failed()
                log.warning("%s/%s: look failed (%s: %s); next try in %.0f s",
                            namespace, name, type(err).__name__, err, delay)
                await _report(api, namespace, name, err, post)
            if seen is not None:  # what a failed look wrote too
                wrote.update(seen.written)
            await daemons.nap(woken, stopped, delay)
    finally:  # also when kopf cancels a daemon that did not stop in time (a look in flight)
        watched.unsubscribe(memo, namespace, name)
        sweeper.watch((namespace, name), None)
        telemetry.forget_release(namespace, name)


async def _report(
    api: client.ApiClient, namespace: str, name: str, err: Exception, post: EventSink
) -> None:
    try:
        await asyncio.to_thread(runner.report_failure, api, namespace, name, err, post)
    except Exception as failed:  # the API server is away too: the log has said it
        log.warning("%s/%s: cannot report it: %s: %s", namespace, name,
                    type(failed).__name__, failed)


def _look(
    memo: Any, api: client.ApiClient, namespace: str, name: str, post: EventSink, seen: Seen
) -> runner.Look:
    """One look, marked in `memo` while it runs: a deletion waits for a look in flight,
    whose actions could otherwise move traffic after the deletion moved it back."""
    memo["looking"] = True
    try:
        return runner.look(api, namespace, name, post, seen)
    finally:
        memo["looking"] = False


TRAFFIC_TRIES = 10
"""Rounds (2 s apart) of failing to move traffic back before a deletion keeps both colors."""


@kopf.on.delete(GROUP, VERSION, "chatreleases")
async def deleted(name: str, namespace: str | None, memo: Any, retry: int, **_: Any) -> None:
    """The live version outlives its ChatRelease: traffic back to the stable color, the
    other color deleted, the rest released (`deletionPolicy: Retain`), or everything
    deleted (`Delete`); see `release/teardown.py`. The finalizer stays until it is done,
    so a restarted operator finishes it."""
    assert namespace is not None
    if memo.get("looking"):
        raise kopf.TemporaryError("a look is finishing; deleting after it", delay=1)
    failed = memo.get("traffic_error")
    stuck = str(failed) if failed is not None and retry >= TRAFFIC_TRIES else None
    try:
        waiting = await asyncio.to_thread(
            deletion.finish, memo["api"], namespace, name, daemons.poster(memo["api"]), stuck
        )
    except ChatopsError as err:
        memo["traffic_error"] = err
        raise kopf.TemporaryError(f"deleting: {err}", delay=2) from None
    except client.ApiException as err:
        raise kopf.TemporaryError(f"deleting: {err.status} {err.reason}", delay=2) from None
    if waiting is not None:
        raise kopf.TemporaryError(waiting, delay=1)
