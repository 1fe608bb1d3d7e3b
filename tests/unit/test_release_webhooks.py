"""Release gates as webhooks (issue 12, part 2): pre-rollout before any traffic moves,
confirm-promotion holding the last step, rollback called on every rollback — told as
stories in the release world, whose endpoints answer what a test sets."""

from __future__ import annotations

import datetime
import itertools
from typing import Any

import pytest
from pydantic import ValidationError

from chatops.annotations import PROMOTE, RETRY
from chatops.api.release import ChatReleaseSpec
from chatops.release import webhooks
from chatops.release.model import SetTraffic
from release_world import World, released, spec

BLUE_GREEN = {"blueGreen": {"autoPromote": True, "postPromotionWindow": "30s"}}


def hook(name: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "url": f"http://hooks.test/{name}", **extra}


def weights_to(world: World, color: str) -> list[int]:
    return [a.weight for a in world.actions if isinstance(a, SetTraffic) and a.canary == color]


def calls_of(world: World, name: str) -> list[dict[str, Any]]:
    return [dict(c.payload) for c in world.calls if c.hook.name == name]


def held_for_confirmation() -> World:
    """Version 1.1 on its way, held by a confirm-promotion webhook answering 403."""
    world = released(World(spec(webhooks=[hook("approve", "confirm-promotion")])))
    world.hooks["approve"] = "HTTP 403"
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Paused")
    return world


def test_a_failing_pre_rollout_webhook_holds_all_traffic_until_it_answers() -> None:
    world = released(World(spec(webhooks=[hook("load-test", "pre-rollout",
                                                failureLimit=100)])))
    world.hooks["load-test"] = "HTTP 503"
    world.release("1.1")
    world.run_until(lambda w: len(calls_of(w, "load-test")) >= 4)
    assert world.status.phase == "Progressing"
    assert "waiting for pre-rollout webhooks: load-test: HTTP 503" in (world.status.message or "")
    assert not any(weights_to(world, "green")), "traffic moved before the gate passed"
    assert ("WebhookFailed", "pre-rollout webhook load-test failed: HTTP 503") in world.events
    world.hooks["load-test"] = None
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert weights_to(world, "green")[-1] == 100
    passed = [c for c in world.status.webhooks if c.name == "load-test"]
    assert [(c.passed, c.failures) for c in passed] == [(True, passed[0].calls - 1)]
    # called until it passed, never after: the later steps did not ask again
    assert len(calls_of(world, "load-test")) == passed[0].calls


def test_failed_calls_are_spaced_by_the_retry_interval() -> None:
    world = released(World(spec(webhooks=[hook("gate", "pre-rollout", failureLimit=100)])))
    world.hooks["gate"] = "no answer within 10 s"
    world.release("1.1")
    stamps: list[datetime.datetime] = []
    for _ in range(60):
        before = len(world.calls)
        world.tick()
        if len(world.calls) > before:
            stamps.append(world.now)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert len(gaps) >= 3 and min(gaps) >= webhooks.RETRY


def test_a_pre_rollout_webhook_failing_past_its_limit_rolls_back_and_calls_rollback() -> None:
    world = released(World(spec(webhooks=[
        hook("gate", "pre-rollout", failureLimit=2),
        hook("page-oncall", "rollback", metadata={"team": "chat"}),
    ])))
    world.hooks["gate"] = "HTTP 500"
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "RolledBack")
    revision = world.status.aborted_revision
    assert len(calls_of(world, "gate")) == 3  # failureLimit 2: the third failure rolls back
    assert not any(weights_to(world, "green")), "a rollback before traffic moved any"
    last = world.status.history[-1]
    assert last.result == "RolledBack" and "pre-rollout webhook gate failed 3 times" in last.message
    assert any(reason == "PreRolloutWebhookFailed" for reason, _ in world.events)
    world.run_until(lambda w: bool(calls_of(w, "page-oncall")))
    (sent,) = calls_of(world, "page-oncall")
    assert sent["apiVersion"] == "chatops.dev/webhook/v1"
    assert (sent["type"], sent["release"], sent["namespace"], sent["revision"]) == (
        "rollback", "chat", "ns", revision)
    assert sent["metadata"] == {"team": "chat"}
    assert "pre-rollout webhook gate failed" in sent["message"]
    assert sent["version"] == "chat-api:1.1,chat-web:1.1", "the version rolled back"
    for _ in range(20):
        world.tick()
    assert len(calls_of(world, "page-oncall")) == 1, "a rollback webhook is called once"


