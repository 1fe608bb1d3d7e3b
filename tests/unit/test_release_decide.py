"""The release decision core, transition by transition, in a world that does what the
actions ask. Each test is a story a user of the release would tell."""

from __future__ import annotations

import datetime
from dataclasses import replace

from chatops.release.decide import decide
from chatops.release.model import (
    ApplyDeployment,
    DeploymentState,
    FinalizeTraffic,
    ScaleDeployment,
    SetTraffic,
)
from chatops.release.revision import revision
from release_world import T0, World, released, spec


def test_first_release_goes_straight_to_blue_with_all_traffic() -> None:
    world = World(spec())
    world.tick()
    assert world.status.phase == "Progressing" and world.status.active_color == "blue"
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.serving() == {"api": {"blue": 100}, "web": {"blue": 100}}
    assert world.status.stable_version == "chat-api:1.0,chat-web:1.0"
    assert [h.result for h in world.status.history] == ["Succeeded"]
    ready = {c.type: c.status for c in world.status.conditions}
    assert ready == {
        "Accepted": "True",
        "Progressing": "False",
        "Complete": "True",
        "Ready": "True",
    }


def test_first_release_never_available_fails_at_the_deadline() -> None:
    world = World(spec(progressDeadlineSeconds=60))
    world.broken.add(revision(world.parsed))
    world.run_until(lambda w: w.status.phase == "Failed")
    assert "progressDeadlineSeconds (60 s)" in (world.status.message or "")
    assert world.now >= T0 + datetime.timedelta(seconds=60)
    assert world.serving() == {}


def test_healthy_canary_walks_every_step_then_promotes_and_drains() -> None:
    world = released(World(spec()))
    world.release("1.1")
    seen: list[int | None] = []
    for _ in range(100):
        world.tick()
        if world.status.canary_weight not in seen and world.status.canary_revision:
            seen.append(world.status.canary_weight)
        assert world.traffic_only_on_available()
        assert world.replicas("blue") == {"api": 2, "web": 2}  # stable never scaled down
        if world.status.phase == "Promoting":
            break
    assert seen == [0, 10, 50]
    assert world.status.active_color == "green"
    assert world.serving() == {"api": {"green": 100}, "web": {"green": 100}}
    assert world.replicas("blue") == {"api": 2, "web": 2}  # still draining WebSockets
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.replicas("blue") == {"api": 0, "web": 0}
    assert world.status.stable_version == "chat-api:1.1,chat-web:1.1"
    assert any(isinstance(a, FinalizeTraffic) for a in world.actions)
    assert [h.result for h in world.status.history] == ["Succeeded", "Succeeded"]
    reasons = [r for r, _ in world.events]
    assert reasons.index("ReleaseStarted") < reasons.index("WeightSet") < reasons.index("Promoted")


def test_no_data_never_passes_a_pause_and_rolls_back_past_the_error_limit() -> None:
    world = released(World(spec()))
    world.release("1.1")
    world.prometheus.values["green"] = None  # no data: an error, never a pass
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert [r for r, _ in world.events].count("WeightSet") == 1  # never past 10 %
    assert "errored 5 time(s) in a row, more than consecutiveErrorLimit 4" in (
        world.status.message or ""
    )
    assert "no data (no series)" in (world.status.message or "")


def test_no_data_judged_inconclusive_pauses_for_a_human() -> None:
    body = spec()
    body["analysis"]["metrics"][0]["onNoData"] = "Inconclusive"
    world = released(World(body))
    world.release("1.1")
    world.prometheus.values["green"] = None
    world.run_until(lambda w: w.status.phase == "Paused")
    assert world.status.canary_weight == 10
    assert "inconclusive" in (world.status.message or "")
    assert world.status.analysis[-1].verdict == "Inconclusive"


def test_bad_canary_rolls_back_traffic_first_then_scales_down() -> None:
    world = released(World(spec()))
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 10)
    world.prometheus.values["green"] = 0.05
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert world.serving() == {"api": {"blue": 100}, "web": {"blue": 100}}
    assert world.replicas("green") == {"api": 2, "web": 2}  # abort delay not over yet
    failed = [m for m in world.status.analysis if m.verdict == "Fail"]
    assert failed and failed[-1].metric == "error-rate" and failed[-1].value == "0.05"
    assert any(r == "AnalysisFailed" and "error-rate" in m for r, m in world.events)
    world.run_until(lambda w: w.replicas("green") == {"api": 0, "web": 0})
    assert world.status.phase == "RolledBack" and world.status.history[-1].result == "RolledBack"
    assert world.status.stable_version == "chat-api:1.0,chat-web:1.0"


