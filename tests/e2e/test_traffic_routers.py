"""The traffic routers against the real API server: weights written into a user's
HTTPRoute, a generated NGINX canary Ingress, and a Service selector that really moves
the Service's endpoints from one color's pods to the other's."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

import releases as rel
from chatops import ownership
from chatops.errors import TrafficRoutingError
from chatops.traffic.gatewayapi import GatewayAPIRouter
from chatops.traffic.nginx import NginxRouter
from chatops.traffic.router import Split
from chatops.traffic.service import ServiceRouter
from support import wait_for

pytestmark = pytest.mark.e2e

RELEASE = "chat"
GW = ("gateway.networking.k8s.io", "v1", "httproutes")


def splits(weight: int, stable: str = "blue", canary: str = "green") -> list[Split]:
    return [
        Split(c, f"{RELEASE}-{c}-{stable}", f"{RELEASE}-{c}-{canary}", weight)
        for c in ("api", "frontend")
    ]


def backend_ref(name: str, weight: int) -> dict[str, Any]:
    return {"name": name, "port": 8080, "weight": weight}


def http_route(namespace: str, name: str, api_refs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "chat"}},
        "spec": {
            "parentRefs": [{"name": "public-gateway"}],
            "hostnames": ["chat.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"add": [{"name": "x-app", "value": "chat"}]},
                        }
                    ],
                    "backendRefs": api_refs,
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        backend_ref("chat-frontend-blue", 100),
                        backend_ref("chat-frontend-green", 0),
                    ],
                },
            ],
        },
    }


def stored_weights(route: dict[str, Any]) -> list[dict[str, int]]:
    return [
        {ref["name"]: ref.get("weight", 1) for ref in rule["backendRefs"]}
        for rule in route["spec"]["rules"]
    ]


def test_gateway_api_router_moves_httproute_weights(
    api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    refs = [backend_ref("chat-api-blue", 100), backend_ref("chat-api-green", 0)]
    custom.create_namespaced_custom_object(
        *GW[:2], namespace, GW[2], http_route(namespace, "chat", refs)
    )
    router = GatewayAPIRouter(api, "chat")

    router.set_weights(namespace, RELEASE, splits(25))
    route = custom.get_namespaced_custom_object(*GW[:2], namespace, GW[2], "chat")
    assert stored_weights(route) == [
        {"chat-api-blue": 75, "chat-api-green": 25},
        {"chat-frontend-blue": 75, "chat-frontend-green": 25},
    ]
    # Only the weights changed: the user's matches, filters, hosts and labels are intact.
    assert route["spec"]["rules"][0]["filters"][0]["type"] == "RequestHeaderModifier"
    assert route["spec"]["hostnames"] == ["chat.example.com"]
    assert route["metadata"]["labels"] == {"team": "chat"}
    assert router.get_weights(namespace, RELEASE, splits(0)) == {
        "api": {"chat-api-blue": 75, "chat-api-green": 25},
        "frontend": {"chat-frontend-blue": 75, "chat-frontend-green": 25},
    }

    # Setting the same weights again writes nothing (no churn for a GitOps tool).
    version = route["metadata"]["resourceVersion"]
    router.set_weights(namespace, RELEASE, splits(25))
    again = custom.get_namespaced_custom_object(*GW[:2], namespace, GW[2], "chat")
    assert again["metadata"]["resourceVersion"] == version

    router.set_weights(namespace, RELEASE, splits(100))
    assert router.get_weights(namespace, RELEASE, splits(0))["api"] == {
        "chat-api-blue": 0,
        "chat-api-green": 100,
    }
    # The next release goes the other way, green to blue.
    router.set_weights(namespace, RELEASE, splits(10, stable="green", canary="blue"))
    route = custom.get_namespaced_custom_object(*GW[:2], namespace, GW[2], "chat")
    assert stored_weights(route)[0] == {"chat-api-blue": 10, "chat-api-green": 90}


def test_gateway_api_router_names_the_missing_backend_refs(
    api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    one_sided = http_route(namespace, "half", [backend_ref("chat-api-blue", 100)])
    custom.create_namespaced_custom_object(*GW[:2], namespace, GW[2], one_sided)

    with pytest.raises(TrafficRoutingError) as raised:
        GatewayAPIRouter(api, "half").set_weights(namespace, RELEASE, splits(10))
    assert f"HTTPRoute {namespace}/half" in str(raised.value)
    assert "no backendRef to chat-api-green" in str(raised.value)
    route = custom.get_namespaced_custom_object(*GW[:2], namespace, GW[2], "half")
    assert stored_weights(route)[1] == {"chat-frontend-blue": 100, "chat-frontend-green": 0}

    with pytest.raises(TrafficRoutingError, match=f"HTTPRoute {namespace}/absent: not found"):
        GatewayAPIRouter(api, "absent").set_weights(namespace, RELEASE, splits(10))


def ingress_path(prefix: str, service: str) -> client.V1HTTPIngressPath:
    return client.V1HTTPIngressPath(
        path=prefix,
        path_type="Prefix",
        backend=client.V1IngressBackend(
            service=client.V1IngressServiceBackend(
                name=service, port=client.V1ServiceBackendPort(number=80)
            )
        ),
    )


def release_owner(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    """A real ChatRelease `chat` (no operator acts on it) to own the canary Ingress."""
    rel.create(
        custom,
        namespace,
        RELEASE,
        rel.release_spec("1.0", rel.canary(), {"nginx": {"ingress": "chat"}}),
    )
    return ownership.owner(rel.get(custom, namespace, RELEASE))


def test_nginx_router_generates_updates_and_removes_the_canary_ingress(
    crds: None, api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    networking = client.NetworkingV1Api(api)
    networking.create_namespaced_ingress(
        namespace,
        client.V1Ingress(
            metadata=client.V1ObjectMeta(
                name="chat",
                annotations={"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
            ),
            spec=client.V1IngressSpec(
                ingress_class_name="nginx",
                tls=[client.V1IngressTLS(hosts=["chat.example.com"], secret_name="chat-tls")],
                rules=[
                    client.V1IngressRule(
                        host="chat.example.com",
                        http=client.V1HTTPIngressRuleValue(
                            paths=[
                                ingress_path("/api", "chat-api"),
                                ingress_path("/", "chat-frontend"),
                            ]
                        ),
                    )
                ],
            ),
        ),
    )
    owner = release_owner(custom, namespace)
    router = NginxRouter(api, "chat", owner)

    router.set_weights(namespace, RELEASE, splits(10))
    canary = networking.read_namespaced_ingress("chat-chat-canary", namespace)
    assert canary.metadata.annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert canary.metadata.annotations["nginx.ingress.kubernetes.io/canary-weight"] == "10"
    assert canary.metadata.labels["app.kubernetes.io/managed-by"] == "chatops"
    assert [(o.uid, o.controller) for o in canary.metadata.owner_references] == [
        (owner["uid"], True)
    ]
    assert canary.spec.ingress_class_name == "nginx"
    assert canary.spec.tls[0].hosts == ["chat.example.com"]
    assert [(p.path, p.backend.service.name) for p in canary.spec.rules[0].http.paths] == [
        ("/api", "chat-api-green"),
        ("/", "chat-frontend-green"),
    ]

    router.set_weights(namespace, RELEASE, splits(25))
    canary = networking.read_namespaced_ingress("chat-chat-canary", namespace)
    assert canary.metadata.annotations["nginx.ingress.kubernetes.io/canary-weight"] == "25"
    assert router.get_weights(namespace, RELEASE, splits(0)) == {
        "api": {"chat-api-blue": 75, "chat-api-green": 25},
        "frontend": {"chat-frontend-blue": 75, "chat-frontend-green": 25},
    }
    router.set_weights(namespace, RELEASE, splits(25))  # a repeat writes nothing
    again = networking.read_namespaced_ingress("chat-chat-canary", namespace)
    assert again.metadata.resource_version == canary.metadata.resource_version

    router.finalize(namespace, RELEASE, splits(0))
    names = [i.metadata.name for i in networking.list_namespaced_ingress(namespace).items]
    assert names == ["chat"], "the canary Ingress is gone, the user's stable one stays"
    stable = networking.read_namespaced_ingress("chat", namespace)
    assert [p.backend.service.name for p in stable.spec.rules[0].http.paths] == [
        "chat-api",
        "chat-frontend",
    ]
    assert router.get_weights(namespace, RELEASE, splits(0))["api"] == {
        "chat-api-blue": 100,
        "chat-api-green": 0,
    }
    router.finalize(namespace, RELEASE, splits(0))  # idempotent


def test_nginx_router_leaves_a_canary_ingress_it_does_not_own(
    crds: None, api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    """Case 7 of issue 8: an Ingress of the canary's name that the release does not
    control — even one carrying chatops' labels — is never edited or deleted."""
    networking = client.NetworkingV1Api(api)
    rules = [
        client.V1IngressRule(
            http=client.V1HTTPIngressRuleValue(
                paths=[ingress_path("/api", "chat-api"), ingress_path("/", "chat-frontend")]
            )
        )
    ]
    labels = {"app.kubernetes.io/managed-by": "chatops", "chatops.dev/release": RELEASE}
    for name in ("chat", "chat-chat-canary"):
        networking.create_namespaced_ingress(
            namespace,
            client.V1Ingress(
                metadata=client.V1ObjectMeta(name=name, labels=labels),
                spec=client.V1IngressSpec(rules=rules),
            ),
        )
    router = NginxRouter(api, "chat", release_owner(custom, namespace))
    refusal = (
        f"Ingress {namespace}/chat-chat-canary: exists but is not controlled by ChatRelease chat"
    )
    with pytest.raises(TrafficRoutingError, match=refusal):
        router.set_weights(namespace, RELEASE, splits(10))
    with pytest.raises(TrafficRoutingError, match=refusal):
        router.finalize(namespace, RELEASE, splits(0))
    theirs = networking.read_namespaced_ingress("chat-chat-canary", namespace)
    assert not (theirs.metadata.annotations or {}).get("nginx.ingress.kubernetes.io/canary")


