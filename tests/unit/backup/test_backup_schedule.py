"""When backups run: cron in a time zone, DST, missed runs, deadlines, suspend."""

from __future__ import annotations

import datetime

import pytest

from chatops.backup.schedule import Decision, Observation, Schedule, decide
from chatops.errors import InvalidSpec

UTC = datetime.UTC


def utc(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)


CREATED = utc(2026, 1, 1)


def run_at(schedule: Schedule, now: datetime.datetime, last: datetime.datetime | None = None,
           **kw: bool) -> Decision:
    return decide(schedule, Observation(now=now, created_at=CREATED, last_schedule_time=last, **kw))


def test_daily_in_a_time_zone_runs_at_local_wall_time() -> None:
    paris = Schedule("15 3 * * *", "Europe/Paris")
    assert paris.next_after(utc(2026, 1, 10, 0)) == utc(2026, 1, 10, 2, 15)  # CET, UTC+1
    assert paris.next_after(utc(2026, 7, 10, 0)) == utc(2026, 7, 10, 1, 15)  # CEST, UTC+2


def test_a_time_skipped_by_spring_dst_runs_once_when_clocks_jump_past_it() -> None:
    # 2026-03-29 in Paris: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
    paris = Schedule("30 2 * * *", "Europe/Paris")
    times = list(_take(paris.times_after(utc(2026, 3, 28, 12)), 3))
    assert times == [utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]


def test_a_time_repeated_by_autumn_dst_runs_once() -> None:
    # 2026-11-01 in New York: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
    ny = Schedule("30 1 * * *", "America/New_York")
    times = list(_take(ny.times_after(utc(2026, 10, 31, 12)), 2))
    assert times == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    # In the repeated hour the first 01:30 is already past: nothing is due twice.
    first = utc(2026, 11, 1, 5, 30)
    assert not run_at(ny, utc(2026, 11, 1, 6, 40), last=first).run


def test_hourly_across_spring_dst_has_no_duplicate_runs() -> None:
    paris = Schedule("0 * * * *", "Europe/Paris")
    times = list(_take(paris.times_after(utc(2026, 3, 28, 23, 30)), 4))
    assert times == [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2),
                     utc(2026, 3, 29, 3)]


def test_due_when_the_scheduled_time_has_come() -> None:
    s = Schedule("0 3 * * *")
    decision = run_at(s, utc(2026, 2, 1, 3, 0, 5), last=utc(2026, 1, 31, 3))
    assert decision.run and decision.reason == "Scheduled"
    assert decision.scheduled_time == utc(2026, 2, 1, 3)
    assert decision.next_time == utc(2026, 2, 2, 3)
    assert decision.missed == 0


def test_not_due_says_when_to_look_again() -> None:
    s = Schedule("0 3 * * *")
    decision = run_at(s, utc(2026, 2, 1, 2, 0), last=utc(2026, 1, 31, 3))
    assert not decision.run and decision.reason == "NotDue"
    assert decision.requeue_after(utc(2026, 2, 1, 2, 0)) == 3600


def test_missed_runs_while_down_run_once_not_n_times() -> None:
    s = Schedule("0 * * * *")
    # The operator was down for 5 hours and 20 minutes.
    now = utc(2026, 2, 1, 8, 20)
    decision = run_at(s, now, last=utc(2026, 2, 1, 3))
    assert decision.run and decision.scheduled_time == utc(2026, 2, 1, 8)
    assert decision.missed == 4  # 04:00..07:00 are not run
    # Once recorded, nothing else is due until 09:00.
    after = run_at(s, now + datetime.timedelta(seconds=30), last=decision.scheduled_time)
    assert not after.run and after.next_time == utc(2026, 2, 1, 9)


def test_starting_deadline_skips_a_run_that_is_too_late() -> None:
    s = Schedule("0 3 * * *", starting_deadline_seconds=600)
    late = run_at(s, utc(2026, 2, 1, 3, 11), last=utc(2026, 1, 31, 3))
    assert not late.run and late.reason == "DeadlineExceeded"
    assert late.scheduled_time == utc(2026, 2, 1, 3)  # recorded so it is not retried
    in_time = run_at(s, utc(2026, 2, 1, 3, 9), last=utc(2026, 1, 31, 3))
    assert in_time.run


def test_first_schedule_is_after_creation_not_before() -> None:
    s = Schedule("@daily")
    created = utc(2026, 1, 1, 10)
    no = decide(s, Observation(now=utc(2026, 1, 1, 12), created_at=created))
    assert not no.run and no.next_time == utc(2026, 1, 2)
    yes = decide(s, Observation(now=utc(2026, 1, 2, 0, 0, 3), created_at=created))
    assert yes.run and yes.scheduled_time == utc(2026, 1, 2)


def test_suspend_stops_scheduled_runs_but_not_a_human_request() -> None:
    s = Schedule("0 * * * *", suspend=True)
    assert run_at(s, utc(2026, 2, 1, 8, 1), last=utc(2026, 2, 1, 3)).reason == "Suspended"
    asked = run_at(s, utc(2026, 2, 1, 8, 1), last=utc(2026, 2, 1, 3), on_demand=True)
    assert asked.run and asked.reason == "OnDemand" and asked.scheduled_time is None


def test_no_schedule_runs_once_now() -> None:
    s = Schedule(None)
    first = run_at(s, utc(2026, 2, 1))
    assert first.run and first.reason == "FirstRun" and first.next_time is None
    again = run_at(s, utc(2026, 2, 2), last=first.scheduled_time)
    assert not again.run and again.reason == "Done"


def test_an_unknown_time_zone_names_the_field() -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.timeZone"):
        Schedule("0 3 * * *", "Mars/Olympus").next_after(utc(2026, 1, 1))


def _take(it: object, n: int) -> list[datetime.datetime]:
    out = []
    for item in it:  # type: ignore[attr-defined]
        out.append(item)
        if len(out) == n:
            break
    return out
