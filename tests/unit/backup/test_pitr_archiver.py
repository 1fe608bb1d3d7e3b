"""The archiver's decisions: where it resumes after a restart (from S3, never memory),
when the oplog rolled past it (a gap, told once, a new base backup asked for), when it
uploads, and how the ChatBackup's look turns a gap into the `PointInTimeGap` condition
and a base backup run."""

from __future__ import annotations

import datetime

from chatops.api.backup import ChatBackupSpec, ChatBackupStatus
from chatops.api.pitr import ArchiveStatus
from chatops.backup import archive, controller, pitr
from chatops.backup.oplog import OpTime
from chatops.backup.pitr import Base, Slice
from chatops.commands.backups import render_points

T0 = 1_764_650_000
NOW = datetime.datetime(2026, 12, 2, 5, 0, tzinfo=datetime.UTC)


def piece(previous: OpTime, first: OpTime, last: OpTime) -> Slice:
    return Slice(f"k/{first}-{last}", f"m/{first}-{last}", previous, first, last, 3, 30, "x")


def test_a_restarted_archiver_resumes_after_the_last_complete_slice() -> None:
    base = Base("b1", OpTime(T0, 1))
    done = [piece(OpTime(T0, 1), OpTime(T0 + 1, 1), OpTime(T0 + 5, 2)),
            piece(OpTime(T0 + 5, 2), OpTime(T0 + 6, 1), OpTime(T0 + 9, 4))]
    seen = archive.Observed(tuple(done), (base,), (OpTime(T0 - 100, 1), OpTime(T0 + 20, 1)))
    assert archive.resume(seen) == archive.Tail(OpTime(T0 + 9, 4))
    fresh = archive.Observed((), (base,), (OpTime(T0 - 100, 1), OpTime(T0 + 20, 1)))
    assert archive.resume(fresh) == archive.Tail(base.consistent)


def test_without_a_base_or_an_oplog_it_waits_and_says_why() -> None:
    nothing = archive.resume(archive.Observed((), (), (OpTime(T0, 1), OpTime(T0 + 1, 1))))
    assert isinstance(nothing, archive.Wait) and "first point-in-time base" in nothing.reason
    standalone = archive.resume(archive.Observed((), (Base("b", OpTime(T0, 1)),), None))
    assert isinstance(standalone, archive.Wait) and standalone.state == "Failed"
    assert "replica set" in standalone.reason


def test_an_oplog_rolled_past_the_archive_is_a_gap_with_the_lost_interval() -> None:
    base = Base("b1", OpTime(T0, 1))
    done = [piece(OpTime(T0, 1), OpTime(T0 + 1, 1), OpTime(T0 + 5, 2))]
    rolled = archive.Observed(tuple(done), (base,), (OpTime(T0 + 50, 1), OpTime(T0 + 90, 3)))
    lost = archive.resume(rolled)
    assert isinstance(lost, archive.Lost)
    assert (lost.after, lost.oldest) == (OpTime(T0 + 5, 2), OpTime(T0 + 50, 1))
    assert isinstance(lost.then, archive.Wait) and lost.then.state == "Gap"
    # a base backup taken after the loss: the archive starts again from it (the same gap)
    new = Base("b2", OpTime(T0 + 60, 1))
    again = archive.resume(archive.Observed(tuple(done), (base, new), rolled.oplog))
    assert again == archive.Lost(lost.after, lost.oldest, archive.Tail(new.consistent))
    again_lost = archive.resume(
        archive.Observed(tuple(done), (base, new), (OpTime(T0 + 55, 1), OpTime(T0 + 90, 3)))
    )
    assert isinstance(again_lost, archive.Lost)
    assert again_lost.then == archive.Tail(new.consistent)


def test_a_base_newer_than_the_archive_is_no_place_to_resume_while_the_oplog_holds_its_end(
) -> None:
    """A base backup taken while the archive lagged (or the operator was down): the ops
    between the last slice and it are still archived, or no restore could target them."""
    base = Base("b1", OpTime(T0, 1))
    done = [piece(OpTime(T0, 1), OpTime(T0 + 1, 1), OpTime(T0 + 5, 2))]
    newer = Base("b2", OpTime(T0 + 30, 1))
    oplog = (OpTime(T0 - 100, 1), OpTime(T0 + 40, 1))
    assert archive.resume(archive.Observed(tuple(done), (base, newer), oplog)) == archive.Tail(
        OpTime(T0 + 5, 2)
    )
    # the slices past the newer base carry the archive on from either: their end
    later = [*done, piece(OpTime(T0 + 5, 2), OpTime(T0 + 6, 1), OpTime(T0 + 35, 1))]
    assert archive.resume(archive.Observed(tuple(later), (base, newer), oplog)) == (
        archive.Tail(OpTime(T0 + 35, 1))
    )
    # several bases and no slice yet: the newest
    assert archive.resume(archive.Observed((), (base, newer), oplog)) == archive.Tail(
        newer.consistent
    )


