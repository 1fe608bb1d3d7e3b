"""What every chatops daemon shares: posting an Event the decision asked for, being
woken when its object changes, and sleeping until then, its next time, or shutdown.

Each kind registers its own `kopf.on.event` handler calling `wake`; the daemon of the
same object finds the wake-up in the per-object `memo`. Our own status writes change
neither generation nor annotations, so they wake nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal, Protocol, cast

import kopf

ERROR_BACKOFF = 5.0
"""Seconds before a look that failed (API or network trouble) is tried again."""


class Announcement(Protocol):
    """An Event a decision asked for (each kind has its own dataclass of this shape)."""

    @property
    def type(self) -> Literal["Normal", "Warning"]: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...


def post(ref: Mapping[str, Any], event: Announcement) -> None:
    """A Kubernetes Event on the object `ref` (kopf reads only apiVersion, kind and
    metadata from it, which a raw object has)."""
    kopf.event(
        cast(kopf.Body, dict(ref)), type=event.type, reason=event.reason, message=event.message
    )


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
