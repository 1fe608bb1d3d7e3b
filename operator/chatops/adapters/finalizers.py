"""Adding and removing one finalizer of a chatops resource, without clobbering others'.

A JSON patch that tests what it changes: the finalizer list is edited only as it was
read (kopf keeps a finalizer of its own on the same objects), and a conflict (422 from
a failed test) just means "look again".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatops.adapters.kube import Cluster
from chatops.api.common import GROUP, VERSION


def has(body: Mapping[str, Any], finalizer: str) -> bool:
    return finalizer in (body.get("metadata", {}).get("finalizers") or [])


def add(cluster: Cluster, plural: str, body: Mapping[str, Any], finalizer: str) -> None:
    """Put `finalizer` on the object `body` (as read) unless it is there."""
    meta = body["metadata"]
    present = list(meta.get("finalizers") or [])
    if finalizer in present:
        return
    patch: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
        {"op": "add", "path": "/metadata/finalizers", "value": [*present, finalizer]},
    ]
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, meta["namespace"], plural, meta["name"], patch,
        _content_type="application/json-patch+json",
    )


def remove(cluster: Cluster, plural: str, body: Mapping[str, Any], finalizer: str) -> None:
    """Take `finalizer` off the object `body` (as read) if it is there."""
    meta = body["metadata"]
    present = list(meta.get("finalizers") or [])
    if finalizer not in present:
        return
    index = present.index(finalizer)
    patch = [
        {"op": "test", "path": f"/metadata/finalizers/{index}", "value": finalizer},
        {"op": "remove", "path": f"/metadata/finalizers/{index}"},
    ]
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, meta["namespace"], plural, meta["name"], patch,
        _content_type="application/json-patch+json",
    )
