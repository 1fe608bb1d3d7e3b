"""The Events a controller posts, one shape for the three kinds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on a chatops resource: what a human reads in `kubectl describe`."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


EventSink = Callable[[Mapping[str, Any], Event], None]
"""Posts `Event` on the object whose apiVersion, kind and metadata it is given."""
