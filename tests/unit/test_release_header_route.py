"""A canary's headerRoute step, told as stories in a world that does what the actions
ask: dogfood users on the new version before any weight moves, the rule recorded only
once the router shows it, and gone after a promotion, a rollback, a deletion and a
look that was lost."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from chatops.api.header_route import HeaderMatch as Match
from chatops.api.header_route import HeaderRoute
from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus
from chatops.commands.release_view import render, view
from chatops.release.model import SetHeaderRoute
from chatops.release.teardown import teardown
from chatops.traffic.router import HeaderMatch
from release_world import World, released, spec

DOGFOOD = {"name": "X-Canary", "value": "dogfood"}
SHOWN = (HeaderMatch("X-Canary", "dogfood"),)
STEPS: list[dict[str, Any]] = [
    {"headerRoute": {"match": [DOGFOOD]}},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {"duration": "60s"}},
]


def world(steps: list[dict[str, Any]] = STEPS) -> World:
    w = released(World(spec(strategy={"canary": {"steps": steps}})))
    w.release("1.1")
    return w


def on_green(w: World) -> dict[str, frozenset[Any]]:
    return {"api": frozenset({("green", SHOWN)}), "web": frozenset({("green", SHOWN)})}


NONE = {"api": frozenset(), "web": frozenset()}


def test_dogfood_users_reach_the_new_version_before_any_weight_then_the_rule_goes() -> None:
    w = world()
    w.run_until(lambda w: w.status.phase == "Paused")
    assert w.header_routes == on_green(w)
    assert w.serving() == {"api": {"blue": 100}, "web": {"blue": 100}}  # weight 0
    assert w.status.header_route == HeaderRoute(match=[Match(name="X-Canary", value="dogfood")])
    assert w.status.current_step == 1 and w.status.canary_weight == 0
    assert ("HeaderRouteSet", "requests with X-Canary: dogfood go to "
            "chat-api:1.1,chat-web:1.1 (step 1/4)") in w.events
    w.annotations["chatops.dev/promote"] = "step"
    w.run_until(lambda w: w.status.canary_weight == 50)
    assert w.header_routes == on_green(w)  # still there while the weights walk
    w.run_until(lambda w: w.status.phase == "Succeeded" and w.status.canary_revision is None)
    assert w.header_routes == NONE
    assert w.status.header_route is None


def test_the_step_is_recorded_only_once_the_router_shows_the_rule() -> None:
    w = world()
    w.routable = False
    for _ in range(5):
        w.tick()
    assert w.status.current_step == 0 and w.status.header_route is None
    assert "step 1/4: routing requests with X-Canary: dogfood to green" in (w.status.message or "")
    assert "the router shows no header route" in (w.status.message or "")
    w.routable = True
    w.run_until(lambda w: w.status.current_step == 1)
    assert w.status.header_route is not None


def test_a_look_whose_status_was_lost_finds_the_rule_and_records_it_once() -> None:
    w = world()
    w.run_until(lambda w: any(isinstance(a, SetHeaderRoute) and a.matches for a in w.actions))
    w.status = w.status.model_copy(update={"current_step": 0, "header_route": None})
    w.run_until(lambda w: w.status.phase == "Paused")
    assert sum(reason == "HeaderRouteSet" for reason, _ in w.events) == 1
    assert w.header_routes == on_green(w)


def test_a_bad_canary_on_its_header_step_rolls_back_and_rolled_back_waits_for_the_rule() -> None:
    w = world([{"headerRoute": {"match": [DOGFOOD]}}, {"pause": {"duration": "5m"}}])
    w.run_until(lambda w: w.status.current_step == 1)
    w.routable = False  # the router stops applying: the rule stays
    w.prometheus.values["green"] = 0.5
    w.run_until(lambda w: w.status.phase == "Degraded")
    for _ in range(5):
        w.tick()
    assert w.status.phase == "Degraded" and w.header_routes == on_green(w)
    assert w.status.header_route is None
    w.routable = True
    w.run_until(lambda w: w.status.phase == "RolledBack")
    assert w.header_routes == NONE


def test_a_later_header_route_step_replaces_the_first_and_an_empty_one_removes_it() -> None:
    cookie = {"name": "Cookie", "type": "RegularExpression", "value": "canary=always"}
    w = world([
        {"headerRoute": {"match": [DOGFOOD]}},
        {"pause": {}},
        {"headerRoute": {"match": [cookie]}},
        {"pause": {}},
        {"headerRoute": {"match": []}},
        {"pause": {}},
    ])
    w.run_until(lambda w: w.status.current_step == 1)
    w.annotations["chatops.dev/promote"] = "step"
    w.run_until(lambda w: w.status.current_step == 3)
    regex = (HeaderMatch("Cookie", "canary=always", "RegularExpression"),)
    assert w.header_routes["api"] == frozenset({("green", regex)})
    w.annotations["chatops.dev/promote"] = "step"
    w.run_until(lambda w: w.status.current_step == 5)
    assert w.header_routes == NONE and w.status.header_route is None


def test_a_rule_left_behind_between_releases_is_removed() -> None:
    w = released(World(spec()))
    w.header_routes = on_green(w)  # e.g. the operator killed right after a promotion
    w.tick()
    assert w.header_routes == NONE


def test_a_deletion_mid_header_step_removes_the_rule_before_anything_is_released() -> None:
    parsed = ChatReleaseSpec.model_validate(spec(strategy={"canary": {"steps": STEPS}}))
    status = ChatReleaseStatus(
        active_color="blue", stable_revision="r1", canary_revision="r2", canary_weight=0
    )
    weights = {"api": {"blue": 100, "green": 0}, "web": {"blue": 100, "green": 0}}
    plan = teardown(parsed, status, (), weights, False, header_routes=on_green(World({})))
    assert plan.headers == SetHeaderRoute("green") and plan.traffic is None
    assert plan.waiting is not None and not plan.keep and not plan.remove
    done = teardown(parsed, status, (), weights, False, header_routes=NONE)
    assert done.headers is None and done.waiting is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"trafficRouting": {"nginx": {"ingress": "chat"}}},
            "headerRoute needs trafficRouting.gatewayAPI",
            id="nginx",
        ),
        pytest.param(
            {"strategy": {"canary": {"steps": [
                {"headerRoute": {"match": [DOGFOOD, {**DOGFOOD, "name": "x-CANARY"}]}}]}}},
            "each header name appears once in headerRoute.match",
            id="a header twice",
        ),
        pytest.param(
            {"strategy": {"canary": {"steps": [{"setWeight": 5, "headerRoute": {"match": []}}]}}},
            "each step sets exactly one of setWeight, pause or headerRoute",
            id="two kinds in a step",
        ),
    ],
)
def test_a_header_route_it_cannot_carry_is_refused_naming_the_field(
    change: dict[str, Any], message: str
) -> None:
    body = {**spec(strategy={"canary": {"steps": STEPS}}), **change}
    with pytest.raises(ValidationError, match=message):
        ChatReleaseSpec.model_validate(body)


def test_chatops_status_shows_the_header_route_while_it_is_in_force() -> None:
    body: dict[str, Any] = {
        "metadata": {"namespace": "prod", "name": "chat"},
        "spec": {"strategy": {"canary": {"steps": STEPS}}},
        "status": {
            "phase": "Paused",
            "currentStep": 1,
            "canaryWeight": 0,
            "headerRoute": {"match": [DOGFOOD, {"name": "Cookie", "type": "RegularExpression",
                                                "value": "canary=always"}]},
        },
    }
    text = render(view(body))
    assert "Header route:  X-Canary: dogfood and Cookie ~ canary=always -> canary\n" in text
    del body["status"]["headerRoute"]
    assert "Header route" not in render(view(body))


def test_a_newer_version_on_the_header_step_starts_over_without_the_rule() -> None:
    w = world()
    w.run_until(lambda w: w.status.phase == "Paused")
    w.release("1.2")
    w.tick()
    assert w.header_routes == NONE and w.status.header_route is None
    assert w.status.current_step == 0
    w.run_until(lambda w: w.status.phase == "Paused")
    assert w.header_routes == on_green(w)
    assert w.status.canary_version == "chat-api:1.2,chat-web:1.2"


def test_a_canary_that_loses_availability_under_its_header_route_rolls_back_at_once() -> None:
    w = world()
    w.run_until(lambda w: w.status.phase == "Paused")
    d = w.deployments[("api", "green")]
    w.deployments[("api", "green")] = replace(d, available=0)
    w.tick()
    assert w.status.phase == "Degraded" and "lost availability under traffic" in (
        w.status.message or "")
    w.run_until(lambda w: w.status.phase == "RolledBack")
    assert w.header_routes == NONE