def test_rolled_back_revision_is_not_released_again_until_retry() -> None:
    world = released(World(spec()))
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 10)
    world.prometheus.values["green"] = 0.05
    world.run_until(lambda w: w.status.phase == "RolledBack")
    for _ in range(5):
        world.tick()
    assert world.status.phase == "RolledBack" and world.status.canary_revision is None
    world.prometheus.values["green"] = 0.0
    world.annotations["chatops.dev/retry"] = ""
    world.tick()
    assert world.status.phase == "Progressing" and "chatops.dev/retry" not in world.annotations
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.status.stable_version == "chat-api:1.1,chat-web:1.1"


def test_prometheus_unreachable_holds_and_never_promotes_then_resumes() -> None:
    world = released(
        World(
            spec(
                analysis={
                    "interval": "20s",
                    "consecutiveErrorLimit": 100,
                    "metrics": [{"name": "error-rate", "query": 'e{s="{{service}}"}', "max": 0.01}],
                }
            )
        )
    )
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 10)
    world.prometheus.values["green"] = ConnectionError("connection refused")
    for _ in range(30):
        world.tick()
        assert world.status.canary_weight == 10 and world.status.phase == "Progressing"
    assert "errored" in (world.status.message or "")
    world.prometheus.values["green"] = 0.0
    world.run_until(lambda w: w.status.phase == "Succeeded")


def test_errors_past_the_limit_abort() -> None:
    world = released(
        World(
            spec(
                analysis={
                    "interval": "20s",
                    "consecutiveErrorLimit": 2,
                    "metrics": [{"name": "error-rate", "query": 'e{s="{{service}}"}', "max": 0.01}],
                }
            )
        )
    )
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 10)
    world.prometheus.values["green"] = ConnectionError("connection refused")
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert "consecutiveErrorLimit 2" in (world.status.message or "")


def test_pause_without_duration_waits_for_promote_step() -> None:
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]
    world = released(World(spec(strategy={"canary": {"steps": steps}})))
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Paused")
    for _ in range(5):
        world.tick()
    assert world.status.canary_weight == 20 and world.status.phase == "Paused"
    world.annotations["chatops.dev/promote"] = "step"
    world.run_until(lambda w: w.status.canary_weight == 60)
    assert "chatops.dev/promote" not in world.annotations
    world.run_until(lambda w: w.status.phase == "Paused")
    world.annotations["chatops.dev/promote"] = "full"
    world.run_until(lambda w: w.status.phase in ("Promoting", "Succeeded"))
    assert world.status.active_color == "green"


def test_abort_mid_canary_rolls_back() -> None:
    world = released(World(spec()))
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 50)
    world.annotations["chatops.dev/abort"] = ""
    world.tick()
    # traffic back first; RolledBack once the router shows it
    assert world.serving() == {"api": {"blue": 100}, "web": {"blue": 100}}
    assert world.status.phase == "Degraded"
    assert "rolling back chat-api:1.1" in (world.status.message or "")
    world.tick()
    assert world.status.phase == "RolledBack"
    world.run_until(lambda w: "chatops.dev/abort" not in w.annotations)
    assert world.status.phase == "RolledBack"


def test_canary_that_never_becomes_available_rolls_back_at_the_deadline() -> None:
    world = released(World(spec(progressDeadlineSeconds=120)))
    world.release("1.1")
    world.broken.add(revision(world.parsed))
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert "progressDeadlineSeconds (120 s)" in (world.status.message or "")
    assert world.serving() == {"api": {"blue": 100}, "web": {"blue": 100}}


def test_scale_down_waits_until_traffic_has_left() -> None:
    world = released(World(spec()))
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Promoting")
    world.weights["api"] = {"green": 90, "blue": 10}  # the router has not caught up
    world.now += datetime.timedelta(minutes=5)
    decision = decide(world.observation())
    assert not any(
        isinstance(a, ScaleDeployment) and a.color == "blue" and a.replicas == 0
        for a in decision.actions
    )


