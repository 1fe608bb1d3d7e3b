"""ChatBackup: scheduled MongoDB backups streamed to S3 in the mongodump layout.

The shapes shared with ChatRecovery (where MongoDB is, where S3 is) live here too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from chatops.api import bounds, cron
from chatops.api.bounds import Rule
from chatops.api.common import Condition, Model, Name, SecretKeyRef
from chatops.api.notifications import BackupReceivers
from chatops.api.pitr import ArchiveStatus, PointInTime
from chatops.api.verification import Verification, VerificationStatus

ReadPreference = Literal[
    "primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"
]


class MongoURISecretRef(SecretKeyRef):
    """The Secret key holding the MongoDB connection string (it may carry a password)."""

    key: bounds.SecretKey = "uri"
    """Key inside the Secret's data."""


class MongoSource(Model):
    """The MongoDB to back up."""

    uri_secret_ref: MongoURISecretRef
    """Secret holding the connection string; it is never copied into status or logs."""
    database: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=r"^[^/\\. \"$]+$"
    )
    """One database to back up; none backs up every database but admin, local, config."""
    read_preference: ReadPreference = "secondaryPreferred"
    """Which members to read from, so a backup does not load the primary."""


class S3CredentialsSecretRef(Model):
    """A Secret with an access key pair; none uses the default AWS chain (e.g. IRSA)."""

    name: Name
    """Name of the Secret."""
    access_key_id_key: bounds.SecretKey = "AWS_ACCESS_KEY_ID"
    """Key of the access key id."""
    secret_access_key_key: bounds.SecretKey = "AWS_SECRET_ACCESS_KEY"
    """Key of the secret access key."""


S3_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


_ENDPOINT_RULES = (
    Rule(
        "!has(self.kmsKeyId) || (has(self.serverSideEncryption) && "
        "self.serverSideEncryption == 'aws:kms')",
        "kmsKeyId needs serverSideEncryption: aws:kms",
        lambda e: e.kms_key_id is None or e.server_side_encryption == "aws:kms",
    ),
)


class S3Endpoint(Model):
    """How to reach an S3-compatible store."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_ENDPOINT_RULES))

    @model_validator(mode="after")
    def _rules(self) -> S3Endpoint:
        return bounds.enforce(self, _ENDPOINT_RULES)

    bucket: str = Field(min_length=3, max_length=63, pattern=S3_BUCKET)
    """Bucket name."""
    region: bounds.Region = "us-east-1"
    """Bucket region."""
    endpoint: bounds.URL | None = None
    """Endpoint URL of an S3-compatible store (MinIO, Ceph, …), with a host
    (`https://minio.example:9000`); none means AWS."""
    force_path_style: bool = False
    """Address the bucket in the path rather than the host name (most non-AWS stores)."""
    credentials_secret_ref: S3CredentialsSecretRef | None = None
    """Access keys from a Secret; none uses the default AWS credential chain."""
    server_side_encryption: Literal["AES256", "aws:kms"] | None = None
    """Server-side encryption of the objects written."""
    kms_key_id: bounds.KmsKeyId | None = None
    """KMS key (id, alias or ARN) for aws:kms encryption."""


class S3Storage(S3Endpoint):
    """Where backups are written: `<prefix>mongodb_YYYYmmdd_HHMMSS_<uid8>.tar.gz` and its
    `.manifest.json`, `<uid8>` being the first 8 characters of the ChatBackup's uid.
    Several ChatBackups may share a bucket and prefix: keys never collide, S3 writes never
    replace an object, and each ChatBackup counts, lists, restores and deletes only the
    backups its uid wrote (a re-created ChatBackup of the same name starts afresh; the old
    one's backups stay, restorable with a ChatRecovery's `source.s3`)."""

    prefix: bounds.KeyPrefix = ""
    """Key prefix, empty or ending in `/`, at most 256 characters; may be shared with other
    ChatBackups."""


class Storage(Model):
    """Backup destination."""

    s3: S3Storage
    """An S3 bucket."""


class Retention(Model):
    """Which backups to keep. Only complete, verified backups of this ChatBackup count,
    and the newest good backup is never deleted."""

    keep_last: int = Field(default=30, ge=1, le=10000)
    """Newest good backups kept (the runbook keeps 30)."""
    max_age: bounds.DecadeDuration | None = None
    """Also delete good backups older than this, at most 87600h (never the newest)."""


_SPEC_RULES = (
    Rule(
        "!has(self.verification) || has(self.verification.scratch.uriSecretRef) || "
        "!has(self.mongodb.database) || "
        "self.verification.scratch.database != self.mongodb.database",
        "verification.scratch.database must not be mongodb.database: a drill restores into "
        "its scratch database and drops it, never the live one",
        lambda s: s.verification is None or s.verification.scratch.uri_secret_ref is not None
        or s.mongodb.database is None or s.verification.scratch.database != s.mongodb.database,
    ),
    Rule(
        "!has(self.verification) || has(self.mongodb.database) || "
        "has(self.verification.scratch.uriSecretRef)",
        "verification.scratch.uriSecretRef is required when mongodb.database is not set: a "
        "backup of every database is drilled on a server of its own",
        lambda s: s.verification is None or s.mongodb.database is not None
        or s.verification.scratch.uri_secret_ref is not None,
    ),
)


class ChatBackupSpec(Model):
    """A scheduled backup of the chat app's MongoDB into S3."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_SPEC_RULES))

    @model_validator(mode="after")
    def _rules(self) -> ChatBackupSpec:
        return bounds.enforce(self, _SPEC_RULES)

    schedule: cron.Schedule | None = None
    """Cron schedule of five fields (minute hour day-of-month month day-of-week) or a
    macro like @daily; none runs one backup now. Ranges go upwards (`FRI-MON` is
    refused: write `FRI,SAT,SUN,MON`), steps are 1 or more, and `?` may stand for the
    whole day-of-month or day-of-week, not both, meaning "any" as in Quartz."""
    time_zone: bounds.TimeZone | None = None
    """IANA time zone of the schedule (default UTC)."""
    suspend: bool = False
    """Stop scheduling new runs; a run in progress finishes."""
    concurrency_policy: Literal["Forbid"] = "Forbid"
    """Never start a run while one is going."""
    starting_deadline_seconds: bounds.PositiveSeconds | None = None
    """Skip a run that could not start within this time of its schedule (at most a day)."""
    timeout_seconds: bounds.PositiveSeconds = 3600
    """Longest a run may take before it is failed and cleaned up (at most a day)."""
    mongodb: MongoSource
    """The database to back up."""
    storage: Storage
    """Where backups go."""
    retention: Retention = Field(default_factory=Retention)
    """What to keep."""
    verification: Verification | None = None
    """Scheduled restore drills into a scratch database (none: no drills)."""
    point_in_time: PointInTime = Field(default_factory=PointInTime)
    """Archive the oplog continuously between base backups, for restores to any second
    (a ChatRecovery's `pointInTime`)."""
    notifications: BackupReceivers = Field(default_factory=list)
    """Webhooks told when a backup fails, a scheduled run is missed, or the oplog
    archive has a gap, in the background: a receiver that is down never holds a run up."""
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    """On deleting the ChatBackup: keep its S3 objects (no finalizer: deleting it never
    waits for the operator), or delete the objects its uid wrote (a finalizer holds the
    deletion until they are gone)."""


