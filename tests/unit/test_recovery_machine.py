"""The ChatRecovery state machine: a run of transitions on frozen status, as a table."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatops.api.recovery import ChatRecoveryStatus
from chatops.recovery.machine import STEPS, StepName, decide, fail, next_step, succeed

NOW = datetime.datetime(2026, 11, 26, 3, 0, tzinfo=datetime.UTC)


def start() -> ChatRecoveryStatus:
    return decide(ChatRecoveryStatus(), (), NOW, 1).status


def walk(
    status: ChatRecoveryStatus, outcomes: dict[str, str]
) -> tuple[ChatRecoveryStatus, list[str]]:
    """Run the machine: each step succeeds unless `outcomes` says Failed or Skipped."""
    order: list[str] = []
    while True:
        decision = decide(status, (), NOW, 1)
        status = decision.status
        if decision.step is None:
            return status, order
        order.append(f"{decision.step}:{status.phase}")
        what = outcomes.get(decision.step, "Succeeded")
        if what == "Failed":
            status = fail(status, decision.step, "boom", NOW)
        else:
            status = succeed(status, decision.step, "ok", NOW, skipped=what == "Skipped")


def test_a_new_recovery_starts_pending_with_every_step_listed() -> None:
    decision = decide(ChatRecoveryStatus(), (), NOW, 1)
    assert decision.step == "Resolve" and decision.status.phase == "Pending"
    assert [s.name for s in decision.status.steps] == list(STEPS)
    assert [e.reason for e in decision.events] == ["RecoveryStarted"]


def test_the_happy_path_walks_every_phase_in_order() -> None:
    status, order = walk(ChatRecoveryStatus(), {})
    assert order == [
        "Resolve:Pending", "Quiesce:Quiescing", "Download:Downloading", "Restore:Restoring",
        "Replay:Restoring", "Verify:Verifying", "Resume:Resuming", "HealthCheck:Resuming",
    ]
    assert status.phase == "Succeeded" and status.finished_at
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.status == "True"


@pytest.mark.parametrize(
    "failing", ["Resolve", "Quiesce", "Download", "Restore", "Replay", "Verify"]
)
def test_a_failure_anywhere_still_scales_the_app_back_then_fails(failing: StepName) -> None:
    status, order = walk(ChatRecoveryStatus(), {failing: "Failed"})
    assert order[-1] == "Resume:Resuming"
    assert status.phase == "Failed"
    assert status.message is not None and status.message.startswith(f"{failing} failed: boom")
    states = {s.name: s.state for s in status.steps}
    assert states["Resume"] == "Succeeded" and states["HealthCheck"] == "Skipped"
    after = STEPS[STEPS.index(failing) + 1 : STEPS.index("Resume")]
    assert all(states[s] == "Skipped" for s in after)


def test_failed_health_checks_fail_the_recovery_with_the_app_up() -> None:
    status, _ = walk(ChatRecoveryStatus(), {"HealthCheck": "Failed"})
    assert status.phase == "Failed"
    assert {s.name: s.state for s in status.steps}["Resume"] == "Succeeded"


def test_a_step_left_running_by_a_dead_operator_runs_again_from_its_start() -> None:
    status = start()
    for step in ("Resolve", "Quiesce", "Download"):
        status = succeed(decide(status, (), NOW, 1).status, step, "ok", NOW)
    restoring = decide(status, (), NOW, 1)
    assert restoring.step == "Restore"
    again = decide(restoring.status, (), NOW, 1)  # the operator died mid-restore
    assert again.step == "Restore" and "again" in (again.status.message or "")


def test_an_ended_recovery_does_nothing_more() -> None:
    status, _ = walk(ChatRecoveryStatus(), {})
    assert decide(status, (), NOW, 1).step is None
    assert next_step(status) is None


def test_an_invalid_spec_starts_nothing() -> None:
    decision = decide(ChatRecoveryStatus(), ("spec.mode: bad",), NOW, 1)
    assert decision.step is None and decision.status.phase is None
    accepted = next(c for c in decision.status.conditions if c.type == "Accepted")
    assert (accepted.status, accepted.reason) == ("False", "InvalidSpec")


# -- a property: whatever fails or is interrupted, the app is brought back ----------------

outcome = st.sampled_from(["Succeeded", "Skipped", "Failed", "Killed"])


@settings(max_examples=300, deadline=None)
@given(st.lists(outcome, min_size=1, max_size=40))
def test_whatever_fails_or_is_killed_the_recovery_ends_with_the_app_back(
    outcomes: list[str],
) -> None:
    """Each look, the step the machine asks for succeeds, is skipped, fails, or the
    operator is killed in it (the step stays Running and the next look runs it again).
    The recovery always ends; it ends Succeeded only if no step failed; and if Quiesce
    ran, Resume ran after the last step that could touch the database."""
    status = ChatRecoveryStatus()
    ran: list[tuple[str, str]] = []
    for look in range(200):
        decision = decide(status, (), NOW, 1)
        status = decision.status
        if decision.step is None:
            break
        what = outcomes[look % len(outcomes)] if look < 3 * len(outcomes) else "Succeeded"
        if decision.step == "Resume" and what == "Failed":
            what = "Killed"  # Resume never fails: it retries until the app is back
        ran.append((decision.step, what))
        if what == "Failed":
            status = fail(status, decision.step, "boom", NOW)
        elif what != "Killed":
            status = succeed(status, decision.step, "ok", NOW, skipped=what == "Skipped")
    else:
        pytest.fail(f"the recovery never ended: {ran[-10:]}")
    assert status.phase in ("Succeeded", "Failed")
    failed = any(what == "Failed" for _, what in ran)
    assert (status.phase == "Failed") == failed
    done = [step for step, what in ran if what in ("Succeeded", "Skipped", "Failed")]
    assert "Resume" in done
    touching = [i for i, s in enumerate(done) if s in ("Quiesce", "Download", "Restore")]
    assert not touching or done.index("Resume") > max(touching)


def test_a_recovery_started_before_the_replay_step_existed_goes_on_without_it() -> None:
    first = decide(ChatRecoveryStatus(), (), NOW, 1).status
    old = first.model_copy(update={"steps": [s for s in first.steps if s.name != "Replay"]})
    status, order = walk(old, {})
    assert "Replay:Restoring" not in order and order[-1] == "HealthCheck:Resuming"
    assert status.phase == "Succeeded"
