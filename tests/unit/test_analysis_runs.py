"""Analysis runs through the decision core (issue 8, cases 1 and 5): the limits are judged
from counters per run, exact however long the run, and what status keeps for people
shows every component; pauses and drains last at least what the spec says."""

from __future__ import annotations

import datetime
from typing import Any

from chatops.api.analysis import Measurement
from chatops.api.release import ChatReleaseSpec
from chatops.release import status as st
from chatops.release.model import ScaleDeployment
from release_world import CANARY, World, component, released, spec

LONG_PAUSE = {
    "canary": {
        "steps": [{"setWeight": 10}, {"pause": {"duration": "60s"}}, {"setWeight": 100}],
        "scaleDownDelaySeconds": 20,
    }
}


def two_metrics(**limits: Any) -> dict[str, Any]:
    return {
        "interval": "1s",
        **limits,
        "metrics": [
            {"name": "error-rate", "query": 'errors{service="{{service}}"}', "max": 0.01},
            {"name": "latency", "query": 'latency{service="{{service}}"}', "max": 0.5},
        ],
    }


def in_pause(world: World) -> World:
    world.release("1.1")
    world.run_until(lambda w: (w.status.current_step or 0) == 1 and w.status.step_started_at)
    return world


def test_failures_in_separate_rounds_of_a_long_pause_roll_back() -> None:
    """Four failing rounds spread over a pause of 60 rounds, with 2 components x 2
    metrics: far more measurements than status keeps between failures."""
    world = released(World(spec(strategy=LONG_PAUSE, analysis=two_metrics(failureLimit=1))))
    in_pause(world)
    for n in range(70):
        world.prometheus.values["green"] = 0.5 if n % 20 == 3 else 0.0
        world.tick()
        if world.status.phase == "RolledBack":
            break
    assert world.status.phase == "RolledBack", world.status.message
    assert "error-rate on api failed 2 time(s)" in (world.status.message or "")


def test_an_outage_longer_than_the_kept_measurements_rolls_back() -> None:
    world = released(
        World(spec(strategy=LONG_PAUSE, analysis=two_metrics(consecutiveErrorLimit=24)))
    )
    in_pause(world)
    world.prometheus.values["green"] = RuntimeError("connection refused")
    for _ in range(80):
        world.tick()
        if world.status.phase == "RolledBack":
            break
    assert world.status.phase == "RolledBack", world.status.message
    assert "errored 25 time(s) in a row" in (world.status.message or "")
    assert len(world.status.analysis) <= st.KEEP_MEASUREMENTS


def test_the_counters_of_a_pause_are_in_status_and_start_again_at_the_next_step() -> None:
    world = released(World(spec(strategy=CANARY)))
    in_pause(world)
    world.run_until(lambda w: w.status.analysis_run is not None and w.status.analysis_run.rounds)
    run = world.status.analysis_run
    assert run is not None and run.started_at == world.status.analysis_started_at
    assert {(c.metric, c.component, c.failed) for c in run.metrics} == {
        ("error-rate", "api", 0),
        ("error-rate", "web", 0),
    }
    world.run_until(lambda w: (w.status.current_step or 0) == 3)
    new = world.status.analysis_run
    assert new is None or new.started_at != run.started_at


def test_every_component_shows_its_latest_measurements_with_ten_components_and_seven_metrics() -> (
    None
):
    components = [component(f"c{i}", f"img{i}:1.0") for i in range(10)]
    metrics = [{"name": f"m{j}", "query": f"q{j}", "max": 1} for j in range(7)]
    parsed = ChatReleaseSpec.model_validate(
        {**spec(), "components": components, "analysis": {"metrics": metrics}}
    )
    rounds = [
        Measurement(
            metric=f"m{j}",
            component=f"c{i}",
            query="q",
            verdict="Pass",
            time=f"2026-11-26T12:00:{n:02d}Z",
        )
        for n in range(3)
        for i in range(10)
        for j in range(7)
    ]
    kept = st.kept_measurements(rounds, parsed)
    assert len(kept) == 70
    assert {(m.metric, m.component) for m in kept} == {
        (f"m{j}", f"c{i}") for i in range(10) for j in range(7)
    }
    assert {m.time for m in kept} == {"2026-11-26T12:00:02Z"}
    # With few components the most recent others fill the rest, oldest first.
    two = parsed.model_copy(update={"components": parsed.components[:2]})
    many = [
        m.model_copy(update={"time": f"2026-11-26T12:01:{n:02d}Z"})
        for n in range(10)
        for m in rounds[:14]
    ]
    assert st.kept_measurements(many, two) == many[-st.KEEP_MEASUREMENTS :]


def test_a_pause_starts_when_the_router_shows_its_weight() -> None:
    world = released(World(spec(strategy=LONG_PAUSE)))
    world.release("1.1")
    world.run_until(lambda w: w.serving().get("api") == {"green": 10, "blue": 90})
    assert world.status.current_step == 0  # set, not yet seen
    looked_at = world.now
    world.tick()
    assert world.status.current_step == 1 and world.status.step_started_at is not None
    assert datetime.datetime.fromisoformat(world.status.step_started_at) == looked_at


