"""Restore drills, decided (`backup/drills.py`): when one runs, how it is recorded, and
what `Verified` tells a human about the newest backup. Rows of a table, no cluster."""

from __future__ import annotations

import datetime
from typing import Any

import pydantic
import pytest

from chatops import clock
from chatops.api.backup import BackupRecord, ChatBackupSpec, ChatBackupStatus
from chatops.api.verification import DrillRecord, VerificationStatus
from chatops.backup import drills, scratch

UTC = datetime.UTC
CREATED = datetime.datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def _spec(**verification: Any) -> ChatBackupSpec:
    return ChatBackupSpec.model_validate({
        "schedule": "0 3 * * *",
        "mongodb": {"uriSecretRef": {"name": "mongo"}, "database": "chat"},
        "storage": {"s3": {"bucket": "chat-backups"}},
        "verification": {"schedule": "30 4 * * *", "scratch": {"database": "chat_drill"},
                         "timeoutSeconds": 600, **verification},
    })


def _backup(id_: str, started: str, result: str = "Succeeded") -> BackupRecord:
    return BackupRecord.model_validate({
        "id": id_, "result": result, "startedAt": started, "durationSeconds": 60,
    })


NIGHTLY = _backup("20261202_030000_abcdef12", "2026-12-02T03:00:00Z")


def _seen(now: str, *, backups: tuple[BackupRecord, ...] = (NIGHTLY,),
          drilled: VerificationStatus | None = None, on_demand: bool = False
          ) -> drills.Observation:
    status = ChatBackupStatus(
        backups=list(backups), last_backup=backups[-1] if backups else None,
        verification=drilled,
    )
    return drills.Observation(
        now=datetime.datetime.fromisoformat(now), created_at=CREATED, generation=3,
        spec=_spec(), status=status, on_demand=on_demand,
    )


def _at(text: str | None) -> datetime.datetime:
    assert text is not None
    return clock.parse(text)


def _verified(status: ChatBackupStatus) -> tuple[str, str, str]:
    found = next(c for c in status.conditions if c.type == "Verified")
    return found.status, found.reason, found.message


def test_a_drill_starts_at_its_scheduled_time_and_records_it() -> None:
    decision = drills.decide(_seen("2026-12-02T04:30:05+00:00"))
    assert decision.start is not None and decision.start.reason == "Scheduled"
    drilled = decision.status.verification
    assert drilled is not None
    assert _at(drilled.last_schedule_time) == _at("2026-12-02T04:30:00Z")
    assert _at(drilled.next_drill_time) == _at("2026-12-03T04:30:00Z")
    again = drills.decide(_seen("2026-12-02T04:31:00+00:00", drilled=drilled))
    assert again.start is None  # the 04:30 drill is not run twice


def test_no_drill_before_its_time_and_the_look_comes_back_by_then() -> None:
    decision = drills.decide(_seen("2026-12-02T04:00:00+00:00"))
    assert decision.start is None
    assert decision.requeue_after <= drills.IDLE_LOOK
    assert _verified(decision.status)[:2] == ("Unknown", "DrillPending")


def test_on_demand_runs_now_and_clears_the_request() -> None:
    decision = drills.decide(_seen("2026-12-02T04:00:00+00:00", on_demand=True))
    assert decision.start is not None and decision.start.reason == "OnDemand"
    assert decision.clear_on_demand


def test_without_a_backup_no_drill_runs_and_the_condition_says_why() -> None:
    decision = drills.decide(_seen("2026-12-02T04:30:05+00:00", backups=()))
    assert decision.start is None
    assert [e.reason for e in decision.events] == ["DrillSkipped"]
    assert _verified(decision.status)[:2] == ("Unknown", "NoBackupYet")


def test_a_drill_left_running_by_a_dead_operator_is_failed_and_cleaned() -> None:
    running = VerificationStatus(last_drill=DrillRecord(
        backup=NIGHTLY.id, result="Running", started_at="2026-12-02T04:30:00Z"))
    decision = drills.decide(_seen("2026-12-02T04:40:00+00:00", drilled=running))
    assert decision.settled is not None and decision.settled.result == "Failed"
    assert decision.status.verification is not None
    last = decision.status.verification.last_drill
    assert last is not None and last.result == "Failed" and "interrupted" in last.message
    assert [e.reason for e in decision.events] == ["DrillFailed"]


