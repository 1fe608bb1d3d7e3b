"""What a release costs the users of the real data plane: requests and WebSockets through
Traefik (the env's Gateway) to the chat app simulator's pods, one run of each.

    source .chatops-env/env && PATH=$CHATOPS_TOOLS_PATH:$PATH \\
        .venv/bin/python bench/dataplane_bench.py [--rate 50] [--clients 200] [--json FILE]

In a namespace of its own, with an operator of its own watching only it, one ChatRelease
of the chat API (2 replicas a color) on an HTTPRoute of the env's Gateway, under the load
of env/loadgen.py (`--rate` requests a second, `--clients` long-lived WebSockets):

1. **The floor**: the latency of the same requests sent straight to a pod inside the
   pods' namespace, to Traefik inside it, and to GATEWAY_URL from the host (through the
   forwarder, as the tests do): the data plane's own overhead.
2. **A bad canary** (5 % errors) at 10 %, with the default analysis (1-minute windows,
   30 s interval) and again with an interval of 5 s: the user requests that failed, the
   time the canary kept its traffic, how the release ended.
3. **A blue-green switch** (scaleDownDelaySeconds 20, 4 pods a color), with the default
   analysis: the WebSocket connections dropped before the drain window ended (target 0),
   and the reconnect time of the clients cut when the old color went away (from the close
   to the next open, p50/p95) — once in one cut, once in 4 drain waves 10 s apart, per
   wave.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "env"))
from release_common import (
    GROUP,
    PLURAL,
    VERSION,
    Operator,
    api_client,
    delete_namespace,
    install_crds,
    load_env,
    loadavg,
    machine,
    new_namespace,
    summary,
    wait_for,
)

import loadgen

RELEASE, COMPONENT, PORT = "chat", "api", 8080


def host(namespace: str) -> str:
    return f"{namespace}.bench.test"


def behave(namespace: str, image: str, **behaviour: Any) -> None:
    request = urllib.request.Request(
        f"{os.environ['CHATAPP_URL']}/versions/{image}?namespace={namespace}",
        method="PUT",
        data=json.dumps(behaviour).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def route(api: client.ApiClient, namespace: str) -> None:
    backends = [
        {"name": f"{RELEASE}-{COMPONENT}-blue", "port": PORT, "weight": 100},
        {"name": f"{RELEASE}-{COMPONENT}-green", "port": PORT, "weight": 0},
    ]
    body = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": RELEASE},
        "spec": {
            "parentRefs": [
                {"name": os.environ["GATEWAY_NAME"], "namespace": os.environ["GATEWAY_NAMESPACE"]}
            ],
            "hostnames": [host(namespace)],
            "rules": [
                {
                    "matches": [
                        {"path": {"type": "PathPrefix", "value": "/api"}},
                        {"path": {"type": "PathPrefix", "value": "/ws"}},
                    ],
                    "backendRefs": backends,
                }
            ],
        },
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", body
    )


def spec(
    version: str, strategy: dict[str, Any], interval: str | None, replicas: int = 2
) -> dict[str, Any]:
    analysis: dict[str, Any] = {"prometheus": {"address": os.environ["PROMETHEUS_URL"]}}
    if interval:
        analysis["interval"] = interval
    container = {
        "name": COMPONENT,
        "image": f"chat-api:{version}",
        "ports": [{"containerPort": PORT}],
    }
    return {
        "components": [
            {
                "name": COMPONENT,
                "replicas": replicas,
                "template": {"spec": {"containers": [container]}},
                "service": {"port": PORT},
            }
        ],
        "strategy": strategy,
        "trafficRouting": {"gatewayAPI": {"httpRoute": RELEASE}},
        "analysis": analysis,
        "progressDeadlineSeconds": 120,
    }


def status(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    found = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, RELEASE)
    return dict(found.get("status") or {})


def apply(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> None:
    try:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ChatRelease",
                "metadata": {"name": RELEASE},
                "spec": body,
            },
        )
    except client.ApiException as err:
        if err.status != 409:
            raise
        strategy = {"canary": None, "blueGreen": None, "rolling": None, **body["strategy"]}
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, RELEASE, {"spec": {**body, "strategy": strategy}}
        )
    wait_for(  # the release of this version has begun (not the end state of the last one)
        lambda: (
            status(custom, namespace).get("canaryVersion")
            == body["components"][0]["template"]["spec"]["containers"][0]["image"]
            or status(custom, namespace).get("stableVersion")
            == body["components"][0]["template"]["spec"]["containers"][0]["image"]
        ),
        120,
        "the release to begin",
    )


def wait_phase(
    custom: client.CustomObjectsApi, ns: str, *phases: str, timeout: float
) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: (s := status(custom, ns)).get("phase") in phases and s, timeout, f"phase {phases}"
    )
    return found


def traefik_weight(namespace: str) -> dict[str, int]:
    url = f"{os.environ['TRAEFIK_API_URL']}/api/http/services?search={namespace}&per_page=1000"
    with urllib.request.urlopen(url, timeout=5) as reply:
        services = json.loads(reply.read())
    out = {"blue": 0, "green": 0}
    for service in services:
        for child in (service.get("weighted") or {}).get("services") or []:
            for color in ("blue", "green"):
                if f"-svc-{namespace}-{RELEASE}-{COMPONENT}-{color}-" in child["name"]:
                    out[color] = int(child.get("weight", 1))
    return out


def timestamp(rfc3339: str) -> float:
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# -- the three measurements ---------------------------------------------------------------


def floor(namespace: str, rate: float, seconds: float) -> dict[str, Any]:
    pods = client.CoreV1Api(api_client()).list_namespaced_pod(
        namespace, label_selector="chatops.dev/color=blue"
    )
    pod_ip = next(p.status.pod_ip for p in pods.items if p.status.pod_ip)
    netns = os.environ["CHATOPS_NETNS"]
    paths = {
        "pod (inside the namespace)": loadgen.Load(
            f"http://{pod_ip}:{PORT}", rate=rate, netns=netns
        ),
        "Traefik (inside the namespace)": loadgen.Load(
            "http://127.0.0.1:8000", host=host(namespace), rate=rate, netns=netns
        ),
        "GATEWAY_URL (host, through the forwarder)": loadgen.Load(
            os.environ["GATEWAY_URL"], host=host(namespace), rate=rate
        ),
    }
    out = {}
    for name, load in paths.items():
        with load:
            time.sleep(seconds)
        requests = load.requests()
        latencies = [r.latency * 1000 for r in requests if r.ok]
        out[name] = {**summary(latencies), "failed": len(loadgen.failed(requests))}
    return out


def bad_canary(
    custom: client.CustomObjectsApi,
    namespace: str,
    version: str,
    interval: str | None,
    rate: float,
    clients: int,
) -> dict[str, Any]:
    behave(namespace, f"chat-api:{version}", errorRate=0.05)
    strategy = {
        "canary": {
            "steps": [{"setWeight": 10}, {"pause": {"duration": "10m"}}],
            "scaleDownDelaySeconds": 20,
            "abortScaleDownDelaySeconds": 20,
        }
    }
    with loadgen.Load(
        os.environ["GATEWAY_URL"], host=host(namespace), rate=rate, clients=clients
    ) as load:
        wait_for(lambda: sum(c.is_open for c in load.connections()) == clients, 120, "clients open")
        started = time.time()
        apply(custom, namespace, spec(version, strategy, interval))
        # A first measurement without data pauses the release (Paused is not an end: the
        # analysis goes on and its next Fail rolls back); record every phase on the way.
        phases: list[str] = []

        def rolled_back() -> dict[str, Any] | None:
            found = status(custom, namespace)
            if not phases or phases[-1] != found.get("phase"):
                phases.append(str(found.get("phase")))
            return found if found.get("phase") == "RolledBack" else None

        end = wait_for(rolled_back, 900, "the bad canary rolled back", interval=0.2)
        wait_for(lambda: traefik_weight(namespace).get("green") == 0, 60, "Traefik back on blue")
        back = time.time()
    requests = loadgen.between(load.requests(), started)
    canary = [r for r in requests if r.color == "green"]
    return {
        "analysis": f"interval {interval}" if interval else "default (interval 30s, windows 1m)",
        "ended": end["phase"],
        "message": end.get("message", ""),
        "requests": len(requests),
        "served_by_canary": len(canary),
        "failed": len(loadgen.failed(requests)),
        "canary_kept_traffic_s": round(max(r.sent for r in canary) - min(r.sent for r in canary), 1)
        if canary
        else 0,
        "release_to_back_on_stable_s": round(back - started, 1),
        "phases": phases,
    }


def blue_green_drain(
    custom: client.CustomObjectsApi,
    namespace: str,
    version: str,
    rate: float,
    clients: int,
    waves: int = 1,
    replicas: int = 2,
) -> dict[str, Any]:
    delay, interval = 20, 10
    strategy: dict[str, Any] = {
        "blueGreen": {"postPromotionWindow": "5s", "scaleDownDelaySeconds": delay}
    }
    if waves > 1:
        strategy["blueGreen"]["drain"] = {"waves": waves, "interval": f"{interval}s"}
    with loadgen.Load(
        os.environ["GATEWAY_URL"], host=host(namespace), rate=rate, clients=clients
    ) as load:
        wait_for(lambda: sum(c.is_open for c in load.connections()) == clients, 120, "clients open")
        old = {c.color for c in load.connections() if c.is_open}
        apply(custom, namespace, spec(version, strategy, "5s", replicas))
        # the drain as the operator records it: its window from when the router showed the
        # switch, then each wave's start (status.scaleDown goes once the drain is over)
        seen: dict[str, Any] = {"waves": {}}

        def over() -> dict[str, Any] | None:
            found = status(custom, namespace)
            down = found.get("scaleDown") or {}
            if down.get("since"):
                seen.setdefault("since", down["since"])
            if down.get("wave") and down.get("waveStartedAt"):
                seen["waves"].setdefault(down["wave"], down["waveStartedAt"])
            if down.get("paused"):
                seen.setdefault("paused", []).append(down["paused"])
            done = found.get("phase") in ("Succeeded", "RolledBack") and not down
            return found if done and "since" in seen else None

        done = wait_for(over, 300 + waves * 120, "the old color drained", interval=0.2)
        new = done["activeColor"]
        wait_for(
            lambda: sum(c.is_open and c.color == new for c in load.connections()) == clients,
            180,
            "every client on the new color",
        )
    switched = timestamp(seen["since"])
    conns = load.connections()
    cut = [c for c in loadgen.closed_by_server(conns) if c.color in old]
    early = [c for c in cut if c.closed is not None and c.closed < switched + delay - 1]
    by_client: dict[int, list[loadgen.Connection]] = {}
    for c in sorted(conns, key=lambda c: c.attempt):
        by_client.setdefault(c.client, []).append(c)
    starts = sorted((timestamp(at), wave) for wave, at in seen["waves"].items())
    per_wave: dict[int, list[float]] = {}
    for c in cut:
        after = [n for n in by_client[c.client] if n.attempt > c.attempt and n.opened]
        if after and c.closed is not None and after[0].opened is not None:
            # the wave that closed it: the last one begun before the close (0: none seen)
            wave = max((w for at, w in starts if at <= c.closed + 0.5), default=0)
            per_wave.setdefault(wave, []).append((after[0].opened - c.closed) * 1000)
    # the operator's own account, once final (counted `spec.cost.settle` after the end)
    history = wait_for(
        lambda: (
            (h := (status(custom, namespace).get("history") or [{}])[-1])
            .get("cost", {})
            .get("final")
            and h
        ),
        180,
        "the release's cost, final",
    )
    return {
        "ended": done["phase"],
        "message": done.get("message", ""),
        "scaleDownDelaySeconds": delay,
        "replicas_per_color": replicas,
        "drain": {"waves": waves, "interval_s": interval} if waves > 1 else "one cut",
        "connections_on_old_color": len(cut),
        "dropped_before_drain_window": len(early),
        "reconnect_ms": summary([ms for found in per_wave.values() for ms in found]),
        "reconnect_ms_per_wave": {
            str(w): {"closed": len(found), **summary(found)}
            for w, found in sorted(per_wave.items())
        },
        "wave_started": {str(w): at for at, w in starts},
        "paused": seen.get("paused", []),
        "failed_requests": len(loadgen.failed(load.requests())),
        "cost_in_status": history.get("cost"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--parts", default="floor,canary,drain", help="which measurements")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    load_env()
    install_crds()
    api = api_client()
    custom = client.CustomObjectsApi(api)
    namespace = new_namespace(api, "bench-dataplane")
    operator = Operator(namespace)
    results: dict[str, Any] = {"machine": machine(), "loadavg_start": loadavg()}
    try:
        route(api, namespace)
        strategy = {"canary": {"steps": [{"setWeight": 100}]}}
        apply(custom, namespace, spec("1.0", strategy, "5s"))
        wait_phase(custom, namespace, "Succeeded", timeout=180)
        if "floor" in parts:
            results["floor_ms"] = floor(namespace, args.rate, 20)
            print(json.dumps(results["floor_ms"], indent=1), flush=True)
        if "canary" in parts:
            results["bad_canary"] = []
            for version, interval in (("1.1", None), ("1.2", "5s")):
                found = bad_canary(custom, namespace, version, interval, args.rate, args.clients)
                results["bad_canary"].append(found)
                print(json.dumps(found, indent=1), flush=True)
        if "drain" in parts:
            results["blue_green"] = []
            for version, waves, replicas in (("1.3", 1, 4), ("1.4", 4, 4)):
                drained = blue_green_drain(
                    custom, namespace, version, args.rate, args.clients, waves, replicas
                )
                results["blue_green"].append(drained)
                print(json.dumps(drained, indent=1), flush=True)
    finally:
        results["loadavg_end"] = loadavg()
        delete_namespace(api, namespace)
        operator.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
