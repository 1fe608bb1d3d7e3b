"""A look served from the watches: what it takes from them, and when it asks the API
server instead (a copy that may not show the look's own last write, a miss)."""

from __future__ import annotations

from typing import Any

import pytest
import urllib3
from kubernetes import client

from chatops.adapters import watched
from chatops.handlers import watched as handlers
from chatops.release import observe
from chatops.traffic.gatewayapi import GatewayAPIRouter
from chatops.traffic.nginx import NginxRouter
from chatops.traffic.router import Split
from chatops.traffic.service import ServiceRouter

NOWHERE = "http://127.0.0.1:9"
"""An API server that refuses every connection: a request the test did not expect fails."""


def _unreachable() -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = NOWHERE
    configuration.retries = False
    return client.ApiClient(configuration)


def _deployment(color: str, available: int) -> dict[str, Any]:
    """A Deployment as a watch shows it, with what a look does not read beside it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"chat-api-{color}", "namespace": "ns", "generation": 3,
            "resourceVersion": "812", "uid": "u-1",
            "labels": {"app.kubernetes.io/instance": "chat",
                       "app.kubernetes.io/component": "api", "chatops.dev/color": color},
            "annotations": {"chatops.dev/quiesced-by": "restore-1",
                            "deployment.kubernetes.io/revision": "4"},
            "managedFields": [{"manager": "chatops", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"chatops.dev/color": color}},
            "template": {
                "metadata": {"labels": {"chatops.dev/revision": "abc123", "x": "y"}},
                "spec": {"containers": [{"name": "api", "image": "chat-api:1.1",
                                         "env": [{"name": "A", "value": "1"}]}]},
            },
        },
        "status": {"availableReplicas": available, "updatedReplicas": 2, "replicas": 2,
                   "observedGeneration": 3, "conditions": [{"type": "Available"}]},
    }


def test_the_index_keeps_every_field_a_look_reads_of_a_deployment() -> None:
    full = [_deployment("blue", 2), _deployment("green", 1)]
    kept = [watched.deployment_essence(d) for d in full]
    assert observe.deployments(kept) == observe.deployments(full)
    green = observe.deployments(kept)[("api", "green")]
    assert (green.available, green.revision, green.quiesced_by, green.images) == (
        1, "abc123", "restore-1", {"api": "chat-api:1.1"})
    assert "managedFields" not in kept[0]["metadata"]


@pytest.mark.parametrize(
    ("version", "written", "current"),
    [
        pytest.param("7", None, True, id="no look wrote it yet: the watched copy"),
        pytest.param("9", "9", True, id="at the version the last look left it"),
        pytest.param("7", "9", False, id="the watch has not shown our write yet"),
        pytest.param("11", "9", False, id="someone changed it since: read it"),
    ],
)
def test_the_watched_release_stands_for_it_only_at_the_version_last_written(
    version: str, written: str | None, current: bool
) -> None:
    body = {"metadata": {"name": "chat", "namespace": "ns", "resourceVersion": version}}
    assert watched.current(body, written) is current


def _index(entries: dict[Any, Any]) -> dict[Any, list[Any]]:
    """A kopf index as the daemon reads it: each key to the values of its objects."""
    return {k: [v] for k, v in entries.items()}


def test_a_look_takes_the_objects_its_router_reads_and_the_release_deployments() -> None:
    route = {"metadata": {"name": "chat"}, "spec": {"rules": []}}
    ingress = {"metadata": {"name": "web"}}
    spec = {"components": [{"name": "api"}, {"name": "web"}],
            "trafficRouting": {"gatewayAPI": {"httpRoute": "chat"}}}
    body = {"metadata": {"name": "chat", "namespace": "ns", "resourceVersion": "5"},
            "spec": spec}
    indexes = {
        "release_deployments": _index({("ns", "chat"): _deployment("blue", 2),
                                       ("ns", "other"): _deployment("green", 2)}),
        "watched_services": _index({("Service", "ns", "chat-api"): {"spec": {}},
                                    ("Service", "ns", "other-api"): {"spec": {}}}),
        "watched_routes": _index({("HTTPRoute", "ns", "chat"): route,
                                  ("HTTPRoute", "ns", "else"): route}),
        "watched_ingresses": _index({("Ingress", "ns", "web"): ingress}),
    }
    seen = handlers.seen(body, "5", indexes)
    assert seen.release == body
    assert [d["metadata"]["name"] for d in seen.deployments] == ["chat-api-blue"]
    assert set(seen.objects) == {("Service", "ns", "chat-api"), ("HTTPRoute", "ns", "chat")}
    seen.objects[("HTTPRoute", "ns", "chat")]["spec"]["rules"].append("changed")
    assert route["spec"]["rules"] == [], "a look's copy never changes the index"
    assert handlers.seen(body, "6", indexes).release is None


def test_an_nginx_release_reads_its_stable_and_canary_ingress() -> None:
    spec = {"components": [{"name": "web"}], "trafficRouting": {"nginx": {"ingress": "web"}}}
    assert handlers._routing("ns", "chat", spec) == [
        ("Service", "ns", "chat-web"), ("Ingress", "ns", "web"),
        ("Ingress", "ns", "web-chat-canary"),
    ]


SPLITS = [Split("api", "chat-api-blue", "chat-api-green", 0)]


def test_routers_read_what_was_watched_without_asking_the_api_server() -> None:
    api = _unreachable()
    route = {"metadata": {"name": "chat"}, "spec": {"rules": [{"backendRefs": [
        {"name": "chat-api-blue", "weight": 90}, {"name": "chat-api-green", "weight": 10}]}]}}
    seen = watched.Seen(objects={
        ("HTTPRoute", "ns", "chat"): route,
        ("Service", "ns", "chat-api"): {"spec": {"selector": {"chatops.dev/color": "green"}}},
    })
    assert GatewayAPIRouter(api, "chat", seen).get_weights("ns", "chat", SPLITS) == {
        "api": {"chat-api-blue": 90, "chat-api-green": 10}}
    assert ServiceRouter(api, seen).get_weights("ns", "chat", SPLITS) == {
        "api": {"chat-api-blue": 0, "chat-api-green": 100}}


def test_what_the_watches_missed_is_read_from_the_api_server() -> None:
    with pytest.raises(urllib3.exceptions.HTTPError):  # it asked: nobody listens there
        NginxRouter(_unreachable(), "web", {}, watched.Seen()).get_weights("ns", "chat", SPLITS)


def test_a_write_makes_the_look_read_the_object_afresh() -> None:
    seen = watched.Seen(objects={("HTTPRoute", "ns", "chat"): {"spec": {}}})
    seen.forget("HTTPRoute", "ns", "chat")
    assert seen.get("HTTPRoute", "ns", "chat") is None
