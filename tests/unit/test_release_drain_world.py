"""Drains and costs through the real decision core (`decide`), in the small world of
`release_world`: what a user sees of the old color's pods wave by wave, of a paused
drain, and of what a release cost in status and history."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from chatops.errors import MetricsUnavailable
from chatops.release.model import ScaleDeployment
from release_world import World, component, released, spec

DRAINED_CANARY = {
    "canary": {
        "steps": [{"setWeight": 50}, {"pause": {"duration": "10s"}}, {"setWeight": 100}],
        "scaleDownDelaySeconds": 5,
        "abortScaleDownDelaySeconds": 5,
        "drain": {"waves": 3, "interval": "10s"},
    }
}


def three_pods(strategy: dict[str, Any], **extra: Any) -> World:
    body = spec(strategy=strategy, **extra)
    body["components"] = [component("api", "chat-api:1.0", replicas=3),
                          component("web", "chat-web:1.0", replicas=3)]
    return released(World(body))


def old_color_pods(world: World) -> list[int]:
    """The old (blue) api Deployment's replicas after each scale the decisions asked."""
    return [a.replicas for a in world.actions
            if isinstance(a, ScaleDeployment) and a.component == "api" and a.color == "blue"
            and a.replicas < 3]


def test_a_promoted_canary_drains_the_old_color_one_wave_at_a_time() -> None:
    world = three_pods(DRAINED_CANARY)
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Promoting")
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert old_color_pods(world) == [2, 1, 0]
    waves = [m for r, m in world.events if r == "DrainWave"]
    assert len(waves) == 3 and waves[0].startswith("wave 1/3 of the drain of blue: api to 2")
    assert world.replicas("blue") == {"api": 0, "web": 0}
    assert world.status.scale_down is None


def test_a_reconnect_storm_pauses_the_drain_until_reconnects_recover() -> None:
    world = three_pods(DRAINED_CANARY)
    world.release("1.1")
    world.run_until(lambda w: (w.status.scale_down is not None and w.status.scale_down.wave == 1
                               and w.status.scale_down.wave_done_at is not None))
    world.reconnect_success = 0.5
    world.run_until(lambda w: w.status.scale_down is not None
                    and w.status.scale_down.paused is not None)
    for _ in range(20):  # the storm goes on: no pod more goes
        world.tick()
    assert world.replicas("blue") == {"api": 2, "web": 2}
    assert world.status.phase == "Promoting"
    assert "paused: reconnect storm on api: 0.5 < min 0.99" in (world.status.message or "")
    assert [r for r, _ in world.events].count("DrainPaused") == 1
    world.reconnect_success = 1.0
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert "DrainResumed" in [r for r, _ in world.events]
    assert old_color_pods(world) == [2, 1, 0]


def test_prometheus_down_holds_the_drain_and_a_human_can_cut_the_rest() -> None:
    world = three_pods(DRAINED_CANARY)
    world.release("1.1")
    world.run_until(lambda w: w.status.scale_down is not None and w.status.scale_down.wave == 1)
    world.reconnect_success = MetricsUnavailable("http://prometheus", "connection refused")
    world.run_until(lambda w: w.status.scale_down is not None
                    and w.status.scale_down.paused is not None)
    assert "cannot check reconnects" in (world.status.scale_down.paused or "")  # type: ignore[union-attr]
    assert world.replicas("blue") == {"api": 2, "web": 2}
    world.annotations["chatops.dev/promote"] = "full"
    world.run_until(lambda w: w.status.phase == "Succeeded", ticks=10)
    assert "DrainCut" in [r for r, _ in world.events]
    assert "chatops.dev/promote" not in world.annotations


def test_without_drain_the_old_color_goes_in_one_cut_after_the_delay() -> None:
    strategy = copy.deepcopy(DRAINED_CANARY)
    del strategy["canary"]["drain"]
    world = three_pods(strategy)
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Promoting")
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert old_color_pods(world) == [0]
    assert not [r for r, _ in world.events if r.startswith("Drain")]


def test_a_rollback_drains_the_canary_in_waves_too() -> None:
    world = three_pods(DRAINED_CANARY)
    world.prometheus.values["green"] = 0.5  # the analysis fails the canary
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "RolledBack")
    world.run_until(lambda w: w.status.scale_down is None)
    green = [a.replicas for a in world.actions if isinstance(a, ScaleDeployment)
             and a.component == "api" and a.color == "green" and a.replicas < 3]
    assert green == [2, 1, 0]


