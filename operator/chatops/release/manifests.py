"""The objects a ChatRelease owns, as manifests: per component a Deployment and a
Service per color, and the stable Service; the smoke-test Job; the kept pod templates.
Pure: the handler applies them (server-side apply).

The Deployments and Services carry the release's labels but no ownerReference: they
serve live traffic, and the garbage collector would delete them with the ChatRelease —
at once under a foreground deletion (Argo CD's default prune), whatever finalizer waits.
Only the ChatRelease's deletion handler decides their end (`release/teardown.py`): kept
and marked `chatops.dev/released-from` (`deletionPolicy: Retain`), or handed to the
garbage collector by an ownerReference (`Delete`, and the canary color). The smoke-test
Job and the kept templates are owned by the ChatRelease: nothing serves from them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from chatops.annotations import RELEASED_FROM, REVISION
from chatops.api.release import ChatReleaseSpec, Component
from chatops.ownership import bounded, owner
from chatops.traffic.router import (
    COLOR_LABEL,
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    stable_service_name,
)

Manifest = dict[str, Any]


def deployment_name(release: str, component: str, color: str) -> str:
    return f"{release}-{component}-{color}"


def template_name(release: str, component: str, revision: str) -> str:
    """The ControllerRevision keeping `component`'s Deployment at `revision`."""
    return bounded(f"{release}-{component}-{revision}")


def owned_selector(release: str, released: bool = False) -> str:
    """The label selector of the Deployments and Services chatops made for `release`:
    those it still owns, or (`released`) those a deleted namesake left serving."""
    mark = RELEASED_FROM if released else f"!{RELEASED_FROM}"
    return f"{INSTANCE_LABEL}={release},{MANAGED_BY_LABEL}={MANAGED_BY},{mark}"


def kept_selector(release: str, component: str) -> str:
    """The label selector of `component`'s kept templates."""
    return f"{INSTANCE_LABEL}={release},{COMPONENT_LABEL}={component}"


def selector(release: str, component: str, color: str | None = None) -> dict[str, str]:
    labels = {INSTANCE_LABEL: release, COMPONENT_LABEL: component}
    if color is not None:
        labels[COLOR_LABEL] = color
    return labels


def _meta(name: str, namespace: str, labels: dict[str, str]) -> Manifest:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {**labels, MANAGED_BY_LABEL: MANAGED_BY},
    }


def _owned_meta(
    name: str, namespace: str, release: Mapping[str, Any], labels: dict[str, str]
) -> Manifest:
    return {**_meta(name, namespace, labels), "ownerReferences": [owner(release)]}


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
            **_meta(deployment_name(name, component.name, color), namespace, labels),
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
        "metadata": _meta(service_name, namespace, selector(name, component.name)),
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


def service_shown(seen: Mapping[str, Any] | None, wanted: Manifest) -> bool:
    """Whether the watched Service `seen` (`adapters.watched.service_essence`) already is
    what `service` wants: its labels, selector and ports. None (not watched): no."""
    if seen is None:
        return False
    labels = (seen.get("metadata") or {}).get("labels") or {}
    spec = seen.get("spec") or {}
    return (
        all(labels.get(k) == v for k, v in wanted["metadata"]["labels"].items())
        and spec.get("selector") == wanted["spec"]["selector"]
        and spec.get("ports") == wanted["spec"]["ports"]
    )


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
        "metadata": _owned_meta(
            job, namespace, release, {INSTANCE_LABEL: name, REVISION: revision}
        ),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.smoke_test.timeout_seconds,
            "template": template,
        },
    }


def kept_template(release: Mapping[str, Any], deployment_manifest: Manifest) -> Manifest:
    """A ControllerRevision holding `deployment_manifest` (as a StatefulSet keeps its
    pod templates): a rolling rollback re-applies it, however many ReplicaSets the
    Deployment kept. Owned by the ChatRelease; immutable once created."""
    meta = deployment_manifest["metadata"]
    labels = meta["labels"]
    revision = meta["annotations"][REVISION]
    name = template_name(release["metadata"]["name"], labels[COMPONENT_LABEL], revision)
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": _owned_meta(
            name,
            meta["namespace"],
            release,
            {
                INSTANCE_LABEL: labels[INSTANCE_LABEL],
                COMPONENT_LABEL: labels[COMPONENT_LABEL],
                REVISION: revision,
            },
        ),
        "data": deployment_manifest,
        "revision": 1,
    }


def released(meta: Mapping[str, Any], release: str, uid: str) -> Manifest:
    """The merge patch that lets a deleted ChatRelease's object live on: marked with
    `chatops.dev/released-from`, without an ownerReference to it (one written by an
    older chatops would let the garbage collector take it). The resourceVersion makes
    the list replacement safe against a concurrent edit."""
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
    return {
        "metadata": {
            "labels": {RELEASED_FROM: release},
            "ownerReferences": refs or None,
            "resourceVersion": meta.get("resourceVersion"),
        }
    }


def handed_over(meta: Mapping[str, Any], release: Mapping[str, Any]) -> Manifest | None:
    """The merge patch giving the object to the garbage collector: an ownerReference to
    the ChatRelease being deleted, which the collector follows once it is gone. None when
    it has one already."""
    uid = release["metadata"]["uid"]
    refs = list(meta.get("ownerReferences") or [])
    if any(r.get("uid") == uid for r in refs):
        return None
    mine = {**owner(release), "controller": not any(r.get("controller") for r in refs)}
    return {
        "metadata": {
            "ownerReferences": [*refs, mine],
            "resourceVersion": meta.get("resourceVersion"),
        }
    }


def adopted() -> Manifest:
    """The merge patch a ChatRelease created again applies to what its namesake left:
    the released mark goes (the next apply rewrites the rest)."""
    return {"metadata": {"labels": {RELEASED_FROM: None}}}
