"""The load generator: what its records say (pure), and the load itself against a small
real aiohttp server on the loopback that answers as the chat simulator does (its color in
headers, a 5xx on demand, WebSockets closed with 1001 when its "pod" goes away)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import WSCloseCode, web

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "env"))
import loadgen
from loadgen import Connection, Request


def req(sent: float, status: int | None, color: str = "blue") -> Request:
    return Request(sent, sent + 0.01, status, color if status is not None else "")


def test_a_user_counts_no_answer_and_4xx_5xx_as_failures_and_only_those() -> None:
    requests = [req(0, 200), req(1, 302), req(2, 404), req(3, 500), req(4, None), req(5, 503, "")]
    assert [r.sent for r in loadgen.failed(requests)] == [2, 3, 4, 5]


def test_shares_count_answered_requests_by_the_color_that_answered() -> None:
    requests = [req(t, 200, "blue") for t in range(9)] + [req(9, 500, "green"), req(10, None)]
    assert loadgen.served(requests) == {"blue": 9, "green": 1}
    assert loadgen.share(requests, "green") == pytest.approx(0.1)
    assert loadgen.share([], "green") == 0.0
    assert [r.sent for r in loadgen.between(requests, 3, 5)] == [3, 4]


def test_a_connection_is_open_through_a_window_only_if_it_opened_before_and_closed_after() -> None:
    c = Connection(0, 1, tried=0.9, opened=1.0, closed=5.0, closed_by="server", code=1001)
    assert c.open_through(1.0, 5.0) and c.open_through(2, 3)
    assert not c.open_through(0.5, 3) and not c.open_through(2, 6)
    still = Connection(1, 1, tried=0.9, opened=1.0)
    assert still.is_open and still.open_through(2, 1e9)
    never = Connection(2, 1, tried=1.0, closed=1.1, error="503")
    assert not never.open_through(1.0, 1.0) and not never.is_open


def test_the_latest_attempt_per_client_and_the_closes_the_server_made() -> None:
    conns = [
        Connection(0, 1, 0, opened=0.1, closed=3, closed_by="server", code=1001, color="blue"),
        Connection(0, 2, 3.2, opened=3.3, color="green"),
        Connection(1, 1, 0, opened=0.1, closed=9, closed_by="client", code=1000, color="blue"),
    ]
    assert {k: c.color for k, c in loadgen.latest(conns).items()} == {0: "green", 1: "blue"}
    assert loadgen.closed_by_server(conns) == [conns[0]]
    assert loadgen.closed_by_server(conns, since=4) == []


def test_per_second_rates_by_color_with_the_failures_counted_apart() -> None:
    now = 100.0
    requests = [Request(99.5, 99.6, 200, "blue")] * 3 + [Request(99.5, 99.7, 500, "green")]
    requests += [Request(97, 97.1, 200, "blue")]  # outside the window
    assert loadgen.per_second(requests, now) == {"blue": 3, "green": 1, "failed": 1}


# -- the load against a real server -----------------------------------------------------


class App:
    """A server of one "pod": answers /api/* with its color, fails when told, and closes
    its WebSockets with 1001 on `go_away()`, as a server shutting down does."""

    def __init__(self) -> None:
        self.color = "blue"
        self.status = 200
        self.sockets: set[web.WebSocketResponse] = set()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def headers(self) -> dict[str, str]:
        return {"X-Chat-Color": self.color, "X-Chat-Pod": f"pod-{self.color}"}

    async def api(self, request: web.Request) -> web.Response:
        return web.Response(status=self.status, text="{}", headers=self.headers())

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        ws.headers.update(self.headers())
        await ws.prepare(request)
        self.sockets.add(ws)
        async for _ in ws:
            pass
        self.sockets.discard(ws)
        return ws

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/api/messages", self.api)
        app.router.add_get("/ws", self.ws)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> App:
        self._thread.start()
        self._ready.wait(10)
        return self

    def go_away(self, new_color: str) -> None:
        async def close_all() -> None:
            self.color = new_color
            for ws in list(self.sockets):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"going away")

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def until(check: Callable[[], object], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def app() -> Iterator[App]:
    server = App().start()
    yield server
    server.stop()


def test_the_load_records_who_answered_each_request_and_each_failure(app: App) -> None:
    with loadgen.Load(f"http://127.0.0.1:{app.port}", host="chat.example.com", rate=200) as load:
        until(lambda: len(load.requests()) >= 20, "20 requests")
        app.status = 503
        until(lambda: len(loadgen.failed(load.requests())) >= 5, "5 failures")
    requests = load.requests()
    assert {r.color for r in requests} == {"blue"}
    assert all(r.status in (200, 503) for r in requests)
    first_failure = min(r.sent for r in loadgen.failed(requests))
    assert all(r.status == 503 for r in requests if r.sent > first_failure + 0.5)


def test_websocket_clients_reconnect_after_the_server_goes_away_and_close_cleanly(
    app: App,
) -> None:
    with loadgen.Load(f"http://127.0.0.1:{app.port}", rate=0, clients=5) as load:
        until(lambda: len(app.sockets) == 5, "5 WebSockets open")
        assert {c.color for c in load.connections() if c.is_open} == {"blue"}
        cut = time.time()
        app.go_away("green")
        until(
            lambda: sum(c.is_open and c.color == "green" for c in load.connections()) == 5,
            "every client reconnected to green",
        )
    conns = load.connections()
    dropped = loadgen.closed_by_server(conns)
    assert len(dropped) == 5 and all(c.code == 1001 and c.color == "blue" for c in dropped)
    assert all(c.closed is not None and c.closed >= cut for c in dropped)
    last = loadgen.latest(conns)
    assert [(c.attempt, c.closed_by, c.code) for c in last.values()] == [(2, "client", 1000)] * 5


def test_a_refused_handshake_is_recorded_and_retried() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with loadgen.Load(f"http://127.0.0.1:{port}", rate=0, clients=1, reconnect_delay=0.05) as load:
        until(lambda: len(load.connections()) >= 3, "three attempts")
    conns = load.connections()
    assert [c.attempt for c in conns][:3] == [1, 2, 3]
    assert all(c.opened is None and "Connect" in c.error for c in conns), conns
