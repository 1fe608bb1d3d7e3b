"""Notifications: which Events a receiver hears and the bodies it gets (both formats, every
kind), the retry schedule, the outbox through a receiver's outage, and the dispatcher
never waiting on a receiver."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from chatops.api.common import API_VERSION
from chatops.events import Event
from chatops.notify import message
from chatops.notify.dispatcher import Dispatcher
from chatops.notify.outbox import Outbox, Retry
from release_world import World, released, spec

AT = "2026-12-04T18:50:00.123456Z"
RECEIVER = {"name": "team", "urlSecretRef": {"name": "hooks", "key": "url"}}


def subject(kind: str, receivers: list[dict[str, Any]], status: dict[str, Any] | None = None,
            ) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": "chat", "namespace": "shop", "uid": "u-1"},
        "spec": {"notifications": receivers},
        "status": status or {},
    }


def ids() -> Iterator[str]:
    return (f"id-{i}" for i in itertools.count())


EVERY_KIND = [
    ("ChatRelease", "ReleaseStarted", "Started"),
    ("ChatRelease", "WeightSet", "Step"),
    ("ChatRelease", "TrafficSwitched", "Step"),
    ("ChatRelease", "Promoted", "Promoted"),
    ("ChatRelease", "AnalysisFailed", "RolledBack"),
    ("ChatRelease", "Aborted", "RolledBack"),
    ("ChatRelease", "PreRolloutWebhookFailed", "RolledBack"),
    ("ChatBackup", "BackupFailed", "Failed"),
    ("ChatBackup", "BackupSkipped", "Missed"),
    ("ChatBackup", "MissedSchedules", "Missed"),
    ("ChatBackup", "PointInTimeGap", "PointInTimeGap"),
    ("ChatRecovery", "RecoverySucceeded", "Succeeded"),
    ("ChatRecovery", "RecoveryFailed", "Failed"),
]


def rolled(kind: str) -> dict[str, int | str]:
    """The details of a rollback's Event (`transitions.abort`): the revision it undoes."""
    return {"rolledBack": "bad1"} if kind == "RolledBack" else {}


@pytest.mark.parametrize(("resource", "reason", "kind"), EVERY_KIND)
def test_every_kind_renders_the_versioned_json_payload(resource: str, reason: str,
                                                       kind: str) -> None:
    event = Event("Warning", reason, "what happened", rolled(kind))
    [d] = message.deliveries(subject(resource, [RECEIVER]), event, AT, ids())
    assert d.kind == kind and d.receiver == "team" and d.url.name == "hooks"
    assert d.body["apiVersion"] == "chatops.dev/notification/v1"
    assert {k: d.body[k] for k in ("id", "kind", "time", "receiver")} == {
        "id": "id-0", "kind": kind, "time": AT, "receiver": "team"}
    assert d.body["object"] == {"apiVersion": API_VERSION, "kind": resource,
                                "namespace": "shop", "name": "chat", "uid": "u-1"}
    assert d.body["event"] == {"type": "Warning", "reason": reason, "message": "what happened"}
    assert ("release" in d.body) == (resource == "ChatRelease")
    if kind == "RolledBack":
        assert d.body["release"]["revision"] == "bad1"
    assert d.label == f"notification team of {resource} shop/chat"


