"""The ChatRecovery's state machine, pure: which step runs next, and what the status says
before and after it.

    Resolve (Pending) → Quiesce (Quiescing) → Download (Downloading) → Restore, Replay
    (Restoring) → Verify (Verifying) → Resume, HealthCheck (Resuming) → Succeeded | Failed

Replay runs for a `spec.pointInTime` restore only (else Skipped): the archived oplog
from the base backup's consistent time to the target.

Everything is in `status.steps`, so an operator killed at any point resumes from there: a
step found Running was interrupted and runs again from its start (each is idempotent:
quiescing keeps the replicas it recorded first; a restore drops the temporary collections
a half-done one loaded, or finishes the renames of a commit it began, see `backup.swap`).
A failed step skips the rest but Resume, which scales the app back up whatever happened:
a failed restore never leaves the app down.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Literal

from chatops.api.common import condition, now_rfc3339, set_condition
from chatops.api.recovery import ChatRecoveryStatus, RecoveryPhase, Step
from chatops.events import Event

StepName = Literal[
    "Resolve", "Quiesce", "Download", "Restore", "Replay", "Verify", "Resume", "HealthCheck"
]
STEPS: tuple[StepName, ...] = (
    "Resolve", "Quiesce", "Download", "Restore", "Replay", "Verify", "Resume", "HealthCheck",
)
PHASE: Mapping[StepName, RecoveryPhase] = {
    "Resolve": "Pending",
    "Quiesce": "Quiescing",
    "Download": "Downloading",
    "Restore": "Restoring",
    "Replay": "Restoring",
    "Verify": "Verifying",
    "Resume": "Resuming",
    "HealthCheck": "Resuming",
}
DOING: Mapping[StepName, str] = {
    "Resolve": "finding the backup and waiting for the database",
    "Quiesce": "scaling the writers down",
    "Download": "downloading the backup and checking every byte against its manifest",
    "Restore": "restoring the database",
    "Replay": "replaying the archived oplog up to the target time",
    "Verify": "checking the restored database against the backup",
    "Resume": "scaling the app back up",
    "HealthCheck": "waiting for the health checks",
}
ALWAYS: frozenset[StepName] = frozenset({"Resume"})
"""Steps that run even after a failure."""
TERMINAL: frozenset[RecoveryPhase] = frozenset({"Succeeded", "Failed"})


@dataclasses.dataclass(frozen=True)
class Decision:
    status: ChatRecoveryStatus
    step: StepName | None = None
    """The step to run now; None when the recovery has ended (or cannot start)."""
    events: tuple[Event, ...] = ()


def _step(status: ChatRecoveryStatus, name: StepName) -> Step:
    for step in status.steps:
        if step.name == name:
            return step
    raise ValueError(f"status.steps has no {name} step (was the status edited by hand?)")


def _replace(status: ChatRecoveryStatus, new: Step) -> list[Step]:
    return [new if s.name == new.name else s for s in status.steps]


def failed_step(status: ChatRecoveryStatus) -> Step | None:
    return next((s for s in status.steps if s.state == "Failed"), None)


def next_step(status: ChatRecoveryStatus) -> StepName | None:
    """The first step still to do (a Running one was interrupted: it runs again)."""
    failure = failed_step(status) is not None
    present = {s.name for s in status.steps}
    for name in STEPS:
        if name not in present:  # a recovery started before the step existed
            continue
        state = _step(status, name).state
        if state in ("Pending", "Running") and (not failure or name in ALWAYS):
            return name
    return None


def decide(
    status: ChatRecoveryStatus, problems: tuple[str, ...], now: datetime.datetime,
    generation: int,
) -> Decision:
    """What a look at a ChatRecovery does next."""
    ok = not problems
    accepted = condition(
        "Accepted", "True" if ok else "False", "SpecValid" if ok else "InvalidSpec",
        "the spec is valid" if ok else "; ".join(problems), now, generation,
    )
    conditions = set_condition(status.conditions, accepted)
    update: dict[str, object] = {"observed_generation": generation, "conditions": conditions}
    if not ok:
        return Decision(status.model_copy(update=update))
    if status.phase in TERMINAL:
        return Decision(status.model_copy(update=update))
    events: list[Event] = []
    if status.phase is None or not status.steps:
        update |= {
            "phase": "Pending",
            "started_at": now_rfc3339(now),
            "steps": [Step(name=n, state="Pending") for n in STEPS],
        }
        events.append(Event("Normal", "RecoveryStarted", "restore started"))
        status = status.model_copy(update=update)
    step = next_step(status)
    if step is None:
        return conclude(status.model_copy(update=update), now, generation)
    return Decision(begin(status.model_copy(update=update), step, now, generation), step,
                    tuple(events))


def begin(
    status: ChatRecoveryStatus, step: StepName, now: datetime.datetime, generation: int
) -> ChatRecoveryStatus:
    """`step` Running (again, if it was interrupted), and the phase it belongs to."""
    old = _step(status, step)
    again = " (again: the operator stopped during it)" if old.state == "Running" else ""
    failure = failed_step(status)
    message = DOING[step] + again
    if failure is not None:
        message = f"{failure.name} failed: {failure.message}; {DOING[step]}"
    new = Step(name=step, state="Running", started_at=now_rfc3339(now), message=message)
    ready = condition("Ready", "Unknown", "InProgress", message, now, generation)
    return status.model_copy(
        update={
            "phase": PHASE[step],
            "message": message,
            "steps": _replace(status, new),
            "conditions": set_condition(status.conditions, ready),
        }
    )


def progress(status: ChatRecoveryStatus, step: StepName, message: str) -> ChatRecoveryStatus:
    """A Running step saying what it waits for."""
    new = _step(status, step).model_copy(update={"message": message})
    return status.model_copy(update={"message": message, "steps": _replace(status, new)})


def succeed(
    status: ChatRecoveryStatus, step: StepName, message: str, now: datetime.datetime,
    *, skipped: bool = False,
) -> ChatRecoveryStatus:
    old = _step(status, step)
    new = old.model_copy(
        update={
            "state": "Skipped" if skipped else "Succeeded",
            "started_at": old.started_at or now_rfc3339(now),
            "finished_at": now_rfc3339(now),
            "message": message,
        }
    )
    return status.model_copy(update={"steps": _replace(status, new), "message": message})


def fail(
    status: ChatRecoveryStatus, step: StepName, message: str, now: datetime.datetime
) -> ChatRecoveryStatus:
    """`step` Failed; every later step but Resume Skipped."""
    steps = []
    after = False
    for s in status.steps:
        if s.name == step:
            s = s.model_copy(
                update={"state": "Failed", "finished_at": now_rfc3339(now), "message": message}
            )
            after = True
        elif after and s.name not in ALWAYS and s.state in ("Pending", "Running"):
            s = s.model_copy(update={"state": "Skipped", "message": f"{step} failed"})
        steps.append(s)
    return status.model_copy(update={"steps": steps, "message": f"{step} failed: {message}"})


def conclude(
    status: ChatRecoveryStatus, now: datetime.datetime, generation: int
) -> Decision:
    """Succeeded when every step did, else Failed naming the step and why."""
    failure = failed_step(status)
    resume = _step(status, "Resume")
    if failure is None:
        message = "restored and verified; the app is back and healthy"
        if status.restored_documents is not None:
            message = f"restored {status.restored_documents} documents; the app is back"
        phase: RecoveryPhase = "Succeeded"
        ready = condition("Ready", "True", "Succeeded", message, now, generation)
        event = Event("Normal", "RecoverySucceeded", message)
    else:
        back = "the app was scaled back up" if resume.state == "Succeeded" else resume.message
        message = f"{failure.name} failed: {failure.message}; {back}"
        phase = "Failed"
        ready = condition("Ready", "False", "Failed", message, now, generation)
        event = Event("Warning", "RecoveryFailed", message)
    return Decision(
        status.model_copy(
            update={
                "phase": phase,
                "message": message,
                "finished_at": now_rfc3339(now),
                "conditions": set_condition(status.conditions, ready),
            }
        ),
        None,
        (event,),
    )