def color_pod(namespace: str, component: str, color: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=f"{RELEASE}-{component}-{color}-0",
            labels={
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": component,
                "chatops.dev/color": color,
            },
        ),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name=component,
                    image=f"chat-{component}:{color}",
                    ports=[client.V1ContainerPort(container_port=8080)],
                )
            ]
        ),
    )


def test_service_router_switches_the_stable_service_to_the_other_colors_pods(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    selector = {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "api"}
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="chat-api"),
            spec=client.V1ServiceSpec(
                selector={**selector, "chatops.dev/color": "blue"},
                ports=[client.V1ServicePort(port=80, target_port=8080)],
            ),
        ),
    )
    for color in ("blue", "green"):
        core.create_namespaced_pod(namespace, color_pod(namespace, "api", color))

    def pod_ip(color: str) -> str | None:
        pod = core.read_namespaced_pod(f"{RELEASE}-api-{color}-0", namespace)
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        return pod.status.pod_ip if ready else None

    ips = {
        color: wait_for(lambda c=color: pod_ip(c), timeout=90, what=f"{color} pod Ready")
        for color in ("blue", "green")
    }
    assert ips["blue"] != ips["green"]
    discovery = client.DiscoveryV1Api(api)

    def endpoints() -> set[str]:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=chat-api"
        ).items
        return {a for s in slices for e in s.endpoints or [] for a in e.addresses}

    wait_for(lambda: endpoints() == {ips["blue"]}, timeout=60, what="chat-api serving blue")
    router = ServiceRouter(api)
    one = [Split("api", "chat-api-blue", "chat-api-green", 0)]

    with pytest.raises(TrafficRoutingError, match="weight must be 0 or 100, not 50"):
        router.set_weights(
            namespace, RELEASE, [Split("api", "chat-api-blue", "chat-api-green", 50)]
        )
    assert (
        core.read_namespaced_service("chat-api", namespace).spec.selector["chatops.dev/color"]
        == "blue"
    )

    router.set_weights(namespace, RELEASE, [Split("api", "chat-api-blue", "chat-api-green", 100)])
    service = core.read_namespaced_service("chat-api", namespace)
    assert service.spec.selector == {**selector, "chatops.dev/color": "green"}
    wait_for(lambda: endpoints() == {ips["green"]}, timeout=60, what="chat-api serving green")
    assert router.get_weights(namespace, RELEASE, one) == {
        "api": {"chat-api-blue": 0, "chat-api-green": 100}
    }

    router.set_weights(namespace, RELEASE, one)  # roll back
    wait_for(lambda: endpoints() == {ips["blue"]}, timeout=60, what="chat-api serving blue again")
    assert router.get_weights(namespace, RELEASE, one)["api"] == {
        "chat-api-blue": 100,
        "chat-api-green": 0,
    }

    with pytest.raises(TrafficRoutingError, match=f"Service {namespace}/chat-frontend: not found"):
        router.set_weights(
            namespace, RELEASE, [Split("frontend", "chat-frontend-blue", "chat-frontend-green", 0)]
        )
