"""What the cluster shows, in the release core's words: the kubernetes client's objects
turned into `DeploymentState`s and a smoke-test result. Pure: the runner reads, this
translates, so the adapters need not know the release core (and do not import it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client

from chatops.annotations import QUIESCED_BY, REVISION
from chatops.release.model import Color, DeploymentState, SmokeResult
from chatops.traffic.router import (
    COLOR_LABEL,
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    HeaderMatch,
    HeaderRoutes,
    color_of,
)


def selector(release: str) -> str:
    """The label selector of every Deployment of `release`."""
    return f"{INSTANCE_LABEL}={release}"


def deployments(
    found: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, Color], DeploymentState]:
    """The release's Deployments by (component, color), from their wire form (as
    watched, or listed); others are left out."""
    out: dict[tuple[str, Color], DeploymentState] = {}
    for d in found:
        meta, spec, status = d.get("metadata") or {}, d.get("spec") or {}, d.get("status") or {}
        labels = meta.get("labels") or {}
        color = labels.get(COLOR_LABEL)
        if color not in ("blue", "green"):
            continue
        template = spec.get("template") or {}
        component = labels.get(COMPONENT_LABEL, "")
        out[(component, color)] = DeploymentState(
            component=component,
            color=color,
            revision=((template.get("metadata") or {}).get("labels") or {}).get(REVISION),
            replicas=spec.get("replicas") or 0,
            available=status.get("availableReplicas") or 0,
            updated=status.get("updatedReplicas") or 0,
            total=status.get("replicas") or 0,
            current=(status.get("observedGeneration") or 0) >= (meta.get("generation") or 0),
            quiesced_by=(meta.get("annotations") or {}).get(QUIESCED_BY),
            images={
                c.get("name", ""): c.get("image", "")
                for c in (template.get("spec") or {}).get("containers") or []
            },
        )
    return out


def smoke_result(job: client.V1Job | None) -> SmokeResult | None:
    """Succeeded or Failed once the Job says so, Running before; None without a Job."""
    if job is None:
        return None
    for condition in (job.status.conditions if job.status else None) or []:
        if condition.status == "True" and condition.type == "Complete":
            return "Succeeded"
        if condition.status == "True" and condition.type == "Failed":
            return "Failed"
    return "Running"


def header_routes(
    seen: HeaderRoutes,
) -> dict[str, frozenset[tuple[Color, tuple[HeaderMatch, ...]]]]:
    """The router's header routes by component, with colors for Services."""
    return {
        component: frozenset(
            ("blue" if color_of(service) == "blue" else "green", matches)
            for service, matches in pairs
        )
        for component, pairs in seen.items()
    }
