"""A chat app's users through the data plane: a steady rate of HTTP requests and N
long-lived WebSocket clients that reconnect when their connection closes.

Every request's outcome and the color that answered it, and every WebSocket connection's
open, color, close and reconnect, are recorded, so a test or a benchmark can say what the
users saw during a release (the share each color served, the requests that failed, the
connections a switch cut). The simulator names who answered in the headers `X-Chat-Pod`,
`X-Chat-Color` and `X-Chat-Version` (of HTTP responses and of the WebSocket handshake).

As a library (tests, benchmarks, the demo):

    with loadgen.Load(os.environ["GATEWAY_URL"], host="chat.example.com", clients=20) as load:
        ...                               # a release moves traffic
        print(loadgen.served(load.requests()), loadgen.failed(load.requests()))

As a command (prints one line a second, then a JSON summary):

    python env/loadgen.py --url $GATEWAY_URL --host chat.example.com --rate 50 --clients 200

Requests are sent open-loop (at their scheduled time whether or not earlier ones have
answered), as users do: a slow version does not slow the load down and hide its cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType

import aiohttp

POD_HEADER, COLOR_HEADER, VERSION_HEADER = "X-Chat-Pod", "X-Chat-Color", "X-Chat-Version"
CLIENT_CLOSE = "client"  # `Connection.closed_by` when the load generator itself closed it
SERVER_CLOSE = "server"


@dataclass(frozen=True)
class Request:
    """One HTTP request: when it was sent and answered (wall-clock seconds), the status
    (None: no answer, see `error`) and who answered it."""

    sent: float
    answered: float
    status: int | None
    color: str = ""
    pod: str = ""
    version: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        """What a user calls a success: an answer below 400."""
        return self.status is not None and self.status < 400

    @property
    def latency(self) -> float:
        return self.answered - self.sent


@dataclass(frozen=True)
class Connection:
    """One WebSocket connection attempt of client `client` (its `attempt`-th): when it
    was tried, opened (None: the handshake failed, see `error`), closed (None: still
    open), by whom, with which close code, and who served it."""

    client: int
    attempt: int
    tried: float
    opened: float | None = None
    closed: float | None = None
    closed_by: str = ""
    code: int | None = None
    color: str = ""
    pod: str = ""
    version: str = ""
    error: str = ""

    @property
    def is_open(self) -> bool:
        return self.opened is not None and self.closed is None

    def open_through(self, start: float, end: float) -> bool:
        """Whether the connection was open during the whole of [start, end]."""
        return (
            self.opened is not None
            and self.opened <= start
            and (self.closed is None or self.closed >= end)
        )


# -- what the records say (pure) ------------------------------------------------------


def between(
    requests: Iterable[Request], since: float = 0, until: float = float("inf")
) -> list[Request]:
    """The requests sent in [since, until)."""
    return [r for r in requests if since <= r.sent < until]


def served(requests: Iterable[Request]) -> Counter[str]:
    """Answered requests per color that answered them ("" for an answer without a
    color: the data plane's own, e.g. a 502)."""
    return Counter(r.color for r in requests if r.status is not None)


def share(requests: Iterable[Request], color: str) -> float:
    """The fraction of answered requests that `color` served (0 when none answered)."""
    counts = served(requests)
    total = sum(counts.values())
    return counts[color] / total if total else 0.0


def failed(requests: Iterable[Request]) -> list[Request]:
    """The requests a user saw fail: no answer, or an answer of 400 and above."""
    return [r for r in requests if not r.ok]


def latest(connections: Iterable[Connection]) -> dict[int, Connection]:
    """Each client's latest connection attempt."""
    out: dict[int, Connection] = {}
    for c in connections:
        if c.client not in out or c.attempt > out[c.client].attempt:
            out[c.client] = c
    return out


def closed_by_server(
    connections: Iterable[Connection], since: float = 0, until: float = float("inf")
) -> list[Connection]:
    """Opened connections the server side closed (or lost) in [since, until)."""
    return [
        c
        for c in connections
        if c.opened is not None
        and c.closed is not None
        and c.closed_by == SERVER_CLOSE
        and since <= c.closed < until
    ]


def per_second(requests: Iterable[Request], now: float, window: float = 1.0) -> Counter[str]:
    """Requests answered per second by each color over the `window` before `now`; failed
    ones are counted under "failed" as well."""
    out: Counter[str] = Counter()
    for r in requests:
        if now - window <= r.answered < now:
            out[r.color or "?"] += 1
            if not r.ok:
                out["failed"] += 1
    return Counter({k: round(v / window) for k, v in out.items()})


# -- the load -------------------------------------------------------------------------


class Load:
    """Sends the load from a thread of its own until `stop()` (or the end of a `with`).

    `rate` requests a second to `path` and `clients` WebSocket clients on `ws_path`, all
    to `url` with `Host: host`. A closed WebSocket reconnects after `reconnect_delay`
    seconds (plus up to as much again of jitter, so a cut does not become a synchronised
    storm); a failed handshake retries after `reconnect_delay` as well. With `netns`, the
    connections are made inside that network namespace (env/netns.py), e.g. straight to
    a pod's address for the latency floor of a benchmark. `headers` go with every
    request and handshake (a header route's dogfood users: `{"X-Canary": "dogfood"}`)."""

    def __init__(
        self,
        url: str,
        host: str | None = None,
        rate: float = 50,
        clients: int = 0,
        path: str = "/api/messages",
        ws_path: str = "/ws",
        timeout: float = 5.0,
        reconnect_delay: float = 0.2,
        netns: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.headers = {**(headers or {}), **({"Host": host} if host else {})}
        self.rate, self.clients = rate, clients
        self.path, self.ws_path = path, ws_path
        self.timeout, self.reconnect_delay = timeout, reconnect_delay
        self.netns = netns
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._connections: dict[tuple[int, int], Connection] = {}
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="loadgen", daemon=True)
        self._started = threading.Event()
        self.started_at = 0.0

    # records, safe to read from any thread

    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections.values())

    # life

    def start(self) -> Load:
        self.started_at = time.time()
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        """Stop sending, wait for the requests in flight, close the WebSockets (code
        1000, recorded as closed by the client)."""
        if self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(self.timeout + 10)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._started.set()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        factory = {}
        if self.netns:
            import netns

            factory = {"socket_factory": netns.socket_factory(self.netns)}
        http = aiohttp.TCPConnector(limit=512, **factory)  # type: ignore[arg-type]
        ws = aiohttp.TCPConnector(limit=0, **factory)  # type: ignore[arg-type]
        async with (
            aiohttp.ClientSession(connector=http, timeout=timeout) as session,
            aiohttp.ClientSession(connector=ws, timeout=timeout) as ws_session,  # the handshake's
        ):
            tasks = [asyncio.create_task(self._client(ws_session, i)) for i in range(self.clients)]
            if self.rate > 0:
                tasks.append(asyncio.create_task(self._produce(session)))
            await self._stopping.wait()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _produce(self, session: aiohttp.ClientSession) -> None:
        assert self._stopping is not None
        interval, loop = 1.0 / self.rate, asyncio.get_running_loop()
        in_flight: set[asyncio.Task[None]] = set()
        due = loop.time()
        while not self._stopping.is_set():
            task = asyncio.create_task(self._one(session))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            due += interval
            if due < loop.time() - 1:  # the machine stalled: go on at the rate, no burst
                due = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, due - loop.time()))
        if in_flight:
            await asyncio.wait(in_flight)

    async def _one(self, session: aiohttp.ClientSession) -> None:
        sent = time.time()
        try:
            async with session.get(self.url + self.path, headers=self.headers) as reply:
                await reply.read()
                h = reply.headers
                record = Request(
                    sent,
                    time.time(),
                    reply.status,
                    h.get(COLOR_HEADER, ""),
                    h.get(POD_HEADER, ""),
                    h.get(VERSION_HEADER, ""),
                )
        except (aiohttp.ClientError, TimeoutError) as err:
            record = Request(sent, time.time(), None, error=f"{type(err).__name__}: {err}"[:200])
        with self._lock:
            self._requests.append(record)

    def _put(self, c: Connection) -> None:
        with self._lock:
            self._connections[(c.client, c.attempt)] = c

    async def _client(self, session: aiohttp.ClientSession, index: int) -> None:
        assert self._stopping is not None
        stopping = self._stopping
        attempt = 0
        while not stopping.is_set():
            attempt += 1
            c = Connection(index, attempt, time.time())
            try:
                ws = await session.ws_connect(
                    self.url + self.ws_path,
                    headers=self.headers,
                    timeout=aiohttp.ClientWSTimeout(ws_close=self.timeout),
                    autoping=True,
                )
            except (aiohttp.ClientError, TimeoutError) as err:
                error = f"{type(err).__name__}: {err}"[:200]
                self._put(dataclasses.replace(c, closed=time.time(), error=error))
            else:
                h = ws._response.headers  # the handshake's: who accepted the connection
                c = dataclasses.replace(
                    c,
                    opened=time.time(),
                    color=h.get(COLOR_HEADER, ""),
                    pod=h.get(POD_HEADER, ""),
                    version=h.get(VERSION_HEADER, ""),
                )
                self._put(c)
                await self._hold(ws, stopping)
                # a close of ours is recorded with the code we sent; the server's with its own
                by = CLIENT_CLOSE if stopping.is_set() else SERVER_CLOSE
                code = aiohttp.WSCloseCode.OK if by == CLIENT_CLOSE else ws.close_code
                self._put(dataclasses.replace(c, closed=time.time(), closed_by=by, code=code))
            if not stopping.is_set():
                delay = self.reconnect_delay * (1 + random.random())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)

    @staticmethod
    async def _hold(ws: aiohttp.ClientWebSocketResponse, stopping: asyncio.Event) -> None:
        """Read until the server closes the connection (or it breaks); when the load
        stops first, close it from this side with 1000."""

        async def close_on_stop() -> None:
            await stopping.wait()
            await ws.close(code=aiohttp.WSCloseCode.OK)

        closer = asyncio.create_task(close_on_stop())
        try:
            async for _ in ws:  # ends on a close frame or a broken connection
                pass
        finally:
            closer.cancel()