def _finished(seen: drills.Observation, ok: bool, backup: str = NIGHTLY.id) -> ChatBackupStatus:
    outcome = drills.Outcome(
        backup, seen.now, seen.now + datetime.timedelta(seconds=42), ok,
        "restored and verified" if ok else "the tarball is damaged",
        restore_seconds=41.5 if ok else None, documents=5220 if ok else None,
    )
    status, events = drills.finish(seen, outcome)
    assert [e.reason for e in events] == ["DrillSucceeded" if ok else "DrillFailed"]
    return status


def test_a_successful_drill_records_the_verified_time_and_the_restore_time() -> None:
    seen = _seen("2026-12-02T04:30:05+00:00")
    status = _finished(seen, ok=True)
    assert status.verification is not None
    assert status.verification.last_verified_backup == NIGHTLY.id
    assert _at(status.verification.last_verified_time) == _at("2026-12-02T04:30:47Z")
    assert status.verification.restore_seconds == 41.5
    state, reason, message = _verified(status)
    assert (state, reason) == ("True", "DrillSucceeded")
    assert NIGHTLY.id in message and "41.5 s" in message


def test_a_failed_drill_says_so_and_keeps_the_last_verified_backup() -> None:
    before = VerificationStatus(
        last_verified_backup="20261201_030000_abcdef12", restore_seconds=40.0,
        last_verified_time="2026-12-01T04:31:00Z",
    )
    seen = _seen("2026-12-02T04:30:05+00:00", drilled=before)
    status = _finished(seen, ok=False)
    assert status.verification is not None
    assert status.verification.last_verified_backup == "20261201_030000_abcdef12"
    state, reason, message = _verified(status)
    assert (state, reason) == ("False", "DrillFailed")
    assert "damaged" in message


def test_a_backup_left_unverified_past_its_drill_shows_in_the_condition() -> None:
    """The newest backup finished at 03:01; the drill due at 04:30 (+ its 600 s timeout)
    has passed without verifying it."""
    decision = drills.decide(_seen(
        "2026-12-02T04:41:00+00:00",
        drilled=VerificationStatus(last_schedule_time="2026-12-02T04:30:00Z"),
    ))
    state, reason, message = _verified(decision.status)
    assert (state, reason) == ("False", "BackupUnverified")
    assert NIGHTLY.id in message and "2026-12-02T04:30:00" in message


def test_an_older_verified_backup_does_not_verify_a_newer_one() -> None:
    drilled = VerificationStatus(
        last_verified_backup="20261201_030000_abcdef12", restore_seconds=40.0,
        last_verified_time="2026-12-01T04:31:00Z",
        last_schedule_time="2026-12-02T04:30:00Z",
    )
    decision = drills.decide(_seen("2026-12-02T05:00:00+00:00", drilled=drilled))
    assert _verified(decision.status)[:2] == ("False", "BackupUnverified")


@pytest.mark.parametrize(
    ("database", "backed_up", "expected"),
    [
        ("chat", ["chat"], {"chat": "chat_drill"}),
        (None, ["chat", "users"], {"chat": "chat_drill_chat", "users": "chat_drill_users"}),
    ],
)
def test_scratch_names(database: str | None, backed_up: list[str], expected: dict[str, str]
                       ) -> None:
    spec = _spec(scratch={"database": "chat_drill", "uriSecretRef": {"name": "drills"}})
    spec = spec.model_copy(update={"mongodb": spec.mongodb.model_copy(
        update={"database": database})})
    assert scratch.names(spec, backed_up) == expected


def test_the_live_database_is_refused_as_scratch() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"must not be mongodb\.database"):
        _spec(scratch={"database": "chat"})
    _spec(scratch={"database": "chat", "uriSecretRef": {"name": "drills"}})  # another server


def test_a_verified_backup_whose_next_drill_fails_is_no_longer_verified() -> None:
    """The backup restored yesterday; today its drill fails (it was corrupted since)."""
    before = VerificationStatus(
        last_verified_backup=NIGHTLY.id, restore_seconds=40.0,
        last_verified_time="2026-12-02T04:31:00Z",
    )
    status = _finished(_seen("2026-12-03T04:30:05+00:00", drilled=before), ok=False)
    assert _verified(status)[:2] == ("False", "DrillFailed")
    assert status.verification is not None
    assert status.verification.last_verified_backup == NIGHTLY.id
