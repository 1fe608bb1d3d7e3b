"""Point-in-time recovery, as users write and read it: a ChatBackup's continuous oplog
archive (`spec.pointInTime`, `status.pointInTime`) and a ChatRecovery's target time
(`spec.pointInTime`).

The archive follows Percona Backup for MongoDB: slices of the oplog in S3 between base
backups, 10 minutes each by default. Unlike PBM's, what has arrived is uploaded every
`flushInterval` (a short slice of its own, merged into a `sliceLength` one later), so the
newest restorable time trails the database by seconds, not by a slice.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from chatops import clock
from chatops.api import bounds
from chatops.api.bounds import Rule
from chatops.api.common import Model, Name, seconds

MiB = 1024 * 1024

_ARCHIVE_RULES = (
    Rule(
        "!has(self.flushInterval) || !has(self.sliceLength) || "
        "duration(self.flushInterval) <= duration(self.sliceLength)",
        "pointInTime.flushInterval must not be longer than pointInTime.sliceLength",
        lambda p: seconds(p.flush_interval) <= seconds(p.slice_length),
    ),
    Rule(
        "!has(self.sliceLength) || duration(self.sliceLength) >= duration('1s')",
        "pointInTime.sliceLength must be at least 1s",
        lambda p: seconds(p.slice_length) >= 1,
    ),
    Rule(
        "!has(self.flushInterval) || duration(self.flushInterval) >= duration('1s')",
        "pointInTime.flushInterval must be at least 1s",
        lambda p: seconds(p.flush_interval) >= 1,
    ),
)


class PointInTime(Model):
    """The continuous archive of the oplog between base backups, so a ChatRecovery can
    restore to any second since the oldest kept base backup. Needs a replica set (an
    oplog); each base backup is consistent (its manifest's `consistentTime`), and the
    slices chain from it. The archive resumes after an operator restart from what S3
    holds; if the oplog rolled past its last archived op meanwhile, the lost interval is
    reported (condition `PointInTimeGap`, an Event) and a new base backup is taken."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_ARCHIVE_RULES))

    @model_validator(mode="after")
    def _rules(self) -> PointInTime:
        return bounds.enforce(self, _ARCHIVE_RULES)

    enabled: bool = False
    """Archive the oplog continuously."""
    slice_length: bounds.DayDuration = "10m"
    """Time one slice object in S3 spans at most, as PBM's `oplogSpanMin` (10 minutes):
    what was uploaded every flushInterval is merged into slices this long. At least 1s,
    at most 24h."""
    max_slice_mib: int = Field(default=64, ge=1, le=4096)
    """Uncompressed oplog MiB after which a slice is uploaded (and a merged slice closed)
    whatever the time: the memory the archiver holds is bounded by it."""

    @property
    def max_slice_bytes(self) -> int:
        return self.max_slice_mib * MiB
    flush_interval: bounds.HourDuration = "5s"
    """Longest an archived op waits before it is uploaded: the recovery point objective
    (RPO) while the archive keeps up. At least 1s, at most sliceLength and 1h."""


class Timestamp(Model):
    """A MongoDB oplog timestamp: seconds since the Unix epoch, and the order of the op
    within that second."""

    t: int = Field(ge=0, le=2**32 - 1)
    """Seconds since the Unix epoch."""
    i: int = Field(ge=0, le=2**32 - 1)
    """Ordinal within the second."""


class ArchiveGap(Model):
    """An interval the archive lost: the oplog rolled past the last archived op before it
    was read (the operator was down or behind longer than the oplog lasts). No restore
    can target a time inside it."""

    start: str
    """Time of the last op archived before the gap (RFC 3339)."""
    start_ts: Timestamp
    """Its oplog timestamp."""
    end: str
    """Time of the oldest op the oplog still held when the gap was found (RFC 3339):
    every op between `start` and it is lost."""
    end_ts: Timestamp
    """Its oplog timestamp."""
    detected_at: str
    """When the archiver found it (RFC 3339)."""
    resumed_from: str | None = None
    """The base backup the archive started again from, once there is one."""


class ArchiveStatus(Model):
    """What the continuous archive holds and does, as its archiver last wrote it."""

    state: Literal["Waiting", "Archiving", "Gap", "Failed"] = "Waiting"
    """Archiving (tailing the oplog), Waiting (for a base backup to start from, or for
    the oplog), Gap (the oplog rolled past the archive: a new base backup is coming) or
    Failed (the archiver cannot go on; see message)."""
    message: str = ""
    """What the archiver is doing or waits for."""
    last_archived_time: str | None = None
    """Time of the newest op uploaded (RFC 3339): restores can target up to it."""
    last_archived_ts: Timestamp | None = None
    """Its oplog timestamp."""
    last_upload_time: str | None = None
    """When a slice was last uploaded (RFC 3339)."""
    slices: int = 0
    """Complete slices of this ChatBackup in S3."""
    restorable_from: str | None = None
    """The earliest time a restore can target (the oldest kept base backup's consistent
    time), RFC 3339."""
    oplog_first_time: str | None = None
    """Time of the oldest op the oplog held at the last look (RFC 3339): the archive must
    never fall further behind than this."""
    gaps: list[ArchiveGap] = Field(default_factory=list, max_length=20)
    """Intervals lost, oldest first (the 20 newest)."""


def _a_time(value: str) -> str:
    try:
        clock.parse(value)
    except ValueError:
        raise ValueError(f"not a time: {value!r} (expected RFC 3339, e.g. "
                         "2026-12-02T06:15:00Z)") from None
    return value


RFC3339 = Annotated[
    str,
    Field(
        max_length=40,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
        r"(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$",
    ),
    AfterValidator(_a_time),
]
"""An RFC 3339 time with a zone."""


class ReleaseRevision(Model):
    """The moment a ChatRelease revision started, as its status.history tells it."""

    release: Name
    """The ChatRelease, in the ChatRecovery's namespace."""
    revision: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9a-z]+$")]
    """Its revision hash (`status.history[].revision`, `chatops status`)."""


