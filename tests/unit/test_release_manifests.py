"""The Deployments a ChatRelease owns carry the whole pod template the user wrote."""

from __future__ import annotations

from chatops import ownership
from chatops.api.release import ChatReleaseSpec
from chatops.release import manifests
from chatops.release.revision import revision

TEMPLATE = {
    "metadata": {"labels": {"team": "chat"}, "annotations": {"prometheus.io/scrape": "true"}},
    "spec": {
        "containers": [
            {
                "name": "api",
                "image": "chat-api:1.4",
                "env": [{"name": "REDIS_URL", "value": "redis://redis:6379"}],
                "ports": [{"containerPort": 8080}],
                "resources": {"requests": {"cpu": "100m"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
            }
        ],
        "nodeSelector": {"pool": "chat"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "chat"}],
        "terminationGracePeriodSeconds": 60,
    },
}
RELEASE = {
    "apiVersion": "chatops.dev/v1alpha1",
    "kind": "ChatRelease",
    "metadata": {"name": "chat", "namespace": "ns", "uid": "u-1"},
}


def _spec(template: dict[str, object]) -> ChatReleaseSpec:
    return ChatReleaseSpec.model_validate(
        {
            "components": [{"name": "api", "template": template, "service": {"port": 8080}}],
            "strategy": {"blueGreen": {}},
        }
    )


def test_every_field_of_the_template_reaches_the_deployment() -> None:
    spec = _spec(TEMPLATE)
    body = manifests.deployment(RELEASE, spec, spec.components[0], "green", "r1", 3)
    pod = body["spec"]["template"]
    assert pod["spec"]["containers"] == TEMPLATE["spec"]["containers"]  # type: ignore[index]
    for key in ("nodeSelector", "tolerations", "terminationGracePeriodSeconds"):
        assert pod["spec"][key] == TEMPLATE["spec"][key]  # type: ignore[index]
    assert pod["metadata"]["labels"]["team"] == "chat"
    assert pod["metadata"]["labels"]["chatops.dev/color"] == "green"
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert body["spec"]["replicas"] == 3
    # Live objects are not the garbage collector's: only the release's deletion handler
    # decides their end (a foreground delete would take them at once).
    assert "ownerReferences" not in body["metadata"]


def test_the_kept_template_is_the_whole_deployment_and_owned_by_the_release() -> None:
    spec = _spec(TEMPLATE)
    body = manifests.deployment(RELEASE, spec, spec.components[0], "blue", "r1", 3)
    kept = manifests.kept_template(RELEASE, body)
    assert kept["kind"] == "ControllerRevision" and kept["data"] == body
    assert kept["metadata"]["name"] == "chat-api-r1"
    assert kept["metadata"]["labels"]["chatops.dev/revision"] == "r1"
    assert [r["uid"] for r in kept["metadata"]["ownerReferences"]] == ["u-1"]


def test_released_objects_lose_only_the_releases_owner_reference() -> None:
    theirs = {"kind": "Thing", "name": "x", "uid": "u-9", "controller": False}
    meta = {
        "resourceVersion": "5",
        "ownerReferences": [{**ownership.owner(RELEASE)}, theirs],
    }
    patch = manifests.released(meta, "chat", "u-1")
    assert patch["metadata"] == {
        "labels": {"chatops.dev/released-from": "chat"},
        "ownerReferences": [theirs],
        "resourceVersion": "5",
    }
    alone = manifests.released({"resourceVersion": "6"}, "chat", "u-1")
    assert alone["metadata"]["ownerReferences"] is None  # the merge patch drops the field


def test_handing_over_to_the_garbage_collector_adds_the_reference_once() -> None:
    patch = manifests.handed_over({"resourceVersion": "5"}, RELEASE)
    assert patch is not None
    assert [r["uid"] for r in patch["metadata"]["ownerReferences"]] == ["u-1"]
    assert patch["metadata"]["ownerReferences"][0]["controller"] is True
    assert manifests.handed_over(patch["metadata"], RELEASE) is None
    other = {"kind": "X", "name": "x", "uid": "u-9", "controller": True}
    second = manifests.handed_over({"ownerReferences": [other]}, RELEASE)
    assert second is not None
    assert second["metadata"]["ownerReferences"][1]["controller"] is False


def test_a_change_outside_the_image_is_a_new_version() -> None:
    changed = {**TEMPLATE, "spec": {**TEMPLATE["spec"], "nodeSelector": {"pool": "other"}}}  # type: ignore[dict-item]
    assert revision(_spec(TEMPLATE)) != revision(_spec(changed))
