"""The Events a controller posts, one shape for the three kinds.

An Event is also what drives notifications (`chatops.notify`): the operator posts it to
the API server and offers it to the receivers of the object it is about, so what a
receiver hears is what `kubectl describe` shows, never a second bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on a chatops resource: what a human reads in `kubectl describe`."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    details: Mapping[str, int | str] = field(default_factory=dict, compare=False)
    """Facts for machines that the message tells people (a canary step's number and
    weight): notifications carry them; the Kubernetes Event has no field for them."""


EventSink = Callable[[Mapping[str, Any], Event], None]
"""Posts `Event` on the object whose apiVersion, kind and metadata it is given. When the
object also carries its `spec` (its receivers) and the `status` the Event explains, the
Event is offered to its receivers too."""


def subject(body: Mapping[str, Any], status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What an Event is posted on: the object's identity and spec, and the status the
    Event explains (`status`, else the one read)."""
    told = {k: body[k] for k in ("apiVersion", "kind", "metadata") if k in body}
    told["spec"] = body.get("spec") or {}
    told["status"] = dict(status) if status is not None else body.get("status") or {}
    return told
