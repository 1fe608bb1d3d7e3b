"""The ends of a ChatRelease against the real cluster (issue 8): deleted mid-canary
(case 2), a namespace deleted while no operator ran (case 3), NGINX canary Ingresses of
two releases behind one stable Ingress (case 7), a rolling rollback without ReplicaSet
history (case 8), a version superseded mid-canary (case 9)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import backups
import releases as rel
from support import GROUP, VERSION, kubectl, start_operator, stop_operator, wait_for

pytestmark = pytest.mark.e2e

ROUTE_HELD_AT_25 = {
    "canary": {
        "steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}],
        "scaleDownDelaySeconds": 2,
        "abortScaleDownDelaySeconds": 2,
    }
}
"""A canary that stops at 25 % until promoted: the moment a deletion must not hurt."""


def _events(core: client.CoreV1Api, namespace: str) -> list[tuple[str, str]]:
    items = core.list_namespaced_event(
        namespace, field_selector="involvedObject.kind=ChatRelease"
    ).items
    return [(e.reason, e.message) for e in items]


def _at_25(custom: client.CustomObjectsApi, namespace: str, name: str = "chat") -> None:
    wait_for(
        lambda: (
            (s := rel.status(custom, namespace, name)).get("canaryWeight") == 25
            and s.get("phase") == "Paused"
        ),
        timeout=120,
        what=f"{name} paused at 25 %",
    )


def _gone(custom: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    try:
        rel.get(custom, namespace, name)
    except client.ApiException as err:
        return err.status == 404
    return False


def _deployments(api: client.ApiClient, namespace: str) -> dict[str, client.V1Deployment]:
    items = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    return {d.metadata.name: d for d in items}


def _services(api: client.ApiClient, namespace: str) -> set[str]:
    return {s.metadata.name for s in client.CoreV1Api(api).list_namespaced_service(namespace).items}


def _canary_release(
    api: client.ApiClient, custom: client.CustomObjectsApi, namespace: str, **extra: Any
) -> None:
    """chat 1.0 live on blue, then 1.1 held at 25 % on green, on a Gateway API route."""
    rel.http_route(api, namespace)
    for color in ("blue", "green"):
        rel.traffic(namespace, "chat", color)
    spec = rel.release_spec("1.0", ROUTE_HELD_AT_25, {"gatewayAPI": {"httpRoute": "chat"}}, **extra)
    rel.create(custom, namespace, "chat", spec)
    rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)
    rel.set_version(custom, namespace, "chat", "1.1")
    _at_25(custom, namespace)
    wait_for(  # the status is written before the action it announces
        lambda: rel.route_weights(api, namespace)["chat-api-green"] == 25,
        timeout=30,
        what="the route at 25 %",
    )


@pytest.mark.parametrize("cascade", ["background", "foreground"])
def test_deleting_a_release_at_25_percent_keeps_the_live_version_serving(
    cascade: str,
    operator: Path,
    api: client.ApiClient,
    namespace: str,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
) -> None:
    """Case 2: `kubectl delete crel` mid-canary moves traffic back to the stable color,
    removes the canary, and releases the stable version, which keeps serving; a
    ChatRelease created again adopts it. Also under a foreground deletion (Argo CD's
    default prune), where the garbage collector deletes every dependent at once."""
    _canary_release(api, custom, namespace)

    kubectl("delete", "crel", "chat", "-n", namespace, "--wait=false", f"--cascade={cascade}")
    wait_for(lambda: _gone(custom, namespace, "chat"), timeout=60, what="the ChatRelease gone")

    weights = rel.route_weights(api, namespace)
    assert weights == {
        "chat-api-blue": 100,
        "chat-api-green": 0,
        "chat-web-blue": 100,
        "chat-web-green": 0,
    }
    wait_for(
        lambda: not {"chat-api-green", "chat-web-green"} & set(_deployments(api, namespace)),
        timeout=60,
        what="the canary color's Deployments deleted",
    )
    # Nothing the route names is missing: every backendRef's Service still exists.
    assert set(weights) <= _services(api, namespace)
    deployments = _deployments(api, namespace)
    for component in rel.COMPONENTS:
        live = deployments[f"chat-{component}-blue"]
        assert live.spec.replicas == 2 and (live.status.available_replicas or 0) == 2
        assert live.spec.template.spec.containers[0].image == f"chat-{component}:1.0"
        assert (live.metadata.labels or {}).get("chatops.dev/released-from") == "chat"
        assert not live.metadata.owner_references
        assert rel.selector_color(api, namespace, component) == "blue"
    assert any(r == "Deleted" and "kept serving" in m for r, m in _events(core, namespace))

    # The same name again: it adopts the live version where it serves.
    rel.create(
        custom,
        namespace,
        "chat",
        rel.release_spec("1.0", ROUTE_HELD_AT_25, {"gatewayAPI": {"httpRoute": "chat"}}),
    )
    adopted = rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)
    assert adopted["activeColor"] == "blue"
    live = client.AppsV1Api(api).read_namespaced_deployment("chat-api-blue", namespace)
    assert "chatops.dev/released-from" not in (live.metadata.labels or {})


def test_deletion_policy_delete_removes_every_object_of_the_release(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Case 2: with `deletionPolicy: Delete` the Deployments and Services go too."""
    _canary_release(api, custom, namespace, deletionPolicy="Delete")
    kubectl("delete", "crel", "chat", "-n", namespace, "--wait=false")
    wait_for(lambda: _gone(custom, namespace, "chat"), timeout=60, what="the ChatRelease gone")
    wait_for(
        lambda: (
            not _deployments(api, namespace)
            and not {s for s in _services(api, namespace) if s.startswith("chat-")}
        ),
        timeout=60,
        what="every Deployment and Service of the release deleted",
    )


