"""Blue-green by Service selector, and the choice of router from a ChatRelease spec."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from chatops.api.release import ChatReleaseSpec
from chatops.errors import InvalidSpec, TrafficRoutingError
from chatops.traffic import router_for
from chatops.traffic.gatewayapi import GatewayAPIRouter
from chatops.traffic.nginx import NginxRouter
from chatops.traffic.router import HeaderMatch, Split
from chatops.traffic.service import ServiceRouter, observed_weights, selector_patch

COLOR = "chatops.dev/color"
OWNER = {"apiVersion": "chatops.dev/v1alpha1", "kind": "ChatRelease", "name": "chat", "uid": "u-1"}
SELECTOR = {
    "app.kubernetes.io/instance": "chat",
    "app.kubernetes.io/component": "api",
    COLOR: "blue",
}


@pytest.mark.parametrize(
    ("selector", "split", "expected"),
    [
        pytest.param(
            SELECTOR,
            Split("api", "chat-api-blue", "chat-api-green", 100),
            {"spec": {"selector": {COLOR: "green"}}},
            id="promote: select the canary color",
        ),
        pytest.param(
            {**SELECTOR, COLOR: "green"},
            Split("api", "chat-api-blue", "chat-api-green", 0),
            {"spec": {"selector": {COLOR: "blue"}}},
            id="roll back: select the stable color again",
        ),
        pytest.param(
            SELECTOR,
            Split("api", "chat-api-blue", "chat-api-green", 0),
            None,
            id="already there: no write",
        ),
        pytest.param(
            {**SELECTOR, COLOR: "green"},
            Split("api", "chat-api-green", "chat-api-blue", 100),
            {"spec": {"selector": {COLOR: "blue"}}},
            id="the second release goes back to blue",
        ),
        pytest.param(
            {"app.kubernetes.io/instance": "chat"},
            Split("api", "chat-api-blue", "chat-api-green", 0),
            {"spec": {"selector": {COLOR: "blue"}}},
            id="a selector without color gets one",
        ),
    ],
)
def test_the_stable_service_selects_one_color(
    selector: dict[str, str], split: Split, expected: dict[str, Any] | None
) -> None:
    assert selector_patch(selector, "chat", split) == expected


@pytest.mark.parametrize("weight", [1, 10, 50, 99])
def test_a_service_selector_cannot_split_traffic(weight: int) -> None:
    split = Split("api", "chat-api-blue", "chat-api-green", weight)
    with pytest.raises(TrafficRoutingError, match=f"Service chat-api: .*0 or 100, not {weight}"):
        selector_patch(SELECTOR, "chat", split)


def test_observed_weights_follow_the_selected_color() -> None:
    splits = [
        Split("api", "chat-api-blue", "chat-api-green", 0),
        Split("frontend", "chat-frontend-blue", "chat-frontend-green", 0),
        Split("worker", "chat-worker-blue", "chat-worker-green", 0),
    ]
    selectors = {
        "api": {**SELECTOR, COLOR: "green"},
        "frontend": {**SELECTOR, COLOR: "blue"},
        "worker": {"app.kubernetes.io/instance": "chat"},  # both colors: not a chatops split
    }
    assert observed_weights(selectors, splits) == {
        "api": {"chat-api-blue": 0, "chat-api-green": 100},
        "frontend": {"chat-frontend-blue": 100, "chat-frontend-green": 0},
        "worker": {},
    }


def test_a_split_between_non_color_services_is_refused() -> None:
    with pytest.raises(TrafficRoutingError, match="Service chat-api-v2: is not a color Service"):
        selector_patch(SELECTOR, "chat", Split("api", "chat-api-blue", "chat-api-v2", 100))


@pytest.mark.parametrize("weight", [-1, 101])
def test_a_split_weight_is_a_percent(weight: int) -> None:
    with pytest.raises(ValueError, match="not a percent"):
        Split("api", "chat-api-blue", "chat-api-green", weight)


COMPONENT = {
    "name": "api",
    "template": {"spec": {"containers": [{"name": "api", "image": "chat-api:1.0"}]}},
    "service": {"port": 8080},
}


@pytest.mark.parametrize(
    ("strategy", "routing", "expected"),
    [
        ({"canary": {}}, {"gatewayAPI": {"httpRoute": "chat"}}, GatewayAPIRouter),
        ({"canary": {}}, {"nginx": {"ingress": "chat"}}, NginxRouter),
        ({"blueGreen": {}}, {"service": {}}, ServiceRouter),
        ({"blueGreen": {}}, None, ServiceRouter),
        ({"blueGreen": {}}, {"gatewayAPI": {"httpRoute": "chat"}}, GatewayAPIRouter),
        ({"rolling": {}}, None, ServiceRouter),
    ],
)
def test_the_router_is_chosen_by_traffic_routing(
    strategy: dict[str, Any], routing: dict[str, Any] | None, expected: type
) -> None:
    spec = ChatReleaseSpec.model_validate(
        {"components": [COMPONENT], "strategy": strategy, "trafficRouting": routing}
    )
    router = router_for(spec, client.ApiClient(), OWNER)
    assert isinstance(router, expected)
    if isinstance(router, GatewayAPIRouter):
        assert router.http_route == "chat"
    if isinstance(router, NginxRouter):
        assert router.ingress == "chat"


def test_a_canary_without_weighted_routing_is_refused() -> None:
    # The model refuses such a spec (validation.problems); the factory refuses it too.
    valid = ChatReleaseSpec.model_validate(
        {
            "components": [COMPONENT],
            "strategy": {"canary": {}},
            "trafficRouting": {"gatewayAPI": {"httpRoute": "chat"}},
        }
    )
    spec = valid.model_copy(update={"traffic_routing": None})
    with pytest.raises(InvalidSpec, match=r"spec\.trafficRouting"):
        router_for(spec, client.ApiClient(), OWNER)


@pytest.mark.parametrize(
    ("router", "named"),
    [
        (NginxRouter(client.ApiClient(), "chat", OWNER), "the NGINX router of chat"),
        (ServiceRouter(client.ApiClient()), "the Service router of chat"),
    ],
)
def test_a_router_without_header_matching_refuses_a_header_route_and_holds_none(
    router: NginxRouter | ServiceRouter, named: str
) -> None:
    # No cluster is asked: refusing, removing nothing and reporting nothing need none.
    split = Split("api", "chat-api-blue", "chat-api-green", 0)
    with pytest.raises(TrafficRoutingError, match=f"^{named}: .*trafficRouting.gatewayAPI"):
        router.set_header_route("prod", "chat", [split], [HeaderMatch("X-Canary", "dogfood")])
    router.set_header_route("prod", "chat", [split], [])  # removing none is no error
    assert router.get_header_routes("prod", "chat", [split]) == {}
