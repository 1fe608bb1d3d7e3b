"""The data plane of the local environment: Traefik as the Gateway API implementation.

Traefik runs inside the pods' network namespace (env/netns.py), where pod addresses are
reachable, with its Kubernetes Gateway provider reading the environment's API server
(forwarded into the namespace on the same port, so the env's kubeconfig serves as it is).
It balances over the EndpointSlices of the Services an HTTPRoute names, with the route's
backendRef weights: the canary's share of real requests is what chatops wrote.

Its ingress-nginx provider serves Ingresses of class `nginx` as ingress-nginx would,
`nginx.ingress.kubernetes.io/canary` and `canary-weight` included (Traefik 3.7): the
NGINX router's canary Ingress is real too, on the same entry point.

`up` (env/localenv.py) creates the GatewayClass `traefik`, the Gateway
`chatops-gateway/chat-gateway` (one HTTP listener, routes from every namespace) and the
IngressClass `nginx`, and forwards Traefik's entry point to the host's loopback. The env
file then has:

    GATEWAY_URL=http://127.0.0.1:<port>    the entry point, as users reach it
    GATEWAY_NAME, GATEWAY_NAMESPACE        for an HTTPRoute's parentRefs
    TRAEFIK_API_URL                        Traefik's API: what it applies now

An HTTPRoute attaches with `parentRefs: [{name: $GATEWAY_NAME, namespace:
$GATEWAY_NAMESPACE}]` and is matched by its `hostnames` against the Host header.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import localenv
from localenv import NETNS, kubectl, log

GATEWAY_CLASS = "traefik"
CONTROLLER = "traefik.io/gateway-controller"
GATEWAY_NAME, GATEWAY_NAMESPACE = "chat-gateway", "chatops-gateway"
INGRESS_CLASS, INGRESS_CONTROLLER = "nginx", "k8s.io/ingress-nginx"
"""The IngressClass Traefik's ingress-nginx provider serves, as ingress-nginx names it."""
ENTRY_PORT = 8000
"""Traefik's entry point inside the namespace; the Gateway's listener has the same port,
as Traefik's provider matches listeners to entry points by port."""
API_PORT = 8080
"""Traefik's API (what it applies now: routers, services, weights, servers), inside the
namespace; forwarded to TRAEFIK_API_URL so tests can wait for a weight to be applied."""


def manifests() -> list[dict[str, object]]:
    listener = {
        "name": "http",
        "protocol": "HTTP",
        "port": ENTRY_PORT,
        "allowedRoutes": {"namespaces": {"from": "All"}},
    }
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": CONTROLLER},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": INGRESS_CLASS},
            "spec": {"controller": INGRESS_CONTROLLER},
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
            "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [listener]},
        },
    ]


def traefik_argv() -> list[str]:
    flags = {
        # the loopback only: the namespace's other addresses are the pods', whose ports
        # (8080 is common) belong to the simulator's pod servers
        "entryPoints.web.address": f"127.0.0.1:{ENTRY_PORT}",
        # Traefik 3 ends a request's read after 60 s by default, which cuts a WebSocket
        # that outlives it; a chat app's entry point needs no read deadline.
        "entryPoints.web.transport.respondingTimeouts.readTimeout": "0s",
        "entryPoints.web.transport.lifeCycle.graceTimeOut": "1s",
        "entryPoints.traefik.address": f"127.0.0.1:{API_PORT}",
        "api.insecure": "true",
        "api.dashboard": "false",  # its web UI is not in the module zip: the API is all we use
        "providers.kubernetesGateway": "true",
        "providers.kubernetesGateway.statusAddress.ip": "127.0.0.1",
        # Ingresses of class `nginx` read as ingress-nginx does, canary annotations too
        # (the NGINX traffic router's canary Ingress), served on the same entry point
        "providers.kubernetesIngressNGINX": "true",
        "providers.kubernetesIngressNGINX.httpEntryPoint": "web",
        "log.level": "INFO",
        # every answer of 500 and up, with the backend Traefik chose and its own error:
        # what a failed user request was, when a data-plane test sees one
        "accessLog.filePath": str(localenv.STATE / "logs" / "traefik-access.log"),
        "accessLog.format": "json",
        "accessLog.filters.statusCodes": "500-599",
        "log.noColor": "true",
        "global.checkNewVersion": "false",
        "global.sendAnonymousUsage": "false",
    }
    traefik = str(localenv.bin_dir("traefik") / "traefik")
    return ["ip", "netns", "exec", NETNS, traefik, *(f"--{k}={v}" for k, v in flags.items())]


def programmed() -> bool:
    found = kubectl(
        "get",
        "gateway",
        GATEWAY_NAME,
        "-n",
        GATEWAY_NAMESPACE,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Programmed')].status}",
        check=False,
    )
    return found.stdout.strip() == "True"


def answers(url: str) -> bool:
    """Traefik answers at `url` (a 404: no route matches a bare request)."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError as err:
        return err.code == 404
    return True


def start(kubeconfig: str) -> dict[str, str]:
    """Traefik in the namespace, the GatewayClass and Gateway, the entry point forwarded."""
    log(f"starting Traefik in {NETNS} (Kubernetes Gateway provider)")
    localenv.spawn("traefik", traefik_argv(), env={"KUBECONFIG": kubeconfig})
    port, api_port = localenv.free_port(), localenv.free_port()
    localenv.start_forward(
        "gateway", f"host:{port}=netns:{ENTRY_PORT}", f"host:{api_port}=netns:{API_PORT}"
    )
    objects = {"apiVersion": "v1", "kind": "List", "items": manifests()}
    kubectl("apply", "--server-side", "-f", "-", input=json.dumps(objects))
    localenv.wait_until(f"Gateway {GATEWAY_NAMESPACE}/{GATEWAY_NAME} Programmed", programmed)
    url = f"http://127.0.0.1:{port}"
    localenv.wait_until("Traefik's entry point", lambda: answers(url))
    return {
        "GATEWAY_URL": url,
        "GATEWAY_NAME": GATEWAY_NAME,
        "GATEWAY_NAMESPACE": GATEWAY_NAMESPACE,
        "TRAEFIK_API_URL": f"http://127.0.0.1:{api_port}",
    }
