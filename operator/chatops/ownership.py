"""Who owns an object chatops created, in Kubernetes' own terms: the controller
ownerReference, the IsControlledBy check made before touching an object, and names
bounded to what the API server accepts. Pure; shared by the release core and routers."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

NAME_LIMIT, LABEL_LIMIT = 253, 63
"""Longest object name (DNS subdomain) and label value."""


def owner(body: Mapping[str, Any]) -> dict[str, Any]:
    """The controller ownerReference to the object `body` (e.g. a ChatRelease).

    `blockOwnerDeletion` stays false: setting it needs `update` on the owner's
    finalizers, and nothing needs the owner to wait for its dependents."""
    meta = body["metadata"]
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


def controlled_by(meta: Mapping[str, Any], uid: str) -> bool:
    """Whether the object whose metadata is `meta` has the controller reference `uid`
    (Kubernetes' `metav1.IsControlledBy`)."""
    return any(
        ref.get("controller") and ref.get("uid") == uid for ref in meta.get("ownerReferences") or []
    )


def controller(meta: Mapping[str, Any]) -> str:
    """The controller reference of `meta` as `Kind/name`, or "no controller"."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return "no controller"


def bounded(name: str, limit: int = NAME_LIMIT) -> str:
    """`name` if it fits in `limit` characters, else a prefix and a hash of the whole:
    still unique per input, still a valid DNS name or label value."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: limit - 11].rstrip('-.')}-{digest}"
