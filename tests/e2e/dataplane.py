"""Helpers of the data-plane e2e tests: a ChatRelease of the chat API whose traffic really
flows through Traefik (the env's Gateway), the simulator's behaviour per image, Traefik's
own view of the weights it applies, and the bounds the tests derive their numbers from.

The release has one component, `api`, serving `/api/...` and the `/ws` chat room: what the
load generator (env/loadgen.py) exercises. Its analysis judges the error rate and the
latency over a short window (seconds, so the tests stay fast)."""

from __future__ import annotations

import datetime
import json
import math
import os
import urllib.error
import urllib.request
from typing import Any

from kubernetes import client

import releases as rel
from support import wait_for

COMPONENT = "api"
RELEASE = "chat"
PORT = 8080
WINDOW = "5s"


def host(namespace: str) -> str:
    """The HTTPRoute's hostname in `namespace`: the Host header the load sends."""
    return f"{namespace}.chat.test"


def behave(namespace: str, image: str, **behaviour: Any) -> None:
    """How the simulator plays `image`'s pods in `namespace` (errorRate, latency, …)."""
    request = urllib.request.Request(
        f"{os.environ['CHATAPP_URL']}/versions/{image}?namespace={namespace}",
        method="PUT",
        data=json.dumps(behaviour).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def analysis(interval: str = "2s", initial_delay: str = "3s", **extra: Any) -> dict[str, Any]:
    """The runbook's HTTP checks over WINDOW, measured every `interval`."""
    checks = [m for m in rel.metrics(WINDOW) if m["name"] in ("error-rate", "latency-p95")]
    return {
        "interval": interval,
        "initialDelay": initial_delay,
        "prometheus": {"address": os.environ["PROMETHEUS_URL"]},
        "metrics": checks,
        **extra,
    }


def release_spec(
    version: str, strategy: dict[str, Any], routing: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    component = {
        "name": COMPONENT,
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": COMPONENT,
                        "image": f"chat-api:{version}",
                        "ports": [{"containerPort": PORT}],
                    }
                ]
            }
        },
        "service": {"port": PORT},
    }
    return {
        "components": [component],
        "strategy": strategy,
        "trafficRouting": routing,
        "analysis": analysis(),
        "progressDeadlineSeconds": 90,
        **extra,
    }


def set_version(custom: client.CustomObjectsApi, namespace: str, version: str) -> None:
    spec = rel.get(custom, namespace, RELEASE)["spec"]
    spec["components"][0]["template"]["spec"]["containers"][0]["image"] = f"chat-api:{version}"
    custom.patch_namespaced_custom_object(
        rel.GROUP,
        rel.VERSION,
        namespace,
        rel.PLURAL,
        RELEASE,
        {"spec": {"components": spec["components"]}},
    )


