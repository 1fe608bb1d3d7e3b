"""What the operator's watches have seen, for a look to read instead of asking the API
server each time (as Argo Rollouts' and Flagger's informer caches serve their loops).

kopf fills indexes of what a release reads (its Deployments by release, HTTPRoutes,
Ingresses and its Services by name) from one watch stream per kind, before any daemon
starts (`handlers/watched.py`). A look gets a `Seen`: a copy of the entries it needs,
taken in the event loop, where the indexes change, never under the thread that reads it.
What the copy does not hold, and an object after the look itself wrote it, is read from
the API server as before: a cache miss costs a request, never a wrong answer.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chatops.annotations import QUIESCED_BY
from chatops.metrics.sweep import Swept, Watched

Key = tuple[str, str, str]
"""(kind, namespace, name)."""


@dataclass
class Seen:
    """One look's copy of the watched objects it reads; `forget` what it writes."""

    release: dict[str, Any] | None = None
    """The ChatRelease as watched, or None when the watch may not have shown the look's
    last write yet (see `current`): the look reads it from the API server then."""
    deployments: list[dict[str, Any]] = field(default_factory=list)
    """The release's Deployments as watched; empty: listed from the API server."""
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    swept: Swept | None = None
    """The last sweep, while fresh (`metrics/sweep.py`): a round's queries it answered
    are not asked again."""
    breach: bool = False
    """The sweep saw the release's analysis out of bounds since its last look."""
    watching: Watched | None = None
    """The analysis the sweep watches for the release, as its last look left it."""
    written: dict[Key, str] = field(default_factory=dict)
    """The resourceVersion the look left each object it wrote at (`forget`), or read it
    at from the API server: until the watch shows that version, the next looks read the
    object afresh (`snapshot`)."""

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def forget(self, kind: str, namespace: str, name: str, version: str | None = None) -> None:
        """The look has written the object (to `version`, when the answer said): its copy
        is out of date."""
        self.objects.pop((kind, namespace, name), None)
        if version:
            self.written[(kind, namespace, name)] = version


def current(body: Mapping[str, Any], written: str | None) -> bool:
    """Whether the watched `body` can stand for the object: it is at `written`, the
    resourceVersion the last look left it at, or no look has written it in this process.
    Any other version is either someone else's newer change or the watch not having
    shown our write yet; resourceVersions are not ordered, so both are read afresh."""
    version = (body.get("metadata") or {}).get("resourceVersion")
    return written is None or version == written


def snapshot(
    body: Mapping[str, Any] | None,
    deployments: Iterable[Mapping[str, Any]],
    objects: Mapping[Key, Mapping[str, Any]],
    written: Mapping[Key, str] | None = None,
) -> Seen:
    """A `Seen` of deep copies: the look's thread may keep and change them freely. An
    object the last looks wrote (`written`: key -> the version they left it at) is left
    out unless its copy is at that version (`current`)."""
    written = written or {}
    return Seen(
        release=copy.deepcopy(dict(body)) if body is not None else None,
        deployments=[copy.deepcopy(dict(d)) for d in deployments],
        objects={
            k: copy.deepcopy(dict(v)) for k, v in objects.items() if current(v, written.get(k))
        },
    )


def service_essence(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Service a look reads: its selector (the Service router's weights)
    and what `release.manifests.service` writes (an apply the Service already shows is
    not sent)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    return {
        "metadata": {
            "resourceVersion": meta.get("resourceVersion"),
            "labels": dict(meta.get("labels") or {}),
        },
        "spec": {
            "selector": spec.get("selector"),
            "ports": [
                {k: p.get(k) for k in ("name", "port", "targetPort", "protocol")}
                for p in spec.get("ports") or []
            ],
        },
    }


def deployment_essence(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Deployment a look reads (`release.observe.deployments`): what the
    index keeps of it, so a thousand Deployments do not cost a thousand full copies."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    template = spec.get("template") or {}
    status = body.get("status") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "generation": meta.get("generation"),
            "labels": dict(meta.get("labels") or {}),
            "annotations": {
                k: v for k, v in (meta.get("annotations") or {}).items() if k == QUIESCED_BY
            },
        },
        "spec": {
            "replicas": spec.get("replicas"),
            "template": {
                "metadata": {"labels": dict((template.get("metadata") or {}).get("labels") or {})},
                "spec": {"containers": [
                    {"name": c.get("name"), "image": c.get("image")}
                    for c in (template.get("spec") or {}).get("containers") or []
                ]},
            },
        },
        "status": {
            k: status.get(k)
            for k in ("availableReplicas", "updatedReplicas", "replicas", "observedGeneration")
        },
    }