def test_a_newer_version_mid_release_starts_over() -> None:
    world = released(World(spec()))
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 50)
    world.release("1.2")
    world.tick(advance=False)
    assert world.status.canary_weight == 0 and world.status.current_step == 0
    assert world.serving() == {"api": {"blue": 100}, "web": {"blue": 100}}  # before 1.2 runs
    assert world.status.canary_version == "chat-api:1.2,chat-web:1.2"
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.status.stable_version == "chat-api:1.2,chat-web:1.2"


def test_reverting_the_spec_mid_release_keeps_stable() -> None:
    world = released(World(spec()))
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 10)
    world.release("1.0")
    world.tick()
    assert world.status.phase == "Succeeded"
    # history names what was rolled back, not the version the spec went back to
    assert world.status.history[-1].images == {"api/api": "chat-api:1.1", "web/web": "chat-web:1.1"}
    assert world.serving() == {"api": {"blue": 100}, "web": {"blue": 100}}
    world.run_until(lambda w: w.replicas("green") == {"api": 0, "web": 0})


def test_blue_green_switches_watches_then_drains() -> None:
    strategy = {"blueGreen": {"postPromotionWindow": "60s", "scaleDownDelaySeconds": 30}}
    world = released(World(spec(strategy=strategy, trafficRouting={"service": {}})))
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 100)
    assert world.serving() == {"api": {"green": 100}, "web": {"green": 100}}
    assert world.status.active_color == "blue"  # blue stays the fallback during the window
    world.run_until(lambda w: w.status.phase == "Promoting")
    assert world.status.active_color == "green"
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.replicas("blue") == {"api": 0, "web": 0}


def test_blue_green_failing_in_the_window_switches_back() -> None:
    strategy = {"blueGreen": {"postPromotionWindow": "5m"}}
    world = released(World(spec(strategy=strategy, trafficRouting={"service": {}})))
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 100)
    world.prometheus.values["green"] = 0.2
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert world.serving() == {"api": {"blue": 100}, "web": {"blue": 100}}
    assert world.status.active_color == "blue"


def test_blue_green_without_auto_promote_waits_paused() -> None:
    strategy = {"blueGreen": {"autoPromote": False, "postPromotionWindow": "0s"}}
    world = released(World(spec(strategy=strategy, trafficRouting={"service": {}})))
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Paused")
    for _ in range(5):
        world.tick()
    assert world.serving() == {"api": {"blue": 100}, "web": {"blue": 100}}
    world.annotations["chatops.dev/promote"] = "step"
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.status.active_color == "green"


def test_health_and_smoke_gates_come_before_traffic() -> None:
    world = released(
        World(
            spec(
                smokeTest={
                    "template": {"spec": {"containers": [{"name": "smoke", "image": "curl"}]}}
                }
            )
        )
    )
    world.spec["components"][0]["healthCheck"] = {"path": "/healthz"}
    world.sick.add("green")
    world.release("1.1")
    for _ in range(10):
        world.tick()
    assert world.status.canary_weight == 0 and "health" in (world.status.message or "")
    world.sick.clear()
    world.smoke = "Running"
    world.run_until(lambda w: w.status.smoke_test_job is not None)
    for _ in range(3):
        world.tick()
    assert world.status.canary_weight == 0 and "smoke" in (world.status.message or "")
    world.smoke = "Failed"
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert "smoke test Job chat-smoke-" in (world.status.message or "")


def test_spec_paused_holds_the_release() -> None:
    world = released(World(spec()))
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 10)
    world.change(paused=True)
    world.run_until(lambda w: w.status.phase == "Paused")
    for _ in range(10):
        world.tick()
    assert world.status.canary_weight == 10
    world.change(paused=False)
    world.run_until(lambda w: w.status.phase == "Succeeded")


def test_rolling_updates_in_place_and_rolls_back_on_failure() -> None:
    strategy = {"rolling": {"analysisWindow": "60s"}}
    world = released(World(spec(strategy=strategy, trafficRouting=None)))
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Succeeded" and w.status.canary_revision is None)
    assert {d.revision for d in world.deployments.values()} == {world.status.stable_revision}
    assert all(c == "blue" for _, c in world.deployments)
    good = world.status.stable_revision
    world.release("1.2")
    world.prometheus.values["blue"] = 0.3
    world.run_until(lambda w: w.status.phase == "RolledBack")
    world.tick()
    assert {d.revision for d in world.deployments.values()} == {good}


