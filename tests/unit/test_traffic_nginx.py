"""The generated NGINX canary Ingress: what ingress-nginx will read from it."""

from __future__ import annotations

from typing import Any

import pytest

from chatops.errors import TrafficRoutingError
from chatops.traffic.nginx import (
    canary_ingress,
    canary_name,
    differs,
    is_ours,
    not_ours,
    observed_weights,
)
from chatops.traffic.router import Split

OWNER = {
    "apiVersion": "chatops.dev/v1alpha1",
    "kind": "ChatRelease",
    "name": "chat",
    "uid": "u-1",
    "controller": True,
    "blockOwnerDeletion": False,
}
API = Split("api", "chat-api-blue", "chat-api-green", 10)
FRONTEND = Split("frontend", "chat-frontend-blue", "chat-frontend-green", 10)


def path(prefix: str, service: str) -> dict[str, Any]:
    return {
        "path": prefix,
        "pathType": "Prefix",
        "backend": {"service": {"name": service, "port": {"number": 80}}},
    }


def stable_ingress(*paths: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "chat", "namespace": "prod", "resourceVersion": "7", **meta},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["chat.example.com"], "secretName": "chat-tls"}],
            "rules": [{"host": "chat.example.com", "http": {"paths": list(paths)}}],
        },
    }


STABLE = stable_ingress(
    path("/api", "chat-api"),
    path("/", "chat-frontend"),
    path("/docs", "docs-site"),
    labels={"app.kubernetes.io/instance": "argocd-app"},
    annotations={
        "nginx.ingress.kubernetes.io/affinity": "cookie",
        "nginx.ingress.kubernetes.io/canary": "false",
        "argocd.argoproj.io/tracking-id": "app:networking.k8s.io/Ingress:prod/chat",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    },
)


def backends(ingress: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (p["path"], p["backend"]["service"]["name"])
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    ]


def test_canary_ingress_mirrors_the_stable_one_towards_the_canary_colors() -> None:
    canary = canary_ingress(STABLE, "chat", [API, FRONTEND], OWNER)
    assert canary["metadata"]["name"] == "chat-chat-canary"
    assert canary["metadata"]["namespace"] == "prod"
    assert canary["spec"]["ingressClassName"] == "nginx"
    assert canary["spec"]["tls"] == STABLE["spec"]["tls"]
    assert canary["spec"]["rules"][0]["host"] == "chat.example.com"
    # Only the components' paths, each to the canary color; other apps are not split.
    assert backends(canary) == [("/api", "chat-api-green"), ("/", "chat-frontend-green")]
    assert canary["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "10",
        "nginx.ingress.kubernetes.io/affinity": "cookie",
    }
    # Our label, not the GitOps tool's: Argo CD must not adopt and prune it.
    assert canary["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "chatops",
        "chatops.dev/release": "chat",
    }
    # Controlled by its ChatRelease: deleting the release deletes its canary.
    assert canary["metadata"]["ownerReferences"] == [OWNER]
    assert "resourceVersion" not in canary["metadata"]
    assert backends(STABLE)[0] == ("/api", "chat-api"), "the stable Ingress is not modified"


def test_default_backend_of_a_component_follows_the_canary() -> None:
    stable = stable_ingress(path("/", "chat-frontend"))
    stable["spec"]["defaultBackend"] = {"service": {"name": "chat-api", "port": {"number": 80}}}
    canary = canary_ingress(stable, "chat", [API, FRONTEND], OWNER)
    assert canary["spec"]["defaultBackend"]["service"]["name"] == "chat-api-green"


@pytest.mark.parametrize(
    ("stable", "splits", "message"),
    [
        pytest.param(
            stable_ingress(path("/", "chat-frontend")),
            [API, FRONTEND],
            "Ingress prod/chat: routes no path to chat-api; the stable Ingress must send "
            "each component to its stable Service",
            id="a component the stable Ingress does not route",
        ),
        pytest.param(
            stable_ingress(path("/api", "chat-api-blue"), path("/", "chat-frontend")),
            [API, FRONTEND],
            "routes no path to chat-api;",
            id="routing to a color Service instead of the stable one",
        ),
        pytest.param(
            STABLE,
            [API, Split("frontend", "chat-frontend-blue", "chat-frontend-green", 25)],
            "one weight for all components; got api=10, frontend=25",
            id="components at different weights",
        ),
    ],
)
def test_a_stable_ingress_that_cannot_carry_the_canary_is_refused(
    stable: dict[str, Any], splits: list[Split], message: str
) -> None:
    with pytest.raises(TrafficRoutingError, match=message):
        canary_ingress(stable, "chat", splits, OWNER)


