"""The ChatBackup's decisions: when a look starts a run, how an interrupted run is settled,
how a finished run is recorded. Rows of a table, no cluster."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from chatops.api.backup import BackupRecord, ChatBackupSpec, ChatBackupStatus
from chatops.backup.controller import (
    MAX_RECORDS,
    Observation,
    Outcome,
    decide,
    finish,
    waiting,
)
from chatops.backup.manifest import Manifest, ManifestSource, TarballManifest
from chatops.backup.retention import StoredBackup

UTC = datetime.UTC
UID = "3f9a2c1b-0000-4000-8000-000000000001"
CREATED = datetime.datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
NOW = datetime.datetime(2026, 11, 26, 3, 0, 5, tzinfo=UTC)


def spec(**extra: Any) -> ChatBackupSpec:
    return ChatBackupSpec.model_validate(
        {
            "mongodb": {"uriSecretRef": {"name": "mongo"}},
            "storage": {"s3": {"bucket": "chat-backups", "prefix": "nightly/"}},
            **extra,
        }
    )


def seen(
    status: ChatBackupStatus | None = None, now: datetime.datetime = NOW, **kw: Any
) -> Observation:
    return Observation(
        namespace="chat", name="nightly", now=now, created_at=CREATED, generation=1,
        spec=kw.pop("spec", spec(schedule="0 3 * * *")), status=status or ChatBackupStatus(),
        uid=kw.pop("uid", UID), **kw,
    )


def manifest(backup: str = "20261126_030005", owner: str = "nightly") -> Manifest:
    started = datetime.datetime(2026, 11, 26, 3, 0, 5, tzinfo=UTC)
    return Manifest(
        id=backup, source=ManifestSource(namespace="chat", name=owner, uid=UID),
        server_version="7.0",
        databases=["chat"], started_at=started,
        finished_at=started + datetime.timedelta(seconds=12), collections=[],
        tarball=TarballManifest(key=f"nightly/mongodb_{backup}.tar.gz", size=1000, sha256="ab"),
    )


def running(backup: str = "20261126_030005") -> ChatBackupStatus:
    return ChatBackupStatus(
        last_schedule_time="2026-11-26T03:00:00Z",
        last_backup=BackupRecord(
            id=backup, key=f"nightly/mongodb_{backup}.tar.gz", result="Running",
            started_at="2026-11-26T03:00:05Z",
        ),
    )


@pytest.mark.parametrize(
    ("what", "observation", "starts", "reason"),
    [
        ("due by the schedule", seen(), True, "Scheduled"),
        ("not due yet", seen(now=CREATED + datetime.timedelta(minutes=5)), False, None),
        ("no schedule: one run at creation", seen(spec=spec()), True, "FirstRun"),
        (
            "no schedule, already run once",
            seen(ChatBackupStatus(last_schedule_time="2026-11-26T02:00:01Z"), spec=spec()),
            False, None,
        ),
        ("suspended", seen(spec=spec(schedule="0 3 * * *", suspend=True)), False, None),
        (
            "suspended, but a human asked",
            seen(spec=spec(schedule="0 3 * * *", suspend=True), on_demand=True), True, "OnDemand",
        ),
        (
            "too late for startingDeadlineSeconds",
            seen(spec=spec(schedule="0 3 * * *", startingDeadlineSeconds=2)), False, None,
        ),
        ("invalid spec", seen(problems=("spec.timeZone: unknown",)), False, None),
    ],
)
def test_when_a_look_starts_a_run(
    what: str, observation: Observation, starts: bool, reason: str | None
) -> None:
    decision = decide(observation)
    assert (decision.start is not None) == starts, what
    if decision.start is not None:
        assert decision.start.reason == reason
        assert decision.start.key == f"nightly/mongodb_{decision.start.id}.tar.gz"
        assert decision.start.id.endswith("_3f9a2c1b")
        last = decision.status.last_backup
        assert last is not None and last.result == "Running" and last.id == decision.start.id


def test_a_scheduled_run_records_its_time_and_the_next() -> None:
    decision = decide(seen())
    assert decision.status.last_schedule_time == "2026-11-26T03:00:00Z"
    assert decision.status.next_schedule_time == "2026-11-27T03:00:00Z"
    assert 86000 < decision.requeue_after < 86400


def test_missed_schedules_run_once_and_say_so() -> None:
    five_hours = CREATED + datetime.timedelta(hours=5, minutes=1)
    late = seen(spec=spec(schedule="0 * * * *"), now=five_hours)
    decision = decide(late)
    assert decision.start is not None
    assert [e.reason for e in decision.events] == ["BackupStarted", "MissedSchedules"]
    assert "4 scheduled run(s)" in decision.events[1].message


def test_a_deadline_skip_is_recorded_so_it_is_not_considered_again() -> None:
    decision = decide(seen(spec=spec(schedule="0 3 * * *", startingDeadlineSeconds=2)))
    assert decision.status.last_schedule_time == "2026-11-26T03:00:00Z"
    assert [e.reason for e in decision.events] == ["BackupSkipped"]


def test_an_on_demand_run_clears_its_annotation_but_not_the_schedule_time() -> None:
    decision = decide(seen(now=CREATED + datetime.timedelta(minutes=5), on_demand=True))
    assert decision.start is not None and decision.clear_on_demand
    assert decision.status.last_schedule_time is None


def test_two_runs_in_one_second_would_share_a_name_so_the_second_waits() -> None:
    status = ChatBackupStatus(
        last_backup=BackupRecord(id="20261126_030005_3f9a2c1b", result="Succeeded")
    )
    decision = decide(seen(status, on_demand=True))
    assert decision.start is None and not decision.clear_on_demand
    assert decision.requeue_after == 1.0


def test_an_interrupted_run_is_failed_and_its_upload_aborted() -> None:
    decision = decide(seen(running(), now=NOW + datetime.timedelta(minutes=3)))
    last = decision.status.last_backup
    assert last is not None and last.result == "Failed" and "interrupted" in last.message
    ready = next(c for c in decision.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "BackupFailed")


def test_an_interrupted_run_whose_backup_completed_counts_as_a_success() -> None:
    found = StoredBackup(
        id="20261126_030005", tarball_key="nightly/mongodb_20261126_030005.tar.gz",
        tarball_size=1000, manifest_key="nightly/mongodb_20261126_030005.manifest.json",
        manifest=manifest(), owner="chat/nightly", uid=UID,
    )
    decision = decide(seen(running(), now=NOW + datetime.timedelta(minutes=3), leftover=found))
    assert decision.status.last_backup is not None
    assert decision.status.last_backup.result == "Succeeded"


def test_a_completed_backup_of_another_uid_under_that_id_is_not_adopted() -> None:
    """Case 10: a ChatBackup of the same name (re-created, or in another cluster) wrote it."""
    found = StoredBackup(
        id="20261126_030005", tarball_key="nightly/mongodb_20261126_030005.tar.gz",
        tarball_size=1000, manifest_key="nightly/mongodb_20261126_030005.manifest.json",
        manifest=manifest(), owner="chat/nightly", uid=UID,
    )
    later = NOW + datetime.timedelta(minutes=3)
    decision = decide(seen(running(), now=later, leftover=found, uid="other-uid"))
    assert decision.status.last_backup is not None
    assert decision.status.last_backup.result == "Failed"


def test_a_missing_secret_holds_every_run_and_says_which_field() -> None:
    """Case 19: Accepted=False naming the field; no run starts, the schedule is not spent,
    and the look comes back soon to notice the Secret when it appears."""
    problem = "spec.mongodb.uriSecretRef: Secret chat/mongo does not exist; create it"
    decision = decide(seen(unresolved=(problem,)))
    assert decision.start is None and decision.status.last_schedule_time is None
    accepted = next(c for c in decision.status.conditions if c.type == "Accepted")
    assert (accepted.status, accepted.reason) == ("False", "ReferenceNotFound")
    assert problem in accepted.message
    assert decision.requeue_after <= 10
    assert [e.reason for e in decision.events] == ["ReferenceNotFound"]
    again = decide(seen(decision.status, unresolved=(problem,)))
    assert again.events == ()  # told once
    resolved = decide(seen(decision.status))
    assert resolved.start is not None and resolved.start.reason == "Scheduled"
    accepted = next(c for c in resolved.status.conditions if c.type == "Accepted")
    assert accepted.status == "True"


def test_a_success_records_the_backup_and_ready() -> None:
    outcome = Outcome("20261126_030005", "k", NOW, NOW + datetime.timedelta(seconds=12),
                      manifest(), deleted=("20261020_030000",))
    old = running().model_copy(update={"backups": [
        BackupRecord(id="20261020_030000", result="Succeeded"),
        BackupRecord(id="20261125_030000", result="Failed", message="boom"),
    ]})
    status, events = finish(old, outcome, NOW, 1)
    assert [r.id for r in status.backups] == ["20261125_030000", "20261126_030005"]
    assert status.last_successful_time == "2026-11-26T03:00:17Z"
    assert status.last_backup is not None and status.last_backup.size == 1000
    assert [e.reason for e in events] == ["BackupSucceeded", "RetentionDeleted"]
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.status == "True"


def test_a_failure_keeps_the_last_success_time_and_says_why() -> None:
    old = running().model_copy(update={"last_successful_time": "2026-11-25T03:00:09Z"})
    outcome = Outcome("20261126_030005", "k", NOW, NOW, None, message="S3 UploadPart 2: gone")
    status, events = finish(old, outcome, NOW, 1)
    assert status.last_successful_time == "2026-11-25T03:00:09Z"
    assert status.last_backup is not None and status.last_backup.message.endswith("gone")
    assert [e.type for e in events] == ["Warning"]


def test_status_keeps_a_bounded_number_of_runs_newest_last() -> None:
    status = ChatBackupStatus()
    for day in range(1, 30):
        backup = f"202611{day:02d}_030000"
        status, _ = finish(status, Outcome(backup, "k", NOW, NOW, None, message="x"), NOW, 1)
    assert len(status.backups) == MAX_RECORDS
    assert status.backups[-1].id == "20261129_030000"


def test_waiting_for_the_lease_is_visible_on_the_running_record() -> None:
    status = waiting(running(), "chatrecovery/chat/undo")
    assert status.last_backup is not None
    assert status.last_backup.message == (
        "waiting for the database Lease, held by chatrecovery/chat/undo"
    )
