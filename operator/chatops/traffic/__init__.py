"""Traffic routers: how a release moves new connections between the two colors.

    router_for(spec, api_client, owner) -> TrafficRouter
    TrafficRouter.set_weights / get_weights / finalize, on Splits

Implementations: `gatewayapi` (HTTPRoute backendRef weights), `nginx` (a generated
canary Ingress), `service` (the stable Service's selector, all or nothing). Each keeps
the computation of the object it writes in pure functions next to a thin I/O class.
"""

from chatops.traffic.factory import router_for
from chatops.traffic.router import Split, TrafficRouter, Weights

__all__ = ["Split", "TrafficRouter", "Weights", "router_for"]
