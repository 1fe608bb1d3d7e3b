"""The Deployments a ChatRelease owns carry the whole pod template the user wrote."""

from __future__ import annotations

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
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_a_change_outside_the_image_is_a_new_version() -> None:
    changed = {**TEMPLATE, "spec": {**TEMPLATE["spec"], "nodeSelector": {"pool": "other"}}}  # type: ignore[dict-item]
    assert revision(_spec(TEMPLATE)) != revision(_spec(changed))
