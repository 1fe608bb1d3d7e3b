"""Drain in waves and the cost of a release, with real users: the load generator's
requests and WebSocket clients go through Traefik (the Gateway API data plane) to the
simulated chat app's pods, Prometheus scrapes the pods, and the operator drains and
counts from what Prometheus shows.

- drain waves close the old color's connections batch by batch — one pod's connections
  per wave, `interval` apart — and every client reconnects to the new color; the
  release's cost counts the connections moved as the clients saw them cut;
- a reconnect storm on the new color pauses the drain until reconnections recover;
- a bad canary's failed requests, as the release's cost says them, match the load
  generator's own count of failures served by the canary, within the bound the
  scrape interval allows (derived below).
"""

from __future__ import annotations

import itertools
import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

import loadgen  # env/, on the path by conftest
import releases as rel
from chatops import clock
from support import wait_for

pytestmark = pytest.mark.usefixtures("operator")

SCRAPE_SECONDS = 1.0
"""The environment's Prometheus scrape interval (README: the label contract)."""
RELEASE, PODS, CLIENTS = "chat", 3, 30
PORT = 8081
WAVES, INTERVAL = 3, 4.0
GW = ("gateway.networking.k8s.io", "v1", "httproutes")


def host(namespace: str) -> str:
    return f"{namespace}.chat.test"