def test_a_rolling_rollback_is_not_rolled_back_while_a_pod_of_the_version_it_left_runs() -> None:
    """The Deployment back on the stable template, its new pods all available, one pod
    of the bad version not yet gone (`status.replicas` 3 of 2): still Degraded."""
    world = released(World(spec(strategy={"rolling": {"analysisWindow": "60s"}},
                                trafficRouting=None)))
    world.release("1.1")
    world.prometheus.values["blue"] = 0.3
    world.run_until(lambda w: w.status.phase == "Degraded")
    world.tick()  # the stable template applied again, rolled out at once in this world
    key = ("api", "blue")
    world.deployments[key] = replace(world.deployments[key], total=3)
    world.tick(advance=False)
    assert world.status.phase == "Degraded", world.status.message
    assert "waiting for api-blue" in (world.status.message or "")
    world.deployments[key] = replace(world.deployments[key], total=2)
    world.tick(advance=False)
    assert world.status.phase == "RolledBack", world.status.message


def test_stable_version_losing_pods_is_degraded() -> None:
    world = released(World(spec()))
    world.deployments[("api", "blue")] = world.deployments[("api", "blue")].__class__(
        component="api",
        color="blue",
        revision=world.status.stable_revision,
        replicas=2,
        available=1,
        updated=2,
    )
    world.tick(advance=False)
    assert world.status.phase == "Degraded" and "api-blue 1/2" in (world.status.message or "")


def test_replicas_change_is_not_a_release() -> None:
    world = released(World(spec()))
    world.spec["components"][0]["replicas"] = 5
    world.tick()
    assert world.status.phase == "Succeeded" and world.status.canary_revision is None
    assert world.replicas("blue")["api"] == 5
    assert not any(isinstance(a, ApplyDeployment) and a.color == "green" for a in world.actions)


def test_a_new_version_after_a_failed_first_release_gets_its_own_deadline() -> None:
    world = World(spec(progressDeadlineSeconds=60))
    world.broken.add(revision(world.parsed))
    world.run_until(lambda w: w.status.phase == "Failed")
    world.release("1.1")
    world.tick()
    assert world.status.phase == "Progressing"
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.status.stable_version == "chat-api:1.1,chat-web:1.1"


def test_a_promote_left_over_from_an_earlier_release_is_dropped() -> None:
    world = released(World(spec()))
    world.annotations["chatops.dev/promote"] = "full"
    world.tick()
    assert "chatops.dev/promote" not in world.annotations
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 10)
    assert world.status.phase == "Progressing" and world.status.current_step == 1


def _quiesce(world: World, by: str | None) -> None:
    for key, d in list(world.deployments.items()):
        world.deployments[key] = DeploymentState(
            component=d.component,
            color=d.color,
            revision=d.revision,
            replicas=0 if by else 2,
            available=0 if by else 2,
            updated=d.updated,
            quiesced_by=by,
        )


def test_a_restore_holds_the_release_and_nothing_scales_the_app_back() -> None:
    world = released(World(spec()))
    _quiesce(world, "ns/restore-1")
    for _ in range(5):
        decision = world.tick()
        assert decision.actions == ()
    assert world.status.phase == "Paused" and "ChatRecovery ns/restore-1" in (
        world.status.message or ""
    )
    _quiesce(world, None)
    world.tick()
    assert world.status.phase == "Succeeded"


def test_a_rolled_back_release_is_still_rolled_back_after_a_restore() -> None:
    world = released(World(spec()))
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 10)
    world.prometheus.values["green"] = 0.05
    world.run_until(lambda w: w.status.phase == "RolledBack")
    world.run_until(lambda w: w.replicas("green") == {"api": 0, "web": 0})
    _quiesce(world, "ns/restore-1")
    world.tick()
    _quiesce(world, None)
    world.tick()
    assert world.status.phase == "RolledBack" and "error-rate" in (world.status.message or "")


def test_the_next_weight_is_asked_in_the_look_that_ends_a_pause_and_recorded_once_shown() -> None:
    world = released(World(spec()))
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_weight == 10)
    decision = world.tick()
    while SetTraffic("green", 50) not in decision.actions:
        decision = world.tick()
    # the look that ended the pause asked for 50 %, but the router has not shown it yet
    assert world.status.canary_weight == 10 and world.status.current_step == 2
    assert "setting 50%" in (world.status.message or "")
    world.tick()
    assert world.status.canary_weight == 50 and world.status.current_step == 3