def test_the_cost_of_a_rolled_back_release_is_final_in_its_history_entry() -> None:
    world = three_pods(DRAINED_CANARY, cost={"settle": "3s"})
    world.prometheus.values["green"] = 0.5
    world.release("1.1")
    world.run_until(lambda w: w.status.cost is not None and w.status.cost.counted_at is not None)
    live = world.status.cost
    assert live is not None and live.until is None and live.requests == 200
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert world.status.cost is None
    world.run_until(lambda w: w.status.history[-1].cost is not None
                    and w.status.history[-1].cost.final)
    entry = world.status.history[-1]
    assert entry.result == "RolledBack" and entry.cost is not None
    cost = entry.cost
    assert (cost.requests, cost.failed_requests, cost.websockets_moved,
            cost.websockets_dropped) == (200, 20, 100, 0)
    assert cost.color == "green" and cost.since == entry.started_at
    # the window ends when the canary is gone (its drain over), counted at that end
    last = world.cost_windows[-1]
    assert cost.until is not None and last.until.isoformat().startswith(cost.until[:19])
    assert cost.counted_until == cost.until
    ticks = len(world.cost_windows)
    for _ in range(10):
        world.tick()
    assert len(world.cost_windows) == ticks  # final: never asked again


def test_a_prometheus_outage_leaves_the_cost_unknown_never_zero() -> None:
    world = three_pods(DRAINED_CANARY, cost={"settle": "3s"})
    world.cost_answer = MetricsUnavailable("http://prometheus", "connection refused")
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Promoting")
    world.run_until(lambda w: w.status.phase == "Succeeded")
    entry = world.status.history[-1]
    assert entry.result == "Succeeded" and entry.cost is not None
    assert entry.cost.requests is None and entry.cost.failed_requests is None
    assert not entry.cost.final and "connection refused" in (entry.cost.problem or "")
    world.cost_answer = 7  # Prometheus back: the window is counted at its end
    world.run_until(lambda w: w.status.history[-1].cost is not None
                    and w.status.history[-1].cost.final)
    final = world.status.history[-1].cost
    assert final is not None and final.requests == 14 and final.problem is None


def _replaced_when_the_window_ends(world: World, color: str, version: str) -> None:
    """Run the world until `version` runs on `color`: not before the end of the drain
    window the release waits for (status.scale_down), at the first look after it."""
    drain = world.status.scale_down
    assert drain is not None and drain.color == color and drain.since is not None, drain
    due = max(datetime.datetime.fromisoformat(drain.at),
              datetime.datetime.fromisoformat(drain.since)
              + datetime.timedelta(seconds=drain.delay_seconds))
    before = {k: d for k, d in world.deployments.items() if k[1] == color}
    while world.deployments[("api", color)].images.get("api") != f"chat-api:{version}":
        assert {k: d for k, d in world.deployments.items() if k[1] == color} == before, (
            "the draining color's pods were replaced before its window ended")
        assert world.status.phase == "Progressing", world.status
        assert world.now < due + datetime.timedelta(seconds=1), world.status.message
        world.tick()
    assert world.now >= due
    assert world.deployments[("api", color)].revision == world.status.canary_revision
    assert world.status.scale_down is None  # the rollout ended the drain


def test_a_release_right_after_a_rollback_replaces_the_canary_pods_after_their_window() -> None:
    """The router may still send the rolled-back canary requests for a while (it applies
    a route change late): a new version on that color waits for its drain window, as a
    scale-down would, before its rollout replaces those pods."""
    world = three_pods(DRAINED_CANARY)
    world.prometheus.values["green"] = 0.5
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Degraded")  # rolling back
    world.prometheus.values["green"] = 0.0
    world.release("1.2")
    world.tick()
    assert "keep serving what the router still sends them" in (world.status.message or "")
    assert world.status.release_started_at is None and world.status.cost is None
    _replaced_when_the_window_ends(world, "green", "1.2")
    started = world.status.release_started_at
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.status.stable_version and "chat-api:1.2" in world.status.stable_version
    entry = world.status.history[-1]
    # the new version's clock and cost window start with its pods, not before
    assert entry.started_at == started and entry.cost is not None
    assert entry.cost.since == started


def test_a_release_right_after_a_promotion_replaces_the_old_pods_only_after_their_window() -> None:
    world = three_pods(DRAINED_CANARY)
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Promoting")
    world.release("1.2")  # onto blue, whose 1.0 pods are draining
    world.tick()
    _replaced_when_the_window_ends(world, "blue", "1.2")
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.status.active_color == "blue"
