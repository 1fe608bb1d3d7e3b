"""The chat app simulator on the wire (env/chatapp.py): a Deployment's pods answer at
their own IPs inside the environment's network namespace, a version set to fail 5 %
fails about 5 % of real requests, a deleted pod closes its WebSockets as a stopping
server does (1001 "going away"), and Prometheus discovers the pods and labels their
series as the README's label contract says."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import pytest
from kubernetes import client
from prometheus_api_client import PrometheusConnect
from prometheus_client.parser import text_string_to_metric_families

import chatapp_client as app
import netns  # env/, on the path by conftest
from chatops.api.analysis import DEFAULT_METRICS
from support import wait_for

pytestmark = pytest.mark.e2e


def _session() -> aiohttp.ClientSession:
    """A client inside the namespace, as the pods' neighbours (Traefik, Prometheus) are."""
    connector = aiohttp.TCPConnector(
        socket_factory=netns.socket_factory(os.environ["CHATOPS_NETNS"]), limit=100
    )
    return aiohttp.ClientSession(connector=connector)


def _pods(api: client.ApiClient, namespace: str) -> dict[str, str]:
    items = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    return {p.metadata.name: p.status.pod_ip for p in items if not p.metadata.deletion_timestamp}


def test_a_deployments_pods_answer_at_their_own_ips(api: client.ApiClient, namespace: str) -> None:
    app.deploy(api, namespace, "chat-api:1.0", "blue", replicas=3)
    pods = _pods(api, namespace)
    assert len(pods) == 3 and all(ip and ip.startswith("10.0.") for ip in pods.values())
    assert {(e["pod"], e["ip"], e["port"]) for e in app.served(namespace)} == {
        (name, ip, app.PORT) for name, ip in pods.items()
    }

    async def ask(ip: str) -> tuple[int, dict[str, str], Any]:
        async with _session() as s, s.get(f"http://{ip}:{app.PORT}/api/rooms") as r:
            return (
                r.status,
                {k: v for k, v in r.headers.items() if k.startswith("X-Chat")},
                (await r.json()),
            )

    for name, ip in pods.items():
        status, headers, body = asyncio.run(ask(ip))
        assert status == 200
        assert headers == {
            "X-Chat-Pod": name,
            "X-Chat-Color": "blue",
            "X-Chat-Version": "chat-api:1.0",
        }
        assert body["pod"] == name and body["path"] == "/api/rooms"


def test_a_version_set_to_fail_5_percent_fails_about_5_percent(
    api: client.ApiClient, namespace: str
) -> None:
    app.deploy(api, namespace, "chat-api:1.2", "green", replicas=2)
    app.behave(namespace, "chat-api:1.2", errorRate=0.05)
    app.behave(namespace, "chat-api:1.3", errorRate=0.5)  # another version: not this one
    addresses = app.ready(namespace, "chat-api-green")
    n = 2000

    async def load() -> tuple[list[int], list[str]]:
        async with _session() as s:

            async def one(i: int) -> int:
                async with s.get(f"http://{addresses[i % 2]}/api/messages") as r:
                    await r.read()
                    return r.status

            codes = await asyncio.gather(*(one(i) for i in range(n)))
            pages = []
            for address in addresses:
                async with s.get(f"http://{address}/metrics") as r:
                    pages.append(await r.text())
            return list(codes), pages

    codes, pages = asyncio.run(load())
    failed = codes.count(500)
    assert codes.count(200) + failed == n
    # Binomial(2000, 0.05): mean 100, sigma 9.7; 4 sigma either side.
    assert 61 <= failed <= 139, failed
    # The pods' own counters say exactly what the client saw.
    counted: dict[str, float] = {}
    for page in pages:
        for family in text_string_to_metric_families(page):
            for sample in family.samples:
                if sample.name == "http_requests_total":
                    code = sample.labels["code"]
                    counted[code] = counted.get(code, 0) + sample.value
    assert counted == {"200": n - failed, "500": failed}