BackupResult = Literal["Running", "Succeeded", "Failed"]


class BackupRecord(Model):
    """One backup run."""

    id: str
    """Backup id, the UTC start time and the ChatBackup's uid prefix, as in its key
    (YYYYmmdd_HHMMSS_<uid8>); never reused."""
    key: str | None = None
    """S3 key of the tarball."""
    size: int | None = None
    """Tarball bytes."""
    documents: int | None = None
    """Documents dumped."""
    sha256: str | None = None
    """SHA-256 of the tarball."""
    duration_seconds: float | None = None
    """Wall time of the run."""
    result: BackupResult
    """Running, Succeeded or Failed."""
    started_at: str | None = None
    """When the run started (RFC 3339)."""
    message: str = ""
    """Why it failed, if it did."""
    point_in_time: bool | None = None
    """Whether the backup is consistent (its manifest's pointInTime): restored, it is the
    database at `consistentTime`. False when the server keeps no oplog."""
    consistent_time: str | None = None
    """The moment a consistent backup stands for (RFC 3339, to the second of its oplog
    position)."""


class ChatBackupStatus(Model):
    """What the backups did and will do."""

    observed_generation: int | None = None
    """The .metadata.generation this status was computed from."""
    last_schedule_time: str | None = None
    """When a run was last started by the schedule (RFC 3339)."""
    next_schedule_time: str | None = None
    """When the next run is due (RFC 3339)."""
    last_successful_time: str | None = None
    """When the last good backup finished (RFC 3339)."""
    last_backup: BackupRecord | None = None
    """The latest run."""
    backups: list[BackupRecord] = Field(default_factory=list)
    """Recent runs, newest last."""
    verification: VerificationStatus | None = None
    """The restore drills (`spec.verification`): when a backup was last proved
    restorable, and how long its restore took."""
    point_in_time: ArchiveStatus | None = None
    """The continuous oplog archive (`spec.pointInTime`), written by its archiver."""
    conditions: list[Condition] = Field(default_factory=list)
    """Accepted, Ready, PointInTimeGap, Verified, … in the Kubernetes shape."""
