"""Restore drills, pure: whether one is due, how it is recorded, and what the `Verified`
condition says (`spec.verification`).

A drill runs on its own cron schedule (in the ChatBackup's time zone), or at once on the
`chatops.dev/verify-now` annotation. Missed drills run once. A drill still `Running` at a
look is one whose operator died (the drill daemon does not look while it drills): it is
settled as Failed "interrupted", and the next drill cleans its scratch database first.

`Verified`, about the newest good backup in status:
- True (`DrillSucceeded`) once a drill restored it, or a newer one, and no later drill
  failed (a backup that restored once and fails now, say corrupted since, is False);
- False (`BackupUnverified`) when the first drill due after it finished (plus the drill's
  `timeoutSeconds`) has passed without verifying it: an unverified backup older than the
  drill schedule;
- False (`DrillFailed`) when the last drill failed (on the backup last verified or a
  newer one) and the newest backup is not overdue;
- Unknown (`NoBackupYet`, `DrillPending`) otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime

from chatops import clock
from chatops.api.backup import BackupRecord, ChatBackupSpec, ChatBackupStatus
from chatops.api.common import Condition, condition, now_rfc3339, set_condition
from chatops.api.verification import DrillRecord, VerificationStatus
from chatops.backup import schedule
from chatops.events import Event

CONDITION = "Verified"
IDLE_LOOK = 300.0
"""Seconds between looks at most: the condition turns BackupUnverified on time."""


@dataclasses.dataclass(frozen=True)
class Observation:
    now: datetime.datetime
    created_at: datetime.datetime
    generation: int
    spec: ChatBackupSpec
    status: ChatBackupStatus
    on_demand: bool = False
    """The `chatops.dev/verify-now` annotation is set."""


@dataclasses.dataclass(frozen=True)
class Start:
    started_at: datetime.datetime
    reason: schedule.Reason


@dataclasses.dataclass(frozen=True)
class Decision:
    status: ChatBackupStatus
    start: Start | None = None
    clear_on_demand: bool = False
    events: tuple[Event, ...] = ()
    requeue_after: float = IDLE_LOOK
    settled: DrillRecord | None = None
    """A drill left Running by a dead operator, now recorded as Failed: its scratch
    database must be cleaned."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a drill ended."""

    backup: str
    started_at: datetime.datetime
    finished_at: datetime.datetime
    ok: bool
    message: str
    restore_seconds: float | None = None
    documents: int | None = None


def _schedule(spec: ChatBackupSpec) -> schedule.Schedule:
    assert spec.verification is not None
    return schedule.Schedule(spec.verification.schedule, spec.time_zone)


def newest_good(status: ChatBackupStatus) -> BackupRecord | None:
    """The newest Succeeded backup the status knows."""
    good = [r for r in (*status.backups, status.last_backup) if r and r.result == "Succeeded"]
    return max(good, key=lambda r: r.id, default=None)


def _finished(record: BackupRecord) -> datetime.datetime | None:
    if record.started_at is None:
        return None
    return clock.parse(record.started_at) + datetime.timedelta(
        seconds=record.duration_seconds or 0.0
    )


def verified(seen: Observation, drills: VerificationStatus) -> tuple[Condition, float | None]:
    """The `Verified` condition, and the seconds until it would change by itself (the
    newest backup becoming overdue)."""
    spec, now, gen = seen.spec, seen.now, seen.generation
    assert spec.verification is not None
    newest = newest_good(seen.status)
    last = drills.last_drill
    if newest is None:
        return condition(CONDITION, "Unknown", "NoBackupYet", "no backup to verify yet",
                         now, gen), None
    failed = last is not None and last.result == "Failed"
    newest_failure = failed and last is not None and last.backup >= (
        drills.last_verified_backup or ""
    )
    if (
        not newest_failure
        and drills.last_verified_backup is not None
        and drills.last_verified_backup >= newest.id
    ):
        return condition(
            CONDITION, "True", "DrillSucceeded",
            f"backup {drills.last_verified_backup} was restored into "
            f"{spec.verification.scratch.database} in {drills.restore_seconds:g} s, verified "
            f"and dropped ({drills.last_verified_time})",
            now, gen,
        ), None
    finished = _finished(newest)
    due = _schedule(spec).next_after(finished) if finished else None
    overdue_at = (
        due + datetime.timedelta(seconds=spec.verification.timeout_seconds) if due else None
    )
    verified_newest = (drills.last_verified_backup or "") >= newest.id
    if overdue_at is not None and now >= overdue_at and not verified_newest:
        why = f"the last drill failed: {last.message}" if failed and last else (
            "no drill has verified it"
        )
        return condition(
            CONDITION, "False", "BackupUnverified",
            f"backup {newest.id} (finished {now_rfc3339(finished or now)}) is unverified "
            f"although a drill was due at {now_rfc3339(due or now)} "
            f"({spec.verification.schedule}): {why}",
            now, gen,
        ), None
    wait = (overdue_at - now).total_seconds() if overdue_at else None
    if newest_failure and last is not None:
        return condition(
            CONDITION, "False", "DrillFailed",
            f"the drill of backup {last.backup} failed: {last.message}", now, gen,
        ), wait
    return condition(
        CONDITION, "Unknown", "DrillPending",
        f"backup {newest.id} is not verified yet; the next drill is due at "
        f"{now_rfc3339(due) if due else 'no time'}",
        now, gen,
    ), wait