_TARGET_RULES = (
    Rule(
        "has(self.time) != has(self.releaseRevision)",
        "set exactly one of pointInTime.time or pointInTime.releaseRevision",
        lambda p: bounds.exactly_one(p.time, p.release_revision),
    ),
)


class RecoveryPointInTime(Model):
    """Restore to a moment, not to a backup: the newest base backup not after it, then
    the archived oplog replayed up to it."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_TARGET_RULES))

    @model_validator(mode="after")
    def _rules(self) -> RecoveryPointInTime:
        return bounds.enforce(self, _TARGET_RULES)

    time: RFC3339 | None = None
    """An RFC 3339 time with a zone, e.g. 2026-12-02T06:15:00Z. Inclusive to the second,
    as PBM's `--time`: every op of that second and before is replayed, none after it
    (the oplog tells time in whole seconds)."""
    release_revision: ReleaseRevision | None = None
    """The start of a ChatRelease revision (its first start in status.history, or the
    release in progress): the database as it was before that version could write to it.
    Exclusive: ops of the second the release started are left out, so none of its writes
    is restored, at the price of the other writes of that one second."""


class RecoveredPointInTime(Model):
    """The point in time a ChatRecovery resolved its target to, and how it got there."""

    target: str
    """The time restored to (RFC 3339)."""
    until_ts: Timestamp
    """The last oplog timestamp replayed may be this one (inclusive)."""
    base: str
    """The base backup restored first (its id)."""
    base_consistent_time: str
    """What the base backup holds: the database as of this time (RFC 3339)."""
    slices: list[str] = Field(default_factory=list, max_length=10000)
    """S3 keys of the slices replayed, in order."""
    ops: int | None = None
    """Oplog entries replayed from the slices (after the base's consistent time, up to
    the target)."""
