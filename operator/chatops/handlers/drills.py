"""ChatBackup restore drills (`spec.verification`): one daemon per ChatBackup that has
them, beside the backup daemon. It looks (`drillrun.look`), runs a drill on a thread of
its own when one is due, records it, and sleeps until the next drill, a change of the
object (a new spec, the `chatops.dev/verify-now` annotation) or shutdown.

Like the backup daemon, it needs no finalizer: a deleted ChatBackup's drill is stopped by
the daemon's stop flag, and drops its scratch database.

`drillrun` is imported inside the daemon: it brings pymongo and boto3, which an operator
with no drill never needs (see bench/memory_results.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from typing import Any

import kopf
from kubernetes import client

from chatops.api.common import GROUP, VERSION
from chatops.errors import ChatopsError
from chatops.handlers import daemons
from chatops.handlers.threads import in_thread

log = logging.getLogger("chatops.backup.drill")
WAKE = "drill-wake"


def _drilled(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("verification"))


@kopf.on.event(GROUP, VERSION, "chatbackups", when=_drilled)
async def wake(memo: Any, meta: kopf.Meta, **_: Any) -> None:
    """A new spec or annotation: the drill daemon looks now."""
    seen = (meta.get("generation"), tuple(sorted((meta.get("annotations") or {}).items())))
    if memo.get("drill-seen") != seen:
        memo["drill-seen"] = seen
        woken = memo.get(WAKE)
        if isinstance(woken, asyncio.Event):
            woken.set()


async def drill(
    name: str, namespace: str | None, memo: Any, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    assert namespace is not None
    from chatops.backup import drillrun  # pymongo and boto3: first drill only

    woken = asyncio.Event()
    memo[WAKE] = woken
    api = memo["api"]
    backoff = daemons.Backoff()
    while not stopped:
        try:
            look = await asyncio.to_thread(drillrun.look, api, namespace, name,
                                           daemons.poster(api))
            if look.drill is not None:
                await in_thread(
                    f"chatops-drill-{namespace}-{name}",
                    functools.partial(
                        drillrun.run, api, look.drill, lambda: bool(stopped), daemons.poster(api)
                    ),
                )
                continue
            delay = look.requeue_after
            backoff.succeeded()
        except (ChatopsError, client.ApiException, OSError) as err:
            delay = backoff.failed()
            log.warning("%s/%s: drill look: %s: %s", namespace, name, type(err).__name__, err)
        except Exception:
            delay = backoff.failed()
            log.exception("%s/%s: unexpected error in a drill look", namespace, name)
        await daemons.nap(woken, stopped, delay)


def _without_finalizer() -> None:
    """Registered as kopf.daemon does, without the finalizer (see the module's docstring)."""
    kopf.daemon(GROUP, VERSION, "chatbackups", id="drill", when=_drilled,
                cancellation_timeout=60)(drill)
    spawning = kopf.get_default_registry()._spawning
    for index, handler in enumerate(spawning._handlers):
        if getattr(handler, "fn", None) is drill:
            spawning._handlers[index] = dataclasses.replace(handler, requires_finalizer=False)


_without_finalizer()
