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
from typing import Literal, Protocol

from chatops.errors import TrafficRoutingError

Weights = dict[str, dict[str, int]]
"""component -> {Service name: percent of new connections it receives}."""



@dataclass(frozen=True)
class HeaderMatch:
    """One header a request must carry to take the header route, in Gateway API's
    terms (HTTPHeaderMatch)."""

    name: str
    value: str
    type: Literal["Exact", "RegularExpression"] = "Exact"


HeaderRoutes = dict[str, frozenset[tuple[str, tuple[HeaderMatch, ...]]]]
"""component -> {(Service name, the headers that send requests to it)} of the header
rules chatops made for the release: empty when it has none, one pair when they agree."""

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

    def set_header_route(
        self,
        namespace: str,
        release: str,
        splits: Sequence[Split],
        matches: Sequence[HeaderMatch],
    ) -> None:
        """Send requests carrying all of `matches` to each split's canary Service, beside
        the weights; no `matches`: remove the release's header route. Idempotent; a
        router that cannot match headers raises TrafficRoutingError when asked to."""
        ...

    def get_header_routes(
        self, namespace: str, release: str, splits: Sequence[Split]
    ) -> HeaderRoutes:
        """The header routes the routing object holds for the release, per component."""
        ...

    def finalize(self, namespace: str, release: str, splits: Sequence[Split]) -> None:
        """Remove what the router generated, once the release finished or was aborted and
        traffic is wholly on one color; objects the user owns are left as they are."""
        ...


class WithoutHeaderRoutes:
    """The header-route half of a TrafficRouter for a routing layer that cannot match
    headers (an NGINX canary Ingress, a Service selector): refuse a header route (the API
    server already refuses such a spec), remove none and report none (there is none).
    `router_kind` names the router in the refusal."""

    router_kind = "this"

    def set_header_route(
        self,
        namespace: str,
        release: str,
        splits: Sequence[Split],
        matches: Sequence[HeaderMatch],
    ) -> None:
        if matches:
            raise TrafficRoutingError(
                f"the {self.router_kind} router of {release}",
                "cannot route by header; headerRoute steps need trafficRouting.gatewayAPI",
            )

    def get_header_routes(
        self, namespace: str, release: str, splits: Sequence[Split]
    ) -> HeaderRoutes:
        return {}


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
