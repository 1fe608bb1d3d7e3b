"""When a ChatBackup runs: cron in a time zone, suspend, concurrency, deadlines, on-demand.

Pure: `decide(schedule, observation)` looks at the spec, the status and the clock and
says whether to start a run now, which scheduled time it is for, and when to look again.

- Cron fields are wall-clock times in `timeZone` (UTC by default). A time that does not
  exist (the hour skipped in spring) runs when the clocks have jumped past it; a time
  that happens twice (the hour repeated in autumn) runs once, the first time.
- Runs missed while the operator was down are run once, not once each: the latest
  missed time is run (if within `startingDeadlineSeconds`) and the others counted.
- The first scheduled time considered is the first after the ChatBackup was created,
  so creating one with `@daily` does not run yesterday's backup.
- No schedule means one run, now. An on-demand request (the `chatops.dev/backup-now`
  annotation, `chatops backup-now`) runs even when suspended: a human asked for it.
- `concurrencyPolicy: Forbid`: nothing starts while a run is going.
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from collections.abc import Iterator
from typing import Literal

from croniter import croniter

from chatops.errors import InvalidSpec

UTC = datetime.UTC
_DST_SLACK = datetime.timedelta(hours=3)
"""More than any time zone's clock change, so a search in wall-clock time never misses a
time that happened in the repeated hour."""
MISSED_CAP = 100
"""Missed times counted at most (like the CronJob controller's limit)."""

Reason = Literal[
    "OnDemand",
    "Scheduled",
    "FirstRun",
    "Suspended",
    "DeadlineExceeded",
    "NotDue",
    "Done",
    "PointInTimeGap",
]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The scheduling part of a ChatBackup spec."""

    cron: str | None = None
    time_zone: str | None = None
    suspend: bool = False
    starting_deadline_seconds: int | None = None

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.time_zone or "UTC")
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidSpec(
                "ChatBackup",
                "spec.timeZone",
                f"unknown time zone {self.time_zone!r} (use an IANA name such as Europe/Paris)",
            ) from None

    def _wall(self, t: datetime.datetime) -> datetime.datetime:
        return t.astimezone(self.zone).replace(tzinfo=None)

    def _instant(self, wall: datetime.datetime) -> datetime.datetime:
        # fold=0: a repeated time is its first occurrence; a skipped one is read with the
        # offset before the change, i.e. as the moment the clocks jumped past it.
        return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)

    def times_after(self, t: datetime.datetime) -> Iterator[datetime.datetime]:
        """Scheduled instants strictly after `t`, increasing, each once."""
        if self.cron is None:
            return
        cron = croniter(self.cron, self._wall(t) - _DST_SLACK)
        last = t
        while True:
            instant = self._instant(cron.get_next(datetime.datetime))
            if instant > last:
                last = instant
                yield instant

    def next_after(self, t: datetime.datetime) -> datetime.datetime | None:
        return next(self.times_after(t), None)

    def latest_at_or_before(self, t: datetime.datetime) -> datetime.datetime | None:
        """The last scheduled instant not after `t`."""
        if self.cron is None:
            return None
        cron = croniter(self.cron, self._wall(t) + _DST_SLACK)
        for _ in range(10_000):
            instant = self._instant(cron.get_prev(datetime.datetime))
            if instant <= t:
                return instant
        return None


@dataclasses.dataclass(frozen=True)
class Observation:
    now: datetime.datetime
    created_at: datetime.datetime
    """The ChatBackup's creationTimestamp."""
    last_schedule_time: datetime.datetime | None = None
    """status.lastScheduleTime: the scheduled time of the last run started (or skipped)."""
    on_demand: bool = False
    """A human asked for a run now, and it has not been served yet."""


@dataclasses.dataclass(frozen=True)
class Decision:
    run: bool
    reason: Reason
    scheduled_time: datetime.datetime | None = None
    """The time this decision is about: record it as status.lastScheduleTime (also when a
    run is skipped for its deadline, so it is not considered again). None for on-demand."""
    next_time: datetime.datetime | None = None
    """status.nextScheduleTime; also when to look again."""
    missed: int = 0
    """Scheduled times that passed without a run, besides the one decided on."""

    def requeue_after(self, now: datetime.datetime) -> float | None:
        """Seconds until the next look, or None when only a change can start a run."""
        if self.next_time is None:
            return None
        return max(1.0, (self.next_time - now).total_seconds())


def decide(schedule: Schedule, seen: Observation) -> Decision:
    """Whether to start a backup now."""
    now = seen.now
    upcoming = None if schedule.suspend else schedule.next_after(now)
    if seen.on_demand:
        return Decision(True, "OnDemand", next_time=upcoming)
    if schedule.cron is None:
        if seen.last_schedule_time is None and not schedule.suspend:
            return Decision(True, "FirstRun", scheduled_time=now)
        return Decision(False, "Suspended" if schedule.suspend else "Done")
    if schedule.suspend:
        return Decision(False, "Suspended")
    since = seen.last_schedule_time or seen.created_at
    latest = schedule.latest_at_or_before(now)
    if latest is None or latest <= since:
        return Decision(False, "NotDue", next_time=upcoming)
    missed = 0
    for t in schedule.times_after(since):
        if t >= latest or missed >= MISSED_CAP:
            break
        missed += 1
    deadline = schedule.starting_deadline_seconds
    if deadline is not None and (now - latest).total_seconds() > deadline:
        return Decision(
            False,
            "DeadlineExceeded",
            scheduled_time=latest,
            next_time=upcoming,
            missed=missed + 1,
        )
    return Decision(True, "Scheduled", scheduled_time=latest, next_time=upcoming, missed=missed)
