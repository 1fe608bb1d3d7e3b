"""One pod of the chat app, served on its socket inside the environment's namespace.

Each served pod is its own aiohttp server (its own counters, its own connections), as a
real pod is its own process:

    /api/health     200, or 503 when its version is set unhealthy (not counted)
    /api/...        any method: the version's latency, then 200, or 500 at its error rate
    /ws             WebSocket chat room: a hello, then every text message is broadcast to
                    the room (`?room=`, default `lobby`) across the namespace's pods, as a
                    Redis pub/sub behind a real app would; handshakes fail (503) at
                    1 - wsSuccess
    /metrics        Prometheus exposition of this pod's own counters (the label contract)

Every response carries X-Chat-Pod, X-Chat-Color and X-Chat-Version (the load generator
attributes each request to a pod and color with them). When the pod goes away (deleted,
unready) the server shuts down as a real one does on SIGTERM: it stops accepting, sends
every WebSocket a close frame 1001 "going away", waits briefly for in-flight requests,
then closes its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import prometheus_client
from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chatapp_model import Behaviour, Endpoint

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
SHUTDOWN_TIMEOUT = 2.0
"""Seconds a stopping pod waits for in-flight requests and WebSocket close replies."""

prometheus_client.disable_created_metrics()

Room = tuple[str, str]  # (namespace, room)


class Rooms:
    """The chat rooms of every served pod: a message to a room reaches every socket in
    it, whichever pod holds the socket."""

    def __init__(self) -> None:
        self.members: dict[Room, set[web.WebSocketResponse]] = {}

    def join(self, room: Room, ws: web.WebSocketResponse) -> None:
        self.members.setdefault(room, set()).add(ws)

    def leave(self, room: Room, ws: web.WebSocketResponse) -> None:
        members = self.members.get(room, set())
        members.discard(ws)
        if not members:
            self.members.pop(room, None)

    async def broadcast(self, room: Room, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        for ws in list(self.members.get(room, ())):
            if not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(text)


class Counters:
    """One pod's series, per the label contract (README). The series a version may
    produce start at 0, so a version without errors shows an error rate of 0, not no
    data."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "http_requests",
            "API requests by status code and method.",
            ["code", "method"],
            registry=r,
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "API request latency.", buckets=BUCKETS, registry=r
        )
        self.ws_active = Gauge(
            "websocket_connections_active", "WebSocket connections open now.", registry=r
        )
        self.ws_attempts = Counter(
            "websocket_connections",
            "WebSocket connection attempts by outcome.",
            ["result"],
            registry=r,
        )
        self.ws_closed = Counter(
            "websocket_disconnections",
            "WebSocket connections closed, by reason.",
            ["reason"],
            registry=r,
        )
        for code in ("200", "500"):
            self.requests.labels(code=code, method="GET")
        for result in ("success", "failure"):
            self.ws_attempts.labels(result=result)
        for reason in ("client", "shutdown", "error"):
            self.ws_closed.labels(reason=reason)

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class PodServer:
    """The server of one Endpoint (podIP:containerPort)."""

    def __init__(
        self, endpoint: Endpoint, behaviour: Callable[[str], Behaviour], rooms: Rooms
    ) -> None:
        self.endpoint = endpoint
        self.behaviour = behaviour
        self.rooms = rooms
        self.counters = Counters()
        self.websockets: set[web.WebSocketResponse] = set()
        self.started = time.time()
        self.stopping = False
        app = web.Application()
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/ws", self.websocket)
        app.router.add_route("*", "/api/{tail:.*}", self.api)
        app.on_response_prepare.append(self._identify)
        app.on_shutdown.append(self._going_away)
        self.runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT, handle_signals=False
        )

    async def start(self, sock: socket.socket) -> None:
        await self.runner.setup()
        await web.SockSite(self.runner, sock, shutdown_timeout=SHUTDOWN_TIMEOUT).start()

    async def stop(self) -> None:
        """Shut down as a real server does: stop accepting, close the WebSockets with
        1001, let in-flight requests finish (SHUTDOWN_TIMEOUT), close connections."""
        self.stopping = True
        await self.runner.cleanup()

    def describe(self) -> dict[str, Any]:
        e = self.endpoint
        return {
            "namespace": e.namespace,
            "pod": e.pod,
            "ip": e.ip,
            "port": e.port,
            "image": e.image,
            "color": e.color,
            "websockets": len(self.websockets),
        }

    # -- handlers ---------------------------------------------------------------------

    async def _identify(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Chat-Pod"] = self.endpoint.pod
        response.headers["X-Chat-Color"] = self.endpoint.color
        response.headers["X-Chat-Version"] = self.endpoint.image

    def _body(self, **extra: Any) -> dict[str, Any]:
        e = self.endpoint
        return {"pod": e.pod, "color": e.color, "version": e.image, **extra}

    async def health(self, request: web.Request) -> web.Response:
        healthy = self.behaviour(self.endpoint.image).healthy and not self.stopping
        return web.json_response(self._body(healthy=healthy), status=200 if healthy else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.counters.exposition(), content_type="text/plain", charset="utf-8"
        )

    async def api(self, request: web.Request) -> web.Response:
        start = time.monotonic()
        b = self.behaviour(self.endpoint.image)
        if b.latency > 0:
            await asyncio.sleep(b.latency)
        failed = random.random() < b.error_rate
        code = 500 if failed else 200
        if request.can_read_body:
            await request.read()
        self.counters.requests.labels(code=str(code), method=request.method).inc()
        self.counters.latency.observe(time.monotonic() - start)
        body = self._body(path=request.path, error="played failure" if failed else None)
        return web.json_response(body, status=code)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if self.stopping:  # shutting down: refused, as a closing server's last requests
            return web.json_response(self._body(error="shutting down"), status=503)
        if random.random() >= self.behaviour(self.endpoint.image).ws_success:
            self.counters.ws_attempts.labels(result="failure").inc()
            return web.json_response(self._body(error="WebSocket refused"), status=503)
        ws = web.WebSocketResponse(timeout=SHUTDOWN_TIMEOUT, heartbeat=None)
        await ws.prepare(request)
        self.counters.ws_attempts.labels(result="success").inc()
        self.counters.ws_active.inc()
        room = (self.endpoint.namespace, request.query.get("room", "lobby"))
        self.websockets.add(ws)
        self.rooms.join(room, ws)
        reason = "client"
        try:
            await ws.send_str(json.dumps(self._body(type="hello")))
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self.rooms.broadcast(room, self._body(type="message", text=message.data))
                elif message.type == WSMsgType.ERROR:
                    reason = "error"
        except (ConnectionError, asyncio.CancelledError):
            reason = "error"
            raise
        finally:
            if self.stopping and reason == "client":
                reason = "shutdown"
            self.rooms.leave(room, ws)
            self.websockets.discard(ws)
            self.counters.ws_active.dec()
            self.counters.ws_closed.labels(reason=reason).inc()
        return ws

    async def _going_away(self, app: web.Application) -> None:
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"going away")
                for ws in list(self.websockets)
            ),
            return_exceptions=True,
        )
