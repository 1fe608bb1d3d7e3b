"""Adding and removing one finalizer of a chatops resource, without clobbering others'.

A JSON patch that tests what it changes: the finalizer list is edited only as it was
read (kopf keeps a finalizer of its own on the same objects), and a conflict (422 from
a failed test) just means "look again".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.client.rest import ApiException

from chatops.adapters.kube import Cluster
from chatops.api.common import GROUP, VERSION


def has(body: Mapping[str, Any], finalizer: str) -> bool:
    return finalizer in (body.get("metadata", {}).get("finalizers") or [])


def add(cluster: Cluster, plural: str, body: Mapping[str, Any], finalizer: str) -> None:
    """Put `finalizer` on the object `body` (as read) unless it is there. The list is
    tested as read; when kopf changed it meanwhile, it is read again (a few times)."""
    meta = body["metadata"]
    for _ in range(3):
        present = list(meta.get("finalizers") or [])
        if finalizer in present:
            return
        patch: list[dict[str, Any]] = (
            [{"op": "test", "path": "/metadata/finalizers", "value": present}] if present
            else [{"op": "test", "path": "/metadata/resourceVersion",
                   "value": meta["resourceVersion"]}]
        )
        patch.append({"op": "add", "path": "/metadata/finalizers", "value": [*present, finalizer]})
        try:
            cluster.custom.patch_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], plural, meta["name"], patch,
                _content_type="application/json-patch+json",
            )
            return
        except ApiException as err:
            if err.status not in (409, 422):
                raise
        fresh = cluster.get(plural, meta["namespace"], meta["name"])
        if fresh is None:
            return
        meta = fresh["metadata"]
    raise ApiException(status=409, reason=f"the finalizers of {meta['name']} keep changing")


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
