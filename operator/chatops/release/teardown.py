"""What the deletion of a ChatRelease does, decided without I/O.

A deleted release must never take the live version down by surprise (an Argo CD prune,
a mistaken `kubectl delete`): traffic goes back to the stable color first, the router's
generated objects go, the other color goes, and the stable color's Deployments and every
Service keep serving, released from the ChatRelease (`deletionPolicy: Retain`, the
default). `deletionPolicy: Delete` hands everything to the garbage collector instead.

Like `decide`, `teardown` is called again after each round of actions until it has
nothing left to do, so an operator killed mid-deletion finishes it from the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from chatops.annotations import REVISION
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus
from chatops.release.model import (
    Color,
    FinalizeTraffic,
    RestoreRevision,
    SetHeaderRoute,
    SetTraffic,
    other,
)
from chatops.traffic.router import COLOR_LABEL, COMPONENT_LABEL


@dataclass(frozen=True)
class Owned:
    """A Deployment or Service chatops made for the release, as the cluster shows it."""

    kind: Literal["Deployment", "Service"]
    name: str
    component: str
    color: Color | None
    """The Deployment's color; None for a Service (every Service is kept)."""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """Its metadata (ownerReferences, resourceVersion), for the patches."""
    revision: str | None = None
    """A Deployment's pod-template revision."""


def owned(kind: Literal["Deployment", "Service"], objects: list[dict[str, Any]]) -> list[Owned]:
    """The listed Deployments or Services (plain objects) as `Owned`."""
    found = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        color = labels.get(COLOR_LABEL) if kind == "Deployment" else None
        template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
        found.append(
            Owned(
                kind=kind,
                name=meta.get("name", ""),
                component=labels.get(COMPONENT_LABEL, ""),
                color="blue" if color == "blue" else "green" if color == "green" else None,
                meta=meta,
                revision=(template.get("labels") or {}).get(REVISION),
            )
        )
    return found


@dataclass(frozen=True)
class Teardown:
    """One round of the deletion: what to do now, and whether it is over after it."""

    restore: tuple[RestoreRevision, ...] = ()
    """Rolling update in flight: the stable template back on the Deployments first."""
    traffic: SetTraffic | None = None
    """All new connections back to the stable color."""
    headers: SetHeaderRoute | None = None
    """The release's header route removed: its requests back on the stable color too."""
    finalize: FinalizeTraffic | None = None
    """Remove what the router generated (the NGINX canary Ingress)."""
    keep: tuple[Owned, ...] = ()
    """Released: they live on without the ChatRelease."""
    remove: tuple[Owned, ...] = ()
    """Handed to the garbage collector, which deletes them once the ChatRelease is gone."""
    waiting: str | None = None
    """Why the finalizer must stay after this round; None when the deletion may end."""
    summary: str = ""
    """What the deletion did, for the Event and the log."""


def teardown(
    spec: ChatReleaseSpec,
    status: ChatReleaseStatus,
    owned: tuple[Owned, ...],
    weights: Mapping[str, Mapping[Color, int]],
    terminating: bool,
    traffic_stuck: str | None = None,
    header_routes: Mapping[str, frozenset[tuple[Color, object]]] | None = None,
) -> Teardown:
    """The next round of the deletion of a release with `spec` and `status`, given the
    objects it owns and the traffic weights the router shows (empty when it cannot tell:
    a missing HTTPRoute has nothing to move back). `traffic_stuck` says why traffic
    could not be moved back after several tries: then both colors are kept, since
    either may still receive traffic. `header_routes` are the release's header routes
    the router shows: removed, like the weights, before anything is released."""
    if terminating:
        # The namespace controller deletes everything; nothing can be created there and
        # nothing is left to serve, so the finalizer goes at once.
        return Teardown(summary="the namespace is being deleted: nothing to keep")
    if spec.deletion_policy == "Delete":
        return Teardown(
            finalize=FinalizeTraffic(status.active_color or "blue"),
            remove=owned,
            summary=f"deletionPolicy Delete: {_names(owned)} deleted with the ChatRelease",
        )
    active = status.active_color
    if active is None:  # nothing was ever applied as live
        return Teardown(remove=owned, summary="nothing was live: deleted with the ChatRelease")
    stable = status.stable_revision
    restore: tuple[RestoreRevision, ...] = ()
    if spec.strategy.rolling is not None and stable is not None:
        restore = tuple(
            RestoreRevision(o.component, active, stable)
            for o in owned
            if o.kind == "Deployment" and o.color == active and o.revision != stable
        )
    if traffic_stuck is not None:
        return Teardown(
            restore=restore,
            keep=owned,
            summary=f"traffic could not be moved back ({traffic_stuck}): both colors kept "
            f"serving, {_names(owned)} released (deletionPolicy Retain)",
        )
    leaving = other(active)
    moved = all(
        not weights.get(c.name) or weights[c.name].get(leaving, 0) == 0 for c in spec.components
    )
    traffic = None if moved else SetTraffic(leaving, 0)
    headers = SetHeaderRoute(leaving) if any((header_routes or {}).values()) else None
    if traffic is not None or headers is not None:
        return Teardown(
            restore=restore,
            traffic=traffic,
            headers=headers,
            waiting=f"moving all traffic back to {active} before anything is released",
        )
    keep = tuple(o for o in owned if o.kind == "Service" or o.color == active)
    remove = tuple(o for o in owned if o not in keep)
    return Teardown(
        restore=restore,
        finalize=FinalizeTraffic(active),
        keep=keep,
        remove=remove,
        summary=f"all traffic on {active}; {_names(keep) or 'nothing'} kept serving "
        f"(deletionPolicy Retain), {_names(remove) or 'nothing'} deleted",
    )


def _names(objects: tuple[Owned, ...]) -> str:
    return ", ".join(sorted(f"{o.kind} {o.name}" for o in objects))