def app(version: str, strategy: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One WebSocket component of `PODS` pods behind the HTTPRoute `chat`."""
    return {
        "components": [
            {
                "name": "api",
                "replicas": PODS,
                "template": {"spec": {"containers": [{
                    "name": "api", "image": f"chat-api:{version}",
                    "ports": [{"containerPort": PORT}],
                }]}},
                "service": {"port": PORT},
            }
        ],
        "strategy": strategy,
        "trafficRouting": {"gatewayAPI": {"httpRoute": RELEASE}},
        "cost": {"settle": "3s"},
        "progressDeadlineSeconds": 90,
        **extra,
    }


BLUE_GREEN = {"blueGreen": {
    "postPromotionWindow": "1s",
    "scaleDownDelaySeconds": 2,
    "drain": {"waves": WAVES, "interval": f"{INTERVAL:.0f}s"},
}}


@pytest.fixture
def route(custom: client.CustomObjectsApi, namespace: str) -> str:
    """The HTTPRoute users reach the app through: its host on the environment's Gateway,
    both colors as backendRefs (chatops sets their weights)."""
    custom.create_namespaced_custom_object(*GW[:2], namespace, GW[2], {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": RELEASE},
        "spec": {
            "parentRefs": [{"name": os.environ["GATEWAY_NAME"],
                            "namespace": os.environ["GATEWAY_NAMESPACE"]}],
            "hostnames": [host(namespace)],
            "rules": [{"backendRefs": [
                {"name": f"{RELEASE}-api-{color}", "port": PORT, "weight": w}
                for color, w in (("blue", 100), ("green", 0))
            ]}],
        },
    })
    return host(namespace)


@pytest.fixture
def users(custom: client.CustomObjectsApi, namespace: str, route: str) -> Iterator[loadgen.Load]:
    """Version 1.0 live on blue (`BLUE_GREEN`), Traefik balancing over all its pods, then
    `CLIENTS` users connected to it (spread over its pods) and 20 requests a second."""
    play(namespace, "1.0")
    rel.create(custom, namespace, RELEASE, app("1.0", BLUE_GREEN))
    rel.wait_phase(custom, namespace, RELEASE, "Succeeded")
    with loadgen.Load(os.environ["GATEWAY_URL"], host=route, rate=20) as probe:
        wait_for(lambda: len({r.pod for r in probe.requests() if r.ok}) == PODS, timeout=60,
                 what=f"Traefik balancing over the {PODS} pods of blue")
    with loadgen.Load(os.environ["GATEWAY_URL"], host=route, rate=20, clients=CLIENTS,
                      reconnect_delay=0.2) as load:
        wait_for(lambda: all_on(load, "blue"), timeout=60, what=f"{CLIENTS} clients on blue")
        yield load


def play(namespace: str, version: str, **behaviour: Any) -> None:
    rel.chatapp("PUT", f"/versions/chat-api:{version}?namespace={namespace}", behaviour)


def all_on(load: loadgen.Load, color: str) -> bool:
    latest = loadgen.latest(load.connections())
    return len(latest) == CLIENTS and all(c.is_open and c.color == color for c in latest.values())


def events(core: client.CoreV1Api, namespace: str, reason: str) -> list[str]:
    found = core.list_namespaced_event(namespace, field_selector=f"reason={reason}").items
    return [e.message for e in sorted(found, key=lambda e: e.metadata.creation_timestamp)]


def final_cost(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        history = rel.status(custom, namespace, RELEASE).get("history") or []
        cost = history[-1].get("cost") if history else None
        return cost if cost and cost.get("final") else None

    found: dict[str, Any] = wait_for(final, timeout=90, what="the release's final cost")
    return found


def scraped(namespace: str, cost: dict[str, Any]) -> dict[str, list[tuple[float, str]]]:
    """The samples Prometheus holds of the pods' WebSockets in the last minute of the
    cost's window, per pod and series: (seconds from the window's end, value) — to read
    a miscount by. (The one seen, 19 of 30: a gone pod's target scraped a new pod of a
    test beside this one at its reused IP, counters from 0.)"""
    until = clock.parse(cost["until"]).timestamp()
    out: dict[str, list[tuple[float, str]]] = {}
    for name, series in (
        ("open", f'websocket_connections_active{{namespace="{namespace}"}}'),
        ("shut", f'websocket_disconnections_total{{namespace="{namespace}",reason="shutdown"}}'),
        # a fall in it: another process answered at the pod's IP (cost.py)
        ("accepted", f'websocket_connections_total{{namespace="{namespace}",result="success"}}'),
    ):
        query = urllib.parse.urlencode({"query": f"{series}[60s]", "time": until + 5})
        url = f"{os.environ['PROMETHEUS_URL']}/api/v1/query?{query}"
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        for found in answer["data"]["result"]:
            out[f"{found['metric']['pod']} {name}"] = [
                (round(float(t) - until, 1), v) for t, v in found["values"]][-8:]
    return out


def batches(closes: list[loadgen.Connection], gap: float) -> list[list[loadgen.Connection]]:
    """Connections grouped by close time: a new batch after a pause of more than `gap`."""
    out: list[list[loadgen.Connection]] = []
    last = None
    for c in sorted(closes, key=lambda c: c.closed or 0):
        if last is None or (c.closed or 0) - last > gap:
            out.append([])
        out[-1].append(c)
        last = c.closed
    return out


def test_drain_waves_close_connections_pod_by_pod_and_clients_reconnect_to_the_new_color(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
    users: loadgen.Load,
) -> None:
    live = switched = time.time()
    play(namespace, "1.1")
    rel.set_version(custom, namespace, RELEASE, "1.1")
    rel.wait_phase(custom, namespace, RELEASE, "Promoting")
    rel.wait_phase(custom, namespace, RELEASE, "Succeeded", timeout=120)
    wait_for(lambda: all_on(users, "green"), timeout=30, what="every client back, on green")

    cut = [c for c in users.connections()
           if c.color == "blue" and c.closed_by == loadgen.SERVER_CLOSE]
    assert len(cut) == CLIENTS, "each client was cut once, by the drain"
    assert {c.code for c in cut} == {1001}, "closed as a server going away closes them"
    # Batch by batch: each pod's connections close together, one pod after the other, the
    # next only once the previous one's are all closed (an interval later).
    by_pod: dict[str, list[float]] = {}
    for c in cut:
        by_pod.setdefault(c.pod, []).append(c.closed or 0.0)
    spans = sorted((min(t), max(t), len(t), pod) for pod, t in by_pod.items())
    assert len(spans) == WAVES, spans
    assert all(last - first < 1.0 for first, last, _, _ in spans), spans
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    assert all(gap > 0.5 for gap in gaps), (gaps, spans)
    waves = [n for _, _, n, _ in spans]
    assert sum(waves) == CLIENTS and min(waves) > 0
    assert all(c.opened is not None and c.opened < switched for c in cut), (
        "the connections cut were opened on the old color before the switch")
    assert len(events(core, namespace, "DrainWave")) == WAVES

    cost = final_cost(custom, namespace)
    # The old pods' connections do not change between their last scrape and their
    # removal (no new connection goes to them): the count is exact, even when a gone
    # pod's target outlives it and scrapes another pod at its reused IP.
    assert cost["websocketsMoved"] == len(cut), (cost, spans, scraped(namespace, cost))
    assert cost["websocketsDropped"] == 0
    bad = [(r.status, r.color, r.error[:60]) for r in users.requests()
           if r.sent >= live and not r.ok]
    assert not bad, ("no user request failed", bad[:10], len(bad))


def test_a_reconnect_storm_pauses_the_drain_until_reconnections_recover(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
    users: loadgen.Load, api: client.ApiClient,
) -> None:
    # The new version refuses every handshake: no client tries it before the first wave
    # cuts some (all are on blue, and no new one comes), then those retry and fail, and
    # go on retrying: a storm that lasts until the version accepts them.
    play(namespace, "1.1", wsSuccess=0.0)
    rel.set_version(custom, namespace, RELEASE, "1.1")

    def drain() -> dict[str, Any]:
        found: dict[str, Any] = rel.status(custom, namespace, RELEASE).get("scaleDown") or {}
        return found

    paused = wait_for(lambda: drain().get("paused"), timeout=120, what="the drain paused")
    assert paused.startswith("reconnect storm on api"), paused
    assert events(core, namespace, "DrainPaused")
    checked = drain().get("checkedAt")
    wait_for(lambda: drain().get("checkedAt") not in (None, checked), timeout=30,
             what="one more check in the storm")
    apps = client.AppsV1Api(api)
    blue = apps.read_namespaced_deployment(f"{RELEASE}-api-blue", namespace)
    assert blue.spec.replicas == PODS - 1, "no more pods went during the storm"
    assert drain().get("wave") == 1

    play(namespace, "1.1", wsSuccess=1.0)
    rel.wait_phase(custom, namespace, RELEASE, "Succeeded", timeout=120)
    assert events(core, namespace, "DrainResumed")
    wait_for(lambda: all_on(users, "green"), timeout=30, what="every client back, on green")


CANARY = {"canary": {
    "steps": [{"setWeight": 10}, {"pause": {"duration": "60s"}}, {"setWeight": 100}],
    "scaleDownDelaySeconds": 2,
    "abortScaleDownDelaySeconds": 2,
}}


def test_the_cost_of_a_bad_canary_matches_the_failures_users_saw(
    custom: client.CustomObjectsApi, namespace: str, route: str,
) -> None:
    # Rounds before the canary's first scrapes have no data: tolerated (inconclusive), so
    # the first round with data judges it.
    analysis = {"interval": "2s", "prometheus": {"address": os.environ["PROMETHEUS_URL"]},
                "inconclusiveLimit": 1000,
                "metrics": [{**rel.metrics()[0], "onNoData": "Inconclusive"}]}
    with loadgen.Load(os.environ["GATEWAY_URL"], host=route, rate=100, clients=0) as load:
        play(namespace, "1.0")
        rel.create(custom, namespace, RELEASE, app("1.0", CANARY, analysis=analysis))
        rel.wait_phase(custom, namespace, RELEASE, "Succeeded")
        play(namespace, "1.2", errorRate=0.2)
        rel.set_version(custom, namespace, RELEASE, "1.2")
        rel.wait_phase(custom, namespace, RELEASE, "RolledBack", timeout=120)
        cost = final_cost(custom, namespace)
    canary = [r for r in load.requests() if r.color == "green"]
    failed = [r for r in canary if r.status is not None and r.status >= 500]
    assert failed, "the bad canary failed some of its users' requests"
    # The canary's counters are born inside the window (at 0, their first 5xx or request)
    # and go flat once traffic left it, long before the window ends (the drain): their
    # last value is exact, and the count is that or increase(), off by its extrapolation to
    # the window's end at most: 1.1 scrape intervals at the window's average rate, plus
    # rounding. Requests that got no answer (timeouts) were served all the same.
    life = (clock.parse(cost["until"]) - clock.parse(cost["since"])).total_seconds()
    for figure, seen in (("failedRequests", len(failed)), ("requests", len(canary))):
        bound = 1 + seen * 1.1 * SCRAPE_SECONDS / life
        unanswered = sum(1 for r in load.requests() if r.status is None)
        assert abs(cost[figure] - seen) <= bound + unanswered, (figure, cost[figure], seen)
