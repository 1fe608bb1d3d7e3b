"""The ends of a release: deleted mid-flight (issue 8 case 2), rolled back in place
without ReplicaSet history (case 8), superseded by a newer version (case 9)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from chatops.api.release import ChatReleaseSpec
from chatops.api.release_status import ChatReleaseStatus
from chatops.release.decide import decide
from chatops.release.model import (
    ApplyDeployment,
    DeploymentState,
    FinalizeTraffic,
    RestoreRevision,
    SetTraffic,
)
from chatops.release.teardown import Owned, teardown
from release_world import World, released, spec

# -- case 9: superseded ---------------------------------------------------------------


def test_a_version_superseded_mid_canary_leaves_a_history_entry_and_an_event() -> None:
    world = released(World(spec()))
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 10)
    first = world.status.canary_revision
    world.release("1.2")
    world.tick(advance=False)
    entry = world.status.history[-1]
    assert (entry.revision, entry.result) == (first, "Superseded")
    # the images of the version that gave way, from its Deployments, not the newer spec
    assert entry.images == {"api/api": "chat-api:1.1", "web/web": "chat-web:1.1"}
    assert "chat-api:1.1,chat-web:1.1 superseded by chat-api:1.2,chat-web:1.2" in entry.message
    reasons = dict(world.events)
    assert f"(revision {first}) superseded by chat-api:1.2,chat-web:1.2" in reasons["Superseded"]
    assert "ReleaseStarted" in reasons


# -- case 8: RolledBack only when the cluster shows it ----------------------------------


def test_a_rolling_rollback_says_rolled_back_only_once_the_stable_template_runs() -> None:
    strategy = {"rolling": {"analysisWindow": "60s"}}
    world = released(World(spec(strategy=strategy, trafficRouting=None)))
    good = world.status.stable_revision
    world.release("1.1")
    world.prometheus.values["blue"] = 0.3
    world.run_until(lambda w: w.status.aborted_revision is not None)
    assert world.status.phase == "Degraded" and "rolling back" in (world.status.message or "")
    bad = world.status.aborted_revision
    # The restore has not reached the cluster (e.g. it was refused): still not RolledBack.
    for key, d in list(world.deployments.items()):
        world.deployments[key] = replace(d, revision=bad)
    decision = decide(world.observation())
    assert decision.status.phase == "Degraded"
    assert "rolling back to chat-api:1.0,chat-web:1.0" in (decision.status.message or "")
    assert RestoreRevision("api", "blue", good or "") in decision.actions
    # Once the Deployments show the stable revision Available, it is RolledBack.
    world.apply(decision)
    world.tick()
    assert world.status.phase == "RolledBack"
    assert {d.revision for d in world.deployments.values()} == {good}


# -- case 2: adoption by a ChatRelease created again ----------------------------------


def test_a_release_created_again_goes_on_on_the_color_its_namesake_left_serving() -> None:
    world = World(spec())
    for name in ("api", "web"):
        world.deployments[(name, "green")] = DeploymentState(name, "green", "old", 2, 2, 2)
    decision = world.tick(advance=False)
    assert decision.status.active_color == "green"
    assert {a.color for a in decision.actions if isinstance(a, ApplyDeployment)} == {"green"}


# -- case 2: what a deletion does -------------------------------------------------------


def _spec(**extra: Any) -> ChatReleaseSpec:
    return ChatReleaseSpec.model_validate(spec(**extra))


def _owned(active: str = "blue", revision: str = "r1") -> tuple[Owned, ...]:
    objects: list[Owned] = []
    for c in ("api", "web"):
        for color in ("blue", "green"):
            objects.append(Owned("Deployment", f"chat-{c}-{color}", c, color, revision=revision))  # type: ignore[arg-type]
            objects.append(Owned("Service", f"chat-{c}-{color}", c, None))
        objects.append(Owned("Service", f"chat-{c}", c, None))
    return tuple(objects)


MID_CANARY = ChatReleaseStatus(
    active_color="blue", stable_revision="r1", canary_revision="r2", canary_weight=25
)
AT_25 = {"api": {"blue": 75, "green": 25}, "web": {"blue": 75, "green": 25}}
ALL_BLUE = {"api": {"blue": 100, "green": 0}, "web": {"blue": 100, "green": 0}}


def _names(objects: tuple[Owned, ...]) -> set[str]:
    return {f"{o.kind}/{o.name}" for o in objects}


@pytest.mark.parametrize(
    ("extra", "status", "weights", "terminating", "expected"),
    [
        pytest.param(
            {},
            MID_CANARY,
            AT_25,
            False,
            {"traffic": SetTraffic("green", 0), "keep": set(), "remove": set(), "waits": True},
            id="mid-canary: traffic back to stable first, nothing released yet",
        ),
        pytest.param(
            {},
            MID_CANARY,
            ALL_BLUE,
            False,
            {
                "traffic": None,
                "finalize": FinalizeTraffic("blue"),
                "keep": {
                    "Deployment/chat-api-blue",
                    "Deployment/chat-web-blue",
                    *(
                        f"Service/chat-{c}{s}"
                        for c in ("api", "web")
                        for s in ("", "-blue", "-green")
                    ),
                },
                "remove": {"Deployment/chat-api-green", "Deployment/chat-web-green"},
                "waits": False,
            },
            id="traffic on stable: the live color and every Service kept, the canary goes",
        ),
        pytest.param(
            {},
            MID_CANARY,
            {},
            False,
            {"traffic": None, "finalize": FinalizeTraffic("blue"), "waits": False},
            id="a router that shows nothing (route gone) does not hold the deletion",
        ),
        pytest.param(
            {"deletionPolicy": "Delete"},
            MID_CANARY,
            AT_25,
            False,
            {"traffic": None, "keep": set(), "remove": "all", "waits": False},
            id="deletionPolicy Delete: everything goes",
        ),
        pytest.param(
            {},
            MID_CANARY,
            AT_25,
            True,
            {"traffic": None, "keep": set(), "remove": set(), "waits": False},
            id="terminating namespace: nothing can be done, nothing waits",
        ),
    ],
)
def test_a_deletion_moves_traffic_back_then_keeps_the_live_version(
    extra: dict[str, Any],
    status: ChatReleaseStatus,
    weights: dict[str, dict[str, int]],
    terminating: bool,
    expected: dict[str, Any],
) -> None:
    owned = _owned()
    plan = teardown(_spec(**extra), status, owned, weights, terminating)  # type: ignore[arg-type]
    assert plan.traffic == expected["traffic"]
    if "finalize" in expected:
        assert plan.finalize == expected["finalize"]
    if "keep" in expected:
        assert _names(plan.keep) == expected["keep"]
    if "remove" in expected:
        want = _names(owned) if expected["remove"] == "all" else expected["remove"]
        assert _names(plan.remove) == want
    assert (plan.waiting is not None) == expected["waits"]


def test_a_rolling_update_deleted_mid_flight_goes_back_to_the_stable_template() -> None:
    status = ChatReleaseStatus(active_color="blue", stable_revision="r1", canary_revision="r2")
    owned = tuple(o for o in _owned(revision="r2") if o.color != "green")
    plan = teardown(_spec(strategy={"rolling": {}}, trafficRouting=None), status, owned, {}, False)
    assert set(plan.restore) == {
        RestoreRevision("api", "blue", "r1"),
        RestoreRevision("web", "blue", "r1"),
    }
    assert {o.name for o in plan.keep} >= {"chat-api-blue", "chat-web-blue"}


def test_traffic_that_cannot_move_back_keeps_both_colors() -> None:
    plan = teardown(_spec(), MID_CANARY, _owned(), AT_25, False, traffic_stuck="route refused")
    assert plan.remove == () and len(plan.keep) == len(_owned()) and plan.waiting is None
    assert "route refused" in plan.summary
