"""Steady API traffic straight to a Service's ready pods, from inside the environment's
namespace: what kube-proxy would spread over a Service's endpoints.

The analysis needs traffic on every version it measures (its minimum-traffic guard, and
rates that are not no-data). Through the Gateway, `env/loadgen.py` sends it as users
would, honouring the route's weights; this sends it to one Service (a color) directly,
for tests whose routing is not through the Gateway (the Service router, the NGINX
router's canary Ingress, which nothing serves here) or that measure a version alone.

    stream = Stream(session, addresses=lambda: [("10.244.0.7", 8080)], rps=20)
    task = asyncio.create_task(stream.run()); …; stream.stop()

`session` is an aiohttp ClientSession whose connector makes its sockets in the
namespace: `aiohttp.TCPConnector(socket_factory=netns.socket_factory(name))`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

Addresses = Callable[[], list[tuple[str, int]]]


@dataclass
class Tally:
    """What a stream's requests got."""

    sent: int = 0
    ok: int = 0
    failed: int = 0  # 5xx answers
    errors: int = 0  # no answer: refused, reset, timed out
    no_endpoints: int = 0  # ticks with no ready pod to send to
    by_pod: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "errors": self.errors,
            "noEndpoints": self.no_endpoints,
            "byPod": dict(self.by_pod),
        }


class Stream:
    """`rps` requests a second of `method path`, round-robin over `addresses()`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        addresses: Addresses,
        rps: float,
        path: str = "/api/messages",
        method: str = "GET",
        timeout: float = 5.0,
    ) -> None:
        if rps <= 0 or rps > 1000:
            raise ValueError(f"rps: want 0 < rps <= 1000, got {rps}")
        if not path.startswith("/"):
            raise ValueError(f"path: want an absolute path, got {path!r}")
        self.session, self.addresses = session, addresses
        self.rps, self.path, self.method = rps, path, method
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.tally = Tally()
        self._stopped = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()

    def settings(self) -> dict[str, Any]:
        return {"rps": self.rps, "path": self.path, "method": self.method}

    async def run(self) -> None:
        """Send until `stop()`: one request every 1/rps s, on a schedule that does not
        drift with the answers' latency."""
        turn = itertools.count()
        start = time.monotonic()
        for tick in itertools.count():
            if self._stopped.is_set():
                break
            addresses = self.addresses()
            if addresses:
                address = addresses[next(turn) % len(addresses)]
                task = asyncio.create_task(self._one(*address))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            else:
                self.tally.no_endpoints += 1
            delay = start + (tick + 1) / self.rps - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), max(delay, 0))
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    def stop(self) -> None:
        self._stopped.set()

    async def _one(self, ip: str, port: int) -> None:
        self.tally.sent += 1
        try:
            async with self.session.request(
                self.method, f"http://{ip}:{port}{self.path}", timeout=self.timeout
            ) as reply:
                await reply.read()
                pod = reply.headers.get("X-Chat-Pod", "")
                self.tally.by_pod[pod] = self.tally.by_pod.get(pod, 0) + 1
                if reply.status >= 500:
                    self.tally.failed += 1
                else:
                    self.tally.ok += 1
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.tally.errors += 1