def test_a_version_superseded_mid_canary_is_in_history_and_an_event(
    operator: Path,
    api: client.ApiClient,
    namespace: str,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
) -> None:
    """Case 9: 1.2 replaces 1.1 at 25 %: 1.1 gets a `Superseded` history entry and a
    Normal Event naming both versions."""
    _canary_release(api, custom, namespace)
    superseded = rel.status(custom, namespace, "chat")["canaryRevision"]
    rel.set_version(custom, namespace, "chat", "1.2")
    entry = wait_for(
        lambda: next(
            (
                h
                for h in rel.status(custom, namespace, "chat").get("history", [])
                if h["result"] == "Superseded"
            ),
            None,
        ),
        timeout=30,
        what="a Superseded history entry",
    )
    assert entry["revision"] == superseded
    assert "chat-api:1.1,chat-web:1.1 superseded by chat-api:1.2,chat-web:1.2" in entry["message"]
    wait_for(
        lambda: any(
            r == "Superseded" and "chat-api:1.1,chat-web:1.1" in m and "chat-api:1.2" in m
            for r, m in _events(core, namespace)
        ),
        timeout=30,
        what="a Superseded Event naming both versions",
    )


# -- case 7: NGINX canary Ingresses --------------------------------------------------------


def _shared_stable_ingress(api: client.ApiClient, namespace: str) -> None:
    """One stable Ingress routing two releases' components (`chat` and `chat2`)."""
    paths = [
        {
            "path": path,
            "pathType": "Prefix",
            "backend": {"service": {"name": f"{release}-{component}", "port": {"number": 8080}}},
        }
        for release, prefix in (("chat", "/one"), ("chat2", "/two"))
        for component, path in (("api", f"{prefix}/api"), ("web", prefix))
    ]
    client.NetworkingV1Api(api).create_namespaced_ingress(
        namespace,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "public"},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": "chat.example.com", "http": {"paths": paths}}],
            },
        },
    )


def _ingresses(api: client.ApiClient, namespace: str) -> dict[str, client.V1Ingress]:
    items = client.NetworkingV1Api(api).list_namespaced_ingress(namespace).items
    return {i.metadata.name: i for i in items}