def test_a_deleted_pod_closes_its_websockets_with_going_away(
    api: client.ApiClient, namespace: str
) -> None:
    app.deploy(api, namespace, "chat-api:1.0", "blue", replicas=2)
    pods = _pods(api, namespace)
    doomed, kept = sorted(pods)

    async def chat() -> tuple[list[Any], Any, Any]:
        async with _session() as s:
            sockets = {
                name: await s.ws_connect(f"http://{pods[name]}:{app.PORT}/ws?room=general")
                for name in (doomed, kept)
            }
            hellos = [(await ws.receive_json())["pod"] for ws in sockets.values()]
            # A message to the room reaches the sockets of both pods.
            await sockets[doomed].send_str("hello, room")
            heard = [(await ws.receive_json())["text"] for ws in sockets.values()]
            client.CoreV1Api(api).delete_namespaced_pod(doomed, namespace)
            closing = await asyncio.wait_for(sockets[doomed].receive(), timeout=30)
            still = sockets[kept].closed
            for ws in sockets.values():
                await ws.close()
            return [hellos, heard, still], closing, sockets[doomed].close_code

    (hellos, heard, still_closed), closing, code = asyncio.run(chat())
    assert hellos == [doomed, kept] and heard == ["hello, room", "hello, room"]
    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert (closing.data, closing.extra) == (1001, "going away") and code == 1001
    assert still_closed is False  # the other pod's socket stayed open


def test_prometheus_labels_a_color_services_pods_as_the_contract_says(
    api: client.ApiClient, namespace: str, environment: dict[str, str]
) -> None:
    service = app.deploy(api, namespace, "chat-api:2.0", "green", release="chat")
    app.behave(namespace, "chat-api:2.0", errorRate=0.2, latency=0.05)
    app.traffic(namespace, service, rps=20)
    pods = set(_pods(api, namespace))
    prometheus = PrometheusConnect(url=environment["PROMETHEUS_URL"], disable_ssl=True)
    selector = f'namespace="{namespace}",service="{service}"'

    def series() -> list[dict[str, Any]] | None:
        found = prometheus.custom_query(f'http_requests_total{{{selector},code="500"}} > 0')
        return found if {s["metric"]["pod"] for s in found} == pods else None

    found = wait_for(series, timeout=90, what=f"both pods' errors in Prometheus for {service}")
    for s in found:
        labels = s["metric"]
        contract = ("namespace", "service", "release", "component", "color", "revision")
        assert {k: labels.get(k) for k in contract} == {
            "namespace": namespace,
            "service": service,
            "release": "chat",
            "component": "api",
            "color": "green",
            "revision": app.REVISION,
        }
        assert labels["pod"] in pods and labels["container"] == "api"
        assert labels["instance"].endswith(f":{app.PORT}")

    # The default analysis queries (chatops/api/analysis.py) read these series as they are.
    def value(query: str) -> float | None:
        rendered = (
            query.replace("{{namespace}}", namespace)
            .replace("{{service}}", service)
            .replace("{{revision}}", app.REVISION)
        )
        result = prometheus.custom_query(rendered)
        return float(result[0]["value"][1]) if result else None

    queries = {m.name: m.query for m in DEFAULT_METRICS}

    def requests() -> float:
        return value(f"sum(increase(http_requests_total{{{selector}}}[1m]))") or 0.0

    wait_for(
        lambda: requests() >= 200 and value(queries["websocket-success"]) is not None,
        timeout=90,
        what="200 requests and the WebSocket counters in the window",
    )
    n, rate = requests(), value(queries["error-rate"])
    assert rate is not None and abs(rate - 0.2) <= 4 * (0.2 * 0.8 / n) ** 0.5, (rate, n)
    assert 0.05 <= value(queries["latency-p95"]) <= 0.1  # every request waits 50 ms
    assert value(queries["websocket-success"]) == 1.0
    tally = app.tally(namespace, service)
    assert tally["failed"] > 0 and tally["ok"] > 0 and tally["wsOpened"] > 0
    # Each pod's open-connections gauge is there for the drain's queries.
    active = prometheus.custom_query(f"websocket_connections_active{{{selector}}}")
    assert {s["metric"]["pod"] for s in active} == pods