def _scaled_down_at(world: World) -> datetime.datetime:
    for _ in range(100):
        at = world.now
        decision = world.tick()
        if any(isinstance(a, ScaleDeployment) and a.replicas == 0 for a in decision.actions):
            return at
    raise AssertionError("never scaled down")


def test_the_drain_counts_from_when_the_router_shows_no_traffic_on_the_old_color() -> None:
    world = released(World(spec(strategy=LONG_PAUSE)))
    world.release("1.1")
    world.run_until(lambda w: w.serving().get("api") == {"green": 100})
    shown_at = world.now  # the look that sees it promotes: the drain starts there
    world.tick()
    drain = world.status.scale_down
    assert world.status.phase == "Promoting" and drain is not None
    assert drain.delay_seconds == 20 and drain.since is not None
    assert datetime.datetime.fromisoformat(drain.since) == shown_at
    assert _scaled_down_at(world) - shown_at >= datetime.timedelta(seconds=20)


def test_a_rolled_back_canary_runs_its_whole_delay_after_its_traffic_left() -> None:
    strategy = {"canary": {**LONG_PAUSE["canary"], "abortScaleDownDelaySeconds": 15}}
    world = released(World(spec(strategy=strategy)))
    world.release("1.1")
    world.run_until(lambda w: w.status.current_step == 1)
    world.annotations["chatops.dev/abort"] = ""
    world.tick()
    drain = world.status.scale_down
    assert world.status.phase == "Degraded" and drain is not None and drain.since is None
    world.run_until(lambda w: w.serving().get("api") == {"blue": 100})
    left_at = world.now  # the next look is the first to see it
    assert _scaled_down_at(world) - left_at >= datetime.timedelta(seconds=15)


def _dry_run_spec(*, deciding: bool) -> dict[str, Any]:
    """A new latency query tried in dryRun (max 0.5) beside the error rate that decides
    (max 1.0; or none that decides)."""
    metrics = [
        *([{"name": "error-rate", "query": 'errors{service="{{service}}"}', "max": 1.0}]
          if deciding else []),
        {"name": "latency-try", "query": 'latency{service="{{service}}"}', "max": 0.5,
         "dryRun": True},
    ]
    return spec(strategy=LONG_PAUSE, analysis={"interval": "5s", "metrics": metrics})


def test_a_dry_run_metric_failing_every_round_is_shown_and_never_decides() -> None:
    world = released(World(_dry_run_spec(deciding=True)))
    world.prometheus.values["green"] = 0.6  # over the dryRun max, under the deciding one
    world.release("1.1")
    world.tick()
    seen: list[Measurement] = []
    while world.status.phase != "Succeeded":
        assert world.status.phase in ("Progressing", "Paused", "Promoting"), world.status.message
        world.tick()
        seen += [m for m in (world.status.analysis or []) if m.metric == "latency-try"]
    assert world.status.history[-1].result == "Succeeded"
    assert seen and all(m.verdict == "Fail" and m.dry_run for m in seen)
    assert "chat-api:1.1" in (world.status.stable_version or "")


def test_a_release_whose_only_metric_is_dry_run_promotes_once_it_was_measured() -> None:
    world = released(World(_dry_run_spec(deciding=False)))
    world.prometheus.values["green"] = 0.9
    world.release("1.1")
    world.run_until(lambda w: w.status.analysis_run is not None
                    and w.status.analysis_run.rounds > 0)
    run = world.status.analysis_run
    assert run is not None
    counted = {(c.metric, c.component): c for c in run.metrics}
    assert counted[("latency-try", "api")].failed >= 1 and counted[("latency-try", "api")].dry_run
    world.run_until(lambda w: w.status.phase in ("Succeeded", "RolledBack"))
    assert world.status.phase == "Succeeded", world.status.message


def _against_stable() -> dict[str, Any]:
    metrics = [{"name": "p95-vs-stable", "query": 'p95{service="{{service}}"}', "max": 1.5,
                "compareToStable": True}]
    return spec(strategy=LONG_PAUSE, analysis={"interval": "5s", "metrics": metrics})


def test_a_canary_within_its_ratio_of_the_stable_promotes_and_one_past_it_rolls_back() -> None:
    world = released(World(_against_stable()))
    world.prometheus.values.update(blue=0.4, green=0.5)  # 1.25 x stable: within 1.5
    world.release("1.1")
    world.run_until(lambda w: w.status.canary_revision is not None)
    world.run_until(lambda w: w.status.phase in ("Succeeded", "RolledBack"))
    assert world.status.phase == "Succeeded", world.status.message
    assert world.status.active_color == "green"
    # the next one is judged against the version it replaces: now green's 0.5
    world.prometheus.values.update(blue=0.8, green=0.5)  # blue is the canary: 1.6 x
    world.release("1.2")
    world.run_until(lambda w: w.status.canary_revision is not None)
    world.run_until(lambda w: w.status.phase in ("Succeeded", "RolledBack"))
    assert world.status.phase == "RolledBack", world.status.message
    assert "0.8 > max 0.75 (max 1.5 times stable 0.5)" in (world.status.message or "")
