"""What makes a version: the pod templates of all components, hashed together.

Replicas are left out on purpose: scaling is not a release. The hash is short, stable
across processes (canonical JSON), and labels every object of that version.
"""

from __future__ import annotations

import hashlib
import json

from chatops.api.release import ChatReleaseSpec


def revision(spec: ChatReleaseSpec) -> str:
    """A 10-hex-digit hash of every component's name and pod template."""
    canonical = json.dumps(
        [[c.name, c.template.wire()] for c in spec.components],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def images(spec: ChatReleaseSpec) -> dict[str, str]:
    """`component/container` → image, for history and events."""
    return {
        f"{c.name}/{container.name}": container.image
        for c in spec.components
        for container in c.template.spec.containers
    }


def summary(spec: ChatReleaseSpec) -> str:
    """Short form of the images for `kubectl get`: the last path segment of each, unique,
    e.g. `chat-api:1.4.0,chat-web:1.4.0`."""
    seen: dict[str, None] = {}
    for image in images(spec).values():
        seen.setdefault(image.rsplit("/", 1)[-1], None)
    return ",".join(seen)