def route(api: client.ApiClient, namespace: str, backends: list[dict[str, Any]]) -> None:
    """The HTTPRoute `chat` on the env's Gateway: /api and /ws to `backends`."""
    body = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": RELEASE},
        "spec": {
            "parentRefs": [
                {
                    "name": os.environ["GATEWAY_NAME"],
                    "namespace": os.environ["GATEWAY_NAMESPACE"],
                }
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


def color_route(api: client.ApiClient, namespace: str) -> None:
    """A route over both colors' Services, all to blue: the Gateway API router's."""
    route(
        api,
        namespace,
        [
            {"name": f"{RELEASE}-{COMPONENT}-blue", "port": PORT, "weight": 100},
            {"name": f"{RELEASE}-{COMPONENT}-green", "port": PORT, "weight": 0},
        ],
    )


def stable_route(api: client.ApiClient, namespace: str) -> None:
    """A route to the stable Service `chat-api`, whose selector the Service router moves."""
    route(api, namespace, [{"name": f"{RELEASE}-{COMPONENT}", "port": PORT}])


def serving(namespace: str) -> bool:
    """Whether a request through the Gateway reaches a pod: Traefik has applied the
    route with the Services' endpoints (it writes a route's status before its throttled
    configuration reload takes it live, and follows Services and EndpointSlices on its
    own watches: up to seconds of 404s, then 500s for a backend it has not seen yet)."""
    request = urllib.request.Request(
        f"{os.environ['GATEWAY_URL']}/api/health", headers={"Host": host(namespace)}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return bool(reply.headers.get("X-Chat-Pod"))
    except (urllib.error.URLError, OSError):
        return False


# -- what Traefik applies ---------------------------------------------------------------


def traefik_services(namespace: str) -> list[dict[str, Any]]:
    url = f"{os.environ['TRAEFIK_API_URL']}/api/http/services?search={namespace}&per_page=1000"
    with urllib.request.urlopen(url, timeout=5) as reply:
        found: list[dict[str, Any]] = json.loads(reply.read())
    return found


def traefik_weights(namespace: str) -> dict[str, int]:
    """Color → weight of the route's weighted service, as Traefik applies it now (a
    color it does not list gets nothing)."""
    out = {"blue": 0, "green": 0}
    for service in traefik_services(namespace):
        for child in (service.get("weighted") or {}).get("services") or []:
            for color in out:
                if f"-svc-{namespace}-{RELEASE}-{COMPONENT}-{color}-" in child["name"]:
                    out[color] = int(child.get("weight", 1))
    return out


def wait_applied(namespace: str, green: int, timeout: float = 60) -> None:
    """Until Traefik balances `green` % of the route's requests to green."""
    wait_for(
        lambda: traefik_weights(namespace) == {"blue": 100 - green, "green": green},
        timeout=timeout,
        interval=0.1,
        what=f"Traefik applying {green} % to green",
    )


# -- bounds -----------------------------------------------------------------------------


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    raise ValueError(duration)


def reaction_bound(spec_analysis: dict[str, Any], propagation: float, slack: float) -> float:
    """The longest a bad canary can keep its traffic, from its weight reaching the data
    plane to the rollback reaching it: the initial delay, one interval per tolerated
    failure plus the failing one, the window and a scrape for the errors to show in
    Prometheus, the data plane's propagation of the rollback, and `slack` for the
    operator's own turns on this machine."""
    interval = seconds(spec_analysis["interval"])
    return (
        seconds(spec_analysis.get("initialDelay", "0s"))
        + (spec_analysis.get("failureLimit", 0) + 1) * interval
        + seconds(WINDOW)
        + 1.0  # the scrape interval
        + propagation
        + slack
    )


def failures_bound(requests: float, error_rate: float, sigmas: float = 4) -> int:
    """An upper bound of the failures among `requests` each failing with `error_rate`:
    the mean plus `sigmas` standard deviations (binomial), rounded up."""
    mean = requests * error_rate
    return math.ceil(mean + sigmas * math.sqrt(mean * (1 - error_rate)))


def timestamp(rfc3339: str) -> float:
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def stable_ingress(api: client.ApiClient, namespace: str) -> None:
    """The user's Ingress `chat` (class nginx) to the stable Service `chat-api`."""
    backend = {"service": {"name": f"{RELEASE}-{COMPONENT}", "port": {"number": PORT}}}
    paths = [{"path": p, "pathType": "Prefix", "backend": backend} for p in ("/api", "/ws")]
    client.NetworkingV1Api(api).create_namespaced_ingress(
        namespace,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": RELEASE},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": host(namespace), "http": {"paths": paths}}],
            },
        },
    )


def wait_applied_nginx(namespace: str, green: int, timeout: float = 60) -> None:
    """Until Traefik's ingress-nginx provider weighs the stable Ingress' backend and its
    canary (`<ns>-<ingress>-<service>-<port>` and the same with `-canary`) at `green` %."""
    primary = f"{namespace}-{RELEASE}-{RELEASE}-{COMPONENT}-{PORT}"

    def applied() -> dict[str, int] | None:
        for service in traefik_services(namespace):
            children = (service.get("weighted") or {}).get("services") or []
            weights = {c["name"]: int(c.get("weight", 1)) for c in children}
            if weights == {primary: 100 - green, f"{primary}-canary": green}:
                return weights
        return None

    wait_for(applied, timeout=timeout, interval=0.1, what=f"Traefik applying {green} % (NGINX)")