def test_a_rollback_webhook_that_fails_is_retried_to_its_limit_and_never_holds() -> None:
    world = released(World(spec(webhooks=[hook("notify", "rollback", failureLimit=2)])))
    world.hooks["notify"] = "HTTP 502"
    world.prometheus.values["green"] = 0.5  # the canary fails its analysis
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "RolledBack")
    for _ in range(40):
        world.tick()
    assert world.status.phase == "RolledBack"
    assert len(calls_of(world, "notify")) == 3
    # traffic was back on the stable color before the first call
    assert world.serving() == {"api": {"blue": 100}, "web": {"blue": 100}}


def test_confirm_promotion_holds_before_all_traffic_moves_with_the_analysis_running() -> None:
    world = held_for_confirmation()
    assert "waiting for confirm-promotion webhooks: approve: HTTP 403" in (
        world.status.message or "")
    held_at = weights_to(world, "green")[-1]
    assert held_at == 50, "held before the step that gives it all traffic"
    rounds = world.status.analysis_run.rounds if world.status.analysis_run else 0
    for _ in range(30):
        world.tick()
    assert world.status.phase == "Paused" and world.status.stable_version == (
        "chat-api:1.0,chat-web:1.0")
    assert weights_to(world, "green")[-1] == held_at
    run = world.status.analysis_run
    assert run is not None and run.rounds > rounds, "the analysis stopped while held"
    world.hooks["approve"] = None
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.status.stable_version == "chat-api:1.1,chat-web:1.1"


def test_a_failing_analysis_rolls_back_a_release_held_for_confirmation() -> None:
    world = held_for_confirmation()
    world.prometheus.values["green"] = 0.5
    world.run_until(lambda w: w.status.phase == "RolledBack")
    assert world.status.stable_version == "chat-api:1.0,chat-web:1.0"


def test_a_full_promote_confirms_in_place_of_the_webhook() -> None:
    world = held_for_confirmation()
    world.annotations[PROMOTE] = "full"
    world.run_until(lambda w: w.status.phase == "Succeeded")
    (call,) = [c for c in world.status.webhooks if c.name == "approve"]
    assert call.passed and call.message == "confirmed by chatops.dev/promote"


def test_blue_green_confirm_promotion_holds_the_switch() -> None:
    world = released(World(spec(strategy=BLUE_GREEN,
                                webhooks=[hook("approve", "confirm-promotion")])))
    world.hooks["approve"] = "HTTP 409"
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Paused")
    for _ in range(10):
        world.tick()
    assert not any(weights_to(world, "green")), "switched before confirmation"
    assert "waiting for confirm-promotion webhooks: approve: HTTP 409" in (
        world.status.message or "")
    world.hooks["approve"] = None
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.serving() == {"api": {"green": 100}, "web": {"green": 100}}


def test_a_retried_revision_calls_its_gates_again() -> None:
    world = released(World(spec(webhooks=[hook("gate", "pre-rollout", failureLimit=0)])))
    world.hooks["gate"] = "HTTP 500"
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "RolledBack")
    before = len(calls_of(world, "gate"))
    world.hooks["gate"] = None
    world.annotations[RETRY] = "true"
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert len(calls_of(world, "gate")) == before + 1


