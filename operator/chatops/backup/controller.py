"""The ChatBackup's decisions, pure: given what a look saw (spec, status, the clock, the
`chatops.dev/backup-now` annotation, what S3 holds of an interrupted run), what status to
write, whether to start a run, and when to look again; and given how a run ended, how the
status records it.

A look never happens while this operator runs a backup of the same ChatBackup (its daemon
is busy running it), so a `lastBackup` still `Running` at a look is a run whose operator
died: it is settled first, from S3 (a complete backup under its id counts; anything else
is Failed "interrupted" and its upload aborted), and only then is the schedule consulted.
"""

from __future__ import annotations

import dataclasses
import datetime

from chatops import clock
from chatops.annotations import BACKUP_NOW as ON_DEMAND
from chatops.api.backup import BackupRecord, ChatBackupSpec, ChatBackupStatus
from chatops.api.common import (
    Condition,
    condition,
    now_rfc3339,
    seconds,
    set_condition,
    unstalled,
)
from chatops.api.pitr import ArchiveGap
from chatops.backup import archive, layout, schedule
from chatops.backup.manifest import Manifest
from chatops.backup.retention import StoredBackup
from chatops.events import Event

MAX_RECORDS = 20
"""Runs kept in status.backups: enough to see a pattern, small enough for etcd."""
IDLE_LOOK = 300.0
"""Seconds between looks when nothing is scheduled (an annotation wakes us anyway)."""


@dataclasses.dataclass(frozen=True)
class Observation:
    namespace: str
    name: str
    now: datetime.datetime
    created_at: datetime.datetime
    generation: int
    spec: ChatBackupSpec | None
    """None when the spec cannot be acted on (see `problems`)."""
    status: ChatBackupStatus
    problems: tuple[str, ...] = ()
    """What the API server could not check (time zone, cron calendar)."""
    on_demand: bool = False
    """The `chatops.dev/backup-now` annotation is set."""
    leftover: StoredBackup | None = None
    """What S3 holds under the id of a `lastBackup` still marked Running."""
    uid: str = ""
    """The ChatBackup's uid: part of every backup id, and what ownership is by."""
    unresolved: tuple[str, ...] = ()
    """References the spec names that the cluster does not have (a missing Secret or key,
    a connection string that must be percent-encoded): no run starts until they resolve."""


@dataclasses.dataclass(frozen=True)
class Start:
    """A run to start now."""

    id: str
    started_at: datetime.datetime
    key: str
    reason: schedule.Reason