@pytest.mark.parametrize(("resource", "reason", "kind"), EVERY_KIND)
def test_every_kind_renders_a_slack_message(resource: str, reason: str, kind: str) -> None:
    event = Event("Normal", reason, "x" * 4000, rolled(kind))
    [d] = message.deliveries(subject(resource, [{**RECEIVER, "format": "slack"}]), event, AT,
                             ids())
    assert set(d.body) == {"text", "blocks"}
    assert d.body["text"].startswith(f":white_check_mark: {resource} shop/chat: ")
    section, context = d.body["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert len(section["text"]["text"]) < 3000  # Slack refuses a longer section
    assert context["type"] == "context" and f"*{reason}*" in context["elements"][0]["text"]


def test_only_the_kinds_a_receiver_listens_for_and_only_notification_events() -> None:
    receivers = [{**RECEIVER, "on": ["Promoted"]}, {**RECEIVER, "name": "all"}]
    told = subject("ChatRelease", receivers)
    started = message.deliveries(told, Event("Normal", "ReleaseStarted", ""), AT, ids())
    assert [d.receiver for d in started] == ["all"]
    promoted = message.deliveries(told, Event("Normal", "Promoted", ""), AT, ids())
    assert [(d.receiver, d.id) for d in promoted] == [("team", "id-0"), ("all", "id-1")]
    for reason in ("GatesPassed", "DrainWave", "LookFailed", "NotificationFailed"):
        assert message.deliveries(told, Event("Normal", reason, ""), AT, ids()) == []
    # a release receiver cannot listen for a backup's kinds, and a kind not listed is none
    assert message.kind_of("ChatRelease", Event("Warning", "BackupFailed", "")) is None
    assert message.kind_of("ChatRelease", Event("Warning", "AnalysisFailed", "")) is None
    assert message.deliveries(subject("ChatBackup", []), Event("Warning", "BackupFailed", ""),
                              AT, ids()) == []


def test_a_canary_notifies_started_each_step_and_promoted_with_its_revision() -> None:
    """The decision core's own Events, through the runner's subject: what a receiver of a
    canary release hears, in order."""
    world = released(World(spec(notifications=[RECEIVER])))
    world.release("1.1")
    heard = []
    for _ in range(200):
        decision = world.tick()
        told = {**subject("ChatRelease", [RECEIVER]), "spec": world.spec,
                "status": decision.status.wire()}
        for event in decision.events:
            heard += message.deliveries(told, event, AT, ids())
        if world.status.phase == "Succeeded":
            break
    revision = world.status.stable_revision
    assert [d.kind for d in heard] == ["Started", "Step", "Step", "Step", "Promoted"]
    assert {d.body["release"]["revision"] for d in heard} == {revision}
    steps = [(d.body["release"]["step"], d.body["release"]["weight"]) for d in heard[1:4]]
    assert steps == [(1, 10), (3, 50), (5, 100)]
    assert all(d.body["release"]["steps"] == 5 for d in heard[1:4])
    assert heard[-1].body["release"]["stableRevision"] == revision


def test_a_rollback_names_the_revision_rolled_back_and_why() -> None:
    world = released(World(spec(notifications=[RECEIVER])))
    world.release("1.1")
    world.prometheus.values["green"] = 0.5  # the new version's error rate: far past 1 %
    heard = []
    for _ in range(200):
        decision = world.tick()
        told = {**subject("ChatRelease", [RECEIVER]), "status": decision.status.wire()}
        for event in decision.events:
            heard += message.deliveries(told, event, AT, ids())
        if world.status.phase == "RolledBack":
            break
    [rolled] = [d for d in heard if d.kind == "RolledBack"]
    assert rolled.body["event"]["reason"] == "AnalysisFailed"
    assert rolled.body["release"]["revision"] == world.status.aborted_revision
    assert rolled.body["release"]["revision"] != world.status.stable_revision
    assert "rolling back" in rolled.body["event"]["message"]


# -- the retry schedule ---------------------------------------------------------------


def test_the_default_schedule_doubles_to_a_cap_and_gives_up_after_ten_attempts() -> None:
    retry = Retry()
    assert [retry.delay(n) for n in range(1, 11)] == [1, 2, 4, 8, 16, 32, 60, 60, 60, None]
    assert sum(retry.delay(n) or 0 for n in range(1, 10)) == 243  # about four minutes


@given(first=hs.floats(0.01, 10), factor=hs.floats(1, 4), cap=hs.floats(0.01, 600),
       attempts=hs.integers(1, 30))
def test_any_schedule_waits_longer_each_time_never_past_its_cap(
    first: float, factor: float, cap: float, attempts: int
) -> None:
    retry = Retry(first, factor, cap, attempts)
    delays = [retry.delay(n) for n in range(1, attempts + 3)]
    waits = [d for d in delays if d is not None]
    assert len(waits) == attempts - 1  # attempts in all: the first and a retry per wait
    assert waits == sorted(waits) and all(0 < w <= max(cap, first) for w in waits)
    assert delays[attempts - 1:] == [None] * 3


def test_the_retry_schedule_is_an_operator_setting_whose_default_is_the_four_minutes() -> None:
    from chatops import cli

    assert cli.parser().parse_args(["run"]).notify_retry == Retry()
    assert Retry().window() == 243
    quick = cli.parser().parse_args(["run", "--notify-retry", "0.5,1,3"]).notify_retry
    assert quick == Retry(first=0.5, cap=1, attempts=3) and quick.window() == 1.5


@pytest.mark.parametrize("bad", ["1,60", "0,60,10", "10,1,3", "1,60,0", "a,b,c"])
def test_a_retry_setting_it_cannot_follow_is_refused_naming_the_flag(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from chatops import cli

    with pytest.raises(SystemExit):
        cli.parser().parse_args(["run", "--notify-retry", bad])
    assert "--notify-retry" in capsys.readouterr().err


# -- the outbox -----------------------------------------------------------------------


def delivery(receiver: str = "team") -> message.Delivery:
    [d] = message.deliveries(subject("ChatBackup", [{**RECEIVER, "name": receiver}]),
                             Event("Warning", "BackupFailed", "m"), AT, ids())
    return d


def run(outbox: Outbox, up_at: float, until: float) -> list[tuple[str, float, int]]:
    """Attempt what is due, second by tenth of a second, against a receiver down until
    `up_at`: (how each settled, when, failed attempts before)."""
    seen = []
    for tenth in range(int(until * 10)):
        now = tenth / 10
        while (pending := outbox.take(now)) is not None:
            problem = None if now >= up_at else "team: HTTP 500"
            settled, _ = outbox.settle(pending, problem, now)
            seen.append((settled, now, pending.failed))
    return seen


def test_a_receiver_down_ten_seconds_gets_the_notification_at_its_fifth_attempt() -> None:
    outbox = Outbox()
    assert outbox.offer(delivery(), 0.0)
    seen = run(outbox, up_at=10.0, until=30.0)
    assert seen == [("retry", 0.0, 0), ("retry", 1.0, 1), ("retry", 3.0, 2),
                    ("retry", 7.0, 3), ("delivered", 15.0, 4)]
    assert len(outbox) == 0


def test_a_receiver_that_never_comes_back_is_dropped_after_the_last_attempt() -> None:
    outbox = Outbox(retry=Retry(attempts=3))
    outbox.offer(delivery(), 0.0)
    seen = run(outbox, up_at=1e9, until=10.0)
    assert seen == [("retry", 0.0, 0), ("retry", 1.0, 1), ("dropped", 3.0, 2)]
    assert len(outbox) == 0 and outbox.next_due() is None


def test_an_outage_longer_than_the_window_drops_what_it_spans_and_not_what_comes_after() -> None:
    """Fifty notifications offered over a receiver's 100 s away with a 1,2,3 schedule (3 s
    window): each spent its 3 attempts and was dropped, none was delivered late, nothing
    stayed queued; the ten offered after its return arrive at their first attempt."""
    outbox = Outbox(retry=Retry(first=1, cap=2, attempts=3))
    seen: list[tuple[str, float, str]] = []
    for tenth in range(1500):
        now = tenth / 10
        if (tenth % 20 == 0 and now < 100) or tenth in range(1100, 1200, 10):
            assert outbox.offer(delivery(f"n{tenth}"), now)
        while (pending := outbox.take(now)) is not None:
            settled, _ = outbox.settle(pending, "team: connection refused" if now < 103.5
                                       else None, now)
            seen.append((settled, now, pending.delivery.receiver))
    offered_away = {f"n{t}" for t in range(0, 1000, 20)}
    dropped = {r for settled, _, r in seen if settled == "dropped"}
    delivered = {r for settled, _, r in seen if settled == "delivered"}
    assert dropped == offered_away and not delivered & offered_away
    assert delivered == {f"n{t}" for t in range(1100, 1200, 10)}
    assert all(sum(1 for _, _, r in seen if r == name) == 3 for name in offered_away)
    assert len(outbox) == 0


def test_a_full_outbox_refuses_more_counting_the_attempts_in_flight() -> None:
    outbox = Outbox(limit=2)
    assert outbox.offer(delivery("a"), 0.0) and outbox.offer(delivery("b"), 0.0)
    taken = outbox.take(0.0)
    assert taken is not None and taken.delivery.receiver == "a"
    assert not outbox.offer(delivery("c"), 0.0)  # "a" is in flight, "b" queued
    outbox.settle(taken, None, 0.1)
    assert outbox.offer(delivery("c"), 0.2)


def test_the_earliest_due_goes_first_whatever_the_order_offered() -> None:
    outbox = Outbox()
    outbox.offer(delivery("late"), 5.0)
    outbox.offer(delivery("early"), 1.0)
    assert outbox.take(0.5) is None and outbox.next_due() == 1.0
    first = outbox.take(6.0)
    assert first is not None and first.delivery.receiver == "early"


# -- the dispatcher -------------------------------------------------------------------


def test_offering_never_waits_on_a_receiver_and_a_slow_one_holds_no_other() -> None:
    released_ = threading.Event()
    answered: list[str] = []

    def send(d: message.Delivery) -> str | None:
        if d.receiver == "slow":
            released_.wait(30)
        answered.append(d.receiver)
        return None

    dispatcher = Dispatcher(send, workers=2).start()
    try:
        started = time.monotonic()
        dispatcher.offer([delivery("slow"), delivery("fast")])
        assert time.monotonic() - started < 1.0  # it queued them, nothing more
        deadline = time.monotonic() + 30
        while "fast" not in answered and time.monotonic() < deadline:
            time.sleep(0.01)
        assert answered == ["fast"]
    finally:
        released_.set()
        dispatcher.stop()


def test_the_dispatcher_retries_until_delivered() -> None:
    tries: list[str] = []

    def send(d: message.Delivery) -> str | None:
        tries.append(d.receiver)
        return None if tries.count("flaky") >= 3 else "flaky: HTTP 500"

    outbox = Outbox(retry=Retry(first=0.01, cap=0.02, attempts=100))
    dispatcher = Dispatcher(send, outbox, workers=1).start()
    try:
        dispatcher.offer([delivery("flaky")])
        deadline = time.monotonic() + 30
        while len(outbox) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tries == ["flaky"] * 3 and len(outbox) == 0
    finally:
        dispatcher.stop()


def test_what_is_queued_when_the_operator_stops_is_dropped_and_said() -> None:
    dropped: list[tuple[str, str]] = []
    dispatcher = Dispatcher(lambda d: None, workers=0,
                            on_dropped=lambda p, why: dropped.append((p.delivery.receiver, why)))
    dispatcher.offer([delivery("a"), delivery("b")])
    dispatcher.stop()
    assert dropped == [("a", "shutdown"), ("b", "shutdown")]
    dispatcher.offer([delivery("late")])  # offered after the stop: dropped too, never queued
    assert dropped[-1] == ("late", "queueFull") and len(dispatcher.outbox) == 0
