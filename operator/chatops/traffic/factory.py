"""Which router a release uses, from `spec.trafficRouting` (as Flagger's router factory
chooses by mesh provider)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client

from chatops.adapters.watched import Seen
from chatops.api.release import ChatReleaseSpec
from chatops.errors import InvalidSpec
from chatops.traffic.gatewayapi import GatewayAPIRouter
from chatops.traffic.nginx import NginxRouter
from chatops.traffic.router import TrafficRouter
from chatops.traffic.service import ServiceRouter


def router_for(
    spec: ChatReleaseSpec,
    api_client: client.ApiClient,
    owner: Mapping[str, Any],
    seen: Seen | None = None,
) -> TrafficRouter:
    """The router named by `spec.trafficRouting`. Without one, the stable Service's
    selector is the router: blue-green switches it, a rolling update never moves it.
    `owner` is the ownerReference to the ChatRelease, for what a router generates;
    `seen`, the watches' copy of the objects it reads."""
    seen = seen or Seen()
    routing = spec.traffic_routing
    if routing is not None and routing.gateway_api is not None:
        return GatewayAPIRouter(api_client, routing.gateway_api.http_route, seen)
    if routing is not None and routing.nginx is not None:
        return NginxRouter(api_client, routing.nginx.ingress, owner, seen)
    if spec.strategy.canary is not None:
        raise InvalidSpec(
            "ChatRelease",
            "spec.trafficRouting",
            "strategy.canary needs trafficRouting.gatewayAPI or trafficRouting.nginx to "
            "split traffic by weight",
        )
    return ServiceRouter(api_client, seen)
