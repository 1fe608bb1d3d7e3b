"""Helpers of the ChatRelease e2e tests: a chat app of two components whose pods the
simulator (env/chatapp.py) serves as their versions behave, traffic to them, and readers
of what the cluster shows (route weights, canary Ingress annotations, Service selectors,
Deployments)."""

from __future__ import annotations

import copy
import json
import os
import urllib.request
from typing import Any

from kubernetes import client

from support import GROUP, VERSION, wait_for

COMPONENTS = ("api", "web")
PLURAL = "chatreleases"


def metrics(window: str = "5s") -> list[dict[str, Any]]:
    """The runbook's three checks over a short window, so tests react in seconds."""
    sel = 'namespace="{{namespace}}",service="{{service}}",revision="{{revision}}"'
    return [
        {
            "name": "error-rate",
            "max": 0.01,
            "query": f'sum(rate(http_requests_total{{{sel},code=~"5.."}}[{window}])) / '
            f"sum(rate(http_requests_total{{{sel}}}[{window}]))",
        },
        {
            "name": "latency-p95",
            "max": 0.5,
            "query": f"histogram_quantile(0.95, sum by (le) "
            f"(rate(http_request_duration_seconds_bucket{{{sel}}}[{window}])))",
        },
        {
            "name": "websocket-success",
            "min": 0.99,
            "query": (
                f'sum(rate(websocket_connections_total{{{sel},result="success"}}[{window}]))'
                f" / sum(rate(websocket_connections_total{{{sel}}}[{window}]))"
            ),
        },
    ]


def release_spec(
    version: str,
    strategy: dict[str, Any],
    routing: dict[str, Any] | None = None,
    health: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    components = []
    for name in COMPONENTS:
        component: dict[str, Any] = {
            "name": name,
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": f"chat-{name}:{version}",
                            "env": [{"name": "CHAT_COMPONENT", "value": name}],
                            "ports": [{"containerPort": 8080}],
                        }
                    ]
                }
            },
            "service": {"port": 8080},
        }
        if health:
            component["healthCheck"] = {"url": health_url()}
        components.append(component)
    spec: dict[str, Any] = {
        "components": components,
        "strategy": strategy,
        "analysis": {
            "interval": "2s",
            "prometheus": {"address": os.environ["PROMETHEUS_URL"]},
            "metrics": metrics(),
        },
        "progressDeadlineSeconds": 60,
        **extra,
    }
    if routing is not None:
        spec["trafficRouting"] = routing
    return spec


def canary(pause: str = "4s", weights: tuple[int, ...] = (10, 25, 50)) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for weight in weights:
        steps += [{"setWeight": weight}, {"pause": {"duration": pause}}]
    steps.append({"setWeight": 100})
    return {"canary": {"steps": steps, "scaleDownDelaySeconds": 3, "abortScaleDownDelaySeconds": 3}}


def health_url() -> str:
    """The color Service's /api/health, through the simulator's view of the Service (the
    operator runs on the host, which cannot reach pod addresses)."""
    service = "{{namespace}}/{{service}}"
    return f"{os.environ['CHATAPP_URL']}/services/{service}/proxy/api/health"


def chatapp(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One call to the simulator's control API; its JSON answer."""
    request = urllib.request.Request(
        f"{os.environ['CHATAPP_URL']}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read() or b"null")


def play(namespace: str, version: str, **behaviour: Any) -> None:
    """Make `version` of every component (`chat-api:<version>`, …) behave so in the
    pods of `namespace`: errorRate, latency, wsSuccess, healthy."""
    for name in COMPONENTS:
        chatapp("PUT", f"/versions/chat-{name}:{version}?namespace={namespace}", behaviour)


def traffic(namespace: str, release: str, *colors: str, rps: float = 20) -> None:
    """Steady requests to the ready pods of each color's Service of every component, as
    the analysis needs traffic to measure a version (env/traffic.py)."""
    for color in colors:
        for name in COMPONENTS:
            chatapp("PUT", f"/traffic/{namespace}/{release}-{name}-{color}", {"rps": rps})


def create(
    custom: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any]
) -> None:
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ChatRelease",
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def get(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return body


def status(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = get(custom, namespace, name).get("status") or {}
    return found


def set_version(custom: client.CustomObjectsApi, namespace: str, name: str, version: str) -> None:
    spec = copy.deepcopy(get(custom, namespace, name)["spec"])
    for c in spec["components"]:
        c["template"]["spec"]["containers"][0]["image"] = f"chat-{c['name']}:{version}"
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": {"components": spec["components"]}}
    )


def annotate(
    custom: client.CustomObjectsApi, namespace: str, name: str, key: str, value: str = ""
) -> None:
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"annotations": {key: value}}}
    )