@pytest.mark.parametrize(
    ("annotations", "routes_to", "expected_canary"),
    [
        pytest.param(None, None, 0, id="no canary Ingress: all on stable"),
        (
            {
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "25",
            },
            "chat-api-green",
            25,
        ),
        (
            {
                "nginx.ingress.kubernetes.io/canary": "false",
                "nginx.ingress.kubernetes.io/canary-weight": "25",
            },
            "chat-api-green",
            0,
        ),
        (
            {
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "1",
                "nginx.ingress.kubernetes.io/canary-weight-total": "4",
            },
            "chat-api-green",
            25,
        ),
        (
            {
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "lots",
            },
            "chat-api-green",
            0,
        ),
        pytest.param(
            {
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "50",
            },
            "chat-api-blue",
            0,
            id="a stale canary Ingress routing to the other color",
        ),
    ],
)
def test_observed_weights_read_the_canary_annotations(
    annotations: dict[str, str] | None, routes_to: str | None, expected_canary: int
) -> None:
    canary = None
    if annotations is not None and routes_to is not None:
        canary = stable_ingress(path("/api", routes_to), annotations=annotations)
    assert observed_weights(canary, [API]) == {
        "api": {"chat-api-blue": 100 - expected_canary, "chat-api-green": expected_canary}
    }


def test_what_we_generate_reads_back_as_the_weight_we_asked_for() -> None:
    for weight in (0, 10, 25, 50, 100):
        splits = [
            Split(s.component, s.stable_service, s.canary_service, weight) for s in (API, FRONTEND)
        ]
        assert observed_weights(canary_ingress(STABLE, "chat", splits, OWNER), splits) == {
            s.component: s.wanted() for s in splits
        }


def test_a_canary_ingress_is_rewritten_only_when_it_changed() -> None:
    desired = canary_ingress(STABLE, "chat", [API, FRONTEND], OWNER)
    stored = {**desired, "metadata": {**desired["metadata"], "resourceVersion": "3", "uid": "u"}}
    assert not differs(stored, desired)
    heavier = canary_ingress(
        STABLE,
        "chat",
        [Split(s.component, s.stable_service, s.canary_service, 25) for s in (API, FRONTEND)],
        OWNER,
    )
    assert differs(stored, heavier)
    assert is_ours(stored, OWNER)
    assert not is_ours(STABLE, OWNER)
    # A copy of our labels is not ownership: only the controller reference counts.
    copied = {**stored, "metadata": {**stored["metadata"], "ownerReferences": []}}
    assert not is_ours(copied, OWNER)
    other = {**OWNER, "name": "chat-2", "uid": "u-2"}
    assert not is_ours(stored, other)
    assert "is not controlled by ChatRelease chat-2 (its controller: ChatRelease/chat)" in str(
        not_ours(stored, "chat-2")
    )


@pytest.mark.parametrize(
    ("ingress", "release", "expected"),
    [
        ("chat", "chat", "chat-chat-canary"),
        ("public", "chat-eu", "public-chat-eu-canary"),
    ],
)
def test_each_release_has_its_own_canary_ingress(ingress: str, release: str, expected: str) -> None:
    assert canary_name(ingress, release) == expected


def test_a_long_canary_name_stays_a_valid_name_and_unique() -> None:
    long_a, long_b = "a" * 200 + "x", "a" * 200 + "y"
    names = {canary_name("i" * 60, long_a), canary_name("i" * 60, long_b)}
    assert len(names) == 2 and all(len(n) <= 253 for n in names)
    stable = stable_ingress(path("/api", f"{long_a}-api"))
    split = Split("api", f"{long_a}-api-blue", f"{long_a}-api-green", 10)
    labels = canary_ingress(stable, long_a, [split], OWNER)["metadata"]["labels"]
    assert len(labels["chatops.dev/release"]) <= 63
