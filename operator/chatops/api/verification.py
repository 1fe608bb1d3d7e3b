"""ChatBackup.spec.verification: scheduled restore drills into a scratch database, and
what they found (`status.verification`).

A drill restores the newest backup of the ChatBackup into its scratch database exactly
as a ChatRecovery restores (so its duration is the restore time to expect: the RTO),
verifies it, drops the scratch database, and records when the backup was last proved
restorable. It never writes to the live database: the API server refuses a scratch
database equal to the backed-up one, and the operator refuses a scratch database that
holds anything a drill did not put there.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chatops.api import bounds, cron
from chatops.api.common import Model, SecretKeyRef

SCRATCH_DATABASE = r"^[^/\\. \"$]+$"


class ScratchURISecretRef(SecretKeyRef):
    """The Secret key holding the scratch server's connection string."""

    key: bounds.SecretKey = "uri"
    """Key inside the Secret's data."""


class ScratchDatabase(Model):
    """Where a drill restores. It is created by the drill and dropped after it; one that
    exists with collections a drill did not create is refused (never dropped)."""

    database: str = Field(min_length=1, max_length=38, pattern=SCRATCH_DATABASE)
    """The scratch database. A backup of one database is restored into it; a backup of
    every database restores each database X into `<database>_X`. On the source's server
    it must not be `spec.mongodb.database`."""
    uri_secret_ref: ScratchURISecretRef | None = None
    """A server of its own for drills (its connection string); none restores on the
    source's server (`spec.mongodb.uriSecretRef`), beside the live database."""


class Verification(Model):
    """Scheduled restore drills: the newest backup restored into a scratch database,
    verified, dropped."""

    schedule: cron.Schedule
    """Cron schedule of the drills (five fields or a macro, as `spec.schedule`), in
    `spec.timeZone`."""
    scratch: ScratchDatabase
    """Where the drills restore."""
    timeout_seconds: bounds.PositiveSeconds = 3600
    """Longest a drill may take before it is failed and its scratch database dropped."""


DrillResult = Literal["Running", "Succeeded", "Failed"]


class DrillRecord(Model):
    """One restore drill."""

    backup: str
    """Id of the backup restored."""
    result: DrillResult
    """Running, Succeeded or Failed."""
    started_at: str
    """When the drill started (RFC 3339)."""
    finished_at: str | None = None
    """When it ended (RFC 3339)."""
    restore_seconds: float | None = None
    """Wall time of the restore (download, checks, load, indexes, commit): the RTO to
    expect from a ChatRecovery of this backup."""
    documents: int | None = None
    """Documents restored and verified."""
    message: str = ""
    """What was verified, or why the drill failed."""


class VerificationStatus(Model):
    """What the restore drills found."""

    last_verified_time: str | None = None
    """When a drill last proved a backup restorable (RFC 3339, its end)."""
    last_verified_backup: str | None = None
    """The newest backup a drill restored and verified."""
    restore_seconds: float | None = None
    """The restore time (RTO) the last successful drill measured."""
    last_schedule_time: str | None = None
    """The scheduled time of the last drill started."""
    next_drill_time: str | None = None
    """When the next drill is due (RFC 3339)."""
    last_drill: DrillRecord | None = None
    """The latest drill."""