def decide(seen: Observation) -> Decision:
    """A look of the drill daemon: settle an interrupted drill, start one if due, and
    say `Verified`."""
    spec = seen.spec
    assert spec.verification is not None
    drills = seen.status.verification or VerificationStatus()
    events: list[Event] = []
    settled = None
    last = drills.last_drill
    if last is not None and last.result == "Running":
        settled = last.model_copy(update={
            "result": "Failed", "finished_at": now_rfc3339(seen.now),
            "message": "interrupted: the operator stopped during the drill; its scratch "
            "database is dropped before the next one",
        })
        drills = drills.model_copy(update={"last_drill": settled})
        events.append(Event("Warning", "DrillFailed", f"drill of backup {last.backup}: "
                                                      f"{settled.message}"))
    sched = _schedule(spec)
    verdict = schedule.decide(sched, schedule.Observation(
        now=seen.now, created_at=seen.created_at,
        last_schedule_time=clock.parse(drills.last_schedule_time)
        if drills.last_schedule_time else None,
        on_demand=seen.on_demand,
    ))
    update: dict[str, object] = {
        "next_drill_time": now_rfc3339(verdict.next_time) if verdict.next_time else None,
    }
    start = None
    newest = newest_good(seen.status)
    if verdict.run:
        if verdict.scheduled_time is not None:
            update["last_schedule_time"] = now_rfc3339(verdict.scheduled_time)
        if newest is None:
            events.append(Event("Normal", "DrillSkipped", "no backup to verify yet"))
        else:
            start = Start(seen.now, verdict.reason)
    drills = drills.model_copy(update=update)
    told, wait = verified(seen, drills)
    requeue = min(
        IDLE_LOOK,
        verdict.requeue_after(seen.now) or IDLE_LOOK,
        max(1.0, wait) if wait is not None else IDLE_LOOK,
    )
    status = seen.status.model_copy(update={
        "verification": drills,
        "conditions": set_condition(seen.status.conditions, told),
    })
    return Decision(
        status, start=start, clear_on_demand=seen.on_demand and verdict.reason == "OnDemand",
        events=tuple(events), requeue_after=requeue, settled=settled,
    )


def running(status: ChatBackupStatus, backup: str, now: datetime.datetime) -> ChatBackupStatus:
    """The status once a drill of `backup` has started."""
    drills = status.verification or VerificationStatus()
    record = DrillRecord(backup=backup, result="Running", started_at=now_rfc3339(now))
    return status.model_copy(update={
        "verification": drills.model_copy(update={"last_drill": record})
    })


def finish(
    seen: Observation, outcome: Outcome
) -> tuple[ChatBackupStatus, list[Event]]:
    """The status recording how a drill ended (and `Verified`), and the Event telling it."""
    drills = seen.status.verification or VerificationStatus()
    record = DrillRecord(
        backup=outcome.backup, result="Succeeded" if outcome.ok else "Failed",
        started_at=now_rfc3339(outcome.started_at), finished_at=now_rfc3339(outcome.finished_at),
        restore_seconds=outcome.restore_seconds, documents=outcome.documents,
        message=outcome.message,
    )
    update: dict[str, object] = {"last_drill": record}
    if outcome.ok and (
        drills.last_verified_backup is None or outcome.backup >= drills.last_verified_backup
    ):
        update.update(
            last_verified_time=now_rfc3339(outcome.finished_at),
            last_verified_backup=outcome.backup,
            restore_seconds=outcome.restore_seconds,
        )
    drills = drills.model_copy(update=update)
    told, _ = verified(seen, drills)
    status = seen.status.model_copy(update={
        "verification": drills,
        "conditions": set_condition(seen.status.conditions, told),
    })
    return status, [event_of(outcome)]


def event_of(outcome: Outcome) -> Event:
    """The Event telling how a drill ended."""
    return Event(
        "Normal" if outcome.ok else "Warning",
        "DrillSucceeded" if outcome.ok else "DrillFailed",
        f"drill of backup {outcome.backup}: {outcome.message}",
    )