# -- the command ----------------------------------------------------------------------


def summary(load: Load) -> dict[str, object]:
    requests, connections = load.requests(), load.connections()
    return {
        "requests": len(requests),
        "served": dict(served(requests)),
        "failed": len(failed(requests)),
        "websocket_connections": len(connections),
        "websocket_open": dict(Counter(c.color for c in connections if c.is_open)),
        "websocket_closed_by_server": len(closed_by_server(connections)),
        "websocket_failed_handshakes": sum(1 for c in connections if c.opened is None),
    }


def lines(load: Load, duration: float) -> Iterator[str]:
    start = time.time()
    while time.time() - start < duration:
        time.sleep(1)
        now = time.time()
        rates = per_second(load.requests(), now)
        open_ = Counter(c.color for c in load.connections() if c.is_open)
        colors = " ".join(f"{k}={v}/s" for k, v in sorted(rates.items()) if k != "failed")
        sockets = " ".join(f"{k}={v}" for k, v in sorted(open_.items()))
        yield (
            f"{time.strftime('%H:%M:%S')} requests {colors or '-'} failed={rates['failed']}/s"
            f" | websockets open {sockets or '-'}"
            f" | failed so far {len(failed(load.requests()))}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="e.g. $GATEWAY_URL")
    parser.add_argument("--host", help="the Host header (the HTTPRoute's hostname)")
    parser.add_argument("--rate", type=float, default=50, help="HTTP requests a second")
    parser.add_argument("--clients", type=int, default=0, help="WebSocket clients")
    parser.add_argument("--path", default="/api/messages")
    parser.add_argument("--ws-path", default="/ws")
    parser.add_argument("--duration", type=float, default=float("inf"), help="seconds")
    parser.add_argument("--netns", help="connect from inside this network namespace")
    args = parser.parse_args(argv)
    load = Load(
        args.url, args.host, args.rate, args.clients, args.path, args.ws_path, netns=args.netns
    )
    with load, contextlib.suppress(KeyboardInterrupt):
        for line in lines(load, args.duration):
            print(line, flush=True)
    print(json.dumps(summary(load)), file=sys.stderr)


if __name__ == "__main__":
    main()
