"""Steady traffic straight to a Service's ready pods, from inside the environment's
namespace, as kube-proxy would spread it over a Service's endpoints: API requests at
`rps`, and WebSocket connections opened at `ws_rate` a second, each held `ws_hold`
seconds and closed by the client (chat users coming and going).

The analysis needs traffic on every version it measures (its minimum-traffic guard, and
rates that are not no-data: 0/0 is NaN). Through the Gateway, `env/loadgen.py` sends it
as users would, honouring the route's weights; this sends it to one Service (a color)
directly, for tests whose routing is not through the Gateway (the NGINX router's canary
Ingress, which nothing serves here) or that measure a version alone.

    stream = Stream(session, addresses=lambda: [("10.0.0.7", 8080)], rps=20, ws_rate=2)
    task = asyncio.create_task(stream.run()); …; stream.stop()

`session` is an aiohttp ClientSession whose connector makes its sockets in the
namespace: `aiohttp.TCPConnector(socket_factory=netns.socket_factory(name))`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

Addresses = Callable[[], list[tuple[str, int]]]


@dataclass
class Tally:
    """What a stream's requests and connections got."""

    sent: int = 0
    ok: int = 0
    failed: int = 0  # 5xx answers
    errors: int = 0  # no answer: refused, reset, timed out
    no_endpoints: int = 0  # ticks with no ready pod to send to
    by_pod: dict[str, int] = field(default_factory=dict)
    ws_opened: int = 0  # handshakes accepted
    ws_refused: int = 0  # handshakes answered with an error status
    ws_errors: int = 0  # no handshake answer at all
    ws_closed_by_server: dict[int, int] = field(default_factory=dict)  # close code: count

    def as_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "errors": self.errors,
            "noEndpoints": self.no_endpoints,
            "byPod": dict(self.by_pod),
            "wsOpened": self.ws_opened,
            "wsRefused": self.ws_refused,
            "wsErrors": self.ws_errors,
            "wsClosedByServer": {str(k): v for k, v in self.ws_closed_by_server.items()},
        }


class Stream:
    """`rps` requests a second of `method path`, and `ws_rate` WebSocket connections a
    second, round-robin over `addresses()`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        addresses: Addresses,
        rps: float,
        path: str = "/api/messages",
        method: str = "GET",
        ws_rate: float = 2.0,
        ws_hold: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        if not 0 < rps <= 1000:
            raise ValueError(f"rps: want 0 < rps <= 1000, got {rps}")
        if not 0 <= ws_rate <= rps:
            raise ValueError(f"wsRate: want 0 <= wsRate <= rps, got {ws_rate}")
        if not 0 <= ws_hold <= 600:
            raise ValueError(f"wsHold: want 0..600 s, got {ws_hold}")
        if not path.startswith("/"):
            raise ValueError(f"path: want an absolute path, got {path!r}")
        self.session, self.addresses = session, addresses
        self.rps, self.path, self.method = rps, path, method
        self.ws_rate, self.ws_hold = ws_rate, ws_hold
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.tally = Tally()
        self._stopped = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()

    def settings(self) -> dict[str, Any]:
        return {
            "rps": self.rps,
            "path": self.path,
            "method": self.method,
            "wsRate": self.ws_rate,
            "wsHold": self.ws_hold,
        }

    async def run(self) -> None:
        """Send until `stop()`: one request every 1/rps s, on a schedule that does not
        drift with the answers' latency; a WebSocket every 1/ws_rate s."""
        turn = itertools.count()
        start = time.monotonic()
        ws_due = 0.0
        for tick in itertools.count():
            if self._stopped.is_set():
                break
            addresses = self.addresses()
            if addresses:
                address = addresses[next(turn) % len(addresses)]
                self._spawn(self._request(*address))
                ws_due += self.ws_rate / self.rps
                if ws_due >= 1:
                    ws_due -= 1
                    self._spawn(self._websocket(*address))
            else:
                self.tally.no_endpoints += 1
            delay = start + (tick + 1) / self.rps - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), max(delay, 0))
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    def stop(self) -> None:
        self._stopped.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _request(self, ip: str, port: int) -> None:
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

    async def _websocket(self, ip: str, port: int) -> None:
        try:
            async with self.session.ws_connect(
                f"http://{ip}:{port}/ws", timeout=aiohttp.ClientWSTimeout(ws_close=2)
            ) as ws:
                self.tally.ws_opened += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_read_until_closed(ws), self.ws_hold)
                if ws.closed and ws.close_code is not None:
                    code = int(ws.close_code)
                    closed = self.tally.ws_closed_by_server
                    closed[code] = closed.get(code, 0) + 1
        except aiohttp.WSServerHandshakeError:
            self.tally.ws_refused += 1
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.tally.ws_errors += 1


async def _read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read until the server closes (or the hold ends, cancelling this)."""
    async for _ in ws:
        pass
