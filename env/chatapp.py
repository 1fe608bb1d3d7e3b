"""The chat app simulator: every Ready pod of the cluster, served at podIP:containerPort
inside the environment's network namespace, as its version (its image) behaves.

kwok's pods run no process; this plays all of them. It watches the cluster's Pods (and
EndpointSlices, for the Service views below) and keeps one server per Ready pod's
container port (env/chatapp_server.py: /api/..., /api/health, the /ws chat room,
/metrics). A version's behaviour is keyed by its image and set at run time, here, on the
host's loopback (CHATAPP_URL in the env file):

    PUT    /versions/<image>[?namespace=NS]  {"errorRate": 0.05, "latency": 0.01,
                                              "wsSuccess": 1, "healthy": true}
           (a namespace's setting wins over the global one in that namespace, so tests
           running side by side may give the same image different behaviours)
    GET    /versions                         every setting
    DELETE /versions/<image>[?namespace=NS]  back to the default (all fine, 5 ms)
    DELETE /versions?namespace=NS            forget a namespace's settings
    GET    /endpoints[?namespace=NS]         the sockets served now
    GET    /services/<ns>/<service>          the Service's ready addresses (EndpointSlices)
    *      /services/<ns>/<service>/proxy/<path>   one request to one ready pod of the
           Service, as kube-proxy would route it (the operator's health checks run on
           the host, which cannot reach pod addresses: their URL points here)
    PUT    /traffic/<ns>/<service>           {"rps": 20, "path": "/api/messages",
           "wsRate": 2, "wsHold": 2}: steady requests and WebSocket connections straight
           to the Service's ready pods (env/traffic.py)
    GET    /traffic                          every stream, with its tally
    DELETE /traffic/<ns>/<service>, DELETE /traffic/<ns>

Run: python env/chatapp.py --netns NAME --kubeconfig FILE --port N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from kubernetes import client, config, watch

import netns
from chatapp_model import (
    SERVICE_NAME_LABEL,
    Behaviour,
    Endpoint,
    endpoints,
    ready_addresses,
    reconcile,
)
from chatapp_server import PodServer, Rooms
from traffic import Stream

DEFAULT = Behaviour()
Event = tuple[str, str, Any]  # (kind, "ADDED"|"MODIFIED"|"DELETED"|"SYNC", object or list)


def log(message: str) -> None:
    print(f"[chatapp {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def watch_forever(kind: str, list_call: Callable[..., Any], emit: Callable[[Event], None]) -> None:
    """List then watch `list_call` forever, in a thread: a SYNC with the whole list after
    every (re)list, then each change. Re-lists when the watch expires or fails."""
    while True:
        try:
            listing = json.loads(list_call(_preload_content=False).data)
            emit((kind, "SYNC", listing.get("items") or []))
            version = listing["metadata"]["resourceVersion"]
            for event in watch.Watch().stream(
                list_call, resource_version=version, timeout_seconds=300
            ):
                if event["type"] == "ERROR":
                    break
                emit((kind, event["type"], event["raw_object"]))
        except Exception as err:
            log(f"{kind} watch: {type(err).__name__}: {err}; listing again")
            time.sleep(1)


def uid(obj: Any) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


class Simulator:
    def __init__(self, namespace: str, api: client.ApiClient) -> None:
        self.netns = namespace
        self.api = api
        self.behaviours: dict[tuple[str, str], Behaviour] = {}  # (namespace or "", image)
        self.pods: dict[str, Any] = {}
        self.slices: dict[str, Any] = {}
        self.by_service: dict[tuple[str, str], dict[str, Any]] = {}
        self.servers: dict[tuple[str, int], PodServer] = {}
        self.stopping: dict[tuple[str, int], asyncio.Task[None]] = {}
        self.rooms = Rooms()
        self.streams: dict[tuple[str, str], tuple[Stream, asyncio.Task[None]]] = {}
        self.session: aiohttp.ClientSession | None = None

    # -- versions ---------------------------------------------------------------------

    def behaviour_of(self, namespace: str) -> Callable[[str], Behaviour]:
        def look(image: str) -> Behaviour:
            return self.behaviours.get((namespace, image)) or self.behaviours.get(
                ("", image), DEFAULT
            )

        return look

    # -- the cluster's pods and slices --------------------------------------------------

    def apply(self, events: list[Event]) -> bool:
        """Fold watch events into the known pods and slices; whether pods changed."""
        pods_changed = False
        for kind, change, obj in events:
            store = self.pods if kind == "pods" else self.slices
            if change == "SYNC":
                store.clear()
                store.update({uid(o): o for o in obj})
            elif change == "DELETED":
                store.pop(uid(obj), None)
            else:
                store[uid(obj)] = obj
            if kind == "pods":
                pods_changed = True
            else:
                self._index_slices()
        return pods_changed

    def _index_slices(self) -> None:
        index: dict[tuple[str, str], dict[str, Any]] = {}
        for key, s in self.slices.items():
            meta = s.get("metadata") or {}
            service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
            if service:
                index.setdefault((meta.get("namespace", ""), service), {})[key] = s
        self.by_service = index

    def addresses(self, namespace: str, service: str) -> list[tuple[str, int]]:
        """The Service's ready pod addresses, as its EndpointSlices say, and served here."""
        found = ready_addresses(self.by_service.get((namespace, service), {}).values())
        return [a for a in found if a in self.servers]

    async def reconcile(self) -> None:
        wanted = [e for pod in self.pods.values() for e in endpoints(pod)]
        change = reconcile((s.endpoint for s in self.servers.values()), wanted)
        for e in change.stop:
            server = self.servers.pop(e.key)
            log(f"stop {e.namespace}/{e.pod} {e.ip}:{e.port} ({len(server.websockets)} ws)")
            task = asyncio.create_task(server.stop())
            self.stopping[e.key] = task
            task.add_done_callback(lambda _, key=e.key, t=task: self._stopped(key, t))
        for e in change.relabel:
            self.servers[e.key].endpoint = e
        for e in change.start:
            await self._start(e)

    def _stopped(self, key: tuple[str, int], task: asyncio.Task[None]) -> None:
        if self.stopping.get(key) is task:
            del self.stopping[key]

    async def _start(self, e: Endpoint) -> None:
        previous = self.stopping.get(e.key)
        if previous is not None:  # a reused IP: the old pod's socket goes first
            await asyncio.shield(previous)
        try:
            sock = netns.listener(self.netns, e.ip, e.port)
        except OSError as err:
            log(f"cannot serve {e.namespace}/{e.pod} at {e.ip}:{e.port}: {err}")
            return
        server = PodServer(e, self.behaviour_of(e.namespace), self.rooms)
        await server.start(sock)
        self.servers[e.key] = server
        log(f"serve {e.namespace}/{e.pod} {e.ip}:{e.port} as {e.image}")

    async def consume(self, events: asyncio.Queue[Event]) -> None:
        while True:
            batch = [await events.get()]
            while not events.empty():
                batch.append(events.get_nowait())
            if self.apply(batch):
                await self.reconcile()

    async def shutdown(self) -> None:
        for _, task in self.streams.values():
            task.cancel()
        await asyncio.gather(
            *(s.stop() for s in self.servers.values()),
            *self.stopping.values(),
            return_exceptions=True,
        )


