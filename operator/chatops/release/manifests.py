"""The objects a ChatRelease owns, as manifests: per component a Deployment and a
Service per color, and the stable Service; the smoke-test Job. Pure: the handler applies
them (server-side apply) and they are owned by the ChatRelease, so deleting it deletes
them."""

from __future__ import annotations

import copy
from typing import Any

from chatops.annotations import REVISION
from chatops.api.release import ChatReleaseSpec, Component
from chatops.traffic.router import (
    COLOR_LABEL,
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    stable_service_name,
)

Manifest = dict[str, Any]


def owner(release: dict[str, Any]) -> dict[str, Any]:
    """The ownerReference to the ChatRelease `release` (its body)."""
    meta = release["metadata"]
    return {
        "apiVersion": release["apiVersion"],
        "kind": release["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def deployment_name(release: str, component: str, color: str) -> str:
    return f"{release}-{component}-{color}"


def selector(release: str, component: str, color: str | None = None) -> dict[str, str]:
    labels = {INSTANCE_LABEL: release, COMPONENT_LABEL: component}
    if color is not None:
        labels[COLOR_LABEL] = color
    return labels


def _meta(name: str, namespace: str, release: dict[str, Any], labels: dict[str, str]) -> Manifest:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {**labels, MANAGED_BY_LABEL: MANAGED_BY},
        "ownerReferences": [owner(release)],
    }


def deployment(
    release: dict[str, Any],
    spec: ChatReleaseSpec,
    component: Component,
    color: str,
    revision: str,
    replicas: int,
) -> Manifest:
    """`<release>-<component>-<color>` running the component's template at `revision`."""
    name, namespace = release["metadata"]["name"], release["metadata"]["namespace"]
    labels = selector(name, component.name, color)
    template = copy.deepcopy(component.template.wire())
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**metadata.get("labels", {}), **labels, REVISION: revision}
    body: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **_meta(deployment_name(name, component.name, color), namespace, release, labels),
            "annotations": {REVISION: revision},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": template,
            "progressDeadlineSeconds": spec.progress_deadline_seconds,
        },
    }
    if spec.strategy.rolling is not None:
        body["spec"]["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": spec.strategy.rolling.max_surge,
                "maxUnavailable": spec.strategy.rolling.max_unavailable,
            },
        }
    return body


def scale(replicas: int) -> Manifest:
    return {"spec": {"replicas": replicas}}


def service(
    release: dict[str, Any], component: Component, color: str, stable: bool = False
) -> Manifest:
    """The color Service `<release>-<component>-<color>`, or with `stable` the Service
    `<release>-<component>` selecting `color` (the active one)."""
    name, namespace = release["metadata"]["name"], release["metadata"]["namespace"]
    service_name = (
        stable_service_name(name, component.name)
        if stable
        else deployment_name(name, component.name, color)
    )
    port = component.service
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(service_name, namespace, release, selector(name, component.name)),
        "spec": {
            "selector": selector(name, component.name, color),
            "ports": [
                {
                    "name": "http",
                    "port": port.port,
                    "targetPort": port.target_port or port.port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def smoke_job(
    release: dict[str, Any], spec: ChatReleaseSpec, job: str, color: str, revision: str
) -> Manifest:
    """The smoke-test Job: the user's pod template, told where the new version is through
    `CHATOPS_*` environment variables, run once, failed after its timeout."""
    assert spec.smoke_test is not None
    name, namespace = release["metadata"]["name"], release["metadata"]["namespace"]
    template = copy.deepcopy(spec.smoke_test.template.wire())
    env = [
        {"name": "CHATOPS_RELEASE", "value": name},
        {"name": "CHATOPS_NAMESPACE", "value": namespace},
        {"name": "CHATOPS_COLOR", "value": color},
        {"name": "CHATOPS_REVISION", "value": revision},
        *(
            {
                "name": f"CHATOPS_{c.name.upper().replace('-', '_')}_URL",
                "value": f"http://{deployment_name(name, c.name, color)}.{namespace}.svc:"
                f"{c.service.port}",
            }
            for c in spec.components
        ),
    ]
    for container in template["spec"]["containers"]:
        container["env"] = [*container.get("env", []), *env]
    template["spec"].setdefault("restartPolicy", "Never")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(job, namespace, release, {INSTANCE_LABEL: name, REVISION: revision}),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.smoke_test.timeout_seconds,
            "template": template,
        },
    }