def test_a_gap_is_recorded_once_however_often_it_is_found() -> None:
    lost = archive.Lost(OpTime(T0 + 5, 2), OpTime(T0 + 50, 1), archive.Wait("w", "Gap"))
    once, new = archive.with_gap(ArchiveStatus(), lost, NOW)
    twice, again = archive.with_gap(once, lost, NOW + datetime.timedelta(minutes=1))
    assert new and not again and once == twice
    gap = once.gaps[0]
    assert (gap.start, gap.end) == (
        pitr.rfc3339(OpTime(T0 + 5, 2)), pitr.rfc3339(OpTime(T0 + 50, 1))
    )
    assert archive.open_gap(once) == gap
    closed = archive.resumed(once, Base("b2", OpTime(T0 + 60, 1)))
    assert archive.open_gap(closed) is None and closed.gaps[0].resumed_from == "b2"


def test_what_arrived_is_uploaded_at_the_flush_interval_or_the_size_cap() -> None:
    assert not archive.flush_due(0, 0, 100.0, 5.0, 1000)
    assert not archive.flush_due(3, 300, 4.9, 5.0, 1000)
    assert archive.flush_due(3, 300, 5.0, 5.0, 1000)
    assert archive.flush_due(3, 1000, 0.1, 5.0, 1000)


def _spec(**pit: object) -> ChatBackupSpec:
    return ChatBackupSpec.model_validate({
        "schedule": "0 3 * * *",
        "mongodb": {"uriSecretRef": {"name": "m"}, "database": "chat"},
        "storage": {"s3": {"bucket": "chat-backups"}},
        "pointInTime": {"enabled": True, **pit},
    })


def _seen(status: ChatBackupStatus, now: datetime.datetime) -> controller.Observation:
    return controller.Observation(
        namespace="chat", name="nightly", now=now, created_at=NOW - datetime.timedelta(hours=1),
        generation=1, spec=_spec(), status=status, uid="3f9a2c1b-0000",
    )


def test_a_gap_makes_the_look_take_a_new_base_backup_once_and_says_so() -> None:
    lost = archive.Lost(OpTime(T0 + 5, 2), OpTime(T0 + 50, 1), archive.Wait("w", "Gap"))
    gapped, _ = archive.with_gap(ArchiveStatus(), lost, NOW)
    status = ChatBackupStatus(point_in_time=gapped, last_schedule_time="2026-12-02T03:00:00Z")
    first = controller.decide(_seen(status, NOW + datetime.timedelta(seconds=1)))
    assert first.start is not None and first.start.reason == "PointInTimeGap"
    told = {c.type: c for c in first.status.conditions}["PointInTimeGap"]
    assert told.status == "True" and gapped.gaps[0].start in told.message
    # the run started after the gap was found: no second base for the same gap
    running = first.status
    finished, _ = controller.finish(
        running,
        controller.Outcome(first.start.id, first.start.key, first.start.started_at,
                           first.start.started_at, None, message="boom"),
        NOW + datetime.timedelta(seconds=2), 1,
    )
    later = controller.decide(_seen(finished, NOW + datetime.timedelta(seconds=3)))
    assert later.start is None
    # the archive started again from the new base: the condition clears
    closed = finished.model_copy(
        update={"point_in_time": archive.resumed(gapped, Base("b2", OpTime(T0 + 60, 1)))}
    )
    after = controller.decide(_seen(closed, NOW + datetime.timedelta(seconds=4)))
    assert {c.type: c.status for c in after.status.conditions}["PointInTimeGap"] == "False"


def test_restore_points_shows_each_window_and_gap() -> None:
    b1, b2 = Base("20261202_040000_3f9a2c1b", OpTime(T0, 1)), Base("20261202_050000_3f9a2c1b",
                                                               OpTime(T0 + 100, 1))
    line = pitr.timeline(
        [b1, b2],
        [piece(OpTime(T0, 1), OpTime(T0 + 1, 1), OpTime(T0 + 30, 1)),
         piece(OpTime(T0 + 100, 1), OpTime(T0 + 101, 1), OpTime(T0 + 130, 1))],
    )
    text = render_points(line, "s3://b/chat/pitr/3f9a2c1b/", 2)
    lines = text.splitlines()
    assert lines[0] == "2 slice(s) in s3://b/chat/pitr/3f9a2c1b/"
    assert lines[1].split() == ["FROM", "TO", "BASE", "BACKUPS", "SLICES"]
    def at(s: int) -> str:
        return pitr.rfc3339(OpTime(T0 + s, 1))

    assert lines[2].split() == [at(0), at(30), b1.id, "1"]
    assert lines[3].split() == [at(100), at(130), b2.id, "1"]
    assert lines[4].startswith(f"gap: {at(30)} to {at(100)}")
