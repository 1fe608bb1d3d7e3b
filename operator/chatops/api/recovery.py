"""ChatRecovery: a one-shot restore that quiesces the app, restores, verifies and brings
the app back. A new restore is a new object, so the spec is immutable once created.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from chatops.api import bounds
from chatops.api.backup import MongoURISecretRef, S3Endpoint
from chatops.api.bounds import Rule
from chatops.api.common import Condition, Model, Name
from chatops.api.notifications import RecoveryReceivers
from chatops.api.pitr import RecoveredPointInTime, RecoveryPointInTime


class BackupRef(Model):
    """A backup recorded by a ChatBackup in this namespace."""

    name: Name
    """The ChatBackup."""
    id: str = Field(default="latest", max_length=64, pattern=r"^(latest|[0-9]{8}_[0-9]{6})$")
    """`latest` (the newest good backup) or a backup id such as 20261126_031500."""


class S3Object(S3Endpoint):
    """A backup tarball addressed directly, e.g. to restore into another cluster."""

    key: bounds.ObjectKey
    """Key of the `.tar.gz`; its `.manifest.json` beside it is used to verify."""
    allow_unverified: bool = False
    """Restore a tarball that chatops wrote (its S3 metadata names a ChatBackup) even
    though its manifest is missing, so nothing can be verified against it. Without it
    such a restore fails with "manifest missing". A tarball without that metadata (one
    made by the runbook's mongodump) is restored without a manifest either way, checked
    against its own files."""


_SOURCE_RULES = (
    Rule(
        "has(self.backupRef) != has(self.s3)",
        "set exactly one of source.backupRef or source.s3",
        lambda s: bounds.exactly_one(s.backup_ref, s.s3),
    ),
)


class Source(Model):
    """What to restore: exactly one of backupRef or s3."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_SOURCE_RULES))

    @model_validator(mode="after")
    def _rules(self) -> Source:
        return bounds.enforce(self, _SOURCE_RULES)

    backup_ref: BackupRef | None = None
    """A backup of a ChatBackup."""
    s3: S3Object | None = None
    """A tarball in S3."""


class MongoTarget(Model):
    """The MongoDB to restore into."""

    uri_secret_ref: MongoURISecretRef
    """Secret holding the connection string."""
    database: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=r"^[^/\\. \"$]+$"
    )
    """Restore only this database of the backup (default: every database in it)."""


class Target(Model):
    """Where to restore."""

    mongodb: MongoTarget | None = None
    """Target MongoDB; defaults to the ChatBackup's source."""


class Quiesce(Model):
    """Writers stopped during the restore."""

    deployments: list[Name] = Field(default_factory=list, max_length=50)
    """Deployments (same namespace) scaled to 0 during the restore and back afterwards."""


class HTTPCheck(Model):
    """A URL that must answer 2xx."""

    url: bounds.URL
    """URL to GET."""
    timeout_seconds: int = Field(default=5, ge=1, le=300)
    """How long one request may take."""


class PostRestore(Model):
    """What must be true before the recovery counts as Succeeded."""

    health_checks: list[HTTPCheck] = Field(default_factory=list, max_length=20)
    """URLs that must answer 2xx."""
    timeout_seconds: bounds.PositiveSeconds = 300
    """How long the app has to become healthy (at most a day)."""


RestoreMode = Literal["DropDatabase", "DropCollections", "Merge"]


_SPEC_RULES = (
    Rule(
        "has(self.source.backupRef) || (has(self.target) && has(self.target.mongodb))",
        "a restore from source.s3 needs target.mongodb",
        lambda s: s.source.backup_ref is not None or s.target.mongodb is not None,
    ),
    Rule(
        "!has(self.pointInTime) || (has(self.source.backupRef) && "
        "(!has(self.source.backupRef.id) || self.source.backupRef.id == 'latest'))",
        "pointInTime restores from source.backupRef (its ChatBackup's archive) and picks "
        "the base backup itself: leave source.backupRef.id out or set it to latest",
        lambda s: s.point_in_time is None
        or (s.source.backup_ref is not None and s.source.backup_ref.id == "latest"),
    ),
)


