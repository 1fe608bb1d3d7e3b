"""Helpers of the e2e tests that run a version of the chat app without the operator: a
Deployment and its Service labelled as chatops labels a color, whose pods the simulator
(env/chatapp.py) serves, the version's behaviour, traffic to it, and its pods' sockets."""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from typing import Any

from kubernetes import client

from support import wait_for

PORT = 8080


def chatapp(method: str, path: str, body: Any = None) -> Any:
    """One call to the simulator's control API; its JSON answer."""
    request = urllib.request.Request(
        f"{os.environ['CHATAPP_URL']}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read() or b"null")


REVISION = "r1"
"""The `chatops.dev/revision` of the pods `deploy` makes unless told: what a test's
`{{revision}}` renders to."""


def labels(release: str, component: str, color: str) -> dict[str, str]:
    """The labels chatops puts on a color's pods (chatops/release/manifests.py)."""
    return {
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": component,
        "chatops.dev/color": color,
    }


def deploy(
    api: client.ApiClient,
    namespace: str,
    image: str,
    color: str,
    release: str = "chat",
    component: str = "api",
    replicas: int = 2,
    revision: str = REVISION,
) -> str:
    """The Deployment and Service `<release>-<component>-<color>` running `image`, its
    pods of `revision`; waits until the simulator serves all its pods. Returns the
    Service's name."""
    name = f"{release}-{component}-{color}"
    selector = labels(release, component, color)
    template = {**selector, "chatops.dev/revision": revision}
    container = {"name": component, "image": image, "ports": [{"containerPort": PORT}]}
    client.AppsV1Api(api).create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": selector},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": template}, "spec": {"containers": [container]}},
            },
        },
    )
    client.CoreV1Api(api).create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": selector},
            "spec": {"selector": selector, "ports": [{"port": PORT, "targetPort": PORT}]},
        },
    )
    wait_for(
        lambda: len(ready(namespace, name)) == replicas,
        timeout=90,
        what=f"{replicas} pods of {namespace}/{name} served and ready behind the Service",
    )
    return name


def served(namespace: str) -> list[dict[str, Any]]:
    """The sockets the simulator serves for `namespace`'s pods."""
    found: list[dict[str, Any]] = chatapp("GET", f"/endpoints?namespace={namespace}")
    return found


def ready(namespace: str, service: str) -> list[str]:
    """`ip:port` of the Service's ready pods (its EndpointSlices) that the simulator serves."""
    found: list[str] = chatapp("GET", f"/services/{namespace}/{service}")["addresses"]
    return found


def behave(namespace: str, image: str, **behaviour: Any) -> None:
    """`image` behaves so in `namespace`: errorRate, latency, wsSuccess, healthy."""
    quoted = urllib.parse.quote(image, safe=":")
    chatapp("PUT", f"/versions/{quoted}?namespace={namespace}", behaviour)


def traffic(namespace: str, service: str, rps: float) -> None:
    chatapp("PUT", f"/traffic/{namespace}/{service}", {"rps": rps})


def tally(namespace: str, service: str) -> dict[str, Any]:
    """What the traffic to the Service got so far: sent, ok, failed, errors, byPod."""
    found: dict[str, Any] = chatapp("GET", "/traffic")[f"{namespace}/{service}"]
    return found
