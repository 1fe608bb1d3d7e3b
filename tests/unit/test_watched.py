"""A look served from the watches: what it takes from them, and when it asks the API
server instead (a copy that may not show the look's own last write, a miss)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import urllib3
from kubernetes import client

from chatops.adapters import watched
from chatops.adapters.kube import Cluster
from chatops.api.analysis import Analysis, Measurement
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus
from chatops.handlers import watched as handlers
from chatops.metrics import sweep as sweeps
from chatops.release import execute, manifests, observe, probes
from chatops.release.model import ApplyServices, Decision, Observation
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


def test_an_nginx_release_reads_its_stable_and_canary_ingress_and_its_services() -> None:
    spec = {"components": [{"name": "web"}], "trafficRouting": {"nginx": {"ingress": "web"}}}
    assert handlers._routing("ns", "chat", spec) == [
        ("Ingress", "ns", "web"), ("Ingress", "ns", "web-chat-canary"),
    ]
    assert handlers._services("ns", "chat", spec) == [
        ("Service", "ns", "chat-web"), ("Service", "ns", "chat-web-blue"),
        ("Service", "ns", "chat-web-green"),
    ]


def test_an_object_the_looks_wrote_is_taken_only_at_the_version_they_left_it() -> None:
    objects = {("Service", "ns", "a"): {"metadata": {"resourceVersion": "7"}},
               ("Service", "ns", "b"): {"metadata": {"resourceVersion": "9"}},
               ("Service", "ns", "c"): {"metadata": {"resourceVersion": "3"}}}
    wrote = {("Service", "ns", "a"): "9", ("Service", "ns", "b"): "9"}
    seen = watched.snapshot(None, [], objects, wrote)
    assert set(seen.objects) == {("Service", "ns", "b"), ("Service", "ns", "c")}


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


# -- Services: an apply the watch shows done is not sent ----------------------------------

RELEASE = {"metadata": {"name": "chat", "namespace": "ns", "uid": "u-1"}}
SPEC = ChatReleaseSpec.model_validate({
    "components": [{"name": "api", "template": {"spec": {"containers": [
        {"name": "api", "image": "chat-api:1.0"}]}}, "service": {"port": 8080}}],
    "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
    "trafficRouting": {"gatewayAPI": {"httpRoute": "chat"}},
})


def _as_served(manifest: dict[str, Any], version: str) -> dict[str, Any]:
    """A Service as the API server answers for `manifest`: with what it fills in."""
    served = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": version,
                                        "uid": "s-1", "managedFields": [{}]}}
    served["spec"] = {**manifest["spec"], "clusterIP": "10.96.0.7", "type": "ClusterIP",
                      "sessionAffinity": "None", "ipFamilies": ["IPv4"]}
    return served


def _services_seen(active: str = "blue") -> watched.Seen:
    component = SPEC.components[0]
    wanted = [*(manifests.service(RELEASE, component, c) for c in ("blue", "green")),
              manifests.service(RELEASE, component, active, stable=True)]
    return watched.Seen(objects={
        ("Service", "ns", m["metadata"]["name"]): watched.service_essence(_as_served(m, "4"))
        for m in wanted
    })


def _apply_services(seen: watched.Seen, active: str) -> None:
    obs = Observation(name="chat", namespace="ns", generation=1, spec=SPEC,
                      status=ChatReleaseStatus(), now=datetime.datetime.now(datetime.UTC))
    decision = Decision(status=ChatReleaseStatus(), actions=(ApplyServices(active),))
    execute.act(Cluster(_unreachable()), GatewayAPIRouter(_unreachable(), "chat", seen),
                RELEASE, obs, decision, seen)


def test_services_the_watch_shows_as_wanted_are_not_applied_again() -> None:
    _apply_services(_services_seen("blue"), "blue")  # no request: nobody listens there


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda s: s["spec"].update(selector={"x": "y"}), id="selector"),
        pytest.param(lambda s: s["spec"]["ports"][0].update(port=9090), id="port"),
        pytest.param(lambda s: s["metadata"]["labels"].clear(), id="labels"),
    ],
)
def test_a_service_that_differs_from_the_wanted_one_is_applied(change: Any) -> None:
    seen = _services_seen("blue")
    change(seen.objects[("Service", "ns", "chat-api-green")])
    with pytest.raises(urllib3.exceptions.HTTPError):  # it applied: nobody listens there
        _apply_services(seen, "blue")
    assert ("Service", "ns", "chat-api-green") not in seen.objects


def test_the_stable_service_moving_to_the_other_color_is_applied() -> None:
    with pytest.raises(urllib3.exceptions.HTTPError):
        _apply_services(_services_seen("blue"), "green")


# -- the sweep's Prometheus: its token read once a round, not once a look -----------------


def _analysed(secret: str, measured: bool) -> Observation:
    spec = SPEC.model_copy(update={"analysis": Analysis.model_validate({
        "prometheus": {"address": "http://prometheus:9090",
                       "authSecretRef": {"name": secret, "key": "token"}},
        "metrics": [{"name": "errors", "query": "sum(errors)", "max": 0.01}],
    })})
    taken = (Measurement(metric="errors", component="api", query="sum(errors)", value="0",
                         verdict="Pass",
                         time="2026-12-07T12:00:00Z"),) if measured else ()
    return Observation(name="chat", namespace="ns", generation=1, spec=spec,
                       status=ChatReleaseStatus(), now=datetime.datetime.now(datetime.UTC),
                       measurements=taken)


def test_the_sweep_keeps_its_prometheus_between_rounds_and_reads_the_token_again_at_one() -> None:
    cluster = Cluster(_unreachable())  # a Secret read would fail: nobody listens there
    with pytest.raises(urllib3.exceptions.HTTPError):
        probes.watched(cluster, _analysed("prom", measured=False), "green")  # first: read
    before = sweeps.Watched(("ns", "chat"), ("http://prometheus:9090", "d"), None,  # type: ignore[arg-type]
                            _analysed("prom", False).spec.analysis, ())  # type: ignore[arg-type]
    again = probes.watched(cluster, _analysed("prom", measured=False), "green", before)
    assert again is not None and again.source == before.source  # no request
    with pytest.raises(urllib3.exceptions.HTTPError):  # a round was taken: read again
        probes.watched(cluster, _analysed("prom", measured=True), "green", before)
    with pytest.raises(urllib3.exceptions.HTTPError):  # another Secret named: read it
        probes.watched(cluster, _analysed("other", measured=False), "green", before)