# -- the control API ------------------------------------------------------------------


def control_app(sim: Simulator) -> web.Application:
    routes = web.RouteTableDef()

    def bad(message: str, status: int = 400) -> web.Response:
        return web.json_response({"error": message}, status=status)

    @routes.get("/healthz")
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"pods": len(sim.pods), "served": len(sim.servers)})

    @routes.get("/versions")
    async def versions(request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"namespace": ns, "image": image, **b.to_json()}
                for (ns, image), b in sorted(sim.behaviours.items())
            ]
        )

    @routes.delete("/versions")
    async def forget_versions(request: web.Request) -> web.Response:
        namespace = request.query.get("namespace")
        if not namespace:
            return bad("DELETE /versions needs ?namespace=")
        for key in [k for k in sim.behaviours if k[0] == namespace]:
            del sim.behaviours[key]
        return web.json_response({})

    @routes.route("*", "/versions/{image:.+}")
    async def version(request: web.Request) -> web.Response:
        key = (request.query.get("namespace", ""), request.match_info["image"])
        if request.method == "PUT":
            try:
                sim.behaviours[key] = Behaviour.from_json(await request.json())
            except ValueError as err:  # json.JSONDecodeError is one
                return bad(f"version {key[1]}: {err}")
        elif request.method == "DELETE":
            sim.behaviours.pop(key, None)
        elif request.method != "GET":
            return bad(f"{request.method} /versions/<image>: use GET, PUT or DELETE", 405)
        return web.json_response(sim.behaviour_of(key[0])(key[1]).to_json())

    @routes.get("/endpoints")
    async def served(request: web.Request) -> web.Response:
        namespace = request.query.get("namespace")
        return web.json_response(
            [
                s.describe()
                for s in sim.servers.values()
                if namespace in (None, s.endpoint.namespace)
            ]
        )

    @routes.get("/services/{namespace}/{service}")
    async def service(request: web.Request) -> web.Response:
        found = sim.addresses(request.match_info["namespace"], request.match_info["service"])
        return web.json_response({"addresses": [f"{ip}:{port}" for ip, port in found]})

    @routes.route("*", "/services/{namespace}/{service}/proxy/{path:.*}")
    async def proxy(request: web.Request) -> web.StreamResponse:
        ns, svc = request.match_info["namespace"], request.match_info["service"]
        found = sim.addresses(ns, svc)
        if not found:
            return bad(f"service {ns}/{svc}: no ready endpoints", 503)
        ip, port = random.choice(found)
        assert sim.session is not None
        url = f"http://{ip}:{port}/{request.match_info['path']}"
        try:
            async with sim.session.request(
                request.method,
                url,
                params=request.query,
                data=await request.read(),
                timeout=aiohttp.ClientTimeout(total=30),
            ) as reply:
                body = await reply.read()
                headers = {k: v for k, v in reply.headers.items() if k.startswith("X-Chat-")}
                return web.Response(
                    body=body,
                    status=reply.status,
                    headers=headers,
                    content_type=reply.content_type,
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            return bad(f"service {ns}/{svc}: {ip}:{port} did not answer: {err}", 502)

    @routes.get("/traffic")
    async def streams(request: web.Request) -> web.Response:
        return web.json_response(
            {
                f"{ns}/{svc}": {**s.settings(), **s.tally.as_json()}
                for (ns, svc), (s, _) in sim.streams.items()
            }
        )

    def stop_streams(keys: list[tuple[str, str]]) -> None:
        for key in keys:
            stream, _ = sim.streams.pop(key)
            stream.stop()

    @routes.route("*", "/traffic/{namespace}/{service}")
    async def traffic(request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["service"])
        if request.method == "DELETE":
            stop_streams([key] if key in sim.streams else [])
            return web.json_response({})
        if request.method != "PUT":
            return bad("use PUT or DELETE", 405)
        try:
            body = await request.json()
            assert sim.session is not None
            stream = Stream(
                sim.session,
                lambda: sim.addresses(*key),
                rps=float(body.get("rps", 20)),
                path=str(body.get("path", "/api/messages")),
                method=str(body.get("method", "GET")),
                ws_rate=float(body.get("wsRate", 2)),
                ws_hold=float(body.get("wsHold", 2)),
            )
        except (ValueError, TypeError, AttributeError) as err:
            return bad(f"traffic {key[0]}/{key[1]}: {err}")
        stop_streams([key] if key in sim.streams else [])
        sim.streams[key] = (stream, asyncio.create_task(stream.run()))
        return web.json_response(stream.settings())

    @routes.delete("/traffic/{namespace}")
    async def forget_traffic(request: web.Request) -> web.Response:
        stop_streams([k for k in sim.streams if k[0] == request.match_info["namespace"]])
        return web.json_response({})

    app = web.Application()
    app.add_routes(routes)
    return app


async def run(args: argparse.Namespace) -> None:
    api = config.new_client_from_config(config_file=str(args.kubeconfig))
    sim = Simulator(args.netns, api)
    sim.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            socket_factory=netns.socket_factory(args.netns), limit=0, force_close=False
        )
    )
    runner = web.AppRunner(control_app(sim), access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, netns.listener(netns.HOST, "127.0.0.1", args.port)).start()

    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Event] = asyncio.Queue()

    def emit(event: Event) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    for kind, call in (
        ("pods", core.list_pod_for_all_namespaces),
        ("slices", discovery.list_endpoint_slice_for_all_namespaces),
    ):
        threading.Thread(
            target=watch_forever, args=(kind, call, emit), daemon=True, name=kind
        ).start()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    log(f"control API on 127.0.0.1:{args.port}; pods served in network namespace {args.netns}")
    consumer = asyncio.create_task(sim.consume(events))
    await done.wait()
    log("shutting down: every pod closes as a stopping server does")
    consumer.cancel()
    await sim.shutdown()
    await sim.session.close()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--netns", required=True, help="the pods' network namespace")
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int, help="control API, 127.0.0.1")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
