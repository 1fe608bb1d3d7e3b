"""The CRDs against the real API server: install, round-trip with defaults, refuse bad
objects with a message naming the field; and a Deployment really rolls out on kwok."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from chatops.adapters.kube import Cluster
from chatops.annotations import REVISION
from chatops.api.release import ChatReleaseSpec
from chatops.release import manifests
from support import GROUP, VERSION, kubectl, wait_for

pytestmark = pytest.mark.e2e

COMPONENT = {
    "name": "api",
    "replicas": 2,
    "template": {"spec": {"containers": [{"name": "api", "image": "chat-api:1.0"}]}},
    "service": {"port": 8080},
}
RELEASE = {
    "components": [COMPONENT],
    "strategy": {"canary": {}},
    "trafficRouting": {"gatewayAPI": {"httpRoute": "chat"}},
    "analysis": {},
}
BACKUP = {
    "schedule": "0 3 * * *",
    "mongodb": {"uriSecretRef": {"name": "mongo"}},
    "storage": {"s3": {"bucket": "chat-backups", "prefix": "nightly/"}},
}
RECOVERY = {"source": {"backupRef": {"name": "nightly"}}, "quiesce": {"deployments": ["chat-api"]}}
PLURALS = {
    "ChatRelease": "chatreleases",
    "ChatBackup": "chatbackups",
    "ChatRecovery": "chatrecoveries",
}


def body(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def create(
    custom: client.CustomObjectsApi,
    namespace: str,
    kind: str,
    spec: dict[str, Any],
    name: str = "x",
) -> dict[str, Any]:
    return custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[kind], body(kind, name, spec)
    )


def test_crds_install_and_kubectl_shows_them(
    crds: None, namespace: str, custom: client.CustomObjectsApi
) -> None:
    create(custom, namespace, "ChatRelease", RELEASE, "chat")
    listing = kubectl("get", "crel,cbak,crec", "-A").stdout
    assert "chatrelease.chatops.dev/chat" in listing
    headers = kubectl("get", "crel", "-n", namespace).stdout.splitlines()[0].split()
    assert headers == ["NAME", "PHASE", "STEP", "WEIGHT", "STABLE", "CANARY", "AGE"]
    assert kubectl("get", "chatops", "-n", namespace).stdout.count("chat") >= 1
    explain = kubectl("explain", "chatrelease.spec.strategy").stdout
    words = " ".join(explain.split())
    assert "DESCRIPTION: Exactly one of blueGreen, canary, rolling." in words
    assert "Canary: weights in steps, analysed at every pause." in words
    assert "canary" in explain and "blueGreen" in explain


def test_a_deployment_becomes_available_on_fake_nodes(
    api: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(api)
    labels = {"app": "chat-api"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="chat-api"),
            spec=client.V1DeploymentSpec(
                replicas=3,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="api", image="chat-api:1.0")]
                    ),
                ),
            ),
        ),
    )

    def available() -> bool:
        d = apps.read_namespaced_deployment("chat-api", namespace)
        conditions = {c.type: c.status for c in d.status.conditions or []}
        return conditions.get("Available") == "True" and d.status.ready_replicas == 3

    wait_for(available, timeout=90, what="Deployment chat-api Available with 3 ready pods")
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=chat-api").items
    assert len(pods) == 3 and all(p.status.phase == "Running" and p.spec.node_name for p in pods)


@pytest.mark.parametrize(
    ("kind", "spec", "defaults"),
    [
        (
            "ChatRelease",
            RELEASE,
            {
                ("strategy", "canary", "steps"): [
                    {"setWeight": 10},
                    {"pause": {"duration": "5m"}},
                    {"setWeight": 25},
                    {"pause": {"duration": "5m"}},
                    {"setWeight": 50},
                    {"pause": {"duration": "5m"}},
                    {"setWeight": 100},
                ],
                ("progressDeadlineSeconds",): 600,
                ("analysis", "interval"): "30s",
                ("analysis", "consecutiveErrorLimit"): 4,
                ("components", 0, "template", "spec", "containers", 0, "image"): "chat-api:1.0",
            },
        ),
        (
            "ChatBackup",
            BACKUP,
            {
                ("retention", "keepLast"): 30,
                ("mongodb", "uriSecretRef", "key"): "uri",
                ("mongodb", "readPreference"): "secondaryPreferred",
                ("storage", "s3", "region"): "us-east-1",
                ("deletionPolicy",): "Retain",
                ("concurrencyPolicy",): "Forbid",
            },
        ),
        (
            "ChatRecovery",
            RECOVERY,
            {
                ("source", "backupRef", "id"): "latest",
                ("mode",): "DropCollections",
                ("verify",): True,
                ("quiesce", "deployments"): ["chat-api"],
                ("postRestore", "timeoutSeconds"): 300,
            },
        ),
    ],
    ids=["ChatRelease", "ChatBackup", "ChatRecovery"],
)
def test_each_kind_round_trips_with_defaults(
    crds: None,
    namespace: str,
    custom: client.CustomObjectsApi,
    kind: str,
    spec: dict[str, Any],
    defaults: dict[tuple[Any, ...], Any],
) -> None:
    create(custom, namespace, kind, spec)
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], "x")
    for path, expected in defaults.items():
        value: Any = stored["spec"]
        for key in path:
            value = value[key]
        assert value == expected, f"{kind} spec.{'.'.join(map(str, path))}"


def _with(spec: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    node: Any = spec
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return spec


_DELETE = object()


@pytest.mark.parametrize(
    ("kind", "spec", "field", "words"),
    [
        (
            "ChatRelease",
            _with(RELEASE, ("strategy",), {"canary": {}, "rolling": {}}),
            "spec.strategy",
            "exactly one of strategy.blueGreen",
        ),
        (
            "ChatRelease",
            _with(RELEASE, ("strategy", "canary", "steps"), [{"setWeight": 50}, {"setWeight": 25}]),
            "spec.strategy.canary.steps",
            "must increase strictly",
        ),
        (
            "ChatRelease",
            _with(RELEASE, ("strategy", "canary", "steps"), [{"setWeight": 150}]),
            "spec.strategy.canary.steps[0].setWeight",
            "less than or equal to 100",
        ),
        (
            "ChatRelease",
            _with(
                RELEASE,
                ("analysis", "metrics"),
                [{"name": "errors", "query": "up", "min": 2, "max": 1}],
            ),
            "spec.analysis.metrics[0]",
            "min must not be greater than max",
        ),
        (
            "ChatRelease",
            _with(RELEASE, ("trafficRouting",), _DELETE),
            "spec",
            "strategy.canary needs trafficRouting",
        ),
        (
            "ChatRelease",
            _with(RELEASE, ("components", 0, "template", "spec", "containers"), []),
            "spec.components[0].template.spec.containers",
            "should have at least 1 items",
        ),
        (
            "ChatBackup",
            _with(BACKUP, ("schedule",), "0 25 * * *"),
            "spec.schedule",
            "cron expression",
        ),
        (
            "ChatBackup",
            _with(BACKUP, ("retention",), {"keepLast": 0}),
            "spec.retention.keepLast",
            "greater than or equal to 1",
        ),
        (
            "ChatBackup",
            _with(BACKUP, ("storage", "s3", "kmsKeyId"), "key-1"),
            "spec.storage.s3",
            "kmsKeyId needs serverSideEncryption",
        ),
        (
            "ChatRecovery",
            _with(RECOVERY, ("source", "s3"), {"bucket": "b-1", "key": "x.tar.gz"}),
            "spec.source",
            "exactly one of source.backupRef or source.s3",
        ),
        ("ChatRecovery", _with(RECOVERY, ("mode",), "Overwrite"), "spec.mode", "Unsupported value"),
    ],
)
def test_invalid_objects_are_refused_naming_the_field(
    crds: None,
    namespace: str,
    custom: client.CustomObjectsApi,
    kind: str,
    spec: dict[str, Any],
    field: str,
    words: str,
) -> None:
    with pytest.raises(ApiException) as refused:
        create(custom, namespace, kind, spec)
    assert refused.value.status == 422
    message = json.loads(refused.value.body)["message"]
    assert f"{field}:" in message and words in message, message
    assert (
        custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind])["items"]
        == []
    )


def test_a_recovery_cannot_be_changed_once_created(
    crds: None, namespace: str, custom: client.CustomObjectsApi
) -> None:
    create(custom, namespace, "ChatRecovery", RECOVERY)
    with pytest.raises(ApiException) as refused:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "chatrecoveries", "x", {"spec": {"mode": "Merge"}}
        )
    assert "create a new one to restore again" in json.loads(refused.value.body)["message"]


def test_kept_templates_the_release_no_longer_remembers_are_pruned(
    crds: None, api: client.ApiClient, namespace: str, custom: client.CustomObjectsApi
) -> None:
    """Each new revision's template is kept in a ControllerRevision, and those of the
    same component the release no longer remembers go, in one request; another
    component's stay."""
    release = create(custom, namespace, "ChatRelease", RELEASE, "keep")
    spec = ChatReleaseSpec.model_validate(RELEASE)
    cluster = Cluster(api)

    def keep(component: str, revision: str, remembered: set[str]) -> None:
        comp = spec.components[0].model_copy(update={"name": component})
        wanted = manifests.deployment(release, spec, comp, "blue", revision, 1)
        if cluster.keep_template(manifests.kept_template(release, wanted)):
            cluster.prune_templates(namespace, manifests.kept_selector("keep", component),
                                    remembered)

    keep("web", "w1", {"w1"})
    for n in range(1, 5):
        keep("api", f"r{n}", {f"r{n}", f"r{n - 1}"})
    keep("api", "r4", {"r4"})  # kept already: nothing else is touched
    found = client.AppsV1Api(api).list_namespaced_controller_revision(namespace).items
    assert sorted(r.metadata.labels[REVISION] for r in found) == ["r3", "r4", "w1"]
    r4 = next(r for r in found if r.metadata.labels[REVISION] == "r4")
    assert r4.data["spec"]["template"]["spec"]["containers"][0]["image"] == "chat-api:1.0"
