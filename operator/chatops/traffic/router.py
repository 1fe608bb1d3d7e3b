"""The seam between the release decision core and whatever moves traffic in the cluster.

The core thinks in weights per component ("10 % of new connections to the canary"); a
router turns that into the one object its routing layer reads (HTTPRoute backendRef
weights, an NGINX canary Ingress, a Service selector) and reads it back, so the core can
compare what it asked for with what the cluster does. Like Flagger's `router.Interface`
and Argo Rollouts' traffic routers, one small Protocol, several implementations, a
factory choosing by spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chatops.errors import TrafficRoutingError

Weights = dict[str, dict[str, int]]
"""component -> {Service name: percent of new connections it receives}."""

COLORS = ("blue", "green")
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
COLOR_LABEL = "chatops.dev/color"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "chatops"


@dataclass(frozen=True)
class Split:
    """One component's traffic split between the color serving now and the new one."""

    component: str
    stable_service: str
    """The color Service serving the stable version, e.g. `chat-api-blue`."""
    canary_service: str
    """The color Service of the version being released, e.g. `chat-api-green`."""
    canary_weight: int
    """Percent (0..100) of new connections sent to the canary; WebSockets already open
    stay where they are."""

    def __post_init__(self) -> None:
        if not 0 <= self.canary_weight <= 100:
            raise ValueError(f"canary weight {self.canary_weight} is not a percent (0..100)")
        if self.stable_service == self.canary_service:
            raise ValueError(f"stable and canary are the same Service {self.stable_service!r}")

    @property
    def stable_weight(self) -> int:
        return 100 - self.canary_weight

    def wanted(self) -> dict[str, int]:
        """The weights this split asks for, in the shape `get_weights` reports."""
        return {self.stable_service: self.stable_weight, self.canary_service: self.canary_weight}


class TrafficRouter(Protocol):
    """Moves new connections between the two colors of every component of a release."""

    def set_weights(self, namespace: str, release: str, splits: Sequence[Split]) -> None:
        """Make the routing object send each split's weights; idempotent, so a crash
        between two calls is repaired by calling again."""
        ...

    def get_weights(self, namespace: str, release: str, splits: Sequence[Split]) -> Weights:
        """What the routing object sends now, per component and Service, in percent (the
        weights of `splits` are ignored; only their component and Service names count)."""
        ...

    def finalize(self, namespace: str, release: str, splits: Sequence[Split]) -> None:
        """Remove what the router generated, once the release finished or was aborted and
        traffic is wholly on one color; objects the user owns are left as they are."""
        ...


def stable_service_name(release: str, component: str) -> str:
    """The Service that always points at the active color: `<release>-<component>`."""
    return f"{release}-{component}"


def color_of(service: str) -> str:
    """The color of a color Service from its name (`chat-api-green` -> `green`), fixed by
    the object naming in DESIGN.md."""
    for color in COLORS:
        if service.endswith(f"-{color}"):
            return color
    raise TrafficRoutingError(
        f"Service {service}",
        f"is not a color Service (its name must end in -{' or -'.join(COLORS)})",
    )


def percent(part: float, whole: float) -> int:
    """`part` as a rounded percent of `whole`; nothing of nothing is 0 %."""
    return round(100 * part / whole) if whole > 0 else 0