def test_two_releases_behind_one_ingress_have_their_own_canary_ingress(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Case 7: each release generates its own canary Ingress, controlled by its
    ChatRelease; deleting one release removes its canary and leaves the other's."""
    _shared_stable_ingress(api, namespace)
    routing = {"nginx": {"ingress": "public"}}
    for name in ("chat", "chat2"):
        for color in ("blue", "green"):
            rel.traffic(namespace, name, color)
        rel.create(custom, namespace, name, rel.release_spec("1.0", ROUTE_HELD_AT_25, routing))
    for name in ("chat", "chat2"):
        rel.wait_phase(custom, namespace, name, "Succeeded", timeout=90)
        rel.set_version(custom, namespace, name, "1.1")
    for name in ("chat", "chat2"):
        _at_25(custom, namespace, name)

    found = wait_for(
        lambda: (
            {"public-chat-canary", "public-chat2-canary"} <= set(i := _ingresses(api, namespace))
            and i
        ),
        timeout=30,
        what="a canary Ingress per release",
    )
    for name in ("chat", "chat2"):
        canary = found[f"public-{name}-canary"]
        owner = canary.metadata.owner_references
        assert [(o.kind, o.name, o.controller) for o in owner] == [("ChatRelease", name, True)]
        assert owner[0].uid == rel.get(custom, namespace, name)["metadata"]["uid"]
        assert canary.metadata.annotations["nginx.ingress.kubernetes.io/canary-weight"] == "25"
        services = {p.backend.service.name for p in canary.spec.rules[0].http.paths}
        assert services == {f"{name}-api-green", f"{name}-web-green"}

    kubectl("delete", "crel", "chat", "-n", namespace, "--wait=false")
    wait_for(lambda: _gone(custom, namespace, "chat"), timeout=60, what="chat deleted")
    wait_for(
        lambda: "public-chat-canary" not in _ingresses(api, namespace),
        timeout=30,
        what="chat's canary Ingress removed",
    )
    left = _ingresses(api, namespace)
    assert set(left) == {"public", "public-chat2-canary"}
    other = left["public-chat2-canary"]
    assert other.metadata.annotations["nginx.ingress.kubernetes.io/canary-weight"] == "25"
    assert rel.status(custom, namespace, "chat2")["phase"] == "Paused"


# -- case 8: a rolling rollback without ReplicaSet history -------------------------------


def test_a_rolling_rollback_needs_no_replica_set_history(
    operator: Path, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Case 8: the old ReplicaSets are gone (as `revisionHistoryLimit` prunes them) when
    a rolling update fails: the Deployments still go back to the stable template, and
    RolledBack is said only once they show it."""
    strategy = {"rolling": {"maxSurge": 1, "maxUnavailable": 0, "analysisWindow": "90s"}}
    for color in ("blue", "green"):
        rel.traffic(namespace, "chat", color)
    rel.create(custom, namespace, "chat", rel.release_spec("1.0", strategy))
    stable = rel.wait_phase(custom, namespace, "chat", "Succeeded", timeout=90)["stableRevision"]
    apps = client.AppsV1Api(api)
    rel.set_version(custom, namespace, "chat", "1.1")

    def rolled_out() -> bool:
        for c in rel.COMPONENTS:
            d = apps.read_namespaced_deployment(f"chat-{c}-blue", namespace)
            if d.spec.template.spec.containers[0].image != f"chat-{c}:1.1":
                return False
            if (d.status.updated_replicas or 0) < 2 or (d.status.replicas or 0) != 2:
                return False
        return True

    wait_for(rolled_out, timeout=90, what="1.1 rolled out in place")
    old = apps.list_namespaced_replica_set(
        namespace, label_selector=f"chatops.dev/revision={stable}"
    ).items
    assert old, "the stable version's ReplicaSets exist before they are pruned"
    for rs in old:
        apps.delete_namespaced_replica_set(rs.metadata.name, namespace)
    wait_for(
        lambda: (
            not apps.list_namespaced_replica_set(
                namespace, label_selector=f"chatops.dev/revision={stable}"
            ).items
        ),
        timeout=30,
        what="the stable version's ReplicaSets gone",
    )

    rel.play(namespace, "1.1", errorRate=0.05)  # 1.1 fails its analysis
    seen: list[str] = []

    def rolled_back() -> dict[str, Any] | None:
        s = rel.status(custom, namespace, "chat")
        seen.append(s.get("phase", ""))
        if s.get("phase") != "RolledBack":
            return None
        images = {
            apps.read_namespaced_deployment(f"chat-{c}-blue", namespace)
            .spec.template.spec.containers[0]
            .image
            for c in rel.COMPONENTS
        }
        # Status may say RolledBack only when the Deployments already show it.
        assert images == {"chat-api:1.0", "chat-web:1.0"}, (images, s.get("message"))
        return s

    done = wait_for(rolled_back, timeout=120, interval=0.2, what="rolled back to 1.0")
    assert "error-rate" in done["message"]
    for c in rel.COMPONENTS:
        d = apps.read_namespaced_deployment(f"chat-{c}-blue", namespace)
        assert d.spec.template.metadata.labels["chatops.dev/revision"] == stable
        assert (d.status.available_replicas or 0) == 2


# -- case 3: a namespace deleted while no operator ran -----------------------------------


@pytest.fixture
def doomed(api: client.ApiClient) -> Iterator[str]:
    """A namespace the test deletes itself (the `namespace` fixture's would be deleted
    by its own teardown)."""
    name = f"e2e-doomed-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ),
        timeout=30,
        what="default ServiceAccount",
    )
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException as err:
        if err.status != 404:
            raise


@pytest.mark.parametrize(
    "watching", [pytest.param("clusterwide", marks=pytest.mark.serial), "namespaced"]
)
def test_a_namespace_deleted_while_no_operator_ran_is_released_by_the_next_one(
    watching: str,
    crds: None,
    api: client.ApiClient,
    doomed: str,
    custom: client.CustomObjectsApi,
    tmp_path: Path,
) -> None:
    """Case 3: ChatReleases and ChatBackups carry finalizers; their namespace is deleted
    while no operator runs; the operator started afterwards finishes every finalizer in
    the terminating namespace (where nothing can be created), and the namespace goes —
    also an operator watching named namespaces (the chart's `watchNamespaces`), which
    kopf's namespace discovery used to leave out while they were being deleted."""
    core = client.CoreV1Api(api)
    port = backups.free_port()
    scope = [doomed] if watching == "namespaced" else []
    first = start_operator(tmp_path / "operator.log", port, scope)
    try:
        rel.traffic(doomed, "chat", "blue")
        spec = rel.release_spec("1.0", {"blueGreen": {"scaleDownDelaySeconds": 1}})
        rel.create(custom, doomed, "chat", spec)
        rel.wait_phase(custom, doomed, "chat", "Succeeded", timeout=90)
        endpoint = os.environ["S3_ENDPOINT_URL"]
        backups.create_secrets(core, doomed, backups.uri_with_password(os.environ["MONGODB_URI"]))
        backups.create(
            custom,
            doomed,
            "chatbackups",
            "ChatBackup",
            "nightly",
            backups.backup_spec(
                endpoint,
                backups.new_bucket(endpoint),
                "chat",
                schedule="0 3 * * *",
                deletionPolicy="Delete",
            ),
        )

        def finalizers() -> list[str]:
            return [
                f
                for plural, name in (("chatreleases", "chat"), ("chatbackups", "nightly"))
                for f in custom.get_namespaced_custom_object(GROUP, VERSION, doomed, plural, name)[
                    "metadata"
                ].get("finalizers", [])
            ]

        wait_for(lambda: len(finalizers()) == 2, timeout=60, what="both finalizers set")
    finally:
        stop_operator(first)

    core.delete_namespace(doomed)
    wait_for(
        lambda: rel.get(custom, doomed, "chat")["metadata"].get("deletionTimestamp"),
        timeout=60,
        what="the namespace controller deleting the ChatRelease",
    )
    assert finalizers(), "nothing finished them while no operator ran"

    second = start_operator(tmp_path / "operator.log", port, scope)
    try:

        def namespace_gone() -> bool:
            try:
                core.read_namespace(doomed)
            except client.ApiException as err:
                return err.status == 404
            return False

        wait_for(namespace_gone, timeout=120, what=f"namespace {doomed} gone")
    finally:
        stop_operator(second)


def test_a_deletion_made_while_no_operator_ran_is_finished_by_the_next_one(
    crds: None,
    api: client.ApiClient,
    namespace: str,
    custom: client.CustomObjectsApi,
    tmp_path: Path,
) -> None:
    """Case 2, restartable: the ChatRelease is deleted mid-canary while the operator is
    down; the finalizer holds it, and the next operator moves traffic back and releases
    the live version as if it had been there."""
    port = backups.free_port()
    first = start_operator(tmp_path / "operator.log", port, [namespace])
    try:
        _canary_release(api, custom, namespace)
    finally:
        stop_operator(first)
    kubectl("delete", "crel", "chat", "-n", namespace, "--wait=false")
    assert rel.get(custom, namespace, "chat")["metadata"].get("deletionTimestamp")
    assert rel.route_weights(api, namespace)["chat-api-green"] == 25  # nobody acted yet
    second = start_operator(tmp_path / "operator.log", port, [namespace])
    try:
        wait_for(lambda: _gone(custom, namespace, "chat"), timeout=60, what="the ChatRelease gone")
    finally:
        stop_operator(second)
    assert rel.route_weights(api, namespace) == {
        "chat-api-blue": 100,
        "chat-api-green": 0,
        "chat-web-blue": 100,
        "chat-web-green": 0,
    }
    live = _deployments(api, namespace)["chat-api-blue"]
    assert (live.metadata.labels or {}).get("chatops.dev/released-from") == "chat"
    assert live.spec.replicas == 2