def test_the_payload_says_which_release_step_and_weight() -> None:
    world = released(World(spec(webhooks=[hook("approve", "confirm-promotion",
                                               metadata={"suite": "smoke"})])))
    world.release("1.1")
    world.run_until(lambda w: w.status.stable_version == "chat-api:1.1,chat-web:1.1")
    (sent,) = calls_of(world, "approve")
    assert {k: sent[k] for k in ("type", "webhook", "release", "namespace", "step", "weight",
                                 "metadata")} == {
        "type": "confirm-promotion", "webhook": "approve", "release": "chat", "namespace": "ns",
        "step": 4, "weight": 50, "metadata": {"suite": "smoke"},
    }
    assert sent["version"] == "chat-api:1.1,chat-web:1.1"


def test_pre_rollout_webhooks_are_refused_on_a_rolling_update() -> None:
    body = spec(strategy={"rolling": {}}, webhooks=[hook("gate", "pre-rollout")])
    with pytest.raises(ValidationError, match=r"pre-rollout need strategy\.canary"):
        ChatReleaseSpec.model_validate(body)


def test_health_checks_then_the_pre_rollout_webhook_pass_in_one_look() -> None:
    """A gate's answer leads to the next gate within the same look, as the runner probes
    round by round: with health checks, the webhook is still called (and only once)."""
    body = spec(webhooks=[hook("gate", "pre-rollout")])
    for c in body["components"]:
        c["healthCheck"] = {"path": "/healthz"}
    world = released(World(body))
    world.release("1.1")
    world.run_until(lambda w: w.status.gates_passed is True, ticks=20)
    assert len(calls_of(world, "gate")) == 1


def test_status_webhooks_at_its_cap_keeps_what_the_gates_in_flight_need() -> None:
    """Four webhooks (the most a release takes) through seven releases in a row, each
    rolled back by its second pre-rollout gate while the rollback endpoint keeps failing:
    the owed rollback calls pile up past the 8 records status keeps. Whatever gives way,
    the release in flight keeps its own: a passed gate is called once, a failing one is
    counted to its limit exactly, the newest rollbacks are still told, and the last
    release's answers are there when it succeeds."""
    world = released(World(spec(webhooks=[
        hook("smoke", "pre-rollout"),
        hook("load", "pre-rollout", failureLimit=2),
        hook("approve", "confirm-promotion"),
        hook("page", "rollback", failureLimit=5),
    ])))
    world.hooks.update(load="HTTP 503", page="HTTP 502")
    rolled: list[str] = []
    for minor in range(1, 8):
        world.release(f"1.{minor}")
        for _ in range(200):
            world.tick()
            assert len(world.status.webhooks) <= webhooks.KEPT
            if world.status.phase == "RolledBack" and world.status.canary_revision is None:
                break
        revision = world.status.aborted_revision
        assert revision is not None and revision not in rolled
        rolled.append(revision)
        mine = [c.hook.name for c in world.calls if c.revision == revision]
        assert mine.count("smoke") == 1, "a passed gate called again"
        assert mine.count("load") == 3, "failureLimit 2: rolled back at the third failure"
        assert "pre-rollout webhook load failed 3 times" in world.status.history[-1].message
    world.hooks.update(load=None)
    world.release("1.8")
    world.run_until(lambda w: w.status.phase == "Succeeded" and w.status.canary_revision is None)
    for _ in range(60):  # the rollback calls still owed go on meanwhile, and after
        world.tick()
        assert len(world.status.webhooks) <= webhooks.KEPT
    last = world.status.stable_revision
    kept = {(c.name, c.revision): c for c in world.status.webhooks}
    assert all(kept[(name, last)].passed for name in ("smoke", "load", "approve"))
    assert [c.hook.name for c in world.calls if c.revision == last] == ["smoke", "load", "approve"]
    paged = [c.revision for c in world.calls if c.hook.name == "page"]
    assert paged.count(rolled[-1]) == 6, "the newest rollback told to its failureLimit + 1"
    assert all(paged.count(r) >= 1 for r in rolled), "every rollback told at least once"
