"""Header routes on an HTTPRoute: the rules chatops adds (named, its own), what they
match and where they send, that a repeat changes nothing, and that their removal leaves
the user's rules and other releases' exactly as they were."""

from __future__ import annotations

from typing import Any

import pytest

from chatops.traffic.gatewayapi import (
    header_patch,
    observed_header_routes,
    observed_weights,
    weight_patch,
)
from chatops.traffic.router import HeaderMatch, Split
from test_traffic_gatewayapi import apply

API = Split("api", "chat-api-blue", "chat-api-green", 0)
WEB = Split("web", "chat-web-blue", "chat-web-green", 0)
DOGFOOD = (HeaderMatch("X-Canary", "dogfood"),)
COOKIE = (HeaderMatch("Cookie", r"(^|;\s*)canary=always(;|$)", "RegularExpression"),)


def ref(name: str, weight: int) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": name, "port": 8080, "weight": weight}


def user_route() -> dict[str, Any]:
    """The user's route: /api (and /ws) to the API's colors, everything else to the web's;
    the API rule has a header match and a filter of its own."""
    return {
        "metadata": {"name": "chat", "namespace": "prod"},
        "spec": {
            "rules": [
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": "/api"},
                            "headers": [{"type": "Exact", "name": "X-Tenant", "value": "a"}],
                        },
                        {"path": {"type": "PathPrefix", "value": "/ws"}},
                    ],
                    "filters": [{"type": "RequestHeaderModifier",
                                 "requestHeaderModifier": {"set": [{"name": "X-Via",
                                                                    "value": "gw"}]}}],
                    "backendRefs": [ref("chat-api-blue", 100), ref("chat-api-green", 0)],
                },
                {"backendRefs": [ref("chat-web-blue", 100), ref("chat-web-green", 0)]},
            ]
        },
    }


def test_a_header_route_adds_a_named_rule_per_user_rule_to_the_canary_alone() -> None:
    route = user_route()
    after = apply(route, header_patch(route, "chat", [API, WEB], DOGFOOD))
    rules = after["spec"]["rules"]
    assert rules[:2] == route["spec"]["rules"]  # the user's rules, untouched
    api, web = rules[2:]
    assert api["name"] == "chatops-header.chat.api.0"
    assert api["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/api"},
            "headers": [
                {"type": "Exact", "name": "X-Tenant", "value": "a"},
                {"type": "Exact", "name": "X-Canary", "value": "dogfood"},
            ],
        },
        {
            "path": {"type": "PathPrefix", "value": "/ws"},
            "headers": [{"type": "Exact", "name": "X-Canary", "value": "dogfood"}],
        },
    ]
    assert api["filters"] == route["spec"]["rules"][0]["filters"]
    assert api["backendRefs"] == [ref("chat-api-green", 1)]
    # a rule without matches matches every path: so does its header rule
    assert web["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/"},
            "headers": [{"type": "Exact", "name": "X-Canary", "value": "dogfood"}],
        }
    ]
    assert web["backendRefs"] == [ref("chat-web-green", 1)]
    assert observed_header_routes(after, "chat", [API, WEB]) == {
        "api": frozenset({("chat-api-green", DOGFOOD)}),
        "web": frozenset({("chat-web-green", DOGFOOD)}),
    }


def test_a_repeat_changes_nothing_and_the_weights_ignore_the_header_rules() -> None:
    route = user_route()
    after = apply(route, header_patch(route, "chat", [API, WEB], COOKIE))
    assert header_patch(after, "chat", [API, WEB], COOKIE) == []
    # the weighted rules are read and written as before, the header rules left alone
    assert observed_weights(after, [API, WEB]) == {
        "api": {"chat-api-blue": 100, "chat-api-green": 0},
        "web": {"chat-web-blue": 100, "chat-web-green": 0},
    }
    moved = apply(after, weight_patch(after, [Split("api", "chat-api-blue", "chat-api-green", 10),
                                              Split("web", "chat-web-blue", "chat-web-green", 10)]))
    assert moved["spec"]["rules"][2:] == after["spec"]["rules"][2:]
    assert [r["weight"] for r in moved["spec"]["rules"][0]["backendRefs"]] == [90, 10]
    assert observed_header_routes(moved, "chat", [API])["api"] == frozenset(
        {("chat-api-green", COOKIE)}
    )


def test_removal_leaves_the_users_rules_and_another_releases_header_rules() -> None:
    route = user_route()
    other = Split("api", "chat-x-api-blue", "chat-x-api-green", 0)
    route["spec"]["rules"].append(
        {"backendRefs": [ref("chat-x-api-blue", 100), ref("chat-x-api-green", 0)]}
    )
    ours = apply(route, header_patch(route, "chat", [API, WEB], DOGFOOD))
    # release chat-x shares the route; its name must not pass for release chat's
    both = apply(ours, header_patch(ours, "chat-x", [other], DOGFOOD))
    removal = header_patch(both, "chat", [API, WEB], ())
    # each removal is guarded by a test of the rule's name, so a reordered route refuses
    assert [op["op"] for op in removal] == ["test", "remove", "test", "remove"]
    after = apply(both, removal)
    assert [r.get("name") for r in after["spec"]["rules"]] == [
        None, None, None, "chatops-header.chat-x.api.0"
    ]
    assert after["spec"]["rules"][:3] == route["spec"]["rules"]
    assert observed_header_routes(after, "chat", [API, WEB]) == {
        "api": frozenset(), "web": frozenset()
    }
    assert header_patch(after, "chat", [API, WEB], ()) == []


def test_a_changed_header_route_replaces_the_old_rules_whole() -> None:
    route = user_route()
    old = apply(route, header_patch(route, "chat", [API, WEB], DOGFOOD))
    new = apply(old, header_patch(old, "chat", [API, WEB], COOKIE))
    assert len(new["spec"]["rules"]) == 4
    assert observed_header_routes(new, "chat", [API, WEB]) == {
        "api": frozenset({("chat-api-green", COOKIE)}),
        "web": frozenset({("chat-web-green", COOKIE)}),
    }


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda r: r["backendRefs"].__setitem__(0, ref("chat-api-blue", 1)),
                     id="sent to the wrong color"),
        pytest.param(lambda r: r["matches"][0]["headers"].pop(), id="a header dropped"),
    ],
)
def test_a_header_rule_edited_by_hand_reads_as_not_the_route_asked_and_is_rewritten(
    edit: Any,
) -> None:
    route = user_route()
    after = apply(route, header_patch(route, "chat", [API], DOGFOOD))
    edit(after["spec"]["rules"][2])
    assert observed_header_routes(after, "chat", [API])["api"] != frozenset(
        {("chat-api-green", DOGFOOD)}
    )
    fixed = apply(after, header_patch(after, "chat", [API], DOGFOOD))
    assert observed_header_routes(fixed, "chat", [API])["api"] == frozenset(
        {("chat-api-green", DOGFOOD)}
    )