@dataclasses.dataclass(frozen=True)
class Decision:
    status: ChatBackupStatus
    start: Start | None = None
    clear_on_demand: bool = False
    events: tuple[Event, ...] = ()
    requeue_after: float = IDLE_LOOK


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a run ended."""

    id: str
    key: str
    started_at: datetime.datetime
    finished_at: datetime.datetime
    manifest: Manifest | None
    """The manifest written, or None when the run failed."""
    message: str = ""
    """Why it failed (already scrubbed of secrets)."""
    deleted: tuple[str, ...] = ()
    """Backup ids retention deleted after it."""
    retention_problem: str = ""


REFERENCE_RECHECK = 10.0
"""Seconds between looks while a referenced Secret is missing, so the backup starts soon
after it appears (the operator may `get` Secrets, never watch them)."""


def _accepted(seen: Observation) -> Condition:
    if seen.problems:
        return condition(
            "Accepted", "False", "InvalidSpec", "; ".join(seen.problems), seen.now,
            seen.generation,
        )
    if seen.unresolved:
        return condition(
            "Accepted", "False", "ReferenceNotFound",
            "; ".join(seen.unresolved) + "; no backup runs until this is fixed", seen.now,
            seen.generation,
        )
    return condition(
        "Accepted", "True", "SpecValid", "the spec is valid and its Secrets are there",
        seen.now, seen.generation,
    )


def _latest_id(status: ChatBackupStatus) -> str:
    ids = [r.id for r in status.backups]
    if status.last_backup is not None:
        ids.append(status.last_backup.id)
    return max(ids, default="")


def _with_record(status: ChatBackupStatus, record: BackupRecord) -> list[BackupRecord]:
    """status.backups with `record` in place of the run of the same id, newest last."""
    runs = [r for r in status.backups if r.id != record.id] + [record]
    return sorted(runs, key=lambda r: r.id)[-MAX_RECORDS:]


def settle_interrupted(seen: Observation) -> tuple[ChatBackupStatus, list[Event]]:
    """The status once a run left Running by a dead operator is settled (the runner has
    aborted its upload, if any), and the Events to tell."""
    status, last = seen.status, seen.status.last_backup
    if last is None or last.result != "Running":
        return status, []
    found = seen.leftover
    if (
        found is not None
        and found.complete
        and bool(seen.uid)
        and found.uid == seen.uid
        and found.manifest is not None
    ):
        outcome = Outcome(
            last.id, last.key or found.tarball_key or "", found.manifest.started_at,
            found.manifest.finished_at, found.manifest,
        )
        status, events = finish(status, outcome, seen.now, seen.generation)
        return status, [*events]
    message = (
        "interrupted: the operator stopped during the run; its partial upload was "
        "aborted and no manifest was written"
    )
    started = datetime.datetime.fromisoformat(last.started_at) if last.started_at else None
    outcome = Outcome(
        last.id, last.key or "", started or seen.now, seen.now, None, message=message
    )
    status, events = finish(status, outcome, seen.now, seen.generation)
    return status, events


def decide(seen: Observation) -> Decision:
    """What a look at a ChatBackup does: settle an interrupted run, then start a run if
    one is due (by the schedule, a first run, or on demand)."""
    spec = seen.spec
    if spec is None or seen.problems:
        conditions = set_condition(seen.status.conditions, _accepted(seen))
        status = seen.status.model_copy(
            update={"conditions": conditions, "observed_generation": seen.generation}
        )
        return Decision(status)
    status, events = settle_interrupted(seen)
    conditions = set_condition(status.conditions, _accepted(seen))
    conditions = unstalled(conditions, seen.now, seen.generation)
    sched = schedule.Schedule(
        spec.schedule, spec.time_zone, spec.suspend, spec.starting_deadline_seconds
    )
    last_time = (
        datetime.datetime.fromisoformat(status.last_schedule_time)
        if status.last_schedule_time
        else None
    )
    verdict = schedule.decide(
        sched,
        schedule.Observation(
            now=seen.now, created_at=seen.created_at, last_schedule_time=last_time,
            on_demand=seen.on_demand,
        ),
    )
    update: dict[str, object] = {
        "observed_generation": seen.generation,
        "next_schedule_time": now_rfc3339(verdict.next_time) if verdict.next_time else None,
    }
    requeue = verdict.requeue_after(seen.now) or IDLE_LOOK
    start = None
    clear = False
    if seen.unresolved:
        # Nothing starts, nothing is recorded as run: the times that pass are counted as
        # missed and run once when the references resolve (within the deadline).
        previous = next((c for c in seen.status.conditions if c.type == "Accepted"), None)
        if previous is None or previous.message != _accepted(seen).message:
            events.append(Event("Warning", "ReferenceNotFound", _accepted(seen).message))
        update["conditions"] = conditions
        return Decision(
            status.model_copy(update=update), events=tuple(events),
            requeue_after=min(requeue, REFERENCE_RECHECK),
        )
    gap = archive.open_gap(status.point_in_time) if spec.point_in_time.enabled else None
    if spec.point_in_time.enabled:
        conditions = set_condition(conditions, _gap_condition(seen, gap))
    if not verdict.run and gap is not None and _no_run_since(status, gap.detected_at):
        # the archive lost ops: a new base backup now, for it to start again from
        verdict = dataclasses.replace(verdict, run=True, reason="PointInTimeGap",
                                      scheduled_time=None)
    if verdict.reason == "DeadlineExceeded" and verdict.scheduled_time is not None:
        update["last_schedule_time"] = now_rfc3339(verdict.scheduled_time)
        events.append(
            Event(
                "Warning", "BackupSkipped",
                f"the run scheduled at {now_rfc3339(verdict.scheduled_time)} could not start "
                f"within startingDeadlineSeconds ({spec.starting_deadline_seconds})",
            )
        )
    elif verdict.run:
        backup = layout.backup_id(seen.now, seen.uid)
        if backup <= _latest_id(status):
            # One backup per second at most: the id is the tarball's name, and ids of one
            # ChatBackup only ever grow (a clock that went back waits for it).
            requeue = 1.0
        else:
            start = Start(
                backup, seen.now, layout.tarball_key(spec.storage.s3.prefix, backup),
                verdict.reason,
            )
            clear = seen.on_demand and verdict.reason == "OnDemand"
            if verdict.scheduled_time is not None:
                update["last_schedule_time"] = now_rfc3339(verdict.scheduled_time)
            update["last_backup"] = BackupRecord(
                id=backup, key=start.key, result="Running",
                started_at=now_rfc3339(seen.now), message=_why(verdict),
            )
            events.append(Event("Normal", "BackupStarted", f"backup {backup}: {_why(verdict)}"))
            if verdict.missed:
                events.append(
                    Event(
                        "Warning", "MissedSchedules",
                        f"{verdict.missed} scheduled run(s) passed while the operator was "
                        "down; running once",
                    )
                )
    if not any(c.type == "Ready" for c in conditions) and status.last_backup is None:
        conditions = set_condition(
            conditions,
            condition(
                "Ready", "Unknown", "NoBackupYet", "no backup has finished yet",
                seen.now, seen.generation,
            ),
        )
    update["conditions"] = conditions
    return Decision(
        status.model_copy(update=update),
        start=start,
        clear_on_demand=clear,
        events=tuple(events),
        requeue_after=requeue,
    )


def _no_run_since(status: ChatBackupStatus, at: str) -> bool:
    last = status.last_backup
    if last is None:
        return True
    if last.result == "Running":
        return False
    return not last.started_at or clock.parse(last.started_at) < clock.parse(at)


def _gap_condition(seen: Observation, gap: ArchiveGap | None) -> Condition:
    """`PointInTimeGap`: True while the archive has lost ops and no base backup after
    the loss has let it start again."""
    if gap is None:
        return condition(
            "PointInTimeGap", "False", "Continuous",
            "the oplog archive has no open gap", seen.now, seen.generation,
        )
    return condition(
        "PointInTimeGap", "True", "OplogRolledOver",
        f"the oplog rolled past the archive: ops from {gap.start} to {gap.end} are lost; "
        "a new base backup is taken for the archive to start again from",
        seen.now, seen.generation,
    )


def _why(verdict: schedule.Decision) -> str:
    if verdict.reason == "PointInTimeGap":
        return "a new base backup for the point-in-time archive, after a gap"
    if verdict.reason == "OnDemand":
        return f"on demand ({ON_DEMAND})"
    if verdict.reason == "FirstRun":
        return "no schedule: one run at creation"
    assert verdict.scheduled_time is not None
    return f"scheduled at {now_rfc3339(verdict.scheduled_time)}"


def waiting(status: ChatBackupStatus, holder: str) -> ChatBackupStatus:
    """The running record, saying the run waits for the database Lease."""
    last = status.last_backup
    if last is None:
        return status
    message = f"waiting for the database Lease, held by {holder}"
    return status.model_copy(update={"last_backup": last.model_copy(update={"message": message})})


def finish(
    status: ChatBackupStatus, outcome: Outcome, now: datetime.datetime, generation: int
) -> tuple[ChatBackupStatus, list[Event]]:
    """The status recording how a run ended, and the Events telling it."""
    duration = round((outcome.finished_at - outcome.started_at).total_seconds(), 3)
    manifest = outcome.manifest
    events: list[Event] = []
    if manifest is not None:
        record = BackupRecord(
            id=outcome.id, key=manifest.tarball.key, size=manifest.tarball.size,
            documents=manifest.documents, sha256=manifest.tarball.sha256,
            duration_seconds=duration, result="Succeeded",
            started_at=now_rfc3339(outcome.started_at), message=outcome.retention_problem,
            point_in_time=manifest.point_in_time,
            consistent_time=manifest.consistent_time.time if manifest.consistent_time else None,
        )
        ready = condition(
            "Ready", "True", "BackupSucceeded",
            f"backup {outcome.id}: {manifest.documents} documents, {manifest.tarball.size} "
            f"bytes in {duration:g} s"
            + (f", consistent as of {manifest.consistent_time.time}"
               if manifest.consistent_time else ", not point-in-time (the server has no oplog)"),
            now, generation,
        )
        events.append(Event("Normal", "BackupSucceeded", ready.message))
        if outcome.deleted:
            events.append(
                Event(
                    "Normal", "RetentionDeleted",
                    f"retention deleted {len(outcome.deleted)} backup(s): "
                    + ", ".join(outcome.deleted[:10]),
                )
            )
        if outcome.retention_problem:
            events.append(Event("Warning", "RetentionFailed", outcome.retention_problem))
    else:
        record = BackupRecord(
            id=outcome.id, key=outcome.key or None, duration_seconds=duration,
            result="Failed", started_at=now_rfc3339(outcome.started_at),
            message=outcome.message,
        )
        ready = condition(
            "Ready", "False", "BackupFailed", f"backup {outcome.id} failed: {outcome.message}",
            now, generation,
        )
        events.append(Event("Warning", "BackupFailed", ready.message))
    deleted = set(outcome.deleted)
    backups = [r for r in _with_record(status, record) if r.id not in deleted]
    update: dict[str, object] = {
        "last_backup": record,
        "backups": backups,
        "conditions": set_condition(status.conditions, ready),
    }
    if manifest is not None:
        update["last_successful_time"] = now_rfc3339(outcome.finished_at)
    return status.model_copy(update=update), events


def max_age(spec: ChatBackupSpec) -> datetime.timedelta | None:
    """retention.maxAge as a timedelta."""
    if spec.retention.max_age is None:
        return None
    return datetime.timedelta(seconds=seconds(spec.retention.max_age))