def wait_phase(
    custom: client.CustomObjectsApi, namespace: str, name: str, *phases: str, timeout: float = 120
) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: (s := status(custom, namespace, name)).get("phase") in phases and s,
        timeout=timeout,
        interval=0.5,
        what=f"ChatRelease {name} phase in {phases}",
    )
    return found


def wait_weight(
    custom: client.CustomObjectsApi, namespace: str, name: str, weight: int, timeout: float = 120
) -> dict[str, Any]:
    """Wait for the canary of `name` to be at `weight`; its status then. A release that ends
    first (at the spec's generation) fails at once, and a timeout names where the release
    stood."""

    def reached() -> dict[str, Any] | None:
        found = get(custom, namespace, name)
        s: dict[str, Any] = found.get("status") or {}
        current = (s.get("observedGeneration") or 0) >= found["metadata"]["generation"]
        if s.get("canaryWeight") == weight or (
            current and s.get("phase") in ("Succeeded", "RolledBack", "Failed")
        ):
            return s
        where[0] = _where(s)
        return None

    where = [""]
    try:
        found: dict[str, Any] = wait_for(reached, timeout=timeout, interval=0.2,
                                         what=f"{name} at {weight} %")
    except AssertionError as err:
        raise AssertionError(f"{err}; {name} stood at: {where[0]}") from None
    if found.get("canaryWeight") != weight:
        raise AssertionError(f"{name} ended before {weight} %: {_where(found)}")
    return found


def _where(s: dict[str, Any]) -> str:
    """The fields of a release's status that say where it is and why."""
    keys = ("phase", "currentStep", "canaryWeight", "message")
    shown = {k: s.get(k) for k in keys}
    shown["analysis"] = [(m.get("metric"), m.get("verdict"), m.get("value"))
                         for m in s.get("analysis") or []][-4:]
    return repr(shown)


def http_route(api: client.ApiClient, namespace: str, name: str = "chat") -> dict[str, Any]:
    """An HTTPRoute routing /api and / to both colors of the release `chat`."""
    rules = []
    for component, path in (("api", "/api"), ("web", "/")):
        rules.append(
            {
                "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                "backendRefs": [
                    {"name": f"chat-{component}-blue", "port": 8080, "weight": 100},
                    {"name": f"chat-{component}-green", "port": 8080, "weight": 0},
                ],
            }
        )
    body = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "chat-gateway"}],
            "hostnames": ["chat.example.com"],
            "rules": rules,
        },
    }
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", body
    )
    return created


def route_weights(api: client.ApiClient, namespace: str, name: str = "chat") -> dict[str, int]:
    """Service → weight, as the HTTPRoute holds them."""
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", name
    )
    return {
        ref["name"]: ref.get("weight", 1)
        for rule in route["spec"]["rules"]
        for ref in rule["backendRefs"]
    }


def stable_ingress(api: client.ApiClient, namespace: str, name: str = "chat") -> None:
    paths = [
        {
            "path": path,
            "pathType": "Prefix",
            "backend": {"service": {"name": f"chat-{component}", "port": {"number": 8080}}},
        }
        for component, path in (("api", "/api"), ("web", "/"))
    ]
    client.NetworkingV1Api(api).create_namespaced_ingress(
        namespace,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": "chat.example.com", "http": {"paths": paths}}],
            },
        },
    )


def canary_ingress_weight(
    api: client.ApiClient, namespace: str, name: str = "chat", release: str = "chat"
) -> int | None:
    """The canary-weight of `<name>-<release>-canary`, None when there is no canary Ingress."""
    try:
        ingress = client.NetworkingV1Api(api).read_namespaced_ingress(
            f"{name}-{release}-canary", namespace
        )
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise
    annotations = ingress.metadata.annotations or {}
    assert annotations.get("nginx.ingress.kubernetes.io/canary") == "true"
    return int(annotations["nginx.ingress.kubernetes.io/canary-weight"])


def replicas(
    api: client.ApiClient, namespace: str, color: str, release: str = "chat"
) -> dict[str, int]:
    apps = client.AppsV1Api(api)
    out = {}
    for name in COMPONENTS:
        try:
            out[name] = apps.read_namespaced_deployment(
                f"{release}-{name}-{color}", namespace
            ).spec.replicas
        except client.ApiException as err:
            if err.status != 404:
                raise
    return out


def available(api: client.ApiClient, namespace: str, deployment: str) -> bool:
    d = client.AppsV1Api(api).read_namespaced_deployment(deployment, namespace)
    return bool(d.spec.replicas) and (d.status.available_replicas or 0) >= d.spec.replicas


def selector_color(
    api: client.ApiClient, namespace: str, component: str, release: str = "chat"
) -> str:
    service = client.CoreV1Api(api).read_namespaced_service(f"{release}-{component}", namespace)
    return str(service.spec.selector["chatops.dev/color"])