class ChatRecoverySpec(Model):
    """A restore of a backup, and the app brought back after it."""

    model_config = ConfigDict(
        json_schema_extra=bounds.validations(
            *_SPEC_RULES,
            transitions=[
                {
                    "rule": "self == oldSelf",
                    "message": "a ChatRecovery runs once; create a new one to restore again",
                }
            ],
        )
    )

    @model_validator(mode="after")
    def _rules(self) -> ChatRecoverySpec:
        return bounds.enforce(self, _SPEC_RULES)

    source: Source
    """The backup to restore."""
    target: Target = Field(default_factory=Target)
    """Where to restore; defaults to the ChatBackup's database."""
    mode: RestoreMode = "DropCollections"
    """DropDatabase (drop, then restore), DropCollections (mongorestore --drop) or Merge
    (insert beside existing documents)."""
    quiesce: Quiesce = Field(default_factory=Quiesce)
    """Deployments to stop while restoring."""
    verify: bool = True
    """Check document counts and checksums against the backup's manifest."""
    post_restore: PostRestore = Field(default_factory=PostRestore)
    """Health checks after the app is back."""
    notifications: RecoveryReceivers = Field(default_factory=list)
    """Webhooks told when the restore has succeeded or failed, in the background."""
    point_in_time: RecoveryPointInTime | None = None
    """Restore the database as it was at a time (or before a ChatRelease revision
    started), from the newest base backup not after it and the ChatBackup's archived
    oplog. Every backup and slice needed is checked before anything is touched; a time
    inside an archive gap, before the oldest base backup or after the newest archived op
    is refused."""


RecoveryPhase = Literal[
    "Pending",
    "Quiescing",
    "Downloading",
    "Restoring",
    "Verifying",
    "Resuming",
    "Succeeded",
    "Failed",
]
StepState = Literal["Pending", "Running", "Succeeded", "Failed", "Skipped"]


class Step(Model):
    """One step of the recovery."""

    name: str
    """Step name, e.g. Quiesce, Download, Restore."""
    state: StepState
    """Pending, Running, Succeeded, Failed or Skipped."""
    started_at: str | None = None
    """When it started (RFC 3339)."""
    finished_at: str | None = None
    """When it ended (RFC 3339)."""
    message: str = ""
    """What it did or why it failed."""


class RestoredBackup(Model):
    """The backup this recovery resolved its source to."""

    id: str | None = None
    """Backup id."""
    key: str
    """S3 key of the tarball."""
    sha256: str | None = None
    """Expected SHA-256 from the manifest."""


class ChatRecoveryStatus(Model):
    """Progress and outcome of the restore."""

    observed_generation: int | None = None
    """The .metadata.generation this status was computed from."""
    phase: RecoveryPhase | None = None
    """Pending → Quiescing → Downloading → Restoring → Verifying → Resuming →
    Succeeded | Failed."""
    message: str | None = None
    """What is happening, or why it failed."""
    backup: RestoredBackup | None = None
    """The backup being restored."""
    quiesced: dict[str, int] = Field(default_factory=dict)
    """Replicas of each quiesced Deployment before the restore, to scale back to."""
    restored_documents: int | None = None
    """Documents restored."""
    point_in_time: RecoveredPointInTime | None = None
    """The target time resolved: the base backup, the slices and the ops replayed."""
    steps: list[Step] = Field(default_factory=list)
    """Each step with its state and times."""
    started_at: str | None = None
    """When the recovery started (RFC 3339)."""
    finished_at: str | None = None
    """When it ended (RFC 3339)."""
    conditions: list[Condition] = Field(default_factory=list)
    """Accepted, Ready, … in the Kubernetes shape."""
